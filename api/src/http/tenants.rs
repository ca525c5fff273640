//! The settings screen and the tenant's commands: MFA policy, domains, linking and unlinking.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use domain::ids::{EntraTenantId, UserId};
use domain::values::DomainName;
use projections::settings_screen;

use super::auth::{TenantAdmin, TenantReader};
use super::json::ApiJson;
use super::path::ApiPath;
use super::problem::Problem;
use super::{Accepted, command_problem, field};
use crate::application::{CommandError, DomainUserResult};
use crate::startup::AppState;

/// The routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_settings))
        .routes(routes!(set_mfa_policy))
        .routes(routes!(bind_domain))
        .routes(routes!(release_domain))
        .routes(routes!(link_domain_users))
        .routes(routes!(unlink_domain_users))
}

/// The settings screen.
#[derive(Debug, Serialize, ToSchema)]
pub struct SettingsResponse {
    /// Tenant name.
    pub display_name: String,
    /// `nl` or `en`.
    pub default_locale: String,
    /// SMS required for users who do not sign in through Entra ID.
    pub sms_required: bool,
    /// The "Verified Publisher" warning: some domain's Entra tenant has not granted consent.
    pub consent_warning: bool,
    /// Linked domains.
    pub domains: Vec<DomainResponse>,
}

/// A linked domain.
#[derive(Debug, Serialize, ToSchema)]
pub struct DomainResponse {
    /// The domain.
    pub domain: String,
    /// Its Entra tenant.
    pub entra_tenant_id: Uuid,
    /// `granted`, `refused`, `required`, or absent when none was recorded.
    pub consent: Option<String>,
}

/// `GET /tenants/{tenant_id}/settings`: policy and domains of the settings screen.
#[utoipa::path(get, path = "/tenants/{tenant_id}/settings", tag = "settings",
    params(("tenant_id" = Uuid, Path, description = "The tenant")),
    responses((status = 200, body = SettingsResponse), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn get_settings(
    State(app): State<AppState>,
    TenantReader { tenant_id }: TenantReader,
) -> Result<Json<SettingsResponse>, Problem> {
    let view = settings_screen::settings(&app.pool, tenant_id)
        .await
        .map_err(super::database)?
        .ok_or_else(Problem::not_found)?;
    Ok(Json(SettingsResponse {
        display_name: view.display_name,
        default_locale: view.default_locale,
        sms_required: view.sms_required,
        consent_warning: view.consent_warning,
        domains: view
            .domains
            .into_iter()
            .map(|domain| DomainResponse {
                domain: domain.domain,
                entra_tenant_id: domain.entra_tenant_id.as_uuid(),
                consent: domain.consent.map(|consent| {
                    serde_json::to_value(consent)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default()
                }),
            })
            .collect(),
    }))
}

/// `SetMfaPolicy`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetMfaPolicyRequest {
    /// Require SMS for every user who does not sign in through Entra ID.
    pub sms_required: bool,
}

/// `PUT /tenants/{tenant_id}/mfa_policy`: `SetMfaPolicy`.
#[utoipa::path(put, path = "/tenants/{tenant_id}/mfa_policy", tag = "settings",
    params(("tenant_id" = Uuid, Path, description = "The tenant")),
    request_body = SetMfaPolicyRequest,
    responses((status = 200, body = Accepted), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem)))]
pub async fn set_mfa_policy(
    State(app): State<AppState>,
    admin: TenantAdmin,
    ApiJson(body): ApiJson<SetMfaPolicyRequest>,
) -> Result<Json<Accepted>, Problem> {
    let TenantAdmin {
        tenant_id, context, ..
    } = admin;
    let committed = app
        .commands
        .set_mfa_policy(&context, tenant_id, body.sms_required)
        .await
        .map_err(|e| command_problem(&e))?;
    Ok(Json(Accepted {
        position: committed.last_position(),
    }))
}

/// Binding a domain to its Entra tenant.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BindDomainRequest {
    /// The e-mail domain, e.g. `contoso.com`.
    pub domain: String,
    /// The Entra tenant (`tid`) that owns it.
    pub entra_tenant_id: String,
}

/// `POST /tenants/{tenant_id}/domains`: claims a domain and binds it to an Entra tenant.
#[utoipa::path(post, path = "/tenants/{tenant_id}/domains", tag = "domains",
    params(("tenant_id" = Uuid, Path, description = "The tenant")),
    request_body = BindDomainRequest,
    responses((status = 200, body = Accepted), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem)))]
pub async fn bind_domain(
    State(app): State<AppState>,
    admin: TenantAdmin,
    ApiJson(body): ApiJson<BindDomainRequest>,
) -> Result<Json<Accepted>, Problem> {
    let TenantAdmin {
        tenant_id, context, ..
    } = admin;
    let domain = field("domain", DomainName::parse(&body.domain))?;
    let entra = field(
        "entra_tenant_id",
        EntraTenantId::parse(&body.entra_tenant_id),
    )?;
    let committed = app
        .commands
        .bind_domain(&context, tenant_id, domain, entra)
        .await
        .map_err(|e| command_problem(&e))?;
    Ok(Json(Accepted {
        position: committed.last_position(),
    }))
}

/// `DELETE /tenants/{tenant_id}/domains/{domain}`: releases a domain without linked users.
#[utoipa::path(delete, path = "/tenants/{tenant_id}/domains/{domain}", tag = "domains",
    params(("tenant_id" = Uuid, Path, description = "The tenant"), ("domain" = String, Path, description = "The domain")),
    responses((status = 200, body = Accepted), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem)))]
pub async fn release_domain(
    State(app): State<AppState>,
    admin: TenantAdmin,
    ApiPath((_, domain)): ApiPath<(Uuid, String)>,
) -> Result<Json<Accepted>, Problem> {
    let TenantAdmin {
        tenant_id, context, ..
    } = admin;
    let domain = field("domain", DomainName::parse(&domain))?;
    let committed = app
        .commands
        .release_domain(&context, tenant_id, domain)
        .await
        .map_err(|e| command_problem(&e))?;
    Ok(Json(Accepted {
        position: committed.last_position(),
    }))
}

/// Selected users of a domain.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DomainUsersRequest {
    /// The selected users (at most 1,000).
    pub user_ids: Vec<Uuid>,
    /// Decide without writing: which users qualify and why the others do not.
    #[serde(default)]
    pub dry_run: bool,
}

/// The answer for each selected user.
#[derive(Debug, Serialize, ToSchema)]
pub struct DomainUsersResponse {
    /// One entry per distinct selected user, in the order given.
    pub users: Vec<DomainUserAnswer>,
}

/// One selected user's result.
#[derive(Debug, Serialize, ToSchema)]
pub struct DomainUserAnswer {
    /// The user.
    pub user_id: Uuid,
    /// `qualifies` (dry run), `changed`, `refused` or `failed` (retry).
    pub result: &'static str,
    /// For `changed`: the position to wait for.
    pub position: Option<i64>,
    /// For `refused` and `failed`: why, as a problem.
    pub problem: Option<Problem>,
}

async fn domain_users(
    app: &AppState,
    admin: TenantAdmin,
    domain: &str,
    body: DomainUsersRequest,
    link: bool,
) -> Result<Json<DomainUsersResponse>, Problem> {
    let TenantAdmin {
        tenant_id, context, ..
    } = admin;
    let domain = field("domain", DomainName::parse(domain))?;
    let user_ids: Vec<UserId> = body.user_ids.into_iter().map(UserId::from_uuid).collect();
    let outcomes = if link {
        app.commands
            .link_domain_users(&context, tenant_id, domain, &user_ids, body.dry_run)
            .await
    } else {
        app.commands
            .unlink_domain_users(&context, tenant_id, domain, &user_ids, body.dry_run)
            .await
    }
    .map_err(|e| command_problem(&e))?;
    let users = outcomes
        .into_iter()
        .map(|outcome| {
            let (result, position, problem) = match outcome.result {
                DomainUserResult::Qualifies => ("qualifies", None, None),
                DomainUserResult::Changed { position } => ("changed", Some(position), None),
                DomainUserResult::Refused(refusal) => (
                    "refused",
                    None,
                    Some(Problem::from(&CommandError::User(refusal))),
                ),
                DomainUserResult::Failed(error) => ("failed", None, Some(Problem::from(&error))),
            };
            DomainUserAnswer {
                user_id: outcome.user_id.as_uuid(),
                result,
                position,
                problem,
            }
        })
        .collect();
    Ok(Json(DomainUsersResponse { users }))
}

/// `POST /tenants/{tenant_id}/domains/{domain}/link_users`: `LinkDomainUsers`, per user.
#[utoipa::path(post, path = "/tenants/{tenant_id}/domains/{domain}/link_users", tag = "domains",
    params(("tenant_id" = Uuid, Path, description = "The tenant"), ("domain" = String, Path, description = "The domain")),
    request_body = DomainUsersRequest,
    responses((status = 200, body = DomainUsersResponse), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem)))]
pub async fn link_domain_users(
    State(app): State<AppState>,
    admin: TenantAdmin,
    ApiPath((_, domain)): ApiPath<(Uuid, String)>,
    ApiJson(body): ApiJson<DomainUsersRequest>,
) -> Result<Json<DomainUsersResponse>, Problem> {
    domain_users(&app, admin, &domain, body, true).await
}

/// `POST /tenants/{tenant_id}/domains/{domain}/unlink_users`: `UnlinkDomainUsers`, per user.
#[utoipa::path(post, path = "/tenants/{tenant_id}/domains/{domain}/unlink_users", tag = "domains",
    params(("tenant_id" = Uuid, Path, description = "The tenant"), ("domain" = String, Path, description = "The domain")),
    request_body = DomainUsersRequest,
    responses((status = 200, body = DomainUsersResponse), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem)))]
pub async fn unlink_domain_users(
    State(app): State<AppState>,
    admin: TenantAdmin,
    ApiPath((_, domain)): ApiPath<(Uuid, String)>,
    ApiJson(body): ApiJson<DomainUsersRequest>,
) -> Result<Json<DomainUsersResponse>, Problem> {
    domain_users(&app, admin, &domain, body, false).await
}

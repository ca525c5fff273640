//! The settings screen and the tenant's commands: MFA policy, domains and their proof of
//! ownership, linking and unlinking.

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
use crate::application::{CommandError, DomainChallenge, DomainUserResult, VerifyOutcome};
use crate::startup::AppState;

/// The routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_settings))
        .routes(routes!(set_mfa_policy))
        .routes(routes!(bind_domain))
        .routes(routes!(release_domain))
        .routes(routes!(verify_domain))
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

/// A claimed domain.
#[derive(Debug, Serialize, ToSchema)]
pub struct DomainResponse {
    /// The domain.
    pub domain: String,
    /// Its Entra tenant.
    pub entra_tenant_id: Uuid,
    /// `granted`, `refused`, `required`, or absent when none was recorded.
    pub consent: Option<String>,
    /// `pending` (not bound for sign-in, no user can be linked) or `proven`.
    pub status: &'static str,
    /// How ownership was proven: `dns_txt` or `entra_verified_domain`; absent while pending.
    pub proof: Option<String>,
    /// While pending: the DNS TXT record to publish, then `POST .../verify`.
    pub txt_record: Option<TxtRecord>,
}

/// A DNS TXT record that proves the tenant owns a domain.
#[derive(Debug, Serialize, ToSchema)]
pub struct TxtRecord {
    /// The record's name, e.g. `_finteqx-challenge.contoso.com`.
    pub name: String,
    /// The value to publish, e.g. `finteqx-domain-verification=…`.
    pub value: String,
}

impl From<DomainChallenge> for TxtRecord {
    fn from(challenge: DomainChallenge) -> Self {
        Self {
            name: challenge.record_name,
            value: challenge.value,
        }
    }
}

/// `GET /tenants/{tenant_id}/settings`: policy and domains of the settings screen.
#[utoipa::path(get, path = "/tenants/{tenant_id}/settings", tag = "settings",
    params(("tenant_id" = Uuid, Path, description = "The tenant")),
    responses((status = 200, body = SettingsResponse), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn get_settings(
    State(app): State<AppState>,
    TenantReader { tenant_id, .. }: TenantReader,
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
            .map(|domain| {
                let txt_record = match (&domain.proof, DomainName::parse(&domain.domain)) {
                    (None, Ok(name)) => {
                        Some(app.commands.domain_challenge(tenant_id, &name).into())
                    }
                    _ => None,
                };
                DomainResponse {
                    status: if domain.proof.is_some() {
                        "proven"
                    } else {
                        "pending"
                    },
                    proof: domain.proof,
                    txt_record,
                    domain: domain.domain,
                    entra_tenant_id: domain.entra_tenant_id.as_uuid(),
                    consent: domain.consent.map(|consent| {
                        serde_json::to_value(consent)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default()
                    }),
                }
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

/// A claimed domain and how to prove it.
#[derive(Debug, Serialize, ToSchema)]
pub struct DomainClaimResponse {
    /// The global position of the last event; absent when nothing changed.
    pub position: Option<i64>,
    /// `pending` until the tenant proves that it owns the domain, then `proven`.
    pub status: &'static str,
    /// While pending: the DNS TXT record to publish, then `POST .../verify`.
    pub txt_record: Option<TxtRecord>,
}

/// `POST /tenants/{tenant_id}/domains`: claims a domain and binds it to an Entra tenant. A new
/// claim is `pending`: it binds no sign-in and links no user until the tenant proves that it
/// owns the domain (a DNS TXT record, or an Entra administrator's sign-in whose token says the
/// domain is verified). A domain another tenant has proven answers
/// `domain-claimed-by-another-tenant`.
#[utoipa::path(post, path = "/tenants/{tenant_id}/domains", tag = "domains",
    params(("tenant_id" = Uuid, Path, description = "The tenant")),
    request_body = BindDomainRequest,
    responses((status = 200, body = DomainClaimResponse), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem, description = "`domain-claimed-by-another-tenant`, `domain-has-linked-users`"), (status = 422, body = Problem), (status = 503, body = Problem)))]
pub async fn bind_domain(
    State(app): State<AppState>,
    admin: TenantAdmin,
    ApiJson(body): ApiJson<BindDomainRequest>,
) -> Result<Json<DomainClaimResponse>, Problem> {
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
        .bind_domain(&context, tenant_id, domain.clone(), entra)
        .await
        .map_err(|e| command_problem(&e))?;
    let proven = committed.aggregate.binding_for(tenant_id).is_some();
    Ok(Json(DomainClaimResponse {
        position: committed.last_position(),
        status: if proven { "proven" } else { "pending" },
        txt_record: (!proven).then(|| app.commands.domain_challenge(tenant_id, &domain).into()),
    }))
}

/// `POST /tenants/{tenant_id}/domains/{domain}/verify`: checks the domain's DNS TXT record now
/// and answers `proven` (recorded) or `pending` (the record to publish). A domain another tenant
/// has proven answers `domain-claimed-by-another-tenant`; no DNS answer, 503.
#[utoipa::path(post, path = "/tenants/{tenant_id}/domains/{domain}/verify", tag = "domains",
    params(("tenant_id" = Uuid, Path, description = "The tenant"), ("domain" = String, Path, description = "The domain")),
    responses((status = 200, body = DomainClaimResponse), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem, description = "`domain-claimed-by-another-tenant`"), (status = 422, body = Problem, description = "`domain-not-linked`: the tenant has not claimed the domain"), (status = 503, body = Problem)))]
pub async fn verify_domain(
    State(app): State<AppState>,
    admin: TenantAdmin,
    ApiPath((_, domain)): ApiPath<(Uuid, String)>,
) -> Result<Json<DomainClaimResponse>, Problem> {
    let TenantAdmin {
        tenant_id, context, ..
    } = admin;
    let domain = field("domain", DomainName::parse(&domain))?;
    let outcome = app
        .commands
        .verify_domain(&context, &app.dns, tenant_id, domain.clone())
        .await
        .map_err(|e| command_problem(&e))?;
    Ok(Json(match outcome {
        VerifyOutcome::Proven { position } => DomainClaimResponse {
            position,
            status: "proven",
            txt_record: None,
        },
        VerifyOutcome::Pending => DomainClaimResponse {
            position: None,
            status: "pending",
            txt_record: Some(app.commands.domain_challenge(tenant_id, &domain).into()),
        },
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

/// `POST /tenants/{tenant_id}/domains/{domain}/link_users`: `LinkDomainUsers`, per user. A
/// pending domain links nobody: `409 domain-not-proven`.
#[utoipa::path(post, path = "/tenants/{tenant_id}/domains/{domain}/link_users", tag = "domains",
    params(("tenant_id" = Uuid, Path, description = "The tenant"), ("domain" = String, Path, description = "The domain")),
    request_body = DomainUsersRequest,
    responses((status = 200, body = DomainUsersResponse), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem, description = "`domain-not-proven`: the tenant has not proven that it owns the domain"), (status = 422, body = Problem), (status = 503, body = Problem)))]
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

//! The tenant's users: list (settings screen), create, change e-mail, deactivate, reactivate,
//! send a set-password link, remove a phone, forget.

use axum::Json;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use domain::ids::UserId;
use domain::user::{ErasureReason, UserCommand};
use domain::values::{DisplayName, EmailAddress, Locale, MobileNumber, Personal, Role};
use projections::settings_screen;

use super::auth::{TenantAdmin, TenantReader};
use super::json::ApiJson;
use super::path::ApiPath;
use super::problem::Problem;
use super::{Accepted, command_problem, field};
use crate::application::{NewUser, NewUserSignIn};
use crate::startup::AppState;

/// The routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create_user))
        .routes(routes!(change_user_email))
        .routes(routes!(deactivate_user))
        .routes(routes!(reactivate_user))
        .routes(routes!(send_password_link))
        .routes(routes!(remove_phone))
        .routes(routes!(forget_user))
}

/// Paging of the user list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UserPage {
    /// Continue after this user id.
    pub after: Option<Uuid>,
    /// At most this many (1–500, default 100).
    pub limit: Option<i64>,
}

/// A user on the settings screen.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserResponse {
    /// The user.
    pub user_id: Uuid,
    /// E-mail, or absent when erased; masked for support staff (`a***@c***.com`).
    pub email: Option<String>,
    /// Display name, or absent when erased; masked for support staff (`A*** d* V****`).
    pub display_name: Option<String>,
    /// `administrator` or `user`.
    pub role: String,
    /// `nl` or `en`.
    pub locale: String,
    /// `sms` or `entra_id`, as chosen at creation.
    pub method: String,
    /// Not deactivated.
    pub active: bool,
    /// The domain the user is linked to Entra ID through.
    pub entra_domain: Option<String>,
    /// The first Entra sign-in bound the identity.
    pub entra_identity_bound: bool,
    /// A password is set.
    pub has_password: bool,
    /// The enrolled phone, masked (`+31*******78`).
    pub phone: Option<String>,
    /// The last successful sign-in.
    pub last_sign_in_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// `GET /tenants/{tenant_id}/users`: the settings screen's users, in creation order. Support
/// staff see addresses and names masked, as they see phone numbers.
#[utoipa::path(get, path = "/tenants/{tenant_id}/users", tag = "users",
    params(("tenant_id" = Uuid, Path, description = "The tenant"), UserPage),
    responses((status = 200, body = Vec<UserResponse>), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 503, body = Problem)))]
pub async fn list_users(
    State(app): State<AppState>,
    reader: TenantReader,
    Query(page): Query<UserPage>,
) -> Result<Json<Vec<UserResponse>>, Problem> {
    let (tenant_id, masked) = (reader.tenant_id, reader.is_support());
    let limit = page.limit.unwrap_or(100).clamp(1, 500);
    let rows = settings_screen::users(
        &app.pool,
        tenant_id,
        page.after.map(UserId::from_uuid),
        limit,
    )
    .await
    .map_err(super::database)?;
    let keys = app.commands.personal_data();
    let mut users = Vec::with_capacity(rows.len());
    for row in rows {
        let email: Personal<EmailAddress> = keys.open(&row.email).await.map_err(super::sealing)?;
        let name: Personal<DisplayName> =
            keys.open(&row.display_name).await.map_err(super::sealing)?;
        let phone = match &row.phone {
            Some(stored) => keys
                .open::<MobileNumber>(stored)
                .await
                .map_err(super::sealing)?
                .known()
                .map(MobileNumber::masked),
            None => None,
        };
        users.push(UserResponse {
            user_id: row.user_id.as_uuid(),
            email: email.known().map(|email| {
                if masked {
                    email.masked()
                } else {
                    email.to_string()
                }
            }),
            display_name: name.known().map(|name| {
                if masked {
                    name.masked()
                } else {
                    name.as_str().to_owned()
                }
            }),
            role: row.role,
            locale: row.locale,
            method: row.method,
            active: row.active,
            entra_domain: row.entra_domain,
            entra_identity_bound: row.entra_identity_bound,
            has_password: row.has_password,
            phone,
            last_sign_in_at: row.last_sign_in_at,
        });
    }
    Ok(Json(users))
}

/// `CreateUser`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    /// E-mail address (the real one, not an alias).
    pub email: String,
    /// Display name.
    pub display_name: String,
    /// `administrator` or `user`.
    pub role: String,
    /// `nl` or `en`.
    pub locale: String,
    /// `sms` (password + SMS by policy) or `entra_id`.
    pub method: String,
}

/// A created user.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedUserResponse {
    /// The new user's id.
    pub user_id: Uuid,
    /// The position to wait for before the settings screen shows the user.
    pub position: Option<i64>,
}

/// `POST /tenants/{tenant_id}/users`: `CreateUser` with SMS or Entra ID.
#[utoipa::path(post, path = "/tenants/{tenant_id}/users", tag = "users",
    params(("tenant_id" = Uuid, Path, description = "The tenant")),
    request_body = CreateUserRequest,
    responses((status = 201, body = CreatedUserResponse), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem)))]
pub async fn create_user(
    State(app): State<AppState>,
    admin: TenantAdmin,
    ApiJson(body): ApiJson<CreateUserRequest>,
) -> Result<(axum::http::StatusCode, Json<CreatedUserResponse>), Problem> {
    let TenantAdmin {
        tenant_id, context, ..
    } = admin;
    let sign_in = match body.method.as_str() {
        "sms" => NewUserSignIn::Sms,
        "entra_id" => NewUserSignIn::EntraId,
        _ => {
            return Err(Problem::new(
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                "method-unknown",
                "Unprocessable Entity",
                "the method must be sms or entra_id",
            )
            .with_field("method"));
        }
    };
    let new_user = NewUser {
        email: field("email", EmailAddress::parse(&body.email))?,
        display_name: field("display_name", DisplayName::parse(&body.display_name))?,
        role: field("role", body.role.parse::<Role>())?,
        locale: field("locale", body.locale.parse::<Locale>())?,
        sign_in,
    };
    let created = app
        .commands
        .create_user(&context, tenant_id, new_user)
        .await
        .map_err(|e| command_problem(&e))?;
    let response = CreatedUserResponse {
        user_id: created.user_id.as_uuid(),
        position: created.committed.last_position(),
    };
    Ok((axum::http::StatusCode::CREATED, Json(response)))
}

/// `ChangeUserEmail`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeEmailRequest {
    /// The real (primary) address.
    pub email: String,
}

/// `PUT /tenants/{tenant_id}/users/{user_id}/email`: `ChangeUserEmail` (fix an alias).
#[utoipa::path(put, path = "/tenants/{tenant_id}/users/{user_id}/email", tag = "users",
    params(("tenant_id" = Uuid, Path, description = "The tenant"), ("user_id" = Uuid, Path, description = "The user")),
    request_body = ChangeEmailRequest,
    responses((status = 200, body = Accepted), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem)))]
pub async fn change_user_email(
    State(app): State<AppState>,
    admin: TenantAdmin,
    ApiPath((_, user_id)): ApiPath<(Uuid, Uuid)>,
    ApiJson(body): ApiJson<ChangeEmailRequest>,
) -> Result<Json<Accepted>, Problem> {
    let TenantAdmin {
        tenant_id, context, ..
    } = admin;
    let email = field("email", EmailAddress::parse(&body.email))?;
    let committed = app
        .commands
        .change_user_email(&context, tenant_id, UserId::from_uuid(user_id), email)
        .await
        .map_err(|e| command_problem(&e))?;
    Ok(Json(Accepted {
        position: committed.last_position(),
    }))
}

async fn user_command(
    app: &AppState,
    admin: TenantAdmin,
    user_id: Uuid,
    command: UserCommand,
) -> Result<Json<Accepted>, Problem> {
    let TenantAdmin {
        tenant_id, context, ..
    } = admin;
    let committed = app
        .commands
        .execute_user_command(&context, tenant_id, UserId::from_uuid(user_id), command)
        .await
        .map_err(|e| command_problem(&e))?;
    Ok(Json(Accepted {
        position: committed.last_position(),
    }))
}

/// `POST /tenants/{tenant_id}/users/{user_id}/deactivate`: `DeactivateUser`.
#[utoipa::path(post, path = "/tenants/{tenant_id}/users/{user_id}/deactivate", tag = "users",
    params(("tenant_id" = Uuid, Path, description = "The tenant"), ("user_id" = Uuid, Path, description = "The user")),
    responses((status = 200, body = Accepted), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 503, body = Problem)))]
pub async fn deactivate_user(
    State(app): State<AppState>,
    admin: TenantAdmin,
    ApiPath((_, user_id)): ApiPath<(Uuid, Uuid)>,
) -> Result<Json<Accepted>, Problem> {
    user_command(&app, admin, user_id, UserCommand::DeactivateUser).await
}

/// `POST /tenants/{tenant_id}/users/{user_id}/reactivate`: `ReactivateUser`.
#[utoipa::path(post, path = "/tenants/{tenant_id}/users/{user_id}/reactivate", tag = "users",
    params(("tenant_id" = Uuid, Path, description = "The tenant"), ("user_id" = Uuid, Path, description = "The user")),
    responses((status = 200, body = Accepted), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 503, body = Problem)))]
pub async fn reactivate_user(
    State(app): State<AppState>,
    admin: TenantAdmin,
    ApiPath((_, user_id)): ApiPath<(Uuid, Uuid)>,
) -> Result<Json<Accepted>, Problem> {
    user_command(&app, admin, user_id, UserCommand::ReactivateUser).await
}

/// `DELETE /tenants/{tenant_id}/users/{user_id}/phone`: `RemovePhone` (a lost phone).
#[utoipa::path(delete, path = "/tenants/{tenant_id}/users/{user_id}/phone", tag = "users",
    params(("tenant_id" = Uuid, Path, description = "The tenant"), ("user_id" = Uuid, Path, description = "The user")),
    responses((status = 200, body = Accepted), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 503, body = Problem)))]
pub async fn remove_phone(
    State(app): State<AppState>,
    admin: TenantAdmin,
    ApiPath((_, user_id)): ApiPath<(Uuid, Uuid)>,
) -> Result<Json<Accepted>, Problem> {
    user_command(&app, admin, user_id, UserCommand::RemovePhone).await
}

/// `POST /tenants/{tenant_id}/users/{user_id}/password_link`: e-mails a new set-password link.
#[utoipa::path(post, path = "/tenants/{tenant_id}/users/{user_id}/password_link", tag = "users",
    params(("tenant_id" = Uuid, Path, description = "The tenant"), ("user_id" = Uuid, Path, description = "The user")),
    responses((status = 200, body = Accepted), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 503, body = Problem)))]
pub async fn send_password_link(
    State(app): State<AppState>,
    admin: TenantAdmin,
    ApiPath((_, user_id)): ApiPath<(Uuid, Uuid)>,
) -> Result<Json<Accepted>, Problem> {
    let TenantAdmin {
        tenant_id, context, ..
    } = admin;
    let committed = app
        .commands
        .issue_password_token(&context, tenant_id, UserId::from_uuid(user_id))
        .await
        .map_err(|e| command_problem(&e))?;
    Ok(Json(Accepted {
        position: committed.last_position(),
    }))
}

/// `ForgetUser`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForgetUserRequest {
    /// `data_subject_request`, `account_closed` or `retention_expired`.
    pub reason: String,
}

/// `POST /tenants/{tenant_id}/users/{user_id}/forget`: erases the person (AVG/GDPR).
#[utoipa::path(post, path = "/tenants/{tenant_id}/users/{user_id}/forget", tag = "users",
    params(("tenant_id" = Uuid, Path, description = "The tenant"), ("user_id" = Uuid, Path, description = "The user")),
    request_body = ForgetUserRequest,
    responses((status = 200, body = Accepted), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem)))]
pub async fn forget_user(
    State(app): State<AppState>,
    admin: TenantAdmin,
    ApiPath((_, user_id)): ApiPath<(Uuid, Uuid)>,
    ApiJson(body): ApiJson<ForgetUserRequest>,
) -> Result<Json<Accepted>, Problem> {
    let TenantAdmin {
        tenant_id, context, ..
    } = admin;
    let reason: ErasureReason = serde_json::from_value(serde_json::Value::String(body.reason))
        .map_err(|_| {
            Problem::new(
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                "erasure-reason-unknown",
                "Unprocessable Entity",
                "the reason must be data_subject_request, account_closed or retention_expired",
            )
            .with_field("reason")
        })?;
    let committed = app
        .commands
        .forget_user(&context, tenant_id, UserId::from_uuid(user_id), reason)
        .await
        .map_err(|e| command_problem(&e))?;
    Ok(Json(Accepted {
        position: committed.last_position(),
    }))
}

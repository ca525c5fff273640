//! Support's first question: whose account is this e-mail address? Platform-wide (an address
//! identifies one account), for support staff only, and recorded like every support read.

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use domain::values::EmailAddress;
use projections::login_page;

use super::auth::{Caller, Principal, StaffRole};
use super::json::ApiJson;
use super::problem::Problem;
use crate::startup::AppState;

/// The routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(look_up_user))
}

/// A caller holding a support token, checked before the body is read.
pub struct SupportStaff(Caller);

impl FromRequestParts<AppState> for SupportStaff {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if matches!(
            caller.principal,
            Principal::Staff {
                role: StaffRole::Support,
                ..
            }
        ) {
            Ok(Self(caller))
        } else {
            Err(Problem::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "Forbidden",
                "your role may not do this",
            ))
        }
    }
}

/// The address to look up.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupRequest {
    /// The e-mail address a caller gave.
    pub email: String,
}

/// The account behind an address.
#[derive(Debug, Serialize, ToSchema)]
pub struct LookupResponse {
    /// Its tenant.
    pub tenant_id: Uuid,
    /// The user.
    pub user_id: Uuid,
}

/// `POST /support/user_lookup`: the tenant and user of an e-mail address (support staff).
#[utoipa::path(post, path = "/support/user_lookup", tag = "support",
    request_body = LookupRequest,
    responses((status = 200, body = LookupResponse), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem)))]
pub async fn look_up_user(
    State(app): State<AppState>,
    SupportStaff(caller): SupportStaff,
    ApiJson(body): ApiJson<LookupRequest>,
) -> Result<Json<LookupResponse>, Problem> {
    let email = super::field("email", EmailAddress::parse(&body.email))?;
    let key = app.commands.keys().email_lookup.key_for(&email);
    let account = login_page::account(&app.pool, &key)
        .await
        .map_err(super::database)?
        .ok_or_else(Problem::not_found)?;
    caller
        .reader_of(
            &app.pool,
            account.tenant_id,
            "/support/user_lookup",
            Some(account.user_id),
        )
        .await?;
    Ok(Json(LookupResponse {
        tenant_id: account.tenant_id.as_uuid(),
        user_id: account.user_id.as_uuid(),
    }))
}

//! Routes anyone may call: health, the login page's first question, setting a password with the
//! link from an e-mail, and this API's OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use domain::metadata::ActorRole;
use domain::values::EmailAddress;
use projections::login_page::{self, LoginStep, PASSWORD_FORM};
use projections::runner::{ProjectorStatus, statuses};

use super::client::ClientAddress;
use super::json::ApiJson;
use super::problem::Problem;
use super::{Accepted, command_problem};
use crate::executor::CommandContext;
use crate::startup::AppState;

/// The routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(ready))
        .routes(routes!(metrics))
        .routes(routes!(login_options))
        .routes(routes!(set_password))
}

/// The health answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, `degraded` (a projector is stopped) or `unavailable` (the database).
    pub status: &'static str,
    /// `ok` or `unavailable`.
    pub database: &'static str,
    /// Every projector's position, lag and stop.
    #[schema(value_type = Vec<Object>)]
    pub projectors: Vec<ProjectorStatus>,
}

/// `GET /health`: 200 when the database answers and no projector is stopped; 503 otherwise,
/// naming the stopped projector and the event it stopped at.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn health(State(app): State<AppState>) -> (StatusCode, Json<Health>) {
    match statuses(&app.pool).await {
        Ok(projectors) if projectors.iter().any(|p| p.stopped.is_some()) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "degraded",
                database: "ok",
                projectors,
            }),
        ),
        Ok(projectors) => (
            StatusCode::OK,
            Json(Health {
                status: "ok",
                database: "ok",
                projectors,
            }),
        ),
        Err(error) => {
            tracing::warn!(error.message = %error, "health check: database unavailable");
            let body = Health {
                status: "unavailable",
                database: "unavailable",
                projectors: Vec::new(),
            };
            (StatusCode::SERVICE_UNAVAILABLE, Json(body))
        }
    }
}

/// Projector lag above which an instance is not ready for traffic (its reads would be stale).
pub const READY_LAG_EVENTS: i64 = 10_000;

/// `GET /ready`: 200 when the database answers, no projector is stopped and none lags more
/// than 10,000 events; 503 otherwise. For load balancers.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn ready(State(app): State<AppState>) -> (StatusCode, Json<Health>) {
    let (status, Json(health)) = health(State(app)).await;
    let lagging = health.projectors.iter().any(|p| p.lag > READY_LAG_EVENTS);
    if status == StatusCode::OK && lagging {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "lagging",
                ..health
            }),
        );
    }
    (status, Json(health))
}

/// `GET /metrics`: Prometheus text exposition of projector positions, lag and stops.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain"), (status = 503, body = Problem)))]
pub async fn metrics(
    State(app): State<AppState>,
) -> Result<([(axum::http::HeaderName, &'static str); 1], String), Problem> {
    use std::fmt::Write as _;
    let projectors = statuses(&app.pool).await.map_err(super::database)?;
    let mut text = String::new();
    let mut metric = |name: &str, help: &str, value: fn(&ProjectorStatus) -> i64| {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} gauge");
        for projector in &projectors {
            let _ = writeln!(
                text,
                "{name}{{projector=\"{}\"}} {}",
                projector.name,
                value(projector)
            );
        }
    };
    metric(
        "finteqx_projector_position",
        "Global position of the last applied event.",
        |p| p.position,
    );
    metric(
        "finteqx_projector_lag_events",
        "Events in the log after the projector's position.",
        |p| p.lag,
    );
    metric(
        "finteqx_projector_stopped",
        "1 when the projector is stopped at a poisoned event.",
        |p| i64::from(p.stopped.is_some()),
    );
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        text,
    ))
}

/// The login page's question.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginOptionsRequest {
    /// The e-mail address typed.
    pub email: String,
}

/// How to continue, by the address's domain alone: every address, known or not, gets the answer
/// of its domain (no account enumeration); the SMS and phone steps follow the password.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoginOptionsResponse {
    /// `password`, or `entra_id` when the address's domain is proven and bound to an Entra
    /// tenant (show the "Inloggen met Microsoft Entra ID" button; accounts of the domain that
    /// are not linked still sign in with their password).
    pub step: &'static str,
    /// For `entra_id`: the Entra tenant to send the user to.
    pub entra_tenant_id: Option<Uuid>,
    /// Show "your administrator must approve FinteQX in Microsoft Entra ID".
    pub consent_notice: bool,
}

/// `POST /login/options`: which way to sign in for an e-mail address.
#[utoipa::path(post, path = "/login/options", tag = "sign-in",
    request_body = LoginOptionsRequest,
    responses((status = 200, body = LoginOptionsResponse), (status = 422, body = Problem), (status = 429, body = Problem), (status = 503, body = Problem)))]
pub async fn login_options(
    State(app): State<AppState>,
    ClientAddress(client): ClientAddress,
    ApiJson(body): ApiJson<LoginOptionsRequest>,
) -> Result<Response, Problem> {
    if let Err(refused) = app.lookups.check(client) {
        return Ok(refused.into_response());
    }
    // A malformed address cannot have an account: answer like any other.
    let options = match EmailAddress::parse(&body.email) {
        Ok(email) => login_page::login_options(&app.pool, email.domain())
            .await
            .map_err(super::database)?,
        Err(_) => PASSWORD_FORM,
    };
    let (step, entra_tenant_id) = match options.step {
        LoginStep::Password => ("password", None),
        LoginStep::EntraId { entra_tenant_id } => ("entra_id", Some(entra_tenant_id.as_uuid())),
    };
    Ok(Json(LoginOptionsResponse {
        step,
        entra_tenant_id,
        consent_notice: options.consent_notice,
    })
    .into_response())
}

/// `SetPassword` with the link from an e-mail.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPasswordRequest {
    /// The token from the link.
    pub token: String,
    /// The new password (12–256 characters).
    #[schema(value_type = String)]
    pub password: SecretString,
}

/// `POST /password`: sets a password with a single-use, expiring link.
#[utoipa::path(post, path = "/password", tag = "sign-in",
    request_body = SetPasswordRequest,
    responses((status = 200, body = Accepted), (status = 422, body = Problem), (status = 503, body = Problem)))]
pub async fn set_password(
    State(app): State<AppState>,
    headers: axum::http::HeaderMap,
    ApiJson(body): ApiJson<SetPasswordRequest>,
) -> Result<Json<Accepted>, Problem> {
    let correlation_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let context = CommandContext {
        actor_id: "set-password-link".to_owned(),
        actor_role: ActorRole::Anonymous,
        on_behalf_of: None,
        tenant_id: None,
        correlation_id,
        occurred_at: chrono::Utc::now(),
    };
    let committed = app
        .commands
        .set_password(&context, &body.token, body.password)
        .await
        .map_err(|e| command_problem(&e))?;
    Ok(Json(Accepted {
        position: committed.last_position(),
    }))
}

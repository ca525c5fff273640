//! Support views (spec §2): a user's sign-in history and the tenant's outbound notification queue.
//!
//! Readers are the tenant's administrators and support staff ([`TenantReader`]); every support
//! read is recorded before it is answered. Answers carry no message bodies, codes, links or
//! secrets, and no personal data beyond ids.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use domain::ids::UserId;
use domain::user::UserCommand;
use projections::{notification_queue, sign_in_history};

use super::Accepted;
use super::auth::TenantReader;
use super::command_problem;
use super::path::ApiPath;
use super::problem::Problem;
use super::query::{ApiQuery, bad_parameter, limit};
use crate::startup::AppState;

/// The largest page of a support view.
pub const MAX_SUPPORT_PAGE: u32 = 500;
/// The delivery states of a queued message.
pub const MESSAGE_STATES: [&str; 4] = ["pending", "sent", "retrying", "dead"];

/// The routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(sign_ins))
        .routes(routes!(notifications))
        .routes(routes!(retry_notification))
}

/// How many sign-in attempts.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SignInsParams {
    /// At most this many attempts, newest first (1–500, default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
}

/// One sign-in attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct SignInResponse {
    /// The attempt.
    pub sign_in_id: Uuid,
    /// `password`, `password_and_sms` or `entra_id`.
    pub method: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Verification codes sent.
    pub codes_sent: i32,
    /// Wrong codes entered.
    pub wrong_codes: i32,
    /// `succeeded`, `failed`, `locked`, or absent while in progress.
    pub outcome: Option<String>,
    /// Why it failed or was locked, such as `{"kind": "wrong_password"}`.
    #[schema(value_type = Option<Object>)]
    pub reason: Option<Value>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
}

/// `GET /tenants/{tenant_id}/users/{user_id}/sign_ins`: the user's recent sign-in attempts,
/// newest first (empty for a user the tenant does not have).
#[utoipa::path(get, path = "/tenants/{tenant_id}/users/{user_id}/sign_ins", tag = "support",
    params(("tenant_id" = Uuid, Path, description = "The tenant"), ("user_id" = Uuid, Path, description = "The user"), SignInsParams),
    responses((status = 200, body = Vec<SignInResponse>), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem)))]
pub async fn sign_ins(
    State(app): State<AppState>,
    TenantReader { tenant_id, .. }: TenantReader,
    ApiPath((_, user_id)): ApiPath<(Uuid, Uuid)>,
    ApiQuery(params): ApiQuery<SignInsParams>,
) -> Result<Json<Vec<SignInResponse>>, Problem> {
    let limit = limit("limit", params.limit.as_deref(), 50, MAX_SUPPORT_PAGE)?;
    let records = sign_in_history::history(
        &app.pool,
        tenant_id,
        UserId::from_uuid(user_id),
        i64::from(limit),
    )
    .await
    .map_err(super::database)?;
    Ok(Json(
        records
            .into_iter()
            .map(|record| SignInResponse {
                sign_in_id: record.sign_in_id.as_uuid(),
                method: record.method,
                started_at: record.started_at,
                codes_sent: record.codes_sent,
                wrong_codes: record.wrong_codes,
                outcome: record.outcome,
                reason: record.reason,
                finished_at: record.finished_at,
            })
            .collect(),
    ))
}

/// Which queued messages.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NotificationsParams {
    /// Only messages in this delivery state: `pending`, `sent`, `retrying` or `dead`.
    pub state: Option<String>,
    /// At most this many messages, newest first (1–500, default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 500)]
    pub limit: Option<String>,
}

/// One queued e-mail or SMS, without its content.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationResponse {
    /// Stable id derived from the causing event: `{aggregate_type}/{aggregate_id}/{sequence}`.
    pub message_id: String,
    /// The recipient user.
    pub user_id: Uuid,
    /// `email` or `sms`.
    pub channel: String,
    /// What it is about, such as `welcome_set_password` or `sms_code`.
    pub kind: String,
    /// `pending`, `sent`, `retrying` or `dead`.
    pub state: String,
    /// Delivery attempts so far.
    pub attempts: i32,
    /// The last delivery error, with addresses and numbers masked.
    pub last_error: Option<String>,
    /// When the causing event was recorded.
    pub created_at: DateTime<Utc>,
}

/// `GET /tenants/{tenant_id}/notifications`: the tenant's outbound messages, newest first.
#[utoipa::path(get, path = "/tenants/{tenant_id}/notifications", tag = "support",
    params(("tenant_id" = Uuid, Path, description = "The tenant"), NotificationsParams),
    responses((status = 200, body = Vec<NotificationResponse>), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem)))]
pub async fn notifications(
    State(app): State<AppState>,
    TenantReader { tenant_id, .. }: TenantReader,
    ApiQuery(params): ApiQuery<NotificationsParams>,
) -> Result<Json<Vec<NotificationResponse>>, Problem> {
    let state = match params.state.as_deref() {
        Some(state) if !MESSAGE_STATES.contains(&state) => {
            return Err(bad_parameter(
                "state",
                "state-unknown",
                "state must be pending, sent, retrying or dead",
            ));
        }
        state => state,
    };
    let limit = limit("limit", params.limit.as_deref(), 100, MAX_SUPPORT_PAGE)?;
    let messages = notification_queue::messages(&app.pool, tenant_id, state, i64::from(limit))
        .await
        .map_err(super::database)?;
    Ok(Json(
        messages
            .into_iter()
            .map(|message| NotificationResponse {
                message_id: message.message_id,
                user_id: message.user_id.as_uuid(),
                channel: message.channel,
                kind: message.kind,
                state: message.state,
                attempts: message.attempts,
                last_error: message.last_error.as_deref().map(redact),
                created_at: message.created_at,
            })
            .collect(),
    ))
}

/// A delivery error as support may see it: words with an `@` (addresses) or six or more digits
/// (phone numbers) masked, and at most 300 characters.
fn redact(error: &str) -> String {
    let redacted: Vec<&str> = error
        .split_whitespace()
        .map(|word| {
            let digits = word.bytes().filter(u8::is_ascii_digit).count();
            if word.contains('@') || digits >= 6 {
                "[redacted]"
            } else {
                word
            }
        })
        .collect();
    redacted.join(" ").chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn delivery_errors_lose_addresses_and_numbers() {
        assert_eq!(
            redact("550 5.1.1 <anne@contoso.com>: mailbox unavailable"),
            "550 5.1.1 [redacted] mailbox unavailable"
        );
        assert_eq!(
            redact("number +31612345678 unreachable"),
            "number [redacted] unreachable"
        );
    }
}

/// `POST /tenants/{tenant_id}/notifications/{message_id}/retry`: queues a dead message again
/// (support or the tenant's administrators). The requeue is first recorded on the recipient's
/// stream as `NotificationRequeued`, with the caller as actor, so the audit history shows who
/// sent a message again and when.
#[utoipa::path(post, path = "/tenants/{tenant_id}/notifications/{message_id}/retry", tag = "support",
    params(("tenant_id" = Uuid, Path, description = "The tenant"), ("message_id" = String, Path, description = "The stable message id")),
    responses((status = 200, body = Accepted, description = "queued again"), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem, description = "`message-not-dead`"), (status = 503, body = Problem)))]
pub async fn retry_notification(
    State(app): State<AppState>,
    reader: TenantReader,
    ApiPath((_, message_id)): ApiPath<(Uuid, String)>,
) -> Result<Json<Accepted>, Problem> {
    let tenant_id = reader.tenant_id;
    let message = notification_queue::message(&app.pool, tenant_id, &message_id)
        .await
        .map_err(super::database)?
        .ok_or_else(Problem::not_found)?;
    if message.state != "dead" {
        return Err(not_dead());
    }
    let command = UserCommand::RequeueNotification {
        message_id: message_id.clone(),
        by_support: reader.is_support(),
    };
    let committed = app
        .commands
        .execute_user_command(&reader.context, tenant_id, message.user_id, command)
        .await
        .map_err(|e| command_problem(&e))?;
    // Recorded first: a requeue that fails after it (someone else requeued it meanwhile) leaves
    // a fact of the request, never a send without one.
    match notification_queue::retry_dead(&app.pool, tenant_id, &message_id).await {
        Ok(()) => Ok(Json(Accepted {
            position: committed.last_position(),
        })),
        Err(notification_queue::RetryError::NotFound) => Err(Problem::not_found()),
        Err(notification_queue::RetryError::NotDead) => Err(not_dead()),
        Err(notification_queue::RetryError::Database(error)) => Err(super::database(error)),
    }
}

fn not_dead() -> Problem {
    Problem::new(
        axum::http::StatusCode::CONFLICT,
        "message-not-dead",
        "Conflict",
        "only a dead message can be retried",
    )
}

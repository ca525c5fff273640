//! The auditors' routes (spec §3): a tenant's history page by page, its NDJSON export, the state of
//! the tenant or one of its users at a past instant, and who looked at what.
//!
//! Only staff tokens with the auditor role reach these routes ([`TenantAuditor`]); every read is
//! recorded in `support_reads` before it is answered. History and export show events exactly as
//! stored (personal fields sealed), so their hashes verify; the state routes open personal fields
//! with the person's key, or show them as erased.

use std::io;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::PgPool;
use tokio::io::{AsyncReadExt as _, BufWriter, DuplexStream};
use tokio::sync::oneshot;
use tracing::Instrument as _;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use domain::ids::{TenantId, UserId};
use domain::tenant::ConsentState;
use domain::values::{DisplayName, EmailAddress, MobileNumber, Personal};
use projections::audit::{
    self, AuditError, AuditEvent, Cursor, ExportQuery, HistoryFilter, HistoryQuery, MAX_PAGE_SIZE,
};
use projections::chain::Scope;

use super::auth::TenantAuditor;
use super::path::ApiPath;
use super::problem::Problem;
use super::query::{ApiQuery, bad_parameter, instant, limit, uuid};
use crate::personal_data::PersonalDataKeys;
use crate::startup::AppState;

/// The media type of the export.
pub const NDJSON: &str = "application/x-ndjson";
/// The default page size of the history.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// The most event types one history query may name.
pub const MAX_EVENT_TYPES: usize = 50;
/// How much of an export is buffered between the database and the client.
const EXPORT_CHUNK_BYTES: usize = 64 * 1024;

/// The routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(audit_events))
        .routes(routes!(audit_export))
        .routes(routes!(tenant_state))
        .routes(routes!(user_state))
        .routes(routes!(audit_reads))
}

/// A query of a tenant's history.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// Continue after this cursor: the `next` of the previous page (opaque).
    pub after: Option<String>,
    /// At most this many events (1–1000, default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    /// Only events about this user.
    #[param(value_type = Option<Uuid>)]
    pub user_id: Option<String>,
    /// Only events of these types, such as `MfaPolicySet`: repeat the parameter or separate the
    /// names with commas.
    #[param(value_type = Option<Vec<String>>, explode)]
    pub event_type: Option<String>,
    /// Only events recorded at or after this instant (RFC 3339).
    #[param(value_type = Option<DateTime<Utc>>)]
    pub from: Option<String>,
    /// Only events recorded before this instant (RFC 3339).
    #[param(value_type = Option<DateTime<Utc>>)]
    pub to: Option<String>,
}

/// One event as stored, with its place in the audit order; also the shape of an export line.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventResponse {
    /// Insertion order over all streams; with `tx_id` it forms the audit order.
    pub global_position: i64,
    /// The writing transaction's id.
    pub tx_id: u64,
    /// The aggregate's type name, such as `tenant` or `user`.
    pub aggregate_type: String,
    /// The stream id within the type.
    pub aggregate_id: String,
    /// The event's number within its stream, from 1.
    pub sequence: i64,
    /// The event's name, such as `MfaPolicySet`.
    pub event_type: String,
    /// The event's schema version.
    pub event_version: String,
    /// The event as stored (externally tagged JSON; personal fields sealed).
    #[schema(value_type = Object)]
    pub payload: Value,
    /// Who did it (actor and role), on whose behalf, when, the request id and the command.
    #[schema(value_type = Object)]
    pub metadata: Value,
    /// When the database recorded it.
    pub recorded_at: DateTime<Utc>,
    /// The event's chain hash, 64 hex digits.
    pub hash: String,
}

impl From<AuditEvent> for AuditEventResponse {
    fn from(event: AuditEvent) -> Self {
        Self {
            global_position: event.global_position,
            tx_id: event.tx_id,
            aggregate_type: event.aggregate_type,
            aggregate_id: event.aggregate_id,
            sequence: event.sequence,
            event_type: event.event_type,
            event_version: event.event_version,
            payload: event.payload,
            metadata: event.metadata,
            recorded_at: event.recorded_at,
            hash: event.hash.to_string(),
        }
    }
}

/// A page of history.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryPageResponse {
    /// The events, in audit order.
    pub events: Vec<AuditEventResponse>,
    /// Pass as `after` for the next page; absent when the history visible now is exhausted.
    pub next: Option<String>,
}

/// `GET /tenants/{tenant_id}/audit/events`: one page of the tenant's history in audit order.
#[utoipa::path(get, path = "/tenants/{tenant_id}/audit/events", tag = "audit",
    params(("tenant_id" = Uuid, Path, description = "The tenant"), HistoryParams),
    responses((status = 200, body = HistoryPageResponse), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem), (status = 500, body = Problem), (status = 503, body = Problem)))]
pub async fn audit_events(
    State(app): State<AppState>,
    TenantAuditor { tenant_id, .. }: TenantAuditor,
    ApiQuery(params): ApiQuery<HistoryParams>,
) -> Result<Json<HistoryPageResponse>, Problem> {
    let after = params
        .after
        .as_deref()
        .map(|after| {
            after.parse::<Cursor>().map_err(|error| {
                bad_parameter("after", "cursor-malformed", format!("after: {error}"))
            })
        })
        .transpose()?;
    let limit = limit(
        "limit",
        params.limit.as_deref(),
        DEFAULT_PAGE_SIZE,
        MAX_PAGE_SIZE,
    )?;
    let filter = history_filter(
        params.user_id.as_deref(),
        params.event_type.as_deref(),
        params.from.as_deref(),
        params.to.as_deref(),
    )?;
    let query = HistoryQuery {
        tenant_id,
        filter,
        after,
        limit,
    };
    let page = audit::tenant_history(&app.pool, &query)
        .await
        .map_err(audit_problem)?;
    Ok(Json(HistoryPageResponse {
        events: page
            .events
            .into_iter()
            .map(AuditEventResponse::from)
            .collect(),
        next: page.next.map(|cursor| cursor.to_string()),
    }))
}

/// The filters of the history and of the `events` export.
fn history_filter(
    user_id: Option<&str>,
    event_type: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<HistoryFilter, Problem> {
    let user_id = uuid("user_id", user_id)?.map(UserId::from_uuid);
    let event_types = event_type.map_or_else(|| Ok(Vec::new()), event_types)?;
    let (from, to) = (instant("from", from)?, instant("to", to)?);
    if let (Some(from), Some(to)) = (from, to)
        && to < from
    {
        return Err(bad_parameter(
            "to",
            "time-range-reversed",
            "to is before from",
        ));
    }
    Ok(HistoryFilter {
        user_id,
        event_types,
        from,
        to,
    })
}

/// Comma-separated event type names (repeated parameters arrive joined with commas).
fn event_types(names: &str) -> Result<Vec<String>, Problem> {
    let malformed = || {
        bad_parameter(
            "event_type",
            "event-type-malformed",
            format!(
                "event_type takes up to {MAX_EVENT_TYPES} event names of letters, digits and underscores, such as MfaPolicySet"
            ),
        )
    };
    let mut types: Vec<String> = Vec::new();
    for name in names.split(',').map(str::trim) {
        let valid = (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_');
        if !valid {
            return Err(malformed());
        }
        if !types.iter().any(|known| known == name) {
            types.push(name.to_owned());
        }
    }
    if types.len() > MAX_EVENT_TYPES {
        return Err(malformed());
    }
    Ok(types)
}

/// An audit read's failure as a problem; failures other than bad input and outages are logged
/// once here with their cause.
fn audit_problem(error: AuditError) -> Problem {
    match error {
        AuditError::LimitOutOfRange { .. } => {
            bad_parameter("limit", "limit-out-of-range", error.to_string())
        }
        AuditError::ReversedTimeRange => {
            bad_parameter("to", "time-range-reversed", error.to_string())
        }
        AuditError::InvalidCursor(_) => {
            bad_parameter("after", "cursor-malformed", error.to_string())
        }
        AuditError::Database(error) => super::database(error),
        other => {
            tracing::error!(error.message = %other, error.cause_chain = ?other, "audit read failed");
            internal()
        }
    }
}

/// 500 with an opaque body.
fn internal() -> Problem {
    Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "Internal Server Error",
        "the request failed; the cause was logged",
    )
}

/// What to export.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportParams {
    /// `verifiable` (default): the tenant's whole history with its hashes and signed checkpoints,
    /// framed by a header and an end line, for `finteqx audit verify` (ADR-0013); takes no
    /// filters. `events`: one history event per line, filtered like the history.
    pub format: Option<String>,
    /// With `format=events`: only events about this user.
    #[param(value_type = Option<Uuid>)]
    pub user_id: Option<String>,
    /// With `format=events`: only events of these types (repeat, or separate with commas).
    #[param(value_type = Option<Vec<String>>, explode)]
    pub event_type: Option<String>,
    /// With `format=events`: only events recorded at or after this instant (RFC 3339).
    #[param(value_type = Option<DateTime<Utc>>)]
    pub from: Option<String>,
    /// With `format=events`: only events recorded before this instant (RFC 3339).
    #[param(value_type = Option<DateTime<Utc>>)]
    pub to: Option<String>,
}

/// An export to run.
enum ExportJob {
    Verifiable(TenantId),
    Events(ExportQuery),
}

/// `GET /tenants/{tenant_id}/audit/export`: the tenant's history as NDJSON, streamed from one
/// consistent snapshot. A failure before the first byte is a problem; a failure after it aborts
/// the response, so a truncated export never looks complete.
#[utoipa::path(get, path = "/tenants/{tenant_id}/audit/export", tag = "audit",
    params(("tenant_id" = Uuid, Path, description = "The tenant"), ExportParams),
    responses(
        (status = 200, description = "One JSON document per line", content_type = "application/x-ndjson", body = String),
        (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem), (status = 500, body = Problem), (status = 503, body = Problem)))]
pub async fn audit_export(
    State(app): State<AppState>,
    TenantAuditor { tenant_id, .. }: TenantAuditor,
    ApiQuery(params): ApiQuery<ExportParams>,
) -> Result<Response, Problem> {
    let verifiable = match params.format.as_deref() {
        None | Some("verifiable") => true,
        Some("events") => false,
        Some(_) => {
            return Err(bad_parameter(
                "format",
                "format-unknown",
                "format must be verifiable or events",
            ));
        }
    };
    let filter = history_filter(
        params.user_id.as_deref(),
        params.event_type.as_deref(),
        params.from.as_deref(),
        params.to.as_deref(),
    )?;
    let job = if verifiable {
        let given = [
            ("user_id", params.user_id.is_some()),
            ("event_type", params.event_type.is_some()),
            ("from", params.from.is_some()),
            ("to", params.to.is_some()),
        ];
        if let Some((field, _)) = given.into_iter().find(|(_, given)| *given) {
            return Err(bad_parameter(
                field,
                "filter-needs-events-format",
                format!("a verifiable export holds the whole history; {field} needs format=events"),
            ));
        }
        ExportJob::Verifiable(tenant_id)
    } else {
        ExportJob::Events(ExportQuery { tenant_id, filter })
    };
    let body = stream_export(app.pool.clone(), job).await?;
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(NDJSON));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(disposition) = HeaderValue::from_str(&format!(
        "attachment; filename=\"audit-{tenant_id}.ndjson\""
    )) {
        headers.insert(header::CONTENT_DISPOSITION, disposition);
    }
    Ok(response)
}

/// Runs the export on its own task into a pipe and answers with the pipe as the body: the history
/// is never held in memory, and a slow client slows the database read down.
async fn stream_export(pool: PgPool, job: ExportJob) -> Result<Body, Problem> {
    let (writer, mut reader) = tokio::io::duplex(EXPORT_CHUNK_BYTES);
    let (done, result) = oneshot::channel();
    tokio::spawn(
        async move {
            let outcome = run_export(&pool, job, writer).await;
            // Nobody waits any more when the client went away.
            done.send(outcome).ok();
        }
        .in_current_span(),
    );
    let first = read_chunk(&mut reader).await.map_err(|error| {
        tracing::error!(error.message = %error, "the export pipe failed");
        internal()
    })?;
    let Some(first) = first else {
        // Nothing was written: the export is empty or failed before its first byte.
        return match result.await {
            Ok(Ok(())) => Ok(Body::empty()),
            Ok(Err(error)) => Err(audit_problem(error)),
            Err(_) => Err(internal()),
        };
    };
    let rest = futures::stream::unfold(Some((reader, result)), |state| async move {
        let (mut reader, result) = state?;
        match read_chunk(&mut reader).await {
            Ok(Some(chunk)) => Some((Ok(chunk), Some((reader, result)))),
            Ok(None) => match result.await {
                Ok(Ok(())) => None,
                Ok(Err(error)) => {
                    tracing::error!(error.message = %error, error.cause_chain = ?error, "the audit export failed while streaming");
                    Some((Err(io::Error::other(error.to_string())), None))
                }
                Err(_) => Some((
                    Err(io::Error::other("the export ended without a result")),
                    None,
                )),
            },
            Err(error) => Some((Err(error), None)),
        }
    });
    let stream = futures::stream::once(async move { Ok::<_, io::Error>(first) }).chain(rest);
    Ok(Body::from_stream(stream))
}

async fn run_export(pool: &PgPool, job: ExportJob, writer: DuplexStream) -> Result<(), AuditError> {
    let mut writer = BufWriter::with_capacity(EXPORT_CHUNK_BYTES, writer);
    match job {
        ExportJob::Verifiable(tenant_id) => {
            audit::export_verifiable(pool, Scope::Tenant(tenant_id), &mut writer)
                .await
                .map(drop)
        }
        ExportJob::Events(query) => audit::export_ndjson(pool, &query, &mut writer)
            .await
            .map(drop),
    }
}

/// The next chunk of the pipe, or `None` at its end.
async fn read_chunk(reader: &mut DuplexStream) -> io::Result<Option<Bytes>> {
    let mut buffer = vec![0; EXPORT_CHUNK_BYTES];
    let read = reader.read(&mut buffer).await?;
    if read == 0 {
        return Ok(None);
    }
    buffer.truncate(read);
    Ok(Some(Bytes::from(buffer)))
}

/// The instant a state is asked for.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StateParams {
    /// The instant (RFC 3339); absent means now. Events recorded at exactly this instant count.
    #[param(value_type = Option<DateTime<Utc>>)]
    pub at: Option<String>,
}

/// A tenant as its events left it at an instant.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantStateResponse {
    /// The tenant.
    pub tenant_id: Uuid,
    /// The instant asked about.
    pub at: DateTime<Utc>,
    /// Tenant name then.
    pub display_name: String,
    /// `nl` or `en`.
    pub default_locale: &'static str,
    /// SMS was required for users who do not sign in through Entra ID.
    pub sms_required: bool,
    /// The Entra admin consents recorded by then.
    pub consents: Vec<ConsentResponse>,
}

/// A recorded Entra admin consent.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsentResponse {
    /// The Entra tenant (`tid`).
    pub entra_tenant_id: Uuid,
    /// `granted` or `refused`.
    pub state: &'static str,
}

/// `GET /tenants/{tenant_id}/audit/state`: the tenant's policy and consents at an instant.
#[utoipa::path(get, path = "/tenants/{tenant_id}/audit/state", tag = "audit",
    params(("tenant_id" = Uuid, Path, description = "The tenant"), StateParams),
    responses((status = 200, body = TenantStateResponse), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, description = "The tenant did not exist at that instant", body = Problem), (status = 422, body = Problem), (status = 500, body = Problem), (status = 503, body = Problem)))]
pub async fn tenant_state(
    State(app): State<AppState>,
    TenantAuditor { tenant_id, .. }: TenantAuditor,
    ApiQuery(params): ApiQuery<StateParams>,
) -> Result<Json<TenantStateResponse>, Problem> {
    let at = instant("at", params.at.as_deref())?.unwrap_or_else(Utc::now);
    let tenant = audit::tenant_state_at(&app.pool, tenant_id, at)
        .await
        .map_err(audit_problem)?
        .ok_or_else(Problem::not_found)?;
    let profile = tenant.profile().ok_or_else(Problem::not_found)?;
    Ok(Json(TenantStateResponse {
        tenant_id: tenant_id.as_uuid(),
        at,
        display_name: profile.display_name.as_str().to_owned(),
        default_locale: profile.default_locale.as_str(),
        sms_required: tenant.sms_required(),
        consents: tenant
            .consents()
            .map(|(entra_tenant_id, state)| ConsentResponse {
                entra_tenant_id: entra_tenant_id.as_uuid(),
                state: match state {
                    ConsentState::Granted => "granted",
                    ConsentState::Refused => "refused",
                },
            })
            .collect(),
    }))
}

/// A user as their events left them at an instant. Personal fields are opened with the person's
/// key; after erasure they are absent and `personal_data_erased` is set.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserStateResponse {
    /// The user.
    pub user_id: Uuid,
    /// The instant asked about.
    pub at: DateTime<Utc>,
    /// The person was erased since: their personal fields can no longer be read.
    pub personal_data_erased: bool,
    /// E-mail then, unless erased.
    pub email: Option<String>,
    /// Display name then, unless erased.
    pub display_name: Option<String>,
    /// `administrator` or `user`.
    pub role: &'static str,
    /// `nl` or `en`.
    pub locale: &'static str,
    /// Not deactivated.
    pub active: bool,
    /// `entra_id` when linked to Entra ID, otherwise `password` (plus SMS by policy).
    pub signs_in_with: &'static str,
    /// The domain the user was linked to Entra ID through.
    pub entra_domain: Option<String>,
    /// That domain's Entra tenant at link time.
    pub entra_tenant_id: Option<Uuid>,
    /// The first Entra sign-in had bound the identity.
    pub entra_identity_bound: bool,
    /// A password was set.
    pub has_password: bool,
    /// A set-password link was outstanding and not expired.
    pub password_link_outstanding: bool,
    /// A phone was enrolled.
    pub phone_enrolled: bool,
    /// The enrolled phone, masked (`+31*******78`), unless erased.
    pub phone: Option<String>,
}

/// `GET /tenants/{tenant_id}/users/{user_id}/audit/state`: the user's account at an instant.
#[utoipa::path(get, path = "/tenants/{tenant_id}/users/{user_id}/audit/state", tag = "audit",
    params(("tenant_id" = Uuid, Path, description = "The tenant"), ("user_id" = Uuid, Path, description = "The user"), StateParams),
    responses((status = 200, body = UserStateResponse), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, description = "The tenant had no such account at that instant", body = Problem), (status = 422, body = Problem), (status = 500, body = Problem), (status = 503, body = Problem)))]
pub async fn user_state(
    State(app): State<AppState>,
    TenantAuditor { tenant_id, .. }: TenantAuditor,
    ApiPath((_, user_id)): ApiPath<(Uuid, Uuid)>,
    ApiQuery(params): ApiQuery<StateParams>,
) -> Result<Json<UserStateResponse>, Problem> {
    let at = instant("at", params.at.as_deref())?.unwrap_or_else(Utc::now);
    let user = audit::user_state_at(&app.pool, tenant_id, UserId::from_uuid(user_id), at)
        .await
        .map_err(audit_problem)?;
    let account = user
        .as_ref()
        .and_then(|user| user.account_in(tenant_id))
        .ok_or_else(Problem::not_found)?;
    let keys = app.commands.personal_data();
    let email: Personal<EmailAddress> = open(keys, &account.email).await?;
    let display_name: Personal<DisplayName> = open(keys, &account.display_name).await?;
    let phone: Option<Personal<MobileNumber>> = match &account.phone {
        Some(phone) => Some(open(keys, phone).await?),
        None => None,
    };
    let erased = [
        matches!(email, Personal::Erased { .. }),
        matches!(display_name, Personal::Erased { .. }),
        matches!(phone, Some(Personal::Erased { .. })),
    ]
    .contains(&true);
    Ok(Json(UserStateResponse {
        user_id,
        at,
        personal_data_erased: erased,
        email: email.known().map(ToString::to_string),
        display_name: display_name.known().map(|name| name.as_str().to_owned()),
        role: account.role.as_str(),
        locale: account.locale.as_str(),
        active: account.active,
        signs_in_with: if account.entra.is_some() {
            "entra_id"
        } else {
            "password"
        },
        entra_domain: account
            .entra
            .as_ref()
            .map(|link| link.domain.as_str().to_owned()),
        entra_tenant_id: account
            .entra
            .as_ref()
            .map(|link| link.entra_tenant_id.as_uuid()),
        entra_identity_bound: account
            .entra
            .as_ref()
            .is_some_and(|link| link.identity.is_some()),
        has_password: account.credential.is_some(),
        password_link_outstanding: account
            .password_token
            .is_some_and(|token| token.expires_at > at),
        phone_enrolled: account.phone.is_some(),
        phone: phone
            .as_ref()
            .and_then(Personal::known)
            .map(MobileNumber::masked),
    }))
}

/// Opens a personal field as the event log stores it: readable, or erased; never sealed.
async fn open<T>(keys: &PersonalDataKeys, field: &Personal<T>) -> Result<Personal<T>, Problem>
where
    T: Serialize + DeserializeOwned,
{
    let stored = serde_json::to_value(field).map_err(|error| {
        tracing::error!(error.message = %error, "a personal field does not encode");
        internal()
    })?;
    let opened: Personal<T> = keys.open(&stored).await.map_err(super::sealing)?;
    match opened {
        Personal::Sealed { subject, .. } => Ok(Personal::Erased { subject }),
        other => Ok(other),
    }
}

/// Paging of the recorded staff reads.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReadsParams {
    /// Continue after this cursor: the `next` of the previous page.
    pub after: Option<String>,
    /// At most this many reads (1–1000, default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
}

/// One recorded staff read: who looked at what, and when.
#[derive(Debug, Serialize, ToSchema)]
pub struct StaffReadResponse {
    /// The staff token that read (its id, never the token).
    pub token_id: Uuid,
    /// Who holds that token, as recorded when it was issued.
    pub holder: Option<String>,
    /// `support` or `auditor`.
    pub role: String,
    /// The route template read, such as `/tenants/{tenant_id}/users/{user_id}/sign_ins`.
    pub route: String,
    /// The user the read was about, if any.
    pub user_id: Option<Uuid>,
    /// When.
    pub read_at: DateTime<Utc>,
}

/// A page of recorded reads.
#[derive(Debug, Serialize, ToSchema)]
pub struct StaffReadsPage {
    /// The reads, oldest first.
    pub reads: Vec<StaffReadResponse>,
    /// Pass as `after` for the next page; absent when no more reads are recorded yet.
    pub next: Option<String>,
}

/// `GET /tenants/{tenant_id}/audit/reads`: the support and auditor reads of the tenant, oldest
/// first (this read included).
#[utoipa::path(get, path = "/tenants/{tenant_id}/audit/reads", tag = "audit",
    params(("tenant_id" = Uuid, Path, description = "The tenant"), ReadsParams),
    responses((status = 200, body = StaffReadsPage), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem)))]
pub async fn audit_reads(
    State(app): State<AppState>,
    TenantAuditor { tenant_id, .. }: TenantAuditor,
    ApiQuery(params): ApiQuery<ReadsParams>,
) -> Result<Json<StaffReadsPage>, Problem> {
    let after = params
        .after
        .as_deref()
        .map(|after| {
            after
                .parse::<i64>()
                .ok()
                .filter(|id| *id >= 0 && after.bytes().all(|byte| byte.is_ascii_digit()))
                .ok_or_else(|| {
                    bad_parameter(
                        "after",
                        "cursor-malformed",
                        "after must be the next of a previous page",
                    )
                })
        })
        .transpose()?;
    let limit = limit(
        "limit",
        params.limit.as_deref(),
        DEFAULT_PAGE_SIZE,
        MAX_PAGE_SIZE,
    )?;
    type Row = (
        i64,
        Uuid,
        Option<String>,
        String,
        String,
        Option<Uuid>,
        DateTime<Utc>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT r.id, r.token_id, t.holder, r.role, r.route, r.user_id, r.read_at \
         FROM support_reads r LEFT JOIN staff_tokens t ON t.token_id = r.token_id \
         WHERE r.tenant_id = $1 AND r.id > $2 ORDER BY r.id LIMIT $3",
    )
    .bind(tenant_id.as_uuid())
    .bind(after.unwrap_or(0))
    .bind(i64::from(limit))
    .fetch_all(&app.pool)
    .await
    .map_err(super::database)?;
    let full = rows.len() >= usize::try_from(limit).unwrap_or(usize::MAX);
    let next = if full {
        rows.last().map(|row| row.0.to_string())
    } else {
        None
    };
    Ok(Json(StaffReadsPage {
        reads: rows
            .into_iter()
            .map(
                |(_, token_id, holder, role, route, user_id, read_at)| StaffReadResponse {
                    token_id,
                    holder,
                    role,
                    route,
                    user_id,
                    read_at,
                },
            )
            .collect(),
        next,
    }))
}

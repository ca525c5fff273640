//! The auditors' reads of the event log (spec §3): a tenant's history page by page, its NDJSON
//! export, and the state of a tenant or a user at a past instant.
//!
//! Everything here is plain SQL over `events`. History is read in the commit-safe order of
//! ADR-0006, `(tx_id, global_position)`, and only below the oldest transaction still in flight, so
//! a page never shows an event while an earlier one may still commit, and a cursor taken from a
//! page never skips a late committer. Nothing is read through cqrs-es's `QueryReplay`: with
//! postgres-es 0.5 a database error ends its stream early and `replay_all` still returns `Ok`.
//! Here a failed read is always an error.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use futures::TryStreamExt;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use sqlx::{PgPool, Postgres, QueryBuilder};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use domain::ids::{TenantId, UserId};
use domain::tenant::Tenant;
use domain::user::User;

use crate::chain::{Digest, Scope};
use crate::log_chain::{ChainError, checkpoints_of};
use crate::position::TxId;
use crate::verify::{EXPORT_FORMAT, ExportEnd, ExportHeader, ExportLine, ExportedEvent};

/// The largest page an auditor may ask for.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// A place in the audit order `(tx_id, global_position)`, written as the stable string
/// `"<tx_id>-<global_position>"`.
///
/// Cursors compare in audit order. Clients treat the string as opaque; it stays valid for as long
/// as the log exists, because the log is append-only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cursor {
    tx_id: u64,
    global_position: i64,
}

impl Cursor {
    /// The writing transaction's id (`xid8`).
    pub const fn tx_id(&self) -> u64 {
        self.tx_id
    }

    /// The event's global position.
    pub const fn global_position(&self) -> i64 {
        self.global_position
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.tx_id, self.global_position)
    }
}

/// Why a cursor string does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    /// There is no `-` between the transaction id and the position.
    #[error("the cursor has no '-' between transaction id and position")]
    MissingSeparator,
    /// The part before the `-` is not an unsigned 64-bit decimal number.
    #[error("the cursor's transaction id is not a decimal number")]
    InvalidTxId,
    /// The part after the `-` is not a non-negative 64-bit decimal number.
    #[error("the cursor's position is not a decimal number")]
    InvalidPosition,
}

impl FromStr for Cursor {
    type Err = CursorError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let (tx_id, position) = input.split_once('-').ok_or(CursorError::MissingSeparator)?;
        Ok(Self {
            tx_id: parse_digits(tx_id).ok_or(CursorError::InvalidTxId)?,
            global_position: parse_digits(position).ok_or(CursorError::InvalidPosition)?,
        })
    }
}

/// Parses ASCII digits only: `str::parse` would also take a sign, and a cursor has one spelling.
fn parse_digits<T: FromStr>(digits: &str) -> Option<T> {
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

impl Serialize for Cursor {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cursor {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// One event as auditors see it; also the shape of one NDJSON export line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Insertion order over all streams; with `tx_id` it forms the audit order.
    pub global_position: i64,
    /// The writing transaction's id.
    pub tx_id: u64,
    /// The aggregate's frozen type name, such as `tenant` or `user`.
    pub aggregate_type: String,
    /// The stream id within the type.
    pub aggregate_id: String,
    /// The event's number within its stream, from 1.
    pub sequence: i64,
    /// The frozen event name, such as `MfaPolicySet`.
    pub event_type: String,
    /// The event's schema version.
    pub event_version: String,
    /// The event as stored: serde's externally tagged JSON.
    pub payload: Value,
    /// Who did it, for whom, when, in which request and by which command.
    pub metadata: Value,
    /// When the database recorded it (the writing transaction's start).
    pub recorded_at: DateTime<Utc>,
    /// The event's chain hash, computed by the database at INSERT over its stored fields and its
    /// predecessor's hash (ADR-0012).
    pub hash: Digest,
}

impl AuditEvent {
    /// The event's place in the audit order, to continue reading after it.
    pub const fn cursor(&self) -> Cursor {
        Cursor {
            tx_id: self.tx_id,
            global_position: self.global_position,
        }
    }
}

/// Which of a tenant's events to read; every field left empty selects all of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryFilter {
    /// Only events about this user (the payload's `user_id`).
    pub user_id: Option<UserId>,
    /// Only events of these types; empty means every type.
    pub event_types: Vec<String>,
    /// Only events recorded at or after this instant.
    pub from: Option<DateTime<Utc>>,
    /// Only events recorded before this instant.
    pub to: Option<DateTime<Utc>>,
}

/// One page of a tenant's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryQuery {
    /// The tenant whose events are read.
    pub tenant_id: TenantId,
    /// Which events.
    pub filter: HistoryFilter,
    /// Start after this place; `None` starts at the beginning.
    pub after: Option<Cursor>,
    /// At most this many events, 1 to [`MAX_PAGE_SIZE`].
    pub limit: u32,
}

/// A page of history and where the next one starts.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryPage {
    /// The events, in audit order.
    pub events: Vec<AuditEvent>,
    /// The cursor for the next page; `None` when this page came back short, so the history
    /// visible now is exhausted.
    pub next: Option<Cursor>,
}

/// A tenant's whole filtered history, for export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportQuery {
    /// The tenant whose events are exported.
    pub tenant_id: TenantId,
    /// Which events.
    pub filter: HistoryFilter,
}

/// Why an audit read failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The page size is not within 1 to [`MAX_PAGE_SIZE`].
    #[error("the page size {limit} is not within 1..={MAX_PAGE_SIZE}")]
    LimitOutOfRange {
        /// The size asked for.
        limit: u32,
    },
    /// The time range ends before it starts.
    #[error("the time range ends before it starts")]
    ReversedTimeRange,
    /// A cursor string that does not parse.
    #[error("the cursor is malformed")]
    InvalidCursor(#[from] CursorError),
    /// A stored payload that does not deserialize into its aggregate's event type; it is never
    /// skipped, because a state folded without it would be wrong.
    #[error("the event at position {global_position} ({event_type}) does not decode")]
    Undecodable {
        /// Where the event is.
        global_position: i64,
        /// Its stored type name.
        event_type: String,
        /// Why it does not decode.
        #[source]
        source: serde_json::Error,
    },
    /// The database failed, also in the middle of a stream.
    #[error("the event log could not be read")]
    Database(#[from] sqlx::Error),
    /// An event could not be encoded as a JSON line.
    #[error("an event could not be encoded as JSON")]
    Encode(#[source] serde_json::Error),
    /// The export's writer failed.
    #[error("the export could not be written")]
    Write(#[source] std::io::Error),
    /// The signed checkpoints could not be read.
    #[error("the signed checkpoints could not be read")]
    Checkpoints(#[from] ChainError),
}

/// Reads one page of a tenant's history in audit order.
///
/// # Errors
/// [`AuditError::LimitOutOfRange`], [`AuditError::ReversedTimeRange`] for bad input, or
/// [`AuditError::Database`].
#[tracing::instrument(skip_all, fields(tenant.id = %query.tenant_id, limit = query.limit))]
pub async fn tenant_history(
    pool: &PgPool,
    query: &HistoryQuery,
) -> Result<HistoryPage, AuditError> {
    if !(1..=MAX_PAGE_SIZE).contains(&query.limit) {
        return Err(AuditError::LimitOutOfRange { limit: query.limit });
    }
    let mut sql = history_sql(query.tenant_id, &query.filter, query.after)?;
    sql.push(" LIMIT ").push_bind(i64::from(query.limit));
    let events: Vec<AuditEvent> = sql
        .build_query_as::<EventRow>()
        .fetch_all(pool)
        .await?
        .into_iter()
        .map(AuditEvent::from)
        .collect();
    let full = u32::try_from(events.len()).is_ok_and(|count| count >= query.limit);
    let next = if full {
        events.last().map(AuditEvent::cursor)
    } else {
        None
    };
    Ok(HistoryPage { events, next })
}

/// Streams a tenant's whole filtered history to `writer` as NDJSON, one [`AuditEvent`] per line
/// in audit order, and returns the number of lines.
///
/// Rows are streamed from one statement, so the export is one consistent snapshot of the log and
/// needs no memory for the whole history. Each line is one `write_all`, so wrap a file or a
/// socket in a `BufWriter`; `writer` is flushed at the end.
///
/// # Errors
/// [`AuditError::ReversedTimeRange`] for bad input, [`AuditError::Database`] also when the
/// database fails after some lines were written (the output is then incomplete and must be
/// discarded), [`AuditError::Encode`], or [`AuditError::Write`].
#[tracing::instrument(skip_all, fields(tenant.id = %query.tenant_id))]
pub async fn export_ndjson<W>(
    pool: &PgPool,
    query: &ExportQuery,
    writer: &mut W,
) -> Result<u64, AuditError>
where
    W: AsyncWrite + Unpin,
{
    let mut sql = history_sql(query.tenant_id, &query.filter, None)?;
    let mut rows = sql.build_query_as::<EventRow>().fetch(pool);
    let mut line = Vec::with_capacity(1024);
    let mut lines = 0_u64;
    while let Some(row) = rows.try_next().await? {
        line.clear();
        serde_json::to_writer(&mut line, &AuditEvent::from(row)).map_err(AuditError::Encode)?;
        line.push(b'\n');
        writer.write_all(&line).await.map_err(AuditError::Write)?;
        lines += 1;
    }
    writer.flush().await.map_err(AuditError::Write)?;
    Ok(lines)
}

/// Streams the verifiable export of `scope` to `writer` (ADR-0013) and returns its end line.
///
/// The export is NDJSON: a header naming the scope, every event of the scope in audit order with
/// its stored hash (in a tenant's export, with the hash of a predecessor that belongs to another
/// tenant), the scope's signed checkpoints, and an end line with the counts and key ids. Events
/// and checkpoints are read in one repeatable-read snapshot, so every exported checkpoint covers
/// only exported events unless events were removed. `verify::verify_export` checks it offline.
///
/// # Errors
/// [`AuditError::Database`] (the output is then incomplete and must be discarded),
/// [`AuditError::Checkpoints`], [`AuditError::Encode`], or [`AuditError::Write`].
#[tracing::instrument(skip_all, fields(audit.scope = %scope))]
pub async fn export_verifiable<W>(
    pool: &PgPool,
    scope: Scope,
    writer: &mut W,
) -> Result<ExportEnd, AuditError>
where
    W: AsyncWrite + Unpin,
{
    let mut transaction = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *transaction)
        .await?;
    let mut line = Vec::with_capacity(1024);
    let header = ExportLine::Header(ExportHeader {
        format: EXPORT_FORMAT,
        scope,
    });
    write_line(writer, &mut line, &header).await?;
    let mut events = 0_u64;
    {
        // The predecessor's hash travels only where the predecessor is another tenant's: an
        // e-mail or domain claim stream that moved between tenants.
        let sql = match scope {
            Scope::WholeLog => {
                "SELECT e.global_position, e.tx_id, e.aggregate_type, e.aggregate_id, \
                        e.sequence, e.event_type, e.event_version, e.payload, e.metadata, \
                        e.recorded_at, e.hash, NULL::bytea AS foreign_predecessor_hash \
                 FROM events e \
                 WHERE e.tx_id < pg_snapshot_xmin(pg_current_snapshot()) \
                 ORDER BY e.tx_id, e.global_position"
            }
            Scope::Tenant(_) => {
                "SELECT e.global_position, e.tx_id, e.aggregate_type, e.aggregate_id, \
                        e.sequence, e.event_type, e.event_version, e.payload, e.metadata, \
                        e.recorded_at, e.hash, \
                        (SELECT p.hash FROM events p \
                         WHERE p.aggregate_type = e.aggregate_type AND p.aggregate_id = e.aggregate_id \
                           AND p.sequence = e.sequence - 1 \
                           AND p.tenant_id IS DISTINCT FROM e.tenant_id) AS foreign_predecessor_hash \
                 FROM events e \
                 WHERE e.tx_id < pg_snapshot_xmin(pg_current_snapshot()) AND e.tenant_id = $1 \
                 ORDER BY e.tx_id, e.global_position"
            }
        };
        let query = sqlx::query_as::<_, VerifiableRow>(sql);
        let query = match scope {
            Scope::WholeLog => query,
            Scope::Tenant(tenant_id) => query.bind(tenant_id.as_uuid()),
        };
        let mut rows = query.fetch(&mut *transaction);
        while let Some(row) = rows.try_next().await? {
            let event = ExportLine::Event(Box::new(ExportedEvent {
                event: AuditEvent::from(row.event),
                foreign_predecessor_hash: row.foreign_predecessor_hash,
            }));
            write_line(writer, &mut line, &event).await?;
            events += 1;
        }
    }
    let checkpoints = checkpoints_of(&mut transaction, scope).await?;
    transaction.rollback().await?;
    let mut key_ids: Vec<String> = Vec::new();
    for checkpoint in &checkpoints {
        if !key_ids.contains(&checkpoint.key_id) {
            key_ids.push(checkpoint.key_id.clone());
        }
    }
    let end = ExportEnd {
        events,
        checkpoints: checkpoints.len() as u64,
        key_ids,
    };
    for checkpoint in checkpoints {
        write_line(writer, &mut line, &ExportLine::Checkpoint(checkpoint)).await?;
    }
    write_line(writer, &mut line, &ExportLine::End(end.clone())).await?;
    writer.flush().await.map_err(AuditError::Write)?;
    Ok(end)
}

async fn write_line<W>(
    writer: &mut W,
    buffer: &mut Vec<u8>,
    line: &ExportLine,
) -> Result<(), AuditError>
where
    W: AsyncWrite + Unpin,
{
    buffer.clear();
    buffer.extend_from_slice(line.to_json().map_err(AuditError::Encode)?.as_bytes());
    buffer.push(b'\n');
    writer.write_all(buffer).await.map_err(AuditError::Write)
}

/// The tenant as its events recorded at or before `at` left it; `None` if it had none by then.
///
/// # Errors
/// [`AuditError::Undecodable`] when one of those events does not deserialize, or
/// [`AuditError::Database`].
#[tracing::instrument(skip_all, fields(tenant.id = %tenant_id, %at))]
pub async fn tenant_state_at(
    pool: &PgPool,
    tenant_id: TenantId,
    at: DateTime<Utc>,
) -> Result<Option<Tenant>, AuditError> {
    state_at(pool, &tenant_id.to_string(), at, Tenant::evolve).await
}

/// The user as its events recorded at or before `at` left it; `None` if it had none by then or
/// belongs to another tenant than `tenant_id`.
///
/// # Errors
/// [`AuditError::Undecodable`] when one of those events does not deserialize, or
/// [`AuditError::Database`].
#[tracing::instrument(skip_all, fields(tenant.id = %tenant_id, user.id = %user_id, %at))]
pub async fn user_state_at(
    pool: &PgPool,
    tenant_id: TenantId,
    user_id: UserId,
    at: DateTime<Utc>,
) -> Result<Option<User>, AuditError> {
    let user = state_at(pool, &user_id.to_string(), at, User::evolve).await?;
    Ok(user.filter(|user| user.account_in(tenant_id).is_some()))
}

/// Folds one stream's visible events recorded at or before `at`, in stream order.
async fn state_at<A>(
    pool: &PgPool,
    aggregate_id: &str,
    at: DateTime<Utc>,
    evolve: fn(&mut A, A::Event),
) -> Result<Option<A>, AuditError>
where
    A: Aggregate,
{
    // The same visibility as the history, so a state never contains an event the auditor's
    // history does not show yet. Within a stream, later sequences have later transaction ids,
    // so the filter only ever cuts off a tail.
    let mut rows = sqlx::query_as::<_, (i64, String, Value)>(
        "SELECT global_position, event_type, payload FROM events \
         WHERE aggregate_type = $1 AND aggregate_id = $2 AND recorded_at <= $3 \
           AND tx_id < pg_snapshot_xmin(pg_current_snapshot()) \
         ORDER BY sequence",
    )
    .bind(A::TYPE)
    .bind(aggregate_id)
    .bind(at)
    .fetch(pool);
    let mut state: Option<A> = None;
    while let Some((global_position, event_type, payload)) = rows.try_next().await? {
        let event = serde_json::from_value(payload).map_err(|source| AuditError::Undecodable {
            global_position,
            event_type,
            source,
        })?;
        evolve(state.get_or_insert_with(A::default), event);
    }
    Ok(state)
}

/// The history statement without its `LIMIT`: only the predicates a query needs, so each
/// combination gets its own prepared plan on the `(tenant_id, tx_id, global_position)` index.
fn history_sql(
    tenant_id: TenantId,
    filter: &HistoryFilter,
    after: Option<Cursor>,
) -> Result<QueryBuilder<'_, Postgres>, AuditError> {
    if let (Some(from), Some(to)) = (filter.from, filter.to)
        && to < from
    {
        return Err(AuditError::ReversedTimeRange);
    }
    let mut sql = QueryBuilder::new(
        "SELECT global_position, tx_id, aggregate_type, aggregate_id, sequence, \
                event_type, event_version, payload, metadata, recorded_at, hash \
         FROM events \
         WHERE tx_id < pg_snapshot_xmin(pg_current_snapshot()) AND tenant_id = ",
    );
    sql.push_bind(tenant_id.as_uuid());
    if let Some(cursor) = after {
        sql.push(" AND (tx_id, global_position) > (")
            .push_bind(TxId(cursor.tx_id))
            .push(", ")
            .push_bind(cursor.global_position)
            .push(")");
    }
    if let Some(user_id) = filter.user_id {
        sql.push(" AND user_id = ").push_bind(user_id.as_uuid());
    }
    if !filter.event_types.is_empty() {
        sql.push(" AND event_type = ANY(")
            .push_bind(filter.event_types.as_slice())
            .push(")");
    }
    if let Some(from) = filter.from {
        sql.push(" AND recorded_at >= ").push_bind(from);
    }
    if let Some(to) = filter.to {
        sql.push(" AND recorded_at < ").push_bind(to);
    }
    sql.push(" ORDER BY tx_id, global_position");
    Ok(sql)
}

/// One row of the history statement.
#[derive(sqlx::FromRow)]
struct EventRow {
    global_position: i64,
    tx_id: TxId,
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    event_version: String,
    payload: Value,
    metadata: Value,
    recorded_at: DateTime<Utc>,
    hash: Digest,
}

impl From<EventRow> for AuditEvent {
    fn from(row: EventRow) -> Self {
        Self {
            global_position: row.global_position,
            tx_id: row.tx_id.0,
            aggregate_type: row.aggregate_type,
            aggregate_id: row.aggregate_id,
            sequence: row.sequence,
            event_type: row.event_type,
            event_version: row.event_version,
            payload: row.payload,
            metadata: row.metadata,
            recorded_at: row.recorded_at,
            hash: row.hash,
        }
    }
}

/// One row of the verifiable export.
#[derive(sqlx::FromRow)]
struct VerifiableRow {
    #[sqlx(flatten)]
    event: EventRow,
    foreign_predecessor_hash: Option<Digest>,
}

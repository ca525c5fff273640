//! The catch-up runner shared by every projector (ADR-0010).
//!
//! A batch is one transaction: read the next events in commit-safe order (ADR-0006); if there are
//! any, lock the projector's checkpoint row (`FOR UPDATE SKIP LOCKED`, so one instance at a time),
//! apply their row changes, advance the checkpoint, commit. A crash anywhere loses and duplicates nothing. An
//! event that cannot be applied stops its projector with the reason recorded on the checkpoint
//! row; it is never skipped.

use std::future::Future;
use std::time::Duration;

use sqlx::{PgConnection, PgPool};

use crate::background::{LoopHealth, Wakeup};
use crate::envelope::{EVENT_COLUMNS, Envelope, EventRow, LogPosition};
use crate::position::TxId;

/// A read model built from the log.
pub trait Projector: Send + Sync + 'static {
    /// Frozen name: the key of its checkpoint row.
    const NAME: &'static str;
    /// The tables it owns, all written only by it.
    const TABLES: &'static [&'static str];
    /// One row change.
    type Change: Send;

    /// The row changes an event calls for. Pure and dumb: the event carries the data.
    fn changes(event: &Envelope) -> Vec<Self::Change>;

    /// Executes one change. Table names are unqualified, so that a rebuild can aim the same SQL
    /// at scratch tables through `search_path`.
    fn write(
        connection: &mut PgConnection,
        change: Self::Change,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
}

/// Events per batch transaction.
pub const BATCH_SIZE: i64 = 500;
/// How long a runner sleeps when no notification wakes it.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// The first look-again delay while events are held back by an open transaction.
const HELD_BACK_FIRST_WAIT: Duration = Duration::from_millis(2);
/// The channel the events table's trigger notifies on commit.
pub const EVENTS_CHANNEL: &str = "events_appended";

/// What one batch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Applied this many events; the checkpoint is now `checkpoint`.
    Applied {
        /// Events applied.
        events: usize,
        /// The new checkpoint.
        checkpoint: LogPosition,
    },
    /// Nothing new to apply.
    CaughtUp,
    /// Nothing visible yet, but later events exist behind a transaction still open somewhere
    /// (ADR-0006): look again shortly, no notification will say when it ends.
    HeldBack,
    /// Another instance is applying a batch of this projector right now.
    Busy,
    /// The projector is stopped at a poisoned event.
    Stopped {
        /// Why, as recorded.
        reason: String,
    },
}

/// Why a projector did not advance.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// The database failed; the batch was rolled back and will be retried.
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// An event could not be applied; the projector is stopped there.
    #[error("projector {projector} stopped at event {position}: {reason}")]
    Poisoned {
        /// The projector.
        projector: String,
        /// The event's global position.
        position: i64,
        /// Why.
        reason: String,
    },
    /// No checkpoint row: the projector is unknown to the database.
    #[error("no checkpoint for projector {0}")]
    UnknownProjector(String),
}

/// Where a batch writes: the live tables, or scratch tables in another schema (rebuild, verify),
/// optionally not beyond a position.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub checkpoint: String,
    pub schema: Option<String>,
    pub until: Option<LogPosition>,
}

impl Target {
    pub(crate) fn live<P: Projector>() -> Self {
        Self {
            checkpoint: P::NAME.to_owned(),
            schema: None,
            until: None,
        }
    }
}

enum BatchError {
    Database(sqlx::Error),
    /// `applied_before` events of the batch preceded the poisoned one.
    Poisoned {
        position: i64,
        reason: String,
        applied_before: i64,
    },
    Unknown,
}

impl From<sqlx::Error> for BatchError {
    fn from(error: sqlx::Error) -> Self {
        Self::Database(error)
    }
}

/// Applies one batch of `P` to the live tables.
///
/// # Errors
/// [`ProjectionError::Poisoned`] when an event cannot be applied (the projector is then stopped),
/// [`ProjectionError::Database`] on a database failure (nothing was applied).
pub async fn run_batch<P: Projector>(pool: &PgPool) -> Result<BatchOutcome, ProjectionError> {
    run_batch_into::<P>(pool, &Target::live::<P>()).await
}

/// Applies batches of `P` until it has caught up (or is busy elsewhere, or stopped).
///
/// # Errors
/// As [`run_batch`].
pub async fn run_to_end<P: Projector>(pool: &PgPool) -> Result<usize, ProjectionError> {
    let mut applied = 0;
    while let BatchOutcome::Applied { events, .. } = run_batch::<P>(pool).await? {
        applied += events;
    }
    Ok(applied)
}

pub(crate) async fn run_batch_into<P: Projector>(
    pool: &PgPool,
    target: &Target,
) -> Result<BatchOutcome, ProjectionError> {
    let mut limit = BATCH_SIZE;
    loop {
        let mut transaction = pool.begin().await?;
        match apply_batch::<P>(&mut transaction, target, limit).await {
            Ok(outcome) => {
                transaction.commit().await?;
                return Ok(outcome);
            }
            Err(BatchError::Database(error)) => return Err(error.into()),
            Err(BatchError::Unknown) => {
                return Err(ProjectionError::UnknownProjector(target.checkpoint.clone()));
            }
            Err(BatchError::Poisoned { applied_before, .. }) if applied_before > 0 => {
                // Apply everything before the poisoned event; the next batch starts at it.
                transaction.rollback().await?;
                limit = applied_before;
            }
            Err(BatchError::Poisoned {
                position, reason, ..
            }) => {
                transaction.rollback().await?;
                record_stop(pool, &target.checkpoint, position, &reason).await?;
                tracing::error!(projector = %target.checkpoint, event.position = position, reason = %reason, "projector stopped at an event it cannot apply");
                return Err(ProjectionError::Poisoned {
                    projector: target.checkpoint.clone(),
                    position,
                    reason,
                });
            }
        }
    }
}

/// Deletes an erased person's rows from one of a projector's tables.
pub(crate) async fn delete_person(
    connection: &mut PgConnection,
    table: &'static str,
    tenant_id: domain::ids::TenantId,
    user_id: domain::ids::UserId,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "DELETE FROM {table} WHERE tenant_id = $1 AND user_id = $2"
    ))
    .bind(tenant_id.as_uuid())
    .bind(user_id.as_uuid())
    .execute(connection)
    .await?;
    Ok(())
}

/// Applies batches on an open transaction until caught up, for the rebuild swap.
pub(crate) async fn catch_up_on<P: Projector>(
    connection: &mut PgConnection,
    target: &Target,
) -> Result<(), ProjectionError> {
    loop {
        match apply_batch::<P>(connection, target, BATCH_SIZE).await {
            Ok(BatchOutcome::Applied { .. }) => {}
            Ok(BatchOutcome::Stopped { reason }) => {
                return Err(ProjectionError::Poisoned {
                    projector: target.checkpoint.clone(),
                    position: 0,
                    reason,
                });
            }
            Ok(_) => return Ok(()),
            Err(BatchError::Database(error)) => return Err(error.into()),
            Err(BatchError::Unknown) => {
                return Err(ProjectionError::UnknownProjector(target.checkpoint.clone()));
            }
            Err(BatchError::Poisoned {
                position, reason, ..
            }) => {
                return Err(ProjectionError::Poisoned {
                    projector: target.checkpoint.clone(),
                    position,
                    reason,
                });
            }
        }
    }
}

async fn apply_batch<P: Projector>(
    connection: &mut PgConnection,
    target: &Target,
    limit: i64,
) -> Result<BatchOutcome, BatchError> {
    if let Some(schema) = &target.schema {
        // `schema` is built from a projector's constant name, never from input.
        sqlx::query(&format!("SET LOCAL search_path TO {schema}, public"))
            .execute(&mut *connection)
            .await?;
    }
    // Look before locking: the lock takes a transaction id, and an open transaction id holds
    // every projector's commit-safe horizon back (ADR-0006), so a runner with nothing to do must
    // not take one.
    let checkpoint: Option<(TxId, i64, Option<String>)> = sqlx::query_as(
        "SELECT last_tx, last_position, stop_reason FROM public.projector_checkpoints \
         WHERE name = $1",
    )
    .bind(&target.checkpoint)
    .fetch_optional(&mut *connection)
    .await?;
    let Some((last_tx, last_position, stop_reason)) = checkpoint else {
        return Err(BatchError::Unknown);
    };
    if let Some(reason) = stop_reason {
        return Ok(BatchOutcome::Stopped { reason });
    }
    let mut rows = next_events(connection, target, (last_tx, last_position), limit).await?;
    if rows.is_empty() {
        return held_back(connection, target, (last_tx, last_position)).await;
    }
    let locked: Option<(TxId, i64)> = sqlx::query_as(
        "SELECT last_tx, last_position FROM public.projector_checkpoints \
         WHERE name = $1 FOR UPDATE SKIP LOCKED",
    )
    .bind(&target.checkpoint)
    .fetch_optional(&mut *connection)
    .await?;
    let Some((locked_tx, locked_position)) = locked else {
        return Ok(BatchOutcome::Busy);
    };
    if (locked_tx, locked_position) != (last_tx, last_position) {
        // Another runner advanced meanwhile: read again from where it left off, under the lock.
        rows = next_events(connection, target, (locked_tx, locked_position), limit).await?;
    }
    let Some(last) = rows.last() else {
        return Ok(BatchOutcome::CaughtUp);
    };
    let (new_tx, new_position) = (last.tx_id, last.global_position);
    let events = rows.len();
    for (applied_before, row) in (0_i64..).zip(rows) {
        let position = row.global_position;
        let poisoned = |reason: String| BatchError::Poisoned {
            position,
            reason,
            applied_before,
        };
        let envelope = row.decode().map_err(|error| poisoned(error.to_string()))?;
        for change in P::changes(&envelope) {
            P::write(connection, change)
                .await
                .map_err(|error| classify(error, poisoned))?;
        }
    }
    sqlx::query(
        "UPDATE public.projector_checkpoints SET last_tx = $2, last_position = $3 WHERE name = $1",
    )
    .bind(&target.checkpoint)
    .bind(new_tx)
    .bind(new_position)
    .execute(&mut *connection)
    .await?;
    Ok(BatchOutcome::Applied {
        events,
        checkpoint: LogPosition {
            tx_id: new_tx.0,
            position: new_position,
        },
    })
}

/// The next events after `after` below the commit-safe horizon (and `target.until`).
async fn next_events(
    connection: &mut PgConnection,
    target: &Target,
    after: (TxId, i64),
    limit: i64,
) -> Result<Vec<EventRow>, sqlx::Error> {
    // Two statements rather than one with `$4 IS NULL OR …`: a prepared statement's generic plan
    // cannot drop that disjunction and leaves the ordered index scan for a scan of the log.
    match target.until {
        None => {
            sqlx::query_as(&format!(
                "SELECT {EVENT_COLUMNS} FROM public.events \
                 WHERE (tx_id, global_position) > ($1, $2) \
                   AND tx_id < pg_snapshot_xmin(pg_current_snapshot()) \
                 ORDER BY tx_id, global_position LIMIT $3"
            ))
            .bind(after.0)
            .bind(after.1)
            .bind(limit)
            .fetch_all(connection)
            .await
        }
        Some(until) => {
            sqlx::query_as(&format!(
                "SELECT {EVENT_COLUMNS} FROM public.events \
                 WHERE (tx_id, global_position) > ($1, $2) \
                   AND (tx_id, global_position) <= ($4, $5) \
                   AND tx_id < pg_snapshot_xmin(pg_current_snapshot()) \
                 ORDER BY tx_id, global_position LIMIT $3"
            ))
            .bind(after.0)
            .bind(after.1)
            .bind(limit)
            .bind(until.tx())
            .bind(until.position)
            .fetch_all(connection)
            .await
        }
    }
}

/// `HeldBack` when a live projector has later events beyond the horizon, else `CaughtUp`.
async fn held_back(
    connection: &mut PgConnection,
    target: &Target,
    after: (TxId, i64),
) -> Result<BatchOutcome, BatchError> {
    if target.until.is_some() {
        return Ok(BatchOutcome::CaughtUp);
    }
    let later: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM public.events WHERE (tx_id, global_position) > ($1, $2))",
    )
    .bind(after.0)
    .bind(after.1)
    .fetch_one(connection)
    .await?;
    Ok(if later {
        BatchOutcome::HeldBack
    } else {
        BatchOutcome::CaughtUp
    })
}

/// A constraint or data error is the event's fault (poison); anything else is the database's
/// (retry).
fn classify(error: sqlx::Error, poisoned: impl FnOnce(String) -> BatchError) -> BatchError {
    let is_poison = matches!(&error, sqlx::Error::Database(db) if db.code().is_some_and(|code| code.starts_with("22") || code.starts_with("23")));
    if is_poison {
        poisoned(error.to_string())
    } else {
        BatchError::Database(error)
    }
}

async fn record_stop(
    pool: &PgPool,
    checkpoint: &str,
    position: i64,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE public.projector_checkpoints SET stopped_at = now(), stopped_position = $2, stop_reason = $3 WHERE name = $1",
    )
    .bind(checkpoint)
    .bind(position)
    .bind(reason)
    .execute(pool)
    .await?;
    Ok(())
}

/// Clears a projector's stop so it retries the event it stopped at (after a fix was deployed).
///
/// # Errors
/// A database error.
pub async fn resume(pool: &PgPool, projector: &str) -> Result<bool, sqlx::Error> {
    let result = sqlx::query(
        "UPDATE projector_checkpoints SET stopped_at = NULL, stopped_position = NULL, stop_reason = NULL WHERE name = $1",
    )
    .bind(projector)
    .execute(pool)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// Runs `P` until `shutdown` completes: drains the log, then sleeps until a commit notifies
/// [`EVENTS_CHANNEL`] or [`POLL_INTERVAL`] passes. A failing database is retried with back-off
/// ([`LoopHealth`]), logged once when it goes down and once when it is back.
pub async fn run_until<P: Projector>(pool: PgPool, shutdown: impl Future<Output = ()> + Send) {
    let mut wakeup = Wakeup::new(pool.clone(), EVENTS_CHANNEL);
    let mut health = LoopHealth::new(format!("projector {}", P::NAME));
    tokio::pin!(shutdown);
    let mut held_back_wait = HELD_BACK_FIRST_WAIT;
    loop {
        let mut held_back = false;
        let mut failed = None;
        loop {
            match run_batch::<P>(&pool).await {
                Ok(BatchOutcome::Applied { .. }) => {
                    health.succeeded();
                    held_back_wait = HELD_BACK_FIRST_WAIT;
                }
                Ok(BatchOutcome::HeldBack) => {
                    health.succeeded();
                    held_back = true;
                    break;
                }
                Ok(_) | Err(ProjectionError::Poisoned { .. }) => {
                    health.succeeded();
                    break;
                }
                Err(error) => {
                    failed = Some(health.failed(&error));
                    break;
                }
            }
        }
        // Held back by an open transaction: its commit notifies nobody, so look again soon,
        // backing off towards the poll interval.
        let wait = if let Some(backoff) = failed {
            backoff
        } else if held_back {
            let wait = held_back_wait;
            held_back_wait = (held_back_wait * 2).min(POLL_INTERVAL);
            wait
        } else {
            held_back_wait = HELD_BACK_FIRST_WAIT;
            POLL_INTERVAL
        };
        tokio::select! {
            () = &mut shutdown => return,
            () = async {
                if failed.is_some() {
                    tokio::time::sleep(wait).await;
                } else {
                    wakeup.wait(wait).await;
                }
            } => {}
        }
    }
}

/// Waits until projector `projector` has applied the event at `position`, for at most
/// `timeout`. Returns whether it did.
///
/// # Errors
/// A database error.
pub async fn wait_for(
    pool: &PgPool,
    projector: &str,
    position: i64,
    timeout: Duration,
) -> Result<bool, sqlx::Error> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let passed: Option<bool> = sqlx::query_scalar(
            "SELECT (e.tx_id, e.global_position) <= (c.last_tx, c.last_position) \
             FROM events e, projector_checkpoints c WHERE e.global_position = $2 AND c.name = $1",
        )
        .bind(projector)
        .bind(position)
        .fetch_optional(pool)
        .await?;
        if passed == Some(true) {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A projector's progress, for health checks and metrics.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProjectorStatus {
    /// The projector.
    pub name: String,
    /// The position of the last applied event.
    pub position: i64,
    /// Events in the log after it (an upper bound: positions are not gap-free).
    pub lag: i64,
    /// Set when stopped at a poisoned event.
    pub stopped: Option<StoppedAt>,
}

/// Where and why a projector stopped.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StoppedAt {
    /// The event's global position.
    pub position: Option<i64>,
    /// Why.
    pub reason: String,
}

/// The progress of every live projector.
///
/// # Errors
/// A database error.
pub async fn statuses(pool: &PgPool) -> Result<Vec<ProjectorStatus>, sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Row {
        name: String,
        last_position: i64,
        lag: i64,
        stopped_position: Option<i64>,
        stop_reason: Option<String>,
    }
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT c.name, c.last_position, \
                GREATEST(coalesce((SELECT max(global_position) FROM events), 0) - c.last_position, 0) AS lag, \
                c.stopped_position, c.stop_reason \
         FROM projector_checkpoints c WHERE c.name NOT LIKE '%#%' ORDER BY c.name",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| ProjectorStatus {
            name: row.name,
            position: row.last_position,
            lag: row.lag,
            stopped: row.stop_reason.map(|reason| StoppedAt {
                position: row.stopped_position,
                reason,
            }),
        })
        .collect())
}

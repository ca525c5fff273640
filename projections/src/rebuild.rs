//! Rebuilding a projection from position 0 while the service runs, and verifying that a rebuild
//! equals the live tables (spec §2).
//!
//! Both project the whole log into scratch copies of the projector's tables, in a schema of
//! their own, with the projector's own SQL aimed there through `search_path`. A rebuild then
//! locks the live checkpoint (pausing the live runner for a moment), catches the scratch copy up,
//! and replaces the live rows in one transaction: readers see the old rows until the commit and
//! the new ones after it. A verify instead stops at the live checkpoint and compares.

use serde_json::Value;
use sqlx::{PgConnection, PgPool};

use crate::envelope::LogPosition;
use crate::position::TxId;
use crate::runner::{
    BatchOutcome, ProjectionError, Projector, Target, catch_up_on, run_batch_into,
};

/// How many differing rows a verify reports per table.
const MAX_REPORTED_DIFFERENCES: i64 = 20;

/// What a rebuild did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuildReport {
    /// The projector.
    pub projector: &'static str,
    /// Events applied to the scratch copy before the swap.
    pub events: usize,
}

/// A row present on one side only.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RowDifference {
    /// The table.
    pub table: &'static str,
    /// `live` (only in the live table) or `rebuilt` (only in the rebuild).
    pub side: String,
    /// The row.
    pub row: Value,
}

/// The result of a verify.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct VerifyReport {
    /// The projector.
    pub projector: &'static str,
    /// The live checkpoint both sides were compared at.
    pub at_position: i64,
    /// Rows that differ (at most 20 per table); empty when equal.
    pub differences: Vec<RowDifference>,
}

impl VerifyReport {
    /// Whether the rebuild equals the live tables.
    pub fn is_equal(&self) -> bool {
        self.differences.is_empty()
    }
}

fn scratch_schema<P: Projector>() -> String {
    format!("rebuild_{}", P::NAME)
}

fn scratch_checkpoint<P: Projector>() -> String {
    format!("{}#rebuild", P::NAME)
}

async fn prepare_scratch<P: Projector>(pool: &PgPool) -> Result<Target, sqlx::Error> {
    let schema = scratch_schema::<P>();
    let checkpoint = scratch_checkpoint::<P>();
    let mut transaction = pool.begin().await?;
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .execute(&mut *transaction)
        .await?;
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut *transaction)
        .await?;
    for table in P::TABLES {
        sqlx::query(&format!(
            "CREATE TABLE {schema}.{table} (LIKE public.{table} INCLUDING ALL)"
        ))
        .execute(&mut *transaction)
        .await?;
    }
    sqlx::query(
        "INSERT INTO projector_checkpoints (name) VALUES ($1) ON CONFLICT (name) DO UPDATE \
         SET last_tx = '0', last_position = 0, stopped_at = NULL, stopped_position = NULL, stop_reason = NULL",
    )
    .bind(&checkpoint)
    .execute(&mut *transaction)
    .await?;
    transaction.commit().await?;
    Ok(Target {
        checkpoint,
        schema: Some(schema),
        until: None,
    })
}

async fn drop_scratch<P: Projector>(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "DROP SCHEMA IF EXISTS {} CASCADE",
        scratch_schema::<P>()
    ))
    .execute(pool)
    .await?;
    sqlx::query("DELETE FROM projector_checkpoints WHERE name = $1")
        .bind(scratch_checkpoint::<P>())
        .execute(pool)
        .await?;
    Ok(())
}

async fn fill_scratch<P: Projector>(
    pool: &PgPool,
    target: &Target,
) -> Result<usize, ProjectionError> {
    let mut events = 0;
    loop {
        match run_batch_into::<P>(pool, target).await? {
            BatchOutcome::Applied {
                events: applied, ..
            } => events += applied,
            BatchOutcome::Stopped { reason } => {
                return Err(ProjectionError::Poisoned {
                    projector: target.checkpoint.clone(),
                    position: 0,
                    reason,
                });
            }
            BatchOutcome::CaughtUp | BatchOutcome::HeldBack | BatchOutcome::Busy => {
                return Ok(events);
            }
        }
    }
}

/// Locks the live checkpoint row for the rest of the transaction and returns it.
async fn lock_live<P: Projector>(
    connection: &mut PgConnection,
) -> Result<LogPosition, ProjectionError> {
    let row: Option<(TxId, i64)> =
        sqlx::query_as("SELECT last_tx, last_position FROM public.projector_checkpoints WHERE name = $1 FOR UPDATE")
            .bind(P::NAME)
            .fetch_optional(&mut *connection)
            .await?;
    let (tx, position) =
        row.ok_or_else(|| ProjectionError::UnknownProjector(P::NAME.to_owned()))?;
    Ok(LogPosition {
        tx_id: tx.0,
        position,
    })
}

/// Rebuilds `P` from position 0 and switches the live tables to the result.
///
/// # Errors
/// A database error, or [`ProjectionError::Poisoned`] when an event cannot be applied (the live
/// tables are then untouched).
pub async fn rebuild<P: Projector>(pool: &PgPool) -> Result<RebuildReport, ProjectionError> {
    let target = prepare_scratch::<P>(pool).await?;
    let events = fill_scratch::<P>(pool, &target).await?;
    let schema = scratch_schema::<P>();
    let mut transaction = pool.begin().await?;
    lock_live::<P>(&mut transaction).await?;
    catch_up_on::<P>(&mut transaction, &target).await?;
    for table in P::TABLES {
        sqlx::query(&format!("DELETE FROM public.{table}"))
            .execute(&mut *transaction)
            .await?;
        sqlx::query(&format!(
            "INSERT INTO public.{table} SELECT * FROM {schema}.{table}"
        ))
        .execute(&mut *transaction)
        .await?;
    }
    sqlx::query(
        "UPDATE public.projector_checkpoints live SET last_tx = scratch.last_tx, last_position = scratch.last_position, \
         stopped_at = NULL, stopped_position = NULL, stop_reason = NULL \
         FROM public.projector_checkpoints scratch WHERE live.name = $1 AND scratch.name = $2",
    )
    .bind(P::NAME)
    .bind(&target.checkpoint)
    .execute(&mut *transaction)
    .await?;
    transaction.commit().await?;
    drop_scratch::<P>(pool).await?;
    tracing::info!(projector = P::NAME, events, "projection rebuilt");
    Ok(RebuildReport {
        projector: P::NAME,
        events,
    })
}

/// Rebuilds `P` into scratch tables up to the live checkpoint and compares them with the live
/// tables. Changes nothing live.
///
/// # Errors
/// A database error, or [`ProjectionError::Poisoned`].
pub async fn verify<P: Projector>(pool: &PgPool) -> Result<VerifyReport, ProjectionError> {
    let target = prepare_scratch::<P>(pool).await?;
    // Most of the work without holding the live runner, bounded by where it is now.
    let mut transaction = pool.begin().await?;
    let live_now = lock_live::<P>(&mut transaction).await?;
    transaction.rollback().await?;
    fill_scratch::<P>(
        pool,
        &Target {
            until: Some(live_now),
            ..target.clone()
        },
    )
    .await?;
    // Then the rest, with the live runner paused at its checkpoint.
    let schema = scratch_schema::<P>();
    let mut transaction = pool.begin().await?;
    let live = lock_live::<P>(&mut transaction).await?;
    catch_up_on::<P>(
        &mut transaction,
        &Target {
            until: Some(live),
            ..target.clone()
        },
    )
    .await?;
    let mut differences = Vec::new();
    for table in P::TABLES {
        let rows: Vec<(String, Value)> = sqlx::query_as(&format!(
            "(SELECT 'live', to_jsonb(only_live) FROM (SELECT * FROM public.{table} EXCEPT ALL SELECT * FROM {schema}.{table}) only_live LIMIT $1) \
             UNION ALL \
             (SELECT 'rebuilt', to_jsonb(only_rebuilt) FROM (SELECT * FROM {schema}.{table} EXCEPT ALL SELECT * FROM public.{table}) only_rebuilt LIMIT $1)"
        ))
        .bind(MAX_REPORTED_DIFFERENCES)
        .fetch_all(&mut *transaction)
        .await?;
        differences.extend(
            rows.into_iter()
                .map(|(side, row)| RowDifference { table, side, row }),
        );
    }
    transaction.rollback().await?;
    drop_scratch::<P>(pool).await?;
    Ok(VerifyReport {
        projector: P::NAME,
        at_position: live.position,
        differences,
    })
}

//! Ending a user's sessions when their account changes (spec §1, Sessions): the cutoff that every
//! session check compares with, and the open session rows.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use domain::ids::{TenantId, UserId};

/// Ends every session of the user created at or before `at`, in one transaction: moves the
/// user's cutoff forward (never back) and marks their open sessions ended.
pub(super) async fn end_all(
    pool: &PgPool,
    tenant_id: TenantId,
    user_id: UserId,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let mut transaction = pool.begin().await?;
    sqlx::query(
        "INSERT INTO session_cutoffs (tenant_id, user_id, sessions_ended_at) VALUES ($1, $2, $3) \
         ON CONFLICT (tenant_id, user_id) DO UPDATE \
         SET sessions_ended_at = GREATEST(session_cutoffs.sessions_ended_at, EXCLUDED.sessions_ended_at)",
    )
    .bind(tenant_id.as_uuid())
    .bind(user_id.as_uuid())
    .bind(at)
    .execute(&mut *transaction)
    .await?;
    sqlx::query(
        "UPDATE sessions SET ended_at = $3 \
         WHERE tenant_id = $1 AND user_id = $2 AND ended_at IS NULL AND created_at <= $3",
    )
    .bind(tenant_id.as_uuid())
    .bind(user_id.as_uuid())
    .bind(at)
    .execute(&mut *transaction)
    .await?;
    transaction.commit().await
}

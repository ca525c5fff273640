//! The password verifier table (ADR-0008): rows are written before the event that names them
//! and deleted when they are superseded or removed.

use sqlx::PgPool;

use domain::ids::{CredentialId, TenantId, UserId};

/// Stores a new verifier.
pub(super) async fn insert(
    pool: &PgPool,
    credential_id: CredentialId,
    tenant_id: TenantId,
    user_id: UserId,
    phc: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO password_credentials (credential_id, tenant_id, user_id, phc) VALUES ($1, $2, $3, $4)")
        .bind(credential_id.as_uuid())
        .bind(tenant_id.as_uuid())
        .bind(user_id.as_uuid())
        .bind(phc)
        .execute(pool)
        .await?;
    Ok(())
}

/// The verifier's PHC string.
pub(super) async fn phc(
    pool: &PgPool,
    credential_id: CredentialId,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT phc FROM password_credentials WHERE credential_id = $1")
        .bind(credential_id.as_uuid())
        .fetch_optional(pool)
        .await
}

/// Deletes every verifier of the user except `keep`.
pub(super) async fn delete_all_but(
    pool: &PgPool,
    tenant_id: TenantId,
    user_id: UserId,
    keep: Option<CredentialId>,
) -> Result<u64, sqlx::Error> {
    let result = sqlx::query(
        "DELETE FROM password_credentials WHERE tenant_id = $1 AND user_id = $2 AND credential_id IS DISTINCT FROM $3",
    )
    .bind(tenant_id.as_uuid())
    .bind(user_id.as_uuid())
    .bind(keep.map(|id| id.as_uuid()))
    .execute(pool)
    .await?;
    Ok(result.rows_affected())
}

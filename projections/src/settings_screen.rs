//! The settings screen: the tenant's policy, its domains and every user with their sign-in state.

use sqlx::PgPool;

use domain::ids::TenantId;
use domain::values::DomainName;

/// How many users of the tenant are linked to Entra ID through `domain` now.
///
/// # Errors
/// A database error.
pub async fn linked_user_count(
    pool: &PgPool,
    tenant_id: TenantId,
    domain: &DomainName,
) -> Result<u32, sqlx::Error> {
    let count: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM settings_users WHERE tenant_id = $1 AND entra_domain = $2",
    )
    .bind(tenant_id.as_uuid())
    .bind(domain.as_str())
    .fetch_one(pool)
    .await?;
    Ok(u32::try_from(count).unwrap_or(u32::MAX))
}

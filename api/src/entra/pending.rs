//! Entra flows in progress, kept server-side between the redirect to Microsoft and the browser's
//! return (ADR-0018). A flow is found by the SHA-256 of its `state` and taken exactly once.

use chrono::{DateTime, Duration, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use domain::ids::{EntraTenantId, TenantId, UserId};

use crate::http::auth::secret_hash;

/// How long the user may stay at Microsoft.
pub const PENDING_LIFETIME: Duration = Duration::minutes(10);

/// What a flow was started for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A user's sign-in.
    SignIn,
    /// An administrator sent to Microsoft's admin-consent page.
    AdminConsent,
    /// The Entra administrator's sign-in that confirms which tenant consented.
    ConsentConfirmation,
}

/// The secrets of a flow that returns an authorization code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowSecrets {
    /// The ID token's expected nonce.
    pub nonce: String,
    /// The PKCE verifier.
    pub pkce_verifier: String,
}

/// A flow in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingLogin {
    /// What for.
    pub purpose: Purpose,
    /// The FinteQX tenant.
    pub tenant_id: TenantId,
    /// The user signing in, or the administrator who started admin consent.
    pub user_id: UserId,
    /// The Entra tenant whose authority the browser was sent to, if one was.
    pub entra_tenant_id: Option<EntraTenantId>,
    /// The ID token's expected nonce and the PKCE verifier, for flows that return a code.
    pub secrets: Option<FlowSecrets>,
    /// The SHA-256 of the administrator's session secret (admin flows).
    pub session_hash: Option<Vec<u8>>,
}

/// Stores a flow under its `state`; sweeps expired ones.
///
/// # Errors
/// A database error.
pub async fn save(
    pool: &PgPool,
    state: &str,
    pending: &PendingLogin,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let purpose = match pending.purpose {
        Purpose::SignIn => "sign_in",
        Purpose::AdminConsent => "admin_consent",
        Purpose::ConsentConfirmation => "consent_confirmation",
    };
    sqlx::query("DELETE FROM entra_pending_logins WHERE expires_at < $1")
        .bind(now)
        .execute(pool)
        .await?;
    sqlx::query(
        "INSERT INTO entra_pending_logins \
           (state_hash, purpose, tenant_id, user_id, entra_tenant_id, nonce, pkce_verifier, session_hash, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(secret_hash(state))
    .bind(purpose)
    .bind(pending.tenant_id.as_uuid())
    .bind(pending.user_id.as_uuid())
    .bind(pending.entra_tenant_id.map(|t| t.as_uuid()))
    .bind(pending.secrets.as_ref().map(|s| &s.nonce))
    .bind(pending.secrets.as_ref().map(|s| &s.pkce_verifier))
    .bind(&pending.session_hash)
    .bind(now)
    .bind(now + PENDING_LIFETIME)
    .execute(pool)
    .await?;
    Ok(())
}

type Row = (
    String,
    Uuid,
    Uuid,
    Option<Uuid>,
    Option<String>,
    Option<String>,
    Option<Vec<u8>>,
);

/// Takes the unexpired flow of `state`: the first return gets it, every later one gets `None`.
/// A flow bound to an administrator's session is only taken with that session's hash, so a
/// foreign browser cannot even spend it.
///
/// # Errors
/// A database error.
pub async fn take(
    pool: &PgPool,
    state: &str,
    session_hash: Option<&[u8]>,
    now: DateTime<Utc>,
) -> Result<Option<PendingLogin>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(
        "DELETE FROM entra_pending_logins \
         WHERE state_hash = $1 AND expires_at > $2 AND (session_hash IS NULL OR session_hash = $3) \
         RETURNING purpose, tenant_id, user_id, entra_tenant_id, nonce, pkce_verifier, session_hash",
    )
    .bind(secret_hash(state))
    .bind(now)
    .bind(session_hash)
    .fetch_optional(pool)
    .await?;
    Ok(row.and_then(
        |(purpose, tenant_id, user_id, entra_tenant_id, nonce, pkce_verifier, session_hash)| {
            let purpose = match purpose.as_str() {
                "sign_in" => Purpose::SignIn,
                "admin_consent" => Purpose::AdminConsent,
                "consent_confirmation" => Purpose::ConsentConfirmation,
                _ => return None,
            };
            Some(PendingLogin {
                purpose,
                tenant_id: TenantId::from_uuid(tenant_id),
                user_id: UserId::from_uuid(user_id),
                entra_tenant_id: entra_tenant_id
                    .and_then(|id| EntraTenantId::try_from_uuid(id).ok()),
                secrets: nonce
                    .zip(pkce_verifier)
                    .map(|(nonce, pkce_verifier)| FlowSecrets {
                        nonce,
                        pkce_verifier,
                    }),
                session_hash,
            })
        },
    ))
}

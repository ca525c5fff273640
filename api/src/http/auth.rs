//! Who is calling (ADR-0014): tenant sessions by cookie, platform staff by bearer token, and the
//! one place that decides what each may reach. A principal of another tenant gets exactly the
//! answer a missing resource gets.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use chrono::{DateTime, Duration, Utc};
use rand::RngCore as _;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use domain::ids::{TenantId, UserId};
use domain::metadata::ActorRole;
use domain::values::Role;

use super::problem::Problem;
use crate::executor::CommandContext;
use crate::startup::AppState;

/// The session cookie: `__Host-` (Secure, Path=/, no Domain), HttpOnly, SameSite=Lax, no Max-Age.
pub const SESSION_COOKIE: &str = "__Host-finteqx_session";
/// A session ends after this long without requests.
pub const SESSION_IDLE_LIMIT: Duration = Duration::minutes(30);
/// A session ends this long after it started, however active.
pub const SESSION_ABSOLUTE_LIMIT: Duration = Duration::hours(12);

/// Platform staff roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaffRole {
    /// Support staff: read-only views, every read recorded.
    Support,
    /// Auditors: the event history.
    Auditor,
    /// The platform operator (the CLI's token for HTTP tooling).
    Operator,
}

impl StaffRole {
    const fn actor_role(self) -> ActorRole {
        match self {
            Self::Support => ActorRole::Support,
            Self::Auditor => ActorRole::Auditor,
            Self::Operator => ActorRole::Operator,
        }
    }

    fn parse(stored: &str) -> Option<Self> {
        match stored {
            "support" => Some(Self::Support),
            "auditor" => Some(Self::Auditor),
            "operator" => Some(Self::Operator),
            _ => None,
        }
    }

    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Support => "support",
            Self::Auditor => "auditor",
            Self::Operator => "operator",
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A signed-in administrator or user of a tenant.
    Tenant {
        /// Their tenant.
        tenant_id: TenantId,
        /// Who.
        user_id: UserId,
        /// Administrator or user.
        role: Role,
    },
    /// Platform staff.
    Staff {
        /// The token's id (never the token).
        token_id: Uuid,
        /// Their role.
        role: StaffRole,
    },
}

/// The request's correlation id (the `x-request-id` header, set by the middleware).
fn correlation_id(parts: &Parts) -> String {
    parts
        .headers
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .map_or_else(|| Uuid::now_v7().to_string(), str::to_owned)
}

/// 401: no valid session or staff token.
pub(super) fn unauthorized() -> Problem {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "Unauthenticated",
        "sign in or present a staff token",
    )
}

fn forbidden() -> Problem {
    Problem::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        "Forbidden",
        "your role may not do this",
    )
}

/// Hashes a presented secret for lookup.
pub fn secret_hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// A fresh 256-bit secret, hex.
pub fn new_secret() -> String {
    let mut bytes = [0_u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The caller and the request's correlation id.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who.
    pub principal: Principal,
    /// The request's correlation id.
    pub correlation_id: String,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let correlation_id = correlation_id(parts);
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        let principal = if let Some(token) = bearer {
            staff(&state.pool, token).await?
        } else {
            let jar = axum_extra::extract::CookieJar::from_headers(&parts.headers);
            let cookie = jar.get(SESSION_COOKIE).ok_or_else(unauthorized)?;
            session(&state.pool, cookie.value(), Utc::now()).await?
        };
        Ok(Self {
            principal,
            correlation_id,
        })
    }
}

async fn staff(pool: &PgPool, token: &str) -> Result<Principal, Problem> {
    let row: Option<(Uuid, String)> = sqlx::query_as(
        "SELECT token_id, role FROM staff_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
    )
    .bind(secret_hash(token))
    .fetch_optional(pool)
    .await
    .map_err(super::database)?;
    let (token_id, role) = row.ok_or_else(unauthorized)?;
    let role = StaffRole::parse(&role).ok_or_else(unauthorized)?;
    Ok(Principal::Staff { token_id, role })
}

async fn session(pool: &PgPool, secret: &str, now: DateTime<Utc>) -> Result<Principal, Problem> {
    // One statement both checks the limits and records the activity. A session started at or
    // before its user's cutoff (deactivated, erased, new password or address) is over, also when
    // it was being created while the change committed.
    let row: Option<(Uuid, Uuid, String)> = sqlx::query_as(
        "UPDATE sessions s SET last_seen_at = $2 \
         WHERE session_hash = $1 AND ended_at IS NULL AND expires_at > $2 AND last_seen_at > $2 - $3::interval \
           AND NOT EXISTS (SELECT 1 FROM session_cutoffs c \
                           WHERE c.tenant_id = s.tenant_id AND c.user_id = s.user_id \
                             AND c.sessions_ended_at >= s.created_at) \
         RETURNING tenant_id, user_id, role",
    )
    .bind(secret_hash(secret))
    .bind(now)
    .bind(format!("{} seconds", SESSION_IDLE_LIMIT.num_seconds()))
    .fetch_optional(pool)
    .await
    .map_err(super::database)?;
    let (tenant_id, user_id, role) = row.ok_or_else(unauthorized)?;
    let role = role.parse().map_err(|_| unauthorized())?;
    Ok(Principal::Tenant {
        tenant_id: TenantId::from_uuid(tenant_id),
        user_id: UserId::from_uuid(user_id),
        role,
    })
}

impl Caller {
    fn context(
        &self,
        tenant_id: TenantId,
        actor_id: String,
        actor_role: ActorRole,
    ) -> CommandContext {
        CommandContext {
            actor_id,
            actor_role,
            on_behalf_of: None,
            tenant_id: Some(tenant_id),
            correlation_id: self.correlation_id.clone(),
            occurred_at: Utc::now(),
        }
    }

    /// An administrator of `tenant_id` may send its commands.
    ///
    /// # Errors
    /// 404 for another tenant's principal (as if missing), 403 for other roles.
    pub fn administrator_of(&self, tenant_id: TenantId) -> Result<CommandContext, Problem> {
        match &self.principal {
            Principal::Tenant { tenant_id: own, .. } if *own != tenant_id => {
                Err(Problem::not_found())
            }
            Principal::Tenant {
                user_id,
                role: Role::Administrator,
                ..
            } => Ok(self.context(tenant_id, user_id.to_string(), ActorRole::Administrator)),
            _ => Err(forbidden()),
        }
    }

    /// The tenant's administrators and support staff may read its settings and support views;
    /// support reads are recorded. Answers the metadata the reader's commands carry (support's
    /// actor is its token id).
    ///
    /// # Errors
    /// As [`Caller::administrator_of`]; a database failure while recording is 503.
    pub async fn reader_of(
        &self,
        pool: &PgPool,
        tenant_id: TenantId,
        route: &str,
        user_id: Option<UserId>,
    ) -> Result<CommandContext, Problem> {
        match &self.principal {
            Principal::Staff {
                token_id,
                role: StaffRole::Support,
            } => {
                record_read(
                    pool,
                    *token_id,
                    StaffRole::Support,
                    tenant_id,
                    route,
                    user_id,
                )
                .await?;
                Ok(self.context(tenant_id, token_id.to_string(), ActorRole::Support))
            }
            _ => self.administrator_of(tenant_id),
        }
    }

    /// Auditors read the event history of any tenant.
    ///
    /// # Errors
    /// 404 for a tenant principal of another tenant, 403 otherwise.
    pub fn auditor(&self, tenant_id: TenantId) -> Result<(), Problem> {
        match &self.principal {
            Principal::Staff {
                role: StaffRole::Auditor,
                ..
            } => Ok(()),
            Principal::Tenant { tenant_id: own, .. } if *own != tenant_id => {
                Err(Problem::not_found())
            }
            _ => Err(forbidden()),
        }
    }

    /// The actor role for logs.
    pub const fn actor_role(&self) -> ActorRole {
        match &self.principal {
            Principal::Tenant {
                role: Role::Administrator,
                ..
            } => ActorRole::Administrator,
            Principal::Tenant {
                role: Role::User, ..
            } => ActorRole::User,
            Principal::Staff { role, .. } => role.actor_role(),
        }
    }
}

/// Starts a session and returns the cookie secret (the sign-in flow calls this).
///
/// # Errors
/// A database error.
pub async fn start_session(
    pool: &PgPool,
    tenant_id: TenantId,
    user_id: UserId,
    role: Role,
    method: &str,
    now: DateTime<Utc>,
) -> Result<String, sqlx::Error> {
    let secret = new_secret();
    sqlx::query(
        "INSERT INTO sessions (session_hash, tenant_id, user_id, role, method, created_at, last_seen_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6, $7)",
    )
    .bind(secret_hash(&secret))
    .bind(tenant_id.as_uuid())
    .bind(user_id.as_uuid())
    .bind(role.as_str())
    .bind(method)
    .bind(now)
    .bind(now + SESSION_ABSOLUTE_LIMIT)
    .execute(pool)
    .await?;
    Ok(secret)
}

/// Issues a staff token; returns its id and the secret (shown once).
///
/// # Errors
/// A database error.
pub async fn issue_staff_token(
    pool: &PgPool,
    role: StaffRole,
    holder: &str,
) -> Result<(Uuid, String), sqlx::Error> {
    let (token_id, secret) = (Uuid::now_v7(), new_secret());
    sqlx::query(
        "INSERT INTO staff_tokens (token_id, token_hash, role, holder) VALUES ($1, $2, $3, $4)",
    )
    .bind(token_id)
    .bind(secret_hash(&secret))
    .bind(role.as_str())
    .bind(holder)
    .execute(pool)
    .await?;
    Ok((token_id, secret))
}

/// Revokes a staff token; returns whether it was live.
///
/// # Errors
/// A database error.
pub async fn revoke_staff_token(pool: &PgPool, token_id: Uuid) -> Result<bool, sqlx::Error> {
    let result = sqlx::query(
        "UPDATE staff_tokens SET revoked_at = now() WHERE token_id = $1 AND revoked_at IS NULL",
    )
    .bind(token_id)
    .execute(pool)
    .await?;
    Ok(result.rows_affected() == 1)
}

/// The tenant named by the route's `{tenant_id}`.
fn tenant_param(parts: &Parts) -> Result<TenantId, Problem> {
    let path = parts.uri.path();
    let tenant = path
        .strip_prefix("/tenants/")
        .and_then(|rest| rest.split('/').next())
        .ok_or_else(Problem::not_found)?;
    tenant
        .parse()
        .map(TenantId::from_uuid)
        .map_err(|_| Problem::not_found())
}

/// An administrator of the route's tenant, checked before the body is read.
#[derive(Debug, Clone)]
pub struct TenantAdmin {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The administrator.
    pub administrator: UserId,
    /// The metadata the administrator's commands carry.
    pub context: CommandContext,
}

impl FromRequestParts<AppState> for TenantAdmin {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let tenant_id = tenant_param(parts)?;
        let context = caller.administrator_of(tenant_id)?;
        let Principal::Tenant { user_id, .. } = caller.principal else {
            return Err(forbidden());
        };
        Ok(Self {
            tenant_id,
            administrator: user_id,
            context,
        })
    }
}

/// A reader of the route's tenant (its administrators, or support staff, whose read is recorded).
#[derive(Debug, Clone)]
pub struct TenantReader {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The metadata the reader's commands carry.
    pub context: CommandContext,
}

impl TenantReader {
    /// Support staff, who see personal data masked; the tenant's administrators see it in full.
    pub fn is_support(&self) -> bool {
        self.context.actor_role == ActorRole::Support
    }
}

impl FromRequestParts<AppState> for TenantReader {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let tenant_id = tenant_param(parts)?;
        let (route, user_id) = read_subject(parts);
        let context = caller
            .reader_of(&state.pool, tenant_id, &route, user_id)
            .await?;
        Ok(Self { tenant_id, context })
    }
}

/// What a read looks at: the route template and the subject user named by `/users/{user_id}`.
fn read_subject(parts: &Parts) -> (String, Option<UserId>) {
    let route = parts
        .extensions
        .get::<axum::extract::MatchedPath>()
        .map_or_else(
            || parts.uri.path().to_owned(),
            |path| path.as_str().to_owned(),
        );
    let user_id = parts
        .uri
        .path()
        .split("/users/")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|id| id.parse().ok())
        .map(UserId::from_uuid);
    (route, user_id)
}

/// Records a staff read in `support_reads`: who (token and role) looked at what, and when.
///
/// # Errors
/// A database failure is 503: an unrecorded read is not answered.
async fn record_read(
    pool: &PgPool,
    token_id: Uuid,
    role: StaffRole,
    tenant_id: TenantId,
    route: &str,
    user_id: Option<UserId>,
) -> Result<(), Problem> {
    sqlx::query(
        "INSERT INTO support_reads (token_id, role, tenant_id, route, user_id) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(token_id)
    .bind(role.as_str())
    .bind(tenant_id.as_uuid())
    .bind(route)
    .bind(user_id.map(|id| id.as_uuid()))
    .execute(pool)
    .await
    .map_err(super::database)?;
    Ok(())
}

/// An auditor reading the route's tenant; the read is recorded in `support_reads` with the role
/// `auditor`, so that "who looked at what" is complete. Checked before the query is read.
///
/// Only staff tokens with the auditor role pass: a tenant principal of another tenant gets 404
/// (as if missing), every other principal 403, and an unauthenticated caller 401.
#[derive(Debug, Clone)]
pub struct TenantAuditor {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The auditor's token id.
    pub token_id: Uuid,
}

impl FromRequestParts<AppState> for TenantAuditor {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let tenant_id = tenant_param(parts)?;
        caller.auditor(tenant_id)?;
        let Principal::Staff {
            token_id,
            role: role @ StaffRole::Auditor,
        } = caller.principal
        else {
            return Err(forbidden());
        };
        let (route, user_id) = read_subject(parts);
        record_read(&state.pool, token_id, role, tenant_id, &route, user_id).await?;
        Ok(Self {
            tenant_id,
            token_id,
        })
    }
}

/// Ends the session whose cookie secret is `secret`; returns whether one was running.
///
/// # Errors
/// A database error.
pub async fn end_session(pool: &PgPool, secret: &str) -> Result<bool, sqlx::Error> {
    let ended = sqlx::query(
        "UPDATE sessions SET ended_at = now() WHERE session_hash = $1 AND ended_at IS NULL",
    )
    .bind(secret_hash(secret))
    .execute(pool)
    .await?;
    Ok(ended.rows_affected() == 1)
}

/// How a running session started: its method and start time.
///
/// # Errors
/// A database error.
pub async fn session_start(
    pool: &PgPool,
    secret: &str,
) -> Result<Option<(String, DateTime<Utc>)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT method, created_at FROM sessions WHERE session_hash = $1 AND ended_at IS NULL",
    )
    .bind(secret_hash(secret))
    .fetch_optional(pool)
    .await
}

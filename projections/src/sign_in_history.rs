//! Sign-in history per user, for support, and the recent-failures fact of the lock-out rule.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use domain::ids::{SignInId, TenantId, UserId};
use domain::sign_in::{SignInEvent, SignInMethod};
use domain::user::UserEvent;

use crate::envelope::{DomainEvent, Envelope};
use crate::runner::Projector;

/// The sign-in history projector.
#[derive(Debug, Clone, Copy, Default)]
pub struct SignInHistory;

/// One row change of the history.
#[derive(Debug, Clone, PartialEq)]
pub enum HistoryChange {
    /// An attempt started.
    Started {
        /// The attempt.
        sign_in_id: SignInId,
        /// The tenant.
        tenant_id: TenantId,
        /// The user.
        user_id: UserId,
        /// The method tried.
        method: &'static str,
        /// When.
        started_at: DateTime<Utc>,
    },
    /// A code was sent.
    CodeSent(SignInId),
    /// A wrong code was entered.
    WrongCode(SignInId),
    /// An erased person: their attempts go.
    Forget {
        /// The tenant.
        tenant_id: TenantId,
        /// The user.
        user_id: UserId,
    },
    /// The attempt ended.
    Finished {
        /// The attempt.
        sign_in_id: SignInId,
        /// `succeeded`, `failed` or `locked`.
        outcome: &'static str,
        /// The method it succeeded with, if it did.
        method: Option<&'static str>,
        /// The failure or lock reason, as recorded.
        reason: Option<serde_json::Value>,
        /// When.
        finished_at: DateTime<Utc>,
    },
}

const fn method_name(method: SignInMethod) -> &'static str {
    match method {
        SignInMethod::Password => "password",
        SignInMethod::PasswordAndSms => "password_and_sms",
        SignInMethod::EntraId => "entra_id",
    }
}

impl Projector for SignInHistory {
    const NAME: &'static str = "sign_in_history";
    const TABLES: &'static [&'static str] = &["sign_in_history"];
    type Change = HistoryChange;

    fn changes(event: &Envelope) -> Vec<HistoryChange> {
        let event_of_attempt = match &event.event {
            DomainEvent::SignIn(event_of_attempt) => event_of_attempt,
            DomainEvent::User(UserEvent::UserForgotten {
                tenant_id, user_id, ..
            }) => {
                return vec![HistoryChange::Forget {
                    tenant_id: *tenant_id,
                    user_id: *user_id,
                }];
            }
            _ => return vec![],
        };
        let finished = |sign_in_id: &SignInId, outcome, method, reason| HistoryChange::Finished {
            sign_in_id: *sign_in_id,
            outcome,
            method,
            reason,
            finished_at: event.recorded_at,
        };
        match event_of_attempt {
            SignInEvent::SignInStarted {
                sign_in_id,
                tenant_id,
                user_id,
                method,
                started_at,
                ..
            } => vec![HistoryChange::Started {
                sign_in_id: *sign_in_id,
                tenant_id: *tenant_id,
                user_id: *user_id,
                method: method_name(*method),
                started_at: *started_at,
            }],
            SignInEvent::SmsCodeIssued { sign_in_id, .. } => {
                vec![HistoryChange::CodeSent(*sign_in_id)]
            }
            SignInEvent::SmsCodeRejected { sign_in_id, .. } => {
                vec![HistoryChange::WrongCode(*sign_in_id)]
            }
            SignInEvent::SignInSucceeded {
                sign_in_id, method, ..
            } => {
                vec![finished(
                    sign_in_id,
                    "succeeded",
                    Some(method_name(*method)),
                    None,
                )]
            }
            SignInEvent::SignInFailed {
                sign_in_id, reason, ..
            } => {
                vec![finished(
                    sign_in_id,
                    "failed",
                    None,
                    serde_json::to_value(reason).ok(),
                )]
            }
            SignInEvent::SignInLocked {
                sign_in_id, reason, ..
            } => {
                vec![finished(
                    sign_in_id,
                    "locked",
                    None,
                    serde_json::to_value(reason).ok(),
                )]
            }
            SignInEvent::PasswordAccepted { .. } | SignInEvent::SmsCodeVerified { .. } => vec![],
        }
    }

    async fn write(
        connection: &mut PgConnection,
        change: HistoryChange,
    ) -> Result<(), sqlx::Error> {
        match change {
            HistoryChange::Started {
                sign_in_id,
                tenant_id,
                user_id,
                method,
                started_at,
            } => {
                sqlx::query(
                    "INSERT INTO sign_in_history (sign_in_id, tenant_id, user_id, method, started_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(sign_in_id.as_uuid())
                .bind(tenant_id.as_uuid())
                .bind(user_id.as_uuid())
                .bind(method)
                .bind(started_at)
                .execute(connection)
                .await?;
            }
            HistoryChange::Forget { tenant_id, user_id } => {
                crate::runner::delete_person(connection, "sign_in_history", tenant_id, user_id)
                    .await?;
            }
            HistoryChange::CodeSent(sign_in_id) => {
                sqlx::query(
                    "UPDATE sign_in_history SET codes_sent = codes_sent + 1 WHERE sign_in_id = $1",
                )
                .bind(sign_in_id.as_uuid())
                .execute(connection)
                .await?;
            }
            HistoryChange::WrongCode(sign_in_id) => {
                sqlx::query("UPDATE sign_in_history SET wrong_codes = wrong_codes + 1 WHERE sign_in_id = $1")
                    .bind(sign_in_id.as_uuid())
                    .execute(connection)
                    .await?;
            }
            HistoryChange::Finished {
                sign_in_id,
                outcome,
                method,
                reason,
                finished_at,
            } => {
                sqlx::query(
                    "UPDATE sign_in_history SET outcome = $2, method = coalesce($3, method), reason = $4, finished_at = $5 \
                     WHERE sign_in_id = $1",
                )
                .bind(sign_in_id.as_uuid())
                .bind(outcome)
                .bind(method)
                .bind(reason)
                .bind(finished_at)
                .execute(connection)
                .await?;
            }
        }
        Ok(())
    }
}

/// One attempt as support sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SignInRecord {
    /// The attempt.
    pub sign_in_id: SignInId,
    /// `password`, `password_and_sms` or `entra_id`.
    pub method: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Codes sent.
    pub codes_sent: i32,
    /// Wrong codes entered.
    pub wrong_codes: i32,
    /// `succeeded`, `failed`, `locked`, or `None` while in progress.
    pub outcome: Option<String>,
    /// Why it failed or was locked.
    pub reason: Option<serde_json::Value>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
}

/// A user's most recent attempts, newest first.
///
/// # Errors
/// A database error.
pub async fn history(
    pool: &PgPool,
    tenant_id: TenantId,
    user_id: UserId,
    limit: i64,
) -> Result<Vec<SignInRecord>, sqlx::Error> {
    type Row = (
        Uuid,
        String,
        DateTime<Utc>,
        i32,
        i32,
        Option<String>,
        Option<serde_json::Value>,
        Option<DateTime<Utc>>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT sign_in_id, method, started_at, codes_sent, wrong_codes, outcome, reason, finished_at \
         FROM sign_in_history WHERE tenant_id = $1 AND user_id = $2 ORDER BY started_at DESC LIMIT $3",
    )
    .bind(tenant_id.as_uuid())
    .bind(user_id.as_uuid())
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(
                sign_in_id,
                method,
                started_at,
                codes_sent,
                wrong_codes,
                outcome,
                reason,
                finished_at,
            )| SignInRecord {
                sign_in_id: SignInId::from_uuid(sign_in_id),
                method,
                started_at,
                codes_sent,
                wrong_codes,
                outcome,
                reason,
                finished_at,
            },
        )
        .collect())
}

/// Failed or locked attempts of a user since `since`: the lock-out rule's fact.
///
/// # Errors
/// A database error.
pub async fn recent_failures(
    pool: &PgPool,
    tenant_id: TenantId,
    user_id: UserId,
    since: DateTime<Utc>,
) -> Result<u32, sqlx::Error> {
    let count: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sign_in_history \
         WHERE tenant_id = $1 AND user_id = $2 AND started_at >= $3 AND outcome IN ('failed', 'locked')",
    )
    .bind(tenant_id.as_uuid())
    .bind(user_id.as_uuid())
    .bind(since)
    .fetch_one(pool)
    .await?;
    Ok(u32::try_from(count).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use domain::sign_in::{LockReason, SignInFailure};

    use super::*;
    use crate::test_support::{envelope, tenant, user};

    fn attempt() -> SignInId {
        SignInId::from_uuid(Uuid::from_u128(9))
    }

    fn changes(event: SignInEvent) -> Vec<HistoryChange> {
        SignInHistory::changes(&envelope("sign_in", 1, DomainEvent::SignIn(event)))
    }

    #[test]
    fn outcomes_finish_the_attempt_with_their_reason() {
        let failed = changes(SignInEvent::SignInFailed {
            sign_in_id: attempt(),
            tenant_id: tenant(),
            user_id: user(),
            reason: SignInFailure::WrongPassword,
        });
        let HistoryChange::Finished {
            outcome,
            reason,
            method,
            ..
        } = &failed[0]
        else {
            panic!("{failed:?}")
        };
        assert_eq!(
            (*outcome, reason.clone(), *method),
            (
                "failed",
                Some(serde_json::json!({"kind": "wrong_password"})),
                None
            )
        );
        let locked = changes(SignInEvent::SignInLocked {
            sign_in_id: attempt(),
            tenant_id: tenant(),
            user_id: user(),
            reason: LockReason::TooManyWrongCodes,
        });
        assert!(matches!(
            &locked[0],
            HistoryChange::Finished {
                outcome: "locked",
                ..
            }
        ));
        let succeeded = changes(SignInEvent::SignInSucceeded {
            sign_in_id: attempt(),
            tenant_id: tenant(),
            user_id: user(),
            method: SignInMethod::PasswordAndSms,
        });
        assert!(matches!(
            &succeeded[0],
            HistoryChange::Finished {
                outcome: "succeeded",
                method: Some("password_and_sms"),
                ..
            }
        ));
    }

    #[test]
    fn codes_are_counted_and_verification_itself_changes_nothing() {
        let rejected = changes(SignInEvent::SmsCodeRejected {
            sign_in_id: attempt(),
            tenant_id: tenant(),
            user_id: user(),
            attempts_left: 4,
        });
        assert_eq!(rejected, vec![HistoryChange::WrongCode(attempt())]);
        let verified = changes(SignInEvent::SmsCodeVerified {
            sign_in_id: attempt(),
            tenant_id: tenant(),
            user_id: user(),
        });
        assert!(verified.is_empty());
    }
}

//! The outbound notification queue: one row per e-mail or SMS an event calls for, under a message
//! id derived from the causing event (`{aggregate_type}:{aggregate_id}:{sequence}`), so replays and
//! rebuilds never create a second message. Delivery state belongs to the delivery workers, in
//! `notification_deliveries`; a message without a delivery row is pending.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use domain::ids::{TenantId, UserId};
use domain::sign_in::{SignInEvent, SmsCodePurpose};
use domain::user::{LinkOrigin, PasswordTokenPurpose, UserEvent, UserMethod};

use crate::envelope::{DomainEvent, Envelope};
use crate::runner::Projector;

/// The notification-queue projector.
#[derive(Debug, Clone, Copy, Default)]
pub struct NotificationQueue;

/// What a message is about; each kind has an e-mail template per locale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// New password user: set-password link.
    WelcomeSetPassword,
    /// New Entra user: how to sign in with Microsoft Entra ID.
    WelcomeEntra,
    /// Linked by `LinkDomainUsers`: the new way to sign in.
    Linked,
    /// Unlinked: back to password, with a set-password link.
    Unlinked,
    /// A requested set-password link.
    SetPassword,
    /// A verification code by SMS.
    SmsCode,
}

impl MessageKind {
    /// The stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::WelcomeSetPassword => "welcome_set_password",
            Self::WelcomeEntra => "welcome_entra",
            Self::Linked => "linked",
            Self::Unlinked => "unlinked",
            Self::SetPassword => "set_password",
            Self::SmsCode => "sms_code",
        }
    }

    /// The kind stored under `name`.
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::WelcomeSetPassword,
            Self::WelcomeEntra,
            Self::Linked,
            Self::Unlinked,
            Self::SetPassword,
            Self::SmsCode,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == name)
    }

    /// `email` or `sms`.
    pub const fn channel(self) -> &'static str {
        match self {
            Self::SmsCode => "sms",
            _ => "email",
        }
    }
}

/// A message to queue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMessage {
    /// Derived from the causing event.
    pub message_id: String,
    /// The tenant.
    pub tenant_id: TenantId,
    /// The recipient user (the address is read at send time, so a changed or erased address is
    /// respected).
    pub user_id: UserId,
    /// What it is about.
    pub kind: MessageKind,
    /// What the template needs; never a secret.
    pub data: serde_json::Value,
    /// The causing event's position.
    pub source_position: i64,
    /// When the causing event was recorded.
    pub created_at: DateTime<Utc>,
}

/// One row change of the queue.
#[derive(Debug, Clone, PartialEq)]
pub enum QueueChange {
    /// A message to send.
    Queue(NewMessage),
    /// An erased person: their messages go (nothing is sent to them any more).
    Forget {
        /// The tenant.
        tenant_id: TenantId,
        /// The user.
        user_id: UserId,
    },
}

impl Projector for NotificationQueue {
    const NAME: &'static str = "notification_queue";
    const TABLES: &'static [&'static str] = &["notification_messages"];
    type Change = QueueChange;

    fn changes(event: &Envelope) -> Vec<QueueChange> {
        if let DomainEvent::User(UserEvent::UserForgotten {
            tenant_id, user_id, ..
        }) = &event.event
        {
            return vec![QueueChange::Forget {
                tenant_id: *tenant_id,
                user_id: *user_id,
            }];
        }
        Self::messages(event)
            .into_iter()
            .map(QueueChange::Queue)
            .collect()
    }

    async fn write(connection: &mut PgConnection, change: QueueChange) -> Result<(), sqlx::Error> {
        match change {
            QueueChange::Queue(message) => insert(connection, message).await,
            QueueChange::Forget { tenant_id, user_id } => {
                crate::runner::delete_person(
                    connection,
                    "notification_messages",
                    tenant_id,
                    user_id,
                )
                .await?;
                Ok(())
            }
        }
    }
}

impl NotificationQueue {
    /// The messages an event calls for.
    pub fn messages(event: &Envelope) -> Vec<NewMessage> {
        let message = |tenant_id: &TenantId, user_id: &UserId, kind, data| NewMessage {
            message_id: format!(
                "{}:{}:{}",
                event.aggregate_type, event.aggregate_id, event.sequence
            ),
            tenant_id: *tenant_id,
            user_id: *user_id,
            kind,
            data,
            source_position: event.at.position,
            created_at: event.recorded_at,
        };
        match &event.event {
            DomainEvent::User(UserEvent::UserCreated {
                tenant_id,
                user_id,
                method: UserMethod::EntraId,
                ..
            }) => {
                vec![message(
                    tenant_id,
                    user_id,
                    MessageKind::WelcomeEntra,
                    json!({}),
                )]
            }
            DomainEvent::User(UserEvent::UserLinkedToEntra {
                tenant_id,
                user_id,
                domain,
                origin: LinkOrigin::DomainLink,
                ..
            }) => vec![message(
                tenant_id,
                user_id,
                MessageKind::Linked,
                json!({ "domain": domain }),
            )],
            DomainEvent::User(UserEvent::PasswordTokenIssued {
                tenant_id,
                user_id,
                token_id,
                expires_at,
                purpose,
            }) => {
                let kind = match purpose {
                    PasswordTokenPurpose::Welcome => MessageKind::WelcomeSetPassword,
                    PasswordTokenPurpose::AfterUnlink => MessageKind::Unlinked,
                    PasswordTokenPurpose::Reset => MessageKind::SetPassword,
                };
                vec![message(
                    tenant_id,
                    user_id,
                    kind,
                    json!({ "token_id": token_id, "expires_at": expires_at }),
                )]
            }
            DomainEvent::SignIn(SignInEvent::SmsCodeIssued {
                tenant_id,
                user_id,
                sign_in_id,
                purpose,
                expires_at,
                ..
            }) => {
                let purpose = match purpose {
                    SmsCodePurpose::SignIn => "sign_in",
                    SmsCodePurpose::PhoneEnrollment => "phone_enrollment",
                };
                vec![message(
                    tenant_id,
                    user_id,
                    MessageKind::SmsCode,
                    json!({ "sign_in_id": sign_in_id, "purpose": purpose, "expires_at": expires_at }),
                )]
            }
            _ => vec![],
        }
    }
}

async fn insert(connection: &mut PgConnection, message: NewMessage) -> Result<(), sqlx::Error> {
    sqlx::query(
            "INSERT INTO notification_messages (message_id, tenant_id, user_id, channel, kind, data, source_position, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (message_id) DO NOTHING",
        )
        .bind(&message.message_id)
        .bind(message.tenant_id.as_uuid())
        .bind(message.user_id.as_uuid())
        .bind(message.kind.channel())
        .bind(message.kind.as_str())
        .bind(&message.data)
        .bind(message.source_position)
        .bind(message.created_at)
        .execute(connection)
        .await?;
    Ok(())
}

/// A queued message as support sees it: no bodies, no secrets.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueuedMessage {
    /// The stable message id.
    pub message_id: String,
    /// The recipient.
    pub user_id: UserId,
    /// `email` or `sms`.
    pub channel: String,
    /// The message kind.
    pub kind: String,
    /// `pending`, `sent`, `retrying` or `dead`.
    pub state: String,
    /// Delivery attempts so far.
    pub attempts: i32,
    /// The last delivery error, if any.
    pub last_error: Option<String>,
    /// When the message was queued.
    pub created_at: DateTime<Utc>,
}

/// The columns a [`MessageRow`] reads, from `notification_messages m` joined to its delivery `d`.
const MESSAGE_COLUMNS: &str = "m.message_id, m.user_id, m.channel, m.kind, \
     coalesce(d.state, 'pending') AS state, coalesce(d.attempts, 0) AS attempts, d.last_error, \
     m.created_at \
     FROM notification_messages m LEFT JOIN notification_deliveries d ON d.message_id = m.message_id";

/// A message with its delivery state, as support reads it.
#[derive(sqlx::FromRow)]
struct MessageRow {
    message_id: String,
    user_id: Uuid,
    channel: String,
    kind: String,
    state: String,
    attempts: i32,
    last_error: Option<String>,
    created_at: DateTime<Utc>,
}

impl From<MessageRow> for QueuedMessage {
    fn from(row: MessageRow) -> Self {
        Self {
            message_id: row.message_id,
            user_id: UserId::from_uuid(row.user_id),
            channel: row.channel,
            kind: row.kind,
            state: row.state,
            attempts: row.attempts,
            last_error: row.last_error,
            created_at: row.created_at,
        }
    }
}

/// A tenant's messages, newest first, optionally only those in `state`.
///
/// # Errors
/// A database error.
pub async fn messages(
    pool: &PgPool,
    tenant_id: TenantId,
    state: Option<&str>,
    limit: i64,
) -> Result<Vec<QueuedMessage>, sqlx::Error> {
    let rows: Vec<MessageRow> = sqlx::query_as(&format!(
        "SELECT {MESSAGE_COLUMNS} \
         WHERE m.tenant_id = $1 AND ($2::text IS NULL OR coalesce(d.state, 'pending') = $2) \
         ORDER BY m.created_at DESC, m.message_id LIMIT $3"
    ))
    .bind(tenant_id.as_uuid())
    .bind(state)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(QueuedMessage::from).collect())
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use domain::ids::PasswordTokenId;

    use super::*;
    use crate::test_support::{domain, entra, envelope, tenant, user};

    fn kinds(event: DomainEvent) -> Vec<(String, MessageKind)> {
        NotificationQueue::messages(&envelope("user", 7, event))
            .into_iter()
            .map(|m| (m.message_id, m.kind))
            .collect()
    }

    fn linked(origin: LinkOrigin) -> DomainEvent {
        DomainEvent::User(UserEvent::UserLinkedToEntra {
            tenant_id: tenant(),
            user_id: user(),
            domain: domain(),
            entra_tenant_id: entra(),
            password_removed: false,
            origin,
        })
    }

    fn token(purpose: PasswordTokenPurpose) -> DomainEvent {
        DomainEvent::User(UserEvent::PasswordTokenIssued {
            tenant_id: tenant(),
            user_id: user(),
            token_id: PasswordTokenId::from_uuid(Uuid::nil()),
            expires_at: chrono::Utc::now() + Duration::days(7),
            purpose,
        })
    }

    #[test]
    fn each_message_is_named_after_its_causing_event() {
        let id = "user:stream:7".to_owned();
        assert_eq!(
            kinds(linked(LinkOrigin::DomainLink)),
            vec![(id.clone(), MessageKind::Linked)]
        );
        assert_eq!(
            kinds(token(PasswordTokenPurpose::Welcome)),
            vec![(id.clone(), MessageKind::WelcomeSetPassword)]
        );
        assert_eq!(
            kinds(token(PasswordTokenPurpose::AfterUnlink)),
            vec![(id.clone(), MessageKind::Unlinked)]
        );
        assert_eq!(
            kinds(token(PasswordTokenPurpose::Reset)),
            vec![(id, MessageKind::SetPassword)]
        );
    }

    #[test]
    fn an_entra_user_created_linked_gets_one_welcome_not_a_link_mail() {
        assert!(kinds(linked(LinkOrigin::CreatedWithEntra)).is_empty());
        let unlinked = DomainEvent::User(UserEvent::UserUnlinkedFromEntra {
            tenant_id: tenant(),
            user_id: user(),
            domain: domain(),
            entra_tenant_id: entra(),
        });
        assert!(
            kinds(unlinked).is_empty(),
            "the unlink mail comes from its set-password token event"
        );
    }

    #[test]
    fn forgetting_a_person_drops_their_messages() {
        let forgotten = DomainEvent::User(UserEvent::UserForgotten {
            tenant_id: tenant(),
            user_id: user(),
            reason: domain::user::ErasureReason::DataSubjectRequest,
        });
        assert_eq!(
            NotificationQueue::changes(&envelope("user", 9, forgotten)),
            vec![QueueChange::Forget {
                tenant_id: tenant(),
                user_id: user()
            }]
        );
    }

    #[test]
    fn message_data_carries_no_secret() {
        let message = &NotificationQueue::messages(&envelope(
            "user",
            7,
            token(PasswordTokenPurpose::Welcome),
        ))[0];
        let keys: Vec<&str> = message
            .data
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["expires_at", "token_id"]);
        assert_eq!(message.kind.channel(), "email");
        assert_eq!(MessageKind::SmsCode.channel(), "sms");
    }
}

/// Why a dead message could not be queued again.
#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    /// The tenant has no such message.
    #[error("no such message")]
    NotFound,
    /// The message is not dead (pending, retrying or sent).
    #[error("the message is not dead")]
    NotDead,
    /// The database failed.
    #[error("database error")]
    Database(#[from] sqlx::Error),
}

/// One message of the tenant, if it has it.
///
/// # Errors
/// A database error.
pub async fn message(
    pool: &PgPool,
    tenant_id: TenantId,
    message_id: &str,
) -> Result<Option<QueuedMessage>, sqlx::Error> {
    let row: Option<MessageRow> = sqlx::query_as(&format!(
        "SELECT {MESSAGE_COLUMNS} WHERE m.tenant_id = $1 AND m.message_id = $2"
    ))
    .bind(tenant_id.as_uuid())
    .bind(message_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(QueuedMessage::from))
}

/// Queues a dead message of the tenant for delivery again, with a fresh attempt budget.
///
/// # Errors
/// [`RetryError`].
pub async fn retry_dead(
    pool: &PgPool,
    tenant_id: TenantId,
    message_id: &str,
) -> Result<(), RetryError> {
    let updated = sqlx::query(
        "UPDATE notification_deliveries d SET state = 'pending', attempts = 0, next_attempt_at = now(), last_error = NULL \
         FROM notification_messages m \
         WHERE d.message_id = $1 AND d.state = 'dead' AND m.message_id = d.message_id AND m.tenant_id = $2",
    )
    .bind(message_id)
    .bind(tenant_id.as_uuid())
    .execute(pool)
    .await?;
    if updated.rows_affected() == 1 {
        return Ok(());
    }
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM notification_messages WHERE message_id = $1 AND tenant_id = $2)")
        .bind(message_id)
        .bind(tenant_id.as_uuid())
        .fetch_one(pool)
        .await?;
    Err(if exists {
        RetryError::NotDead
    } else {
        RetryError::NotFound
    })
}

//! The e-mail delivery worker: claims due messages of the notification queue by lease, renders
//! them in the recipient's language, sends them, and records the outcome (sent, retrying with
//! exponential back-off and jitter, or dead after a bounded number of attempts).
//!
//! Several workers and service instances may run at once: a claim locks the message rows with
//! `FOR UPDATE SKIP LOCKED` for a moment and leaves a lease; nothing is held while sending.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;
use serde_json::Value;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use uuid::Uuid;

use domain::ids::{PasswordTokenId, UserId};
use domain::values::{DisplayName, EmailAddress, Locale, Personal};
use projections::notification_queue::MessageKind;

use crate::application::Commands;
use crate::email::{EmailContext, EmailParty, EmailSender, OutgoingEmail, SendError, render};

/// The channel the queue's trigger notifies when a message is queued.
pub const QUEUED_CHANNEL: &str = "notifications_queued";

/// How the worker delivers.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// The sender of every e-mail.
    pub from: EmailParty,
    /// Where set-password links point (`{public_base_url}/password?token=…`).
    pub public_base_url: String,
    /// Attempts before a message is dead.
    pub max_attempts: i32,
    /// How long a claim lasts; a worker that dies mid-send loses its claim after this.
    pub lease: Duration,
    /// The first retry delay; doubled per attempt (with full jitter), capped at an hour.
    pub backoff_base: Duration,
    /// Messages per claim.
    pub batch: i64,
    /// How long to sleep when no notification wakes the worker.
    pub poll_interval: Duration,
}

/// What one round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryRound {
    /// Messages sent.
    pub sent: usize,
    /// Messages that will be tried again.
    pub retrying: usize,
    /// Messages given up on.
    pub dead: usize,
}

/// Why a round could not run.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The database failed; nothing was lost (claims expire).
    #[error("the notification queue is unavailable")]
    Database(#[from] sqlx::Error),
}

/// The delivery worker.
pub struct DeliveryWorker {
    pool: PgPool,
    sender: Arc<dyn EmailSender>,
    commands: Arc<Commands>,
    config: DeliveryConfig,
}

/// A claimed message and what rendering it needs.
#[derive(Debug, sqlx::FromRow)]
struct Claimed {
    message_id: String,
    tenant_id: Uuid,
    user_id: Uuid,
    kind: String,
    data: Value,
    attempts: i32,
}

/// Why a claimed message could not be sent.
enum Failure {
    Retry(String),
    Dead(String),
}

impl DeliveryWorker {
    /// A worker on `pool` sending with `sender`.
    pub fn new(
        pool: PgPool,
        sender: Arc<dyn EmailSender>,
        commands: Arc<Commands>,
        config: DeliveryConfig,
    ) -> Self {
        Self {
            pool,
            sender,
            commands,
            config,
        }
    }

    /// Claims the due messages and delivers them.
    ///
    /// # Errors
    /// [`DeliveryError::Database`] when claiming or recording fails.
    pub async fn deliver_due(&self) -> Result<DeliveryRound, DeliveryError> {
        let (claim_id, claimed) = self.claim().await?;
        let mut round = DeliveryRound::default();
        for message in claimed {
            let outcome = if message.attempts >= self.config.max_attempts {
                Err(Failure::Dead(
                    "every attempt's worker stopped before it finished".to_owned(),
                ))
            } else {
                self.deliver(&message).await
            };
            match outcome {
                Ok(()) => {
                    self.record(claim_id, &message.message_id, "sent", None, None)
                        .await?;
                    round.sent += 1;
                }
                Err(Failure::Retry(reason)) if message.attempts + 1 < self.config.max_attempts => {
                    let next = Utc::now() + backoff(self.config.backoff_base, message.attempts + 1);
                    self.record(
                        claim_id,
                        &message.message_id,
                        "retrying",
                        Some(&reason),
                        Some(next),
                    )
                    .await?;
                    round.retrying += 1;
                }
                Err(Failure::Retry(reason) | Failure::Dead(reason)) => {
                    tracing::warn!(email.message_id = %message.message_id, reason = %reason, "message is dead");
                    self.record(claim_id, &message.message_id, "dead", Some(&reason), None)
                        .await?;
                    round.dead += 1;
                }
            }
        }
        Ok(round)
    }

    /// Delivers until `shutdown` completes, woken by queued messages or every poll interval.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send) {
        let mut listener = match PgListener::connect_with(&self.pool).await {
            Ok(mut listener) => listener
                .listen(QUEUED_CHANNEL)
                .await
                .ok()
                .map(|()| listener),
            Err(_) => None,
        };
        tokio::pin!(shutdown);
        loop {
            loop {
                match self.deliver_due().await {
                    Ok(round) if round.sent + round.retrying + round.dead > 0 => {}
                    Ok(_) => break,
                    Err(error) => {
                        tracing::warn!(error.message = %error, error.cause_chain = ?error, "delivery round failed");
                        break;
                    }
                }
            }
            let wake = async {
                match listener.as_mut() {
                    Some(listener) => {
                        let _ =
                            tokio::time::timeout(self.config.poll_interval, listener.recv()).await;
                    }
                    None => tokio::time::sleep(self.config.poll_interval).await,
                }
            };
            tokio::select! {
                () = &mut shutdown => return,
                () = wake => {}
            }
        }
    }

    /// Claims due messages under a fresh claim id. A message whose previous claim expired (its
    /// worker died mid-send) counts that claim as an attempt.
    async fn claim(&self) -> Result<(Uuid, Vec<Claimed>), sqlx::Error> {
        let claim_id = Uuid::now_v7();
        let lease = format!("{} milliseconds", self.config.lease.as_millis());
        let due = "d.message_id IS NULL \
                   OR (d.state IN ('pending', 'retrying') AND coalesce(d.next_attempt_at, now()) <= now()) \
                   OR (d.state = 'sending' AND d.lease_until < now())";
        let claimed = sqlx::query_as(&format!(
            "WITH due AS ( \
                 SELECT m.message_id FROM notification_messages m \
                 LEFT JOIN notification_deliveries d ON d.message_id = m.message_id \
                 WHERE m.channel = 'email' AND ({due}) \
                 ORDER BY m.created_at, m.message_id LIMIT $1 FOR UPDATE OF m SKIP LOCKED), \
             claimed AS ( \
                 INSERT INTO notification_deliveries AS d (message_id, state, attempts, lease_until, claim_id) \
                 SELECT message_id, 'sending', 0, now() + $2::interval, $3 FROM due \
                 ON CONFLICT (message_id) DO UPDATE SET state = 'sending', lease_until = EXCLUDED.lease_until, \
                     claim_id = EXCLUDED.claim_id, \
                     attempts = d.attempts + CASE WHEN d.state = 'sending' THEN 1 ELSE 0 END \
                 WHERE {due} \
                 RETURNING message_id, attempts) \
             SELECT m.message_id, m.tenant_id, m.user_id, m.kind, m.data, c.attempts \
             FROM claimed c JOIN notification_messages m ON m.message_id = c.message_id"
        ))
        .bind(self.config.batch)
        .bind(lease)
        .bind(claim_id)
        .fetch_all(&self.pool)
        .await?;
        Ok((claim_id, claimed))
    }

    /// Records an outcome, if `claim_id` still owns the message (a worker whose lease expired
    /// must not overwrite the outcome of the claim that replaced it).
    async fn record(
        &self,
        claim_id: Uuid,
        message_id: &str,
        state: &str,
        error: Option<&str>,
        next: Option<DateTime<Utc>>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE notification_deliveries SET state = $2, attempts = attempts + 1, last_error = $3, \
             next_attempt_at = $4, lease_until = NULL, claim_id = NULL, \
             sent_at = CASE WHEN $2 = 'sent' THEN now() ELSE sent_at END \
             WHERE message_id = $1 AND claim_id = $5",
        )
        .bind(message_id)
        .bind(state)
        .bind(error)
        .bind(next)
        .bind(claim_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn deliver(&self, message: &Claimed) -> Result<(), Failure> {
        let email = self.compose(message).await?;
        match self.sender.send(&email).await {
            Ok(()) => Ok(()),
            Err(SendError::Transient(cause)) => Err(Failure::Retry(with_causes(&cause))),
            Err(SendError::Permanent(cause)) => Err(Failure::Dead(with_causes(&cause))),
        }
    }

    /// Renders a message for its recipient as they are now (address, name, language).
    async fn compose(&self, message: &Claimed) -> Result<OutgoingEmail, Failure> {
        let kind = MessageKind::parse(&message.kind)
            .ok_or_else(|| Failure::Dead(format!("unknown kind {}", message.kind)))?;
        let recipient: Option<(Value, Value, String, String)> = sqlx::query_as(
            "SELECT u.email, u.display_name, u.locale, t.display_name FROM settings_users u \
             JOIN settings_tenants t ON t.tenant_id = u.tenant_id WHERE u.tenant_id = $1 AND u.user_id = $2",
        )
        .bind(message.tenant_id)
        .bind(message.user_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(|error| Failure::Retry(error.to_string()))?;
        // The settings screen is written by a projector that may not have caught up yet.
        let (email, name, locale, tenant_name) = recipient.ok_or_else(|| {
            Failure::Retry("recipient not known to the settings screen yet".to_owned())
        })?;
        let keys = self.commands.personal_data();
        let address: Personal<EmailAddress> = keys
            .open(&email)
            .await
            .map_err(|e| Failure::Retry(e.to_string()))?;
        let name: Personal<DisplayName> = keys
            .open(&name)
            .await
            .map_err(|e| Failure::Retry(e.to_string()))?;
        let (Some(address), Some(name)) = (address.known(), name.known()) else {
            return Err(Failure::Dead("the recipient was erased".to_owned()));
        };
        let locale: Locale = locale
            .parse()
            .map_err(|_| Failure::Dead("unknown locale".to_owned()))?;
        let user_id = UserId::from_uuid(message.user_id);
        let set_password_url = message
            .data
            .get("token_id")
            .and_then(Value::as_str)
            .and_then(|id| id.parse().ok())
            .map(|token: Uuid| {
                let secret = self
                    .commands
                    .keys()
                    .password_tokens
                    .secret_for(user_id, PasswordTokenId::from_uuid(token));
                format!(
                    "{}/password?token={secret}",
                    self.config.public_base_url.trim_end_matches('/')
                )
            });
        let context = EmailContext {
            display_name: name.as_str().to_owned(),
            tenant_name,
            set_password_url,
            expires_at: message
                .data
                .get("expires_at")
                .and_then(|at| serde_json::from_value(at.clone()).ok()),
            domain: message
                .data
                .get("domain")
                .and_then(Value::as_str)
                .map(str::to_owned),
        };
        let content =
            render(kind, locale, &context).map_err(|error| Failure::Dead(error.to_string()))?;
        Ok(OutgoingEmail {
            message_id: message.message_id.clone(),
            to: EmailParty {
                address: address.to_string(),
                display_name: Some(name.as_str().to_owned()),
            },
            from: self.config.from.clone(),
            content,
        })
    }
}

/// An error and its causes on one line, as support sees it (`smtp delivery failed: 550 …`).
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Full-jitter exponential back-off: a random delay up to base × 2^(attempt−1), at most an hour.
fn backoff(base: Duration, attempt: i32) -> chrono::Duration {
    let exponent = u32::try_from(attempt.saturating_sub(1))
        .unwrap_or(0)
        .min(20);
    let ceiling = base
        .saturating_mul(1 << exponent)
        .min(Duration::from_secs(3600));
    let millis = u64::try_from(ceiling.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    chrono::Duration::milliseconds(
        i64::try_from(rand::rng().random_range(0..=millis)).unwrap_or(i64::MAX),
    )
}

/// The sender and worker configuration the settings choose.
///
/// # Errors
/// An unusable SMTP configuration or e-mail directory.
pub fn from_settings(
    settings: &crate::configuration::EmailSettings,
) -> anyhow::Result<(Arc<dyn EmailSender>, DeliveryConfig)> {
    use anyhow::Context as _;

    use crate::email::{EmlFileSender, SmtpCredentials, SmtpSecurity, SmtpSender, SmtpSettings};

    let sender: Arc<dyn EmailSender> = if settings.smtp_host.is_empty() {
        let dir = if settings.eml_dir.is_empty() {
            crate::embedded_postgres::default_dir()?.with_file_name("outbox")
        } else {
            settings.eml_dir.clone().into()
        };
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        tracing::info!(email.dir = %dir.display(), "no SMTP server configured: e-mails are written as .eml files");
        Arc::new(EmlFileSender::new(dir, settings.message_id_host.clone()))
    } else {
        let security = match settings.smtp_security.as_str() {
            "plain" => SmtpSecurity::Plain,
            "starttls" => SmtpSecurity::StartTls,
            "tls" => SmtpSecurity::Tls,
            other => anyhow::bail!(
                "email.smtp_security (APP_EMAIL__SMTP_SECURITY) {other}: use plain, starttls or tls"
            ),
        };
        let credentials = (!settings.smtp_username.is_empty()).then(|| SmtpCredentials {
            username: settings.smtp_username.clone(),
            password: settings.smtp_password.clone(),
        });
        Arc::new(SmtpSender::new(&SmtpSettings {
            host: settings.smtp_host.clone(),
            port: (settings.smtp_port != 0).then_some(settings.smtp_port),
            security,
            credentials,
            timeout: Duration::from_millis(settings.smtp_timeout_ms),
            message_id_host: settings.message_id_host.clone(),
        })?)
    };
    let config = DeliveryConfig {
        from: EmailParty {
            address: settings.from_address.clone(),
            display_name: Some(settings.from_name.clone()),
        },
        public_base_url: settings.public_base_url.clone(),
        max_attempts: settings.max_attempts,
        lease: Duration::from_secs(settings.lease_seconds),
        backoff_base: Duration::from_millis(settings.backoff_base_ms),
        batch: 50,
        poll_interval: Duration::from_secs(1),
    };
    Ok((sender, config))
}

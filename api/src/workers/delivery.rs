//! The e-mail delivery worker: claims due messages of the notification queue by lease, renders
//! them in the recipient's language, sends them over several connections at once, and records
//! the outcome: sent; retrying after a capped, fully jittered exponential back-off; or dead, after
//! a permanent refusal or once the message's retry budget (a duration from its first attempt,
//! 24 hours by default) is spent.
//!
//! Several workers and service instances may run at once. A claim locks the message rows with
//! `FOR UPDATE SKIP LOCKED` for a moment and leaves a lease on each message; nothing is held while
//! sending. Each message's lease is renewed immediately before its send begins, and only while
//! the claim still owns it and its lease has not run out, so no send starts on a claim that
//! expired (another worker may have taken the message over). While a send runs, the lease is
//! renewed every third of its length, so a slow server does not hand the message to a second
//! worker. Only the claim that owns a message records its outcome.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng as _;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use domain::ids::{PasswordTokenId, UserId};
use domain::values::{DisplayName, EmailAddress, Locale, Personal};
use projections::background::{Backoff, LoopHealth, Wakeup, cause_chain};
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
    /// How long a message is retried, from its first attempt; a transient failure after that
    /// makes it dead. The last retry is scheduled at the budget's end at the latest.
    pub retry_budget: Duration,
    /// How long a claim on a message lasts unless renewed; a worker that dies mid-send loses its
    /// claim after this.
    pub lease: Duration,
    /// The ceiling of the first retry delay; doubled per attempt, with full jitter.
    pub backoff_base: Duration,
    /// The largest retry delay.
    pub backoff_cap: Duration,
    /// Sends at once (each on its own SMTP connection).
    pub concurrency: usize,
    /// Messages one claim takes, handed to the senders as they come free; each message's lease
    /// is still renewed just before its own send.
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
    /// Claimed messages whose lease ran out before their send could begin; the next claim
    /// takes them.
    pub expired: usize,
}

impl DeliveryRound {
    /// Whether the round handled any message at all.
    pub const fn is_idle(&self) -> bool {
        self.sent + self.retrying + self.dead + self.expired == 0
    }

    fn add(&mut self, other: Self) {
        self.sent += other.sent;
        self.retrying += other.retrying;
        self.dead += other.dead;
        self.expired += other.expired;
    }

    fn count(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Sent => self.sent += 1,
            Outcome::Retrying => self.retrying += 1,
            Outcome::Dead => self.dead += 1,
            Outcome::Expired => self.expired += 1,
        }
    }
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
    /// Attempts before this one.
    attempts: i32,
}

/// Why a claimed message could not be sent.
enum Failure {
    Retry(String),
    Dead(String),
}

impl From<SendError> for Failure {
    fn from(error: SendError) -> Self {
        match &error {
            SendError::Transient(_) => Self::Retry(cause_chain(&error)),
            SendError::Permanent(_) => Self::Dead(cause_chain(&error)),
        }
    }
}

/// What became of one claimed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Sent,
    Retrying,
    Dead,
    Expired,
}

/// A claimed message's outcome, as recorded.
struct Record<'a> {
    sent: bool,
    permanent: bool,
    /// Whether the attempt was already counted when its send began.
    began: bool,
    error: Option<&'a str>,
    retry_in: Duration,
}

/// Which messages a claim may take: new ones, those whose retry is due by `$4` (the round's
/// start, so a message failed in this round waits for the next), and those whose worker's lease
/// ran out.
const DUE: &str = "d.message_id IS NULL \
    OR (d.state IN ('pending', 'retrying') AND coalesce(d.next_attempt_at, '-infinity') <= $4) \
    OR (d.state = 'sending' AND d.lease_until < now())";

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

    /// Delivers every message due now, `concurrency` at a time, until none is left; messages
    /// that fail in this round wait for a later one.
    ///
    /// # Errors
    /// [`DeliveryError::Database`] when claiming or recording fails.
    pub async fn deliver_due(&self) -> Result<DeliveryRound, DeliveryError> {
        self.deliver_round(&AtomicBool::new(false)).await
    }

    /// Delivers until `shutdown` completes, woken by queued messages or every poll interval.
    /// On a database failure it waits with back-off and logs only when it goes down and when it
    /// recovers. At shutdown it claims nothing more and finishes the sends under way.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send) {
        let mut health = LoopHealth::new("e-mail delivery");
        let mut wakeup = Wakeup::new(self.pool.clone(), QUEUED_CHANNEL);
        let stop = AtomicBool::new(false);
        tokio::pin!(shutdown);
        loop {
            let round = self.deliver_round(&stop);
            tokio::pin!(round);
            let result = tokio::select! {
                result = &mut round => result,
                () = &mut shutdown => {
                    stop.store(true, Ordering::Relaxed);
                    // A send cut off midway may be delivered anyway: let it finish and record.
                    let _ = round.await;
                    return;
                }
            };
            match result {
                Ok(round) => {
                    health.succeeded();
                    if round.is_idle() {
                        tokio::select! {
                            () = &mut shutdown => return,
                            () = wakeup.wait(self.config.poll_interval) => {}
                        }
                    }
                }
                Err(error) => {
                    let wait = health.failed(&error);
                    tokio::select! {
                        () = &mut shutdown => return,
                        () = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }

    /// One round: one claimer takes due messages `batch` at a time and hands them to
    /// `concurrency` senders, until nothing due is left or `stop` is set. A single claimer per
    /// worker keeps its senders from racing each other for the same rows (a claim that lost every
    /// race would look like an empty queue). Every sender runs to its end even if the database
    /// fails, so no send is cut off midway.
    async fn deliver_round(&self, stop: &AtomicBool) -> Result<DeliveryRound, DeliveryError> {
        let started: DateTime<Utc> = sqlx::query_scalar("SELECT now()")
            .fetch_one(&self.pool)
            .await?;
        let concurrency = self.config.concurrency.max(1);
        let (handover, claimed) = tokio::sync::mpsc::channel::<(Uuid, Claimed)>(concurrency);
        let claimed = tokio::sync::Mutex::new(claimed);
        let failed = AtomicBool::new(false);
        let claimer = async {
            while !stop.load(Ordering::Relaxed) && !failed.load(Ordering::Relaxed) {
                let (claim_id, messages) = self.claim(started).await?;
                if messages.is_empty() {
                    break;
                }
                for message in messages {
                    if handover.send((claim_id, message)).await.is_err() {
                        return Ok(());
                    }
                }
            }
            drop(handover);
            Ok::<(), sqlx::Error>(())
        };
        let senders = (0..concurrency).map(|_| async {
            let mut round = DeliveryRound::default();
            let mut error = None;
            loop {
                let next = claimed.lock().await.recv().await;
                let Some((claim_id, message)) = next else {
                    return (round, error);
                };
                match self.process(claim_id, &message).await {
                    Ok(outcome) => round.count(outcome),
                    Err(cause) => {
                        // The message's lease runs out and the next claim takes it.
                        failed.store(true, Ordering::Relaxed);
                        error = error.or(Some(cause));
                    }
                }
            }
        });
        let (claimed_all, lanes) = tokio::join!(claimer, futures::future::join_all(senders));
        let mut round = DeliveryRound::default();
        let mut first_error = claimed_all.err();
        for (lane, error) in lanes {
            round.add(lane);
            first_error = first_error.or(error);
        }
        match first_error {
            Some(error) => Err(error.into()),
            None => Ok(round),
        }
    }

    /// Claims up to `batch` due messages under a fresh claim id, each with its own lease.
    async fn claim(&self, started: DateTime<Utc>) -> Result<(Uuid, Vec<Claimed>), sqlx::Error> {
        let claim_id = Uuid::now_v7();
        let claimed = sqlx::query_as(&format!(
            "WITH due AS ( \
                 SELECT m.message_id FROM notification_messages m \
                 LEFT JOIN notification_deliveries d ON d.message_id = m.message_id \
                 WHERE m.channel = 'email' AND ({DUE}) \
                 ORDER BY m.created_at, m.message_id LIMIT $1 FOR UPDATE OF m SKIP LOCKED), \
             claimed AS ( \
                 INSERT INTO notification_deliveries AS d \
                     (message_id, state, attempts, lease_until, claim_id, first_attempt_at) \
                 SELECT message_id, 'sending', 0, now() + make_interval(secs => $2), $3, now() FROM due \
                 ON CONFLICT (message_id) DO UPDATE SET state = 'sending', \
                     lease_until = EXCLUDED.lease_until, claim_id = EXCLUDED.claim_id, \
                     first_attempt_at = CASE WHEN d.state = 'pending' THEN now() ELSE d.first_attempt_at END \
                 WHERE {DUE} \
                 RETURNING message_id, attempts) \
             SELECT m.message_id, m.tenant_id, m.user_id, m.kind, m.data, c.attempts \
             FROM claimed c JOIN notification_messages m ON m.message_id = c.message_id \
             ORDER BY m.created_at, m.message_id"
        ))
        .bind(self.config.batch.max(1))
        .bind(self.config.lease.as_secs_f64())
        .bind(claim_id)
        .bind(started)
        .fetch_all(&self.pool)
        .await?;
        Ok((claim_id, claimed))
    }

    /// Renders, sends and records one claimed message.
    async fn process(&self, claim_id: Uuid, message: &Claimed) -> Result<Outcome, sqlx::Error> {
        let id = message.message_id.as_str();
        let (failure, began) = match self.compose(message).await {
            Err(failure) => (failure, false),
            Ok(email) => {
                if !self.begin_send(claim_id, id).await? {
                    tracing::debug!(email.message_id = %id, "claim expired before the send began; left to the next claim");
                    return Ok(Outcome::Expired);
                }
                match self.send_renewing(claim_id, &email).await {
                    Ok(()) => {
                        let sent = Record {
                            sent: true,
                            permanent: false,
                            began: true,
                            error: None,
                            retry_in: Duration::ZERO,
                        };
                        if self.record(claim_id, id, &sent).await?.is_none() {
                            tracing::warn!(email.message_id = %id, "sent after another worker took the message over; it may arrive twice");
                        }
                        return Ok(Outcome::Sent);
                    }
                    Err(failure) => (failure, true),
                }
            }
        };
        let (permanent, reason) = match failure {
            Failure::Retry(reason) => (false, reason),
            Failure::Dead(reason) => (true, reason),
        };
        let failed = Record {
            sent: false,
            permanent,
            began,
            error: Some(&reason),
            retry_in: self.retry_delay(message.attempts.saturating_add(1)),
        };
        let outcome = self.record(claim_id, id, &failed).await?;
        if outcome == Some(Outcome::Dead) {
            tracing::warn!(email.message_id = %id, reason = %reason, permanent, "message is dead");
        }
        Ok(outcome.unwrap_or(Outcome::Expired))
    }

    /// The wait before the next try after `attempt` attempts: full jitter up to
    /// `backoff_base × 2^(attempt−1)`, at most `backoff_cap`.
    fn retry_delay(&self, attempt: i32) -> Duration {
        let ceiling = Backoff::new(self.config.backoff_base, self.config.backoff_cap)
            .ceiling(u32::try_from(attempt).unwrap_or(1));
        let ceiling_ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::rng().random_range(0..=ceiling_ms))
    }

    /// Renews the message's lease for a send about to begin, and counts the attempt, only if
    /// this claim still owns it and its lease has not run out. `false`: the send must not begin.
    async fn begin_send(&self, claim_id: Uuid, message_id: &str) -> Result<bool, sqlx::Error> {
        let renewed = sqlx::query(
            "UPDATE notification_deliveries \
             SET lease_until = now() + make_interval(secs => $3), attempts = attempts + 1 \
             WHERE message_id = $1 AND claim_id = $2 AND state = 'sending' AND lease_until > now()",
        )
        .bind(message_id)
        .bind(claim_id)
        .bind(self.config.lease.as_secs_f64())
        .execute(&self.pool)
        .await?;
        Ok(renewed.rows_affected() == 1)
    }

    /// Sends, renewing the lease every third of its length while the send runs. A send is never
    /// cut off: lettre would return the connection to its pool mid-conversation, and a message
    /// cut off after its final dot may have been delivered anyway.
    async fn send_renewing(&self, claim_id: Uuid, email: &OutgoingEmail) -> Result<(), Failure> {
        let send = self.sender.send(email);
        tokio::pin!(send);
        let period = (self.config.lease / 3).max(Duration::from_millis(100));
        let mut renewals = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            tokio::select! {
                result = &mut send => return result.map_err(Failure::from),
                _ = renewals.tick() => {
                    let renewed = sqlx::query(
                        "UPDATE notification_deliveries SET lease_until = now() + make_interval(secs => $3) \
                         WHERE message_id = $1 AND claim_id = $2 AND state = 'sending'",
                    )
                    .bind(&email.message_id)
                    .bind(claim_id)
                    .bind(self.config.lease.as_secs_f64())
                    .execute(&self.pool)
                    .await;
                    if !matches!(renewed, Ok(done) if done.rows_affected() == 1) {
                        tracing::warn!(email.message_id = %email.message_id, "could not renew the lease of a send under way");
                    }
                }
            }
        }
    }

    /// Records an outcome, if `claim_id` still owns the message (a worker whose lease expired
    /// must not overwrite the outcome of the claim that replaced it); `None` if it does not. A
    /// transient failure once the retry budget is spent makes the message dead; otherwise the
    /// next try is due after `retry_in`, and no later than the budget's end. A failed write is
    /// tried again for up to half a lease, since a send already made would otherwise be made
    /// again once the lease runs out.
    async fn record(
        &self,
        claim_id: Uuid,
        message_id: &str,
        record: &Record<'_>,
    ) -> Result<Option<Outcome>, sqlx::Error> {
        let give_up = tokio::time::Instant::now() + self.config.lease / 2;
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
        loop {
            let written: Result<Option<String>, sqlx::Error> = sqlx::query_scalar(
                "WITH budget AS (SELECT make_interval(secs => $7) AS length) \
                 UPDATE notification_deliveries SET \
                     state = CASE WHEN $2 THEN 'sent' \
                                  WHEN $3 OR now() >= first_attempt_at + budget.length THEN 'dead' \
                                  ELSE 'retrying' END, \
                     attempts = attempts + CASE WHEN $4 THEN 0 ELSE 1 END, \
                     last_error = CASE WHEN NOT $2 AND NOT $3 AND now() >= first_attempt_at + budget.length \
                                       THEN 'retry budget exhausted; last error: ' || $5 ELSE $5 END, \
                     next_attempt_at = CASE WHEN $2 OR $3 OR now() >= first_attempt_at + budget.length THEN NULL \
                                       ELSE least(now() + make_interval(secs => $8), first_attempt_at + budget.length) END, \
                     lease_until = NULL, claim_id = NULL, \
                     sent_at = CASE WHEN $2 THEN now() ELSE sent_at END \
                 FROM budget \
                 WHERE message_id = $1 AND claim_id = $6 \
                 RETURNING state",
            )
            .bind(message_id)
            .bind(record.sent)
            .bind(record.permanent)
            .bind(record.began)
            .bind(record.error)
            .bind(claim_id)
            .bind(self.config.retry_budget.as_secs_f64())
            .bind(record.retry_in.as_secs_f64())
            .fetch_optional(&self.pool)
            .await;
            match written {
                Ok(state) => {
                    return Ok(state.map(|state| match state.as_str() {
                        "sent" => Outcome::Sent,
                        "dead" => Outcome::Dead,
                        _ => Outcome::Retrying,
                    }));
                }
                Err(error) => {
                    let wait = backoff.next_wait();
                    if tokio::time::Instant::now() + wait >= give_up {
                        return Err(error);
                    }
                    tokio::time::sleep(wait).await;
                }
            }
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
            connections: settings.concurrency,
        })?)
    };
    let config = DeliveryConfig {
        from: EmailParty {
            address: settings.from_address.clone(),
            display_name: Some(settings.from_name.clone()),
        },
        public_base_url: settings.public_base_url.clone(),
        retry_budget: Duration::from_secs(settings.retry_budget_seconds),
        lease: Duration::from_secs(settings.lease_seconds),
        backoff_base: Duration::from_millis(settings.backoff_base_ms),
        backoff_cap: Duration::from_secs(settings.backoff_cap_seconds),
        concurrency: usize::try_from(settings.concurrency).unwrap_or(1).max(1),
        // One claim per round of sends keeps a claimed message's wait for its sender short.
        batch: i64::from(settings.concurrency.max(1)),
        poll_interval: Duration::from_secs(1),
    };
    Ok((sender, config))
}

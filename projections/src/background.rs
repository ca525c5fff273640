//! What every background loop of the service shares (projectors, the delivery worker, the
//! checkpoint signer): a back-off with jitter after a failure, a log line on each change of state
//! (down, then recovered) rather than on every try, and one way to sleep until a PostgreSQL
//! notification or a poll interval wakes the loop.
//!
//! A loop that retries a dead database without a pause fills the log and both cores; a loop that
//! gives up needs an operator. These loops do neither: they wait longer after each failure, up to
//! [`Backoff::MAX`], and carry on by themselves when the database is back.

use std::time::Duration;

use rand::Rng as _;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::time::Instant;

/// Full-jitter exponential back-off: after the n-th failure in a row, a random wait up to
/// `first × 2^(n−1)`, never more than `max`, and never less than a tenth of its ceiling (so that a
/// loop cannot draw a run of near-zero waits and spin).
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    failures: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Self::FIRST, Self::MAX)
    }
}

impl Backoff {
    /// The first wait's ceiling.
    pub const FIRST: Duration = Duration::from_millis(100);
    /// The largest wait.
    pub const MAX: Duration = Duration::from_secs(30);

    /// A back-off from `first` up to `max`.
    pub const fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            failures: 0,
        }
    }

    /// Counts a failure and returns how long to wait before the next try.
    pub fn next_wait(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let ceiling = self.ceiling(self.failures);
        let ceiling_ms = u64::try_from(ceiling.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let floor_ms = ceiling_ms / 10;
        Duration::from_millis(rand::rng().random_range(floor_ms..=ceiling_ms))
    }

    /// The ceiling of the wait after `failures` failures in a row.
    pub fn ceiling(&self, failures: u32) -> Duration {
        let exponent = failures.saturating_sub(1).min(24);
        self.first.saturating_mul(1 << exponent).min(self.max)
    }

    /// Forgets the failures: the next failure waits the shortest again.
    pub const fn reset(&mut self) {
        self.failures = 0;
    }

    /// Failures in a row so far.
    pub const fn failures(&self) -> u32 {
        self.failures
    }
}

/// The health of one background loop: logs `warn` when it goes down and `info` when it recovers,
/// with how long it was down and how many tries failed, and nothing in between.
#[derive(Debug)]
pub struct LoopHealth {
    name: String,
    down_since: Option<Instant>,
    failures: u64,
    backoff: Backoff,
}

impl LoopHealth {
    /// The health of the loop called `name` (`projector login_page`, `e-mail delivery`).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            down_since: None,
            failures: 0,
            backoff: Backoff::default(),
        }
    }

    /// Records a failed try and returns how long to wait before the next one. Logs only when the
    /// loop was healthy until now.
    pub fn failed(&mut self, error: &(dyn std::error::Error + 'static)) -> Duration {
        self.failures += 1;
        if self.down_since.is_none() {
            self.down_since = Some(Instant::now());
            tracing::warn!(
                background.loop = %self.name,
                error.message = %error,
                error.cause_chain = %cause_chain(error),
                "background loop is failing; retrying with back-off until it recovers"
            );
        } else {
            tracing::debug!(background.loop = %self.name, error.message = %error, "still failing");
        }
        self.backoff.next_wait()
    }

    /// Records a successful try. Logs once if the loop was down.
    pub fn succeeded(&mut self) {
        if let Some(since) = self.down_since.take() {
            tracing::info!(
                background.loop = %self.name,
                down_ms = u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX),
                failed_tries = self.failures,
                "background loop recovered"
            );
        }
        self.failures = 0;
        self.backoff.reset();
    }

    /// Whether the last try failed.
    pub const fn is_down(&self) -> bool {
        self.down_since.is_some()
    }
}

/// An error and its causes on one line.
pub fn cause_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Wakes a loop when a PostgreSQL channel is notified, or after a timeout. Without a working
/// listener it sleeps the whole timeout, so a lost connection never turns the loop into a spin;
/// the listener is connected again lazily, at most once per wait.
pub struct Wakeup {
    pool: PgPool,
    channel: &'static str,
    listener: Option<PgListener>,
}

impl std::fmt::Debug for Wakeup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wakeup")
            .field("channel", &self.channel)
            .field("listening", &self.listener.is_some())
            .finish_non_exhaustive()
    }
}

impl Wakeup {
    /// A wake-up on `channel`; listens from the first wait on.
    pub const fn new(pool: PgPool, channel: &'static str) -> Self {
        Self {
            pool,
            channel,
            listener: None,
        }
    }

    /// Waits until `channel` is notified or `timeout` passes, whichever is first.
    pub async fn wait(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        if self.listener.is_none() {
            self.listener = self.listen().await;
        }
        let Some(listener) = self.listener.as_mut() else {
            tokio::time::sleep_until(deadline).await;
            return;
        };
        match tokio::time::timeout_at(deadline, listener.recv()).await {
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(_)) => {
                // The connection is gone; the loop's own next try will notice and back off.
                self.listener = None;
                tokio::time::sleep_until(deadline).await;
            }
        }
    }

    async fn listen(&self) -> Option<PgListener> {
        let mut listener = PgListener::connect_with(&self.pool).await.ok()?;
        listener.listen(self.channel).await.ok()?;
        Some(listener)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_from_the_first_to_the_cap_and_start_over_after_a_success() {
        let mut backoff = Backoff::default();
        let waits: Vec<Duration> = (0..12).map(|_| backoff.next_wait()).collect();

        for (n, wait) in (1_u32..).zip(&waits) {
            let ceiling = backoff.ceiling(n);
            assert!(*wait <= ceiling, "wait {n}: {wait:?} above {ceiling:?}");
            assert!(
                *wait >= ceiling / 10,
                "wait {n}: {wait:?} below a tenth of {ceiling:?}"
            );
        }
        assert_eq!(backoff.ceiling(1), Backoff::FIRST);
        assert_eq!(backoff.ceiling(12), Backoff::MAX);
        assert!(waits[11] >= Backoff::MAX / 10);

        backoff.reset();
        assert!(backoff.next_wait() <= Backoff::FIRST);
    }

    #[test]
    fn ten_seconds_of_failures_take_a_handful_of_tries() {
        let mut backoff = Backoff::default();
        let mut elapsed = Duration::ZERO;
        let mut tries = 0;
        while elapsed < Duration::from_secs(10) {
            elapsed += backoff.next_wait();
            tries += 1;
        }
        assert!(tries <= 40, "{tries} tries in 10 s");
    }

    #[test]
    fn health_is_down_from_the_first_failure_until_a_success() {
        let mut health = LoopHealth::new("test");
        let error = std::io::Error::other("gone");
        assert!(!health.is_down());
        health.failed(&error);
        health.failed(&error);
        assert!(health.is_down());
        health.succeeded();
        assert!(!health.is_down());
    }
}

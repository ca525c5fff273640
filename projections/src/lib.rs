//! Read models of FinteQX Access: catch-up projectors that turn the event log into the tables
//! the login page, the settings screen, support and the notification workers read, plus the
//! auditors' reads of the log itself. Talks only to PostgreSQL.

pub mod audit;
pub mod background;
pub mod chain;
pub mod envelope;
pub mod log_chain;
pub mod login_page;
pub mod notification_queue;
pub mod position;
pub mod rebuild;
pub mod runner;
pub mod settings_screen;
pub mod sign_in_history;
pub mod verify;

#[cfg(test)]
mod test_support;

use sqlx::PgPool;

use crate::log_chain::LogChain;
use crate::login_page::LoginPage;
use crate::notification_queue::NotificationQueue;
use crate::rebuild::{RebuildReport, VerifyReport};
use crate::runner::{ProjectionError, Projector};
use crate::settings_screen::SettingsScreen;
use crate::sign_in_history::SignInHistory;

/// The names of every projector, in the order they are run.
pub const PROJECTORS: [&str; 5] = [
    LoginPage::NAME,
    SettingsScreen::NAME,
    NotificationQueue::NAME,
    SignInHistory::NAME,
    LogChain::NAME,
];

/// Runs `$body` with `$p` bound to the projector type named `$name`, or evaluates `$unknown`.
macro_rules! with_projector {
    ($name:expr, $p:ident => $body:expr, _ => $unknown:expr) => {
        match $name {
            n if n == LoginPage::NAME => {
                type $p = LoginPage;
                $body
            }
            n if n == SettingsScreen::NAME => {
                type $p = SettingsScreen;
                $body
            }
            n if n == NotificationQueue::NAME => {
                type $p = NotificationQueue;
                $body
            }
            n if n == SignInHistory::NAME => {
                type $p = SignInHistory;
                $body
            }
            n if n == LogChain::NAME => {
                type $p = LogChain;
                $body
            }
            _ => $unknown,
        }
    };
}

/// Brings every projector up to the end of the log (tests, CLI, start-up).
///
/// # Errors
/// The first projector's error.
pub async fn run_all_to_end(pool: &PgPool) -> Result<usize, ProjectionError> {
    let mut applied = 0;
    for name in PROJECTORS {
        applied += with_projector!(name, P => runner::run_to_end::<P>(pool).await?, _ => 0);
    }
    Ok(applied)
}

/// Rebuilds the projector called `name` from position 0 and switches reads to it.
///
/// # Errors
/// [`ProjectionError::UnknownProjector`] for an unknown name, or the rebuild's error.
pub async fn rebuild_named(pool: &PgPool, name: &str) -> Result<RebuildReport, ProjectionError> {
    with_projector!(name, P => rebuild::rebuild::<P>(pool).await, _ => Err(ProjectionError::UnknownProjector(name.to_owned())))
}

/// Verifies that a rebuild of the projector called `name` equals its live tables.
///
/// # Errors
/// [`ProjectionError::UnknownProjector`] for an unknown name, or the verify's error.
pub async fn verify_named(pool: &PgPool, name: &str) -> Result<VerifyReport, ProjectionError> {
    with_projector!(name, P => rebuild::verify::<P>(pool).await, _ => Err(ProjectionError::UnknownProjector(name.to_owned())))
}

/// Runs every projector until `shutdown` resolves (one task each).
pub async fn run_all_until(pool: PgPool, shutdown: tokio::sync::watch::Receiver<bool>) {
    let tasks = PROJECTORS.map(|name| {
        let pool = pool.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let stop = async move {
                let _ = shutdown.wait_for(|stop| *stop).await;
            };
            with_projector!(name, P => runner::run_until::<P>(pool, stop).await, _ => ());
        })
    });
    for task in tasks {
        if let Err(error) = task.await {
            tracing::error!(error = %error, "a projector task panicked");
        }
    }
}

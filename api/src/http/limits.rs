//! Per-client limits on the login page's anonymous lookups (`POST /login/options`,
//! `POST /sign_in/entra`): an address's sign-in method is not secret, but reading it for many
//! addresses is enumeration, so one client address gets a bounded rate (ADR-0018). The limit is
//! per service instance and kept in memory (GCRA, the `governor` crate).

use std::net::IpAddr;
use std::num::NonZeroU32;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::problem::Problem;

/// Client addresses remembered before idle ones are dropped.
const MAX_TRACKED_CLIENTS: usize = 100_000;

/// The limit on lookups per client address; `None` when switched off.
pub struct ClientLimiter(Option<DefaultKeyedRateLimiter<IpAddr>>);

impl std::fmt::Debug for ClientLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ClientLimiter")
            .field(&self.0.is_some())
            .finish()
    }
}

/// Too many lookups from one client: `429` with `Retry-After`.
#[derive(Debug)]
pub struct TooManyLookups {
    retry_after_seconds: u64,
}

impl IntoResponse for TooManyLookups {
    fn into_response(self) -> Response {
        let problem = Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too-many-lookups",
            "Too Many Requests",
            format!(
                "too many sign-in lookups from this address; wait {} seconds",
                self.retry_after_seconds
            ),
        );
        (
            [(header::RETRY_AFTER, self.retry_after_seconds.to_string())],
            problem,
        )
            .into_response()
    }
}

impl ClientLimiter {
    /// `per_minute` lookups per client address (bursts up to the same number); 0 switches the
    /// limit off.
    pub fn per_minute(per_minute: u32) -> Self {
        Self(NonZeroU32::new(per_minute).map(|n| RateLimiter::keyed(Quota::per_minute(n))))
    }

    /// Counts one lookup of `client` (an unknown client is not limited here).
    ///
    /// # Errors
    /// [`TooManyLookups`] when the client is over its rate.
    pub fn check(&self, client: Option<IpAddr>) -> Result<(), TooManyLookups> {
        let (Some(limiter), Some(client)) = (&self.0, client) else {
            return Ok(());
        };
        if limiter.len() > MAX_TRACKED_CLIENTS {
            limiter.retain_recent();
        }
        limiter.check_key(&client).map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            TooManyLookups {
                retry_after_seconds: wait.as_secs().max(1),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_client_gets_its_own_budget_and_zero_switches_the_limit_off() {
        let limiter = ClientLimiter::per_minute(3);
        let a = Some(IpAddr::from([192, 0, 2, 1]));
        let b = Some(IpAddr::from([192, 0, 2, 2]));
        for _ in 0..3 {
            assert!(limiter.check(a).is_ok());
        }
        let refused = limiter.check(a).expect_err("the fourth lookup in a minute");
        assert!((1..=60).contains(&refused.retry_after_seconds));
        assert!(limiter.check(b).is_ok(), "another client is not held back");
        assert!(limiter.check(None).is_ok());
        let off = ClientLimiter::per_minute(0);
        for _ in 0..1000 {
            assert!(off.check(a).is_ok());
        }
    }
}

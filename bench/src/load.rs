//! A closed-loop load generator: a fixed number of concurrent clients, each issuing its next
//! request as soon as the previous one answered, until the jobs or the time run out.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct Run {
    /// Requests that completed.
    pub count: usize,
    /// From the first request to the last answer.
    pub elapsed: Duration,
    /// One latency per completed request.
    pub latencies: Vec<Duration>,
}

impl Run {
    /// Completed requests per second.
    pub fn per_second(&self) -> f64 {
        #[expect(clippy::cast_precision_loss, reason = "a rate")]
        let count = self.count as f64;
        count / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// When a closed loop stops.
#[derive(Debug, Clone, Copy)]
pub enum Until {
    /// After this many jobs (job indexes `0..n`).
    Jobs(usize),
    /// When this much time has passed (job indexes grow without bound).
    Elapsed(Duration),
}

/// Runs `job(index)` from `clients` concurrent tasks until `until`; the first error stops the run.
///
/// # Errors
/// The first job's error.
pub async fn closed_loop<F, Fut>(clients: usize, until: Until, job: F) -> anyhow::Result<Run>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let job = Arc::new(job);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let job = Arc::clone(&job);
            let next = Arc::clone(&next);
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    match until {
                        Until::Jobs(n) if index >= n => break,
                        Until::Elapsed(limit) if started.elapsed() >= limit => break,
                        _ => {}
                    }
                    let sent = Instant::now();
                    job(index).await?;
                    latencies.push(sent.elapsed());
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.context("a load client panicked")??);
    }
    let elapsed = started.elapsed();
    Ok(Run {
        count: latencies.len(),
        elapsed,
        latencies,
    })
}

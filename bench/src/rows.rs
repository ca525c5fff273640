//! The rows of the table, each alternating the service and its same-run limit round by
//! round.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use api::application::{CodeOutcome, Commands, DomainUserResult};
use api::email::{EmailContext, EmailParty, OutgoingEmail, SmtpSecurity, SmtpSender, SmtpSettings};
use api::startup::Application;
use api::workers::delivery::{DeliveryConfig, DeliveryWorker};
use domain::ids::{EntraTenantId, TenantId, UserId};
use domain::values::{DomainName, Locale};
use projections::notification_queue::MessageKind;

use crate::baselines::{self, LoadAppend};
use crate::lab::{Attempt, Lab, World, admin, login_page};
use crate::load::{Run, Until, closed_loop};
use crate::report::{Figure, Goal};
use crate::smtp::SmtpServer;
use crate::stats::{millis, percentile};

/// How big a run is.
#[derive(Debug, Clone)]
pub struct Sizes {
    /// Rounds of each alternating pair.
    pub rounds: usize,
    /// Length of a throughput round.
    pub round: Duration,
    /// Users who sign in, per tenant.
    pub signers: usize,
    /// Streams of the raw-SQL limit.
    pub baseline_aggregates: usize,
    /// Users per LinkDomainUsers request.
    pub link_users: usize,
    /// Rounds of the link row.
    pub link_rounds: usize,
    /// Users of the big tenant.
    pub big_users: usize,
    /// Events in the log after loading the history (at least).
    pub history_events: usize,
    /// Commands per tenant per round of the history row.
    pub history_commands: usize,
    /// Rounds of the rebuild row.
    pub rebuild_rounds: usize,
    /// E-mails per round of the delivery row.
    pub emails: usize,
    /// A fixed CreateUser rate for the lag row instead of half the measured maximum.
    pub lag_rate: Option<f64>,
}

impl Sizes {
    /// The full run (about a quarter of an hour on 2 cores).
    pub fn full() -> Self {
        Self {
            rounds: 5,
            round: Duration::from_secs(3),
            signers: 64,
            baseline_aggregates: 50_000,
            link_users: 1000,
            link_rounds: 3,
            big_users: 20_000,
            history_events: 1_000_000,
            history_commands: 1000,
            rebuild_rounds: 2,
            emails: 100,
            lag_rate: None,
        }
    }

    /// A smoke run of a minute or two.
    pub fn quick() -> Self {
        Self {
            rounds: 3,
            round: Duration::from_secs(1),
            signers: 16,
            baseline_aggregates: 5_000,
            link_users: 100,
            link_rounds: 2,
            big_users: 500,
            history_events: 50_000,
            history_commands: 200,
            rebuild_rounds: 2,
            emails: 30,
            lag_rate: None,
        }
    }
}

/// Clients of the sign-in throughput rows.
const COMMAND_CLIENTS: usize = 16;
/// Clients of the history latency row (≥ 2: one client pays VM wake-ups, performance.md §1).
const LATENCY_CLIENTS: usize = 4;
/// Connections of the read row.
const READ_CONNECTIONS: usize = 64;

fn rate_ratio(service: &Run, limit: &Run) -> f64 {
    service.per_second() / limit.per_second().max(1e-9)
}

fn latency_line(name: &str, run: &Run) -> String {
    format!(
        "{name}: {} in {:.2} s = {:.0}/s, p50 {:.2} ms, p99 {:.2} ms",
        run.count,
        run.elapsed.as_secs_f64(),
        run.per_second(),
        millis(percentile(&run.latencies, 50.0)),
        millis(percentile(&run.latencies, 99.0))
    )
}

/// `VerifySmsCode` through [`Commands::verify_sms_code`], `clients` at a time.
async fn verify_in_process(
    commands: &Arc<Commands>,
    attempts: Vec<Attempt>,
    clients: usize,
) -> anyhow::Result<Run> {
    let attempts = Arc::new(attempts);
    let n = attempts.len();
    let commands = Arc::clone(commands);
    closed_loop(clients, Until::Jobs(n), move |i| {
        let commands = Arc::clone(&commands);
        let attempts = Arc::clone(&attempts);
        async move {
            let attempt = &attempts[i];
            match commands
                .verify_sms_code(&login_page(None), attempt.sign_in_id, &attempt.code)
                .await?
            {
                CodeOutcome::SignedIn(_) => Ok(()),
                other => bail!("VerifySmsCode did not sign in: {other:?}"),
            }
        }
    })
    .await
}

/// `POST /sign_in/verify` with the attempt's cookie, `clients` at a time.
async fn verify_over_http(
    base: &str,
    attempts: Vec<Attempt>,
    clients: usize,
    cookies: &api::keys::AttemptCookies,
) -> anyhow::Result<Run> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()?;
    let url = format!("{base}/sign_in/verify");
    // The attempt cookies (`{id}.{mac}`, as the password step sets them), made before the clock.
    let values: Arc<Vec<String>> = Arc::new(
        attempts
            .iter()
            .map(|attempt| cookies.value_for(attempt.sign_in_id))
            .collect(),
    );
    let attempts = Arc::new(attempts);
    let n = attempts.len();
    closed_loop(clients, Until::Jobs(n), move |i| {
        let client = client.clone();
        let url = url.clone();
        let attempts = Arc::clone(&attempts);
        let values = Arc::clone(&values);
        async move {
            let attempt = &attempts[i];
            let response = client
                .post(&url)
                .header(
                    "cookie",
                    format!("{}={}", api::http::sign_in::SIGN_IN_COOKIE, values[i]),
                )
                .json(&json!({"code": attempt.code}))
                .send()
                .await?;
            anyhow::ensure!(
                response.status() == reqwest::StatusCode::OK,
                "POST /sign_in/verify answered {}",
                response.status()
            );
            Ok(())
        }
    })
    .await
}

/// Starts the service's HTTP API in this process on a pool of its own, as `finteqx serve` opens it.
async fn spawn_service(lab: &Lab) -> anyhow::Result<String> {
    let pool = lab.new_pool(lab.settings.database.max_connections).await?;
    let application = Application::build(&lab.settings, pool).await?;
    let address = application.local_addr()?;
    tokio::spawn(async move {
        if let Err(error) = application.run_until(std::future::pending()).await {
            eprintln!("the service stopped: {error}");
        }
    });
    Ok(format!("http://{address}"))
}

/// Rows `verify` and `verify_http`: sign-in commands/s, 16 concurrent, beside raw SQL
/// "load 10 + append 1" with 16 clients.
pub async fn verify(
    lab: &Lab,
    sizes: &Sizes,
    world: &World,
    limit: &LoadAppend,
    over_http: bool,
) -> anyhow::Result<Figure> {
    let base = if over_http {
        Some(spawn_service(lab).await?)
    } else {
        None
    };
    let mut figure = Figure {
        id: if over_http { "verify_http" } else { "verify" },
        title: if over_http {
            "sign-in commands/s over HTTP (`POST /sign_in/verify`, VerifySmsCode), 16 connections"
                .to_owned()
        } else {
            "sign-in commands/s in-process (`Commands::verify_sms_code`), 16 concurrent".to_owned()
        },
        unit: "/s",
        service: Vec::new(),
        limit_title: "raw SQL: load 10 events + append 1 (one transaction), 16 clients".to_owned(),
        limit: Vec::new(),
        ratios: Vec::new(),
        goal: Goal::AtLeast(if over_http { 0.4 } else { 0.6 }),
        details: Vec::new(),
    };
    let mut per_round = if sizes.round >= Duration::from_secs(2) {
        1500
    } else {
        300
    };
    for round in 0..sizes.rounds {
        let attempts = lab.attempts(world, per_round).await?;
        limit.ensure_room(20_000).await?;
        let run_service = async {
            match &base {
                Some(base) => {
                    let cookies = &lab.commands.keys().attempt_cookies;
                    verify_over_http(base, attempts, COMMAND_CLIENTS, cookies).await
                }
                None => verify_in_process(&lab.commands, attempts, COMMAND_CLIENTS).await,
            }
        };
        let (service, baseline) = if round % 2 == 0 {
            let baseline = limit.run(COMMAND_CLIENTS, sizes.round).await?;
            (run_service.await?, baseline)
        } else {
            let service = run_service.await?;
            (service, limit.run(COMMAND_CLIENTS, sizes.round).await?)
        };
        eprintln!(
            "  {} round {}: service {:.0}/s, limit {:.0}/s",
            figure.id,
            round + 1,
            service.per_second(),
            baseline.per_second()
        );
        figure.details.push(format!(
            "round {}: {}; {}",
            round + 1,
            latency_line("service", &service),
            latency_line("limit", &baseline)
        ));
        figure.service.push(service.per_second());
        figure.limit.push(baseline.per_second());
        figure.ratios.push(rate_ratio(&service, &baseline));
        // Next round's service run about as long as a limit round.
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "a job count from a rate"
        )]
        let next = (service.per_second() * sizes.round.as_secs_f64()) as usize;
        per_round = next.clamp(100, 20_000);
    }
    Ok(figure)
}

/// Row `history`: VerifySmsCode latency in the big tenant beside a fresh one, alternating, with
/// [`LATENCY_CLIENTS`] clients. Gives the p50 and the p99 figure.
pub async fn history(
    lab: &Lab,
    sizes: &Sizes,
    big: &World,
    fresh: &World,
    history_note: &str,
) -> anyhow::Result<Vec<Figure>> {
    let figure = |id, title: &str| Figure {
        id,
        title: title.to_owned(),
        unit: "ms",
        service: Vec::new(),
        limit_title: "the same command in a fresh tenant (same database), alternating".to_owned(),
        limit: Vec::new(),
        ratios: Vec::new(),
        goal: Goal::AtMost(1.2),
        details: Vec::new(),
    };
    let mut p50 = figure(
        "history_p50",
        "VerifySmsCode latency p50, 4 clients, in the big tenant",
    );
    let mut p99 = figure(
        "history_p99",
        "VerifySmsCode latency p99, 4 clients, in the big tenant",
    );
    p50.details.push(history_note.to_owned());
    for round in 0..sizes.rounds {
        let big_attempts = lab.attempts(big, sizes.history_commands).await?;
        let fresh_attempts = lab.attempts(fresh, sizes.history_commands).await?;
        let (big_run, fresh_run) = if round % 2 == 0 {
            let b = verify_in_process(&lab.commands, big_attempts, LATENCY_CLIENTS).await?;
            let f = verify_in_process(&lab.commands, fresh_attempts, LATENCY_CLIENTS).await?;
            (b, f)
        } else {
            let f = verify_in_process(&lab.commands, fresh_attempts, LATENCY_CLIENTS).await?;
            let b = verify_in_process(&lab.commands, big_attempts, LATENCY_CLIENTS).await?;
            (b, f)
        };
        for (figure, p) in [(&mut p50, 50.0), (&mut p99, 99.0)] {
            let b = millis(percentile(&big_run.latencies, p));
            let f = millis(percentile(&fresh_run.latencies, p));
            figure.service.push(b);
            figure.limit.push(f);
            figure.ratios.push(b / f.max(1e-9));
        }
        eprintln!(
            "  history round {}: big p50 {:.2} ms p99 {:.2} ms; fresh p50 {:.2} ms p99 {:.2} ms",
            round + 1,
            millis(percentile(&big_run.latencies, 50.0)),
            millis(percentile(&big_run.latencies, 99.0)),
            millis(percentile(&fresh_run.latencies, 50.0)),
            millis(percentile(&fresh_run.latencies, 99.0)),
        );
        p99.details.push(format!(
            "round {}: {}; {}",
            round + 1,
            latency_line("big tenant", &big_run),
            latency_line("fresh tenant", &fresh_run)
        ));
    }
    Ok(vec![p50, p99])
}

/// Row `link`: LinkDomainUsers of `link_users` users, time per user, beside one CreateUser
/// (the median of the sequential CreateUser calls that made those users).
pub async fn link(lab: &Lab, sizes: &Sizes) -> anyhow::Result<Figure> {
    let tenant = lab.tenant("Koppel BV").await?;
    let domain = DomainName::parse("koppel-bench.nl").map_err(|e| anyhow!("{e}"))?;
    let entra =
        EntraTenantId::try_from_uuid(Uuid::from_u128(0xE001)).map_err(|e| anyhow!("{e:?}"))?;
    lab.commands
        .bind_domain(&admin(tenant), tenant, domain.clone(), entra)
        .await?;
    let mut figure = Figure {
        id: "link",
        title: format!(
            "LinkDomainUsers of {} users, time per user",
            sizes.link_users
        ),
        unit: "ms",
        service: Vec::new(),
        limit_title: "one CreateUser (median of the sequential calls that made them)".to_owned(),
        limit: Vec::new(),
        ratios: Vec::new(),
        goal: Goal::Report,
        details: Vec::new(),
    };
    for round in 0..sizes.link_rounds {
        let mut users = Vec::with_capacity(sizes.link_users);
        let mut creates = Vec::with_capacity(sizes.link_users);
        for n in 0..sizes.link_users {
            let started = Instant::now();
            users.push(
                lab.create_user(tenant, &format!("r{round}u{n}@koppel-bench.nl"))
                    .await?,
            );
            creates.push(started.elapsed());
        }
        let started = Instant::now();
        let outcomes = lab
            .commands
            .link_domain_users(&admin(tenant), tenant, domain.clone(), &users, false)
            .await?;
        let elapsed = started.elapsed();
        let linked = outcomes
            .iter()
            .filter(|o| matches!(o.result, DomainUserResult::Changed { .. }))
            .count();
        anyhow::ensure!(
            linked == users.len(),
            "only {linked} of {} users were linked",
            users.len()
        );
        #[expect(clippy::cast_precision_loss, reason = "a count")]
        let per_user = millis(elapsed) / users.len() as f64;
        let create = millis(percentile(&creates, 50.0));
        eprintln!(
            "  link round {}: {:.2} ms per user linked, CreateUser {:.2} ms",
            round + 1,
            per_user,
            create
        );
        figure.details.push(format!(
            "round {}: {} users linked in {:.2} s; CreateUser p50 {:.2} ms, p99 {:.2} ms",
            round + 1,
            users.len(),
            elapsed.as_secs_f64(),
            create,
            millis(percentile(&creates, 99.0))
        ));
        figure.service.push(per_user);
        figure.limit.push(create);
        figure.ratios.push(per_user / create.max(1e-9));
    }
    Ok(figure)
}

/// Row `lag`: commit → visible in the login page's table, with the projectors running, while
/// CreateUser runs open-loop at half the rate a closed loop of 16 reached just before.
pub async fn lag(lab: &Lab, sizes: &Sizes) -> anyhow::Result<Figure> {
    let tenant = lab.tenant("Vertraging BV").await?;
    // Start from a caught-up log: the lag of earlier rows' events is not this row's.
    lab.run_projections().await?;
    let projector_pool = lab.new_pool(8).await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let projectors = tokio::spawn(projections::run_all_until(projector_pool.clone(), stopped));
    let mut figure = Figure {
        id: "lag",
        title: "projection lag p99, commit → visible in the login page (CreateUser at half the max rate)".to_owned(),
        unit: "ms",
        service: Vec::new(),
        limit_title: "–".to_owned(),
        limit: Vec::new(),
        ratios: Vec::new(),
        goal: Goal::AtMost(50.0),
        details: Vec::new(),
    };
    let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let result: anyhow::Result<()> = async {
        for round in 0..sizes.rounds {
            let max = {
                let commands = Arc::clone(&lab.commands);
                let counter = Arc::clone(&counter);
                closed_loop(COMMAND_CLIENTS, Until::Elapsed(sizes.round), move |_| {
                    let commands = Arc::clone(&commands);
                    let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    async move { create(&commands, tenant, n).await.map(|_| ()) }
                })
                .await?
            };
            let rate = sizes.lag_rate.unwrap_or(max.per_second() / 2.0);
            let lags = open_loop_lags(lab, tenant, rate, sizes.round, &counter).await?;
            let p50 = millis(percentile(&lags, 50.0));
            let p99 = millis(percentile(&lags, 99.0));
            eprintln!(
                "  lag round {}: max {:.0}/s, at {:.0}/s: p50 {p50:.1} ms, p99 {p99:.1} ms",
                round + 1,
                max.per_second(),
                rate
            );
            figure.details.push(format!(
                "round {}: max CreateUser {:.0}/s (16 clients, projectors running); at {:.0}/s: {} commands, lag p50 {p50:.1} ms, p99 {p99:.1} ms, max {:.1} ms",
                round + 1,
                max.per_second(),
                rate,
                lags.len(),
                millis(percentile(&lags, 100.0))
            ));
            figure.service.push(p99);
            figure.ratios.push(p99);
        }
        Ok(())
    }
    .await;
    let _ = stop.send(true);
    let _ = projectors.await;
    projector_pool.close().await;
    result?;
    Ok(figure)
}

async fn create(commands: &Commands, tenant: TenantId, n: usize) -> anyhow::Result<UserId> {
    let email = format!("lag{n}@vertraging-bench.nl");
    Ok(commands
        .create_user(&admin(tenant), tenant, crate::lab::new_user(&email)?)
        .await?
        .user_id)
}

/// CreateUser at `rate` per second for `duration`, open loop; returns each command's lag from
/// its return to its row in `login_accounts`, watched from the start.
async fn open_loop_lags(
    lab: &Lab,
    tenant: TenantId,
    rate: f64,
    duration: Duration,
    counter: &Arc<std::sync::atomic::AtomicUsize>,
) -> anyhow::Result<Vec<Duration>> {
    let pending: Arc<Mutex<Vec<(Uuid, Instant)>>> = Arc::default();
    // The number of commands issued, known once the issuing is over.
    let (issued_tx, issued_rx) = tokio::sync::watch::channel(None::<usize>);
    let watcher = {
        let pending = Arc::clone(&pending);
        let pool = lab.harness.clone();
        tokio::spawn(async move { watch_visible(&pool, &pending, issued_rx).await })
    };
    let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(1.0)));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut tasks = Vec::new();
    while started.elapsed() < duration {
        interval.tick().await;
        let commands = Arc::clone(&lab.commands);
        let pending = Arc::clone(&pending);
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tasks.push(tokio::spawn(async move {
            let user_id = create(&commands, tenant, n).await?;
            if let Ok(mut pending) = pending.lock() {
                pending.push((user_id.as_uuid(), Instant::now()));
            }
            anyhow::Ok(())
        }));
    }
    let _ = issued_tx.send(Some(tasks.len()));
    for task in tasks {
        task.await.context("a CreateUser task panicked")??;
    }
    watcher.await.context("the lag watcher panicked")?
}

/// Polls `login_accounts` every millisecond for the pending users until as many users as were
/// issued have been seen.
async fn watch_visible(
    pool: &PgPool,
    pending: &Mutex<Vec<(Uuid, Instant)>>,
    issued: tokio::sync::watch::Receiver<Option<usize>>,
) -> anyhow::Result<Vec<Duration>> {
    let mut lags = Vec::new();
    let mut deadline = None;
    loop {
        let expected = *issued.borrow();
        if let Some(expected) = expected {
            if lags.len() >= expected {
                return Ok(lags);
            }
            let until = *deadline.get_or_insert_with(|| Instant::now() + Duration::from_secs(120));
            anyhow::ensure!(Instant::now() < until, "users did not become visible");
        }
        let ids: Vec<Uuid> = pending
            .lock()
            .map_err(|_| anyhow!("poisoned"))?
            .iter()
            .map(|(id, _)| *id)
            .collect();
        if !ids.is_empty() {
            let visible: Vec<Uuid> =
                sqlx::query_scalar("SELECT user_id FROM login_accounts WHERE user_id = ANY($1)")
                    .bind(&ids)
                    .fetch_all(pool)
                    .await?;
            let seen = Instant::now();
            let mut pending = pending.lock().map_err(|_| anyhow!("poisoned"))?;
            pending.retain(|(id, committed)| {
                if visible.contains(id) {
                    lags.push(seen.saturating_duration_since(*committed));
                    false
                } else {
                    true
                }
            });
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Row `rebuild`: a full rebuild of every projection beside a raw ordered cursor read of the
/// log, alternating.
pub async fn rebuild(lab: &Lab, sizes: &Sizes) -> anyhow::Result<Figure> {
    let events = lab.event_count().await?;
    let mut figure = Figure {
        id: "rebuild",
        title: format!(
            "full rebuild of all {} projections, events/s per projection ({} events × {} ÷ total time)",
            projections::PROJECTORS.len(),
            crate::report::number(events as f64),
            projections::PROJECTORS.len()
        ),
        unit: "events/s",
        service: Vec::new(),
        limit_title:
            "raw ordered read of the events table (server-side cursor, FETCH 1000, JSON decoded)"
                .to_owned(),
        limit: Vec::new(),
        ratios: Vec::new(),
        goal: Goal::AtLeast(0.5),
        details: Vec::new(),
    };
    for round in 0..sizes.rebuild_rounds {
        let read = async { baselines::cursor_read(&lab.url).await };
        let rebuild_all = async {
            let mut times = Vec::new();
            for name in projections::PROJECTORS {
                let started = Instant::now();
                let report = projections::rebuild_named(&lab.harness, name).await?;
                times.push((name, report.events, started.elapsed()));
            }
            anyhow::Ok(times)
        };
        let ((read_rows, read_time), times) = if round % 2 == 0 {
            let read = read.await?;
            (read, rebuild_all.await?)
        } else {
            let times = rebuild_all.await?;
            (read.await?, times)
        };
        let total: Duration = times.iter().map(|(_, _, t)| *t).sum();
        #[expect(clippy::cast_precision_loss, reason = "a rate")]
        let service = (events as f64 * times.len() as f64) / total.as_secs_f64();
        #[expect(clippy::cast_precision_loss, reason = "a rate")]
        let limit = read_rows as f64 / read_time.as_secs_f64();
        eprintln!(
            "  rebuild round {}: {service:.0} events/s per projection, cursor read {limit:.0} events/s",
            round + 1
        );
        let each: Vec<String> = times
            .iter()
            .map(|(name, applied, time)| {
                format!("{name} {applied} events in {:.1} s", time.as_secs_f64())
            })
            .collect();
        figure.details.push(format!(
            "round {}: {}; cursor read {read_rows} rows in {:.1} s",
            round + 1,
            each.join(", "),
            read_time.as_secs_f64()
        ));
        figure.service.push(service);
        figure.limit.push(limit);
        figure.ratios.push(service / limit);
    }
    Ok(figure)
}

/// Row `reads`: `POST /login/options` over HTTP with 64 connections beside a minimal axum + sqlx
/// server doing one primary-key lookup of the same table with the same pool size.
pub async fn reads(lab: &Lab, sizes: &Sizes, emails: &[String]) -> anyhow::Result<Figure> {
    anyhow::ensure!(!emails.is_empty(), "no e-mail addresses to look up");
    let service_base = spawn_service(lab).await?;
    let limit_pool = lab.new_pool(lab.settings.database.max_connections).await?;
    let limit_base = baselines::spawn_pk_server(limit_pool).await?;
    let keys: Vec<String> = emails
        .iter()
        .map(|email| {
            domain::values::EmailAddress::parse(email)
                .map(|e| {
                    lab.commands
                        .keys()
                        .email_lookup
                        .key_for(&e)
                        .as_str()
                        .to_owned()
                })
                .map_err(|e| anyhow!("{e}"))
        })
        .collect::<anyhow::Result<_>>()?;
    let service_bodies: Arc<Vec<serde_json::Value>> =
        Arc::new(emails.iter().map(|e| json!({"email": e})).collect());
    let limit_bodies: Arc<Vec<serde_json::Value>> =
        Arc::new(keys.iter().map(|k| json!({"key": k})).collect());
    let mut figure = Figure {
        id: "reads",
        title: "login-options reads/s over HTTP (`POST /login/options`), 64 connections".to_owned(),
        unit: "/s",
        service: Vec::new(),
        limit_title: "axum 0.8 + one primary-key lookup via sqlx, pool 16, same load generator"
            .to_owned(),
        limit: Vec::new(),
        ratios: Vec::new(),
        goal: Goal::AtLeast(0.7),
        details: Vec::new(),
    };
    for round in 0..sizes.rounds {
        let service_run = http_reads(
            format!("{service_base}/login/options"),
            Arc::clone(&service_bodies),
            sizes.round,
        );
        let limit_run = http_reads(
            format!("{limit_base}/options"),
            Arc::clone(&limit_bodies),
            sizes.round,
        );
        let (service, limit) = if round % 2 == 0 {
            let limit = limit_run.await?;
            (service_run.await?, limit)
        } else {
            let service = service_run.await?;
            (service, limit_run.await?)
        };
        eprintln!(
            "  reads round {}: service {:.0}/s p99 {:.1} ms, limit {:.0}/s p99 {:.1} ms",
            round + 1,
            service.per_second(),
            millis(percentile(&service.latencies, 99.0)),
            limit.per_second(),
            millis(percentile(&limit.latencies, 99.0))
        );
        figure.details.push(format!(
            "round {}: {}; {}",
            round + 1,
            latency_line("service", &service),
            latency_line("limit", &limit)
        ));
        figure.service.push(service.per_second());
        figure.limit.push(limit.per_second());
        figure.ratios.push(rate_ratio(&service, &limit));
    }
    Ok(figure)
}

async fn http_reads(
    url: String,
    bodies: Arc<Vec<serde_json::Value>>,
    duration: Duration,
) -> anyhow::Result<Run> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(READ_CONNECTIONS)
        .build()?;
    // A short warm-up opens the connections.
    let warm = {
        let (client, url, bodies) = (client.clone(), url.clone(), Arc::clone(&bodies));
        move |i: usize| read_once(client.clone(), url.clone(), Arc::clone(&bodies), i)
    };
    closed_loop(READ_CONNECTIONS, Until::Jobs(READ_CONNECTIONS * 4), warm).await?;
    closed_loop(READ_CONNECTIONS, Until::Elapsed(duration), move |i| {
        read_once(client.clone(), url.clone(), Arc::clone(&bodies), i)
    })
    .await
}

async fn read_once(
    client: reqwest::Client,
    url: String,
    bodies: Arc<Vec<serde_json::Value>>,
    i: usize,
) -> anyhow::Result<()> {
    // Spread over the addresses by a multiplicative hash of the request index.
    let body = &bodies[(i.wrapping_mul(2_654_435_761)) % bodies.len()];
    let response = client.post(&url).json(body).send().await?;
    anyhow::ensure!(
        response.status().is_success(),
        "{url} answered {}",
        response.status()
    );
    let _ = response.bytes().await?;
    Ok(())
}

/// Sends at once on both sides of the `email` row: the worker's concurrency and SMTP
/// connections, and the bare lettre loop's concurrent senders and connections (the service's
/// default, `email.concurrency`).
const EMAIL_CONCURRENCY: usize = 8;

/// Row `email`: the delivery worker sending to a local SMTP server beside a bare lettre loop to
/// the same server, alternating. `None` when the SMTP server cannot be started.
pub async fn email(lab: &Lab, sizes: &Sizes) -> anyhow::Result<Option<Figure>> {
    let smtp = match SmtpServer::start() {
        Ok(smtp) => smtp,
        Err(error) => {
            eprintln!("  email: skipped, no SMTP server: {error:#}");
            return Ok(None);
        }
    };
    let tenant = lab.tenant("Post BV").await?;
    let sender = Arc::new(SmtpSender::new(&SmtpSettings {
        host: "127.0.0.1".to_owned(),
        port: Some(smtp.port()),
        security: SmtpSecurity::Plain,
        credentials: None,
        timeout: Duration::from_secs(10),
        message_id_host: "finteqx.bench".to_owned(),
        connections: u32::try_from(EMAIL_CONCURRENCY)?,
    })?);
    let from = EmailParty {
        address: "noreply@finteqx.nl".to_owned(),
        display_name: Some("Akkermans FinteQX".to_owned()),
    };
    let worker = DeliveryWorker::new(
        lab.pool.clone(),
        sender,
        Arc::clone(&lab.commands),
        DeliveryConfig {
            from: from.clone(),
            public_base_url: "https://app.finteqx.bench".to_owned(),
            retry_budget: Duration::from_secs(24 * 3600),
            lease: Duration::from_secs(60),
            backoff_base: Duration::from_millis(100),
            backoff_cap: Duration::from_secs(1),
            concurrency: EMAIL_CONCURRENCY,
            batch: 4,
            poll_interval: Duration::from_secs(1),
        },
    );
    let content = api::email::render(
        MessageKind::WelcomeSetPassword,
        Locale::Nl,
        &EmailContext {
            display_name: "Anne de Vries".to_owned(),
            tenant_name: "Post BV".to_owned(),
            set_password_url: Some(
                "https://app.finteqx.bench/password?token=abcdefabcdefabcdefabcdefabcdef"
                    .to_owned(),
            ),
            expires_at: Some(chrono::Utc::now()),
            domain: None,
        },
    )?;
    let message = api::email::sender::build_message(
        &OutgoingEmail {
            message_id: "bench:bare:1".to_owned(),
            to: EmailParty {
                address: "bare@post-bench.nl".to_owned(),
                display_name: Some("Anne de Vries".to_owned()),
            },
            from,
            content,
        },
        "finteqx.bench",
    )?;
    let mut figure = Figure {
        id: "email",
        title: format!(
            "e-mails delivered/s by the delivery worker to a local SMTP server (aiosmtpd), \
             {EMAIL_CONCURRENCY} sends at once"
        ),
        unit: "/s",
        service: Vec::new(),
        limit_title: format!(
            "bare lettre send loops to the same server, {EMAIL_CONCURRENCY} at once as the worker"
        ),
        limit: Vec::new(),
        ratios: Vec::new(),
        goal: Goal::AtLeast(0.8),
        details: Vec::new(),
    };
    // Whatever earlier rows queued goes out first, unmeasured.
    lab.run_projections().await?;
    drain(&worker).await?;
    for round in 0..sizes.rounds {
        lab.users(
            tenant,
            round * sizes.emails..(round + 1) * sizes.emails,
            false,
        )
        .await?;
        lab.run_projections().await?;
        let service_run = async {
            let started = Instant::now();
            let sent = drain(&worker).await?;
            anyhow::Ok(Run {
                count: sent,
                elapsed: started.elapsed(),
                latencies: Vec::new(),
            })
        };
        let limit_run =
            baselines::lettre_loop(smtp.port(), &message, sizes.emails, EMAIL_CONCURRENCY);
        let (service, limit) = if round % 2 == 0 {
            let limit = limit_run.await?;
            (service_run.await?, limit)
        } else {
            let service = service_run.await?;
            (service, limit_run.await?)
        };
        anyhow::ensure!(
            service.count >= sizes.emails,
            "the worker sent {} of {} e-mails",
            service.count,
            sizes.emails
        );
        eprintln!(
            "  email round {}: worker {:.0}/s, bare lettre {:.0}/s",
            round + 1,
            service.per_second(),
            limit.per_second()
        );
        figure.details.push(format!(
            "round {}: worker {} e-mails in {:.2} s; bare lettre {} in {:.2} s",
            round + 1,
            service.count,
            service.elapsed.as_secs_f64(),
            limit.count,
            limit.elapsed.as_secs_f64()
        ));
        figure.service.push(service.per_second());
        figure.limit.push(limit.per_second());
        figure.ratios.push(rate_ratio(&service, &limit));
    }
    Ok(Some(figure))
}

/// Delivers until nothing is due; returns the e-mails sent.
async fn drain(worker: &DeliveryWorker) -> anyhow::Result<usize> {
    let mut sent = 0;
    loop {
        let round = worker.deliver_due().await?;
        anyhow::ensure!(
            round.dead == 0 && round.retrying == 0,
            "delivery failed: {round:?}"
        );
        if round.sent == 0 {
            return Ok(sent);
        }
        sent += round.sent;
    }
}

/// Peak memory of a separate `finteqx serve` process (the release binary beside this one) on the
/// benchmark database, with its projectors and workers running, under the read row's load for
/// two rounds. `None` when the binary is not there (`cargo build --release -p api`).
pub async fn serve_memory(
    lab: &Lab,
    sizes: &Sizes,
    emails: &[String],
) -> anyhow::Result<Option<(f64, String)>> {
    let binary = std::env::current_exe()?.with_file_name("finteqx");
    if !binary.exists() {
        return Ok(None);
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let outbox =
        std::env::temp_dir().join(format!("finteqx-bench-outbox-{}", Uuid::new_v4().simple()));
    let mut child = std::process::Command::new(&binary)
        .arg("serve")
        .arg("--port")
        .arg(port.to_string())
        .env("DATABASE_URL", &lab.url)
        .env("APP_EMAIL__EML_DIR", &outbox)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let pid = child.id();
    let base = format!("http://127.0.0.1:{port}");
    let result = async {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while client.get(format!("{base}/health")).send().await.is_err() {
            anyhow::ensure!(Instant::now() < deadline, "finteqx serve did not answer");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let idle = status_kib(pid, "VmRSS").unwrap_or(0);
        let bodies: Arc<Vec<serde_json::Value>> =
            Arc::new(emails.iter().map(|e| json!({"email": e})).collect());
        let mut reads = Vec::new();
        if !bodies.is_empty() {
            for _ in 0..2 {
                let run = http_reads(format!("{base}/login/options"), Arc::clone(&bodies), sizes.round).await?;
                reads.push(format!("{:.0}/s", run.per_second()));
            }
        }
        let peak = status_kib(pid, "VmHWM").unwrap_or(0);
        #[expect(clippy::cast_precision_loss, reason = "a size")]
        let peak_mib = peak as f64 / 1024.0;
        anyhow::Ok((
            peak_mib,
            format!(
                "separate `finteqx serve` (release, pid {pid}, projectors and delivery worker running): VmRSS {} MiB once ready, VmHWM {peak_mib:.0} MiB after 2 read rounds of 64 connections ({})",
                idle / 1024,
                reads.join(", ")
            ),
        ))
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&outbox);
    result.map(Some)
}

/// A `/proc/<pid>/status` field in KiB.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

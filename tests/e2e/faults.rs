//! The service under faults, as the real `finteqx` binary on a private embedded cluster: the
//! database stopped under it, one of two instances killed mid-load, and a load of tens of
//! thousands of events through two instances; afterwards the operator's checks must pass.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::sync::Mutex;
use uuid::Uuid;

use api::configuration::Settings;
use api::http::auth::{SESSION_COOKIE, start_session};
use domain::ids::{TenantId, UserId};
use domain::values::Role;

use crate::embedded_database::{Folder, Service};

/// One tenant with an administrator's session, driven by one load client.
struct Tenant {
    id: TenantId,
    session: String,
}

/// Registers `count` tenants with an administrator each, and opens their sessions.
async fn tenants(pool: &PgPool, count: usize) -> Vec<Tenant> {
    let settings = Settings::load(&Settings::default_dir()).unwrap();
    let commands = api::startup::build_commands(&settings, pool.clone()).unwrap();
    let mut tenants = Vec::new();
    for n in 0..count {
        let (id, admin) = api::cli::register_tenant(
            &commands,
            &format!("Kantoor {n}"),
            "nl",
            &format!("beheer@kantoor{n}.nl"),
            "Bea Heer",
        )
        .await
        .unwrap();
        let session = start_session(
            pool,
            id,
            admin,
            Role::Administrator,
            "password",
            chrono::Utc::now(),
        )
        .await
        .unwrap();
        tenants.push(Tenant { id, session });
    }
    tenants
}

/// What the load clients had accepted (a 2xx answer): nothing of it may be lost.
#[derive(Default)]
struct Accepted {
    users: Vec<UserId>,
    commands: usize,
    /// The last MFA policy each tenant accepted.
    policies: Vec<(TenantId, bool)>,
}

/// An answer, and whether it came from a second instance after the first one failed mid-request
/// (then the first may have committed the command already).
struct Answer {
    status: StatusCode,
    body: Value,
    retried: bool,
}

/// Sends `method path body` as the tenant's administrator to the first instance that answers;
/// `None` when none did (a killed instance refuses connections).
async fn send(
    client: &Client,
    bases: &[String],
    turn: usize,
    tenant: &Tenant,
    method: Method,
    path: &str,
    body: Value,
) -> Option<Answer> {
    for offset in 0..bases.len() {
        let base = &bases[(turn + offset) % bases.len()];
        let sent = client
            .request(method.clone(), format!("{base}{path}"))
            .header("cookie", format!("{SESSION_COOKIE}={}", tenant.session))
            .json(&body)
            .send()
            .await;
        if let Ok(response) = sent {
            let status = response.status();
            return Some(Answer {
                status,
                body: response.json().await.unwrap_or_default(),
                retried: offset > 0,
            });
        }
    }
    None
}

/// The newest users each tenant's client changes in turn; older ones are left alone so that no
/// stream grows long (a command loads its aggregate's whole stream).
const WORKING_SET: usize = 10;

/// Whether an answer was accepted; a command retried on the other instance after the first died
/// mid-request may find itself done already (409), which is not counted as accepted.
fn is_accepted(action: &str, answer: &Answer) -> bool {
    let done_before = answer.retried && answer.status == StatusCode::CONFLICT;
    assert!(
        answer.status.is_success() || done_before,
        "{action}: {} {}",
        answer.status,
        answer.body
    );
    answer.status.is_success()
}

/// One tenant's client, a mix of what an administrator does, until `stop`: it creates a user
/// every fifth round, deactivates and reactivates its newest users in turn, and flips the MFA
/// policy every tenth round.
async fn drive_tenant(
    client: Client,
    bases: Arc<Mutex<Vec<String>>>,
    tenant: Tenant,
    index: usize,
    stop: Arc<AtomicBool>,
) -> Accepted {
    let mut accepted = Accepted::default();
    let t = tenant.id;
    let mut turn = index;
    let mut send_as_admin = async |method: Method, path: String, body: Value| {
        turn += 1;
        let bases = bases.lock().await.clone();
        send(&client, &bases, turn, &tenant, method, &path, body).await
    };
    let mut users = Vec::new();
    let mut sms_required = false;
    let mut round = 0_usize;
    while !stop.load(Ordering::Relaxed) {
        if users.len() < WORKING_SET || round.is_multiple_of(5) {
            let email = format!("u{}@kantoor{index}.nl", Uuid::new_v4().simple());
            let body = json!({"email": email, "display_name": "Nieuw", "role": "user", "locale": "nl", "method": "sms"});
            let path = format!("/tenants/{t}/users");
            if let Some(created) = send_as_admin(Method::POST, path, body).await
                && is_accepted("create", &created)
            {
                let user = created.body["user_id"].as_str().unwrap().parse().unwrap();
                users.push(user);
                accepted.users.push(UserId::from_uuid(user));
                accepted.commands += 1;
            }
            if users.len() < WORKING_SET {
                continue;
            }
        }
        let user = users[users.len() - 1 - round % WORKING_SET];
        round += 1;
        for action in ["deactivate", "reactivate"] {
            let path = format!("/tenants/{t}/users/{user}/{action}");
            if let Some(answer) = send_as_admin(Method::POST, path, json!({})).await
                && is_accepted(action, &answer)
            {
                accepted.commands += 1;
            }
        }
        if round.is_multiple_of(10) {
            let path = format!("/tenants/{t}/mfa_policy");
            let body = json!({"sms_required": !sms_required});
            if let Some(answer) = send_as_admin(Method::PUT, path, body).await {
                // Done now or by the try that died: the policy is flipped either way.
                sms_required = !sms_required;
                if is_accepted("mfa_policy", &answer) {
                    accepted.commands += 1;
                }
            }
        }
    }
    accepted.policies.push((t, sms_required));
    accepted
}

/// Drives every tenant from its own client through `bases` until `stop`; every accepted command
/// is recorded.
async fn drive(
    bases: Arc<Mutex<Vec<String>>>,
    tenants: Vec<Tenant>,
    stop: Arc<AtomicBool>,
) -> Accepted {
    let client = Client::new();
    let clients: Vec<_> = tenants
        .into_iter()
        .enumerate()
        .map(|(index, tenant)| {
            tokio::spawn(drive_tenant(
                client.clone(),
                Arc::clone(&bases),
                tenant,
                index,
                Arc::clone(&stop),
            ))
        })
        .collect();
    let mut total = Accepted::default();
    for client in clients {
        let accepted = client.await.unwrap();
        total.users.extend(accepted.users);
        total.commands += accepted.commands;
        total.policies.extend(accepted.policies);
    }
    total
}

async fn event_count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Waits until every projector has applied the whole log, as `/health` reports it.
async fn wait_caught_up(service: &Service, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let (status, health) = service.health().await;
        let caught_up = status == StatusCode::OK
            && health["projectors"]
                .as_array()
                .is_some_and(|projectors| projectors.iter().all(|p| p["lag"] == 0));
        if caught_up {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "projectors did not catch up within {within:?}: {health}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Asserts that nothing accepted is missing from the log or the read models.
async fn assert_nothing_lost(pool: &PgPool, service: &Service, accepted: &Accepted) {
    let users: Vec<Uuid> = accepted.users.iter().map(|u| u.as_uuid()).collect();
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT aggregate_id) FROM events WHERE aggregate_type = 'user' AND aggregate_id = ANY($1)",
    )
    .bind(users.iter().map(Uuid::to_string).collect::<Vec<_>>())
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(
        usize::try_from(stored).unwrap(),
        users.len(),
        "every accepted user is in the log"
    );
    let client = Client::new();
    let (_, staff) =
        api::http::auth::issue_staff_token(pool, api::http::auth::StaffRole::Support, "faults")
            .await
            .unwrap();
    for (tenant, sms_required) in &accepted.policies {
        let settings: Value = client
            .get(format!("{}/tenants/{tenant}/settings", service.base))
            .bearer_auth(&staff)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            settings["sms_required"].as_bool(),
            Some(*sms_required),
            "tenant {tenant}: the last accepted MFA policy is shown: {settings}"
        );
    }
}

/// The operator's checks: every projection equals its rebuild, and the exported log verifies.
async fn assert_operator_checks_pass(folder: &Folder) {
    let started = Instant::now();
    let verified = folder.finteqx(&["projections", "verify"]).await;
    assert!(!verified.contains("differs"), "{verified}");
    eprintln!(
        "finteqx projections verify: {:?}\n{verified}",
        started.elapsed()
    );
    let started = Instant::now();
    folder.finteqx(&["audit", "checkpoint"]).await;
    let export = folder.root.join("export.ndjson");
    let export = export.to_str().unwrap();
    folder.finteqx(&["audit", "export", "--out", export]).await;
    let verified = folder.finteqx(&["audit", "verify", export]).await;
    eprintln!(
        "finteqx audit checkpoint, export and verify: {:?}\n{verified}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_database_outage_logs_a_handful_of_lines_answers_503_and_recovers_by_itself() {
    // Given a running service with a tenant whose administrator is signed in
    let folder = Folder::new("faults-outage");
    let service = Service::start(&folder).await;
    service.wait_healthy(Duration::from_secs(30)).await;
    let pool = folder.pool().await;
    let tenant = tenants(&pool, 1).await.pop().unwrap();
    pool.close().await;
    wait_caught_up(&service, Duration::from_secs(30)).await;
    let client = Client::new();
    let bases = [service.base.clone()];
    let settings_path = format!("/tenants/{}/settings", tenant.id);

    // When the database is stopped for ten seconds
    let before = service.log_lines();
    let outage = Instant::now();
    folder.stop_server();
    let mut problems = Vec::new();
    while outage.elapsed() < Duration::from_secs(9) {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let response = client
            .get(format!("{}{settings_path}", service.base))
            .header("cookie", format!("{SESSION_COOKIE}={}", tenant.session))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        let problem: Value = response.json().await.unwrap();
        problems.push((status, content_type, problem));
        let (health, body) = service.health().await;
        assert_eq!(
            (health, body["status"].as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("unavailable")),
            "{body}"
        );
    }
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(outage.elapsed())).await;
    let during = service.log_since(before);

    // Then it logs a handful of lines, not thousands,
    eprintln!(
        "{} log lines in {:?} of outage:\n{}",
        during.len(),
        outage.elapsed(),
        during.join("\n")
    );
    assert!(
        during.len() < 50,
        "{} log lines during a 10 s outage",
        during.len()
    );
    // Most of them answer the probes below; the background loops say they are down once each.
    let background = during
        .iter()
        .filter(|line| line.contains("background loop"))
        .count();
    assert!(
        (1..=10).contains(&background),
        "{background} lines from the background loops"
    );
    // answers every request with a retryable 503 problem,
    for (status, content_type, problem) in &problems {
        assert_eq!(*status, StatusCode::SERVICE_UNAVAILABLE, "{problem}");
        assert_eq!(content_type, "application/problem+json");
        assert_eq!(
            problem["type"].as_str(),
            Some("urn:finteqx:problem:dependency-unavailable")
        );
        assert_eq!(problem["retryable"].as_bool(), Some(true));
    }
    // and serves again by itself once the database is back.
    folder.start_server();
    service.wait_healthy(Duration::from_secs(30)).await;
    let Answer {
        status,
        body: answer,
        ..
    } = send(
        &client,
        &bases,
        0,
        &tenant,
        Method::PUT,
        &format!("/tenants/{}/mfa_policy", tenant.id),
        json!({"sms_required": true}),
    )
    .await
    .unwrap();
    assert!(status.is_success(), "{status} {answer}");
    wait_caught_up(&service, Duration::from_secs(60)).await;
    let Answer {
        status,
        body: settings,
        ..
    } = send(
        &client,
        &bases,
        0,
        &tenant,
        Method::GET,
        &settings_path,
        json!({}),
    )
    .await
    .unwrap();
    assert_eq!(status, StatusCode::OK, "{settings}");
    assert_eq!(settings["sms_required"], true, "the projectors caught up");
    let after = service.log_since(before);
    eprintln!("{} log lines from the outage to recovery", after.len());
    service.shut_down().await;
}

#[tokio::test]
async fn killing_one_of_two_instances_mid_load_loses_nothing_accepted() {
    // Given two instances on one database and a load through both
    let folder = Folder::new("faults-kill").without_commit_flush().await;
    let mut first = Service::start(&folder).await;
    let second = Service::start(&folder).await;
    let pool = folder.pool().await;
    let tenants = tenants(&pool, 8).await;
    let bases = Arc::new(Mutex::new(vec![first.base.clone(), second.base.clone()]));
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(drive(Arc::clone(&bases), tenants, Arc::clone(&stop)));
    tokio::time::sleep(Duration::from_secs(5)).await;

    // When one is killed mid-load, the other keeps serving the load
    first.kill().await;
    let killed_at = event_count(&pool).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    let accepted = load.await.unwrap();
    let events = event_count(&pool).await;
    eprintln!(
        "{} commands accepted, {} users; {killed_at} events at the kill, {events} at the end",
        accepted.commands,
        accepted.users.len()
    );
    assert!(
        events > killed_at + 50,
        "the surviving instance kept serving"
    );

    // Then nothing accepted is lost and the operator's checks pass
    wait_caught_up(&second, Duration::from_secs(60)).await;
    assert_nothing_lost(&pool, &second, &accepted).await;
    assert_operator_checks_pass(&folder).await;
    second.shut_down().await;
}

#[tokio::test]
async fn thirty_thousand_events_through_two_instances_verify() {
    // Given two instances on one database
    let folder = Folder::new("faults-load").without_commit_flush().await;
    let first = Service::start(&folder).await;
    let second = Service::start(&folder).await;
    let pool = folder.pool().await;
    let tenants = tenants(&pool, 12).await;

    // When a mixed load writes at least 30,000 events through both
    let started = Instant::now();
    let bases = Arc::new(Mutex::new(vec![first.base.clone(), second.base.clone()]));
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(drive(bases, tenants, Arc::clone(&stop)));
    loop {
        let events = event_count(&pool).await;
        if events >= 30_000 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the load is too slow: {events} events in {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let accepted = load.await.unwrap();
    let loaded = started.elapsed();
    let events = event_count(&pool).await;
    eprintln!(
        "{events} events ({} commands accepted) through two instances in {loaded:?}",
        accepted.commands
    );

    // Then nothing is lost, every projection equals its rebuild and the export verifies
    wait_caught_up(&first, Duration::from_secs(180)).await;
    eprintln!("projectors caught up after {:?}", started.elapsed());
    assert_nothing_lost(&pool, &first, &accepted).await;
    assert_operator_checks_pass(&folder).await;
    eprintln!("load, catch-up and checks took {:?}", started.elapsed());
    // A clean shutdown is another test's business; dropping them kills them.
}

//! The log's order at a power of ten of the transaction counter (ADR-0006, ADR-0021).
//!
//! Transaction ids are compared as numbers everywhere; a reader that sorted them as text would
//! read `1000001` before `999999` and apply events twice or skip them. These tests run the
//! service's commands across the boundary on a private cluster whose counter starts just below
//! it, with the projectors live, and check every reader of the log afterwards.

use std::collections::BTreeMap;

use chrono::Utc;

use api::application::{Commands, NewUserSignIn};
use api::workers::checkpoints::{CheckpointSigner, write_checkpoints};
use domain::ids::TenantId;
use projections::audit::{Cursor, HistoryFilter, HistoryQuery, export_verifiable, tenant_history};
use projections::chain::{Digest, Scope, fold_running};
use projections::position::{LogPosition, TxId};
use projections::verify::verify_export;

use crate::helpers::{PrivateCluster, TestDb, admin, register_tenant};
use crate::persistence::new_user;
use crate::read_models::random_history;

/// Where the counter crosses a power of ten.
const BOUNDARY: u64 = 1_000_000;

/// The transaction id the next transaction will get.
async fn next_xid(db: &TestDb) -> u64 {
    let xmax: TxId = sqlx::query_scalar("SELECT pg_snapshot_xmax(pg_current_snapshot())")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    xmax.0
}

/// Tenants with users on a domain of their own, until the counter is `past` the boundary.
async fn create_users_until(commands: Commands, db_pool: sqlx::PgPool, worker: String, past: u64) {
    for round in 0.. {
        let tenant = register_tenant(&commands, &format!("Load {worker}-{round}")).await;
        commands
            .set_mfa_policy(&admin(tenant), tenant, round % 2 == 0)
            .await
            .unwrap();
        for user in 0..5 {
            commands
                .create_user(
                    &admin(tenant),
                    tenant,
                    new_user(
                        &format!("user{user}@{worker}r{round}.nl"),
                        NewUserSignIn::Sms,
                    ),
                )
                .await
                .unwrap();
        }
        let xmax: TxId = sqlx::query_scalar("SELECT pg_snapshot_xmax(pg_current_snapshot())")
            .fetch_one(&db_pool)
            .await
            .unwrap();
        if xmax.0 > past {
            return;
        }
    }
}

/// Every event's place and chain hash, sorted numerically in Rust: the order every reader must see.
async fn log_in_numeric_order(db: &TestDb) -> Vec<(LogPosition, Option<uuid::Uuid>, Digest)> {
    let rows: Vec<(TxId, i64, Option<uuid::Uuid>, Vec<u8>)> =
        sqlx::query_as("SELECT tx_id, global_position, tenant_id, hash FROM events")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    let mut log: Vec<_> = rows
        .into_iter()
        .map(|(tx, position, tenant, hash)| {
            (
                LogPosition {
                    tx_id: tx.0,
                    position,
                },
                tenant,
                Digest::from_slice(&hash).unwrap(),
            )
        })
        .collect();
    log.sort_by_key(|(at, ..)| *at);
    log
}

/// The tenant's history as an auditor pages through it, seven events a page.
async fn paged_history(db: &TestDb, tenant_id: TenantId) -> Vec<LogPosition> {
    let mut seen = Vec::new();
    let mut after: Option<Cursor> = None;
    loop {
        let page = tenant_history(
            &db.pool,
            &HistoryQuery {
                tenant_id,
                filter: HistoryFilter::default(),
                after,
                limit: 7,
            },
        )
        .await
        .unwrap();
        seen.extend(page.events.iter().map(|event| LogPosition {
            tx_id: event.tx_id,
            position: event.global_position,
        }));
        match page.next {
            Some(next) => after = Some(next),
            None => return seen,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_reader_sees_the_log_in_order_across_a_power_of_ten() {
    // Arrange: a cluster whose transaction counter starts a little below 1,000,000.
    let cluster = PrivateCluster::start(Some(BOUNDARY - 5_000));
    let db = TestDb::on_server(&cluster.url).await;
    let start = next_xid(&db).await;
    assert!(
        start < BOUNDARY - 1_000,
        "the counter starts below the boundary ({start})"
    );

    // Act: a varied history and three writers of tenants and users in parallel, with the
    // projectors live. They pause for a while just below the boundary, so that their first batch
    // after the pause spans it, and run live again past it.
    let live = |db: &TestDb| {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        (
            stop,
            tokio::spawn(projections::run_all_until(db.pool.clone(), stopped)),
        )
    };
    let write_until = |db: &TestDb, past: u64| {
        (0..3)
            .map(|worker| {
                tokio::spawn(create_users_until(
                    db.commands(),
                    db.pool.clone(),
                    format!("x{past}w{worker}"),
                    past,
                ))
            })
            .collect::<Vec<_>>()
    };
    let (stop, projectors) = live(&db);
    let (_, history_tenant) = random_history(&db, 300, 7).await;
    for writer in write_until(&db, BOUNDARY - 300) {
        writer.await.unwrap();
    }
    let paused_at = next_xid(&db).await;
    assert!(
        paused_at < BOUNDARY,
        "the pause starts below the boundary ({paused_at})"
    );
    stop.send(true).unwrap();
    projectors.await.unwrap();
    for writer in write_until(&db, BOUNDARY + 400) {
        writer.await.unwrap();
    }
    let (stop, projectors) = live(&db);
    for writer in write_until(&db, BOUNDARY + 800) {
        writer.await.unwrap();
    }
    db.run_projections().await;
    stop.send(true).unwrap();
    projectors.await.unwrap();

    // Assert: the log does cross the boundary.
    let log = log_in_numeric_order(&db).await;
    let first = log.first().unwrap().0;
    let last = log.last().unwrap().0;
    assert!(
        first.tx_id < BOUNDARY && last.tx_id > BOUNDARY,
        "the log spans {first:?}..{last:?}"
    );

    // Every projector stands at the last event of the log.
    let checkpoints: Vec<(String, TxId, i64)> = sqlx::query_as(
        "SELECT name, last_tx, last_position FROM projector_checkpoints WHERE name NOT LIKE '%#%'",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    for (name, tx, position) in checkpoints {
        assert_eq!(
            LogPosition {
                tx_id: tx.0,
                position
            },
            last,
            "projector {name}'s checkpoint"
        );
    }

    // The running hashes are folded in numeric order, each event once.
    let mut expected: BTreeMap<String, (Digest, i64)> = BTreeMap::new();
    for (_, tenant, hash) in &log {
        let scopes = std::iter::once("*".to_owned()).chain(tenant.map(|t| t.to_string()));
        for scope in scopes {
            let (running, count) = expected.entry(scope).or_insert((Digest::GENESIS, 0));
            *running = fold_running(running, hash);
            *count += 1;
        }
    }
    let chain: Vec<(String, Vec<u8>, i64)> =
        sqlx::query_as("SELECT scope, running_hash, events FROM log_chain")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(chain.len(), expected.len(), "one running hash per scope");
    for (scope, running, events) in chain {
        let (digest, count) = expected[&scope];
        assert_eq!(events, count, "events folded into {scope}");
        assert_eq!(
            Digest::from_slice(&running).unwrap(),
            digest,
            "running hash of {scope}"
        );
    }

    // Each projection equals its rebuild.
    db.assert_projections_verify().await;

    // The signed export verifies offline.
    let signer = CheckpointSigner::from_settings(&db.settings().audit).unwrap();
    write_checkpoints(&db.pool, &signer, Utc::now())
        .await
        .unwrap();
    let mut export = Vec::new();
    export_verifiable(&db.pool, Scope::WholeLog, &mut export)
        .await
        .unwrap();
    let summary = verify_export(
        String::from_utf8(export).unwrap().lines(),
        &[signer.public_key()],
    )
    .unwrap();
    assert_eq!(
        summary.events,
        log.len() as u64,
        "the export holds every event"
    );

    // The auditor's history pages through each tenant in order, every event once.
    let load_tenant: uuid::Uuid = sqlx::query_scalar(
        "SELECT tenant_id FROM events WHERE tenant_id IS NOT NULL AND tenant_id <> $1 \
         GROUP BY tenant_id ORDER BY min(global_position) LIMIT 1",
    )
    .bind(history_tenant.as_uuid())
    .fetch_one(&db.pool)
    .await
    .unwrap();
    for tenant in [history_tenant, TenantId::from_uuid(load_tenant)] {
        let expected: Vec<LogPosition> = log
            .iter()
            .filter(|(_, owner, _)| *owner == Some(tenant.as_uuid()))
            .map(|(at, ..)| *at)
            .collect();
        assert_eq!(
            paged_history(&db, tenant).await,
            expected,
            "history of {tenant}"
        );
    }

    // Each welcome mail is queued once, for the event that caused it.
    let (created, queued, distinct): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM events WHERE event_type = 'UserCreated'), \
                count(*), count(DISTINCT source_position) \
         FROM notification_messages WHERE kind LIKE 'welcome%'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!((queued, distinct), (created, created), "welcome mails");

    db.pool.close().await;
    drop(cluster);
}

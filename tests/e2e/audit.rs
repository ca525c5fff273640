//! Auditors' reads of the event log: paging in commit-safe order, filters, the NDJSON export and
//! the state of a tenant or user at a past instant (spec §3, ADR-0006).

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures::future::join;
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use tokio::io::AsyncReadExt;
use uuid::Uuid;

use api::application::NewUserSignIn;
use domain::ids::{TenantId, UserId};
use domain::user::UserCommand;
use projections::audit::{
    AuditError, AuditEvent, Cursor, CursorError, ExportQuery, HistoryFilter, HistoryQuery,
    MAX_PAGE_SIZE, export_ndjson, tenant_history, tenant_state_at, user_state_at,
};

use crate::helpers::{TestDb, admin, register_tenant};
use crate::persistence::new_user;

/// Waits until every committed event is below the oldest transaction in flight. The horizon is
/// the whole server's, so concurrent tests in other databases can hold it back for a moment.
pub(crate) async fn wait_until_visible(pool: &PgPool) {
    for _ in 0..3000 {
        let visible: bool = sqlx::query_scalar(
            "SELECT NOT EXISTS (SELECT 1 FROM events \
             WHERE tx_id >= pg_snapshot_xmin(pg_current_snapshot()))",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if visible {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("committed events stayed behind a transaction in flight for 30 s");
}

fn query(tenant_id: TenantId, filter: HistoryFilter, limit: u32) -> HistoryQuery {
    HistoryQuery {
        tenant_id,
        filter,
        after: None,
        limit,
    }
}

/// Every page of the history, following `next`.
async fn all_pages(
    pool: &PgPool,
    tenant_id: TenantId,
    filter: &HistoryFilter,
    limit: u32,
) -> Vec<Vec<AuditEvent>> {
    let mut query = query(tenant_id, filter.clone(), limit);
    let mut pages = Vec::new();
    loop {
        let page = tenant_history(pool, &query).await.unwrap();
        pages.push(page.events);
        match page.next {
            Some(next) => query.after = Some(next),
            None => return pages,
        }
    }
}

async fn history(pool: &PgPool, tenant_id: TenantId, filter: &HistoryFilter) -> Vec<AuditEvent> {
    all_pages(pool, tenant_id, filter, 7)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// The id inside the externally tagged payload, as the generated columns read it.
fn payload_id(event: &AuditEvent, field: &str) -> Option<String> {
    let inner = event.payload.as_object()?.values().next()?;
    inner.get(field)?.as_str().map(str::to_owned)
}

fn user_filter(user_id: UserId) -> HistoryFilter {
    HistoryFilter {
        user_id: Some(user_id),
        ..HistoryFilter::default()
    }
}

struct BusyTenants {
    audited: TenantId,
    other: TenantId,
    /// The audited tenant's users; the first three are deactivated.
    users: Vec<UserId>,
}

/// Two tenants whose commands interleave, some of them concurrently; the audited tenant gets
/// 1 + 6 + 8 × 3 + 3 = 34 events.
async fn busy_tenants(db: &TestDb) -> BusyTenants {
    let commands = db.commands();
    let audited = register_tenant(&commands, "Akkermans Accountants").await;
    let other = register_tenant(&commands, "Bakker Belastingadvies").await;
    let mut users = Vec::new();
    for round in 0..6 {
        let sms_required = round % 2 == 0;
        for tenant in [audited, other] {
            commands
                .set_mfa_policy(&admin(tenant), tenant, sms_required)
                .await
                .unwrap();
        }
        let (ours, theirs) = join(
            commands.create_user(
                &admin(audited),
                audited,
                new_user(&format!("user{round}@akkermans.nl"), NewUserSignIn::Sms),
            ),
            commands.create_user(
                &admin(other),
                other,
                new_user(&format!("user{round}@bakker.nl"), NewUserSignIn::Sms),
            ),
        )
        .await;
        users.push(ours.unwrap().user_id);
        theirs.unwrap();
    }
    let (first, second) = join(
        commands.create_user(
            &admin(audited),
            audited,
            new_user("late1@akkermans.nl", NewUserSignIn::Sms),
        ),
        commands.create_user(
            &admin(audited),
            audited,
            new_user("late2@akkermans.nl", NewUserSignIn::Sms),
        ),
    )
    .await;
    users.extend([first.unwrap().user_id, second.unwrap().user_id]);
    for &user in &users[..3] {
        commands
            .execute_user_command(&admin(audited), audited, user, UserCommand::DeactivateUser)
            .await
            .unwrap();
    }
    wait_until_visible(&db.pool).await;
    BusyTenants {
        audited,
        other,
        users,
    }
}

#[tokio::test]
async fn paging_returns_every_event_of_the_tenant_once_in_commit_order() {
    let db = TestDb::new().await;
    let busy = busy_tenants(&db).await;

    let pages = all_pages(&db.pool, busy.audited, &HistoryFilter::default(), 7).await;

    let events: Vec<&AuditEvent> = pages.iter().flatten().collect();
    assert_eq!(events.len(), 34);
    let (last, full) = pages.split_last().unwrap();
    assert!(full.iter().all(|page| page.len() == 7), "pages {pages:?}");
    assert_eq!(last.len(), 34 % 7, "the short last page ends the paging");
    assert!(
        events
            .windows(2)
            .all(|pair| pair[0].cursor() < pair[1].cursor()),
        "strictly increasing (tx_id, global_position)"
    );
    let expected: Vec<i64> = sqlx::query_scalar(
        "SELECT global_position FROM events WHERE tenant_id = $1 ORDER BY tx_id, global_position",
    )
    .bind(busy.audited.as_uuid())
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let positions: Vec<i64> = events.iter().map(|event| event.global_position).collect();
    assert_eq!(positions, expected, "each event exactly once, in order");
    let audited = busy.audited.to_string();
    assert!(
        events
            .iter()
            .all(|event| payload_id(event, "tenant_id").as_deref() == Some(audited.as_str())),
        "no other tenant's events"
    );
    let other_positions: Vec<i64> =
        sqlx::query_scalar("SELECT global_position FROM events WHERE tenant_id = $1")
            .bind(busy.other.as_uuid())
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert!(!other_positions.is_empty());
    assert!(other_positions.iter().all(|p| !positions.contains(p)));
}

#[tokio::test]
async fn history_filters_by_user_event_type_and_time_range() {
    let db = TestDb::new().await;
    let busy = busy_tenants(&db).await;
    let everything = history(&db.pool, busy.audited, &HistoryFilter::default()).await;

    // By user.
    let user = busy.users[1];
    let by_user = history(&db.pool, busy.audited, &user_filter(user)).await;
    let expected: Vec<AuditEvent> = everything
        .iter()
        .filter(|event| payload_id(event, "user_id") == Some(user.to_string()))
        .cloned()
        .collect();
    assert_eq!(by_user, expected);
    let types: Vec<&str> = by_user.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "EmailClaimed",
            "UserCreated",
            "PasswordTokenIssued",
            "UserDeactivated"
        ]
    );

    // By event type.
    let wanted = ["MfaPolicySet", "UserDeactivated"];
    let by_type = history(
        &db.pool,
        busy.audited,
        &HistoryFilter {
            event_types: wanted.map(str::to_owned).to_vec(),
            ..HistoryFilter::default()
        },
    )
    .await;
    let expected: Vec<AuditEvent> = everything
        .iter()
        .filter(|event| wanted.contains(&event.event_type.as_str()))
        .cloned()
        .collect();
    assert_eq!(by_type, expected);
    assert_eq!(by_type.len(), 6 + 3);

    // By time: from inclusive, to exclusive, on the recorded_at of real rows.
    let from = everything[10].recorded_at;
    let to = everything[everything.len() - 5].recorded_at;
    let by_time = history(
        &db.pool,
        busy.audited,
        &HistoryFilter {
            from: Some(from),
            to: Some(to),
            ..HistoryFilter::default()
        },
    )
    .await;
    let expected: Vec<AuditEvent> = everything
        .iter()
        .filter(|event| from <= event.recorded_at && event.recorded_at < to)
        .cloned()
        .collect();
    assert_eq!(by_time, expected);
    assert!(by_time.contains(&everything[10]), "from is inclusive");
    assert!(
        !by_time.contains(&everything[everything.len() - 5]),
        "to is exclusive"
    );
    assert!(by_time.len() >= 10, "{} events in range", by_time.len());

    // Filters combine.
    let created = history(
        &db.pool,
        busy.audited,
        &HistoryFilter {
            event_types: vec!["UserCreated".to_owned()],
            ..user_filter(user)
        },
    )
    .await;
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].aggregate_id, user.to_string());
}

#[tokio::test]
async fn export_writes_one_ndjson_line_per_event_equal_to_the_history() {
    let db = TestDb::new().await;
    let busy = busy_tenants(&db).await;
    let everything = history(&db.pool, busy.audited, &HistoryFilter::default()).await;

    let mut output = Vec::new();
    let lines = export_ndjson(
        &db.pool,
        &ExportQuery {
            tenant_id: busy.audited,
            filter: HistoryFilter::default(),
        },
        &mut output,
    )
    .await
    .unwrap();

    assert_eq!(lines, 34);
    let text = String::from_utf8(output).unwrap();
    assert!(text.ends_with('\n'));
    let exported: Vec<AuditEvent> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(exported, everything);
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let mut keys: Vec<&str> = first
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "aggregate_id",
            "aggregate_type",
            "event_type",
            "event_version",
            "global_position",
            "hash",
            "metadata",
            "payload",
            "recorded_at",
            "sequence",
            "tx_id"
        ]
    );

    // The export honours the same filters.
    let mut output = Vec::new();
    let filter = user_filter(busy.users[4]);
    let lines = export_ndjson(
        &db.pool,
        &ExportQuery {
            tenant_id: busy.audited,
            filter: filter.clone(),
        },
        &mut output,
    )
    .await
    .unwrap();
    let exported: Vec<AuditEvent> = String::from_utf8(output)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines, 3);
    assert_eq!(exported, history(&db.pool, busy.audited, &filter).await);
}

#[tokio::test]
async fn export_fails_instead_of_truncating_when_the_database_fails_mid_stream() {
    let db = TestDb::new().await;
    let commands = db.commands();
    let tenant = register_tenant(&commands, "Akkermans Accountants").await;
    // Rows of 10 kB each: far more than the socket buffers hold, so the statement is still
    // running when its timeout strikes.
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
                             payload, metadata) \
         SELECT 'audit_padding', g::text, 1, 'Padding', '1', \
                jsonb_build_object('Padding', jsonb_build_object('tenant_id', $1::text, \
                                                                 'pad', repeat('x', 10000))), \
                '{}' \
         FROM generate_series(1, 1500) AS g",
    )
    .bind(tenant.to_string())
    .execute(&db.pool)
    .await
    .unwrap();
    wait_until_visible(&db.pool).await;
    let impatient = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(
            PgConnectOptions::from_str(&db.url)
                .unwrap()
                .options([("statement_timeout", "300")]),
        )
        .await
        .unwrap();
    let (mut sink, mut source) = tokio::io::duplex(64 * 1024);
    let reader = tokio::spawn(async move {
        // A slow consumer: the statement outlives its timeout while the export waits.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut received = Vec::new();
        source.read_to_end(&mut received).await.unwrap();
        received
    });

    let result = export_ndjson(
        &impatient,
        &ExportQuery {
            tenant_id: tenant,
            filter: HistoryFilter::default(),
        },
        &mut sink,
    )
    .await;
    drop(sink);

    let received = reader.await.unwrap();
    let lines = received.iter().filter(|&&byte| byte == b'\n').count();
    match result {
        Err(AuditError::Database(sqlx::Error::Database(error))) => {
            assert_eq!(error.code().as_deref(), Some("57014"), "{error}");
        }
        other => panic!("expected the statement timeout, got {other:?} after {lines} lines"),
    }
    assert!(
        (1..4001).contains(&lines),
        "{lines} lines were written before the failure"
    );
}

#[tokio::test]
async fn tenant_state_at_an_instant_shows_the_policy_then_in_force() {
    let db = TestDb::new().await;
    let commands = db.commands();
    let tenant = register_tenant(&commands, "Akkermans Accountants").await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    commands
        .set_mfa_policy(&admin(tenant), tenant, true)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    commands
        .set_mfa_policy(&admin(tenant), tenant, false)
        .await
        .unwrap();
    wait_until_visible(&db.pool).await;
    let events = history(&db.pool, tenant, &HistoryFilter::default()).await;
    let [registered, required, relaxed] = [0, 1, 2].map(|i| events[i].recorded_at);
    assert!(registered < required && required < relaxed);
    let micro = TimeDelta::microseconds(1);
    let sms_required_at = async |at: DateTime<Utc>| {
        tenant_state_at(&db.pool, tenant, at)
            .await
            .unwrap()
            .map(|state| state.sms_required())
    };

    assert_eq!(sms_required_at(registered - micro).await, None);
    assert_eq!(sms_required_at(registered).await, Some(false));
    assert_eq!(sms_required_at(required).await, Some(true));
    assert_eq!(sms_required_at(relaxed - micro).await, Some(true));
    assert_eq!(sms_required_at(relaxed).await, Some(false));
    let now = tenant_state_at(&db.pool, tenant, Utc::now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        now,
        commands.tenants().load(&tenant.to_string()).await.unwrap(),
        "the state now equals the write side's"
    );
}

#[tokio::test]
async fn user_state_at_shows_the_account_active_before_its_deactivation() {
    let db = TestDb::new().await;
    let commands = db.commands();
    let tenant = register_tenant(&commands, "Akkermans Accountants").await;
    let other = register_tenant(&commands, "Bakker Belastingadvies").await;
    let user = commands
        .create_user(
            &admin(tenant),
            tenant,
            new_user("anne@akkermans.nl", NewUserSignIn::Sms),
        )
        .await
        .unwrap()
        .user_id;
    tokio::time::sleep(Duration::from_millis(20)).await;
    commands
        .execute_user_command(&admin(tenant), tenant, user, UserCommand::DeactivateUser)
        .await
        .unwrap();
    wait_until_visible(&db.pool).await;
    let events = history(&db.pool, tenant, &user_filter(user)).await;
    let at = |event_type: &str| {
        events
            .iter()
            .find(|event| event.event_type == event_type)
            .unwrap()
            .recorded_at
    };
    let (created, deactivated) = (at("UserCreated"), at("UserDeactivated"));
    let micro = TimeDelta::microseconds(1);
    let active_at = async |tenant_id: TenantId, at: DateTime<Utc>| {
        user_state_at(&db.pool, tenant_id, user, at)
            .await
            .unwrap()
            .map(|state| state.account().unwrap().active)
    };

    assert_eq!(active_at(tenant, created - micro).await, None);
    assert_eq!(active_at(tenant, created).await, Some(true));
    assert_eq!(active_at(tenant, deactivated - micro).await, Some(true));
    assert_eq!(active_at(tenant, deactivated).await, Some(false));
    assert_eq!(
        active_at(other, deactivated).await,
        None,
        "another tenant's auditor does not see the account"
    );
    assert_eq!(
        user_state_at(
            &db.pool,
            tenant,
            UserId::from_uuid(Uuid::now_v7()),
            Utc::now()
        )
        .await
        .unwrap(),
        None
    );
}

#[tokio::test]
async fn history_hides_events_while_an_earlier_transaction_is_in_flight() {
    let db = TestDb::new().await;
    let commands = db.commands();
    let tenant = register_tenant(&commands, "Akkermans Accountants").await;
    wait_until_visible(&db.pool).await;
    let first_page = query(tenant, HistoryFilter::default(), MAX_PAGE_SIZE);

    // Given a writer that took its transaction id first but appends last.
    let mut connection = PgConnection::connect(&db.url).await.unwrap();
    let mut slow_writer = connection.begin().await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *slow_writer)
        .await
        .unwrap();
    commands
        .set_mfa_policy(&admin(tenant), tenant, true)
        .await
        .unwrap();
    let committed_later = tenant_history(&db.pool, &first_page).await.unwrap();
    let user = Uuid::now_v7();
    let late_position: i64 = sqlx::query_scalar(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
                             payload, metadata) \
         VALUES ('user', $1, 1, 'UserDeactivated', '1', $2, '{}') RETURNING global_position",
    )
    .bind(user.to_string())
    .bind(json!({"UserDeactivated": {"tenant_id": tenant, "user_id": user}}))
    .fetch_one(&mut *slow_writer)
    .await
    .unwrap();
    let in_flight = tenant_history(&db.pool, &first_page).await.unwrap();

    // Then neither the later commit nor the uncommitted row shows.
    for page in [&committed_later, &in_flight] {
        let types: Vec<&str> = page.events.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(types, ["TenantRegistered"]);
    }
    let resume = in_flight.events[0].cursor();

    // When the slow writer commits, a reader resuming from its cursor gets both, the slow
    // writer's first although its position is larger.
    slow_writer.commit().await.unwrap();
    wait_until_visible(&db.pool).await;
    let rest = tenant_history(
        &db.pool,
        &HistoryQuery {
            after: Some(resume),
            ..first_page.clone()
        },
    )
    .await
    .unwrap();
    let types: Vec<&str> = rest.events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["UserDeactivated", "MfaPolicySet"]);
    assert_eq!(rest.events[0].global_position, late_position);
    assert!(rest.events[1].global_position < late_position);
    assert_eq!(rest.next, None);
}

#[tokio::test]
async fn tenant_state_at_refuses_an_undecodable_event_instead_of_skipping_it() {
    let db = TestDb::new().await;
    let commands = db.commands();
    let tenant = register_tenant(&commands, "Akkermans Accountants").await;
    commands
        .set_mfa_policy(&admin(tenant), tenant, true)
        .await
        .unwrap();
    let (position, recorded_at): (i64, DateTime<Utc>) = sqlx::query_as(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, \
                             payload, metadata) \
         VALUES ('tenant', $1, 3, 'MfaPolicySet', '1', $2, '{}') \
         RETURNING global_position, recorded_at",
    )
    .bind(tenant.to_string())
    .bind(json!({"MfaPolicySet": {"tenant_id": tenant, "sms_required": "sometimes"}}))
    .fetch_one(&db.pool)
    .await
    .unwrap();
    wait_until_visible(&db.pool).await;

    let error = tenant_state_at(&db.pool, tenant, recorded_at)
        .await
        .unwrap_err();

    match error {
        AuditError::Undecodable {
            global_position,
            event_type,
            ..
        } => {
            assert_eq!(global_position, position);
            assert_eq!(event_type, "MfaPolicySet");
        }
        other => panic!("expected Undecodable, got {other:?}"),
    }
    let before = tenant_state_at(&db.pool, tenant, recorded_at - TimeDelta::microseconds(1))
        .await
        .unwrap()
        .unwrap();
    assert!(before.sms_required(), "the events before it still fold");
}

#[tokio::test]
async fn bad_input_gets_typed_errors() {
    let db = TestDb::new().await;
    let commands = db.commands();
    let tenant = register_tenant(&commands, "Akkermans Accountants").await;
    wait_until_visible(&db.pool).await;

    for limit in [0, MAX_PAGE_SIZE + 1] {
        let result =
            tenant_history(&db.pool, &query(tenant, HistoryFilter::default(), limit)).await;
        assert!(
            matches!(result, Err(AuditError::LimitOutOfRange { limit: l }) if l == limit),
            "limit {limit}: {result:?}"
        );
    }
    for limit in [1, MAX_PAGE_SIZE] {
        let page = tenant_history(&db.pool, &query(tenant, HistoryFilter::default(), limit))
            .await
            .unwrap();
        assert_eq!(page.events.len(), 1, "limit {limit}");
    }
    let now = Utc::now();
    let reversed = HistoryFilter {
        from: Some(now),
        to: Some(now - TimeDelta::seconds(1)),
        ..HistoryFilter::default()
    };
    let result = tenant_history(&db.pool, &query(tenant, reversed, 10)).await;
    assert!(
        matches!(result, Err(AuditError::ReversedTimeRange)),
        "{result:?}"
    );

    let cases = [
        ("", CursorError::MissingSeparator),
        ("123", CursorError::MissingSeparator),
        ("-5", CursorError::InvalidTxId),
        ("+1-5", CursorError::InvalidTxId),
        ("abc-5", CursorError::InvalidTxId),
        ("99999999999999999999-5", CursorError::InvalidTxId),
        ("12-", CursorError::InvalidPosition),
        ("12--5", CursorError::InvalidPosition),
        ("12-5-6", CursorError::InvalidPosition),
        ("12-x", CursorError::InvalidPosition),
    ];
    for (input, expected) in cases {
        assert_eq!(input.parse::<Cursor>(), Err(expected), "cursor {input:?}");
    }
    let malformed: Result<Cursor, _> = serde_json::from_value(json!("12"));
    assert!(malformed.is_err());

    // A real cursor survives the round trip through its string.
    let page = tenant_history(&db.pool, &query(tenant, HistoryFilter::default(), 1))
        .await
        .unwrap();
    let cursor = page.next.unwrap();
    let text = cursor.to_string();
    assert_eq!(
        text,
        format!("{}-{}", cursor.tx_id(), cursor.global_position())
    );
    assert_eq!(text.parse::<Cursor>(), Ok(cursor));
    assert_eq!(
        serde_json::from_value::<Cursor>(serde_json::to_value(cursor).unwrap()).unwrap(),
        cursor
    );
    let after = tenant_history(
        &db.pool,
        &HistoryQuery {
            after: Some(cursor),
            ..query(tenant, HistoryFilter::default(), 1)
        },
    )
    .await
    .unwrap();
    assert!(after.events.is_empty());
    assert_eq!(after.next, None);
}

//! Read models: commit-safe catch-up, exactly once across crashes and concurrent runners,
//! rebuildable, stopped (not skipped) at a poisoned event, and the login page's answers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use domain::ids::{TenantId, UserId};
use domain::metadata::REQUIRED_KEYS;
use domain::user::UserCommand;
use domain::values::{DomainName, EmailAddress, MobileNumber};
use projections::login_page::{self, LoginStep};
use projections::runner::{self, BatchOutcome, ProjectionError};
use projections::settings_screen::{self, SettingsScreen};
use projections::sign_in_history::SignInHistory;
use projections::{login_page::LoginPage, notification_queue::NotificationQueue};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use api::application::{Commands, DomainUserResult, NewUserSignIn};

use crate::helpers::{TestDb, admin, register_tenant};
use crate::persistence::{entra, new_user};

/// Inserts an event row by hand, as a second writer would (on its own connection).
async fn insert_raw(
    connection: &mut PgConnection,
    aggregate_type: &str,
    aggregate_id: &str,
    sequence: i64,
    payload: Value,
) {
    let event_type = payload.as_object().unwrap().keys().next().unwrap().clone();
    let metadata: Value = REQUIRED_KEYS
        .iter()
        .map(|key| ((*key).to_owned(), json!("")))
        .collect::<serde_json::Map<_, _>>()
        .into();
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ($1, $2, $3, $4, '1', $5, $6)",
    )
    .bind(aggregate_type)
    .bind(aggregate_id)
    .bind(sequence)
    .bind(event_type)
    .bind(payload)
    .bind(metadata)
    .execute(connection)
    .await
    .unwrap();
}

fn tenant_registered(tenant: Uuid, name: &str) -> Value {
    json!({ "TenantRegistered": { "tenant_id": tenant, "display_name": name, "default_locale": "nl" } })
}

async fn settings_tenant_names(db: &TestDb) -> Vec<String> {
    sqlx::query_scalar("SELECT display_name FROM settings_tenants ORDER BY display_name")
        .fetch_all(&db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_writer_that_takes_a_position_and_commits_late_is_never_skipped() {
    let db = TestDb::new().await;
    let (slow_tenant, fast_tenant) = (Uuid::now_v7(), Uuid::now_v7());

    // The slow writer takes the lower position and holds its transaction open.
    let mut slow = PgConnection::connect(&db.url).await.unwrap();
    let mut slow_tx = slow.begin().await.unwrap();
    insert_raw(
        &mut slow_tx,
        "tenant",
        &slow_tenant.to_string(),
        1,
        tenant_registered(slow_tenant, "Slow BV"),
    )
    .await;
    // The fast writer takes a higher position and commits first.
    let mut fast = PgConnection::connect(&db.url).await.unwrap();
    insert_raw(
        &mut fast,
        "tenant",
        &fast_tenant.to_string(),
        1,
        tenant_registered(fast_tenant, "Fast BV"),
    )
    .await;

    let outcome = runner::run_batch::<SettingsScreen>(&db.pool).await.unwrap();
    assert_eq!(
        outcome,
        BatchOutcome::CaughtUp,
        "nothing may be applied past an in-flight writer"
    );
    assert!(settings_tenant_names(&db).await.is_empty());

    slow_tx.commit().await.unwrap();
    db.run_projections().await;
    assert_eq!(settings_tenant_names(&db).await, ["Fast BV", "Slow BV"]);
}

/// A tenant with users going through links, unlinks, phone enrollments and sign-in records.
async fn busy_history(db: &TestDb, users: usize) -> (Commands, TenantId) {
    let commands = db.commands();
    let tenant = register_tenant(&commands, "Akkermans Accountants").await;
    let domain = DomainName::parse("contoso.com").unwrap();
    commands
        .set_mfa_policy(&admin(tenant), tenant, true)
        .await
        .unwrap();
    commands
        .bind_domain(&admin(tenant), tenant, domain.clone(), entra(1))
        .await
        .unwrap();
    let mut ids = Vec::new();
    for n in 0..users {
        let method = if n % 3 == 0 {
            NewUserSignIn::EntraId
        } else {
            NewUserSignIn::Sms
        };
        let created = commands
            .create_user(
                &admin(tenant),
                tenant,
                new_user(&format!("user{n}@contoso.com"), method),
            )
            .await
            .unwrap();
        ids.push(created.user_id);
        if n % 4 == 1 && method == NewUserSignIn::Sms {
            let phone = MobileNumber::parse(&format!("06 1234 {n:04}")).unwrap();
            commands
                .execute_user_command(
                    &admin(tenant),
                    tenant,
                    created.user_id,
                    UserCommand::EnrollPhone { phone },
                )
                .await
                .unwrap();
        }
        if n % 5 == 2 {
            commands
                .execute_user_command(
                    &admin(tenant),
                    tenant,
                    created.user_id,
                    UserCommand::DeactivateUser,
                )
                .await
                .unwrap();
        }
    }
    let linked = commands
        .link_domain_users(&admin(tenant), tenant, domain.clone(), &ids, false)
        .await
        .unwrap();
    let some_linked: Vec<UserId> = linked
        .iter()
        .filter(|o| matches!(o.result, DomainUserResult::Changed { .. }))
        .map(|o| o.user_id)
        .step_by(2)
        .collect();
    commands
        .unlink_domain_users(&admin(tenant), tenant, domain, &some_linked, false)
        .await
        .unwrap();
    (commands, tenant)
}

#[tokio::test]
async fn a_runner_killed_mid_batch_loses_and_duplicates_nothing() {
    let db = TestDb::new().await;
    busy_history(&db, 130).await;
    let events = db.event_count().await;
    assert!(
        events > runner::BATCH_SIZE,
        "the history spans several batches ({events} events)"
    );

    // Kill runners at arbitrary points, many times over.
    for delay_ms in [0, 1, 2, 3, 5, 8, 13, 21, 34] {
        let pool = db.pool.clone();
        let task = tokio::spawn(async move { projections::run_all_to_end(&pool).await });
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        task.abort();
        let _ = task.await;
    }
    db.run_projections().await;

    db.assert_projections_verify().await;
    let messages: i64 = sqlx::query_scalar("SELECT count(*) FROM notification_messages")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let expected: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type = 'PasswordTokenIssued' \
         OR (event_type = 'UserCreated' AND payload -> 'UserCreated' ->> 'method' = 'entra_id') \
         OR (event_type = 'UserLinkedToEntra' AND payload -> 'UserLinkedToEntra' ->> 'origin' = 'domain_link')",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(messages, expected, "one message per causing event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runners_at_once_produce_the_same_tables_as_one() {
    let db = TestDb::new().await;
    busy_history(&db, 30).await;

    let (a, b) = tokio::join!(
        projections::run_all_to_end(&db.pool),
        projections::run_all_to_end(&db.pool)
    );
    a.unwrap();
    b.unwrap();
    db.run_projections().await;

    db.assert_projections_verify().await;
}

#[tokio::test]
async fn a_rebuild_equals_the_live_tables_after_a_long_history() {
    let db = TestDb::new().await;
    let (commands, tenant) = busy_history(&db, 60).await;
    db.run_projections().await;
    let before = settings_screen::users(&db.pool, tenant, None, 1000)
        .await
        .unwrap();

    db.assert_projections_verify().await;
    for name in projections::PROJECTORS {
        projections::rebuild_named(&db.pool, name).await.unwrap();
    }

    assert_eq!(
        settings_screen::users(&db.pool, tenant, None, 1000)
            .await
            .unwrap(),
        before
    );
    db.assert_projections_verify().await;
    // The live runner continues from the rebuilt checkpoint.
    commands
        .set_mfa_policy(&admin(tenant), tenant, false)
        .await
        .unwrap();
    db.run_projections().await;
    assert!(
        !settings_screen::settings(&db.pool, tenant)
            .await
            .unwrap()
            .unwrap()
            .sms_required
    );
    db.assert_projections_verify().await;
}

#[tokio::test]
async fn a_poisoned_event_stops_only_its_projector_and_health_shows_it() {
    let db = TestDb::new().await;
    let commands = db.commands();
    let tenant = register_tenant(&commands, "Akkermans Accountants").await;
    // A second registration of the same tenant id on another stream: the settings screen's
    // insert refuses it; the login page's upsert accepts it.
    let mut connection = PgConnection::connect(&db.url).await.unwrap();
    insert_raw(
        &mut connection,
        "tenant",
        &Uuid::now_v7().to_string(),
        1,
        tenant_registered(tenant.as_uuid(), "Duplicate"),
    )
    .await;
    let poison: i64 = sqlx::query_scalar("SELECT max(global_position) FROM events")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    commands
        .set_mfa_policy(&admin(tenant), tenant, true)
        .await
        .unwrap();

    // Parallel tests' transactions on the server may hold the events back for a moment.
    let last: i64 = sqlx::query_scalar("SELECT max(global_position) FROM events")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let stopped = loop {
        match runner::run_to_end::<SettingsScreen>(&db.pool).await {
            Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(error) => break error,
        }
    };
    assert!(
        matches!(stopped, ProjectionError::Poisoned { position, .. } if position == poison),
        "{stopped:?}"
    );
    for name in ["login_page", "notification_queue", "sign_in_history"] {
        while !runner::wait_for(&db.pool, name, last, Duration::ZERO)
            .await
            .unwrap()
        {
            runner::run_to_end::<LoginPage>(&db.pool).await.unwrap();
            runner::run_to_end::<NotificationQueue>(&db.pool)
                .await
                .unwrap();
            runner::run_to_end::<SignInHistory>(&db.pool).await.unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    // Stopped, not skipped: the event after it is not applied either.
    assert!(
        !settings_screen::settings(&db.pool, tenant)
            .await
            .unwrap()
            .unwrap()
            .sms_required
    );
    assert!(matches!(
        runner::run_batch::<SettingsScreen>(&db.pool).await.unwrap(),
        BatchOutcome::Stopped { .. }
    ));
    let statuses = runner::statuses(&db.pool).await.unwrap();
    for status in &statuses {
        assert_eq!(
            status.stopped.is_some(),
            status.name == "settings_screen",
            "{status:?}"
        );
    }
    let stopped_at = statuses
        .iter()
        .find_map(|status| status.stopped.clone())
        .unwrap();
    assert_eq!(stopped_at.position, Some(poison));
    assert!(
        stopped_at.reason.contains("settings_tenants_pkey"),
        "{}",
        stopped_at.reason
    );

    let base = db.spawn_app().await;
    let response = reqwest::get(format!("{base}/health")).await.unwrap();
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "degraded");
    assert!(
        body["projectors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "settings_screen" && p["stopped"]["position"] == poison)
    );
}

#[tokio::test]
async fn the_login_page_answers_each_case_of_the_sign_in_rule_as_the_commands_decide() {
    let db = TestDb::new().await;
    let commands = db.commands();
    let tenant = register_tenant(&commands, "Akkermans Accountants").await;
    let domain = DomainName::parse("contoso.com").unwrap();
    commands
        .bind_domain(&admin(tenant), tenant, domain.clone(), entra(1))
        .await
        .unwrap();
    let create = |email: &'static str, method| {
        let commands = &commands;
        async move {
            commands
                .create_user(&admin(tenant), tenant, new_user(email, method))
                .await
                .unwrap()
                .user_id
        }
    };
    let no_password = create("new@contoso.com", NewUserSignIn::Sms).await;
    let with_phone = create("phone@fabrikam.nl", NewUserSignIn::Sms).await;
    let user = commands
        .users()
        .load(&with_phone.to_string())
        .await
        .unwrap();
    let token = user.account().unwrap().password_token.unwrap().token_id;
    let secret = commands
        .keys()
        .password_tokens
        .secret_for(with_phone, token);
    commands
        .set_password(
            &admin(tenant),
            &secret,
            "correct horse battery staple".to_owned().into(),
        )
        .await
        .unwrap();
    let phone = MobileNumber::parse("06 12345678").unwrap();
    commands
        .execute_user_command(
            &admin(tenant),
            tenant,
            with_phone,
            UserCommand::EnrollPhone { phone },
        )
        .await
        .unwrap();
    let entra_user = create("entra@contoso.com", NewUserSignIn::EntraId).await;
    let deactivated = create("gone@contoso.com", NewUserSignIn::EntraId).await;
    commands
        .execute_user_command(
            &admin(tenant),
            tenant,
            deactivated,
            UserCommand::DeactivateUser,
        )
        .await
        .unwrap();
    commands
        .set_mfa_policy(&admin(tenant), tenant, true)
        .await
        .unwrap();
    db.run_projections().await;

    let options = |email: &'static str| {
        let db = &db;
        let commands = &commands;
        async move {
            let key = commands
                .keys()
                .email_lookup
                .key_for(&EmailAddress::parse(email).unwrap());
            login_page::login_options(&db.pool, &key).await.unwrap()
        }
    };
    let entra_step = LoginStep::EntraId {
        entra_tenant_id: entra(1),
    };
    let cases = [
        (
            "unknown@contoso.com",
            LoginStep::Password,
            false,
            "unknown e-mail looks like a password user",
        ),
        (
            "NEW@contoso.com",
            LoginStep::Password,
            false,
            "no password yet",
        ),
        (
            "phone@fabrikam.nl",
            LoginStep::PasswordThenSms,
            false,
            "phone enrolled",
        ),
        (
            "entra@contoso.com",
            entra_step,
            true,
            "linked, consent not yet granted",
        ),
        (
            "gone@contoso.com",
            LoginStep::Password,
            false,
            "deactivated looks like a password user",
        ),
    ];
    for (email, step, notice, why) in cases {
        let answer = options(email).await;
        assert_eq!(
            (answer.step, answer.consent_notice),
            (step, notice),
            "{why}"
        );
    }

    // The page's facts are the aggregates' facts, fed to the same rule.
    let tenant_state = commands.tenants().load(&tenant.to_string()).await.unwrap();
    for user_id in [no_password, with_phone, entra_user, deactivated] {
        let user = commands.users().load(&user_id.to_string()).await.unwrap();
        let account = user.account().unwrap();
        let page = login_page::account(&db.pool, &account.email_key)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            page.facts,
            account.sign_in_facts(tenant_state.sms_required()),
            "user {user_id}"
        );
    }

    // Consent granted removes the notice; unlinking turns the button into a password form.
    commands
        .record_entra_consent(
            &admin(tenant),
            tenant,
            entra(1),
            domain::tenant::ConsentDecision::Granted,
        )
        .await
        .unwrap();
    db.run_projections().await;
    let answer = options("entra@contoso.com").await;
    assert_eq!((answer.step, answer.consent_notice), (entra_step, false));
    commands
        .unlink_domain_users(&admin(tenant), tenant, domain, &[entra_user], false)
        .await
        .unwrap();
    db.run_projections().await;
    assert_eq!(
        options("entra@contoso.com").await.step,
        LoginStep::Password,
        "no password yet after unlinking"
    );
}

#[tokio::test]
async fn a_caller_can_wait_until_its_write_is_visible() {
    let db = TestDb::new().await;
    let commands = db.commands();
    let tenant = register_tenant(&commands, "Akkermans Accountants").await;
    let committed = commands
        .set_mfa_policy(&admin(tenant), tenant, true)
        .await
        .unwrap();
    let position = committed.last_position().unwrap();

    assert!(
        !runner::wait_for(
            &db.pool,
            "settings_screen",
            position,
            Duration::from_millis(50)
        )
        .await
        .unwrap()
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let workers = tokio::spawn(projections::run_all_until(db.pool.clone(), stopped));
    assert!(
        runner::wait_for(
            &db.pool,
            "settings_screen",
            position,
            Duration::from_secs(10)
        )
        .await
        .unwrap()
    );
    assert!(
        settings_screen::settings(&db.pool, tenant)
            .await
            .unwrap()
            .unwrap()
            .sms_required
    );
    stop.send(true).unwrap();
    workers.await.unwrap();
}

/// Not a timed assertion: measures commit-to-visible lag of the login page under a steady load
/// and prints it (`TEST_LOG=1 scripts/test -E 'test(lag)' --no-capture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projection_lag_under_load_is_measured() {
    let db = TestDb::new().await;
    let commands = Arc::new(db.commands());
    let tenant = register_tenant(&commands, "Akkermans Accountants").await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let workers = tokio::spawn(projections::run_all_until(db.pool.clone(), stopped));

    let mut lags = Vec::new();
    for n in 0..200 {
        let created = commands
            .create_user(
                &admin(tenant),
                tenant,
                new_user(&format!("load{n}@contoso.com"), NewUserSignIn::Sms),
            )
            .await
            .unwrap();
        let committed_at = Instant::now();
        let position = created.committed.last_position().unwrap();
        assert!(
            runner::wait_for(&db.pool, "login_page", position, Duration::from_secs(30))
                .await
                .unwrap(),
            "event {position} never became visible"
        );
        lags.push(committed_at.elapsed());
    }
    stop.send(true).unwrap();
    workers.await.unwrap();

    lags.sort();
    let p50 = lags[lags.len() / 2];
    let p99 = lags[lags.len() * 99 / 100];
    println!(
        "login_page lag over {} commands: p50 {:?}, p99 {:?}, max {:?}",
        lags.len(),
        p50,
        p99,
        lags[lags.len() - 1]
    );
}

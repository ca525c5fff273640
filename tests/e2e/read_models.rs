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

use api::application::{Commands, NewUserSignIn};
use chrono::Utc;
use domain::TenantScoped;
use domain::entra::EntraSignInRefusal;
use domain::ids::SignInId;
use domain::sign_in::{EntraSignInOutcome, SignInCommand, SmsQuota};
use domain::sign_in_rule::SignInFacts;
use domain::tenant::ConsentDecision;
use domain::values::ProviderErrorCode;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::helpers::{TestDb, admin, register_tenant, set_password_via_link};
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
        BatchOutcome::HeldBack,
        "nothing may be applied past an in-flight writer, and the runner knows to look again"
    );
    assert!(settings_tenant_names(&db).await.is_empty());

    slow_tx.commit().await.unwrap();
    db.run_projections().await;
    assert_eq!(settings_tenant_names(&db).await, ["Fast BV", "Slow BV"]);
}

/// A long random history of one tenant (seeded, so a failure can be replayed): users created,
/// enrolled, deactivated, linked, unlinked, renamed; policy and consent changes; password, SMS and
/// Entra sign-ins with every outcome. Refused commands are part of the fun and change nothing.
pub(crate) async fn random_history(db: &TestDb, steps: usize, seed: u64) -> (Commands, TenantId) {
    let commands = db.commands();
    let tenant = register_tenant(&commands, "Akkermans Accountants").await;
    let contoso = DomainName::parse("contoso.com").unwrap();
    crate::helpers::bind_proven_domain(&commands, tenant, &contoso, entra(1)).await;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut users: Vec<UserId> = Vec::new();
    for step in 0..steps {
        let ctx = admin(tenant);
        let pick = |rng: &mut StdRng, users: &[UserId]| {
            users.get(rng.random_range(0..users.len().max(1))).copied()
        };
        match rng.random_range(0..12) {
            0..=2 => {
                let domain = if rng.random_bool(0.8) {
                    "contoso.com"
                } else {
                    "fabrikam.nl"
                };
                let method = if rng.random_bool(0.3) {
                    NewUserSignIn::EntraId
                } else {
                    NewUserSignIn::Sms
                };
                if let Ok(created) = commands
                    .create_user(&ctx, tenant, new_user(&format!("u{step}@{domain}"), method))
                    .await
                {
                    users.push(created.user_id);
                }
            }
            3 => {
                if let Some(user) = pick(&mut rng, &users) {
                    let phone =
                        MobileNumber::parse(&format!("06 2{:07}", rng.random_range(0..10_000_000)))
                            .unwrap();
                    let command = if rng.random_bool(0.8) {
                        UserCommand::EnrollPhone { phone }
                    } else {
                        UserCommand::RemovePhone
                    };
                    let _ = commands
                        .execute_user_command(&ctx, tenant, user, command)
                        .await;
                }
            }
            4 => {
                if let Some(user) = pick(&mut rng, &users) {
                    let command = if rng.random_bool(0.7) {
                        UserCommand::DeactivateUser
                    } else {
                        UserCommand::ReactivateUser
                    };
                    let _ = commands
                        .execute_user_command(&ctx, tenant, user, command)
                        .await;
                }
            }
            5 => {
                let selected: Vec<UserId> = users
                    .iter()
                    .copied()
                    .filter(|_| rng.random_bool(0.3))
                    .collect();
                if rng.random_bool(0.6) {
                    commands
                        .link_domain_users(&ctx, tenant, contoso.clone(), &selected, false)
                        .await
                        .unwrap();
                } else {
                    commands
                        .unlink_domain_users(&ctx, tenant, contoso.clone(), &selected, false)
                        .await
                        .unwrap();
                }
            }
            6 => {
                commands
                    .set_mfa_policy(&ctx, tenant, rng.random_bool(0.5))
                    .await
                    .unwrap();
                let decision = if rng.random_bool(0.5) {
                    ConsentDecision::Granted
                } else {
                    ConsentDecision::Refused {
                        error_code: ProviderErrorCode::parse("access_denied").unwrap(),
                    }
                };
                commands
                    .record_entra_consent(&ctx, tenant, entra(rng.random_range(1..3)), decision)
                    .await
                    .unwrap();
            }
            7 => {
                if let Some(user) = pick(&mut rng, &users) {
                    let email = EmailAddress::parse(&format!("renamed{step}@contoso.com")).unwrap();
                    let _ = commands.change_user_email(&ctx, tenant, user, email).await;
                }
            }
            8..=10 => {
                if let Some(user) = pick(&mut rng, &users) {
                    random_sign_in(&commands, tenant, user, &mut rng).await;
                }
            }
            _ => {
                if let Some(user) = pick(&mut rng, &users) {
                    let outcome = match rng.random_range(0..3) {
                        0 => EntraSignInOutcome::Succeeded,
                        1 => EntraSignInOutcome::ConsentRequired {
                            entra_tenant_id: Some(entra(1)),
                            error_code: ProviderErrorCode::parse("AADSTS65001").unwrap(),
                        },
                        _ => EntraSignInOutcome::Refused(EntraSignInRefusal::WrongEntraTenant),
                    };
                    let sign_in_id = SignInId::from_uuid(Uuid::now_v7());
                    let command = SignInCommand::RecordEntraSignIn {
                        sign_in_id,
                        user_id: user,
                        outcome,
                        now: Utc::now(),
                    };
                    let _ = commands
                        .sign_ins()
                        .execute(
                            &sign_in_id.to_string(),
                            TenantScoped::new(tenant, command),
                            &ctx,
                        )
                        .await;
                }
            }
        }
    }
    (commands, tenant)
}

/// A password sign-in with the user's facts (as if a password were set), a right or wrong
/// password, and right or wrong codes.
pub(crate) async fn random_sign_in(
    commands: &Commands,
    tenant: TenantId,
    user_id: UserId,
    rng: &mut StdRng,
) {
    let Some(account) = commands
        .users()
        .load(&user_id.to_string())
        .await
        .unwrap()
        .account()
        .cloned()
    else {
        return;
    };
    let sms_required = commands
        .tenants()
        .load(&tenant.to_string())
        .await
        .unwrap()
        .sms_required();
    let sign_in_id = SignInId::from_uuid(Uuid::now_v7());
    let ctx = admin(tenant);
    let execute = |command| {
        let ctx = ctx.clone();
        async move {
            commands
                .sign_ins()
                .execute(
                    &sign_in_id.to_string(),
                    TenantScoped::new(tenant, command),
                    &ctx,
                )
                .await
        }
    };
    let start = SignInCommand::StartPasswordSignIn {
        sign_in_id,
        user_id,
        facts: SignInFacts {
            has_password: true,
            ..account.sign_in_facts(sms_required)
        },
        password_matches: rng.random_bool(0.8),
        recent_failures: rng.random_range(0..7),
        now: Utc::now(),
    };
    let Ok(started) = execute(start).await else {
        return;
    };
    if started
        .aggregate
        .attempt()
        .is_none_or(|attempt| !attempt.password_accepted)
    {
        return;
    }
    let code = commands.keys().codes.hash(sign_in_id, "123456");
    let enrolling_phone =
        (account.phone.is_none()).then(|| MobileNumber::parse("06 87654321").unwrap());
    let request = SignInCommand::RequestSmsCode {
        code_hash: code.clone(),
        enrolling_phone,
        quota: SmsQuota::Allowed,
        now: Utc::now(),
    };
    if execute(request).await.is_err() {
        return;
    }
    for _ in 0..rng.random_range(1..4) {
        let guess = if rng.random_bool(0.5) {
            "123456"
        } else {
            "654321"
        };
        let verify = SignInCommand::VerifySmsCode {
            code_hash: commands.keys().codes.hash(sign_in_id, guess),
            now: Utc::now(),
        };
        if execute(verify).await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn a_runner_killed_mid_batch_loses_and_duplicates_nothing() {
    let db = TestDb::new().await;
    random_history(&db, 700, 7).await;
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
        "SELECT count(*) FROM events WHERE event_type IN ('PasswordTokenIssued', 'SmsCodeIssued') \
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
    random_history(&db, 200, 11).await;

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
    let (commands, tenant) = random_history(&db, 600, 42).await;
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
async fn the_login_page_answers_by_the_domain_alone_whatever_the_account() {
    let db = TestDb::new().await;
    let commands = db.commands();
    let tenant = register_tenant(&commands, "Akkermans Accountants").await;
    let domain = DomainName::parse("contoso.com").unwrap();
    crate::helpers::bind_proven_domain(&commands, tenant, &domain, entra(1)).await;
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
    set_password_via_link(&commands, with_phone, "correct horse battery staple").await;
    let to_enroll = create("enroll@fabrikam.nl", NewUserSignIn::Sms).await;
    set_password_via_link(&commands, to_enroll, "correct horse battery staple").await;
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
        async move {
            let email = EmailAddress::parse(email).unwrap();
            login_page::login_options(&db.pool, email.domain())
                .await
                .unwrap()
        }
    };
    let entra_step = LoginStep::EntraId {
        entra_tenant_id: entra(1),
    };
    // The answer is the domain's: on the proven contoso.com the Entra button for everyone, known
    // or not, linked or not; elsewhere the password form, whatever the account needs next.
    let cases = [
        (
            "unknown@contoso.com",
            entra_step,
            true,
            "unknown on an Entra domain",
        ),
        (
            "NEW@contoso.com",
            entra_step,
            true,
            "an SMS user on an Entra domain",
        ),
        (
            "entra@contoso.com",
            entra_step,
            true,
            "linked, consent not yet granted",
        ),
        (
            "gone@contoso.com",
            entra_step,
            true,
            "deactivated on an Entra domain",
        ),
        (
            "phone@fabrikam.nl",
            LoginStep::Password,
            false,
            "phone enrolled",
        ),
        (
            "enroll@fabrikam.nl",
            LoginStep::Password,
            false,
            "SMS required, no phone yet",
        ),
        (
            "unknown@fabrikam.nl",
            LoginStep::Password,
            false,
            "unknown elsewhere",
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

    // The accounts' facts are the aggregates' facts, fed to the sign-in rule after the password.
    let tenant_state = commands.tenants().load(&tenant.to_string()).await.unwrap();
    for user_id in [no_password, with_phone, to_enroll, entra_user, deactivated] {
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

    // Consent granted removes the notice; unlinking changes nothing the page shows.
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
    let answer = options("unknown@contoso.com").await;
    assert_eq!((answer.step, answer.consent_notice), (entra_step, false));
    commands
        .unlink_domain_users(&admin(tenant), tenant, domain, &[entra_user], false)
        .await
        .unwrap();
    db.run_projections().await;
    assert_eq!(
        options("entra@contoso.com").await,
        options("unknown@contoso.com").await,
        "an unlinked user's answer is still the domain's"
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
    let busy = register_tenant(&commands, "Drukke BV").await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let workers = tokio::spawn(projections::run_all_until(db.pool.clone(), stopped.clone()));
    // Background load: three writers creating users as fast as they can.
    let load: Vec<_> = (0..3)
        .map(|writer| {
            let commands = Arc::clone(&commands);
            let stopped = stopped.clone();
            tokio::spawn(async move {
                let mut created = 0_u32;
                while !*stopped.borrow() {
                    let email = format!("bg{writer}-{created}@fabrikam.nl");
                    commands
                        .create_user(&admin(busy), busy, new_user(&email, NewUserSignIn::Sms))
                        .await
                        .unwrap();
                    created += 1;
                }
                created
            })
        })
        .collect();

    let started = Instant::now();
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
        loop {
            let visible: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM login_accounts WHERE user_id = $1)",
            )
            .bind(created.user_id.as_uuid())
            .fetch_one(&db.pool)
            .await
            .unwrap();
            if visible {
                break;
            }
            assert!(
                committed_at.elapsed() < Duration::from_secs(120),
                "user {n} never became visible"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        lags.push(committed_at.elapsed());
    }
    let elapsed = started.elapsed();
    stop.send(true).unwrap();
    let mut background = 0;
    for writer in load {
        background += writer.await.unwrap();
    }
    workers.await.unwrap();

    lags.sort();
    let percentile = |p: usize| lags[(lags.len() * p / 100).min(lags.len() - 1)];
    println!(
        "login_page lag, commit -> visible, {} measured commands beside {background} background CreateUser in {elapsed:?}: \
         p50 {:?}, p99 {:?}, max {:?}",
        lags.len(),
        percentile(50),
        percentile(99),
        lags[lags.len() - 1]
    );
}

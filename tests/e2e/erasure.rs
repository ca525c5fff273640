//! Erasable personal data (AVG/GDPR): personal fields are sealed per person in the log, and
//! forgetting a person destroys their key, leaving the events and every replay intact.

use std::sync::Arc;
use std::time::Instant;

use chrono::{Duration, Utc};
use domain::TenantScoped;
use domain::ids::{PasswordTokenId, TenantId, UserId};
use domain::user::{ErasureReason, NewUserMethod, PasswordTokenGrant, UserCommand, UserEvent};
use domain::values::{DisplayName, EmailAddress, Locale, MobileNumber, Personal, Role};
use postgres_es::PostgresEventRepository;
use secrecy::SecretString;
use uuid::Uuid;

use api::application::{CommandError, NewUserSignIn};
use api::executor::CommandExecutor;
use api::personal_data::PersonalDataKeys;

use crate::helpers::{TestDb, admin, register_tenant};
use crate::persistence::new_user;

const NAME: &str = "Zoë Erasmus-Testpersoon";
const EMAIL: &str = "zoe.erasmus@contoso.com";
const PHONE: &str = "06 87654321";
/// Every way the person could show up in a table or an export.
const NEEDLES: [&str; 5] = ["erasmus", "Erasmus", "87654321", "+31687654321", "Zoë"];

async fn person(db: &TestDb) -> (api::application::Commands, TenantId, UserId) {
    let commands = db.commands();
    let tenant = register_tenant(&commands, "Akkermans Accountants").await;
    let mut new = new_user(EMAIL, NewUserSignIn::Sms);
    new.display_name = DisplayName::parse(NAME).unwrap();
    let user = commands
        .create_user(&admin(tenant), tenant, new)
        .await
        .unwrap()
        .user_id;
    let phone = MobileNumber::parse(PHONE).unwrap();
    commands
        .execute_user_command(
            &admin(tenant),
            tenant,
            user,
            UserCommand::EnrollPhone { phone },
        )
        .await
        .unwrap();
    (commands, tenant, user)
}

/// Rows of every table (and column) of the schema whose text contains a needle.
async fn tables_mentioning(db: &TestDb, needles: &[&str]) -> Vec<String> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let mut found = Vec::new();
    for table in tables {
        for needle in needles {
            let hits: i64 = sqlx::query_scalar(&format!(
                "SELECT count(*) FROM {table} t WHERE t::text LIKE '%' || $1 || '%'"
            ))
            .bind(*needle)
            .fetch_one(&db.pool)
            .await
            .unwrap();
            if hits > 0 {
                found.push(format!("{table} contains {needle:?}"));
            }
        }
    }
    found
}

async fn full_export(db: &TestDb, tenant: TenantId) -> String {
    let mut out = Vec::new();
    let query = projections::audit::ExportQuery {
        tenant_id: tenant.as_uuid().into(),
        filter: Default::default(),
    };
    projections::audit::export_ndjson(&db.pool, &query, &mut out)
        .await
        .unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn personal_data_never_reaches_the_log_or_read_models_in_clear() {
    let db = TestDb::new().await;
    let (commands, tenant, user) = person(&db).await;
    commands
        .change_user_email(
            &admin(tenant),
            tenant,
            user,
            EmailAddress::parse("zoe.erasmus2@contoso.com").unwrap(),
        )
        .await
        .unwrap();
    db.run_projections().await;

    assert_eq!(tables_mentioning(&db, &NEEDLES).await, Vec::<String>::new());
    let export = full_export(&db, tenant).await;
    assert!(
        NEEDLES.iter().all(|needle| !export.contains(needle)),
        "the export shows personal data"
    );

    // The write side reads them back.
    let account = commands
        .users()
        .load(&user.to_string())
        .await
        .unwrap()
        .account()
        .cloned()
        .unwrap();
    assert_eq!(
        account.email.known().unwrap().to_string(),
        "zoe.erasmus2@contoso.com"
    );
    assert_eq!(account.display_name.known().unwrap().as_str(), NAME);
    assert_eq!(
        account.phone.unwrap().known().unwrap().e164(),
        "+31687654321"
    );
    // And so does the API side, from the sealed read model.
    let row = projections::settings_screen::users(&db.pool, tenant, None, 10)
        .await
        .unwrap()
        .remove(0);
    let name: Personal<DisplayName> = commands
        .personal_data()
        .open(&row.display_name)
        .await
        .unwrap();
    assert_eq!(name.known().unwrap().as_str(), NAME);
}

#[tokio::test]
async fn forgetting_a_person_erases_them_everywhere_and_replay_still_works() {
    let db = TestDb::new().await;
    let (commands, tenant, user) = person(&db).await;
    let other = commands
        .create_user(
            &admin(tenant),
            tenant,
            new_user("colleague@contoso.com", NewUserSignIn::Sms),
        )
        .await
        .unwrap();
    db.run_projections().await;
    let events_before = db.event_count().await;

    commands
        .forget_user(
            &admin(tenant),
            tenant,
            user,
            ErasureReason::DataSubjectRequest,
        )
        .await
        .unwrap();
    db.run_projections().await;

    // Nothing readable is left anywhere: tables, read models, export.
    assert_eq!(tables_mentioning(&db, &NEEDLES).await, Vec::<String>::new());
    let export = full_export(&db, tenant).await;
    assert!(NEEDLES.iter().all(|needle| !export.contains(needle)));
    for table in [
        "settings_users",
        "login_accounts",
        "sign_in_history",
        "notification_messages",
        "password_credentials",
    ] {
        let rows: i64 =
            sqlx::query_scalar(&format!("SELECT count(*) FROM {table} WHERE user_id = $1"))
                .bind(user.as_uuid())
                .fetch_one(&db.pool)
                .await
                .unwrap();
        assert_eq!(rows, 0, "{table} still has rows of the forgotten person");
    }
    // The events stay, one more recording the erasure; the person's fields load as erased.
    assert_eq!(
        db.event_count().await,
        events_before + 2,
        "UserForgotten and EmailReleased appended"
    );
    let history = commands
        .users()
        .load_events(&user.to_string())
        .await
        .unwrap();
    let UserEvent::UserCreated {
        email,
        display_name,
        ..
    } = &history[0].payload
    else {
        panic!("{history:?}")
    };
    assert_eq!(
        (email, display_name),
        (&email.erased(), &display_name.erased())
    );
    assert!(
        commands
            .users()
            .load(&user.to_string())
            .await
            .unwrap()
            .account()
            .is_none()
    );
    let forgotten_by = &history.last().unwrap().metadata;
    assert_eq!(forgotten_by["actor_role"], "administrator");
    assert_eq!(forgotten_by["causation_command"], "ForgetUser");
    // Replay, rebuild and audit still work, and the colleague is untouched.
    db.assert_projections_verify().await;
    for name in projections::PROJECTORS {
        projections::rebuild_named(&db.pool, name).await.unwrap();
    }
    assert_eq!(tables_mentioning(&db, &NEEDLES).await, Vec::<String>::new());
    let state = projections::audit::user_state_at(
        &db.pool,
        tenant.as_uuid().into(),
        user.as_uuid().into(),
        Utc::now(),
    )
    .await
    .unwrap();
    assert!(
        state.is_none_or(|user| user.account().is_none()),
        "the audit fold of an erased person works"
    );
    assert!(
        commands
            .users()
            .load(&other.user_id.to_string())
            .await
            .unwrap()
            .account()
            .is_some()
    );
    // The address is free again.
    commands
        .create_user(&admin(tenant), tenant, new_user(EMAIL, NewUserSignIn::Sms))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_repeated_forget_finishes_an_interrupted_erasure() {
    let db = TestDb::new().await;
    let (commands, tenant, user) = person(&db).await;
    // The event was recorded, then the process died before the key and the address were freed.
    let forget = TenantScoped::new(
        tenant,
        UserCommand::ForgetUser {
            reason: ErasureReason::AccountClosed,
        },
    );
    commands
        .users()
        .execute(&user.to_string(), forget, &admin(tenant))
        .await
        .unwrap();
    let taken = commands
        .create_user(&admin(tenant), tenant, new_user(EMAIL, NewUserSignIn::Sms))
        .await;
    assert!(
        matches!(taken, Err(CommandError::EmailClaim(_))),
        "{taken:?}"
    );

    commands
        .forget_user(&admin(tenant), tenant, user, ErasureReason::AccountClosed)
        .await
        .unwrap();

    let live: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT wrapped_key FROM personal_data_keys WHERE subject_id = $1")
            .bind(user.as_uuid())
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(live, None, "the data key is destroyed");
    commands
        .create_user(&admin(tenant), tenant, new_user(EMAIL, NewUserSignIn::Sms))
        .await
        .unwrap();
    let unknown = commands
        .forget_user(
            &admin(tenant),
            tenant,
            UserId::from_uuid(Uuid::now_v7()),
            ErasureReason::AccountClosed,
        )
        .await;
    assert!(matches!(unknown, Err(CommandError::User(_))), "{unknown:?}");
}

#[tokio::test]
async fn data_keys_survive_a_master_key_rotation() {
    let db = TestDb::new().await;
    let (commands, _tenant, user) = person(&db).await;
    let old = db.settings().secrets.data_key_encryption_key;
    let new = SecretString::from("7".repeat(64));

    let rotating = PersonalDataKeys::new(db.pool.clone(), &new, &[old]).unwrap();
    assert_eq!(rotating.rewrap_all().await.unwrap(), 1);
    let rotated_only = Arc::new(PersonalDataKeys::new(db.pool.clone(), &new, &[]).unwrap());
    let executor = CommandExecutor::<domain::user::User>::new(db.pool.clone(), 1, rotated_only);
    let account = executor
        .load(&user.to_string())
        .await
        .unwrap()
        .account()
        .cloned()
        .unwrap();
    assert_eq!(account.display_name.known().unwrap().as_str(), NAME);
    // The old master key alone can no longer open anything.
    let events = commands.users().load_events(&user.to_string()).await;
    assert!(
        events.is_err(),
        "the retired master key must not unwrap rotated data keys"
    );
}

/// Not a timed assertion: the cost of sealing on command throughput, measured side by side
/// (`scripts/test -E 'test(sealing_cost)' --no-capture`).
#[tokio::test]
async fn sealing_cost_on_command_throughput_is_measured() {
    const COMMANDS: usize = 300;
    let db = TestDb::new().await;
    let tenant = TenantId::from_uuid(Uuid::now_v7());
    let keys = Arc::new(
        PersonalDataKeys::new(
            db.pool.clone(),
            &db.settings().secrets.data_key_encryption_key,
            &[],
        )
        .unwrap(),
    );
    let sealed = CommandExecutor::<domain::user::User>::new(db.pool.clone(), 1, keys);
    let plain = CommandExecutor::<domain::user::User, PostgresEventRepository>::with_repository(
        PostgresEventRepository::new(db.pool.clone()),
        db.pool.clone(),
        1,
    );
    let create = |n: usize| {
        let user_id = UserId::from_uuid(Uuid::now_v7());
        let command = UserCommand::CreateUser {
            user_id,
            email: EmailAddress::parse(&format!("user{n}@contoso.com")).unwrap(),
            email_key: domain::values::EmailKey::from_digest(&[u8::try_from(n % 256).unwrap(); 32]),
            display_name: DisplayName::parse("Anne de Vries").unwrap(),
            role: Role::User,
            locale: Locale::Nl,
            method: NewUserMethod::Sms {
                password_token: PasswordTokenGrant {
                    token_id: PasswordTokenId::from_uuid(Uuid::now_v7()),
                    expires_at: Utc::now() + Duration::days(7),
                },
            },
        };
        (user_id, TenantScoped::new(tenant, command))
    };
    let mut timings = [std::time::Duration::ZERO; 2];
    for round in 0..6 {
        for (which, timing) in timings.iter_mut().enumerate() {
            let started = Instant::now();
            for n in 0..COMMANDS / 6 {
                let (user_id, command) = create(round * 1000 + n);
                if which == 0 {
                    plain
                        .execute(&user_id.to_string(), command, &admin(tenant))
                        .await
                        .unwrap();
                } else {
                    sealed
                        .execute(&user_id.to_string(), command, &admin(tenant))
                        .await
                        .unwrap();
                }
            }
            *timing += started.elapsed();
        }
    }
    let per_second = |elapsed: std::time::Duration| COMMANDS as f64 / elapsed.as_secs_f64();
    println!(
        "CreateUser (2 events, 2 sealed fields) x{COMMANDS}, alternating: plain {:.0}/s, sealed {:.0}/s, ratio {:.2}",
        per_second(timings[0]),
        per_second(timings[1]),
        per_second(timings[1]) / per_second(timings[0])
    );
}

/// A `MakeWriter` that appends every log line to a shared buffer.
#[derive(Clone, Default)]
struct CapturedLogs(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for CapturedLogs {
    type Writer = Self;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn no_log_line_contains_personal_data_even_at_trace_level() {
    let logs = CapturedLogs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(logs.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let db = TestDb::new().await;
    let (commands, tenant, user) = person(&db).await;
    commands
        .change_user_email(
            &admin(tenant),
            tenant,
            user,
            EmailAddress::parse("zoe.erasmus2@contoso.com").unwrap(),
        )
        .await
        .unwrap();
    db.run_projections().await;
    commands
        .forget_user(
            &admin(tenant),
            tenant,
            user,
            ErasureReason::DataSubjectRequest,
        )
        .await
        .unwrap();
    db.run_projections().await;

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(text.lines().count() > 10, "logging was captured: {text}");
    for needle in NEEDLES {
        assert!(!text.contains(needle), "a log line contains {needle:?}");
    }
}

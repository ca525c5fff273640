//! Signing in with password and SMS code over HTTP, with the code sent through the CM.com adapter
//! to a stub of CM's API: enrollment, a wrong code, the right one, a session, and no code or full
//! number anywhere it could leak.

use std::sync::{Arc, Mutex};

use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use api::application::NewUserSignIn;

use crate::helpers::{TestDb, admin, register_tenant, set_cookie, set_password_via_link};
use crate::persistence::new_user;

#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Self;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// The code in the last SMS the stub received.
async fn last_code(cm: &MockServer) -> String {
    let requests = cm.received_requests().await.unwrap();
    let body: Value = serde_json::from_slice(&requests.last().unwrap().body).unwrap();
    let text = body["messages"]["msg"][0]["body"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    text.split_whitespace()
        .find(|word| {
            word.trim_end_matches('.').len() == 6
                && word
                    .trim_end_matches('.')
                    .bytes()
                    .all(|b| b.is_ascii_digit())
        })
        .unwrap()
        .trim_end_matches('.')
        .to_owned()
}

#[tokio::test]
async fn a_user_enrolls_a_phone_signs_in_with_a_code_and_no_code_or_number_leaks() {
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(logs.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let SmsWorld {
        db,
        base,
        cm,
        tenant,
        user_id,
    } = sms_world().await;
    let commands = db.commands();
    let client = reqwest::Client::new();
    let post = |path: &str, cookie: Option<&str>, body: Value| {
        let mut request = client.post(format!("{base}{path}")).json(&body);
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        request.send()
    };

    // A wrong password says nothing more than "not right".
    let wrong = post(
        "/sign_in/password",
        None,
        json!({"email": "anne@contoso.com", "password": "wrong password!!"}),
    )
    .await
    .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let unknown = post(
        "/sign_in/password",
        None,
        json!({"email": "nobody@contoso.com", "password": "wrong password!!"}),
    )
    .await
    .unwrap();
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);

    // The right password asks for a number to enroll (SMS is required, none is known).
    let first = post(
        "/sign_in/password",
        None,
        json!({"email": "Anne@Contoso.com", "password": "correct horse battery staple"}),
    )
    .await
    .unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let attempt = format!(
        "__Host-finteqx_sign_in={}",
        set_cookie(&first, "__Host-finteqx_sign_in").unwrap()
    );
    assert_eq!(first.json::<Value>().await.unwrap()["next"], "enroll_phone");
    // The cookie is `{attempt}.{mac}`: the bare attempt id, or its MAC on another id, is refused.
    let (id, mac) = attempt
        .trim_start_matches("__Host-finteqx_sign_in=")
        .split_once('.')
        .unwrap();
    let other = uuid::Uuid::now_v7().simple().to_string();
    for forged in [id.to_owned(), format!("{other}.{mac}")] {
        let refused = post(
            "/sign_in/sms_code",
            Some(&format!("__Host-finteqx_sign_in={forged}")),
            json!({"phone": "06 12345678"}),
        )
        .await
        .unwrap();
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED, "{forged}");
    }
    let landline = post(
        "/sign_in/sms_code",
        Some(&attempt),
        json!({"phone": "020 123 4567"}),
    )
    .await
    .unwrap();
    assert_eq!(
        landline.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "a fixed line cannot receive codes"
    );
    let sent = post(
        "/sign_in/sms_code",
        Some(&attempt),
        json!({"phone": "06 12345678"}),
    )
    .await
    .unwrap();
    assert_eq!(sent.status(), StatusCode::NO_CONTENT);
    let too_soon = post(
        "/sign_in/sms_code",
        Some(&attempt),
        json!({"phone": "06 12345678"}),
    )
    .await
    .unwrap();
    assert_eq!(
        too_soon.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "resending is throttled"
    );
    let code = last_code(&cm).await;
    let wrong_code = if code == "000000" { "111111" } else { "000000" };
    let rejected = post(
        "/sign_in/verify",
        Some(&attempt),
        json!({"code": wrong_code}),
    )
    .await
    .unwrap();
    assert_eq!(rejected.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        rejected.json::<Value>().await.unwrap()["type"],
        "urn:finteqx:problem:code-wrong"
    );
    let verified = post("/sign_in/verify", Some(&attempt), json!({"code": code}))
        .await
        .unwrap();
    assert_eq!(verified.status(), StatusCode::OK);
    let session = format!(
        "__Host-finteqx_session={}",
        set_cookie(&verified, "__Host-finteqx_session").unwrap()
    );
    let replay = post("/sign_in/verify", Some(&attempt), json!({"code": code}))
        .await
        .unwrap();
    assert_ne!(replay.status(), StatusCode::OK, "a code is single use");

    // The session works (a user may not read the settings, but is known), and the phone is enrolled.
    let settings_page = client
        .get(format!("{base}/tenants/{tenant}/settings"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(settings_page.status(), StatusCode::FORBIDDEN);
    let signed_out = client
        .post(format!("{base}/sign_out"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(signed_out.status(), StatusCode::NO_CONTENT);
    let after = client
        .get(format!("{base}/tenants/{tenant}/settings"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(
        after.status(),
        StatusCode::UNAUTHORIZED,
        "the session ended server-side"
    );
    let user = commands.users().load(&user_id.to_string()).await.unwrap();
    assert_eq!(
        user.account()
            .unwrap()
            .phone
            .as_ref()
            .unwrap()
            .known()
            .unwrap()
            .e164(),
        "+31612345678"
    );

    // The next sign-in sends the code to the enrolled number without asking for it.
    let second = post(
        "/sign_in/password",
        None,
        json!({"email": "anne@contoso.com", "password": "correct horse battery staple"}),
    )
    .await
    .unwrap();
    let attempt = format!(
        "__Host-finteqx_sign_in={}",
        set_cookie(&second, "__Host-finteqx_sign_in").unwrap()
    );
    assert_eq!(second.json::<Value>().await.unwrap()["next"], "sms_code");
    assert_eq!(
        post("/sign_in/sms_code", Some(&attempt), json!({}))
            .await
            .unwrap()
            .status(),
        StatusCode::NO_CONTENT
    );
    let code2 = last_code(&cm).await;
    let requests = cm.received_requests().await.unwrap();
    let last: Value = serde_json::from_slice(&requests.last().unwrap().body).unwrap();
    assert_eq!(
        last["messages"]["msg"][0]["to"][0]["number"],
        "0031612345678"
    );
    assert_eq!(
        post("/sign_in/verify", Some(&attempt), json!({"code": code2}))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    // The queue shows the SMS as sent; no code and no full number anywhere.
    db.run_projections().await;
    let sent_sms: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM notification_messages m JOIN notification_deliveries d USING (message_id) \
         WHERE m.channel = 'sms' AND d.state = 'sent'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(sent_sms, 2);
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    for table in tables {
        // Digits bounded by non-digits, so a code does not "appear" inside a longer number.
        for needle in [code.as_str(), code2.as_str(), "612345678"] {
            let hits: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table} t WHERE t::text ~ ('(^|[^0-9])' || $1 || '([^0-9]|$)')"))
                .bind(needle)
                .fetch_one(&db.pool)
                .await
                .unwrap();
            assert_eq!(hits, 0, "{table} contains {needle}");
        }
    }
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(text.lines().count() > 10);
    for needle in [code.as_str(), code2.as_str(), "612345678"] {
        assert!(!text.contains(needle), "a log line contains {needle}");
    }
}

/// A user with a password in a tenant that requires SMS, and the service with CM stubbed.
struct SmsWorld {
    db: TestDb,
    base: String,
    cm: MockServer,
    tenant: domain::ids::TenantId,
    user_id: domain::ids::UserId,
}

async fn sms_world() -> SmsWorld {
    sms_world_with(|_| {}).await
}

async fn sms_world_with(configure: impl FnOnce(&mut api::configuration::Settings)) -> SmsWorld {
    let db = TestDb::new().await;
    let commands = db.commands();
    let tenant = register_tenant(&commands, "Akkermans Accountants").await;
    commands
        .set_mfa_policy(&admin(tenant), tenant, true)
        .await
        .unwrap();
    let user_id = commands
        .create_user(
            &admin(tenant),
            tenant,
            new_user("anne@contoso.com", NewUserSignIn::Sms),
        )
        .await
        .unwrap()
        .user_id;
    set_password_via_link(&commands, user_id, "correct horse battery staple").await;
    db.run_projections().await;
    let cm = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1.0/message"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&cm)
        .await;
    let mut settings = db.settings();
    settings.sms.provider = api::configuration::SmsProvider::Cm;
    settings.sms.cm_base_url = cm.uri();
    settings.sms.cm_product_token = SecretString::from("test-token".to_owned());
    configure(&mut settings);
    let base = db.spawn_app_with(&settings).await;
    SmsWorld {
        db,
        base,
        cm,
        tenant,
        user_id,
    }
}

/// Signs in with the password and asks for a code to `phone`; returns the code request's status
/// and problem type.
async fn code_for(base: &str, phone: &str) -> (StatusCode, Value) {
    let client = reqwest::Client::new();
    let start = client
        .post(format!("{base}/sign_in/password"))
        .json(&json!({"email": "anne@contoso.com", "password": "correct horse battery staple"}))
        .send()
        .await
        .unwrap();
    let attempt = format!(
        "__Host-finteqx_sign_in={}",
        set_cookie(&start, "__Host-finteqx_sign_in").unwrap()
    );
    let response = client
        .post(format!("{base}/sign_in/sms_code"))
        .header("cookie", attempt)
        .json(&json!({"phone": phone}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn codes_per_user_per_hour_are_limited() {
    let SmsWorld { base, cm, .. } = sms_world().await;
    for n in 1..=5 {
        assert_eq!(
            code_for(&base, "06 12345678").await.0,
            StatusCode::NO_CONTENT,
            "code {n}"
        );
    }
    let (status, problem) = code_for(&base, "06 12345678").await;
    assert_eq!(
        (status, problem["type"].as_str()),
        (
            StatusCode::TOO_MANY_REQUESTS,
            Some("urn:finteqx:problem:sms-send-limit")
        )
    );
    assert_eq!(
        cm.received_requests().await.unwrap().len(),
        5,
        "the sixth code was never sent"
    );
}

#[tokio::test]
async fn a_flood_of_codes_to_one_foreign_country_is_stopped() {
    let SmsWorld {
        db,
        base,
        cm,
        tenant,
        ..
    } = sms_world().await;
    // Other users of the platform already sent 50 codes to +44 numbers this hour.
    for n in 0..50 {
        sqlx::query("INSERT INTO sms_sends (tenant_id, user_id, number_key, country_code) VALUES ($1, $2, $3, 44)")
            .bind(tenant.as_uuid())
            .bind(uuid::Uuid::now_v7())
            .bind(format!("{n:064x}"))
            .execute(&db.pool)
            .await
            .unwrap();
    }
    let (status, problem) = code_for(&base, "+44 7911 123456").await;
    assert_eq!(
        (status, problem["type"].as_str()),
        (
            StatusCode::TOO_MANY_REQUESTS,
            Some("urn:finteqx:problem:sms-send-limit")
        )
    );
    assert_eq!(
        code_for(&base, "06 12345678").await.0,
        StatusCode::NO_CONTENT,
        "home numbers are not held back"
    );
    assert_eq!(cm.received_requests().await.unwrap().len(), 1);
}

/// A clock the test moves forward.
struct ManualClock(Mutex<chrono::DateTime<chrono::Utc>>);

impl ManualClock {
    fn advance(&self, by: chrono::Duration) {
        *self.0.lock().unwrap() += by;
    }
}

impl api::clock::Clock for ManualClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        *self.0.lock().unwrap()
    }
}

#[tokio::test]
async fn codes_expire_resends_are_throttled_and_wrong_codes_lock_the_attempt() {
    use api::application::{CodeOutcome, CommandError, PasswordOutcome};
    use domain::sign_in::SignInError;

    let SmsWorld { db, cm, .. } = sms_world().await;
    let clock = Arc::new(ManualClock(Mutex::new(chrono::Utc::now())));
    let mut settings = db.settings();
    settings.sms.provider = api::configuration::SmsProvider::Cm;
    settings.sms.cm_base_url = cm.uri();
    settings.sms.cm_product_token = SecretString::from("test-token".to_owned());
    let sms = api::sms::from_settings(&settings.sms).unwrap();
    let commands =
        api::startup::build_commands_with_clock(&settings, db.pool.clone(), clock.clone()).unwrap();
    let context = admin(domain::ids::TenantId::from_uuid(uuid::Uuid::nil()));
    let phone = || Some(domain::values::MobileNumber::parse("06 12345678").unwrap());

    let PasswordOutcome::PhoneRequired(attempt) = commands
        .sign_in_with_password(
            &context,
            "anne@contoso.com",
            SecretString::from("correct horse battery staple".to_owned()),
            None,
        )
        .await
        .unwrap()
    else {
        panic!("the password step asks for a number");
    };
    commands
        .send_sms_code(&context, attempt, phone(), sms.as_ref())
        .await
        .unwrap();
    let first = last_code(&cm).await;
    assert!(matches!(
        commands
            .send_sms_code(&context, attempt, phone(), sms.as_ref())
            .await,
        Err(CommandError::SignIn(SignInError::ResendTooSoon { .. }))
    ));

    // Five minutes later the code no longer works.
    clock.advance(chrono::Duration::minutes(5) + chrono::Duration::seconds(1));
    assert!(matches!(
        commands.verify_sms_code(&context, attempt, &first).await,
        Err(CommandError::SignIn(SignInError::CodeExpired))
    ));

    // A new code; five wrong guesses use it up, after which even the right code is refused.
    commands
        .send_sms_code(&context, attempt, phone(), sms.as_ref())
        .await
        .unwrap();
    let second = last_code(&cm).await;
    let wrong = if second == "000000" {
        "111111"
    } else {
        "000000"
    };
    for left in (0..5).rev() {
        assert_eq!(
            commands
                .verify_sms_code(&context, attempt, wrong)
                .await
                .unwrap(),
            CodeOutcome::Wrong {
                attempts_left: left
            }
        );
    }
    assert!(matches!(
        commands.verify_sms_code(&context, attempt, &second).await,
        Err(CommandError::SignIn(SignInError::CodeAttemptsExhausted))
    ));

    // The third and last code of the attempt, guessed wrong five times, locks the attempt.
    clock.advance(chrono::Duration::seconds(31));
    commands
        .send_sms_code(&context, attempt, phone(), sms.as_ref())
        .await
        .unwrap();
    let third = last_code(&cm).await;
    let wrong = if third == "000000" {
        "111111"
    } else {
        "000000"
    };
    for _ in 0..4 {
        commands
            .verify_sms_code(&context, attempt, wrong)
            .await
            .unwrap();
    }
    assert_eq!(
        commands
            .verify_sms_code(&context, attempt, wrong)
            .await
            .unwrap(),
        CodeOutcome::Locked
    );
    assert!(matches!(
        commands.verify_sms_code(&context, attempt, &third).await,
        Err(CommandError::SignIn(SignInError::Finished))
    ));
    clock.advance(chrono::Duration::seconds(31));
    assert!(matches!(
        commands
            .send_sms_code(&context, attempt, phone(), sms.as_ref())
            .await,
        Err(CommandError::SignIn(SignInError::Finished))
    ));
    assert_eq!(
        cm.received_requests().await.unwrap().len(),
        3,
        "three codes were sent"
    );
}

#[tokio::test]
async fn password_attempts_are_rate_limited_per_address_known_or_not() {
    let SmsWorld { base, .. } = sms_world().await;
    let client = reqwest::Client::new();
    for email in ["anne@contoso.com", "nobody@contoso.com"] {
        for n in 1..=10 {
            let response = client
                .post(format!("{base}/sign_in/password"))
                .json(&json!({"email": email, "password": "wrong password!!"}))
                .send()
                .await
                .unwrap();
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{email} attempt {n}"
            );
        }
        let limited = client
            .post(format!("{base}/sign_in/password"))
            .json(&json!({"email": email, "password": "correct horse battery staple"}))
            .send()
            .await
            .unwrap();
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS, "{email}");
        let retry_after: i64 = limited.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=900).contains(&retry_after), "{retry_after}");
        let problem: Value = limited.json().await.unwrap();
        assert_eq!(
            problem["type"],
            "urn:finteqx:problem:too-many-sign-in-attempts"
        );
    }
    // Another address from the same client is not held back by them.
    let other = client
        .post(format!("{base}/sign_in/password"))
        .json(&json!({"email": "someone@contoso.com", "password": "wrong password!!"}))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::UNAUTHORIZED);
}

/// Starts a sign-in with the right password; returns the attempt cookie.
async fn password_step(base: &str) -> String {
    let start = reqwest::Client::new()
        .post(format!("{base}/sign_in/password"))
        .json(&json!({"email": "anne@contoso.com", "password": "correct horse battery staple"}))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), StatusCode::OK);
    format!(
        "__Host-finteqx_sign_in={}",
        set_cookie(&start, "__Host-finteqx_sign_in").unwrap()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_parallel_code_requests_send_exactly_the_hourly_limit() {
    // Arrange: nine attempts of one user (the password step allows ten per address). Fifty
    // requests queue for the pool's connections; on a loaded machine the default 3 s wait could
    // answer 503 before the limit is reached, which is not what this test is about.
    let SmsWorld { base, cm, .. } = sms_world_with(|settings| {
        settings.database.acquire_timeout_ms = 60_000;
    })
    .await;
    let mut attempts = Vec::new();
    for _ in 0..9 {
        attempts.push(password_step(&base).await);
    }

    // Act: fifty code requests at once, spread over the attempts.
    let client = reqwest::Client::new();
    let requests = (0..50).map(|n| {
        let request = client
            .post(format!("{base}/sign_in/sms_code"))
            .header("cookie", attempts[n % attempts.len()].clone())
            .json(&json!({"phone": "06 12345678"}));
        async move { request.send().await.unwrap().status() }
    });
    let statuses = futures::future::join_all(requests).await;

    // Assert: five codes (SENDS_PER_USER_PER_HOUR) reached the provider, no more.
    let sent = statuses
        .iter()
        .filter(|status| **status == StatusCode::NO_CONTENT)
        .count();
    assert_eq!(sent, 5, "{statuses:?}");
    assert_eq!(cm.received_requests().await.unwrap().len(), 5);
    assert!(
        statuses.iter().all(|s| [
            StatusCode::NO_CONTENT,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::CONFLICT
        ]
        .contains(s)),
        "{statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_parallel_password_attempts_for_one_address_pass_exactly_the_limit() {
    // As above: queued requests wait for a connection rather than answer 503.
    let SmsWorld { base, .. } = sms_world_with(|settings| {
        settings.database.acquire_timeout_ms = 60_000;
    })
    .await;
    let client = reqwest::Client::new();

    let requests = (0..50).map(|_| {
        let request = client
            .post(format!("{base}/sign_in/password"))
            .json(&json!({"email": "anne@contoso.com", "password": "wrong password!!"}));
        async move { request.send().await.unwrap().status() }
    });
    let statuses = futures::future::join_all(requests).await;

    let checked = statuses
        .iter()
        .filter(|status| **status == StatusCode::UNAUTHORIZED)
        .count();
    let limited = statuses
        .iter()
        .filter(|status| **status == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((checked, limited), (10, 40), "{statuses:?}");
}

/// A password attempt for Anne from `client`, as a proxy forwarding it would say.
async fn password_from(base: &str, client: &str, password: &str) -> StatusCode {
    reqwest::Client::new()
        .post(format!("{base}/sign_in/password"))
        .header("x-forwarded-for", client)
        .json(&json!({"email": "anne@contoso.com", "password": password}))
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn the_owner_signs_in_from_a_fresh_client_while_a_stranger_hammers_the_address() {
    // Arrange: the service behind a proxy on 127.0.0.1.
    let SmsWorld { base, .. } = sms_world_with(|settings| {
        settings.limits.trusted_proxies = "127.0.0.1".to_owned();
    })
    .await;
    let stranger = "203.0.113.9";

    // Act: a stranger who knows the address guesses until refused.
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(password_from(&base, stranger, "wrong password!!").await);
    }

    // Assert: the stranger is throttled, even with the right password now ...
    assert_eq!(
        statuses[..10],
        [StatusCode::UNAUTHORIZED; 10],
        "{statuses:?}"
    );
    assert_eq!(
        statuses[10..],
        [StatusCode::TOO_MANY_REQUESTS; 2],
        "{statuses:?}"
    );
    assert_eq!(
        password_from(&base, stranger, "correct horse battery staple").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // ... and the owner, on their own client (an IPv6 address), goes on to the code step.
    assert_eq!(
        password_from(&base, "2001:db8:7:7::42", "correct horse battery staple").await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn failures_lock_the_address_only_for_the_client_that_made_them() {
    let SmsWorld { base, .. } = sms_world_with(|settings| {
        settings.limits.trusted_proxies = "127.0.0.1".to_owned();
    })
    .await;
    let stranger = "203.0.113.9";
    for _ in 0..5 {
        assert_eq!(
            password_from(&base, stranger, "wrong password!!").await,
            StatusCode::UNAUTHORIZED
        );
    }
    // Five failures lock the address for the stranger's client: the right password is refused.
    assert_eq!(
        password_from(&base, stranger, "correct horse battery staple").await,
        StatusCode::UNAUTHORIZED
    );
    // The owner's client has no failures of its own.
    assert_eq!(
        password_from(&base, "198.51.100.7", "correct horse battery staple").await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn forwarded_addresses_count_only_from_a_trusted_proxy() {
    // Arrange: no proxy is trusted, so every request comes from 127.0.0.1 whatever it claims.
    let SmsWorld { base, .. } = sms_world().await;

    // Act: ten wrong passwords, each claiming another client.
    for n in 0..10 {
        let status = password_from(&base, &format!("203.0.113.{n}"), "wrong password!!").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {n}");
    }

    // Assert: a new claimed address does not reset the limit.
    assert_eq!(
        password_from(&base, "198.51.100.7", "correct horse battery staple").await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

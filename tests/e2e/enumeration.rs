//! No account enumeration (ADR-0028): the login page and the start of an Entra sign-in answer by
//! the address's domain alone, in every policy, and the password step costs about the same for
//! known and unknown addresses (measured and printed, not asserted against a clock).

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use api::application::NewUserSignIn;
use domain::values::{DomainName, MobileNumber};

use crate::helpers::{TestDb, admin, bind_proven_domain, register_tenant, set_password_via_link};
use crate::persistence::{entra, new_user};

/// Addresses of every kind on one domain: unknown, no password yet, a password, a phone,
/// deactivated.
async fn accounts_on(db: &TestDb, tenant: domain::ids::TenantId, domain: &str) -> Vec<String> {
    let commands = db.commands();
    let create = |local: &str| {
        let email = format!("{local}@{domain}");
        let commands = &commands;
        async move {
            commands
                .create_user(&admin(tenant), tenant, new_user(&email, NewUserSignIn::Sms))
                .await
                .unwrap()
                .user_id
        }
    };
    create("new").await;
    let with_password = create("password").await;
    set_password_via_link(&commands, with_password, "correct horse battery staple").await;
    let with_phone = create("phone").await;
    set_password_via_link(&commands, with_phone, "correct horse battery staple").await;
    commands
        .execute_user_command(
            &admin(tenant),
            tenant,
            with_phone,
            domain::user::UserCommand::EnrollPhone {
                phone: MobileNumber::parse("06 12345678").unwrap(),
            },
        )
        .await
        .unwrap();
    let gone = create("gone").await;
    commands
        .execute_user_command(
            &admin(tenant),
            tenant,
            gone,
            domain::user::UserCommand::DeactivateUser,
        )
        .await
        .unwrap();
    ["unknown", "new", "password", "phone", "gone"]
        .iter()
        .map(|local| format!("{local}@{domain}"))
        .collect()
}

async fn post(client: &reqwest::Client, url: String, body: Value) -> (StatusCode, Value) {
    let response = client.post(url).json(&body).send().await.unwrap();
    let status = response.status();
    let mut body: Value = response.json().await.unwrap_or(Value::Null);
    // The flow's own random values differ per request; the shape must not.
    if let Some(url) = body.get_mut("authorization_url") {
        *url = json!("<authorization url>");
    }
    if let Some(instance) = body.get_mut("instance") {
        *instance = Value::Null;
    }
    (status, body)
}

#[tokio::test]
async fn every_address_of_a_domain_gets_the_same_answer_in_every_policy() {
    // Arrange: a plain domain and a proven Entra domain, each with accounts of every kind.
    let db = TestDb::new().await;
    let commands = db.commands();
    let tenant = register_tenant(&commands, "Akkermans Accountants").await;
    bind_proven_domain(
        &commands,
        tenant,
        &DomainName::parse("contoso.com").unwrap(),
        entra(1),
    )
    .await;
    let plain = accounts_on(&db, tenant, "fabrikam.nl").await;
    let mut on_entra = accounts_on(&db, tenant, "contoso.com").await;
    on_entra.push(
        commands
            .create_user(
                &admin(tenant),
                tenant,
                new_user("linked@contoso.com", NewUserSignIn::EntraId),
            )
            .await
            .map(|_| "linked@contoso.com".to_owned())
            .unwrap(),
    );
    let mut settings = db.settings();
    // Entra configured (its authority is not needed: only the plain domain's starts are compared
    // here; `entra_sign_in` sends a linked and an unknown address of the Entra domain alike).
    settings.entra.client_id = "finteqx-test".to_owned();
    settings.entra.client_secret = "secret".to_owned().into();
    let base = db.spawn_app_with(&settings).await;
    let client = reqwest::Client::new();

    for sms_required in [false, true] {
        commands
            .set_mfa_policy(&admin(tenant), tenant, sms_required)
            .await
            .unwrap();
        db.run_projections().await;
        for (domain, addresses) in [("fabrikam.nl", &plain), ("contoso.com", &on_entra)] {
            // Act
            let mut options = Vec::new();
            let mut starts = Vec::new();
            for email in addresses {
                let body = json!({ "email": email });
                options.push(post(&client, format!("{base}/login/options"), body.clone()).await);
                if domain == "fabrikam.nl" {
                    starts.push(post(&client, format!("{base}/sign_in/entra"), body).await);
                }
            }

            // Assert
            let why = format!("{domain}, sms required: {sms_required}");
            assert!(
                options.iter().all(|o| *o == options[0]),
                "{why}: {options:#?}"
            );
            assert!(starts.iter().all(|s| *s == starts[0]), "{why}: {starts:#?}");
            if let Some((status, problem)) = starts.first() {
                assert_eq!(*status, StatusCode::CONFLICT, "{why}: {problem}");
            }
            let expected = if domain == "contoso.com" {
                "entra_id"
            } else {
                "password"
            };
            assert_eq!(options[0].1["step"], expected, "{why}");
        }
    }
}

/// The median of `samples`.
fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::test]
async fn the_password_step_costs_about_the_same_for_known_and_unknown_addresses() {
    // Arrange: limits out of the way, one client address per attempt through a trusted proxy.
    let db = TestDb::new().await;
    let commands = db.commands();
    let tenant = register_tenant(&commands, "Akkermans Accountants").await;
    let known = commands
        .create_user(
            &admin(tenant),
            tenant,
            new_user("anne@fabrikam.nl", NewUserSignIn::Sms),
        )
        .await
        .unwrap()
        .user_id;
    set_password_via_link(&commands, known, "correct horse battery staple").await;
    db.run_projections().await;
    let mut settings = db.settings();
    settings.limits.trusted_proxies = "127.0.0.1".to_owned();
    settings.limits.password_attempts_per_address = 1_000_000;
    settings.limits.password_attempts_per_address_and_client = 1_000_000;
    let base = db.spawn_app_with(&settings).await;
    let client = reqwest::Client::new();
    let attempt = |email: &'static str, n: u32| {
        let request = client
            .post(format!("{base}/sign_in/password"))
            .header(
                "x-forwarded-for",
                format!("198.51.{}.{}", n / 250, n % 250 + 1),
            )
            .json(&json!({"email": email, "password": "wrong password!!"}));
        async move {
            let started = Instant::now();
            let status = request.send().await.unwrap().status();
            (status, started.elapsed())
        }
    };

    // Act: 200 wrong passwords each, alternating, so that drift hits both alike.
    let (mut known_times, mut unknown_times) = (Vec::new(), Vec::new());
    for n in 0..200 {
        let (status, elapsed) = attempt("anne@fabrikam.nl", n).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        known_times.push(elapsed);
        let (status, elapsed) = attempt("nobody@fabrikam.nl", n).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        unknown_times.push(elapsed);
    }

    // Assert: the figures are printed for the record; the answers were the same.
    let (known, unknown) = (median(known_times), median(unknown_times));
    println!(
        "password step, median of 200 each: known {:.2} ms, unknown {:.2} ms, ratio {:.3}",
        known.as_secs_f64() * 1000.0,
        unknown.as_secs_f64() * 1000.0,
        known.as_secs_f64() / unknown.as_secs_f64()
    );
}

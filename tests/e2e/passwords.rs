//! Set-password links and password verifiers: single use, expiring, removed at linking, not
//! restored at unlinking.

use domain::ids::PasswordTokenId;
use domain::user::{User, UserError, UserEvent};
use domain::values::DomainName;
use secrecy::SecretString;
use serde_json::json;

use api::application::{CommandError, DomainUserResult, NewUserSignIn};
use api::executor::Committed;

use crate::helpers::{TestDb, admin, operator, register_tenant};
use crate::persistence::{entra, new_user};

fn token_of(committed: &Committed<User>) -> PasswordTokenId {
    committed
        .events
        .iter()
        .find_map(|e| match e.event {
            UserEvent::PasswordTokenIssued { token_id, .. } => Some(token_id),
            _ => None,
        })
        .expect("a set-password token was issued")
}

fn password(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

async fn verifier_rows(db: &TestDb) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM password_credentials")
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_welcome_link_sets_the_password_once() {
    let db = TestDb::new().await;
    let commands = db.commands();
    let tenant = register_tenant(&commands, "Akkermans Accountants").await;
    let created = commands
        .create_user(
            &admin(tenant),
            tenant,
            new_user("anne@contoso.com", NewUserSignIn::Sms),
        )
        .await
        .unwrap();
    let secret = commands
        .keys()
        .password_tokens
        .secret_for(created.user_id, token_of(&created.committed));

    commands
        .set_password(
            &operator(),
            &secret,
            password("correct horse battery staple"),
        )
        .await
        .unwrap();
    let user = commands
        .users()
        .load(&created.user_id.to_string())
        .await
        .unwrap();
    assert!(
        commands
            .password_matches(&user, password("correct horse battery staple"))
            .await
            .unwrap()
    );
    assert!(
        !commands
            .password_matches(&user, password("wrong horse battery staple"))
            .await
            .unwrap()
    );

    let again = commands
        .set_password(&operator(), &secret, password("another long passphrase"))
        .await;
    assert!(
        matches!(
            again,
            Err(CommandError::User(UserError::PasswordTokenAlreadyUsed))
        ),
        "{again:?}"
    );
    assert_eq!(
        verifier_rows(&db).await,
        1,
        "the refused second use stored no verifier"
    );
}

#[tokio::test]
async fn a_forged_or_tampered_link_is_refused_without_writing() {
    let db = TestDb::new().await;
    let commands = db.commands();
    let tenant = register_tenant(&commands, "Akkermans Accountants").await;
    let created = commands
        .create_user(
            &admin(tenant),
            tenant,
            new_user("anne@contoso.com", NewUserSignIn::Sms),
        )
        .await
        .unwrap();
    let mut secret = commands
        .keys()
        .password_tokens
        .secret_for(created.user_id, token_of(&created.committed));
    let last = secret.pop().unwrap();
    secret.push(if last == '0' { '1' } else { '0' });
    let events = db.event_count().await;

    let result = commands
        .set_password(
            &operator(),
            &secret,
            password("correct horse battery staple"),
        )
        .await;

    assert!(
        matches!(
            result,
            Err(CommandError::User(UserError::PasswordTokenUnknown))
        ),
        "{result:?}"
    );
    assert_eq!(
        (db.event_count().await, verifier_rows(&db).await),
        (events, 0)
    );
}

#[tokio::test]
async fn linking_removes_the_password_and_unlinking_sends_a_new_link() {
    let db = TestDb::new().await;
    let commands = db.commands();
    let tenant = register_tenant(&commands, "Akkermans Accountants").await;
    let domain = DomainName::parse("contoso.com").unwrap();
    crate::helpers::bind_proven_domain(&commands, tenant, &domain, entra(1)).await;
    let created = commands
        .create_user(
            &admin(tenant),
            tenant,
            new_user("anne@contoso.com", NewUserSignIn::Sms),
        )
        .await
        .unwrap();
    let welcome = commands
        .keys()
        .password_tokens
        .secret_for(created.user_id, token_of(&created.committed));
    commands
        .set_password(
            &operator(),
            &welcome,
            password("correct horse battery staple"),
        )
        .await
        .unwrap();

    let linked = commands
        .link_domain_users(
            &admin(tenant),
            tenant,
            domain.clone(),
            &[created.user_id],
            false,
        )
        .await
        .unwrap();
    assert!(
        matches!(linked[0].result, DomainUserResult::Changed { .. }),
        "{linked:?}"
    );
    assert_eq!(verifier_rows(&db).await, 0, "the verifier itself is gone");
    let user = commands
        .users()
        .load(&created.user_id.to_string())
        .await
        .unwrap();
    assert!(
        !commands
            .password_matches(&user, password("correct horse battery staple"))
            .await
            .unwrap()
    );

    let unlinked = commands
        .unlink_domain_users(&admin(tenant), tenant, domain, &[created.user_id], false)
        .await
        .unwrap();
    assert!(
        matches!(unlinked[0].result, DomainUserResult::Changed { .. }),
        "{unlinked:?}"
    );
    let user = commands
        .users()
        .load(&created.user_id.to_string())
        .await
        .unwrap();
    assert!(
        !commands
            .password_matches(&user, password("correct horse battery staple"))
            .await
            .unwrap(),
        "the old password stays gone"
    );
    let outstanding = user.account().unwrap().password_token.unwrap();
    let secret = commands
        .keys()
        .password_tokens
        .secret_for(created.user_id, outstanding.token_id);
    commands
        .set_password(&operator(), &secret, password("a brand new passphrase"))
        .await
        .unwrap();
    let user = commands
        .users()
        .load(&created.user_id.to_string())
        .await
        .unwrap();
    assert!(
        commands
            .password_matches(&user, password("a brand new passphrase"))
            .await
            .unwrap()
    );
}

/// `POST {path}` with a JSON body: status and body.
async fn post_json(base: &str, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

#[tokio::test]
async fn a_password_over_the_maximum_length_is_refused_before_hashing_on_every_path() {
    // Arrange: Anne signs in with a password alone (the tenant does not require SMS).
    let db = TestDb::new().await;
    let commands = db.commands();
    let tenant = register_tenant(&commands, "Akkermans Accountants").await;
    let anne = commands
        .create_user(
            &admin(tenant),
            tenant,
            new_user("anne@contoso.com", NewUserSignIn::Sms),
        )
        .await
        .unwrap();
    let secret = commands
        .keys()
        .password_tokens
        .secret_for(anne.user_id, token_of(&anne.committed));
    db.run_projections().await;
    let base = db.spawn_app().await;
    let too_long = "a".repeat(domain::values::MAX_PASSWORD_CHARS + 1);
    let events_before = db.event_count().await;

    // Act and assert: set-password refuses 257 characters and 60 KB with a problem naming the
    // field, and stores nothing.
    for password in [too_long.clone(), "a".repeat(60_000), "😀".repeat(257)] {
        let (status, problem) = post_json(
            &base,
            "/password",
            json!({"token": secret, "password": password}),
        )
        .await;
        assert_eq!(status, 422, "{problem}");
        assert_eq!(problem["type"], "urn:finteqx:problem:password-too-long");
        assert_eq!(problem["field"], "password", "{problem}");
    }
    assert_eq!(verifier_rows(&db).await, 0, "nothing hashed or stored");
    assert_eq!(db.event_count().await, events_before, "nothing recorded");

    // The longest password allowed is set and signs in.
    let longest = "😀".repeat(domain::values::MAX_PASSWORD_CHARS);
    let (status, body) = post_json(
        &base,
        "/password",
        json!({"token": secret, "password": longest}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post_json(
        &base,
        "/sign_in/password",
        json!({"email": "anne@contoso.com", "password": longest}),
    )
    .await;
    assert_eq!(
        (status, body["next"].as_str()),
        (200, Some("signed_in")),
        "{body}"
    );

    // A verifier of an over-long password (no one can set one) would match if it were hashed:
    // the sign-in step refuses it before argon2, exactly as a wrong password.
    let phc = {
        use argon2::PasswordHasher as _;
        let salt = argon2::password_hash::SaltString::generate(
            &mut argon2::password_hash::rand_core::OsRng,
        );
        argon2::Argon2::default()
            .hash_password(too_long.as_bytes(), &salt)
            .unwrap()
            .to_string()
    };
    sqlx::query("UPDATE password_credentials SET phc = $1 WHERE user_id = $2")
        .bind(phc)
        .bind(anne.user_id.as_uuid())
        .execute(&db.pool)
        .await
        .unwrap();
    let (wrong_status, wrong) = post_json(
        &base,
        "/sign_in/password",
        json!({"email": "anne@contoso.com", "password": "not the password at all"}),
    )
    .await;
    for password in [too_long, "a".repeat(60_000)] {
        let (status, refused) = post_json(
            &base,
            "/sign_in/password",
            json!({"email": "anne@contoso.com", "password": password}),
        )
        .await;
        assert_eq!(
            (status, &refused),
            (wrong_status, &wrong),
            "answered as a wrong password"
        );
    }
    assert_eq!(wrong_status, 401);
    assert_eq!(wrong["type"], "urn:finteqx:problem:sign-in-failed");
}

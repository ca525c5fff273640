//! Set-password links and password verifiers: single use, expiring, removed at linking, not
//! restored at unlinking.

use domain::ids::PasswordTokenId;
use domain::user::{User, UserError, UserEvent};
use domain::values::DomainName;
use secrecy::SecretString;

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

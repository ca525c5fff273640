//! Uniqueness under concurrency: one account per e-mail address on the whole platform, one
//! FinteQX tenant per domain. Racing commands never both win.

use std::sync::Arc;

use chrono::{Duration, Utc};
use domain::domain_claim::DomainClaimError;
use domain::email_claim::{EmailClaimCommand, EmailClaimError};
use domain::ids::UserId;
use domain::values::{DomainName, EmailAddress};
use uuid::Uuid;

use api::application::{CommandError, NewUserSignIn};

use crate::helpers::{TestDb, admin, register_tenant};
use crate::persistence::{entra, new_user};

const ROUNDS: usize = 8;

#[tokio::test]
async fn one_email_racing_into_two_tenants_has_exactly_one_winner() {
    let db = TestDb::new().await;
    let commands = Arc::new(db.commands());
    let first = register_tenant(&commands, "Eerste BV").await;
    let second = register_tenant(&commands, "Tweede BV").await;

    for round in 0..ROUNDS {
        let (first_admin, second_admin) = (admin(first), admin(second));
        let (a, b) = tokio::join!(
            commands.create_user(
                &first_admin,
                first,
                new_user(&format!("user{round}@contoso.com"), NewUserSignIn::Sms)
            ),
            commands.create_user(
                &second_admin,
                second,
                new_user(&format!("User{round}@Contoso.com"), NewUserSignIn::Sms)
            ),
        );
        let winners = [a.is_ok(), b.is_ok()].iter().filter(|won| **won).count();
        assert_eq!(winners, 1, "round {round}: {a:?} / {b:?}");
        let loser = a.err().or(b.err()).unwrap();
        assert!(
            matches!(loser, CommandError::EmailClaim(EmailClaimError::EmailTaken)),
            "round {round}: {loser:?}"
        );
    }
    let created: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'UserCreated'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        created, ROUNDS as i64,
        "no account was created for a lost race"
    );
}

#[tokio::test]
async fn one_domain_racing_into_two_tenants_has_exactly_one_winner() {
    let db = TestDb::new().await;
    let commands = Arc::new(db.commands());
    let first = register_tenant(&commands, "Eerste BV").await;
    let second = register_tenant(&commands, "Tweede BV").await;

    for round in 0..ROUNDS {
        let domain = DomainName::parse(&format!("contoso{round}.com")).unwrap();
        let (first_admin, second_admin) = (admin(first), admin(second));
        // Pending claims do not exclude each other; the proofs race.
        commands
            .bind_domain(&first_admin, first, domain.clone(), entra(1))
            .await
            .unwrap();
        commands
            .bind_domain(&second_admin, second, domain.clone(), entra(2))
            .await
            .unwrap();
        let proof = |tenant| {
            let challenge = commands.domain_challenge(tenant, &domain);
            domain::domain_claim::DomainEvidence::DnsTxt {
                record_name: challenge.record_name,
                found: vec![challenge.value.clone()],
                expected: challenge.value,
            }
        };
        let (a, b) = tokio::join!(
            commands.prove_domain(&first_admin, first, domain.clone(), proof(first)),
            commands.prove_domain(&second_admin, second, domain.clone(), proof(second)),
        );
        assert_eq!(
            [a.is_ok(), b.is_ok()].iter().filter(|won| **won).count(),
            1,
            "round {round}"
        );
        let loser = a.err().or(b.err()).unwrap();
        assert!(
            matches!(
                loser,
                CommandError::DomainClaim(DomainClaimError::ClaimedByAnotherTenant)
            ),
            "{loser:?}"
        );
    }
}

#[tokio::test]
async fn an_address_is_free_again_after_the_holder_changes_it() {
    let db = TestDb::new().await;
    let commands = db.commands();
    let tenant = register_tenant(&commands, "Akkermans Accountants").await;
    let alias = commands
        .create_user(
            &admin(tenant),
            tenant,
            new_user("al@contoso.com", NewUserSignIn::Sms),
        )
        .await
        .unwrap();

    let taken = commands
        .create_user(
            &admin(tenant),
            tenant,
            new_user("AL@contoso.com", NewUserSignIn::Sms),
        )
        .await;
    assert!(matches!(
        taken,
        Err(CommandError::EmailClaim(EmailClaimError::EmailTaken))
    ));

    commands
        .change_user_email(
            &admin(tenant),
            tenant,
            alias.user_id,
            EmailAddress::parse("alice@contoso.com").unwrap(),
        )
        .await
        .unwrap();
    commands
        .create_user(
            &admin(tenant),
            tenant,
            new_user("al@contoso.com", NewUserSignIn::Sms),
        )
        .await
        .unwrap();
    let clash = commands
        .create_user(
            &admin(tenant),
            tenant,
            new_user("alice@contoso.com", NewUserSignIn::Sms),
        )
        .await;
    assert!(matches!(
        clash,
        Err(CommandError::EmailClaim(EmailClaimError::EmailTaken))
    ));
}

#[tokio::test]
async fn a_claim_abandoned_by_a_failed_creation_is_taken_over_but_a_fresh_one_is_not() {
    let db = TestDb::new().await;
    let commands = db.commands();
    let tenant = register_tenant(&commands, "Akkermans Accountants").await;
    let email = EmailAddress::parse("ghost@contoso.com").unwrap();
    let key = commands.keys().email_lookup.key_for(&email);
    let claim = |occurred_at| {
        let mut context = admin(tenant);
        context.occurred_at = occurred_at;
        context
    };
    // A creation that claimed the address and died before the account was written.
    let ghost = UserId::from_uuid(Uuid::now_v7());
    let command = EmailClaimCommand::ClaimEmail {
        email_key: key.clone(),
        tenant_id: tenant,
        user_id: ghost,
        abandoned_holder: None,
    };
    commands
        .emails()
        .execute(key.as_str(), command, &claim(Utc::now()))
        .await
        .unwrap();

    let fresh = commands
        .create_user(
            &admin(tenant),
            tenant,
            new_user("ghost@contoso.com", NewUserSignIn::Sms),
        )
        .await;
    assert!(
        matches!(
            fresh,
            Err(CommandError::EmailClaim(EmailClaimError::EmailTaken))
        ),
        "a creation may still be under way"
    );

    let other = UserId::from_uuid(Uuid::now_v7());
    let stale_key = commands
        .keys()
        .email_lookup
        .key_for(&EmailAddress::parse("stale@contoso.com").unwrap());
    let command = EmailClaimCommand::ClaimEmail {
        email_key: stale_key.clone(),
        tenant_id: tenant,
        user_id: other,
        abandoned_holder: None,
    };
    commands
        .emails()
        .execute(
            stale_key.as_str(),
            command,
            &claim(Utc::now() - Duration::minutes(10)),
        )
        .await
        .unwrap();
    let created = commands
        .create_user(
            &admin(tenant),
            tenant,
            new_user("stale@contoso.com", NewUserSignIn::Sms),
        )
        .await
        .unwrap();
    let holder = commands
        .emails()
        .load(stale_key.as_str())
        .await
        .unwrap()
        .holder()
        .cloned()
        .unwrap();
    assert_eq!(holder.user_id, created.user_id);
}

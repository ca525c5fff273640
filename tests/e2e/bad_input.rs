//! Bad input is refused with a typed error naming the broken rule, and writes nothing.

use domain::domain_claim::DomainClaimError;
use domain::ids::{TenantId, UserId};
use domain::tenant::TenantError;
use domain::user::{UserCommand, UserError};
use domain::values::{DisplayName, DomainName, EmailAddress, MobileNumber, ValueError};
use secrecy::SecretString;
use uuid::Uuid;

use api::application::{CommandError, DomainUserResult, MAX_USERS_PER_REQUEST, NewUserSignIn};

use crate::helpers::{TestDb, admin, operator, register_tenant};
use crate::persistence::{entra, new_user};

#[test]
fn malformed_values_are_refused_with_the_broken_rule() {
    let huge = "x".repeat(10_000);
    let cases: Vec<(&str, Result<(), ValueError>, ValueError)> = vec![
        (
            "double @",
            EmailAddress::parse("anne@@contoso.com").map(drop),
            ValueError::EmailMalformed,
        ),
        (
            "e-mail without @",
            EmailAddress::parse("anne.contoso.com").map(drop),
            ValueError::EmailMalformed,
        ),
        (
            "huge e-mail",
            EmailAddress::parse(&huge).map(drop),
            ValueError::EmailTooLong,
        ),
        (
            "invalid domain",
            DomainName::parse("contoso").map(drop),
            ValueError::DomainNotRegistrable,
        ),
        (
            "domain with a space",
            DomainName::parse("con toso.com").map(drop),
            ValueError::DomainMalformed,
        ),
        (
            "huge domain",
            DomainName::parse(&huge).map(drop),
            ValueError::DomainMalformed,
        ),
        (
            "fixed line",
            MobileNumber::parse("+31 20 123 4567").map(drop),
            ValueError::PhoneNotMobile,
        ),
        (
            "malformed phone",
            MobileNumber::parse("06-abc").map(drop),
            ValueError::PhoneMalformed,
        ),
        (
            "huge phone",
            MobileNumber::parse(&huge).map(drop),
            ValueError::PhoneMalformed,
        ),
        (
            "empty name",
            DisplayName::parse("").map(drop),
            ValueError::DisplayNameEmpty,
        ),
        (
            "huge name",
            DisplayName::parse(&huge).map(drop),
            ValueError::DisplayNameTooLong,
        ),
    ];
    for (why, result, expected) in cases {
        assert_eq!(result, Err(expected), "{why}");
    }
}

#[tokio::test]
async fn refused_use_cases_write_nothing() {
    let db = TestDb::new().await;
    let commands = db.commands();
    let tenant = register_tenant(&commands, "Akkermans Accountants").await;
    let domain = DomainName::parse("contoso.com").unwrap();
    let before = db.event_count().await;

    let unknown_tenant = TenantId::from_uuid(Uuid::now_v7());
    let result = commands
        .create_user(
            &admin(unknown_tenant),
            unknown_tenant,
            new_user("a@contoso.com", NewUserSignIn::Sms),
        )
        .await;
    assert!(
        matches!(
            result,
            Err(CommandError::Tenant(TenantError::NotRegistered))
        ),
        "{result:?}"
    );

    let result = commands
        .create_user(
            &admin(tenant),
            tenant,
            new_user("a@contoso.com", NewUserSignIn::EntraId),
        )
        .await;
    assert!(
        matches!(
            result,
            Err(CommandError::User(UserError::DomainNotClaimedByTenant))
        ),
        "{result:?}"
    );

    let result = commands
        .link_domain_users(
            &admin(tenant),
            tenant,
            domain.clone(),
            &[UserId::from_uuid(Uuid::now_v7())],
            false,
        )
        .await;
    assert!(
        matches!(
            result,
            Err(CommandError::DomainClaim(
                DomainClaimError::NotClaimedByTenant
            ))
        ),
        "{result:?}"
    );

    let too_many: Vec<UserId> = (0..=MAX_USERS_PER_REQUEST as u128)
        .map(|n| UserId::from_uuid(Uuid::from_u128(n + 1)))
        .collect();
    let result = commands
        .unlink_domain_users(&admin(tenant), tenant, domain, &too_many, false)
        .await;
    assert!(
        matches!(result, Err(CommandError::TooManyUsers { .. })),
        "{result:?}"
    );

    let result = commands
        .set_password(
            &operator(),
            "not-a-token",
            SecretString::from("short".to_owned()),
        )
        .await;
    assert!(
        matches!(
            result,
            Err(CommandError::InvalidInput {
                field: "password",
                error: ValueError::PasswordTooShort
            })
        ),
        "{result:?}"
    );
    let result = commands
        .set_password(
            &operator(),
            "not-a-token",
            SecretString::from("x".repeat(257)),
        )
        .await;
    assert!(
        matches!(
            result,
            Err(CommandError::InvalidInput {
                error: ValueError::PasswordTooLong,
                ..
            })
        ),
        "{result:?}"
    );

    let result = commands
        .execute_user_command(
            &admin(tenant),
            tenant,
            UserId::from_uuid(Uuid::now_v7()),
            UserCommand::DeactivateUser,
        )
        .await;
    assert!(
        matches!(result, Err(CommandError::User(UserError::UserNotFound))),
        "{result:?}"
    );

    assert_eq!(db.event_count().await, before, "nothing was written");
}

#[tokio::test]
async fn link_domain_users_reports_per_user_and_its_dry_run_writes_nothing() {
    let db = TestDb::new().await;
    let commands = db.commands();
    let tenant = register_tenant(&commands, "Akkermans Accountants").await;
    let other_tenant = register_tenant(&commands, "Andere BV").await;
    let domain = DomainName::parse("contoso.com").unwrap();
    let create = |email: &'static str, tenant_id| {
        let commands = &commands;
        async move {
            commands
                .create_user(
                    &admin(tenant_id),
                    tenant_id,
                    new_user(email, NewUserSignIn::Sms),
                )
                .await
                .unwrap()
                .user_id
        }
    };
    // Another tenant's user on the domain, given the address before `tenant` proved it owns it.
    let foreign = create("frank@contoso.com", other_tenant).await;
    crate::helpers::bind_proven_domain(&commands, tenant, &domain, entra(1)).await;
    let qualifies = create("anne@contoso.com", tenant).await;
    let other_domain = create("bob@fabrikam.nl", tenant).await;
    let subdomain = create("carl@eu.contoso.com", tenant).await;
    let deactivated = create("dirk@contoso.com", tenant).await;
    commands
        .execute_user_command(
            &admin(tenant),
            tenant,
            deactivated,
            UserCommand::DeactivateUser,
        )
        .await
        .unwrap();
    let already = create("eva@contoso.com", tenant).await;
    commands
        .link_domain_users(&admin(tenant), tenant, domain.clone(), &[already], false)
        .await
        .unwrap();
    let unknown = UserId::from_uuid(Uuid::now_v7());
    let selected = [
        qualifies,
        other_domain,
        subdomain,
        deactivated,
        already,
        foreign,
        unknown,
        qualifies,
    ];
    let before = db.event_count().await;

    let dry = commands
        .link_domain_users(&admin(tenant), tenant, domain.clone(), &selected, true)
        .await
        .unwrap();

    assert_eq!(db.event_count().await, before, "the dry run wrote nothing");
    let expected = [
        (qualifies, None),
        (other_domain, Some(UserError::EmailNotOnDomain)),
        (subdomain, Some(UserError::EmailNotOnDomain)),
        (deactivated, Some(UserError::UserDeactivated)),
        (already, Some(UserError::AlreadyLinked)),
        (foreign, Some(UserError::UserNotFound)),
        (unknown, Some(UserError::UserNotFound)),
    ];
    assert_eq!(
        dry.len(),
        expected.len(),
        "a user selected twice is reported once"
    );
    for (outcome, (user_id, refusal)) in dry.iter().zip(expected.iter()) {
        assert_eq!(outcome.user_id, *user_id);
        match (&outcome.result, refusal) {
            (DomainUserResult::Qualifies, None) => {}
            (DomainUserResult::Refused(actual), Some(expected)) => assert_eq!(actual, expected),
            (other, _) => panic!("user {user_id}: unexpected {other:?}"),
        }
    }

    let real = commands
        .link_domain_users(&admin(tenant), tenant, domain, &selected, false)
        .await
        .unwrap();
    assert!(matches!(real[0].result, DomainUserResult::Changed { .. }));
    assert!(
        real[1..]
            .iter()
            .all(|outcome| matches!(outcome.result, DomainUserResult::Refused(_)))
    );
    assert_eq!(
        db.event_count().await,
        before + 1,
        "only the qualifying user was linked"
    );
}

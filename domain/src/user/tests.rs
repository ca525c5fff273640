use cqrs_es::test::TestFramework;
use uuid::Uuid;

use super::*;
use crate::entra::{EntraClaims, EntraSignInRefusal};
use crate::ids::EntraObjectId;
use crate::test_support::{
    at, binding, domain, email, email_key, entra_tenant, other_tenant_id, tenant_id, token_id,
    user_id,
};
use crate::values::Personal;

type Given = TestFramework<User>;

fn scoped(command: UserCommand) -> TenantScoped<UserCommand> {
    TenantScoped::new(tenant_id(), command)
}

fn grant(n: u128) -> PasswordTokenGrant {
    PasswordTokenGrant {
        token_id: token_id(n),
        expires_at: at(3600),
    }
}

fn credential(n: u128) -> CredentialId {
    CredentialId::from_uuid(Uuid::from_u128(0x7000 + n))
}

fn created(address: &str, method: UserMethod) -> UserEvent {
    UserEvent::UserCreated {
        tenant_id: tenant_id(),
        user_id: user_id(),
        email: Personal::new(user_id(), email(address)),
        email_key: email_key(1),
        display_name: Personal::new(user_id(), DisplayName::parse("Anne de Vries").unwrap()),
        role: Role::User,
        locale: Locale::Nl,
        method,
    }
}

fn create(address: &str, method: NewUserMethod) -> UserCommand {
    UserCommand::CreateUser {
        user_id: user_id(),
        email: email(address),
        email_key: email_key(1),
        display_name: DisplayName::parse("Anne de Vries").unwrap(),
        role: Role::User,
        locale: Locale::Nl,
        method,
    }
}

fn welcome_token(n: u128) -> UserEvent {
    UserEvent::PasswordTokenIssued {
        tenant_id: tenant_id(),
        user_id: user_id(),
        token_id: token_id(n),
        expires_at: at(3600),
        purpose: PasswordTokenPurpose::Welcome,
    }
}

fn password_set(n: u128) -> UserEvent {
    UserEvent::PasswordSet {
        tenant_id: tenant_id(),
        user_id: user_id(),
        credential_id: credential(n),
        token_id: token_id(n),
    }
}

fn linked(password_removed: bool) -> UserEvent {
    UserEvent::UserLinkedToEntra {
        tenant_id: tenant_id(),
        user_id: user_id(),
        domain: domain("contoso.com"),
        entra_tenant_id: entra_tenant(1),
        password_removed,
        origin: LinkOrigin::DomainLink,
    }
}

fn created_linked() -> UserEvent {
    UserEvent::UserLinkedToEntra {
        tenant_id: tenant_id(),
        user_id: user_id(),
        domain: domain("contoso.com"),
        entra_tenant_id: entra_tenant(1),
        password_removed: false,
        origin: LinkOrigin::CreatedWithEntra,
    }
}

/// An SMS user of contoso.com with a password.
fn password_user() -> Vec<UserEvent> {
    vec![
        created("anne@contoso.com", UserMethod::Sms),
        welcome_token(1),
        password_set(1),
    ]
}

mod create_user {
    use super::*;

    #[test]
    fn sms_user_gets_a_welcome_set_password_token() {
        Given::with(())
            .given_no_previous_events()
            .when(scoped(create(
                "Anne@Contoso.com",
                NewUserMethod::Sms {
                    password_token: grant(1),
                },
            )))
            .then_expect_events(vec![
                created("anne@contoso.com", UserMethod::Sms),
                welcome_token(1),
            ]);
    }

    #[test]
    fn entra_user_is_linked_at_once() {
        Given::with(())
            .given_no_previous_events()
            .when(scoped(create(
                "anne@contoso.com",
                NewUserMethod::EntraId {
                    binding: binding("contoso.com", entra_tenant(1)),
                },
            )))
            .then_expect_events(vec![
                created("anne@contoso.com", UserMethod::EntraId),
                created_linked(),
            ]);
    }

    #[test]
    fn entra_user_must_be_on_the_linked_domain() {
        Given::with(())
            .given_no_previous_events()
            .when(scoped(create(
                "anne@fabrikam.nl",
                NewUserMethod::EntraId {
                    binding: binding("contoso.com", entra_tenant(1)),
                },
            )))
            .then_expect_error(UserError::EmailNotOnDomain);
    }

    #[test]
    fn entra_user_needs_a_domain_of_the_own_tenant() {
        let foreign = DomainBinding {
            tenant_id: other_tenant_id(),
            ..binding("contoso.com", entra_tenant(1))
        };
        Given::with(())
            .given_no_previous_events()
            .when(scoped(create(
                "anne@contoso.com",
                NewUserMethod::EntraId { binding: foreign },
            )))
            .then_expect_error(UserError::DomainNotClaimedByTenant);
    }

    #[test]
    fn refuses_an_existing_id() {
        Given::with(())
            .given(password_user())
            .when(scoped(create(
                "other@contoso.com",
                NewUserMethod::Sms {
                    password_token: grant(2),
                },
            )))
            .then_expect_error(UserError::UserAlreadyExists);
    }
}

mod tenant_isolation {
    use super::*;

    #[test]
    fn another_tenants_user_is_missing() {
        let commands = [
            UserCommand::DeactivateUser,
            UserCommand::LinkUserToEntra {
                binding: binding("contoso.com", entra_tenant(1)),
            },
            UserCommand::IssuePasswordToken {
                password_token: grant(2),
            },
            UserCommand::RemovePhone,
        ];
        for command in commands {
            Given::with(())
                .given(password_user())
                .when(TenantScoped::new(other_tenant_id(), command))
                .then_expect_error(UserError::UserNotFound);
        }
    }

    #[test]
    fn unknown_user_is_missing() {
        Given::with(())
            .given_no_previous_events()
            .when(scoped(UserCommand::DeactivateUser))
            .then_expect_error(UserError::UserNotFound);
    }
}

mod linking {
    use super::*;

    #[test]
    fn linking_removes_the_password() {
        Given::with(())
            .given(password_user())
            .when(scoped(UserCommand::LinkUserToEntra {
                binding: binding("contoso.com", entra_tenant(1)),
            }))
            .then_expect_events(vec![linked(true)]);
    }

    #[test]
    fn linking_a_user_without_password_records_that_none_was_removed() {
        Given::with(())
            .given(vec![
                created("anne@contoso.com", UserMethod::Sms),
                welcome_token(1),
            ])
            .when(scoped(UserCommand::LinkUserToEntra {
                binding: binding("contoso.com", entra_tenant(1)),
            }))
            .then_expect_events(vec![linked(false)]);
    }

    #[test]
    fn refusals_per_user() {
        let cases = [
            (
                password_user(),
                binding("fabrikam.nl", entra_tenant(1)),
                UserError::EmailNotOnDomain,
                "e-mail not on the domain",
            ),
            (
                password_user(),
                binding("eu.contoso.com", entra_tenant(1)),
                UserError::EmailNotOnDomain,
                "subdomain is another domain",
            ),
            (
                [password_user(), vec![linked(true)]].concat(),
                binding("contoso.com", entra_tenant(1)),
                UserError::AlreadyLinked,
                "already linked",
            ),
            (
                [
                    password_user(),
                    vec![UserEvent::UserDeactivated {
                        tenant_id: tenant_id(),
                        user_id: user_id(),
                    }],
                ]
                .concat(),
                binding("contoso.com", entra_tenant(1)),
                UserError::UserDeactivated,
                "deactivated",
            ),
        ];
        for (history, binding, expected, why) in cases {
            let mut user = User::default();
            history.into_iter().for_each(|event| user.evolve(event));
            assert_eq!(
                user.decide(scoped(UserCommand::LinkUserToEntra { binding })),
                Err(expected),
                "{why}"
            );
        }
    }

    #[test]
    fn unlinking_issues_a_set_password_token() {
        Given::with(())
            .given([password_user(), vec![linked(true)]].concat())
            .when(scoped(UserCommand::UnlinkUserFromEntra {
                domain: domain("contoso.com"),
                password_token: grant(2),
            }))
            .then_expect_events(vec![
                UserEvent::UserUnlinkedFromEntra {
                    tenant_id: tenant_id(),
                    user_id: user_id(),
                    domain: domain("contoso.com"),
                    entra_tenant_id: entra_tenant(1),
                },
                UserEvent::PasswordTokenIssued {
                    tenant_id: tenant_id(),
                    user_id: user_id(),
                    token_id: token_id(2),
                    expires_at: at(3600),
                    purpose: PasswordTokenPurpose::AfterUnlink,
                },
            ]);
    }

    #[test]
    fn unlinking_refuses_unlinked_and_foreign_domain_users() {
        Given::with(())
            .given(password_user())
            .when(scoped(UserCommand::UnlinkUserFromEntra {
                domain: domain("contoso.com"),
                password_token: grant(2),
            }))
            .then_expect_error(UserError::NotLinked);
        Given::with(())
            .given([password_user(), vec![linked(true)]].concat())
            .when(scoped(UserCommand::UnlinkUserFromEntra {
                domain: domain("fabrikam.nl"),
                password_token: grant(2),
            }))
            .then_expect_error(UserError::EmailNotOnDomain);
    }

    #[test]
    fn the_old_password_does_not_come_back_after_unlinking() {
        let mut user = User::default();
        [password_user(), vec![linked(true)]]
            .concat()
            .into_iter()
            .for_each(|event| user.evolve(event));
        let events = user
            .decide(scoped(UserCommand::UnlinkUserFromEntra {
                domain: domain("contoso.com"),
                password_token: grant(2),
            }))
            .unwrap();
        events.into_iter().for_each(|event| user.evolve(event));
        let account = user.account().unwrap();
        assert_eq!(account.credential, None);
        assert!(!account.sign_in_facts(false).has_password);
    }
}

mod set_password {
    use super::*;

    fn set(n: u128, now: i64) -> TenantScoped<UserCommand> {
        scoped(UserCommand::SetPassword {
            token_id: token_id(n),
            credential_id: credential(n),
            now: at(now),
        })
    }

    #[test]
    fn sets_a_password_with_the_outstanding_token() {
        Given::with(())
            .given(vec![
                created("anne@contoso.com", UserMethod::Sms),
                welcome_token(1),
            ])
            .when(set(1, 60))
            .then_expect_events(vec![password_set(1)]);
    }

    #[test]
    fn a_token_is_single_use() {
        Given::with(())
            .given(password_user())
            .when(set(1, 60))
            .then_expect_error(UserError::PasswordTokenAlreadyUsed);
    }

    #[test]
    fn an_expired_token_is_refused() {
        Given::with(())
            .given(vec![
                created("anne@contoso.com", UserMethod::Sms),
                welcome_token(1),
            ])
            .when(set(1, 3600))
            .then_expect_error(UserError::PasswordTokenExpired);
    }

    #[test]
    fn a_superseded_or_unknown_token_is_refused() {
        Given::with(())
            .given(vec![
                created("anne@contoso.com", UserMethod::Sms),
                welcome_token(1),
                welcome_token(2),
            ])
            .when(set(1, 60))
            .then_expect_error(UserError::PasswordTokenUnknown);
    }

    #[test]
    fn linked_users_have_no_password() {
        Given::with(())
            .given([password_user(), vec![linked(true)]].concat())
            .when(scoped(UserCommand::IssuePasswordToken {
                password_token: grant(3),
            }))
            .then_expect_error(UserError::LinkedToEntra);
        Given::with(())
            .given(vec![
                created("anne@contoso.com", UserMethod::Sms),
                welcome_token(1),
                linked(false),
            ])
            .when(set(1, 60))
            .then_expect_error(UserError::LinkedToEntra);
    }
}

mod lifecycle {
    use super::*;

    fn deactivated() -> UserEvent {
        UserEvent::UserDeactivated {
            tenant_id: tenant_id(),
            user_id: user_id(),
        }
    }

    #[test]
    fn deactivates_and_reactivates_once() {
        Given::with(())
            .given(password_user())
            .when(scoped(UserCommand::DeactivateUser))
            .then_expect_events(vec![deactivated()]);
        Given::with(())
            .given([password_user(), vec![deactivated()]].concat())
            .when(scoped(UserCommand::DeactivateUser))
            .then_expect_error(UserError::AlreadyDeactivated);
        Given::with(())
            .given([password_user(), vec![deactivated()]].concat())
            .when(scoped(UserCommand::ReactivateUser))
            .then_expect_events(vec![UserEvent::UserReactivated {
                tenant_id: tenant_id(),
                user_id: user_id(),
            }]);
        Given::with(())
            .given(password_user())
            .when(scoped(UserCommand::ReactivateUser))
            .then_expect_error(UserError::NotDeactivated);
    }

    #[test]
    fn changes_email_to_fix_an_alias() {
        Given::with(())
            .given(vec![
                created("al@contoso.com", UserMethod::EntraId),
                linked(false),
            ])
            .when(scoped(UserCommand::ChangeUserEmail {
                email: email("alice@contoso.com"),
                email_key: email_key(2),
            }))
            .then_expect_events(vec![UserEvent::UserEmailChanged {
                tenant_id: tenant_id(),
                user_id: user_id(),
                email: Personal::new(user_id(), email("alice@contoso.com")),
                email_key: email_key(2),
                previous_email_key: email_key(1),
            }]);
    }

    #[test]
    fn email_changes_keep_a_linked_user_on_the_domain() {
        Given::with(())
            .given(vec![
                created("al@contoso.com", UserMethod::EntraId),
                linked(false),
            ])
            .when(scoped(UserCommand::ChangeUserEmail {
                email: email("alice@fabrikam.nl"),
                email_key: email_key(2),
            }))
            .then_expect_error(UserError::EmailNotOnDomain);
        Given::with(())
            .given(password_user())
            .when(scoped(UserCommand::ChangeUserEmail {
                email: email("ANNE@contoso.com"),
                email_key: email_key(1),
            }))
            .then_expect_error(UserError::EmailUnchanged);
    }

    #[test]
    fn enrolls_one_phone_and_removes_it() {
        let phone = MobileNumber::parse("06 12345678").unwrap();
        let enrolled = UserEvent::PhoneEnrolled {
            tenant_id: tenant_id(),
            user_id: user_id(),
            phone: Personal::new(user_id(), phone.clone()),
        };
        Given::with(())
            .given(password_user())
            .when(scoped(UserCommand::EnrollPhone {
                phone: phone.clone(),
            }))
            .then_expect_events(vec![enrolled.clone()]);
        Given::with(())
            .given([password_user(), vec![enrolled.clone()]].concat())
            .when(scoped(UserCommand::EnrollPhone {
                phone: phone.clone(),
            }))
            .then_expect_error(UserError::PhoneAlreadyEnrolled);
        Given::with(())
            .given([password_user(), vec![enrolled]].concat())
            .when(scoped(UserCommand::RemovePhone))
            .then_expect_events(vec![UserEvent::PhoneRemoved {
                tenant_id: tenant_id(),
                user_id: user_id(),
            }]);
        Given::with(())
            .given(password_user())
            .when(scoped(UserCommand::RemovePhone))
            .then_expect_error(UserError::NoPhoneEnrolled);
        Given::with(())
            .given(vec![
                created("anne@contoso.com", UserMethod::EntraId),
                linked(false),
            ])
            .when(scoped(UserCommand::EnrollPhone { phone }))
            .then_expect_error(UserError::LinkedToEntra);
    }
}

mod entra_sign_in {
    use super::*;
    use crate::entra::EntraIdentity;

    fn identity(tenant: u128, object: u128) -> EntraIdentity {
        EntraIdentity {
            entra_tenant_id: entra_tenant(tenant),
            object_id: EntraObjectId::from_uuid(Uuid::from_u128(object)),
        }
    }

    fn claims(identity: EntraIdentity, primary: &str) -> EntraClaims {
        EntraClaims {
            identity,
            email: Some(email(primary)),
            email_domain_verified: true,
            preferred_username: Some(email(primary)),
            is_guest: false,
        }
    }

    fn sign_in(claims: EntraClaims) -> TenantScoped<UserCommand> {
        scoped(UserCommand::CompleteEntraSignIn {
            binding: binding("contoso.com", entra_tenant(1)),
            claims,
        })
    }

    fn bound() -> UserEvent {
        UserEvent::EntraIdentityBound {
            tenant_id: tenant_id(),
            user_id: user_id(),
            entra_tenant_id: entra_tenant(1),
            object_id: Personal::new(user_id(), EntraObjectId::from_uuid(Uuid::from_u128(9))),
        }
    }

    #[test]
    fn first_sign_in_binds_tid_and_oid() {
        Given::with(())
            .given(vec![
                created("anne@contoso.com", UserMethod::EntraId),
                linked(false),
            ])
            .when(sign_in(claims(identity(1, 9), "anne@contoso.com")))
            .then_expect_events(vec![bound()]);
    }

    #[test]
    fn later_sign_ins_record_nothing_on_the_account() {
        Given::with(())
            .given(vec![
                created("anne@contoso.com", UserMethod::EntraId),
                linked(false),
                bound(),
            ])
            .when(sign_in(claims(identity(1, 9), "anne@contoso.com")))
            .then_expect_events(vec![]);
    }

    #[test]
    fn another_entra_user_with_the_same_email_cannot_take_the_account() {
        Given::with(())
            .given(vec![
                created("anne@contoso.com", UserMethod::EntraId),
                linked(false),
                bound(),
            ])
            .when(sign_in(claims(identity(1, 10), "anne@contoso.com")))
            .then_expect_error(UserError::EntraSignInRefused(
                EntraSignInRefusal::IdentityMismatch,
            ));
    }

    #[test]
    fn a_token_of_another_entra_tenant_is_refused() {
        Given::with(())
            .given(vec![
                created("anne@contoso.com", UserMethod::EntraId),
                linked(false),
            ])
            .when(sign_in(claims(identity(2, 9), "anne@contoso.com")))
            .then_expect_error(UserError::EntraSignInRefused(
                EntraSignInRefusal::WrongEntraTenant,
            ));
    }

    #[test]
    fn an_alias_account_is_told_the_primary_address() {
        let mut alias = claims(identity(1, 9), "alice@contoso.com");
        alias.preferred_username = Some(email("al@contoso.com"));
        Given::with(())
            .given(vec![
                created("al@contoso.com", UserMethod::EntraId),
                linked(false),
            ])
            .when(sign_in(alias))
            .then_expect_error(UserError::EntraSignInRefused(
                EntraSignInRefusal::NotPrimaryAddress {
                    primary_email: Personal::new(user_id(), email("alice@contoso.com")),
                },
            ));
    }

    #[test]
    fn relinking_after_unlink_binds_again() {
        let mut user = User::default();
        for event in [
            created("anne@contoso.com", UserMethod::EntraId),
            linked(false),
            bound(),
        ] {
            user.evolve(event);
        }
        let unlink = user
            .decide(scoped(UserCommand::UnlinkUserFromEntra {
                domain: domain("contoso.com"),
                password_token: grant(2),
            }))
            .unwrap();
        unlink.into_iter().for_each(|event| user.evolve(event));
        user.evolve(linked(false));
        assert_eq!(
            user.decide(sign_in(claims(identity(1, 9), "anne@contoso.com"))),
            Ok(vec![bound()])
        );
    }

    #[test]
    fn password_users_cannot_sign_in_with_entra() {
        Given::with(())
            .given(password_user())
            .when(sign_in(claims(identity(1, 9), "anne@contoso.com")))
            .then_expect_error(UserError::EntraSignInRefused(EntraSignInRefusal::NotLinked));
    }
}

mod forget_user {
    use super::*;
    use crate::user::ErasureReason;

    fn forgotten() -> UserEvent {
        UserEvent::UserForgotten {
            tenant_id: tenant_id(),
            user_id: user_id(),
            reason: ErasureReason::DataSubjectRequest,
        }
    }

    #[test]
    fn forgets_a_person_once_and_keeps_the_id_taken() {
        Given::with(())
            .given(password_user())
            .when(scoped(UserCommand::ForgetUser {
                reason: ErasureReason::DataSubjectRequest,
            }))
            .then_expect_events(vec![forgotten()]);
        Given::with(())
            .given([password_user(), vec![forgotten()]].concat())
            .when(scoped(UserCommand::ForgetUser {
                reason: ErasureReason::DataSubjectRequest,
            }))
            .then_expect_error(UserError::UserNotFound);
        Given::with(())
            .given([password_user(), vec![forgotten()]].concat())
            .when(scoped(create(
                "anne@contoso.com",
                NewUserMethod::Sms {
                    password_token: grant(9),
                },
            )))
            .then_expect_error(UserError::UserAlreadyExists);
    }

    #[test]
    fn a_history_with_erased_fields_replays_into_a_forgotten_account() {
        let erase = |event: UserEvent| match event {
            UserEvent::UserCreated {
                tenant_id,
                user_id,
                email,
                email_key,
                display_name,
                role,
                locale,
                method,
            } => UserEvent::UserCreated {
                tenant_id,
                user_id,
                email: email.erased(),
                email_key,
                display_name: display_name.erased(),
                role,
                locale,
                method,
            },
            other => other,
        };
        let mut user = User::default();
        for event in [password_user(), vec![forgotten()]].concat() {
            user.evolve(erase(event));
        }
        assert_eq!(user.account(), None);
        assert_eq!(
            user.decide(scoped(UserCommand::DeactivateUser)),
            Err(UserError::UserNotFound)
        );
    }

    #[test]
    fn an_account_whose_fields_cannot_be_read_refuses_decisions() {
        let mut user = User::default();
        let created = match created("anne@contoso.com", UserMethod::Sms) {
            UserEvent::UserCreated {
                tenant_id,
                user_id,
                email,
                email_key,
                display_name,
                role,
                locale,
                method,
            } => UserEvent::UserCreated {
                tenant_id,
                user_id,
                email: email.erased(),
                email_key,
                display_name,
                role,
                locale,
                method,
            },
            other => other,
        };
        user.evolve(created);
        assert_eq!(
            user.decide(scoped(UserCommand::LinkUserToEntra {
                binding: binding("contoso.com", entra_tenant(1))
            })),
            Err(UserError::UserNotFound)
        );
    }
}

mod notifications {
    use super::*;

    fn requeue(by_support: bool) -> UserCommand {
        UserCommand::RequeueNotification {
            message_id: "user:stream:2".to_owned(),
            by_support,
        }
    }

    #[test]
    fn a_requeued_message_is_recorded_with_who_asked_and_changes_no_account_state() {
        Given::with(())
            .given(password_user())
            .when(scoped(requeue(true)))
            .then_expect_events(vec![UserEvent::NotificationRequeued {
                tenant_id: tenant_id(),
                user_id: user_id(),
                message_id: "user:stream:2".to_owned(),
                by_support: true,
            }]);
        let mut user = User::default();
        for event in password_user() {
            user.evolve(event);
        }
        let before = user.clone();
        user.evolve(UserEvent::NotificationRequeued {
            tenant_id: tenant_id(),
            user_id: user_id(),
            message_id: "user:stream:2".to_owned(),
            by_support: false,
        });
        assert_eq!(user, before);
    }

    #[test]
    fn a_message_of_a_missing_or_another_tenants_user_is_not_requeued() {
        Given::with(())
            .given_no_previous_events()
            .when(scoped(requeue(true)))
            .then_expect_error(UserError::UserNotFound);
        Given::with(())
            .given(password_user())
            .when(TenantScoped::new(other_tenant_id(), requeue(false)))
            .then_expect_error(UserError::UserNotFound);
    }
}

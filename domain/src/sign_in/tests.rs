use cqrs_es::test::TestFramework;

use super::*;
use crate::entra::EntraSignInRefusal;
use crate::sign_in_rule::SignInFacts;
use crate::test_support::{
    at, entra_tenant, error_code, other_tenant_id, sign_in_id, tenant_id, user_id,
};
use crate::values::Personal;

type Given = TestFramework<SignIn>;

fn scoped(command: SignInCommand) -> TenantScoped<SignInCommand> {
    TenantScoped::new(tenant_id(), command)
}

fn hash(n: u8) -> CodeHash {
    CodeHash::from_hex(&format!("{n:02x}").repeat(32)).unwrap()
}

fn facts(phone_enrolled: bool, tenant_requires_sms: bool) -> SignInFacts {
    SignInFacts {
        active: true,
        tenant_requires_sms,
        entra_link: None,
        phone_enrolled,
        has_password: true,
    }
}

fn start(
    facts: SignInFacts,
    password_matches: bool,
    recent_failures: u32,
) -> TenantScoped<SignInCommand> {
    scoped(SignInCommand::StartPasswordSignIn {
        sign_in_id: sign_in_id(),
        user_id: user_id(),
        facts,
        password_matches,
        recent_failures,
        now: at(0),
    })
}

fn started(requirement: SignInRequirement) -> SignInEvent {
    SignInEvent::SignInStarted {
        sign_in_id: sign_in_id(),
        tenant_id: tenant_id(),
        user_id: user_id(),
        method: SignInMethod::Password,
        requirement: Some(requirement),
        started_at: at(0),
    }
}

fn accepted() -> SignInEvent {
    SignInEvent::PasswordAccepted {
        sign_in_id: sign_in_id(),
        tenant_id: tenant_id(),
        user_id: user_id(),
    }
}

fn failed(reason: SignInFailure) -> SignInEvent {
    SignInEvent::SignInFailed {
        sign_in_id: sign_in_id(),
        tenant_id: tenant_id(),
        user_id: user_id(),
        reason,
    }
}

fn succeeded(method: SignInMethod) -> SignInEvent {
    SignInEvent::SignInSucceeded {
        sign_in_id: sign_in_id(),
        tenant_id: tenant_id(),
        user_id: user_id(),
        method,
    }
}

fn locked(reason: LockReason) -> SignInEvent {
    SignInEvent::SignInLocked {
        sign_in_id: sign_in_id(),
        tenant_id: tenant_id(),
        user_id: user_id(),
        reason,
    }
}

fn issued(n: u8, at_seconds: i64) -> SignInEvent {
    SignInEvent::SmsCodeIssued {
        sign_in_id: sign_in_id(),
        tenant_id: tenant_id(),
        user_id: user_id(),
        code_hash: hash(n),
        issued_at: at(at_seconds),
        expires_at: at(at_seconds) + CODE_LIFETIME,
        purpose: SmsCodePurpose::SignIn,
        enrolling_phone: None,
    }
}

fn rejected(attempts_left: u32) -> SignInEvent {
    SignInEvent::SmsCodeRejected {
        sign_in_id: sign_in_id(),
        tenant_id: tenant_id(),
        user_id: user_id(),
        attempts_left,
    }
}

fn request(n: u8, now: i64) -> TenantScoped<SignInCommand> {
    scoped(SignInCommand::RequestSmsCode {
        code_hash: hash(n),
        enrolling_phone: None,
        quota: SmsQuota::Allowed,
        now: at(now),
    })
}

fn verify(n: u8, now: i64) -> TenantScoped<SignInCommand> {
    scoped(SignInCommand::VerifySmsCode {
        code_hash: hash(n),
        now: at(now),
    })
}

/// Password accepted, SMS required.
fn awaiting_code() -> Vec<SignInEvent> {
    vec![started(SignInRequirement::PasswordAndSms), accepted()]
}

mod password {
    use super::*;

    #[test]
    fn password_alone_signs_in_when_no_sms_is_required() {
        Given::with(())
            .given_no_previous_events()
            .when(start(facts(false, false), true, 0))
            .then_expect_events(vec![
                started(SignInRequirement::Password),
                accepted(),
                succeeded(SignInMethod::Password),
            ]);
    }

    #[test]
    fn password_then_code_when_a_phone_is_enrolled() {
        Given::with(())
            .given_no_previous_events()
            .when(start(facts(true, true), true, 0))
            .then_expect_events(awaiting_code());
    }

    #[test]
    fn a_wrong_password_is_recorded_as_a_failure() {
        Given::with(())
            .given_no_previous_events()
            .when(start(facts(true, true), false, 0))
            .then_expect_events(vec![
                started(SignInRequirement::PasswordAndSms),
                failed(SignInFailure::WrongPassword),
            ]);
    }

    #[test]
    fn too_many_recent_failures_lock_before_the_password_is_looked_at() {
        Given::with(())
            .given_no_previous_events()
            .when(start(facts(true, true), true, RECENT_FAILURES_BEFORE_LOCK))
            .then_expect_events(vec![
                started(SignInRequirement::PasswordAndSms),
                locked(LockReason::TooManyRecentFailures),
            ]);
    }

    #[test]
    fn linked_deactivated_and_passwordless_users_are_refused() {
        let linked = SignInFacts {
            entra_link: Some(entra_tenant(1)),
            ..facts(true, true)
        };
        let deactivated = SignInFacts {
            active: false,
            ..facts(true, true)
        };
        let no_password = SignInFacts {
            has_password: false,
            ..facts(false, true)
        };
        let cases = [
            (
                linked,
                SignInRequirement::EntraId {
                    entra_tenant_id: entra_tenant(1),
                },
                SignInFailure::MustUseEntraId,
            ),
            (
                deactivated,
                SignInRequirement::Blocked,
                SignInFailure::AccountDeactivated,
            ),
            (
                no_password,
                SignInRequirement::SetPasswordFirst,
                SignInFailure::PasswordNotSet,
            ),
        ];
        for (facts, requirement, reason) in cases {
            Given::with(())
                .given_no_previous_events()
                .when(start(facts, true, 0))
                .then_expect_events(vec![started(requirement), failed(reason)]);
        }
    }
}

mod sms_code {
    use super::*;

    #[test]
    fn issues_a_code_valid_for_five_minutes() {
        Given::with(())
            .given(awaiting_code())
            .when(request(1, 10))
            .then_expect_events(vec![issued(1, 10)]);
    }

    #[test]
    fn the_right_code_signs_in() {
        Given::with(())
            .given([awaiting_code(), vec![issued(1, 10)]].concat())
            .when(verify(1, 20))
            .then_expect_events(vec![
                SignInEvent::SmsCodeVerified {
                    sign_in_id: sign_in_id(),
                    tenant_id: tenant_id(),
                    user_id: user_id(),
                },
                succeeded(SignInMethod::PasswordAndSms),
            ]);
    }

    #[test]
    fn a_wrong_code_is_recorded_with_attempts_left() {
        Given::with(())
            .given([awaiting_code(), vec![issued(1, 10)]].concat())
            .when(verify(2, 20))
            .then_expect_events(vec![rejected(ATTEMPTS_PER_CODE - 1)]);
    }

    #[test]
    fn a_code_is_dead_after_five_wrong_guesses() {
        Given::with(())
            .given(
                [
                    awaiting_code(),
                    vec![
                        issued(1, 10),
                        rejected(4),
                        rejected(3),
                        rejected(2),
                        rejected(1),
                        rejected(0),
                    ],
                ]
                .concat(),
            )
            .when(verify(1, 20))
            .then_expect_error(SignInError::CodeAttemptsExhausted);
    }

    #[test]
    fn an_expired_code_is_refused() {
        Given::with(())
            .given([awaiting_code(), vec![issued(1, 10)]].concat())
            .when(verify(1, 10 + CODE_LIFETIME.num_seconds()))
            .then_expect_error(SignInError::CodeExpired);
    }

    #[test]
    fn a_used_code_cannot_be_used_again() {
        Given::with(())
            .given(
                [
                    awaiting_code(),
                    vec![
                        issued(1, 10),
                        SignInEvent::SmsCodeVerified {
                            sign_in_id: sign_in_id(),
                            tenant_id: tenant_id(),
                            user_id: user_id(),
                        },
                        succeeded(SignInMethod::PasswordAndSms),
                    ],
                ]
                .concat(),
            )
            .when(verify(1, 20))
            .then_expect_error(SignInError::Finished);
    }

    #[test]
    fn resending_is_throttled() {
        Given::with(())
            .given([awaiting_code(), vec![issued(1, 10)]].concat())
            .when(request(2, 25))
            .then_expect_error(SignInError::ResendTooSoon {
                retry_after_seconds: 15,
            });
        Given::with(())
            .given([awaiting_code(), vec![issued(1, 10)]].concat())
            .when(request(2, 40))
            .then_expect_events(vec![issued(2, 40)]);
    }

    #[test]
    fn a_new_code_replaces_the_old_one() {
        Given::with(())
            .given([awaiting_code(), vec![issued(1, 10), issued(2, 40)]].concat())
            .when(verify(1, 50))
            .then_expect_events(vec![rejected(ATTEMPTS_PER_CODE - 1)]);
    }

    #[test]
    fn codes_per_attempt_are_limited() {
        Given::with(())
            .given(
                [
                    awaiting_code(),
                    vec![issued(1, 10), issued(2, 40), issued(3, 70)],
                ]
                .concat(),
            )
            .when(request(4, 100))
            .then_expect_error(SignInError::TooManyCodes);
    }

    #[test]
    fn the_last_wrong_guess_of_the_last_code_locks_the_attempt() {
        Given::with(())
            .given(
                [
                    awaiting_code(),
                    vec![
                        issued(1, 10),
                        issued(2, 40),
                        issued(3, 70),
                        rejected(4),
                        rejected(3),
                        rejected(2),
                        rejected(1),
                    ],
                ]
                .concat(),
            )
            .when(verify(9, 80))
            .then_expect_events(vec![rejected(0), locked(LockReason::TooManyWrongCodes)]);
    }

    #[test]
    fn send_limits_refuse_the_code() {
        Given::with(())
            .given(awaiting_code())
            .when(scoped(SignInCommand::RequestSmsCode {
                code_hash: hash(1),
                enrolling_phone: None,
                quota: SmsQuota::Exceeded(SendLimit::PerCountryPrefix),
                now: at(10),
            }))
            .then_expect_error(SignInError::SendLimitReached {
                limit: SendLimit::PerCountryPrefix,
            });
    }

    #[test]
    fn no_code_before_the_password_or_after_the_lifetime() {
        Given::with(())
            .given(vec![started(SignInRequirement::PasswordAndSms)])
            .when(request(1, 10))
            .then_expect_error(SignInError::PasswordNotAccepted);
        Given::with(())
            .given(awaiting_code())
            .when(request(1, SIGN_IN_LIFETIME.num_seconds()))
            .then_expect_error(SignInError::AttemptExpired);
        Given::with(())
            .given_no_previous_events()
            .when(request(1, 10))
            .then_expect_error(SignInError::NotStarted);
    }

    #[test]
    fn another_tenants_attempt_is_missing() {
        Given::with(())
            .given(awaiting_code())
            .when(TenantScoped::new(
                other_tenant_id(),
                SignInCommand::VerifySmsCode {
                    code_hash: hash(1),
                    now: at(10),
                },
            ))
            .then_expect_error(SignInError::NotStarted);
    }

    #[test]
    fn password_only_attempts_need_no_code() {
        Given::with(())
            .given(vec![started(SignInRequirement::Password), accepted()])
            .when(request(1, 10))
            .then_expect_error(SignInError::SmsNotRequired);
    }
}

mod phone_enrollment {
    use super::*;

    fn enrolling() -> Vec<SignInEvent> {
        vec![
            started(SignInRequirement::PasswordThenEnrollPhone),
            accepted(),
        ]
    }

    #[test]
    fn enrollment_needs_a_number_and_sends_the_code_there() {
        let phone = MobileNumber::parse("06 12345678").unwrap();
        Given::with(())
            .given(enrolling())
            .when(request(1, 10))
            .then_expect_error(SignInError::PhoneNumberRequired);
        Given::with(())
            .given(enrolling())
            .when(scoped(SignInCommand::RequestSmsCode {
                code_hash: hash(1),
                enrolling_phone: Some(phone.clone()),
                quota: SmsQuota::Allowed,
                now: at(10),
            }))
            .then_expect_events(vec![SignInEvent::SmsCodeIssued {
                sign_in_id: sign_in_id(),
                tenant_id: tenant_id(),
                user_id: user_id(),
                code_hash: hash(1),
                issued_at: at(10),
                expires_at: at(10) + CODE_LIFETIME,
                purpose: SmsCodePurpose::PhoneEnrollment,
                enrolling_phone: Some(Personal::new(user_id(), phone)),
            }]);
    }

    #[test]
    fn an_enrolled_user_cannot_switch_numbers_mid_sign_in() {
        let phone = MobileNumber::parse("06 12345678").unwrap();
        Given::with(())
            .given(awaiting_code())
            .when(scoped(SignInCommand::RequestSmsCode {
                code_hash: hash(1),
                enrolling_phone: Some(phone),
                quota: SmsQuota::Allowed,
                now: at(10),
            }))
            .then_expect_error(SignInError::SmsNotRequired);
    }
}

mod entra {
    use super::*;

    fn record(outcome: EntraSignInOutcome) -> TenantScoped<SignInCommand> {
        scoped(SignInCommand::RecordEntraSignIn {
            sign_in_id: sign_in_id(),
            user_id: user_id(),
            outcome,
            now: at(0),
        })
    }

    fn entra_started() -> SignInEvent {
        SignInEvent::SignInStarted {
            sign_in_id: sign_in_id(),
            tenant_id: tenant_id(),
            user_id: user_id(),
            method: SignInMethod::EntraId,
            requirement: None,
            started_at: at(0),
        }
    }

    #[test]
    fn records_each_outcome() {
        let cases = [
            (
                EntraSignInOutcome::Succeeded,
                succeeded(SignInMethod::EntraId),
            ),
            (
                EntraSignInOutcome::Refused(EntraSignInRefusal::WrongEntraTenant),
                failed(SignInFailure::EntraRefused {
                    refusal: EntraSignInRefusal::WrongEntraTenant,
                }),
            ),
            (
                EntraSignInOutcome::ConsentRequired {
                    entra_tenant_id: Some(entra_tenant(1)),
                    error_code: error_code("AADSTS65001"),
                },
                failed(SignInFailure::EntraConsentRequired {
                    entra_tenant_id: Some(entra_tenant(1)),
                    error_code: error_code("AADSTS65001"),
                }),
            ),
            (
                EntraSignInOutcome::ProviderError {
                    error_code: error_code("server_error"),
                },
                failed(SignInFailure::EntraProviderError {
                    error_code: error_code("server_error"),
                }),
            ),
        ];
        for (outcome, expected) in cases {
            Given::with(())
                .given_no_previous_events()
                .when(record(outcome))
                .then_expect_events(vec![entra_started(), expected]);
        }
    }

    #[test]
    fn an_attempt_is_recorded_once() {
        Given::with(())
            .given(vec![entra_started(), succeeded(SignInMethod::EntraId)])
            .when(record(EntraSignInOutcome::Succeeded))
            .then_expect_error(SignInError::AlreadyStarted);
    }
}

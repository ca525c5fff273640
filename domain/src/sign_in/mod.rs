//! One sign-in attempt: password, SMS code, or the result of an Entra sign-in, and its outcome.
//!
//! Each attempt is its own short stream, so a user with years of sign-ins signs in as fast as a
//! new one, and sign-ins of different users never touch the same stream (ADR-0004). Outcomes,
//! including wrong codes and lock-outs, are events: auditors and support read them.

mod command;
mod error;
mod event;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

pub use command::{EntraSignInOutcome, SendLimit, SignInCommand, SmsQuota};
pub use error::SignInError;
pub use event::{LockReason, SignInEvent, SignInFailure, SignInMethod, SmsCodePurpose};

use crate::TenantScoped;
use crate::aggregate::impl_aggregate;
use crate::ids::{SignInId, TenantId, UserId};
use crate::sign_in_rule::{SignInRequirement, required_sign_in};
use crate::values::{CodeHash, MobileNumber, Personal};

/// How long a code may be used.
pub const CODE_LIFETIME: Duration = Duration::minutes(5);
/// Wrong guesses allowed per code.
pub const ATTEMPTS_PER_CODE: u32 = 5;
/// Minimum time between two codes of one attempt.
pub const RESEND_INTERVAL: Duration = Duration::seconds(30);
/// Codes per attempt; after that the user starts over (and meets the per-user limits).
pub const CODES_PER_SIGN_IN: u32 = 3;
/// How long an attempt may take from password to code.
pub const SIGN_IN_LIFETIME: Duration = Duration::minutes(15);
/// Recently failed attempts of a user after which new attempts are locked.
pub const RECENT_FAILURES_BEFORE_LOCK: u32 = 5;

/// The attempt's state as its events left it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SignIn {
    attempt: Option<Attempt>,
}

/// A started attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// The attempt.
    pub sign_in_id: SignInId,
    /// The user's tenant.
    pub tenant_id: TenantId,
    /// The user.
    pub user_id: UserId,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// What the sign-in rule required at the start.
    pub requirement: Option<SignInRequirement>,
    /// The password was right.
    pub password_accepted: bool,
    /// Codes sent so far.
    pub codes_issued: u32,
    /// The latest code.
    pub code: Option<IssuedCode>,
    /// Succeeded, failed or locked: nothing more happens.
    pub finished: bool,
}

/// The latest code of an attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IssuedCode {
    /// Its keyed hash.
    pub code_hash: CodeHash,
    /// When it was sent.
    pub issued_at: DateTime<Utc>,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
    /// Wrong guesses left.
    pub attempts_left: u32,
    /// The number being enrolled with this code, if any.
    pub enrolling_phone: Option<Personal<MobileNumber>>,
}

impl_aggregate!(
    SignIn,
    "sign_in",
    TenantScoped<SignInCommand>,
    SignInEvent,
    SignInError
);

impl SignIn {
    /// The attempt, if started.
    pub const fn attempt(&self) -> Option<&Attempt> {
        self.attempt.as_ref()
    }

    /// Decides a command against the current state.
    ///
    /// # Errors
    /// The broken rule as a [`SignInError`]; an attempt of another tenant is
    /// [`SignInError::NotStarted`], exactly like a missing one.
    pub fn decide(
        &self,
        scoped: TenantScoped<SignInCommand>,
    ) -> Result<Vec<SignInEvent>, SignInError> {
        let TenantScoped { tenant_id, command } = scoped;
        match command {
            SignInCommand::StartPasswordSignIn {
                sign_in_id,
                user_id,
                facts,
                password_matches,
                recent_failures,
                now,
            } => {
                if self.attempt.is_some() {
                    return Err(SignInError::AlreadyStarted);
                }
                let ids = Ids {
                    sign_in_id,
                    tenant_id,
                    user_id,
                };
                Ok(start_password(
                    ids,
                    required_sign_in(&facts),
                    password_matches,
                    recent_failures,
                    now,
                ))
            }
            SignInCommand::RecordEntraSignIn {
                sign_in_id,
                user_id,
                outcome,
                now,
            } => {
                if self.attempt.is_some() {
                    return Err(SignInError::AlreadyStarted);
                }
                let ids = Ids {
                    sign_in_id,
                    tenant_id,
                    user_id,
                };
                let started = ids.started(SignInMethod::EntraId, None, now);
                let outcome = match outcome {
                    EntraSignInOutcome::Succeeded => ids.succeeded(SignInMethod::EntraId),
                    EntraSignInOutcome::Refused(refusal) => {
                        ids.failed(SignInFailure::EntraRefused { refusal })
                    }
                    EntraSignInOutcome::ConsentRequired {
                        entra_tenant_id,
                        error_code,
                    } => ids.failed(SignInFailure::EntraConsentRequired {
                        entra_tenant_id,
                        error_code,
                    }),
                    EntraSignInOutcome::ProviderError { error_code } => {
                        ids.failed(SignInFailure::EntraProviderError { error_code })
                    }
                };
                Ok(vec![started, outcome])
            }
            SignInCommand::RequestSmsCode {
                code_hash,
                enrolling_phone,
                quota,
                now,
            } => {
                let attempt = self.open_attempt(tenant_id, now)?;
                request_code(attempt, code_hash, enrolling_phone, quota, now)
            }
            SignInCommand::VerifySmsCode { code_hash, now } => {
                let attempt = self.open_attempt(tenant_id, now)?;
                verify_code(attempt, &code_hash, now)
            }
        }
    }

    fn open_attempt(
        &self,
        tenant_id: TenantId,
        now: DateTime<Utc>,
    ) -> Result<&Attempt, SignInError> {
        let attempt = self
            .attempt
            .as_ref()
            .filter(|a| a.tenant_id == tenant_id)
            .ok_or(SignInError::NotStarted)?;
        if attempt.finished {
            return Err(SignInError::Finished);
        }
        if now >= attempt.started_at + SIGN_IN_LIFETIME {
            return Err(SignInError::AttemptExpired);
        }
        if !attempt.password_accepted {
            return Err(SignInError::PasswordNotAccepted);
        }
        Ok(attempt)
    }

    /// Applies an event; never fails and checks no rules.
    pub fn evolve(&mut self, event: SignInEvent) {
        if let SignInEvent::SignInStarted {
            sign_in_id,
            tenant_id,
            user_id,
            requirement,
            started_at,
            ..
        } = event
        {
            self.attempt = Some(Attempt {
                sign_in_id,
                tenant_id,
                user_id,
                started_at,
                requirement,
                password_accepted: false,
                codes_issued: 0,
                code: None,
                finished: false,
            });
            return;
        }
        let Some(attempt) = self.attempt.as_mut() else {
            return;
        };
        match event {
            SignInEvent::SignInStarted { .. } | SignInEvent::SmsCodeVerified { .. } => {}
            SignInEvent::PasswordAccepted { .. } => attempt.password_accepted = true,
            SignInEvent::SmsCodeIssued {
                code_hash,
                issued_at,
                expires_at,
                enrolling_phone,
                ..
            } => {
                attempt.codes_issued += 1;
                attempt.code = Some(IssuedCode {
                    code_hash,
                    issued_at,
                    expires_at,
                    attempts_left: ATTEMPTS_PER_CODE,
                    enrolling_phone,
                });
            }
            SignInEvent::SmsCodeRejected { attempts_left, .. } => {
                if let Some(code) = attempt.code.as_mut() {
                    code.attempts_left = attempts_left;
                }
            }
            SignInEvent::SignInSucceeded { .. }
            | SignInEvent::SignInFailed { .. }
            | SignInEvent::SignInLocked { .. } => {
                attempt.finished = true;
            }
        }
    }
}

/// The ids every event of an attempt carries.
#[derive(Clone, Copy)]
struct Ids {
    sign_in_id: SignInId,
    tenant_id: TenantId,
    user_id: UserId,
}

impl Ids {
    const fn started(
        self,
        method: SignInMethod,
        requirement: Option<SignInRequirement>,
        started_at: DateTime<Utc>,
    ) -> SignInEvent {
        let Self {
            sign_in_id,
            tenant_id,
            user_id,
        } = self;
        SignInEvent::SignInStarted {
            sign_in_id,
            tenant_id,
            user_id,
            method,
            requirement,
            started_at,
        }
    }

    const fn succeeded(self, method: SignInMethod) -> SignInEvent {
        let Self {
            sign_in_id,
            tenant_id,
            user_id,
        } = self;
        SignInEvent::SignInSucceeded {
            sign_in_id,
            tenant_id,
            user_id,
            method,
        }
    }

    const fn failed(self, reason: SignInFailure) -> SignInEvent {
        let Self {
            sign_in_id,
            tenant_id,
            user_id,
        } = self;
        SignInEvent::SignInFailed {
            sign_in_id,
            tenant_id,
            user_id,
            reason,
        }
    }

    const fn locked(self, reason: LockReason) -> SignInEvent {
        let Self {
            sign_in_id,
            tenant_id,
            user_id,
        } = self;
        SignInEvent::SignInLocked {
            sign_in_id,
            tenant_id,
            user_id,
            reason,
        }
    }
}

impl Attempt {
    const fn ids(&self) -> Ids {
        Ids {
            sign_in_id: self.sign_in_id,
            tenant_id: self.tenant_id,
            user_id: self.user_id,
        }
    }
}

fn start_password(
    ids: Ids,
    requirement: SignInRequirement,
    password_matches: bool,
    recent_failures: u32,
    now: DateTime<Utc>,
) -> Vec<SignInEvent> {
    let started = ids.started(SignInMethod::Password, Some(requirement), now);
    let refusal = match requirement {
        SignInRequirement::Blocked => Some(SignInFailure::AccountDeactivated),
        SignInRequirement::EntraId { .. } => Some(SignInFailure::MustUseEntraId),
        SignInRequirement::SetPasswordFirst => Some(SignInFailure::PasswordNotSet),
        _ => None,
    };
    if let Some(reason) = refusal {
        return vec![started, ids.failed(reason)];
    }
    // Checked before the password, so a locked account gives no password oracle.
    if recent_failures >= RECENT_FAILURES_BEFORE_LOCK {
        return vec![started, ids.locked(LockReason::TooManyRecentFailures)];
    }
    if !password_matches {
        return vec![started, ids.failed(SignInFailure::WrongPassword)];
    }
    let accepted = SignInEvent::PasswordAccepted {
        sign_in_id: ids.sign_in_id,
        tenant_id: ids.tenant_id,
        user_id: ids.user_id,
    };
    if requirement == SignInRequirement::Password {
        vec![started, accepted, ids.succeeded(SignInMethod::Password)]
    } else {
        vec![started, accepted]
    }
}

fn request_code(
    attempt: &Attempt,
    code_hash: CodeHash,
    enrolling_phone: Option<MobileNumber>,
    quota: SmsQuota,
    now: DateTime<Utc>,
) -> Result<Vec<SignInEvent>, SignInError> {
    let purpose = match (attempt.requirement, &enrolling_phone) {
        (Some(SignInRequirement::PasswordAndSms), None) => SmsCodePurpose::SignIn,
        (Some(SignInRequirement::PasswordThenEnrollPhone), Some(_)) => {
            SmsCodePurpose::PhoneEnrollment
        }
        (Some(SignInRequirement::PasswordThenEnrollPhone), None) => {
            return Err(SignInError::PhoneNumberRequired);
        }
        _ => return Err(SignInError::SmsNotRequired),
    };
    if let Some(code) = &attempt.code {
        let retry_at = code.issued_at + RESEND_INTERVAL;
        if now < retry_at {
            return Err(SignInError::ResendTooSoon {
                retry_after_seconds: (retry_at - now).num_seconds().max(1).unsigned_abs(),
            });
        }
    }
    if attempt.codes_issued >= CODES_PER_SIGN_IN {
        return Err(SignInError::TooManyCodes);
    }
    if let SmsQuota::Exceeded(limit) = quota {
        return Err(SignInError::SendLimitReached { limit });
    }
    let Ids {
        sign_in_id,
        tenant_id,
        user_id,
    } = attempt.ids();
    Ok(vec![SignInEvent::SmsCodeIssued {
        sign_in_id,
        tenant_id,
        user_id,
        code_hash,
        issued_at: now,
        expires_at: now + CODE_LIFETIME,
        purpose,
        enrolling_phone: enrolling_phone.map(|phone| Personal::new(user_id, phone)),
    }])
}

fn verify_code(
    attempt: &Attempt,
    submitted: &CodeHash,
    now: DateTime<Utc>,
) -> Result<Vec<SignInEvent>, SignInError> {
    let code = attempt.code.as_ref().ok_or(SignInError::NoCodeIssued)?;
    if code.attempts_left == 0 {
        return Err(SignInError::CodeAttemptsExhausted);
    }
    if now >= code.expires_at {
        return Err(SignInError::CodeExpired);
    }
    let ids = attempt.ids();
    let Ids {
        sign_in_id,
        tenant_id,
        user_id,
    } = ids;
    if code.code_hash.matches(submitted) {
        return Ok(vec![
            SignInEvent::SmsCodeVerified {
                sign_in_id,
                tenant_id,
                user_id,
            },
            ids.succeeded(SignInMethod::PasswordAndSms),
        ]);
    }
    let attempts_left = code.attempts_left - 1;
    let mut events = vec![SignInEvent::SmsCodeRejected {
        sign_in_id,
        tenant_id,
        user_id,
        attempts_left,
    }];
    if attempts_left == 0 && attempt.codes_issued >= CODES_PER_SIGN_IN {
        events.push(ids.locked(LockReason::TooManyWrongCodes));
    }
    Ok(events)
}

#[cfg(test)]
mod tests;

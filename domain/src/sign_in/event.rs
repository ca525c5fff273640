use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::entra::EntraSignInRefusal;
use crate::ids::{EntraTenantId, SignInId, TenantId, UserId};
use crate::sign_in_rule::SignInRequirement;
use crate::values::{CodeHash, MobileNumber, Personal, ProviderErrorCode};

/// Facts about a sign-in attempt. A persisted contract: never rename a variant or a field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SignInEvent {
    /// The attempt started.
    SignInStarted {
        /// The attempt.
        sign_in_id: SignInId,
        /// The tenant.
        tenant_id: TenantId,
        /// The user.
        user_id: UserId,
        /// Password or Entra ID.
        method: SignInMethod,
        /// What the sign-in rule required (password attempts).
        requirement: Option<SignInRequirement>,
        /// When it started.
        started_at: DateTime<Utc>,
    },
    /// The password was right; a code may follow.
    PasswordAccepted {
        /// The attempt.
        sign_in_id: SignInId,
        /// The tenant.
        tenant_id: TenantId,
        /// The user.
        user_id: UserId,
    },
    /// A code was generated for sending. Only its keyed hash is recorded.
    SmsCodeIssued {
        /// The attempt.
        sign_in_id: SignInId,
        /// The tenant.
        tenant_id: TenantId,
        /// The user.
        user_id: UserId,
        /// The keyed hash of the code.
        code_hash: CodeHash,
        /// When it was issued.
        issued_at: DateTime<Utc>,
        /// When it stops working.
        expires_at: DateTime<Utc>,
        /// Sign-in or phone enrollment.
        purpose: SmsCodePurpose,
        /// The number being enrolled, for enrollment codes (personal, sealed in the store).
        enrolling_phone: Option<Personal<MobileNumber>>,
    },
    /// The right code was entered.
    SmsCodeVerified {
        /// The attempt.
        sign_in_id: SignInId,
        /// The tenant.
        tenant_id: TenantId,
        /// The user.
        user_id: UserId,
    },
    /// A wrong code was entered.
    SmsCodeRejected {
        /// The attempt.
        sign_in_id: SignInId,
        /// The tenant.
        tenant_id: TenantId,
        /// The user.
        user_id: UserId,
        /// Wrong guesses left for this code.
        attempts_left: u32,
    },
    /// The user is signed in.
    SignInSucceeded {
        /// The attempt.
        sign_in_id: SignInId,
        /// The tenant.
        tenant_id: TenantId,
        /// The user.
        user_id: UserId,
        /// How.
        method: SignInMethod,
    },
    /// The attempt failed.
    SignInFailed {
        /// The attempt.
        sign_in_id: SignInId,
        /// The tenant.
        tenant_id: TenantId,
        /// The user.
        user_id: UserId,
        /// Why.
        reason: SignInFailure,
    },
    /// The attempt was locked against guessing.
    SignInLocked {
        /// The attempt.
        sign_in_id: SignInId,
        /// The tenant.
        tenant_id: TenantId,
        /// The user.
        user_id: UserId,
        /// Why.
        reason: LockReason,
    },
}

/// How a user signed in (or tried to).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignInMethod {
    /// Password alone.
    Password,
    /// Password and an SMS code.
    PasswordAndSms,
    /// Microsoft Entra ID.
    EntraId,
}

/// What a code is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmsCodePurpose {
    /// Second factor of a sign-in.
    SignIn,
    /// Confirmation of a number being enrolled.
    PhoneEnrollment,
}

/// Why a sign-in failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SignInFailure {
    /// The account is deactivated.
    AccountDeactivated,
    /// The account is linked to Entra ID; passwords are not accepted.
    MustUseEntraId,
    /// No password set yet.
    PasswordNotSet,
    /// The password was wrong.
    WrongPassword,
    /// The Entra token does not sign this user in.
    EntraRefused {
        /// The broken rule.
        refusal: EntraSignInRefusal,
    },
    /// The organisation has not approved FinteQX in Entra ID.
    EntraConsentRequired {
        /// The Entra tenant, if known.
        entra_tenant_id: Option<EntraTenantId>,
        /// Microsoft's error code.
        error_code: ProviderErrorCode,
    },
    /// Microsoft reported another error.
    EntraProviderError {
        /// Microsoft's error code.
        error_code: ProviderErrorCode,
    },
}

/// Why an attempt was locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockReason {
    /// The user failed too often recently.
    TooManyRecentFailures,
    /// Every code of the attempt was guessed wrong too often.
    TooManyWrongCodes,
}

impl DomainEvent for SignInEvent {
    fn event_type(&self) -> String {
        match self {
            Self::SignInStarted { .. } => "SignInStarted",
            Self::PasswordAccepted { .. } => "PasswordAccepted",
            Self::SmsCodeIssued { .. } => "SmsCodeIssued",
            Self::SmsCodeVerified { .. } => "SmsCodeVerified",
            Self::SmsCodeRejected { .. } => "SmsCodeRejected",
            Self::SignInSucceeded { .. } => "SignInSucceeded",
            Self::SignInFailed { .. } => "SignInFailed",
            Self::SignInLocked { .. } => "SignInLocked",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

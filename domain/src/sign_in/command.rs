use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::entra::EntraSignInRefusal;
use crate::ids::{EntraTenantId, SignInId, UserId};
use crate::sign_in_rule::SignInFacts;
use crate::values::{CodeHash, MobileNumber, ProviderErrorCode};

/// Commands to a sign-in attempt. Sent inside a [`crate::TenantScoped`] envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignInCommand {
    /// The user submitted a password; starts the attempt.
    StartPasswordSignIn {
        /// The new attempt's id.
        sign_in_id: SignInId,
        /// The user the e-mail belongs to.
        user_id: UserId,
        /// The facts for the sign-in rule, read from the user and tenant.
        facts: SignInFacts,
        /// The argon2 verification of the submitted password, done by the caller.
        password_matches: bool,
        /// Failed attempts of this user in the recent window (read model).
        recent_failures: u32,
        /// When the password was submitted.
        now: DateTime<Utc>,
    },
    /// Send a (new) code: to the enrolled phone, or to the number being enrolled.
    RequestSmsCode {
        /// The keyed hash of the code; the plaintext never reaches the domain.
        code_hash: CodeHash,
        /// The number to enroll, when the user has none yet.
        enrolling_phone: Option<MobileNumber>,
        /// The verdict of the per-user, per-number, per-tenant and per-prefix send limits.
        quota: SmsQuota,
        /// When the code was requested.
        now: DateTime<Utc>,
    },
    /// The user typed a code.
    VerifySmsCode {
        /// The keyed hash of what they typed.
        code_hash: CodeHash,
        /// When they typed it.
        now: DateTime<Utc>,
    },
    /// An Entra sign-in came back: record its outcome as one attempt.
    RecordEntraSignIn {
        /// The attempt's id.
        sign_in_id: SignInId,
        /// The user the flow was started for.
        user_id: UserId,
        /// What came back.
        outcome: EntraSignInOutcome,
        /// When it came back.
        now: DateTime<Utc>,
    },
}

/// The send limits' verdict for one more SMS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmsQuota {
    /// Within every limit.
    Allowed,
    /// Over this limit.
    Exceeded(SendLimit),
}

/// A limit on SMS sending, against abuse and SMS pumping fraud.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SendLimit {
    /// Codes per user per window.
    PerUser,
    /// Codes per destination number per window.
    PerNumber,
    /// Codes per tenant per window.
    PerTenant,
    /// Codes per country calling code per window.
    PerCountryPrefix,
}

/// How an Entra sign-in ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntraSignInOutcome {
    /// The token signed the user in.
    Succeeded,
    /// The token was valid but does not sign this user in.
    Refused(EntraSignInRefusal),
    /// Microsoft reported that the organisation has not approved FinteQX.
    ConsentRequired {
        /// The Entra tenant, if known.
        entra_tenant_id: Option<EntraTenantId>,
        /// Microsoft's error code (`consent_required`, `AADSTS65001`, …).
        error_code: ProviderErrorCode,
    },
    /// Microsoft reported another error.
    ProviderError {
        /// Microsoft's error code.
        error_code: ProviderErrorCode,
    },
}

impl crate::metadata::NamedCommand for SignInCommand {
    fn command_name(&self) -> &'static str {
        match self {
            Self::StartPasswordSignIn { .. } => "StartPasswordSignIn",
            Self::RequestSmsCode { .. } => "RequestSmsCode",
            Self::VerifySmsCode { .. } => "VerifySmsCode",
            Self::RecordEntraSignIn { .. } => "RecordEntraSignIn",
        }
    }
}

use chrono::{DateTime, Utc};

use crate::entra::{DomainBinding, EntraClaims};
use crate::ids::{CredentialId, PasswordTokenId, UserId};
use crate::user::ErasureReason;
use crate::values::{DisplayName, DomainName, EmailAddress, EmailKey, Locale, MobileNumber, Role};

/// Commands to a user account. Sent inside a [`crate::TenantScoped`] envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserCommand {
    /// The administrator creates an account, choosing SMS (password + SMS) or Entra ID.
    /// The e-mail address must already be claimed for this account (ADR-0005).
    CreateUser {
        /// The new account's id.
        user_id: UserId,
        /// Its e-mail address.
        email: EmailAddress,
        /// The keyed hash of the address.
        email_key: EmailKey,
        /// Display name.
        display_name: DisplayName,
        /// Role within the tenant.
        role: Role,
        /// Language of its e-mails.
        locale: Locale,
        /// How the user will sign in.
        method: NewUserMethod,
    },
    /// The administrator corrects the address, typically an alias into the real address.
    ChangeUserEmail {
        /// The new address, already claimed for this account.
        email: EmailAddress,
        /// Its keyed hash.
        email_key: EmailKey,
    },
    /// The administrator deactivates the account; nothing is deleted.
    DeactivateUser,
    /// The administrator reactivates a deactivated account.
    ReactivateUser,
    /// One user of `LinkDomainUsers`: from the next sign-in only Entra ID is accepted, and the
    /// password is removed.
    LinkUserToEntra {
        /// The domain as the tenant claimed it.
        binding: DomainBinding,
    },
    /// One user of `UnlinkDomainUsers`: back to password (+ SMS), with a set-password link.
    UnlinkUserFromEntra {
        /// The domain the administrator entered.
        domain: DomainName,
        /// The set-password token for the e-mail.
        password_token: PasswordTokenGrant,
    },
    /// A new set-password link (welcome mail lost, password forgotten).
    IssuePasswordToken {
        /// The token.
        password_token: PasswordTokenGrant,
    },
    /// The user sets a password with the token from an e-mail.
    SetPassword {
        /// The token presented (its secret already checked by the caller).
        token_id: PasswordTokenId,
        /// The stored verifier of the new password.
        credential_id: CredentialId,
        /// When the user presented it.
        now: DateTime<Utc>,
    },
    /// The user's mobile number, confirmed with a code at sign-in.
    EnrollPhone {
        /// The number.
        phone: MobileNumber,
    },
    /// Support or the administrator removes a lost number; the next sign-in enrolls a new one.
    RemovePhone,
    /// Erases the person: their data key is destroyed by the caller after this is recorded.
    ForgetUser {
        /// Why.
        reason: ErasureReason,
    },
    /// Support or an administrator queues a dead message to the user again; the caller has
    /// checked that the tenant's queue holds it, dead.
    RequeueNotification {
        /// The message's stable id.
        message_id: String,
        /// Asked by support staff (otherwise by one of the tenant's administrators).
        by_support: bool,
    },
    /// An Entra sign-in reached the account: bind the identity the first time, match it later.
    CompleteEntraSignIn {
        /// The account domain's current binding.
        binding: DomainBinding,
        /// The validated token's claims.
        claims: EntraClaims,
    },
}

/// The sign-in method chosen at creation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewUserMethod {
    /// Password (+ SMS by policy): the welcome mail carries a set-password link.
    Sms {
        /// The set-password token for the welcome mail.
        password_token: PasswordTokenGrant,
    },
    /// Microsoft Entra ID through the e-mail's domain, linked at once.
    EntraId {
        /// The e-mail domain as the tenant claimed it.
        binding: DomainBinding,
    },
}

/// A freshly generated set-password token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordTokenGrant {
    /// Its id; the e-mailed secret is derived from it.
    pub token_id: PasswordTokenId,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
}

impl crate::metadata::NamedCommand for UserCommand {
    fn command_name(&self) -> &'static str {
        match self {
            Self::CreateUser { .. } => "CreateUser",
            Self::ChangeUserEmail { .. } => "ChangeUserEmail",
            Self::DeactivateUser => "DeactivateUser",
            Self::ReactivateUser => "ReactivateUser",
            Self::LinkUserToEntra { .. } => "LinkUserToEntra",
            Self::UnlinkUserFromEntra { .. } => "UnlinkUserFromEntra",
            Self::IssuePasswordToken { .. } => "IssuePasswordToken",
            Self::SetPassword { .. } => "SetPassword",
            Self::EnrollPhone { .. } => "EnrollPhone",
            Self::RemovePhone => "RemovePhone",
            Self::CompleteEntraSignIn { .. } => "CompleteEntraSignIn",
            Self::ForgetUser { .. } => "ForgetUser",
            Self::RequeueNotification { .. } => "RequeueNotification",
        }
    }
}

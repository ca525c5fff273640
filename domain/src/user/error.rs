use crate::entra::EntraSignInRefusal;

/// Why a user account refused a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    /// No such account in the principal's tenant.
    #[error("the user does not exist")]
    UserNotFound,
    /// An account with this id exists already.
    #[error("the user already exists")]
    UserAlreadyExists,
    /// The account is deactivated.
    #[error("the user is deactivated")]
    UserDeactivated,
    /// The account is deactivated already.
    #[error("the user is already deactivated")]
    AlreadyDeactivated,
    /// The account is not deactivated.
    #[error("the user is not deactivated")]
    NotDeactivated,
    /// The new address equals the current one.
    #[error("the e-mail address is unchanged")]
    EmailUnchanged,
    /// The account's e-mail is not on the domain.
    #[error("the e-mail address is not on the domain")]
    EmailNotOnDomain,
    /// The tenant has not claimed the domain.
    #[error("the domain is not linked to this tenant")]
    DomainNotClaimedByTenant,
    /// The account is linked to Entra ID already.
    #[error("the user is already linked to Microsoft Entra ID")]
    AlreadyLinked,
    /// The account is not linked to Entra ID (through this domain).
    #[error("the user is not linked to Microsoft Entra ID")]
    NotLinked,
    /// The account signs in with Entra ID and has no password or phone.
    #[error("the user signs in with Microsoft Entra ID")]
    LinkedToEntra,
    /// The token is not the account's outstanding set-password token.
    #[error("the set-password link is not valid")]
    PasswordTokenUnknown,
    /// The token expired.
    #[error("the set-password link has expired")]
    PasswordTokenExpired,
    /// The token was used already.
    #[error("the set-password link was already used")]
    PasswordTokenAlreadyUsed,
    /// A phone is enrolled already.
    #[error("a mobile number is already enrolled")]
    PhoneAlreadyEnrolled,
    /// No phone is enrolled.
    #[error("no mobile number is enrolled")]
    NoPhoneEnrolled,
    /// The Entra token does not sign this user in.
    #[error("Entra sign-in refused: {0}")]
    EntraSignInRefused(EntraSignInRefusal),
}

//! Validated value types. Parsing happens once, at the edge; afterwards the type is the proof.

mod display_name;
mod domain_name;
mod email;
mod hashes;
mod locale;
mod masking;
mod personal;
mod phone;
mod provider_error_code;

pub use display_name::DisplayName;
pub use domain_name::DomainName;
pub use email::EmailAddress;
pub use hashes::{CodeHash, EmailKey};
pub use locale::{Locale, Role};
pub use personal::Personal;
pub use phone::MobileNumber;
pub use provider_error_code::ProviderErrorCode;

/// Fewest characters of a new password (NIST SP 800-63B asks at least 8; we ask more).
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Most characters of a new password: long passphrases yes, denial of service by argon2 no.
pub const MAX_PASSWORD_CHARS: usize = 256;
/// Most bytes of a password: [`MAX_PASSWORD_CHARS`] characters of at most four UTF-8 bytes each.
/// Checked before the characters are counted, so a huge input is refused at once.
pub const MAX_PASSWORD_BYTES: usize = MAX_PASSWORD_CHARS * 4;

/// Checks a new password's length, the only composition rule (NIST SP 800-63B §5.1.1.2). The
/// password itself never enters the domain: only its length is passed.
///
/// # Errors
/// [`ValueError::PasswordTooShort`] or [`ValueError::PasswordTooLong`].
pub const fn check_password_length(chars: usize) -> Result<(), ValueError> {
    if chars < MIN_PASSWORD_CHARS {
        Err(ValueError::PasswordTooShort)
    } else if chars > MAX_PASSWORD_CHARS {
        Err(ValueError::PasswordTooLong)
    } else {
        Ok(())
    }
}

/// Why an input is not a valid value. Each variant names the broken rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// The e-mail address is not of the form `local@domain` with a valid local part.
    #[error("the e-mail address is malformed")]
    EmailMalformed,
    /// The e-mail address is longer than 254 characters.
    #[error("the e-mail address is longer than 254 characters")]
    EmailTooLong,
    /// The domain name is not a syntactically valid host name.
    #[error("the domain name is malformed")]
    DomainMalformed,
    /// The domain name is a public suffix itself or is not under a known public suffix.
    #[error("the domain name is not a registrable domain")]
    DomainNotRegistrable,
    /// The phone number cannot be parsed or is not a valid number.
    #[error("the phone number is malformed")]
    PhoneMalformed,
    /// The phone number is valid but cannot receive text messages.
    #[error("the phone number is not a mobile number")]
    PhoneNotMobile,
    /// The display name is empty after trimming.
    #[error("the display name is empty")]
    DisplayNameEmpty,
    /// The display name is longer than 200 characters.
    #[error("the display name is longer than 200 characters")]
    DisplayNameTooLong,
    /// The display name contains control characters.
    #[error("the display name contains control characters")]
    DisplayNameControlCharacters,
    /// The locale is neither `nl` nor `en`.
    #[error("the locale is not supported; use nl or en")]
    LocaleUnsupported,
    /// The role is neither `administrator` nor `user`.
    #[error("the role is unknown; use administrator or user")]
    RoleUnknown,
    /// The Entra tenant id is not a non-nil UUID.
    #[error("the Entra tenant id is not a valid tenant id")]
    EntraTenantIdInvalid,
    /// The Entra tenant id is the one of personal Microsoft accounts.
    #[error("the Entra tenant id is the personal Microsoft accounts tenant, not an organisation")]
    PersonalMicrosoftTenant,
    /// A keyed hash is not 64 lower-case hexadecimal characters.
    #[error("the keyed hash is malformed")]
    HashMalformed,
    /// The new password is shorter than the minimum.
    #[error("the password must be at least {MIN_PASSWORD_CHARS} characters")]
    PasswordTooShort,
    /// The new password is longer than the maximum.
    #[error("the password must be at most {MAX_PASSWORD_CHARS} characters")]
    PasswordTooLong,
    /// A verification code is not six digits.
    #[error("the code must be six digits")]
    CodeMalformed,
    /// A provider error code is empty, too long or has characters other than letters, digits, `_` and `-`.
    #[error("the provider error code is malformed")]
    ProviderErrorCodeMalformed,
}

use std::fmt;

use serde::{Deserialize, Serialize};

use super::ValueError;

/// An error code reported by Microsoft (`access_denied`, `consent_required`, `AADSTS65001`),
/// kept for auditors; free text from the provider is never stored.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProviderErrorCode(String);

const MAX_CODE_LEN: usize = 64;

impl ProviderErrorCode {
    /// Validates a code as received.
    ///
    /// # Errors
    /// [`ValueError::ProviderErrorCodeMalformed`].
    pub fn parse(input: &str) -> Result<Self, ValueError> {
        let valid = !input.is_empty()
            && input.len() <= MAX_CODE_LEN
            && input
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if valid {
            Ok(Self(input.to_owned()))
        } else {
            Err(ValueError::ProviderErrorCodeMalformed)
        }
    }

    /// Stands for an error whose code was malformed (never stored as received).
    pub fn unrecognised() -> Self {
        Self("unrecognised_error".to_owned())
    }

    /// The code.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProviderErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_codes_and_refuses_free_text() {
        assert!(ProviderErrorCode::parse("AADSTS65001").is_ok());
        assert!(ProviderErrorCode::parse("consent_required").is_ok());
        assert!(ProviderErrorCode::parse("").is_err());
        assert!(
            ProviderErrorCode::parse("AADSTS65001: The user or administrator has not consented")
                .is_err()
        );
    }
}

use std::fmt;

use serde::{Deserialize, Serialize};

use super::ValueError;

/// A person's or tenant's display name: trimmed, 1 to 200 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DisplayName(String);

const MAX_DISPLAY_NAME_CHARS: usize = 200;

impl DisplayName {
    /// Validates a name as typed.
    ///
    /// # Errors
    /// [`ValueError::DisplayNameEmpty`], [`ValueError::DisplayNameTooLong`] or
    /// [`ValueError::DisplayNameControlCharacters`].
    pub fn parse(input: &str) -> Result<Self, ValueError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(ValueError::DisplayNameEmpty);
        }
        if trimmed.chars().count() > MAX_DISPLAY_NAME_CHARS {
            return Err(ValueError::DisplayNameTooLong);
        }
        if trimmed.chars().any(char::is_control) {
            return Err(ValueError::DisplayNameControlCharacters);
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as support staff see it: `Anne de Vries` → `A*** d* V****`.
    pub fn masked(&self) -> String {
        super::masking::name(&self.0)
    }
}

impl fmt::Display for DisplayName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_bounds_names() {
        assert_eq!(
            DisplayName::parse("  Anne de Vries ").unwrap().as_str(),
            "Anne de Vries"
        );
        assert_eq!(DisplayName::parse("   "), Err(ValueError::DisplayNameEmpty));
        assert_eq!(
            DisplayName::parse(&"é".repeat(201)),
            Err(ValueError::DisplayNameTooLong)
        );
        assert!(DisplayName::parse(&"é".repeat(200)).is_ok());
        assert_eq!(
            DisplayName::parse("An\u{0}ne"),
            Err(ValueError::DisplayNameControlCharacters)
        );
    }
}

use std::fmt;

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::ValueError;

const HASH_HEX_LEN: usize = 64;

fn is_lower_hex_256(input: &str) -> bool {
    input.len() == HASH_HEX_LEN
        && input
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn lower_hex(digest: &[u8; 32]) -> String {
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A keyed hash (HMAC-SHA-256, hex) of a normalised e-mail address: the lookup key that makes an
/// address unique on the platform without putting the address itself in an aggregate id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EmailKey(String);

impl EmailKey {
    /// Wraps a hash computed by the key holder.
    ///
    /// # Errors
    /// [`ValueError::HashMalformed`] unless it is 64 lower-case hex characters.
    pub fn from_hex(hex: &str) -> Result<Self, ValueError> {
        if is_lower_hex_256(hex) {
            Ok(Self(hex.to_owned()))
        } else {
            Err(ValueError::HashMalformed)
        }
    }

    /// Wraps a digest computed by the key holder.
    pub fn from_digest(digest: &[u8; 32]) -> Self {
        Self(lower_hex(digest))
    }

    /// The hex form, also the id of the e-mail claim stream.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EmailKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A keyed hash (HMAC-SHA-256, hex) of a one-time SMS code bound to its sign-in attempt.
/// The only form in which a code is ever stored; compared in constant time.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CodeHash(String);

impl CodeHash {
    /// Wraps a hash computed by the key holder.
    ///
    /// # Errors
    /// [`ValueError::HashMalformed`] unless it is 64 lower-case hex characters.
    pub fn from_hex(hex: &str) -> Result<Self, ValueError> {
        if is_lower_hex_256(hex) {
            Ok(Self(hex.to_owned()))
        } else {
            Err(ValueError::HashMalformed)
        }
    }

    /// Wraps a digest computed by the key holder.
    pub fn from_digest(digest: &[u8; 32]) -> Self {
        Self(lower_hex(digest))
    }

    /// Compares two hashes in time independent of where they differ.
    pub fn matches(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl PartialEq for CodeHash {
    fn eq(&self, other: &Self) -> bool {
        self.matches(other)
    }
}

impl Eq for CodeHash {}

impl fmt::Debug for CodeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CodeHash(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_64_lower_hex() {
        assert!(EmailKey::from_hex(&"a1".repeat(32)).is_ok());
        assert_eq!(
            EmailKey::from_hex(&"A1".repeat(32)),
            Err(ValueError::HashMalformed)
        );
        assert_eq!(EmailKey::from_hex("abc"), Err(ValueError::HashMalformed));
        assert!(CodeHash::from_hex(&"0".repeat(63)).is_err());
    }

    #[test]
    fn code_hashes_compare_by_value_and_never_print() {
        let a = CodeHash::from_hex(&"ab".repeat(32)).unwrap();
        let b = CodeHash::from_hex(&"ab".repeat(32)).unwrap();
        let c = CodeHash::from_hex(&"ac".repeat(32)).unwrap();
        assert!(a.matches(&b));
        assert!(!a.matches(&c));
        assert_eq!(format!("{a:?}"), "CodeHash(..)");
    }
}

use std::fmt;

use serde::{Deserialize, Serialize};

use super::ValueError;

/// A registrable DNS domain in its canonical form: IDNA (punycode) ASCII, lower case, no
/// trailing dot, under a public suffix known to the Public Suffix List and not a suffix itself.
///
/// Deserialisation trusts the stored form: a persisted event must keep loading when the
/// Public Suffix List changes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DomainName(String);

const MAX_DOMAIN_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;

impl DomainName {
    /// Normalises and validates a domain as an administrator or a user typed it.
    ///
    /// # Errors
    /// [`ValueError::DomainMalformed`] or [`ValueError::DomainNotRegistrable`].
    pub fn parse(input: &str) -> Result<Self, ValueError> {
        let trimmed = input.trim();
        let trimmed = trimmed.strip_suffix('.').unwrap_or(trimmed);
        if trimmed.is_empty() || trimmed.len() > MAX_DOMAIN_LEN * 4 {
            return Err(ValueError::DomainMalformed);
        }
        let ascii =
            idna::domain_to_ascii_strict(trimmed).map_err(|_| ValueError::DomainMalformed)?;
        if ascii.len() > MAX_DOMAIN_LEN || !ascii.split('.').all(is_valid_label) {
            return Err(ValueError::DomainMalformed);
        }
        let registrable = psl::domain(ascii.as_bytes()).ok_or(ValueError::DomainNotRegistrable)?;
        if !registrable.suffix().is_known() {
            return Err(ValueError::DomainNotRegistrable);
        }
        Ok(Self(ascii))
    }

    /// Rebuilds a domain from its persisted canonical form, without validation.
    pub(crate) fn from_stored(stored: &str) -> Self {
        Self(stored.to_owned())
    }

    /// The canonical ASCII form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_valid_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= MAX_LABEL_LEN
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn normalises_case_trailing_dot_and_unicode() {
        let cases = [
            ("FinteQX.tech", "finteqx.tech"),
            (" contoso.com. ", "contoso.com"),
            ("Bücher.de", "xn--bcher-kva.de"),
            ("eu.contoso.co.uk", "eu.contoso.co.uk"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                DomainName::parse(input).unwrap().as_str(),
                expected,
                "input {input:?}"
            );
        }
    }

    #[test]
    fn refuses_malformed_and_non_registrable_domains() {
        let cases = [
            ("", ValueError::DomainMalformed, "empty"),
            ("contoso..com", ValueError::DomainMalformed, "empty label"),
            (
                "-contoso.com",
                ValueError::DomainMalformed,
                "leading hyphen",
            ),
            ("con_toso.com", ValueError::DomainMalformed, "underscore"),
            ("contoso.com/x", ValueError::DomainMalformed, "path"),
            (
                "user@contoso.com",
                ValueError::DomainMalformed,
                "an e-mail address",
            ),
            ("co.uk", ValueError::DomainNotRegistrable, "a public suffix"),
            (
                "com",
                ValueError::DomainNotRegistrable,
                "a top-level domain",
            ),
            (
                "contoso.internal",
                ValueError::DomainNotRegistrable,
                "unknown suffix",
            ),
        ];
        for (input, expected, why) in cases {
            assert_eq!(DomainName::parse(input), Err(expected), "{why}: {input:?}");
        }
        let long = format!("{}.com", "a".repeat(64));
        assert_eq!(
            DomainName::parse(&long),
            Err(ValueError::DomainMalformed),
            "label over 63"
        );
    }

    proptest! {
        #[test]
        fn parsing_is_idempotent(label in "FinteQX[a-zA-Z0-9]{0,20}", tld in prop::sample::select(vec!["com", "nl", "tech", "co.uk"])) {
            let first = DomainName::parse(&format!("{label}.{tld}")).unwrap();
            let second = DomainName::parse(first.as_str()).unwrap();
            prop_assert_eq!(first, second);
        }

        #[test]
        fn never_panics_on_arbitrary_input(input in "\\PC{0,300}") {
            let _ = DomainName::parse(&input);
        }
    }
}

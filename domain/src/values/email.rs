use std::fmt;

use serde::{Deserialize, Serialize};

use super::{DomainName, ValueError};

/// An e-mail address in canonical form: trimmed, lower case, with an IDNA-normalised registrable
/// domain. One address identifies one account on the whole platform, compared in this form.
///
/// Deserialisation trusts the stored form (see [`DomainName`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub struct EmailAddress {
    local: String,
    domain: DomainName,
}

const MAX_EMAIL_LEN: usize = 254;
const MAX_LOCAL_LEN: usize = 64;
const LOCAL_SPECIALS: &[u8] = b"!#$%&'*+-/=?^_`{|}~";

impl EmailAddress {
    /// Normalises and validates an address as typed.
    ///
    /// Only the dot-atom form of the local part is accepted (no quoted strings, no comments):
    /// that is what real mailboxes use and what can be compared case-insensitively.
    ///
    /// # Errors
    /// [`ValueError::EmailMalformed`], [`ValueError::EmailTooLong`], or the domain's errors.
    pub fn parse(input: &str) -> Result<Self, ValueError> {
        let trimmed = input.trim();
        if trimmed.chars().count() > MAX_EMAIL_LEN {
            return Err(ValueError::EmailTooLong);
        }
        let (local, domain) = trimmed.rsplit_once('@').ok_or(ValueError::EmailMalformed)?;
        let local = local.to_ascii_lowercase();
        if !is_dot_atom(&local) {
            return Err(ValueError::EmailMalformed);
        }
        let domain = DomainName::parse(domain)?;
        let address = Self { local, domain };
        if address.to_string().len() > MAX_EMAIL_LEN {
            return Err(ValueError::EmailTooLong);
        }
        Ok(address)
    }

    /// The domain part.
    pub fn domain(&self) -> &DomainName {
        &self.domain
    }

    /// The address as support staff see it: `anne@contoso.com` → `a***@c***.com`.
    pub fn masked(&self) -> String {
        super::masking::email(&self.local, self.domain.as_str())
    }

    /// Whether the address is on exactly `domain` (subdomains are other domains).
    pub fn is_on_domain(&self, domain: &DomainName) -> bool {
        &self.domain == domain
    }
}

fn is_dot_atom(local: &str) -> bool {
    !local.is_empty()
        && local.len() <= MAX_LOCAL_LEN
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || LOCAL_SPECIALS.contains(&b))
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

impl From<EmailAddress> for String {
    fn from(address: EmailAddress) -> Self {
        address.to_string()
    }
}

impl From<String> for EmailAddress {
    /// Reads the stored canonical form back without re-validating it.
    fn from(stored: String) -> Self {
        match stored.rsplit_once('@') {
            Some((local, domain)) => Self {
                local: local.to_owned(),
                domain: DomainName::from_stored(domain),
            },
            None => Self {
                local: stored,
                domain: DomainName::from_stored(""),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn normalises_case_and_idna() {
        let cases = [
            ("Werknemer@FinteQX.tech", "werknemer@finteqx.tech"),
            (
                "  an.de-vries+mfa@contoso.com ",
                "an.de-vries+mfa@contoso.com",
            ),
            ("jan@Bücher.de", "jan@xn--bcher-kva.de"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                EmailAddress::parse(input).unwrap().to_string(),
                expected,
                "input {input:?}"
            );
        }
    }

    #[test]
    fn refuses_malformed_addresses() {
        let cases = [
            ("", ValueError::EmailMalformed, "empty"),
            ("no-at-sign.com", ValueError::EmailMalformed, "no @"),
            (
                "@contoso.com",
                ValueError::EmailMalformed,
                "empty local part",
            ),
            (
                ".jan@contoso.com",
                ValueError::EmailMalformed,
                "leading dot",
            ),
            (
                "jan..smit@contoso.com",
                ValueError::EmailMalformed,
                "double dot",
            ),
            ("jan smit@contoso.com", ValueError::EmailMalformed, "space"),
            (
                "\"jan\"@contoso.com",
                ValueError::EmailMalformed,
                "quoted local part",
            ),
            (
                "jan@localhost",
                ValueError::DomainNotRegistrable,
                "no public suffix",
            ),
            (
                "jan@contoso..com",
                ValueError::DomainMalformed,
                "bad domain",
            ),
        ];
        for (input, expected, why) in cases {
            assert_eq!(
                EmailAddress::parse(input),
                Err(expected),
                "{why}: {input:?}"
            );
        }
        let huge = format!("{}@{}.com", "a".repeat(64), "b".repeat(250));
        assert_eq!(EmailAddress::parse(&huge), Err(ValueError::EmailTooLong));
        let long_local = format!("{}@contoso.com", "a".repeat(65));
        assert_eq!(
            EmailAddress::parse(&long_local),
            Err(ValueError::EmailMalformed)
        );
    }

    #[test]
    fn domain_membership_is_exact() {
        let address = EmailAddress::parse("jan@eu.contoso.com").unwrap();
        assert!(address.is_on_domain(&DomainName::parse("EU.contoso.com").unwrap()));
        assert!(!address.is_on_domain(&DomainName::parse("contoso.com").unwrap()));
    }

    proptest! {
        #[test]
        fn round_trips_through_its_stored_form(local in "[a-z0-9]{1,10}(\\.[a-z0-9+_-]{1,10}){0,2}", domain in "finteqx[a-z0-9]{0,12}\\.(com|nl|tech)") {
            let address = EmailAddress::parse(&format!("{local}@{domain}")).unwrap();
            let json = serde_json::to_string(&address).unwrap();
            let back: EmailAddress = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(&back, &address);
            prop_assert_eq!(EmailAddress::parse(&address.to_string()).unwrap(), address);
        }

        #[test]
        fn never_panics_on_arbitrary_input(input in "\\PC{0,400}") {
            let _ = EmailAddress::parse(&input);
        }
    }
}

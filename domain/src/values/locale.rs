use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::ValueError;

/// The language of a tenant's or user's texts (e-mails, login page).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Locale {
    /// Dutch.
    Nl,
    /// English.
    En,
}

impl Locale {
    /// The language tag, `nl` or `en`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Nl => "nl",
            Self::En => "en",
        }
    }
}

impl FromStr for Locale {
    type Err = ValueError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "nl" => Ok(Self::Nl),
            "en" => Ok(Self::En),
            _ => Err(ValueError::LocaleUnsupported),
        }
    }
}

/// A user's role within their tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Beheerder: manages the tenant's MFA settings and users.
    Administrator,
    /// An end user who signs in.
    User,
}

impl Role {
    /// The role's wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Administrator => "administrator",
            Self::User => "user",
        }
    }
}

impl FromStr for Role {
    type Err = ValueError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "administrator" => Ok(Self::Administrator),
            "user" => Ok(Self::User),
            _ => Err(ValueError::RoleUnknown),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_locales_and_roles_only() {
        assert_eq!("NL".parse::<Locale>(), Ok(Locale::Nl));
        assert_eq!("en".parse::<Locale>(), Ok(Locale::En));
        assert_eq!("de".parse::<Locale>(), Err(ValueError::LocaleUnsupported));
        assert_eq!("administrator".parse::<Role>(), Ok(Role::Administrator));
        assert_eq!("root".parse::<Role>(), Err(ValueError::RoleUnknown));
    }
}

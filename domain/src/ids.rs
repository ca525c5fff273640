//! Identifier newtypes over UUIDs, so that a user id can never be passed where a tenant id is meant.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::values::ValueError;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// Wraps a UUID that the caller generated or parsed.
            pub const fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }

            /// The UUID inside.
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

uuid_id!(
    /// A customer tenant of the FinteQX platform.
    TenantId
);
uuid_id!(
    /// A user account; unique on the whole platform.
    UserId
);
uuid_id!(
    /// One sign-in attempt: the stream that records its steps and outcome.
    SignInId
);
uuid_id!(
    /// A stored password verifier; the argon2 hash itself lives outside the event log (ADR-0008).
    CredentialId
);
uuid_id!(
    /// A single-use set-password token; the e-mailed secret is derived from it (ADR-0008).
    PasswordTokenId
);
uuid_id!(
    /// Entra's immutable object id (`oid`) of a user within one Entra tenant.
    EntraObjectId
);

/// Microsoft's tenant id (`tid`) for personal Microsoft accounts; never an organisation.
pub const PERSONAL_MICROSOFT_ACCOUNTS_TENANT: Uuid =
    Uuid::from_u128(0x9188040d_6c67_4c5b_b112_36a304b66dad);

/// An Entra (Azure AD) tenant id, the `tid` claim: an organisation's directory, never the personal
/// Microsoft account tenant and never nil.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EntraTenantId(Uuid);

impl EntraTenantId {
    /// Validates a tenant id taken from input or a token.
    ///
    /// # Errors
    /// [`ValueError::EntraTenantIdInvalid`] for nil or unparsable ids,
    /// [`ValueError::PersonalMicrosoftTenant`] for the consumer tenant.
    pub fn parse(input: &str) -> Result<Self, ValueError> {
        let id = Uuid::parse_str(input.trim()).map_err(|_| ValueError::EntraTenantIdInvalid)?;
        Self::try_from_uuid(id)
    }

    /// Validates a tenant id that is already a UUID.
    ///
    /// # Errors
    /// As [`EntraTenantId::parse`].
    pub fn try_from_uuid(id: Uuid) -> Result<Self, ValueError> {
        if id.is_nil() {
            return Err(ValueError::EntraTenantIdInvalid);
        }
        if id == PERSONAL_MICROSOFT_ACCOUNTS_TENANT {
            return Err(ValueError::PersonalMicrosoftTenant);
        }
        Ok(Self(id))
    }

    /// The UUID inside.
    pub const fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for EntraTenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entra_tenant_id_refuses_nil_and_personal_accounts_tenant() {
        assert_eq!(
            EntraTenantId::parse("00000000-0000-0000-0000-000000000000"),
            Err(ValueError::EntraTenantIdInvalid)
        );
        assert_eq!(
            EntraTenantId::parse("9188040d-6c67-4c5b-b112-36a304b66dad"),
            Err(ValueError::PersonalMicrosoftTenant)
        );
        assert_eq!(
            EntraTenantId::parse("nope"),
            Err(ValueError::EntraTenantIdInvalid)
        );
        assert!(EntraTenantId::parse(" 72f988bf-86f1-41af-91ab-2d7cd011db47 ").is_ok());
    }

    #[test]
    fn ids_display_and_parse_round_trip() {
        let id = UserId::from_uuid(Uuid::from_u128(42));
        assert_eq!(id.to_string().parse::<UserId>().unwrap(), id);
    }
}

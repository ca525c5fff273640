use serde::{Deserialize, Serialize};

use crate::ids::UserId;

/// A personal field of an event (an e-mail address, a name, a phone number, an Entra object id),
/// tied to the person it belongs to.
///
/// The domain decides with readable values. The event store never holds them: the api seals
/// every `Plain` value under the subject's own data key before writing, and opens it when loading
/// (ADR-0011). Erasing a person destroys that key; from then on the field loads as `Erased`, the
/// stored bytes stay as they were, and replay still works.
///
/// The serialised forms are part of the event contract: `{"personal": {"subject", "value"}}`,
/// `{"sealed": {"subject", "nonce", "ciphertext"}}` and `{"erased": {"subject"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Personal<T> {
    /// Readable: as decided, or as opened by the key holder.
    #[serde(rename = "personal")]
    Plain {
        /// Whose data it is.
        subject: UserId,
        /// The value.
        value: T,
    },
    /// Encrypted under the subject's data key, as stored; opaque to the domain.
    Sealed {
        /// Whose data it is.
        subject: UserId,
        /// The AEAD nonce (base64).
        nonce: String,
        /// The ciphertext with its tag (base64).
        ciphertext: String,
    },
    /// The subject's key is destroyed: the value is gone for good.
    Erased {
        /// Whose data it was.
        subject: UserId,
    },
}

impl<T> Personal<T> {
    /// A readable value of `subject`.
    pub const fn new(subject: UserId, value: T) -> Self {
        Self::Plain { subject, value }
    }

    /// The value, if readable here.
    pub const fn known(&self) -> Option<&T> {
        match self {
            Self::Plain { value, .. } => Some(value),
            Self::Sealed { .. } | Self::Erased { .. } => None,
        }
    }

    /// Whose data it is.
    pub const fn subject(&self) -> UserId {
        match self {
            Self::Plain { subject, .. }
            | Self::Sealed { subject, .. }
            | Self::Erased { subject } => *subject,
        }
    }

    /// The erased form of this field.
    pub const fn erased(&self) -> Self {
        Self::Erased {
            subject: self.subject(),
        }
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;
    use crate::values::EmailAddress;

    fn subject() -> UserId {
        UserId::from_uuid(Uuid::from_u128(5))
    }

    #[test]
    fn the_three_forms_have_stable_json() {
        let plain = Personal::new(subject(), EmailAddress::parse("anne@contoso.com").unwrap());
        assert_eq!(
            serde_json::to_value(&plain).unwrap(),
            serde_json::json!({"personal": {"subject": "00000000-0000-0000-0000-000000000005", "value": "anne@contoso.com"}})
        );
        let sealed: Personal<EmailAddress> = serde_json::from_value(serde_json::json!(
            {"sealed": {"subject": "00000000-0000-0000-0000-000000000005", "nonce": "bm9uY2U=", "ciphertext": "Y3Q="}}
        ))
        .unwrap();
        assert_eq!(sealed.known(), None);
        assert_eq!(sealed.subject(), subject());
        let erased: Personal<EmailAddress> = serde_json::from_value(
            serde_json::json!({"erased": {"subject": "00000000-0000-0000-0000-000000000005"}}),
        )
        .unwrap();
        assert_eq!(erased, plain.erased());
        assert_eq!(
            plain.known().map(ToString::to_string).as_deref(),
            Some("anne@contoso.com")
        );
    }
}

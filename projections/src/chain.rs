//! The hash chain of the event log in Rust (ADR-0012): PostgreSQL's `jsonb` text rendering, the
//! canonical bytes an event's hash covers, the chain and running hashes, and the message a log
//! checkpoint's Ed25519 signature covers.
//!
//! The database computes every event's hash at INSERT (migration `20261127000004`); this module
//! recomputes the same bytes so that an auditor can verify an export without the database. The two
//! must agree byte for byte: `tests/e2e/tamper_evidence.rs` checks them against each other on a
//! long random history.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Number, Value};
use sha2::{Digest as _, Sha256};

/// A SHA-256 digest: an event's hash or a running hash, written as 64 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// What the first event of a stream chains to, and where a running hash starts: 32 zero
    /// bytes.
    pub const GENESIS: Self = Self([0; 32]);

    /// The digest in `bytes`, if they are 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    /// The 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

/// A hex string that is not a 32-byte digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a SHA-256 digest (32 bytes, 64 hex digits)")]
pub struct MalformedDigest;

impl FromStr for Digest {
    type Err = MalformedDigest;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0; 32];
        hex::decode_to_slice(text, &mut bytes).map_err(|_| MalformedDigest)?;
        Ok(Self(bytes))
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl sqlx::Type<sqlx::Postgres> for Digest {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <Vec<u8> as sqlx::Type<sqlx::Postgres>>::type_info()
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Postgres> for Digest {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let bytes = <&[u8] as sqlx::Decode<'r, sqlx::Postgres>>::decode(value)?;
        Ok(Self::from_slice(bytes).ok_or(MalformedDigest)?)
    }
}

/// Renders `value` exactly as PostgreSQL renders a `jsonb` as text (`payload::text`).
///
/// Object keys are ordered by byte length, then bytewise, as `jsonb` stores them; separators are
/// `", "` and `": "`; strings escape `"`, `\`, `\b`, `\f`, `\n`, `\r`, `\t` and other control
/// characters as `\u00xx`, and keep everything else raw. Numbers are written as PostgreSQL's
/// `numeric` writes the literal serde_json produced: integers as they are, fractions in plain
/// decimal notation with the literal's digits. A fraction with more significant digits than an
/// `f64` holds cannot round-trip through serde_json; the event log has none (ADR-0012), and a
/// verification would then report the event as altered rather than miss a change.
pub fn jsonb_text(value: &Value) -> String {
    let mut out = String::new();
    write_jsonb(value, &mut out);
    out
}

fn write_jsonb(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(number) => write_number(number, out),
        Value::String(text) => write_string(text, out),
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push_str(", ");
                }
                write_jsonb(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|(a, _), (b, _)| {
                a.len()
                    .cmp(&b.len())
                    .then_with(|| a.as_bytes().cmp(b.as_bytes()))
            });
            out.push('{');
            for (index, (key, item)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push_str(", ");
                }
                write_string(key, out);
                out.push_str(": ");
                write_jsonb(item, out);
            }
            out.push('}');
        }
    }
}

fn write_string(text: &str, out: &mut String) {
    out.push('"');
    for character in text.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            control if u32::from(control) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", u32::from(control)));
            }
            other => out.push(other),
        }
    }
    out.push('"');
}

/// Integers as they are; a float through its shortest round-trip literal (what serde_json wrote
/// into the database), expanded to plain decimal notation as `numeric` prints it.
fn write_number(number: &Number, out: &mut String) {
    if number.is_f64() {
        out.push_str(&plain_decimal(&number.to_string()));
    } else {
        out.push_str(&number.to_string());
    }
}

/// `1e20` → `100000000000000000000`, `1.5e-7` → `0.00000015`, `-0.0` → `0.0`: the digits of the
/// literal, with as many fraction digits as the literal implies, and no negative zero.
fn plain_decimal(literal: &str) -> String {
    let (negative, unsigned) = literal
        .strip_prefix('-')
        .map_or((false, literal), |rest| (true, rest));
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => (
            mantissa,
            exponent.trim_start_matches('+').parse::<i64>().unwrap_or(0),
        ),
        None => (unsigned, 0),
    };
    let (integer, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits: String = [integer, fraction].concat();
    let length = i64::try_from(digits.len()).unwrap_or(i64::MAX);
    let point = i64::try_from(integer.len())
        .unwrap_or(i64::MAX)
        .saturating_add(exponent);
    let zeros = |count: i64| "0".repeat(usize::try_from(count).unwrap_or(0));
    let (integer_part, fraction_part) = if point <= 0 {
        (String::from("0"), format!("{}{digits}", zeros(-point)))
    } else if point >= length {
        (format!("{digits}{}", zeros(point - length)), String::new())
    } else {
        let split = usize::try_from(point).unwrap_or(0);
        (digits[..split].to_owned(), digits[split..].to_owned())
    };
    let integer_part = match integer_part.trim_start_matches('0') {
        "" => "0",
        trimmed => trimmed,
    };
    let is_zero = digits.bytes().all(|digit| digit == b'0');
    let mut out = String::with_capacity(integer_part.len() + fraction_part.len() + 2);
    if negative && !is_zero {
        out.push('-');
    }
    out.push_str(integer_part);
    if !fraction_part.is_empty() {
        out.push('.');
        out.push_str(&fraction_part);
    }
    out
}

/// The stored fields of an event that its hash covers.
#[derive(Debug, Clone, Copy)]
pub struct ChainedFields<'a> {
    /// `aggregate_type`.
    pub aggregate_type: &'a str,
    /// `aggregate_id`.
    pub aggregate_id: &'a str,
    /// `sequence`.
    pub sequence: i64,
    /// `global_position`.
    pub global_position: i64,
    /// `tx_id`.
    pub tx_id: u64,
    /// `recorded_at`, covered to the microsecond as PostgreSQL stores it.
    pub recorded_at: DateTime<Utc>,
    /// `event_type`.
    pub event_type: &'a str,
    /// `event_version`.
    pub event_version: &'a str,
    /// `payload`.
    pub payload: &'a Value,
    /// `metadata`.
    pub metadata: &'a Value,
}

impl ChainedFields<'_> {
    /// Whether a free-text field contains a line feed, which would make the canonical bytes
    /// ambiguous; the database refuses such rows.
    pub fn has_multi_line_field(&self) -> bool {
        [
            self.aggregate_type,
            self.aggregate_id,
            self.event_type,
            self.event_version,
        ]
        .iter()
        .any(|field| field.contains('\n'))
    }

    /// The bytes the hash covers: the fields joined by line feeds, as the migration's
    /// `event_canonical_bytes` joins them.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        [
            self.aggregate_type.to_owned(),
            self.aggregate_id.to_owned(),
            self.sequence.to_string(),
            self.global_position.to_string(),
            self.tx_id.to_string(),
            self.recorded_at.timestamp_micros().to_string(),
            self.event_type.to_owned(),
            self.event_version.to_owned(),
            jsonb_text(self.payload),
            jsonb_text(self.metadata),
        ]
        .join("\n")
        .into_bytes()
    }

    /// The event's hash when the previous event of its stream has hash `previous`
    /// ([`Digest::GENESIS`] for sequence 1).
    pub fn hash(&self, previous: &Digest) -> Digest {
        let mut hasher = Sha256::new();
        hasher.update(previous.0);
        hasher.update(self.canonical_bytes());
        Digest(hasher.finalize().into())
    }
}

/// The running hash after folding in one more event: `sha256(running || event_hash)`.
pub fn fold_running(running: &Digest, event_hash: &Digest) -> Digest {
    let mut hasher = Sha256::new();
    hasher.update(running.0);
    hasher.update(event_hash.0);
    Digest(hasher.finalize().into())
}

/// The scope of a running hash: `*` for the whole log, or one tenant's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Every event.
    WholeLog,
    /// The events whose payload names this tenant.
    Tenant(domain::ids::TenantId),
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WholeLog => f.write_str("*"),
            Self::Tenant(tenant_id) => tenant_id.fmt(f),
        }
    }
}

/// A scope that is neither `*` nor a tenant id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a scope is '*' or a tenant id")]
pub struct MalformedScope;

impl FromStr for Scope {
    type Err = MalformedScope;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "*" {
            return Ok(Self::WholeLog);
        }
        let tenant: domain::ids::TenantId = text.parse().map_err(|_| MalformedScope)?;
        // One spelling only, as the database writes it.
        if tenant.to_string() == text {
            Ok(Self::Tenant(tenant))
        } else {
            Err(MalformedScope)
        }
    }
}

impl Serialize for Scope {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A `log_chain` row as it is signed: a scope's running hash after its event at
/// `(tx_id, position)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Whose events.
    pub scope: Scope,
    /// The global position of the last event folded in.
    pub position: i64,
    /// Its writing transaction.
    pub tx_id: u64,
    /// How many events of the scope are folded in.
    pub events: i64,
    /// The running hash after them.
    pub running_hash: Digest,
    /// When it was signed, to the microsecond.
    pub signed_at: DateTime<Utc>,
}

/// Domain separation of checkpoint signatures: the key signs nothing else with this prefix.
const CHECKPOINT_MESSAGE_PREFIX: &str = "finteqx/log-checkpoint/v1";

impl Checkpoint {
    /// The bytes the Ed25519 signature covers: a fixed prefix, then scope, position, tx_id,
    /// events, running hash (hex) and `signed_at` (microseconds since the Unix epoch), joined by
    /// line feeds.
    pub fn message(&self) -> Vec<u8> {
        format!(
            "{CHECKPOINT_MESSAGE_PREFIX}\n{}\n{}\n{}\n{}\n{}\n{}",
            self.scope,
            self.position,
            self.tx_id,
            self.events,
            self.running_hash,
            self.signed_at.timestamp_micros()
        )
        .into_bytes()
    }
}

/// A checkpoint with its signature, as stored in `log_checkpoints` and as exported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedCheckpoint {
    /// What was signed.
    #[serde(flatten)]
    pub checkpoint: Checkpoint,
    /// Which key signed it: see [`key_id`].
    pub key_id: String,
    /// The Ed25519 signature over [`Checkpoint::message`], 128 hex digits.
    #[serde(with = "signature_hex")]
    pub signature: [u8; 64],
}

impl SignedCheckpoint {
    /// Whether `key` made the signature.
    pub fn is_signed_by(&self, key: &VerifyingKey) -> bool {
        let signature = ed25519_dalek::Signature::from_bytes(&self.signature);
        key.verify_strict(&self.checkpoint.message(), &signature)
            .is_ok()
    }
}

/// The id of a checkpoint key: the first 16 hex digits of SHA-256 over the public key.
pub fn key_id(key: &VerifyingKey) -> String {
    let digest = Sha256::digest(key.as_bytes());
    hex::encode(&digest[..8])
}

mod signature_hex {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        bytes: &[u8; 64],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<[u8; 64], D::Error> {
        let text = String::deserialize(deserializer)?;
        let mut bytes = [0; 64];
        hex::decode_to_slice(&text, &mut bytes).map_err(serde::de::Error::custom)?;
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn renders_jsonb_key_order_separators_and_escapes_as_postgresql_does() {
        // The expected text is PostgreSQL 15's own output for the same document. Its numbers are
        // literals serde_json writes, as in every stored event.
        let value: Value = serde_json::from_str(
            r#"{"bb":1,"a":[1,2,{}],"c":"x\"\\\u0001\u001f\u007f\n\t\b\fé/\r","e":[],"k":1500.0,"m":1e-7,"y":1e20,"z":-0.0,"B":null,"ab":true,"é":1,"e\u0001":{"q":"r","p":[]}}"#,
        )
        .unwrap();
        assert_eq!(
            jsonb_text(&value),
            "{\"B\": null, \"a\": [1, 2, {}], \"c\": \"x\\\"\\\\\\u0001\\u001f\u{7f}\\n\\t\\b\\fé/\\r\", \"e\": [], \"k\": 1500.0, \"m\": 0.0000001, \"y\": 100000000000000000000, \"z\": 0.0, \"ab\": true, \"bb\": 1, \"e\\u0001\": {\"p\": [], \"q\": \"r\"}, \"é\": 1}"
        );
    }

    #[test]
    fn expands_float_literals_to_numeric_plain_notation() {
        for (literal, expected) in [
            ("1e20", "100000000000000000000"),
            ("1e-7", "0.0000001"),
            ("1.5e-7", "0.00000015"),
            ("1.5e3", "1500"),
            ("2.5", "2.5"),
            ("1.0", "1.0"),
            ("-0.0", "0.0"),
            ("-12.25", "-12.25"),
            ("0.01", "0.01"),
        ] {
            assert_eq!(plain_decimal(literal), expected, "{literal}");
        }
    }

    #[test]
    fn scalars_render_like_jsonb() {
        assert_eq!(jsonb_text(&json!("top")), "\"top\"");
        assert_eq!(jsonb_text(&json!([])), "[]");
        assert_eq!(jsonb_text(&json!(12)), "12");
        assert_eq!(jsonb_text(&json!(-3)), "-3");
        assert_eq!(jsonb_text(&json!(u64::MAX)), "18446744073709551615");
        assert_eq!(jsonb_text(&json!(null)), "null");
    }

    #[test]
    fn a_hash_changes_with_every_covered_field_and_the_predecessor() {
        let payload = json!({"TenantRegistered": {"tenant_id": "t"}});
        let metadata = json!({"actor_id": "cli"});
        let at = DateTime::from_timestamp_micros(1_795_773_260_524_272).unwrap();
        let base = ChainedFields {
            aggregate_type: "tenant",
            aggregate_id: "t",
            sequence: 1,
            global_position: 7,
            tx_id: 900,
            recorded_at: at,
            event_type: "TenantRegistered",
            event_version: "1",
            payload: &payload,
            metadata: &metadata,
        };
        let hash = base.hash(&Digest::GENESIS);
        let other_payload = json!({"TenantRegistered": {"tenant_id": "u"}});
        let variants = [
            ChainedFields {
                sequence: 2,
                ..base
            },
            ChainedFields {
                global_position: 8,
                ..base
            },
            ChainedFields { tx_id: 901, ..base },
            ChainedFields {
                recorded_at: at + chrono::TimeDelta::microseconds(1),
                ..base
            },
            ChainedFields {
                payload: &other_payload,
                ..base
            },
            ChainedFields {
                metadata: &payload,
                ..base
            },
        ];
        for variant in variants {
            assert_ne!(variant.hash(&Digest::GENESIS), hash, "{variant:?}");
        }
        assert_ne!(base.hash(&Digest([1; 32])), hash);
        assert_eq!(
            String::from_utf8(base.canonical_bytes()).unwrap(),
            "tenant\nt\n1\n7\n900\n1795773260524272\nTenantRegistered\n1\n\
             {\"TenantRegistered\": {\"tenant_id\": \"t\"}}\n{\"actor_id\": \"cli\"}"
        );
    }

    #[test]
    fn digests_and_scopes_have_one_spelling() {
        let digest = Digest([0xab; 32]);
        assert_eq!(digest.to_string().parse::<Digest>(), Ok(digest));
        assert!("ab".parse::<Digest>().is_err());
        assert_eq!("*".parse::<Scope>(), Ok(Scope::WholeLog));
        let tenant = "0193a5b2-7c41-7d3e-9f12-3b8c5d6e7f80";
        assert_eq!(tenant.parse::<Scope>().unwrap().to_string(), tenant);
        assert!(tenant.to_uppercase().parse::<Scope>().is_err());
    }
}

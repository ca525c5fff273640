//! Events as projectors and auditors read them: the stored row with its position, and the payload
//! decoded into the domain's event type.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use cqrs_es::Aggregate as _;
use domain::domain_claim::{DomainClaim, DomainClaimEvent};
use domain::email_claim::{EmailClaim, EmailClaimEvent};
use domain::ids::TenantId;
use domain::sign_in::{SignIn, SignInEvent};
use domain::tenant::{Tenant, TenantEvent};
use domain::user::{User, UserEvent};

use crate::chain::Digest;
use crate::position::TxId;

pub use crate::position::LogPosition;

/// One event of the log, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// Where it is in the log.
    pub at: LogPosition,
    /// The aggregate's frozen type name.
    pub aggregate_type: String,
    /// The stream id.
    pub aggregate_id: String,
    /// The sequence number within the stream.
    pub sequence: i64,
    /// When the database recorded it.
    pub recorded_at: DateTime<Utc>,
    /// The tenant the payload names (the generated `tenant_id` column).
    pub tenant_id: Option<TenantId>,
    /// The event's chain hash, computed by the database at INSERT (ADR-0012).
    pub hash: Digest,
    /// The decoded event.
    pub event: DomainEvent,
}

/// An event of any aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainEvent {
    /// Of a tenant.
    Tenant(TenantEvent),
    /// Of a user.
    User(UserEvent),
    /// Of a domain claim.
    DomainClaim(DomainClaimEvent),
    /// Of an e-mail claim.
    EmailClaim(EmailClaimEvent),
    /// Of a sign-in attempt.
    SignIn(SignInEvent),
}

/// A stored event that cannot be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// No aggregate of this type exists.
    #[error("unknown aggregate type {0}")]
    UnknownAggregateType(String),
    /// The payload does not match the event type.
    #[error("undecodable payload")]
    Payload(#[from] serde_json::Error),
    /// The stored hash is not 32 bytes.
    #[error("malformed event hash")]
    Hash,
}

/// The raw row as selected by [`EVENT_COLUMNS`].
#[derive(Debug, sqlx::FromRow)]
pub struct EventRow {
    /// `global_position`.
    pub global_position: i64,
    /// `tx_id`, decoded from `xid8`.
    pub tx_id: TxId,
    /// `aggregate_type`.
    pub aggregate_type: String,
    /// `aggregate_id`.
    pub aggregate_id: String,
    /// `sequence`.
    pub sequence: i64,
    /// `payload`.
    pub payload: serde_json::Value,
    /// `recorded_at`.
    pub recorded_at: DateTime<Utc>,
    /// `tenant_id`.
    pub tenant_id: Option<Uuid>,
    /// `hash`.
    pub hash: Vec<u8>,
}

/// The columns [`EventRow`] reads, for `SELECT {EVENT_COLUMNS} FROM events`.
pub const EVENT_COLUMNS: &str = "global_position, tx_id, aggregate_type, aggregate_id, sequence, payload, recorded_at, tenant_id, hash";

impl EventRow {
    /// Decodes the row.
    ///
    /// # Errors
    /// [`DecodeError`] when the type is unknown or the payload does not fit it.
    pub fn decode(self) -> Result<Envelope, DecodeError> {
        let hash = Digest::from_slice(&self.hash).ok_or(DecodeError::Hash)?;
        let event = decode_payload(&self.aggregate_type, self.payload)?;
        Ok(Envelope {
            at: LogPosition {
                tx_id: self.tx_id.0,
                position: self.global_position,
            },
            aggregate_type: self.aggregate_type,
            aggregate_id: self.aggregate_id,
            sequence: self.sequence,
            recorded_at: self.recorded_at,
            tenant_id: self.tenant_id.map(TenantId::from_uuid),
            hash,
            event,
        })
    }
}

fn decode_payload(
    aggregate_type: &str,
    payload: serde_json::Value,
) -> Result<DomainEvent, DecodeError> {
    fn parse<E: DeserializeOwned>(payload: serde_json::Value) -> Result<E, DecodeError> {
        Ok(serde_json::from_value(payload)?)
    }
    Ok(match aggregate_type {
        t if t == Tenant::TYPE => DomainEvent::Tenant(parse(payload)?),
        t if t == User::TYPE => DomainEvent::User(parse(payload)?),
        t if t == DomainClaim::TYPE => DomainEvent::DomainClaim(parse(payload)?),
        t if t == EmailClaim::TYPE => DomainEvent::EmailClaim(parse(payload)?),
        t if t == SignIn::TYPE => DomainEvent::SignIn(parse(payload)?),
        other => return Err(DecodeError::UnknownAggregateType(other.to_owned())),
    })
}

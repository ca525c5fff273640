//! Building envelopes for the projectors' pure tests.

use chrono::{TimeZone, Utc};
use uuid::Uuid;

use domain::ids::{EntraTenantId, TenantId, UserId};
use domain::values::{DomainName, EmailAddress, EmailKey};

use crate::chain::Digest;
use crate::envelope::{DomainEvent, Envelope, LogPosition};

pub fn envelope(aggregate_type: &str, sequence: i64, event: DomainEvent) -> Envelope {
    Envelope {
        at: LogPosition {
            tx_id: 1000,
            position: 42,
        },
        aggregate_type: aggregate_type.to_owned(),
        aggregate_id: "stream".to_owned(),
        sequence,
        recorded_at: Utc
            .with_ymd_and_hms(2026, 11, 27, 9, 0, 0)
            .single()
            .unwrap(),
        tenant_id: Some(tenant()),
        hash: Digest::GENESIS,
        event,
    }
}

pub fn tenant() -> TenantId {
    TenantId::from_uuid(Uuid::from_u128(1))
}

pub fn user() -> UserId {
    UserId::from_uuid(Uuid::from_u128(2))
}

pub fn entra() -> EntraTenantId {
    EntraTenantId::try_from_uuid(Uuid::from_u128(3)).unwrap()
}

pub fn key() -> EmailKey {
    EmailKey::from_hex(&"ab".repeat(32)).unwrap()
}

pub fn email() -> EmailAddress {
    EmailAddress::parse("anne@contoso.com").unwrap()
}

pub fn domain() -> DomainName {
    DomainName::parse("contoso.com").unwrap()
}

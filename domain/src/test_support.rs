//! Fixed values for the domain's unit tests.

use chrono::{DateTime, TimeZone, Utc};
use uuid::Uuid;

use crate::entra::DomainBinding;
use crate::ids::{EntraTenantId, PasswordTokenId, SignInId, TenantId, UserId};
use crate::values::{DomainName, EmailAddress, EmailKey, ProviderErrorCode};

pub fn tenant_id() -> TenantId {
    TenantId::from_uuid(Uuid::from_u128(0x1000))
}

pub fn other_tenant_id() -> TenantId {
    TenantId::from_uuid(Uuid::from_u128(0x2000))
}

pub fn user_id() -> UserId {
    UserId::from_uuid(Uuid::from_u128(0x3000))
}

pub fn sign_in_id() -> SignInId {
    SignInId::from_uuid(Uuid::from_u128(0x4000))
}

pub fn token_id(n: u128) -> PasswordTokenId {
    PasswordTokenId::from_uuid(Uuid::from_u128(0x5000 + n))
}

pub fn entra_tenant(n: u128) -> EntraTenantId {
    EntraTenantId::try_from_uuid(Uuid::from_u128(0x6000 + n)).unwrap()
}

pub fn error_code(code: &str) -> ProviderErrorCode {
    ProviderErrorCode::parse(code).unwrap()
}

pub fn email(address: &str) -> EmailAddress {
    EmailAddress::parse(address).unwrap()
}

pub fn email_key(n: u8) -> EmailKey {
    EmailKey::from_hex(&format!("{n:02x}").repeat(32)).unwrap()
}

pub fn domain(name: &str) -> DomainName {
    DomainName::parse(name).unwrap()
}

pub fn binding(name: &str, entra: EntraTenantId) -> DomainBinding {
    DomainBinding {
        tenant_id: tenant_id(),
        domain: domain(name),
        entra_tenant_id: entra,
    }
}

/// 2026-11-27 09:00:00 UTC plus `seconds`.
pub fn at(seconds: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 9, 0, 0)
        .single()
        .unwrap()
        + chrono::Duration::seconds(seconds)
}

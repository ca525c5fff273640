//! The event contract: golden JSON fixtures of every persisted event (STYLE §2.3).
//!
//! cqrs-es stores each event as serde's externally tagged JSON and finds it again by
//! `event_type()`, so a renamed variant, field or type string breaks every stored stream. The
//! fixtures under `tests/fixtures/events/<aggregate TYPE>/<event_type>.json` are written by hand
//! and never regenerated: a failure here means the code changed the contract, not the fixture.

#![allow(clippy::unwrap_used, reason = "test helpers")]

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use cqrs_es::{Aggregate, DomainEvent};
use serde_json::Value;

use domain::domain_claim::{DomainClaim, DomainClaimEvent};
use domain::email_claim::{EmailClaim, EmailClaimEvent};
use domain::sign_in::{SignIn, SignInEvent};
use domain::tenant::{Tenant, TenantEvent};
use domain::user::{User, UserEvent};

/// The frozen contract of one aggregate: its `TYPE` and the names of its event variants.
struct Contract<E> {
    aggregate_type: &'static str,
    variants: &'static [&'static str],
    /// The variant's name, from an exhaustive match: a new variant does not compile until it is
    /// listed, and a listed variant fails the tests until it has a fixture.
    variant_of: fn(&E) -> &'static str,
}

macro_rules! contract {
    ($aggregate_type:literal, $event:ident { $($variant:ident),+ $(,)? }) => {
        Contract::<$event> {
            aggregate_type: $aggregate_type,
            variants: &[$(stringify!($variant)),+],
            variant_of: |event| match event {
                $($event::$variant { .. } => stringify!($variant),)+
            },
        }
    };
}

fn tenant() -> Contract<TenantEvent> {
    contract!(
        "tenant",
        TenantEvent {
            TenantRegistered,
            MfaPolicySet,
            EntraConsentGranted,
            EntraConsentRefused,
        }
    )
}

fn user() -> Contract<UserEvent> {
    contract!(
        "user",
        UserEvent {
            UserCreated,
            UserEmailChanged,
            UserDeactivated,
            UserReactivated,
            UserLinkedToEntra,
            UserUnlinkedFromEntra,
            PasswordTokenIssued,
            PasswordSet,
            PhoneEnrolled,
            PhoneRemoved,
            EntraIdentityBound,
            UserForgotten,
            NotificationRequeued,
        }
    )
}

fn domain_claim() -> Contract<DomainClaimEvent> {
    contract!(
        "domain_claim",
        DomainClaimEvent {
            DomainClaimed,
            DomainRebound,
            DomainReleased,
            DomainProven,
        }
    )
}

fn email_claim() -> Contract<EmailClaimEvent> {
    contract!(
        "email_claim",
        EmailClaimEvent {
            EmailClaimed,
            EmailReleased,
        }
    )
}

fn sign_in() -> Contract<SignInEvent> {
    contract!(
        "sign_in",
        SignInEvent {
            SignInStarted,
            PasswordAccepted,
            SmsCodeIssued,
            SmsCodeVerified,
            SmsCodeRejected,
            SignInSucceeded,
            SignInFailed,
            SignInLocked,
        }
    )
}

fn fixtures_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/events")
}

/// The fixtures of one aggregate: file stem to parsed JSON. Every file must be a `.json` file.
fn fixtures(aggregate_type: &str) -> BTreeMap<String, Value> {
    let dir = fixtures_root().join(aggregate_type);
    fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            assert_eq!(
                path.extension().and_then(|ext| ext.to_str()),
                Some("json"),
                "{} is not a .json fixture",
                path.display()
            );
            let stem = path.file_stem().unwrap().to_str().unwrap().to_owned();
            let text = fs::read_to_string(&path).unwrap();
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
            (stem, json)
        })
        .collect()
}

fn deserialize<E: DomainEvent>(aggregate_type: &str, stem: &str, json: &Value) -> E {
    serde_json::from_value(json.clone()).unwrap_or_else(|e| {
        panic!("{aggregate_type}/{stem}.json no longer deserializes: {e}");
    })
}

fn assert_round_trips<E: DomainEvent>(contract: &Contract<E>) {
    let aggregate_type = contract.aggregate_type;
    for (stem, json) in fixtures(aggregate_type) {
        let event: E = deserialize(aggregate_type, &stem, &json);
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            json,
            "{aggregate_type}/{stem}.json serializes back differently"
        );
    }
}

fn assert_event_types_frozen<E: DomainEvent>(contract: &Contract<E>) {
    let aggregate_type = contract.aggregate_type;
    for (stem, json) in fixtures(aggregate_type) {
        let tags: Vec<&String> = json
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default();
        assert_eq!(
            tags,
            [&stem],
            "{aggregate_type}/{stem}.json must be externally tagged with its file name"
        );
        let event: E = deserialize(aggregate_type, &stem, &json);
        assert_eq!(
            (contract.variant_of)(&event),
            stem,
            "{aggregate_type}/{stem}.json"
        );
        assert_eq!(event.event_type(), stem, "{aggregate_type}/{stem}.json");
        assert_eq!(event.event_version(), "1", "{aggregate_type}/{stem}.json");
    }
}

fn assert_one_fixture_per_variant<E>(contract: &Contract<E>) {
    let aggregate_type = contract.aggregate_type;
    let found: Vec<String> = fixtures(aggregate_type).into_keys().collect();
    let mut expected: Vec<String> = contract.variants.iter().map(|&v| v.to_owned()).collect();
    expected.sort();
    assert_eq!(
        found, expected,
        "fixtures of {aggregate_type} must be exactly one per event variant"
    );
}

#[test]
fn every_fixture_deserializes_and_serializes_back_to_the_same_json() {
    assert_round_trips(&tenant());
    assert_round_trips(&user());
    assert_round_trips(&domain_claim());
    assert_round_trips(&email_claim());
    assert_round_trips(&sign_in());
}

#[test]
fn event_type_is_the_fixture_name_and_event_version_is_1() {
    assert_event_types_frozen(&tenant());
    assert_event_types_frozen(&user());
    assert_event_types_frozen(&domain_claim());
    assert_event_types_frozen(&email_claim());
    assert_event_types_frozen(&sign_in());
}

#[test]
fn every_event_variant_has_exactly_one_fixture() {
    assert_one_fixture_per_variant(&tenant());
    assert_one_fixture_per_variant(&user());
    assert_one_fixture_per_variant(&domain_claim());
    assert_one_fixture_per_variant(&email_claim());
    assert_one_fixture_per_variant(&sign_in());
}

#[test]
fn fixture_folders_are_the_frozen_aggregate_types() {
    let pairs = [
        (Tenant::TYPE, tenant().aggregate_type),
        (User::TYPE, user().aggregate_type),
        (DomainClaim::TYPE, domain_claim().aggregate_type),
        (EmailClaim::TYPE, email_claim().aggregate_type),
        (SignIn::TYPE, sign_in().aggregate_type),
    ];
    for (actual, frozen) in pairs {
        assert_eq!(
            actual, frozen,
            "an aggregate TYPE is persisted: never change it"
        );
    }
    let mut folders: Vec<String> = fs::read_dir(fixtures_root())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    folders.sort();
    let mut expected: Vec<&str> = pairs.iter().map(|&(_, frozen)| frozen).collect();
    expected.sort_unstable();
    assert_eq!(folders, expected, "one fixture folder per aggregate");
}

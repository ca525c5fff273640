//! Property tests: random command sequences against the user, sign-in and tenant aggregates.
//!
//! Each case draws up to 30 commands from a small universe of values (two tenants, two users, a
//! few addresses, domains, Entra tenants, phones and codes, and a clock that only moves forward),
//! decides each against the current state and applies the events on `Ok`, exactly as the
//! cqrs-es adapter does. The aggregate's rules are checked after every step. Replaying the whole
//! stream into a fresh aggregate must rebuild the same state, and every event must survive the
//! JSON round trip of the event store.

#![allow(clippy::unwrap_used, reason = "test helpers")]

use std::collections::BTreeMap;
use std::fmt::Debug;

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use domain::TenantScoped;
use domain::entra::{DomainBinding, EntraClaims, EntraIdentity, EntraSignInRefusal};
use domain::ids::{
    CredentialId, EntraObjectId, EntraTenantId, PasswordTokenId, SignInId, TenantId, UserId,
};
use domain::sign_in::{
    ATTEMPTS_PER_CODE, CODE_LIFETIME, CODES_PER_SIGN_IN, EntraSignInOutcome, LockReason,
    RESEND_INTERVAL, SIGN_IN_LIFETIME, SendLimit, SignIn, SignInCommand, SignInError, SignInEvent,
    SignInMethod, SmsCodePurpose, SmsQuota,
};
use domain::sign_in_rule::{SignInFacts, SignInRequirement};
use domain::tenant::{
    ConsentDecision, ConsentState, Tenant, TenantCommand, TenantError, TenantEvent,
};
use domain::user::{NewUserMethod, PasswordTokenGrant, User, UserCommand, UserError, UserEvent};
use domain::values::{
    CodeHash, DisplayName, DomainName, EmailAddress, EmailKey, Locale, MobileNumber,
    ProviderErrorCode, Role,
};

// ---------------------------------------------------------------------------------------------
// The runner

/// A pure `decide`/`evolve` pair, so that one runner drives every aggregate.
trait Decider: Default + Clone + PartialEq + Debug {
    type Command: Clone + Debug;
    type Event: Clone + PartialEq + Debug + Serialize + DeserializeOwned;
    type Error: PartialEq + Debug;

    fn decide(&self, command: Self::Command) -> Result<Vec<Self::Event>, Self::Error>;
    fn evolve(&mut self, event: Self::Event);
}

macro_rules! decider {
    ($aggregate:ident, $command:ty, $event:ty, $error:ty) => {
        impl Decider for $aggregate {
            type Command = $command;
            type Event = $event;
            type Error = $error;

            fn decide(&self, command: $command) -> Result<Vec<$event>, $error> {
                $aggregate::decide(self, command)
            }

            fn evolve(&mut self, event: $event) {
                $aggregate::evolve(self, event);
            }
        }
    };
}

decider!(User, TenantScoped<UserCommand>, UserEvent, UserError);
decider!(
    SignIn,
    TenantScoped<SignInCommand>,
    SignInEvent,
    SignInError
);
decider!(Tenant, TenantCommand, TenantEvent, TenantError);

/// One stream under test: the state built step by step, every event so far, and the clock.
struct Run<A: Decider> {
    state: A,
    history: Vec<A::Event>,
    now: DateTime<Utc>,
}

/// What one command did, as the rules see it.
struct Step<A: Decider> {
    command: A::Command,
    now: DateTime<Utc>,
    before: A,
    earlier: Vec<A::Event>,
    result: Result<Vec<A::Event>, A::Error>,
}

impl<A: Decider> Step<A> {
    fn events(&self) -> &[A::Event] {
        self.result.as_deref().unwrap_or_default()
    }
}

impl<A: Decider> Run<A> {
    fn new() -> Self {
        Self {
            state: A::default(),
            history: Vec::new(),
            now: epoch(),
        }
    }

    fn advance(&mut self, seconds: i64) {
        self.now += Duration::seconds(seconds);
    }

    /// Decides `command`, checks that deciding again gives the same answer, and applies the
    /// events on `Ok`.
    fn step(&mut self, command: A::Command) -> Result<Step<A>, TestCaseError> {
        let result = self.state.decide(command.clone());
        prop_assert_eq!(
            &self.state.decide(command.clone()),
            &result,
            "decide must be a pure function of state and command"
        );
        let before = self.state.clone();
        let earlier = self.history.clone();
        if let Ok(events) = &result {
            for event in events {
                self.state.evolve(event.clone());
                self.history.push(event.clone());
            }
        }
        Ok(Step {
            command,
            now: self.now,
            before,
            earlier,
            result,
        })
    }

    /// Replaying the stream into a fresh aggregate rebuilds the state built step by step, and
    /// each event reads back equal after the event store's JSON round trip.
    fn check_replay(&self) -> Result<(), TestCaseError> {
        let mut replayed = A::default();
        for event in &self.history {
            replayed.evolve(event.clone());
        }
        prop_assert_eq!(&replayed, &self.state, "replay differs from the live state");
        let loaded: Vec<A::Event> = self
            .history
            .iter()
            .map(|event| serde_json::from_str(&serde_json::to_string(event).unwrap()).unwrap())
            .collect();
        prop_assert_eq!(
            &loaded,
            &self.history,
            "events changed in the JSON round trip"
        );
        Ok(())
    }
}

/// A field of an event's payload, read from its stored JSON (`{"Variant": {...}}`) the way a
/// projection reads it; every event of these aggregates carries its ids.
fn field<T: DeserializeOwned>(event: &impl Serialize, name: &str) -> T {
    let json = serde_json::to_value(event).unwrap();
    let payload = json
        .as_object()
        .and_then(|tagged| tagged.values().next())
        .unwrap();
    serde_json::from_value(payload[name].clone())
        .unwrap_or_else(|e| panic!("{name} of {json}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// The universe of values

/// 2026-11-27 09:00:00 UTC.
fn epoch() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 9, 0, 0)
        .single()
        .unwrap()
}

fn tenant_id(i: u8) -> TenantId {
    TenantId::from_uuid(Uuid::from_u128(0x1000 * (u128::from(i) + 1)))
}

fn user_id(i: u8) -> UserId {
    UserId::from_uuid(Uuid::from_u128(0x3000 + u128::from(i)))
}

const EMAILS: [&str; 4] = [
    "anne.devries@contoso.com",
    "bram.jansen@contoso.com",
    "anne.devries@fabrikam.nl",
    "anne.devries@sales.contoso.com",
];

const DOMAINS: [&str; 2] = ["contoso.com", "fabrikam.nl"];

const PHONES: [&str; 2] = ["+31612345678", "+31623456789"];

const ERROR_CODES: [&str; 3] = ["access_denied", "consent_required", "AADSTS65004"];

fn email(i: u8) -> EmailAddress {
    EmailAddress::parse(EMAILS[usize::from(i)]).unwrap()
}

fn email_key(i: u8) -> EmailKey {
    EmailKey::from_hex(&format!("{:064x}", 0xe0 + u128::from(i))).unwrap()
}

fn domain_name(i: u8) -> DomainName {
    DomainName::parse(DOMAINS[usize::from(i)]).unwrap()
}

fn phone(i: u8) -> MobileNumber {
    MobileNumber::parse(PHONES[usize::from(i)]).unwrap()
}

fn entra_tenant(i: u8) -> EntraTenantId {
    EntraTenantId::try_from_uuid(Uuid::from_u128(0x6000 + u128::from(i))).unwrap()
}

fn object_id(i: u8) -> EntraObjectId {
    EntraObjectId::from_uuid(Uuid::from_u128(0x8000 + u128::from(i)))
}

fn error_code(i: u8) -> ProviderErrorCode {
    ProviderErrorCode::parse(ERROR_CODES[usize::from(i)]).unwrap()
}

fn code_hash(i: u8) -> CodeHash {
    CodeHash::from_hex(&format!("{:064x}", 0xc0de + u128::from(i))).unwrap()
}

/// The principal's tenant: mostly the first, so that streams progress, sometimes the other.
fn scope() -> impl Strategy<Value = u8> {
    prop_oneof![4 => Just(0_u8), 1 => Just(1_u8)]
}

// ---------------------------------------------------------------------------------------------
// User

#[derive(Debug, Clone, Copy)]
struct BindingChoice {
    tenant: u8,
    domain: u8,
    entra: u8,
}

/// A value that the account holds now, as the api would read it, or any value of the universe.
/// Picking the current one often is what lets random sequences reach the deeper rules.
#[derive(Debug, Clone, Copy)]
enum Pick<T> {
    Current,
    Any(T),
}

#[derive(Debug, Clone, Copy)]
struct ClaimsChoice {
    entra: Pick<u8>,
    object: u8,
    email: Option<Pick<u8>>,
    email_domain_verified: bool,
    is_guest: bool,
}

#[derive(Debug, Clone)]
enum UserOp {
    Create {
        user: u8,
        email: u8,
        entra: Option<BindingChoice>,
        token_lifetime: i64,
    },
    ChangeEmail {
        email: u8,
    },
    Deactivate,
    Reactivate,
    Link(BindingChoice),
    Unlink {
        domain: Pick<u8>,
        token_lifetime: i64,
    },
    IssueToken {
        token_lifetime: i64,
    },
    /// Presents the `nth` newest token issued so far, or an unknown one beyond the last.
    SetPassword {
        nth: usize,
    },
    EnrollPhone {
        phone: u8,
    },
    RemovePhone,
    CompleteEntraSignIn(Pick<BindingChoice>, ClaimsChoice),
}

#[derive(Debug, Clone)]
struct UserStep {
    scope: u8,
    advance_seconds: i64,
    op: UserOp,
}

fn binding_choice() -> impl Strategy<Value = BindingChoice> {
    (scope(), 0..2_u8, 0..2_u8).prop_map(|(tenant, domain, entra)| BindingChoice {
        tenant,
        domain,
        entra,
    })
}

fn pick<T: Clone + Debug>(any: impl Strategy<Value = T>) -> impl Strategy<Value = Pick<T>> {
    prop_oneof![4 => Just(Pick::Current), 1 => any.prop_map(Pick::Any)]
}

fn claims_choice() -> impl Strategy<Value = ClaimsChoice> {
    (
        pick(0..2_u8),
        0..2_u8,
        proptest::option::weighted(0.9, pick(0..4_u8)),
        proptest::bool::weighted(0.9),
        proptest::bool::weighted(0.1),
    )
        .prop_map(
            |(entra, object, email, email_domain_verified, is_guest)| ClaimsChoice {
                entra,
                object,
                email,
                email_domain_verified,
                is_guest,
            },
        )
}

/// Set-password links that expire within minutes or after days.
fn token_lifetime() -> impl Strategy<Value = i64> {
    prop_oneof![Just(300_i64), Just(3 * 86_400_i64)]
}

fn user_op() -> impl Strategy<Value = UserOp> {
    prop_oneof![
        3 => (0..2_u8, 0..4_u8, proptest::option::weighted(0.4, binding_choice()), token_lifetime())
            .prop_map(|(user, email, entra, token_lifetime)| UserOp::Create {
                user,
                email,
                entra,
                token_lifetime,
            }),
        1 => (0..4_u8).prop_map(|email| UserOp::ChangeEmail { email }),
        1 => Just(UserOp::Deactivate),
        1 => Just(UserOp::Reactivate),
        2 => binding_choice().prop_map(UserOp::Link),
        2 => (pick(0..2_u8), token_lifetime())
            .prop_map(|(domain, token_lifetime)| UserOp::Unlink { domain, token_lifetime }),
        2 => token_lifetime().prop_map(|token_lifetime| UserOp::IssueToken { token_lifetime }),
        3 => prop_oneof![6 => Just(0_usize), 1 => 1..4_usize]
            .prop_map(|nth| UserOp::SetPassword { nth }),
        2 => (0..2_u8).prop_map(|phone| UserOp::EnrollPhone { phone }),
        1 => Just(UserOp::RemovePhone),
        3 => (pick(binding_choice()), claims_choice())
            .prop_map(|(binding, claims)| UserOp::CompleteEntraSignIn(binding, claims)),
    ]
}

fn user_steps() -> impl Strategy<Value = Vec<UserStep>> {
    let advance = prop_oneof![
        3 => Just(0_i64),
        3 => Just(60),
        2 => Just(3_600),
        1 => Just(86_400),
        1 => Just(8 * 86_400),
    ];
    vec(
        (scope(), advance, user_op()).prop_map(|(scope, advance_seconds, op)| UserStep {
            scope,
            advance_seconds,
            op,
        }),
        0..=30,
    )
}

fn binding(choice: BindingChoice) -> DomainBinding {
    DomainBinding {
        tenant_id: tenant_id(choice.tenant),
        domain: domain_name(choice.domain),
        entra_tenant_id: entra_tenant(choice.entra),
    }
}

fn issued_tokens(events: &[UserEvent]) -> BTreeMap<PasswordTokenId, DateTime<Utc>> {
    events
        .iter()
        .filter_map(|event| match event {
            UserEvent::PasswordTokenIssued {
                token_id,
                expires_at,
                ..
            } => Some((*token_id, *expires_at)),
            _ => None,
        })
        .collect()
}

/// The concrete command. Token and credential ids are fresh per step, as the api generates
/// them (UUID v7); only `SetPassword` presents one issued earlier. The aggregate relies on that:
/// it remembers only the last token used, so a re-issued id would be accepted again.
fn user_command(step: &UserStep, index: usize, run: &Run<User>) -> TenantScoped<UserCommand> {
    let fresh = 0x5000 + u128::try_from(index).unwrap();
    let grant = |lifetime: i64| PasswordTokenGrant {
        token_id: PasswordTokenId::from_uuid(Uuid::from_u128(fresh)),
        expires_at: run.now + Duration::seconds(lifetime),
    };
    let command = match step.op.clone() {
        UserOp::Create {
            user,
            email: address,
            entra,
            token_lifetime,
        } => UserCommand::CreateUser {
            user_id: user_id(user),
            email: email(address),
            email_key: email_key(address),
            display_name: DisplayName::parse("Anne de Vries").unwrap(),
            role: Role::User,
            locale: Locale::Nl,
            method: match entra {
                Some(choice) => NewUserMethod::EntraId {
                    binding: binding(choice),
                },
                None => NewUserMethod::Sms {
                    password_token: grant(token_lifetime),
                },
            },
        },
        UserOp::ChangeEmail { email: address } => UserCommand::ChangeUserEmail {
            email: email(address),
            email_key: email_key(address),
        },
        UserOp::Deactivate => UserCommand::DeactivateUser,
        UserOp::Reactivate => UserCommand::ReactivateUser,
        UserOp::Link(choice) => UserCommand::LinkUserToEntra {
            binding: binding(choice),
        },
        UserOp::Unlink {
            domain,
            token_lifetime,
        } => UserCommand::UnlinkUserFromEntra {
            domain: match domain {
                Pick::Current => run
                    .state
                    .account()
                    .and_then(|account| account.entra.as_ref())
                    .map_or_else(|| domain_name(0), |link| link.domain.clone()),
                Pick::Any(domain) => domain_name(domain),
            },
            password_token: grant(token_lifetime),
        },
        UserOp::IssueToken { token_lifetime } => UserCommand::IssuePasswordToken {
            password_token: grant(token_lifetime),
        },
        UserOp::SetPassword { nth } => {
            let issued: Vec<PasswordTokenId> = run
                .history
                .iter()
                .rev()
                .filter_map(|event| match event {
                    UserEvent::PasswordTokenIssued { token_id, .. } => Some(*token_id),
                    _ => None,
                })
                .collect();
            UserCommand::SetPassword {
                token_id: issued
                    .get(nth)
                    .copied()
                    .unwrap_or_else(|| PasswordTokenId::from_uuid(Uuid::from_u128(0x5fff_ffff))),
                credential_id: CredentialId::from_uuid(Uuid::from_u128(0x7000 + fresh)),
                now: run.now,
            }
        }
        UserOp::EnrollPhone { phone: number } => UserCommand::EnrollPhone {
            phone: phone(number),
        },
        UserOp::RemovePhone => UserCommand::RemovePhone,
        UserOp::CompleteEntraSignIn(choice, claims) => {
            let account = run.state.account();
            let link = account.and_then(|account| account.entra.as_ref());
            let claimed_email = claims.email.map(|choice| match (choice, account) {
                (Pick::Current, Some(account)) => {
                    account.email.known().cloned().unwrap_or_else(|| email(0))
                }
                (Pick::Current, None) => email(0),
                (Pick::Any(address), _) => email(address),
            });
            UserCommand::CompleteEntraSignIn {
                binding: match (choice, account.zip(link)) {
                    (Pick::Current, Some((account, link))) => DomainBinding {
                        tenant_id: account.tenant_id,
                        domain: link.domain.clone(),
                        entra_tenant_id: link.entra_tenant_id,
                    },
                    (Pick::Current, None) => binding(BindingChoice {
                        tenant: 0,
                        domain: 0,
                        entra: 0,
                    }),
                    (Pick::Any(choice), _) => binding(choice),
                },
                claims: EntraClaims {
                    identity: EntraIdentity {
                        entra_tenant_id: match (claims.entra, link) {
                            (Pick::Current, Some(link)) => link.entra_tenant_id,
                            (Pick::Current, None) => entra_tenant(0),
                            (Pick::Any(entra), _) => entra_tenant(entra),
                        },
                        object_id: object_id(claims.object),
                    },
                    email: claimed_email.clone(),
                    email_domain_verified: claims.email_domain_verified,
                    preferred_username: claimed_email,
                    is_guest: claims.is_guest,
                },
            }
        }
    };
    TenantScoped::new(tenant_id(step.scope), command)
}

fn check_user_rules(step: &Step<User>, after: &User) -> Result<(), TestCaseError> {
    let scope = step.command.tenant_id;
    let events = step.events();
    let before = step.before.account();

    if let Some(before) = before {
        let Some(after) = after.account() else {
            return Err(TestCaseError::fail("a created account disappeared"));
        };
        prop_assert_eq!(
            (after.tenant_id, after.user_id),
            (before.tenant_id, before.user_id),
            "an account's tenant and id never change"
        );
        if before.tenant_id != scope {
            prop_assert!(
                events.is_empty(),
                "a command of another tenant produced {:?}",
                events
            );
            if !matches!(step.command.command, UserCommand::CreateUser { .. }) {
                prop_assert_eq!(
                    &step.result,
                    &Err(UserError::UserNotFound),
                    "another tenant's account looks missing"
                );
            }
        }
        if !before.active {
            for event in events {
                prop_assert!(
                    !matches!(
                        event,
                        UserEvent::PasswordSet { .. }
                            | UserEvent::PasswordTokenIssued { .. }
                            | UserEvent::PhoneEnrolled { .. }
                            | UserEvent::UserLinkedToEntra { .. }
                            | UserEvent::UserUnlinkedFromEntra { .. }
                            | UserEvent::EntraIdentityBound { .. }
                    ),
                    "a deactivated account got {:?}",
                    event
                );
            }
        }
    }

    if let Some(account) = after.account() {
        for event in events {
            prop_assert_eq!(field::<TenantId>(event, "tenant_id"), scope);
            prop_assert_eq!(field::<UserId>(event, "user_id"), account.user_id);
        }
        if let Some(link) = &account.entra {
            prop_assert!(
                account.credential.is_none() && account.password_token.is_none(),
                "a linked account keeps a password or a set-password link: {:?}",
                account
            );
            prop_assert!(
                account
                    .email
                    .known()
                    .is_some_and(|email| email.is_on_domain(&link.domain)),
                "a linked account's e-mail left its domain: {:?}",
                account
            );
            if let Some(identity) = &link.identity {
                prop_assert_eq!(identity.entra_tenant_id, link.entra_tenant_id);
            }
        }
    } else {
        prop_assert!(events.is_empty());
    }

    let issued = issued_tokens(&step.earlier);
    let mut used: Vec<PasswordTokenId> = step
        .earlier
        .iter()
        .filter_map(|event| match event {
            UserEvent::PasswordSet { token_id, .. } => Some(*token_id),
            _ => None,
        })
        .collect();
    for event in events {
        if let UserEvent::PasswordSet { token_id, .. } = event {
            prop_assert!(
                !used.contains(token_id),
                "token {} accepted twice",
                token_id
            );
            let expires_at = issued.get(token_id).copied();
            prop_assert!(
                expires_at.is_some_and(|expires_at| step.now < expires_at),
                "token {} accepted without being issued, or after expiry",
                token_id
            );
            used.push(*token_id);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Sign-in

#[derive(Debug, Clone)]
enum SignInOp {
    StartPassword {
        user: u8,
        facts: SignInFacts,
        password_matches: bool,
        recent_failures: u32,
    },
    RecordEntra {
        user: u8,
        outcome: u8,
    },
    /// `Current` sends a number exactly when the attempt enrolls one, as the login page does.
    RequestCode {
        code: u8,
        enrolling_phone: Pick<Option<u8>>,
        over_limit: Option<SendLimit>,
    },
    VerifyCode {
        submitted: Submitted,
    },
}

/// The code a user types: the latest one sent, an earlier one, or a wrong one.
#[derive(Debug, Clone, Copy)]
enum Submitted {
    Latest,
    Earlier,
    Wrong,
}

#[derive(Debug, Clone)]
struct SignInStep {
    scope: u8,
    advance_seconds: i64,
    op: SignInOp,
}

/// Facts that mostly lead to a password and an SMS code, the path with the most rules.
fn sign_in_facts() -> impl Strategy<Value = SignInFacts> {
    (
        proptest::bool::weighted(0.95),
        proptest::bool::weighted(0.7),
        proptest::option::weighted(0.1, (0..2_u8).prop_map(entra_tenant)),
        any::<bool>(),
        proptest::bool::weighted(0.95),
    )
        .prop_map(
            |(active, tenant_requires_sms, entra_link, phone_enrolled, has_password)| SignInFacts {
                active,
                tenant_requires_sms,
                entra_link,
                phone_enrolled,
                has_password,
            },
        )
}

fn send_limit() -> impl Strategy<Value = SendLimit> {
    prop_oneof![
        Just(SendLimit::PerUser),
        Just(SendLimit::PerNumber),
        Just(SendLimit::PerTenant),
        Just(SendLimit::PerCountryPrefix),
    ]
}

fn start_op() -> impl Strategy<Value = SignInOp> {
    prop_oneof![
        9 => (
            0..2_u8,
            sign_in_facts(),
            proptest::bool::weighted(0.9),
            prop_oneof![9 => Just(0_u32), 1 => 0..8_u32],
        )
            .prop_map(|(user, facts, password_matches, recent_failures)| {
                SignInOp::StartPassword {
                    user,
                    facts,
                    password_matches,
                    recent_failures,
                }
            }),
        1 => (0..2_u8, 0..4_u8).prop_map(|(user, outcome)| SignInOp::RecordEntra { user, outcome }),
    ]
}

fn sign_in_op() -> impl Strategy<Value = SignInOp> {
    prop_oneof![
        1 => start_op(),
        3 => (
            0..3_u8,
            pick(proptest::option::of(0..2_u8)),
            proptest::option::weighted(0.1, send_limit()),
        )
            .prop_map(|(code, enrolling_phone, over_limit)| SignInOp::RequestCode {
                code,
                enrolling_phone,
                over_limit,
            }),
        6 => prop_oneof![
            2 => Just(Submitted::Latest),
            1 => Just(Submitted::Earlier),
            6 => Just(Submitted::Wrong),
        ]
        .prop_map(|submitted| SignInOp::VerifyCode { submitted }),
    ]
}

/// A few stray commands, a start, then up to 28 more: most cases reach the code steps. In some
/// cases the user only ever guesses and waits out the resend interval before asking for the next
/// code, so that the lock after every code's last attempt is reached.
fn sign_in_steps() -> impl Strategy<Value = Vec<SignInStep>> {
    // Mostly seconds apart, sometimes past the resend interval, a code's or the attempt's life.
    let advance = || {
        prop_oneof![
            10 => Just(0_i64),
            10 => Just(5),
            3 => Just(29),
            6 => Just(31),
            1 => Just(301),
            1 => Just(901),
        ]
    };
    let step = |op| {
        (scope(), advance(), op).prop_map(|(scope, advance_seconds, op)| SignInStep {
            scope,
            advance_seconds,
            op,
        })
    };
    (
        vec(step(sign_in_op().boxed()), 0..=2),
        step(start_op().boxed()),
        vec(step(sign_in_op().boxed()), 0..=28),
        proptest::bool::weighted(0.3),
    )
        .prop_map(|(mut steps, start, rest, only_guesses)| {
            steps.push(start);
            steps.extend(rest);
            if only_guesses {
                for step in &mut steps {
                    match &mut step.op {
                        SignInOp::VerifyCode { submitted } => *submitted = Submitted::Wrong,
                        SignInOp::RequestCode { .. } => {
                            step.advance_seconds = step.advance_seconds.max(31);
                        }
                        SignInOp::StartPassword { .. } | SignInOp::RecordEntra { .. } => {}
                    }
                }
            }
            steps
        })
}

fn sign_in_id() -> SignInId {
    SignInId::from_uuid(Uuid::from_u128(0x4000))
}

fn sign_in_command(step: &SignInStep, run: &Run<SignIn>) -> TenantScoped<SignInCommand> {
    let now = run.now;
    let command = match step.op.clone() {
        SignInOp::StartPassword {
            user,
            facts,
            password_matches,
            recent_failures,
        } => SignInCommand::StartPasswordSignIn {
            sign_in_id: sign_in_id(),
            user_id: user_id(user),
            facts,
            password_matches,
            recent_failures,
            now,
        },
        SignInOp::RecordEntra { user, outcome } => SignInCommand::RecordEntraSignIn {
            sign_in_id: sign_in_id(),
            user_id: user_id(user),
            outcome: match outcome {
                0 => EntraSignInOutcome::Succeeded,
                1 => EntraSignInOutcome::Refused(EntraSignInRefusal::IdentityMismatch),
                2 => EntraSignInOutcome::ConsentRequired {
                    entra_tenant_id: None,
                    error_code: error_code(1),
                },
                _ => EntraSignInOutcome::ProviderError {
                    error_code: error_code(2),
                },
            },
            now,
        },
        SignInOp::RequestCode {
            code,
            enrolling_phone,
            over_limit,
        } => SignInCommand::RequestSmsCode {
            code_hash: code_hash(code),
            enrolling_phone: match enrolling_phone {
                Pick::Current => run
                    .state
                    .attempt()
                    .filter(|attempt| {
                        attempt.requirement == Some(SignInRequirement::PasswordThenEnrollPhone)
                    })
                    .map(|_| phone(0)),
                Pick::Any(number) => number.map(phone),
            },
            quota: over_limit.map_or(SmsQuota::Allowed, SmsQuota::Exceeded),
            now,
        },
        SignInOp::VerifyCode { submitted } => {
            let mut sent = run.history.iter().rev().filter_map(|event| match event {
                SignInEvent::SmsCodeIssued { code_hash, .. } => Some(code_hash.clone()),
                _ => None,
            });
            let wrong = code_hash(0xff);
            let code_hash = match submitted {
                Submitted::Latest => sent.next().unwrap_or(wrong),
                Submitted::Earlier => sent.nth(1).unwrap_or(wrong),
                Submitted::Wrong => wrong,
            };
            SignInCommand::VerifySmsCode { code_hash, now }
        }
    };
    TenantScoped::new(tenant_id(step.scope), command)
}

const fn is_finish(event: &SignInEvent) -> bool {
    matches!(
        event,
        SignInEvent::SignInSucceeded { .. }
            | SignInEvent::SignInFailed { .. }
            | SignInEvent::SignInLocked { .. }
    )
}

fn check_sign_in_rules(step: &Step<SignIn>, after: &SignIn) -> Result<(), TestCaseError> {
    let scope = step.command.tenant_id;
    let events = step.events();

    if step.earlier.iter().any(is_finish) {
        prop_assert!(
            events.is_empty(),
            "a finished attempt produced {:?}",
            events
        );
    }
    if let Some(before) = step.before.attempt()
        && before.tenant_id != scope
    {
        prop_assert!(
            events.is_empty(),
            "a command of another tenant produced {:?}",
            events
        );
    }

    let Some(attempt) = after.attempt() else {
        prop_assert!(events.is_empty());
        return Ok(());
    };
    prop_assert!(attempt.codes_issued <= CODES_PER_SIGN_IN);
    if let Some(code) = &attempt.code {
        prop_assert!(code.attempts_left <= ATTEMPTS_PER_CODE);
    }
    for event in events {
        prop_assert_eq!(field::<SignInId>(event, "sign_in_id"), attempt.sign_in_id);
        prop_assert_eq!(field::<TenantId>(event, "tenant_id"), scope);
        prop_assert_eq!(field::<UserId>(event, "user_id"), attempt.user_id);
    }

    // Each new event against the stream before it.
    let stream: Vec<&SignInEvent> = step.earlier.iter().chain(events).collect();
    for position in step.earlier.len()..stream.len() {
        let prior = &stream[..position];
        let password_accepted = prior
            .iter()
            .any(|event| matches!(event, SignInEvent::PasswordAccepted { .. }));
        let codes: Vec<(DateTime<Utc>, DateTime<Utc>)> = prior
            .iter()
            .filter_map(|event| match event {
                SignInEvent::SmsCodeIssued {
                    issued_at,
                    expires_at,
                    ..
                } => Some((*issued_at, *expires_at)),
                _ => None,
            })
            .collect();
        match stream[position] {
            SignInEvent::SignInStarted { .. } => prop_assert_eq!(position, 0),
            SignInEvent::SignInSucceeded { method, .. } => match method {
                SignInMethod::Password => {
                    prop_assert!(password_accepted, "signed in without the password");
                    prop_assert_eq!(attempt.requirement, Some(SignInRequirement::Password));
                }
                SignInMethod::PasswordAndSms => {
                    prop_assert!(password_accepted, "signed in without the password");
                    prop_assert!(
                        matches!(prior.last(), Some(SignInEvent::SmsCodeVerified { .. })),
                        "signed in with SMS without a verified code"
                    );
                }
                SignInMethod::EntraId => prop_assert!(
                    matches!(
                        stream[0],
                        SignInEvent::SignInStarted {
                            method: SignInMethod::EntraId,
                            ..
                        }
                    ),
                    "signed in with Entra ID on a password attempt"
                ),
            },
            SignInEvent::SmsCodeIssued {
                issued_at,
                expires_at,
                purpose,
                enrolling_phone,
                ..
            } => {
                prop_assert!(password_accepted, "a code was sent before the password");
                prop_assert!(
                    matches!(
                        attempt.requirement,
                        Some(
                            SignInRequirement::PasswordAndSms
                                | SignInRequirement::PasswordThenEnrollPhone
                        )
                    ),
                    "a code was sent to a user who needs none"
                );
                prop_assert_eq!(*expires_at, *issued_at + CODE_LIFETIME);
                prop_assert!(*issued_at < attempt.started_at + SIGN_IN_LIFETIME);
                prop_assert_eq!(
                    *purpose == SmsCodePurpose::PhoneEnrollment,
                    enrolling_phone.is_some()
                );
                if let Some((previous, _)) = codes.last() {
                    prop_assert!(
                        *issued_at >= *previous + RESEND_INTERVAL,
                        "codes sent less than the resend interval apart"
                    );
                }
            }
            SignInEvent::SmsCodeVerified { .. } | SignInEvent::SmsCodeRejected { .. } => {
                let Some((_, expires_at)) = codes.last() else {
                    return Err(TestCaseError::fail(
                        "a code was checked before any was sent",
                    ));
                };
                prop_assert!(step.now < *expires_at, "an expired code was checked");
                prop_assert!(step.now < attempt.started_at + SIGN_IN_LIFETIME);
            }
            SignInEvent::SignInLocked {
                reason: LockReason::TooManyWrongCodes,
                ..
            } => prop_assert_eq!(codes.len(), CODES_PER_SIGN_IN as usize),
            SignInEvent::PasswordAccepted { .. }
            | SignInEvent::SignInFailed { .. }
            | SignInEvent::SignInLocked { .. } => {}
        }
        if let SignInEvent::SmsCodeRejected { attempts_left, .. } = stream[position] {
            let left_before = step.before.attempt().and_then(|a| a.code.as_ref());
            prop_assert_eq!(
                Some(*attempts_left + 1),
                left_before.map(|code| code.attempts_left),
                "a wrong code costs exactly one attempt"
            );
        }
    }
    prop_assert!(stream.iter().filter(|event| is_finish(event)).count() <= 1);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Tenant

#[derive(Debug, Clone)]
enum TenantOp {
    Register { tenant: u8, locale: Locale },
    SetMfaPolicy { sms_required: bool },
    RecordConsent { entra: u8, refused: Option<u8> },
    RecordRefusalWithoutTenant { code: u8 },
}

const CONSENT_TENANTS: u8 = 3;

fn tenant_ops() -> impl Strategy<Value = Vec<TenantOp>> {
    let op = prop_oneof![
        1 => (0..2_u8, prop_oneof![Just(Locale::Nl), Just(Locale::En)])
            .prop_map(|(tenant, locale)| TenantOp::Register { tenant, locale }),
        2 => any::<bool>().prop_map(|sms_required| TenantOp::SetMfaPolicy { sms_required }),
        4 => (0..CONSENT_TENANTS, proptest::option::of(0..3_u8))
            .prop_map(|(entra, refused)| TenantOp::RecordConsent { entra, refused }),
        1 => (0..3_u8).prop_map(|code| TenantOp::RecordRefusalWithoutTenant { code }),
    ];
    vec(op, 0..=30)
}

fn tenant_command(op: &TenantOp) -> TenantCommand {
    match *op {
        TenantOp::Register { tenant, locale } => TenantCommand::RegisterTenant {
            tenant_id: tenant_id(tenant),
            display_name: DisplayName::parse("Contoso Nederland B.V.").unwrap(),
            default_locale: locale,
        },
        TenantOp::SetMfaPolicy { sms_required } => TenantCommand::SetMfaPolicy { sms_required },
        TenantOp::RecordConsent { entra, refused } => TenantCommand::RecordEntraConsent {
            entra_tenant_id: entra_tenant(entra),
            decision: match refused {
                None => ConsentDecision::Granted,
                Some(code) => ConsentDecision::Refused {
                    error_code: error_code(code),
                },
            },
        },
        TenantOp::RecordRefusalWithoutTenant { code } => {
            TenantCommand::RecordEntraConsentRefusedWithoutTenant {
                error_code: error_code(code),
            }
        }
    }
}

fn check_tenant_rules(step: &Step<Tenant>, after: &Tenant) -> Result<(), TestCaseError> {
    let before = &step.before;
    let events = step.events();

    for entra in (0..CONSENT_TENANTS).map(entra_tenant) {
        if before.consent(entra) == Some(ConsentState::Granted) {
            prop_assert_eq!(
                after.consent(entra),
                Some(ConsentState::Granted),
                "a granted consent was lost"
            );
        }
        if before.consent(entra).is_some() {
            prop_assert!(after.consent(entra).is_some(), "a consent was forgotten");
        }
    }

    match before.profile() {
        Some(profile) => prop_assert_eq!(after.profile(), Some(profile), "registered twice"),
        None if !matches!(step.command, TenantCommand::RegisterTenant { .. }) => {
            prop_assert_eq!(&step.result, &Err(TenantError::NotRegistered));
        }
        None => {}
    }

    if let Some(profile) = after.profile() {
        for event in events {
            prop_assert_eq!(field::<TenantId>(event, "tenant_id"), profile.tenant_id);
        }
    }
    for event in events {
        match event {
            TenantEvent::MfaPolicySet { sms_required, .. } => prop_assert_ne!(
                *sms_required,
                before.sms_required(),
                "a policy that did not change was recorded"
            ),
            TenantEvent::EntraConsentGranted {
                entra_tenant_id, ..
            } => prop_assert_eq!(
                after.consent(*entra_tenant_id),
                Some(ConsentState::Granted),
                "a recorded grant did not grant"
            ),
            TenantEvent::TenantRegistered { .. } | TenantEvent::EntraConsentRefused { .. } => {}
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The properties

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn user_account_rules_hold_after_every_command(steps in user_steps()) {
        let mut run = Run::<User>::new();
        for (index, user_step) in steps.iter().enumerate() {
            run.advance(user_step.advance_seconds);
            let step = run.step(user_command(user_step, index, &run))?;
            check_user_rules(&step, &run.state)?;
        }
    }

    #[test]
    fn replaying_user_events_rebuilds_the_state(steps in user_steps()) {
        let mut run = Run::<User>::new();
        for (index, user_step) in steps.iter().enumerate() {
            run.advance(user_step.advance_seconds);
            run.step(user_command(user_step, index, &run))?;
        }
        run.check_replay()?;
    }

    #[test]
    fn sign_in_rules_hold_after_every_command(steps in sign_in_steps()) {
        let mut run = Run::<SignIn>::new();
        for sign_in_step in &steps {
            run.advance(sign_in_step.advance_seconds);
            let step = run.step(sign_in_command(sign_in_step, &run))?;
            check_sign_in_rules(&step, &run.state)?;
        }
    }

    #[test]
    fn replaying_sign_in_events_rebuilds_the_state(steps in sign_in_steps()) {
        let mut run = Run::<SignIn>::new();
        for sign_in_step in &steps {
            run.advance(sign_in_step.advance_seconds);
            run.step(sign_in_command(sign_in_step, &run))?;
        }
        run.check_replay()?;
    }

    #[test]
    fn tenant_rules_hold_after_every_command(ops in tenant_ops()) {
        let mut run = Run::<Tenant>::new();
        for op in &ops {
            let step = run.step(tenant_command(op))?;
            check_tenant_rules(&step, &run.state)?;
        }
    }

    #[test]
    fn replaying_tenant_events_rebuilds_the_state(ops in tenant_ops()) {
        let mut run = Run::<Tenant>::new();
        for op in &ops {
            run.step(tenant_command(op))?;
        }
        run.check_replay()?;
    }
}

//! Use cases: each turns validated input into one or more commands, gathers the facts the
//! decisions need, and runs them through the executors. Workflows over several aggregates
//! (creating a user with its e-mail claim, linking a domain's users) live here, not in the domain.

mod credentials;
mod domains;
mod entra;
mod error;
mod sessions;
mod sign_in;
mod tenants;
mod users;

use std::sync::Arc;

use sqlx::PgPool;

pub use domains::{DomainChallenge, DomainUserOutcome, DomainUserResult, VerifyOutcome};
pub use entra::{Callback, EntraFlowError, EntraOutcome, EntraRedirect};
pub use error::CommandError;
pub use sign_in::{CodeOutcome, PasswordOutcome, SignedIn};
pub use users::{CreatedUser, NewUser, NewUserSignIn};

use crate::clock::Clock;
use crate::executor::CommandExecutor;
use crate::keys::{
    AttemptCookies, CodeHasher, DomainChallenges, EmailLookup, PasswordHashing, PasswordTokens,
    PhoneLookup,
};
use crate::personal_data::PersonalDataKeys;
use domain::domain_claim::DomainClaim;
use domain::email_claim::EmailClaim;
use domain::sign_in::SignIn;
use domain::tenant::Tenant;
use domain::user::User;

/// The keys the use cases hash with.
#[derive(Clone)]
pub struct Keys {
    /// E-mail lookup keys.
    pub email_lookup: EmailLookup,
    /// Set-password link secrets.
    pub password_tokens: PasswordTokens,
    /// SMS code hashes.
    pub codes: CodeHasher,
    /// Phone number lookup keys (send limits).
    pub phone_lookup: PhoneLookup,
    /// The attempt cookie's MAC.
    pub attempt_cookies: AttemptCookies,
    /// The TXT values that prove domain ownership (ADR-0025).
    pub domain_challenges: DomainChallenges,
}

/// The write side: one executor per aggregate type, plus what the use cases need beside them.
pub struct Commands {
    pool: PgPool,
    tenants: CommandExecutor<Tenant>,
    users: CommandExecutor<User>,
    domains: CommandExecutor<DomainClaim>,
    emails: CommandExecutor<EmailClaim>,
    sign_ins: CommandExecutor<SignIn>,
    keys: Keys,
    personal_data: Arc<PersonalDataKeys>,
    passwords: PasswordHashing,
    clock: Arc<dyn Clock>,
    limits: SignInLimits,
    known_step_cost: sign_in::KnownStepCost,
}

/// Password attempts allowed in 15 minutes (ADR-0024); the defaults are `base.yaml`'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignInLimits {
    /// For one address from one client.
    pub per_address_and_client: i64,
    /// From one client, whatever the address.
    pub per_client: i64,
    /// For one address from all clients together.
    pub per_address: i64,
}

impl Default for SignInLimits {
    fn default() -> Self {
        Self {
            per_address_and_client: 10,
            per_client: 100,
            per_address: 100,
        }
    }
}

/// How long a set-password link works.
pub const PASSWORD_TOKEN_LIFETIME: chrono::Duration = chrono::Duration::days(7);
/// Selected users per link or unlink request: a request's cost is bounded.
pub const MAX_USERS_PER_REQUEST: usize = 1000;

impl Commands {
    /// The write side on `pool`; conflicting commands are tried up to `max_attempts` times.
    pub fn new(
        pool: PgPool,
        max_attempts: u32,
        keys: Keys,
        personal_data: Arc<PersonalDataKeys>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            tenants: CommandExecutor::new(pool.clone(), max_attempts, Arc::clone(&personal_data)),
            users: CommandExecutor::new(pool.clone(), max_attempts, Arc::clone(&personal_data)),
            domains: CommandExecutor::new(pool.clone(), max_attempts, Arc::clone(&personal_data)),
            emails: CommandExecutor::new(pool.clone(), max_attempts, Arc::clone(&personal_data)),
            sign_ins: CommandExecutor::new(pool.clone(), max_attempts, Arc::clone(&personal_data)),
            pool,
            keys,
            personal_data,
            passwords: PasswordHashing,
            clock,
            limits: SignInLimits::default(),
            known_step_cost: sign_in::KnownStepCost::default(),
        }
    }

    /// The same write side with other password limits.
    #[must_use]
    pub const fn with_sign_in_limits(mut self, limits: SignInLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The personal-data keys (sealing, opening, erasure).
    pub const fn personal_data(&self) -> &Arc<PersonalDataKeys> {
        &self.personal_data
    }

    /// The executor of tenant commands.
    pub const fn tenants(&self) -> &CommandExecutor<Tenant> {
        &self.tenants
    }

    /// The executor of user commands.
    pub const fn users(&self) -> &CommandExecutor<User> {
        &self.users
    }

    /// The executor of domain-claim commands.
    pub const fn domains(&self) -> &CommandExecutor<DomainClaim> {
        &self.domains
    }

    /// The executor of e-mail-claim commands.
    pub const fn emails(&self) -> &CommandExecutor<EmailClaim> {
        &self.emails
    }

    /// The executor of sign-in commands.
    pub const fn sign_ins(&self) -> &CommandExecutor<SignIn> {
        &self.sign_ins
    }

    /// The keys.
    pub const fn keys(&self) -> &Keys {
        &self.keys
    }
}

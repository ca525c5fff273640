//! Signing in with a password and, where the rule asks for it, an SMS code (ADR-0009, ADR-0016).
//! Every step is a command on the attempt's own stream; the code's plaintext lives only in this
//! request's memory on its way to the provider.

use std::net::IpAddr;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::Rng as _;
use secrecy::SecretString;

use domain::TenantScoped;
use domain::ids::{SignInId, TenantId, UserId};
use domain::sign_in::{SendLimit, SignInCommand, SignInEvent, SignInMethod, SmsQuota};
use domain::sign_in_rule::SignInRequirement;
use domain::user::{User, UserCommand};
use domain::values::{EmailAddress, Locale, MobileNumber, Role};
use projections::login_page;

use super::{CommandError, Commands};
use crate::executor::CommandContext;
use crate::sms::{SmsRequest, SmsSender};

/// SMS send limits per sliding hour (ADR-0016): per user, per number, per tenant, and per
/// country calling code other than the Netherlands' (pumping targets foreign premium ranges).
const SENDS_PER_USER_PER_HOUR: i64 = 5;
const SENDS_PER_NUMBER_PER_HOUR: i64 = 5;
const SENDS_PER_TENANT_PER_HOUR: i64 = 1000;
const SENDS_PER_FOREIGN_COUNTRY_PER_HOUR: i64 = 50;
const HOME_COUNTRY_CODE: u16 = 31;

/// The window of the password limits ([`super::SignInLimits`]) and of the failures that lock an
/// address for one client. Unknown addresses count like known ones, and the check comes before
/// the argon2 work.
const THROTTLE_WINDOW: chrono::Duration = chrono::Duration::minutes(15);

/// The running average of what a known address's password step costs beyond the hash (loading
/// the account, recording the attempt): an unknown address's step waits as long, so that the
/// answer's timing does not tell which addresses have accounts (ADR-0028).
#[derive(Debug, Default)]
pub struct KnownStepCost {
    micros: AtomicU64,
}

impl KnownStepCost {
    /// Adds one measurement (an exponential average over about the last eight).
    fn record(&self, cost: Duration) {
        let sample = u64::try_from(cost.as_micros()).unwrap_or(u64::MAX);
        let _ = self
            .micros
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |average| {
                Some(if average == 0 {
                    sample
                } else {
                    average - average / 8 + sample / 8
                })
            });
    }

    /// The current average.
    fn average(&self) -> Duration {
        Duration::from_micros(self.micros.load(Ordering::Relaxed))
    }
}

/// Who is signed in, for the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedIn {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The user.
    pub user_id: UserId,
    /// Their role.
    pub role: Role,
    /// How they signed in.
    pub method: SignInMethod,
}

/// What follows a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordOutcome {
    /// Signed in (no second factor needed).
    SignedIn(SignedIn),
    /// Send a code to the enrolled phone next.
    CodeRequired(SignInId),
    /// Enroll a mobile number (confirmed with a code) next.
    PhoneRequired(SignInId),
    /// Not signed in; the page says only that (unknown address, wrong password, locked, …).
    Refused,
}

/// What a typed code did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeOutcome {
    /// Signed in.
    SignedIn(SignedIn),
    /// Wrong; this many guesses are left for this code.
    Wrong {
        /// Guesses left.
        attempts_left: u32,
    },
    /// The attempt is locked; start again later.
    Locked,
}

impl Commands {
    /// The password step: checks the password against the account's verifier and starts the
    /// attempt with the sign-in rule's facts. Unknown addresses cost the same argon2 time.
    ///
    /// # Errors
    /// An infrastructure error.
    pub async fn sign_in_with_password(
        &self,
        context: &CommandContext,
        email: &str,
        password: SecretString,
        client: Option<IpAddr>,
    ) -> Result<PasswordOutcome, CommandError> {
        let email_key = EmailAddress::parse(email)
            .ok()
            .map(|email| self.keys.email_lookup.key_for(&email));
        // Per address and client, per client, and per address from everywhere (ADR-0024): a
        // stranger who knows an address spends their own client's allowance, not its owner's.
        let client = client.map_or_else(|| "unknown".to_owned(), |client| client.to_string());
        let mut limits = vec![(format!("ip:{client}"), self.limits.per_client)];
        let failure_key = email_key.as_ref().map(|key| {
            let key = key.as_str();
            limits.push((format!("email:{key}"), self.limits.per_address));
            limits.push((
                format!("email:{key}|ip:{client}"),
                self.limits.per_address_and_client,
            ));
            format!("failed:{key}|ip:{client}")
        });
        self.throttle(&limits).await?;
        let account = match &email_key {
            Some(key) => login_page::account(&self.pool, key).await?,
            None => None,
        };
        let Some(account) = account else {
            // Same work as a real check, so timing does not tell which addresses exist: the
            // hash, then what a known address's step costs beyond it on average (ADR-0028).
            self.password_matches(&User::default(), password).await?;
            tokio::time::sleep(self.known_step_cost.average()).await;
            return Ok(PasswordOutcome::Refused);
        };
        let started = Instant::now();
        let (outcome, hashing) = self
            .known_password_step(context, account, password, failure_key.unwrap_or_default())
            .await?;
        self.known_step_cost
            .record(started.elapsed().saturating_sub(hashing));
        Ok(outcome)
    }

    /// The password step of an address with an account: decides, records the attempt, and
    /// returns the outcome with the time the hash took.
    async fn known_password_step(
        &self,
        context: &CommandContext,
        account: login_page::LoginAccount,
        password: SecretString,
        failure_key: String,
    ) -> Result<(PasswordOutcome, Duration), CommandError> {
        let user = self.users.load(&account.user_id.to_string()).await?;
        let Some(state) = user.account_in(account.tenant_id) else {
            return Ok((PasswordOutcome::Refused, Duration::ZERO));
        };
        let role = state.role;
        let sms_required = self
            .tenants
            .load(&account.tenant_id.to_string())
            .await?
            .sms_required();
        let now = self.clock.now();
        // Only this client's failures lock the address for it: the owner elsewhere is not kept
        // out by someone who merely knows the address.
        let recent_failures = self.recent_failures(&failure_key).await?;
        let hash_started = Instant::now();
        let password_matches = self.password_matches(&user, password).await?;
        let hashing = hash_started.elapsed();
        if !password_matches {
            sqlx::query("INSERT INTO sign_in_throttle (throttle_key) VALUES ($1)")
                .bind(&failure_key)
                .execute(&self.pool)
                .await?;
        }
        let sign_in_id = SignInId::from_uuid(uuid::Uuid::now_v7());
        let command = SignInCommand::StartPasswordSignIn {
            sign_in_id,
            user_id: account.user_id,
            facts: state.sign_in_facts(sms_required),
            password_matches,
            recent_failures,
            now,
        };
        let context = CommandContext {
            tenant_id: Some(account.tenant_id),
            ..context.clone()
        };
        let committed = self
            .sign_ins
            .execute(
                &sign_in_id.to_string(),
                TenantScoped::new(account.tenant_id, command),
                &context,
            )
            .await?;
        let succeeded = committed.events.iter().find_map(|e| match e.event {
            SignInEvent::SignInSucceeded { method, .. } => Some(method),
            _ => None,
        });
        if let Some(method) = succeeded {
            let signed_in = SignedIn {
                tenant_id: account.tenant_id,
                user_id: account.user_id,
                role,
                method,
            };
            return Ok((PasswordOutcome::SignedIn(signed_in), hashing));
        }
        let accepted = committed
            .events
            .iter()
            .any(|e| matches!(e.event, SignInEvent::PasswordAccepted { .. }));
        let requirement = committed
            .aggregate
            .attempt()
            .and_then(|attempt| attempt.requirement);
        let outcome = match (accepted, requirement) {
            (true, Some(SignInRequirement::PasswordThenEnrollPhone)) => {
                PasswordOutcome::PhoneRequired(sign_in_id)
            }
            (true, _) => PasswordOutcome::CodeRequired(sign_in_id),
            (false, _) => PasswordOutcome::Refused,
        };
        Ok((outcome, hashing))
    }

    /// This address's failed passwords from this client within [`THROTTLE_WINDOW`].
    async fn recent_failures(&self, failure_key: &str) -> Result<u32, CommandError> {
        let failures: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sign_in_throttle WHERE throttle_key = $1 AND at > now() - $2::interval",
        )
        .bind(failure_key)
        .bind(format!("{} seconds", THROTTLE_WINDOW.num_seconds()))
        .fetch_one(&self.pool)
        .await?;
        Ok(u32::try_from(failures).unwrap_or(u32::MAX))
    }

    /// Counts one password attempt under each key, refusing when a key is over its limit.
    async fn throttle(&self, limits: &[(String, i64)]) -> Result<(), CommandError> {
        let keys: Vec<String> = limits.iter().map(|(key, _)| key.clone()).collect();
        let keys = keys.as_slice();
        let window = format!("{} seconds", THROTTLE_WINDOW.num_seconds());
        sqlx::query("DELETE FROM sign_in_throttle WHERE at < now() - $1::interval")
            .bind(&window)
            .execute(&self.pool)
            .await?;
        // Count and record under a lock per key, so parallel attempts cannot all count the same
        // rows and pass together: the limit holds under concurrency.
        let mut transaction = self.pool.begin().await?;
        lock_keys(&mut transaction, keys).await?;
        let counts: Vec<(String, i64, f64)> = sqlx::query_as(
            "SELECT throttle_key, count(*), \
                    extract(epoch FROM min(at) + $2::interval - now())::float8 \
             FROM sign_in_throttle WHERE throttle_key = ANY($1) AND at > now() - $2::interval \
             GROUP BY throttle_key",
        )
        .bind(keys)
        .bind(&window)
        .fetch_all(&mut *transaction)
        .await?;
        for (key, count, seconds_left) in counts {
            let limit = limits
                .iter()
                .find_map(|(limited, limit)| (*limited == key).then_some(*limit))
                .unwrap_or(i64::MAX);
            if count >= limit {
                #[allow(clippy::cast_possible_truncation)]
                let retry_after_seconds = seconds_left.ceil().max(1.0) as i64;
                return Err(CommandError::TooManySignInAttempts {
                    retry_after_seconds,
                });
            }
        }
        sqlx::query("INSERT INTO sign_in_throttle (throttle_key) SELECT unnest($1::text[])")
            .bind(keys)
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Draws a code, records its keyed hash, then hands the plaintext to `sms` and forgets it.
    /// The queue row the projector writes for the code gets the provider's answer as its state.
    ///
    /// # Errors
    /// [`CommandError::SignIn`] for the attempt's rules (throttling, limits, wrong step), or an
    /// infrastructure error; a failed send is recorded and reported as unavailable.
    pub async fn send_sms_code(
        &self,
        context: &CommandContext,
        sign_in_id: SignInId,
        enrolling_phone: Option<MobileNumber>,
        sms: &dyn SmsSender,
    ) -> Result<(), CommandError> {
        let loaded = self
            .sign_ins
            .load_for_command(&sign_in_id.to_string())
            .await?;
        let Some(attempt) = loaded.state().attempt().cloned() else {
            return Err(domain::sign_in::SignInError::NotStarted.into());
        };
        let user = self.users.load(&attempt.user_id.to_string()).await?;
        let account = user
            .account_in(attempt.tenant_id)
            .ok_or(domain::sign_in::SignInError::NotStarted)?;
        let destination = match &enrolling_phone {
            Some(phone) => phone.clone(),
            None => account
                .phone
                .as_ref()
                .and_then(|phone| phone.known().cloned())
                .ok_or(domain::sign_in::SignInError::PhoneNumberRequired)?,
        };
        let number_key = self.keys.phone_lookup.key_for(&destination);
        let (quota, reservation) = self
            .reserve_sms(
                attempt.tenant_id,
                attempt.user_id,
                &number_key,
                destination.country_calling_code(),
            )
            .await?;
        let code = format!("{:06}", rand::rng().random_range(0..1_000_000_u32));
        let command = SignInCommand::RequestSmsCode {
            code_hash: self.keys.codes.hash(sign_in_id, &code),
            enrolling_phone: enrolling_phone.clone(),
            quota,
            now: self.clock.now(),
        };
        let context = CommandContext {
            tenant_id: Some(attempt.tenant_id),
            ..context.clone()
        };
        let committed = self
            .sign_ins
            .execute_loaded(
                &sign_in_id.to_string(),
                loaded,
                TenantScoped::new(attempt.tenant_id, command),
                &context,
            )
            .await;
        let issued = match &committed {
            Ok(committed) => committed
                .events
                .first()
                .filter(|event| matches!(event.event, SignInEvent::SmsCodeIssued { .. })),
            Err(_) => None,
        };
        let Some(issued) = issued else {
            // No code goes out (refused, throttled, conflicting): the reserved send is given back.
            if let Some(reservation) = reservation {
                sqlx::query("DELETE FROM sms_sends WHERE id = $1")
                    .bind(reservation)
                    .execute(&self.pool)
                    .await?;
            }
            return committed.map(|_| ()).map_err(Into::into);
        };
        let text = match account.locale {
            Locale::Nl => {
                format!("Je Akkermans FinteQX-code is {code}. Hij verloopt over 5 minuten.")
            }
            Locale::En => {
                format!("Your Akkermans FinteQX code is {code}. It expires in 5 minutes.")
            }
        };
        let reference = format!("sign_in:{sign_in_id}:{}", issued.sequence);
        let sent = sms
            .send(&SmsRequest {
                to: destination,
                text,
                reference: reference.clone(),
            })
            .await;
        let (state, error) = match &sent {
            Ok(()) => ("sent", None),
            Err(error) => ("dead", Some(error.to_string())),
        };
        sqlx::query(
            "INSERT INTO notification_deliveries (message_id, state, attempts, last_error, sent_at) \
             VALUES ($1, $2, 1, $3, CASE WHEN $2 = 'sent' THEN now() END)",
        )
        .bind(&reference)
        .bind(state)
        .bind(&error)
        .execute(&self.pool)
        .await?;
        sent.map_err(|error| CommandError::Unavailable(error.into()))
    }

    /// The send limits' verdict for one more SMS; when allowed, the send is reserved at once
    /// (a row in `sms_sends`, whose id is returned), under a lock per limit's key, so parallel
    /// requests cannot all see room for one more.
    async fn reserve_sms(
        &self,
        tenant_id: TenantId,
        user_id: UserId,
        number_key: &str,
        country_code: u16,
    ) -> Result<(SmsQuota, Option<i64>), CommandError> {
        let mut transaction = self.pool.begin().await?;
        lock_keys(
            &mut transaction,
            &[
                format!("sms-user:{user_id}"),
                format!("sms-number:{number_key}"),
                format!("sms-tenant:{tenant_id}"),
                format!("sms-country:{country_code}"),
            ],
        )
        .await?;
        let (per_user, per_number, per_tenant, per_country): (i64, i64, i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE user_id = $2), count(*) FILTER (WHERE number_key = $3), \
                    count(*) FILTER (WHERE tenant_id = $1), count(*) FILTER (WHERE country_code = $4) \
             FROM sms_sends WHERE sent_at > now() - interval '1 hour' \
               AND (user_id = $2 OR number_key = $3 OR tenant_id = $1 OR country_code = $4)",
        )
        .bind(tenant_id.as_uuid())
        .bind(user_id.as_uuid())
        .bind(number_key)
        .bind(i32::from(country_code))
        .fetch_one(&mut *transaction)
        .await?;
        let quota = if per_user >= SENDS_PER_USER_PER_HOUR {
            SmsQuota::Exceeded(SendLimit::PerUser)
        } else if per_number >= SENDS_PER_NUMBER_PER_HOUR {
            SmsQuota::Exceeded(SendLimit::PerNumber)
        } else if per_tenant >= SENDS_PER_TENANT_PER_HOUR {
            SmsQuota::Exceeded(SendLimit::PerTenant)
        } else if country_code != HOME_COUNTRY_CODE
            && per_country >= SENDS_PER_FOREIGN_COUNTRY_PER_HOUR
        {
            SmsQuota::Exceeded(SendLimit::PerCountryPrefix)
        } else {
            SmsQuota::Allowed
        };
        let reservation = if quota == SmsQuota::Allowed {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO sms_sends (tenant_id, user_id, number_key, country_code) \
                 VALUES ($1, $2, $3, $4) RETURNING id",
            )
            .bind(tenant_id.as_uuid())
            .bind(user_id.as_uuid())
            .bind(number_key)
            .bind(i32::from(country_code))
            .fetch_one(&mut *transaction)
            .await?;
            Some(id)
        } else {
            None
        };
        transaction.commit().await?;
        Ok((quota, reservation))
    }

    /// Checks a typed code; on success enrolls the number the code confirmed, if any.
    ///
    /// # Errors
    /// [`CommandError::InvalidInput`] for a code that is not six digits, [`CommandError::SignIn`]
    /// for the attempt's rules (expired, no code, exhausted), or an infrastructure error.
    pub async fn verify_sms_code(
        &self,
        context: &CommandContext,
        sign_in_id: SignInId,
        code: &str,
    ) -> Result<CodeOutcome, CommandError> {
        let code = code.trim();
        if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CommandError::invalid(
                "code",
                domain::values::ValueError::CodeMalformed,
            ));
        }
        let loaded = self
            .sign_ins
            .load_for_command(&sign_in_id.to_string())
            .await?;
        let Some(attempt) = loaded.state().attempt().cloned() else {
            return Err(domain::sign_in::SignInError::NotStarted.into());
        };
        let enrolling = attempt
            .code
            .as_ref()
            .and_then(|code| code.enrolling_phone.as_ref())
            .and_then(|phone| phone.known().cloned());
        let command = SignInCommand::VerifySmsCode {
            code_hash: self.keys.codes.hash(sign_in_id, code),
            now: self.clock.now(),
        };
        let context = CommandContext {
            tenant_id: Some(attempt.tenant_id),
            ..context.clone()
        };
        let committed = self
            .sign_ins
            .execute_loaded(
                &sign_in_id.to_string(),
                loaded,
                TenantScoped::new(attempt.tenant_id, command),
                &context,
            )
            .await?;
        for event in &committed.events {
            match event.event {
                SignInEvent::SignInSucceeded { method, .. } => {
                    // The account as it is now (after enrolling the confirmed number, if any).
                    let user = match enrolling {
                        Some(phone) => {
                            self.execute_user_command(
                                &context,
                                attempt.tenant_id,
                                attempt.user_id,
                                UserCommand::EnrollPhone { phone },
                            )
                            .await?
                            .aggregate
                        }
                        None => self.users.load(&attempt.user_id.to_string()).await?,
                    };
                    let role = user.account().map_or(Role::User, |account| account.role);
                    return Ok(CodeOutcome::SignedIn(SignedIn {
                        tenant_id: attempt.tenant_id,
                        user_id: attempt.user_id,
                        role,
                        method,
                    }));
                }
                SignInEvent::SignInLocked { .. } => return Ok(CodeOutcome::Locked),
                _ => {}
            }
        }
        let attempts_left = committed.events.iter().find_map(|e| match e.event {
            SignInEvent::SmsCodeRejected { attempts_left, .. } => Some(attempts_left),
            _ => None,
        });
        Ok(CodeOutcome::Wrong {
            attempts_left: attempts_left.unwrap_or(0),
        })
    }
}

/// Takes a transaction-scoped advisory lock per key, in one order for every caller (so two
/// callers never wait for each other in a circle); released at commit or rollback.
async fn lock_keys(
    transaction: &mut sqlx::PgConnection,
    keys: &[String],
) -> Result<(), sqlx::Error> {
    let mut keys: Vec<&String> = keys.iter().collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(key)
            .execute(&mut *transaction)
            .await?;
    }
    Ok(())
}

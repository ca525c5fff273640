//! The benchmark's own database and the people in it: a throw-away database on the configured
//! server, the service's write side on it, tenants with users who can sign in, and sign-in
//! attempts prepared up to the point where a code was sent (and captured here).

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use chrono::Utc;
use futures::StreamExt as _;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection as _, PgConnection, PgPool};
use uuid::Uuid;

use api::application::{Commands, NewUser, NewUserSignIn};
use api::configuration::Settings;
use api::executor::CommandContext;
use api::sms::{SendFuture, SmsRequest, SmsSender};
use api::startup::{MIGRATOR, build_commands};
use domain::TenantScoped;
use domain::ids::{SignInId, TenantId, UserId};
use domain::metadata::ActorRole;
use domain::sign_in::SignInCommand;
use domain::sign_in_rule::SignInFacts;
use domain::user::UserCommand;
use domain::values::{DisplayName, EmailAddress, Locale, MobileNumber, Role};

/// The password every benchmark user gets.
pub const PASSWORD: &str = "correct horse battery staple";

/// Concurrency of set-up work (not measured).
const SETUP_CONCURRENCY: usize = 16;

/// The throw-away database and the service's write side on it.
pub struct Lab {
    /// The database's name (`finteqx_bench_*`).
    pub name: String,
    /// Its URL.
    pub url: String,
    server_url: String,
    /// The settings the service runs with here.
    pub settings: Settings,
    /// The service's pool (`database.max_connections`, as `finteqx serve` opens it).
    pub pool: PgPool,
    /// The harness's own pool, for set-up and observation.
    pub harness: PgPool,
    /// The write side on `pool`.
    pub commands: Arc<Commands>,
    /// Where sent codes end up.
    pub sms: Arc<CapturedSms>,
}

impl Lab {
    /// Creates and migrates a fresh database on `server_url`.
    ///
    /// # Errors
    /// When the server cannot be reached or the database cannot be created.
    pub async fn create(server_url: &str) -> anyhow::Result<Self> {
        let name = format!("finteqx_bench_{}", Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(server_url)
            .await
            .with_context(|| format!("cannot connect to PostgreSQL at {server_url}"))?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .context("CREATE DATABASE")?;
        admin.close().await?;
        let url = replace_database(server_url, &name);
        let mut settings = Settings::load(&Settings::default_dir())?;
        settings.database.url = url.clone().into();
        settings.application.port = 0;
        // The load generator is one client address; the per-client lookup limit (ADR-0018)
        // would answer it with 429s, so the reads row measures the service without it.
        settings.application.lookups_per_client_per_minute = 0;
        let pool = PgPoolOptions::new()
            .max_connections(settings.database.max_connections)
            .acquire_timeout(Duration::from_secs(60))
            .connect(&url)
            .await?;
        MIGRATOR.run(&pool).await.context("migrations failed")?;
        let harness = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(60))
            .connect(&url)
            .await?;
        let commands = Arc::new(build_commands(&settings, pool.clone())?);
        Ok(Self {
            name,
            url,
            server_url: server_url.to_owned(),
            settings,
            pool,
            harness,
            commands,
            sms: Arc::new(CapturedSms::default()),
        })
    }

    /// Closes the pools and drops the database.
    ///
    /// # Errors
    /// When the database cannot be dropped.
    pub async fn drop_database(self) -> anyhow::Result<()> {
        self.pool.close().await;
        self.harness.close().await;
        let mut admin = PgConnection::connect(&self.server_url).await?;
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut admin)
        .await?;
        admin.close().await?;
        Ok(())
    }

    /// A fresh pool of `size` connections on this database.
    ///
    /// # Errors
    /// When connecting fails.
    pub async fn new_pool(&self, size: u32) -> anyhow::Result<PgPool> {
        Ok(PgPoolOptions::new()
            .max_connections(size)
            .min_connections(size)
            .acquire_timeout(Duration::from_secs(60))
            .connect(&self.url)
            .await?)
    }

    /// Rows in the event log.
    ///
    /// # Errors
    /// A database error.
    pub async fn event_count(&self) -> anyhow::Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&self.harness)
            .await?)
    }

    /// Brings every projector to the end of the log.
    ///
    /// # Errors
    /// A projection error.
    pub async fn run_projections(&self) -> anyhow::Result<usize> {
        Ok(projections::run_all_to_end(&self.harness).await?)
    }

    /// Forgets the SMS send counts, so that set-up can send more codes than the hourly limits
    /// of one tenant allow (the limits are not what is measured).
    ///
    /// # Errors
    /// A database error.
    pub async fn reset_send_limits(&self) -> anyhow::Result<()> {
        sqlx::query("DELETE FROM sms_sends")
            .execute(&self.harness)
            .await?;
        Ok(())
    }

    /// Registers a tenant that requires SMS and creates `signable` users with a password and an
    /// enrolled phone.
    ///
    /// # Errors
    /// A refused command or a database error.
    pub async fn world(&self, name: &str, signable: usize) -> anyhow::Result<World> {
        let tenant = self.tenant(name).await?;
        let users = self.users(tenant, 0..signable, true).await?;
        let mut signers = Vec::new();
        for user_id in users {
            let user = self.commands.users().load(&user_id.to_string()).await?;
            let account = user
                .account_in(tenant)
                .ok_or_else(|| anyhow!("user {user_id} has no account"))?;
            signers.push((user_id, account.sign_in_facts(true)));
        }
        Ok(World { tenant, signers })
    }

    /// Registers a tenant that requires SMS.
    ///
    /// # Errors
    /// A refused command or a database error.
    pub async fn tenant(&self, name: &str) -> anyhow::Result<TenantId> {
        let tenant = TenantId::from_uuid(Uuid::now_v7());
        self.commands
            .register_tenant(
                &operator(),
                tenant,
                DisplayName::parse(name).map_err(|e| anyhow!("{e}"))?,
                Locale::Nl,
            )
            .await?;
        self.commands
            .set_mfa_policy(&admin(tenant), tenant, true)
            .await?;
        Ok(tenant)
    }

    /// Creates users `numbers` of `tenant` ([`email`]) through `CreateUser`, `SETUP_CONCURRENCY`
    /// at a time; with `signable`, each also sets its password by its link and enrolls a phone.
    ///
    /// # Errors
    /// A refused command or a database error.
    pub async fn users(
        &self,
        tenant: TenantId,
        numbers: Range<usize>,
        signable: bool,
    ) -> anyhow::Result<Vec<UserId>> {
        let results: Vec<anyhow::Result<UserId>> = futures::stream::iter(numbers)
            .map(|n| {
                let email = email(tenant, n);
                async move {
                    let user_id = self.create_user(tenant, &email).await?;
                    if signable {
                        self.make_signable(tenant, user_id).await?;
                    }
                    Ok(user_id)
                }
            })
            .buffered(SETUP_CONCURRENCY)
            .collect()
            .await;
        results.into_iter().collect()
    }

    /// One `CreateUser` (password + SMS sign-in).
    ///
    /// # Errors
    /// A refused command or a database error.
    pub async fn create_user(&self, tenant: TenantId, email: &str) -> anyhow::Result<UserId> {
        let created = self
            .commands
            .create_user(&admin(tenant), tenant, new_user(email)?)
            .await?;
        Ok(created.user_id)
    }

    async fn make_signable(&self, tenant: TenantId, user_id: UserId) -> anyhow::Result<()> {
        let user = self.commands.users().load(&user_id.to_string()).await?;
        let token = user
            .account()
            .and_then(|account| account.password_token.as_ref())
            .ok_or_else(|| anyhow!("user {user_id} has no set-password link"))?
            .token_id;
        let secret = self
            .commands
            .keys()
            .password_tokens
            .secret_for(user_id, token);
        self.commands
            .set_password(&operator(), &secret, PASSWORD.to_owned().into())
            .await?;
        let phone = next_phone()?;
        self.commands
            .execute_user_command(
                &admin(tenant),
                tenant,
                user_id,
                UserCommand::EnrollPhone { phone },
            )
            .await?;
        Ok(())
    }

    /// Prepares `count` sign-in attempts in `world`, each with its password accepted and a code
    /// sent through [`Commands::send_sms_code`] (captured here). The password step is the
    /// `StartPasswordSignIn` command with the user's real facts; its argon2 check is the caller's
    /// and is skipped (it is benchmarked on its own).
    ///
    /// # Errors
    /// A refused command or a database error.
    pub async fn attempts(&self, world: &World, count: usize) -> anyhow::Result<Vec<Attempt>> {
        // Each chunk stays under the hourly limits: ≤ 4 codes per user and number, < 1000 per
        // tenant; the counts are reset between chunks.
        let chunk = (world.signers.len() * 4).clamp(1, 900);
        let mut attempts = Vec::with_capacity(count);
        let mut start = 0;
        while start < count {
            let end = (start + chunk).min(count);
            self.reset_send_limits().await?;
            let results: Vec<anyhow::Result<Attempt>> = futures::stream::iter(start..end)
                .map(|n| self.attempt(world, n))
                .buffer_unordered(SETUP_CONCURRENCY)
                .collect()
                .await;
            for result in results {
                attempts.push(result?);
            }
            start = end;
        }
        self.reset_send_limits().await?;
        Ok(attempts)
    }

    async fn attempt(&self, world: &World, n: usize) -> anyhow::Result<Attempt> {
        let (user_id, facts) = world.signers[n % world.signers.len()];
        let sign_in_id = SignInId::from_uuid(Uuid::now_v7());
        let command = SignInCommand::StartPasswordSignIn {
            sign_in_id,
            user_id,
            facts,
            password_matches: true,
            recent_failures: 0,
            now: Utc::now(),
        };
        let context = login_page(Some(world.tenant));
        self.commands
            .sign_ins()
            .execute(
                &sign_in_id.to_string(),
                TenantScoped::new(world.tenant, command),
                &context,
            )
            .await?;
        self.commands
            .send_sms_code(&login_page(None), sign_in_id, None, self.sms.as_ref())
            .await?;
        let code = self
            .sms
            .take(sign_in_id)
            .ok_or_else(|| anyhow!("no code was sent for {sign_in_id}"))?;
        Ok(Attempt { sign_in_id, code })
    }
}

/// A tenant and the users in it who can sign in with password and SMS.
pub struct World {
    /// The tenant.
    pub tenant: TenantId,
    /// Users with a password and a phone, and their sign-in facts.
    pub signers: Vec<(UserId, SignInFacts)>,
}

/// A sign-in attempt waiting for its code.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The attempt.
    pub sign_in_id: SignInId,
    /// The code that was sent.
    pub code: String,
}

/// An SMS sender that keeps each code in memory so the benchmark can type it back.
#[derive(Default)]
pub struct CapturedSms {
    codes: Mutex<BTreeMap<String, String>>,
}

impl CapturedSms {
    /// The code last sent for `sign_in_id`, forgotten here once taken.
    pub fn take(&self, sign_in_id: SignInId) -> Option<String> {
        self.codes
            .lock()
            .ok()
            .and_then(|mut codes| codes.remove(&sign_in_id.to_string()))
    }

    fn capture(&self, request: &SmsRequest) -> Result<(), api::sms::SmsError> {
        let sign_in = request
            .reference
            .strip_prefix("sign_in:")
            .and_then(|rest| rest.split(':').next())
            .ok_or_else(|| api::sms::SmsError::Rejected("unexpected reference".to_owned()))?;
        let code = request
            .text
            .split(|c: char| !c.is_ascii_digit())
            .find(|word| word.len() == 6)
            .ok_or_else(|| api::sms::SmsError::Rejected("no code in the text".to_owned()))?;
        if let Ok(mut codes) = self.codes.lock() {
            codes.insert(sign_in.to_owned(), code.to_owned());
        }
        Ok(())
    }
}

impl SmsSender for CapturedSms {
    fn send<'a>(&'a self, request: &'a SmsRequest) -> SendFuture<'a> {
        let result = self.capture(request);
        Box::pin(async move { result })
    }
}

/// The e-mail address of user `n` of `tenant`.
pub fn email(tenant: TenantId, n: usize) -> String {
    let id = tenant.as_uuid().simple().to_string();
    format!("user{n}@t{}.nl", &id[20..])
}

/// A context as the operator CLI sends it.
pub fn operator() -> CommandContext {
    context("cli", ActorRole::Operator, None)
}

/// A context as an administrator of `tenant` sends it.
pub fn admin(tenant: TenantId) -> CommandContext {
    context(
        &format!("admin-of-{tenant}"),
        ActorRole::Administrator,
        Some(tenant),
    )
}

/// A context as the login page sends it.
pub fn login_page(tenant: Option<TenantId>) -> CommandContext {
    context("login-page", ActorRole::Anonymous, tenant)
}

fn context(actor: &str, role: ActorRole, tenant: Option<TenantId>) -> CommandContext {
    CommandContext {
        actor_id: actor.to_owned(),
        actor_role: role,
        on_behalf_of: None,
        tenant_id: tenant,
        correlation_id: Uuid::new_v4().to_string(),
        occurred_at: Utc::now(),
    }
}

/// A password + SMS user with a Dutch name and locale.
///
/// # Errors
/// A malformed address.
pub fn new_user(email: &str) -> anyhow::Result<NewUser> {
    Ok(NewUser {
        email: EmailAddress::parse(email).map_err(|e| anyhow!("{email}: {e}"))?,
        display_name: DisplayName::parse("Anne de Vries").map_err(|e| anyhow!("{e}"))?,
        role: Role::User,
        locale: Locale::Nl,
        sign_in: NewUserSignIn::Sms,
    })
}

static PHONES: AtomicU64 = AtomicU64::new(0);

/// A Dutch mobile number not handed out before in this run.
fn next_phone() -> anyhow::Result<MobileNumber> {
    let n = PHONES.fetch_add(1, Ordering::Relaxed);
    MobileNumber::parse(&format!("06 {:08}", 10_000_000 + n)).map_err(|e| anyhow!("{e}"))
}

/// `url` with its database replaced by `database`.
pub fn replace_database(url: &str, database: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(base, query)| (base, Some(query)));
    let prefix = base.rsplit_once('/').map_or(base, |(prefix, _)| prefix);
    match query {
        Some(query) => format!("{prefix}/{database}?{query}"),
        None => format!("{prefix}/{database}"),
    }
}

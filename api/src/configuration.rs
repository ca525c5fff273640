//! Settings: `configuration/base.yaml`, then `configuration/{APP_ENVIRONMENT}.yaml`, then
//! environment variables (`APP_` prefix, `__` between levels). Secrets are `SecretString`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Everything the service is configured with.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// HTTP listener and run mode.
    pub application: ApplicationSettings,
    /// The PostgreSQL to use, or where to start a private one.
    pub database: DatabaseSettings,
    /// Command execution.
    pub commands: CommandSettings,
    /// Keys.
    pub secrets: SecretSettings,
    /// Tamper evidence: signed checkpoints of the log (ADR-0012).
    pub audit: AuditSettings,
    /// The SMS provider (ADR-0016).
    pub sms: SmsSettings,
    /// E-mail delivery.
    pub email: EmailSettings,
    /// Microsoft Entra ID (ADR-0018).
    pub entra: EntraSettings,
    /// The resolver that checks domain proofs (ADR-0025).
    pub dns: DnsSettings,
    /// Sign-in limits and the reverse proxies in front of the service (ADR-0024).
    pub limits: LimitSettings,
}

/// Limits on password guessing, per address and client, and the proxies whose forwarding
/// headers name the client (ADR-0024).
#[derive(Debug, Clone, Deserialize)]
pub struct LimitSettings {
    /// Password attempts for one address from one client in 15 minutes.
    pub password_attempts_per_address_and_client: u32,
    /// Password attempts from one client (IPv6: one /64) in 15 minutes, whatever the address.
    pub password_attempts_per_client: u32,
    /// Password attempts for one address in 15 minutes from all clients together.
    pub password_attempts_per_address: u32,
    /// Comma-separated addresses and CIDR ranges of the reverse proxies in front of the service.
    pub trusted_proxies: String,
}

impl LimitSettings {
    /// The parsed proxy list.
    ///
    /// # Errors
    /// An entry that is neither an address nor a CIDR range, naming the setting.
    pub fn trusted_proxies(&self) -> anyhow::Result<crate::http::client::TrustedProxies> {
        crate::http::client::TrustedProxies::parse(&self.trusted_proxies)
            .context("limits.trusted_proxies (APP_LIMITS__TRUSTED_PROXIES)")
    }

    /// The password limits as the sign-in use case applies them.
    pub fn sign_in(&self) -> crate::application::SignInLimits {
        crate::application::SignInLimits {
            per_address_and_client: i64::from(self.password_attempts_per_address_and_client),
            per_client: i64::from(self.password_attempts_per_client),
            per_address: i64::from(self.password_attempts_per_address),
        }
    }
}

/// The DNS resolver that reads the TXT records of domain proofs (ADR-0025).
#[derive(Debug, Clone, Deserialize)]
pub struct DnsSettings {
    /// `ip:port` of the nameserver to ask; empty: the machine's resolvers (`/etc/resolv.conf`).
    pub nameserver: String,
    /// How long one DNS query may take.
    pub timeout_ms: u64,
}

/// Microsoft Entra ID: FinteQX's multi-tenant app registration and where Microsoft lives.
#[derive(Debug, Clone, Deserialize)]
pub struct EntraSettings {
    /// The login host; each Entra tenant's authority is `{authority_base}/{tid}/v2.0`.
    pub authority_base: String,
    /// The app registration's (client) id; empty turns Entra sign-in off.
    pub client_id: String,
    /// The app registration's client secret.
    pub client_secret: SecretString,
    /// Where Microsoft sends users back after sign-in (registered on the app).
    pub redirect_uri: String,
    /// Where Microsoft sends administrators back after admin consent (registered on the app).
    pub consent_redirect_uri: String,
    /// How long one request to Microsoft may take.
    pub timeout_ms: u64,
}

/// E-mail delivery: an SMTP server, or `.eml` files when none is configured.
#[derive(Debug, Clone, Deserialize)]
pub struct EmailSettings {
    /// The SMTP server; empty writes each message as an `.eml` file into `eml_dir`.
    pub smtp_host: String,
    /// The port; 0 takes the security mode's default.
    pub smtp_port: u16,
    /// `plain`, `starttls` or `tls`.
    pub smtp_security: String,
    /// The SMTP login; empty for none.
    pub smtp_username: String,
    /// The SMTP password.
    pub smtp_password: SecretString,
    /// How long one SMTP command may take.
    pub smtp_timeout_ms: u64,
    /// Where `.eml` files go without an SMTP server; empty: `outbox/` beside the embedded database.
    pub eml_dir: String,
    /// The sender address.
    pub from_address: String,
    /// The sender name.
    pub from_name: String,
    /// Where links in e-mails point.
    pub public_base_url: String,
    /// The host part of Message-ID headers.
    pub message_id_host: String,
    /// How long a message is retried, from its first attempt, before it is dead.
    pub retry_budget_seconds: u64,
    /// How long a worker's claim on a message lasts; renewed before and during each send.
    pub lease_seconds: u64,
    /// The first retry delay's ceiling (doubled per attempt, with full jitter).
    pub backoff_base_ms: u64,
    /// The largest retry delay.
    pub backoff_cap_seconds: u64,
    /// Sends at once per worker, and the SMTP connections kept for them.
    pub concurrency: u32,
}

impl EmailSettings {
    /// Checks the delivery settings: a budget, a lease long enough to renew, a sane back-off.
    ///
    /// # Errors
    /// The first problem, naming the key and its environment variable.
    fn validate(&self) -> anyhow::Result<()> {
        if self.retry_budget_seconds == 0 {
            bail!(
                "email.retry_budget_seconds (APP_EMAIL__RETRY_BUDGET_SECONDS) must be at least 1"
            );
        }
        // The lease is renewed every third of itself while a send runs: below 3 s that is a
        // query a second per message.
        if self.lease_seconds < 3 {
            bail!("email.lease_seconds (APP_EMAIL__LEASE_SECONDS) must be at least 3");
        }
        if self.backoff_base_ms == 0 {
            bail!("email.backoff_base_ms (APP_EMAIL__BACKOFF_BASE_MS) must be at least 1");
        }
        if self.backoff_cap_seconds.saturating_mul(1000) < self.backoff_base_ms {
            bail!(
                "email.backoff_cap_seconds (APP_EMAIL__BACKOFF_CAP_SECONDS) must not be below email.backoff_base_ms (APP_EMAIL__BACKOFF_BASE_MS)"
            );
        }
        if self.concurrency == 0 {
            bail!("email.concurrency (APP_EMAIL__CONCURRENCY) must be at least 1");
        }
        Ok(())
    }
}

/// The SMS provider.
#[derive(Debug, Clone, Deserialize)]
pub struct SmsSettings {
    /// `development` (codes go to the log; refused in production) or `cm`.
    pub provider: SmsProvider,
    /// CM.com's gateway.
    pub cm_base_url: String,
    /// CM.com's product token.
    pub cm_product_token: SecretString,
    /// The sender name shown on the phone (at most 11 characters).
    pub sender: String,
    /// How long one request to the provider may take.
    pub timeout_ms: u64,
}

/// Which SMS provider sends codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmsProvider {
    /// Codes are written to the service log.
    Development,
    /// CM.com Business Messaging.
    Cm,
}

/// HTTP listener and run mode.
#[derive(Debug, Clone, Deserialize)]
pub struct ApplicationSettings {
    /// Address to listen on.
    pub host: String,
    /// Port to listen on; 0 picks a free one.
    pub port: u16,
    /// `local` or `production`.
    pub environment: Environment,
    /// Login-page lookups (`/login/options`, `/sign_in/entra`) per client address per minute;
    /// 0 switches the limit off.
    pub lookups_per_client_per_minute: u32,
}

/// The run mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Environment {
    /// A developer's machine: development keys and senders are allowed.
    Local,
    /// Production: every secret must be configured.
    Production,
}

/// The database.
#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    /// A PostgreSQL URL; empty starts the embedded server.
    pub url: SecretString,
    /// Data folder of the embedded server.
    pub embedded_dir: String,
    /// Folder of `initdb`, `pg_ctl` and `postgres`.
    pub postgres_bindir: String,
    /// Pool size.
    pub max_connections: u32,
    /// How long a request waits for a connection before the database counts as unavailable.
    pub acquire_timeout_ms: u64,
    /// The role `serve` connects as: it appends events but cannot change or remove them
    /// (ADR-0026). Migrations and the operator CLI use the role of `url`.
    pub runtime_role: String,
    /// The runtime role's password; empty where the server trusts local connections.
    pub runtime_password: SecretString,
}

/// Command execution.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct CommandSettings {
    /// Tries of a command that meets a concurrent change of its stream (at least 1).
    pub max_attempts: u32,
}

/// Signed checkpoints of the log (ADR-0012).
#[derive(Debug, Clone, Deserialize)]
pub struct AuditSettings {
    /// The Ed25519 signing key's 32-byte seed, as 64 hex digits.
    pub signing_key: SecretString,
    /// How often the service signs the running hashes that changed.
    pub checkpoint_interval_seconds: u64,
}

/// The development signing key of base.yaml, refused in production.
const DEVELOPMENT_SIGNING_KEY: &str =
    "000000000000000000000000000000000000000000000000000000000000a0d1";

impl AuditSettings {
    fn validate(&self, environment: Environment) -> anyhow::Result<()> {
        const NAME: &str = "audit.signing_key (APP_AUDIT__SIGNING_KEY)";
        let key = self.signing_key.expose_secret();
        if key.len() != 64 || !key.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            bail!("{NAME} must be 64 hex digits (a 32-byte Ed25519 seed)");
        }
        if environment == Environment::Production && key == DEVELOPMENT_SIGNING_KEY {
            bail!("{NAME} still has its development value; set it for production");
        }
        if self.checkpoint_interval_seconds == 0 {
            bail!(
                "audit.checkpoint_interval_seconds (APP_AUDIT__CHECKPOINT_INTERVAL_SECONDS) must be at least 1"
            );
        }
        Ok(())
    }
}

/// Keys for keyed hashes.
#[derive(Debug, Clone, Deserialize)]
pub struct SecretSettings {
    /// E-mail lookup hashes (the platform-wide uniqueness key).
    pub lookup_key: SecretString,
    /// Set-password link secrets.
    pub token_key: SecretString,
    /// SMS code hashes.
    pub code_key: SecretString,
    /// The master key that wraps per-person data keys (64 hex characters, 32 bytes).
    pub data_key_encryption_key: SecretString,
    /// Earlier master keys, still able to unwrap until `finteqx keys rewrap` moved every data
    /// key to the current one (ADR-0011).
    #[serde(default)]
    pub previous_data_key_encryption_keys: Vec<SecretString>,
}

const DEVELOPMENT_KEY_MARKER: &str = "development-only";
const MIN_KEY_BYTES: usize = 32;
/// The development master key of base.yaml, refused in production.
const DEVELOPMENT_MASTER_KEY: &str =
    "0000000000000000000000000000000000000000000000000000000000000d01";

impl Settings {
    /// Loads the settings from `configuration_dir` and the environment.
    ///
    /// # Errors
    /// A missing or malformed file or value, or a production run with development keys; the
    /// message names the key.
    pub fn load(configuration_dir: &Path) -> anyhow::Result<Self> {
        let environment = std::env::var("APP_ENVIRONMENT").unwrap_or_else(|_| "local".to_owned());
        let mut builder = config::Config::builder()
            .add_source(config::File::from(configuration_dir.join("base.yaml")))
            .add_source(
                config::File::from(configuration_dir.join(format!("{environment}.yaml")))
                    .required(false),
            )
            .add_source(
                config::Environment::with_prefix("APP")
                    .prefix_separator("_")
                    .separator("__"),
            )
            .set_override("application.environment", environment)?;
        if let Ok(url) = std::env::var("DATABASE_URL") {
            builder = builder.set_override("database.url", url)?;
        }
        let settings: Self = builder
            .build()?
            .try_deserialize()
            .context("invalid configuration")?;
        settings.validate()?;
        Ok(settings)
    }

    /// The folder with `base.yaml`: `APP_CONFIGURATION_DIR`, else `configuration/` beside the
    /// crate (a checkout), else `configuration/` in the working directory.
    pub fn default_dir() -> PathBuf {
        if let Ok(dir) = std::env::var("APP_CONFIGURATION_DIR") {
            return PathBuf::from(dir);
        }
        let beside_crate = Path::new(env!("CARGO_MANIFEST_DIR")).join("configuration");
        if beside_crate.join("base.yaml").exists() {
            beside_crate
        } else {
            PathBuf::from("configuration")
        }
    }

    /// Checks the settings as a whole: production refuses development keys and senders.
    ///
    /// # Errors
    /// The first problem, naming the key and its environment variable.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.commands.max_attempts == 0 {
            bail!("commands.max_attempts (APP_COMMANDS__MAX_ATTEMPTS) must be at least 1");
        }
        self.audit.validate(self.application.environment)?;
        self.limits.trusted_proxies()?;
        if self.limits.password_attempts_per_address_and_client == 0
            || self.limits.password_attempts_per_client == 0
            || self.limits.password_attempts_per_address == 0
        {
            bail!(
                "limits.password_attempts_* (APP_LIMITS__PASSWORD_ATTEMPTS_*) must be at least 1"
            );
        }
        if self.application.environment == Environment::Production
            && self.sms.provider == SmsProvider::Development
        {
            bail!(
                "sms.provider (APP_SMS__PROVIDER) is development, which writes codes to the log; configure cm for production"
            );
        }
        if self.application.environment == Environment::Production
            && self.email.smtp_host.is_empty()
        {
            bail!(
                "email.smtp_host (APP_EMAIL__SMTP_HOST) must be set in production; .eml files are for development"
            );
        }
        self.email.validate()?;
        if !self.entra.client_id.is_empty() && self.entra.client_secret.expose_secret().is_empty() {
            bail!(
                "entra.client_secret (APP_ENTRA__CLIENT_SECRET) is empty while entra.client_id is set"
            );
        }
        if self.sms.provider == SmsProvider::Cm
            && self.sms.cm_product_token.expose_secret().is_empty()
        {
            bail!("sms.cm_product_token (APP_SMS__CM_PRODUCT_TOKEN) is empty");
        }
        let keys = [
            (
                "secrets.lookup_key (APP_SECRETS__LOOKUP_KEY)",
                &self.secrets.lookup_key,
            ),
            (
                "secrets.token_key (APP_SECRETS__TOKEN_KEY)",
                &self.secrets.token_key,
            ),
            (
                "secrets.code_key (APP_SECRETS__CODE_KEY)",
                &self.secrets.code_key,
            ),
        ];
        let master = self.secrets.data_key_encryption_key.expose_secret();
        if self.application.environment == Environment::Production
            && master == DEVELOPMENT_MASTER_KEY
        {
            bail!(
                "secrets.data_key_encryption_key (APP_SECRETS__DATA_KEY_ENCRYPTION_KEY) still has its development value; \
                 set it for production"
            );
        }
        for (name, key) in keys {
            let key = key.expose_secret();
            if self.application.environment == Environment::Production {
                if key.contains(DEVELOPMENT_KEY_MARKER) {
                    bail!("{name} still has its development value; set it for production");
                }
                if key.len() < MIN_KEY_BYTES {
                    bail!("{name} must be at least {MIN_KEY_BYTES} bytes in production");
                }
            }
            if key.is_empty() {
                bail!("{name} is empty");
            }
        }
        if self.application.environment == Environment::Production
            && self.database.url.expose_secret().is_empty()
        {
            bail!(
                "database.url (DATABASE_URL) must be set in production; the embedded database is for development"
            );
        }
        Ok(())
    }
}

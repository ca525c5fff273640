//! Building the application: database (configured or embedded), migrations, state, listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use secrecy::ExposeSecret;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::net::TcpListener;

use crate::application::{Commands, Keys};
use crate::clock::SystemClock;
use crate::configuration::Settings;
use crate::embedded_postgres::{self, EmbeddedPostgres};
use crate::http::client::TrustedProxies;
use crate::keys::{AttemptCookies, CodeHasher, EmailLookup, PasswordTokens, PhoneLookup};
use crate::personal_data::PersonalDataKeys;

/// The migrations of `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub pool: PgPool,
    /// The write side.
    pub commands: Arc<Commands>,
    /// Sends verification codes (ADR-0016).
    pub sms: Arc<dyn crate::sms::SmsSender>,
    /// FinteQX's Entra ID app registration, when configured (ADR-0018).
    pub entra: Option<Arc<crate::entra::Entra>>,
    /// The per-client limit on the login page's lookups.
    pub lookups: Arc<crate::http::limits::ClientLimiter>,
    /// The reverse proxies whose forwarding headers name the client (ADR-0024).
    pub trusted_proxies: TrustedProxies,
    /// The service's own origin, the only one whose pages may change things with its cookies.
    pub own_origin: crate::http::cross_site::OwnOrigin,
    /// Reads the TXT records of domain proofs (ADR-0025).
    pub dns: Arc<crate::dns::TxtResolver>,
}

impl axum::extract::FromRef<AppState> for TrustedProxies {
    fn from_ref(state: &AppState) -> Self {
        state.trusted_proxies.clone()
    }
}

/// A database connection: a pool, and the embedded server behind it if one was started.
pub struct Database {
    /// The pool, as the owner of the schema (migrations, the operator CLI).
    pub pool: PgPool,
    /// How the owner connected, for the runtime role's pool.
    options: PgConnectOptions,
    /// The embedded server, to give up on shutdown.
    pub embedded: Option<EmbeddedPostgres>,
}

impl Database {
    /// Connects to the configured database, or starts the embedded one, and migrates it.
    ///
    /// # Errors
    /// When the database cannot be reached, started or migrated.
    pub async fn connect(settings: &Settings) -> anyhow::Result<Self> {
        let (options, embedded) = if settings.database.url.expose_secret().is_empty() {
            let dir = if settings.database.embedded_dir.is_empty() {
                embedded_postgres::default_dir()?
            } else {
                settings.database.embedded_dir.clone().into()
            };
            let bindir = (!settings.database.postgres_bindir.is_empty())
                .then(|| std::path::PathBuf::from(&settings.database.postgres_bindir));
            let server = EmbeddedPostgres::start(&dir, bindir.as_deref()).await?;
            server.ensure_database().await?;
            (
                server.connect_options(embedded_postgres::DATABASE_NAME),
                Some(server),
            )
        } else {
            let options: PgConnectOptions = settings
                .database
                .url
                .expose_secret()
                .parse()
                .context("database.url (DATABASE_URL) is not a PostgreSQL URL")?;
            (options, None)
        };
        let pool = PgPoolOptions::new()
            .max_connections(settings.database.max_connections)
            .acquire_timeout(Duration::from_millis(settings.database.acquire_timeout_ms))
            .connect_with(options.clone())
            .await
            .context("cannot connect to PostgreSQL")?;
        MIGRATOR.run(&pool).await.context("migrations failed")?;
        Ok(Self {
            pool,
            options,
            embedded,
        })
    }

    /// A pool on the same database as the runtime role (ADR-0026), for `serve`: it can append
    /// events but not update, delete or alter them.
    ///
    /// # Errors
    /// When the role cannot connect.
    pub async fn runtime_pool(&self, settings: &Settings) -> anyhow::Result<PgPool> {
        runtime_pool(&self.options, settings).await
    }

    /// Closes the pool and gives the embedded server up, if any: it stops only when this process
    /// started it and no other `finteqx` process uses it ([`EmbeddedPostgres::release`]).
    pub async fn close(self) {
        self.pool.close().await;
        if let Some(server) = self.embedded
            && let Err(error) = server.release().await
        {
            tracing::warn!(error.message = %error, error.cause_chain = %format_args!("{error:#}"), "the embedded PostgreSQL did not stop cleanly");
        }
    }
}

/// A pool as `database.runtime_role` on the database `owner` connects to (ADR-0026).
///
/// # Errors
/// When the role cannot connect.
pub async fn runtime_pool(owner: &PgConnectOptions, settings: &Settings) -> anyhow::Result<PgPool> {
    let options = owner
        .clone()
        .username(&settings.database.runtime_role)
        .password(settings.database.runtime_password.expose_secret());
    PgPoolOptions::new()
        .max_connections(settings.database.max_connections)
        .acquire_timeout(Duration::from_millis(settings.database.acquire_timeout_ms))
        .connect_with(options)
        .await
        .with_context(|| {
            format!(
                "cannot connect as the runtime role {} (database.runtime_role, APP_DATABASE__RUNTIME_ROLE)",
                settings.database.runtime_role
            )
        })
}

/// Builds the write side from settings and a pool.
///
/// # Errors
/// When a key cannot be used.
pub fn build_commands(settings: &Settings, pool: PgPool) -> anyhow::Result<Commands> {
    build_commands_with_clock(settings, pool, Arc::new(SystemClock))
}

/// Builds the write side reading the time from `clock` (tests move time forward with it).
///
/// # Errors
/// When a key cannot be used.
pub fn build_commands_with_clock(
    settings: &Settings,
    pool: PgPool,
    clock: Arc<dyn crate::clock::Clock>,
) -> anyhow::Result<Commands> {
    let keys = Keys {
        email_lookup: EmailLookup::new(&settings.secrets.lookup_key)
            .context("secrets.lookup_key")?,
        password_tokens: PasswordTokens::new(&settings.secrets.token_key)
            .context("secrets.token_key")?,
        codes: CodeHasher::new(&settings.secrets.code_key).context("secrets.code_key")?,
        phone_lookup: PhoneLookup::new(&settings.secrets.lookup_key)
            .context("secrets.lookup_key")?,
        attempt_cookies: AttemptCookies::new(&settings.secrets.token_key)
            .context("secrets.token_key")?,
        domain_challenges: crate::keys::DomainChallenges::new(&settings.secrets.token_key)
            .context("secrets.token_key")?,
    };
    let personal_data = PersonalDataKeys::new(
        pool.clone(),
        &settings.secrets.data_key_encryption_key,
        &settings.secrets.previous_data_key_encryption_keys,
    )
    .context("secrets.data_key_encryption_key (APP_SECRETS__DATA_KEY_ENCRYPTION_KEY)")?;
    Ok(Commands::new(
        pool,
        settings.commands.max_attempts,
        keys,
        Arc::new(personal_data),
        clock,
    )
    .with_sign_in_limits(settings.limits.sign_in()))
}

/// The service, bound to its port.
pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    /// Binds the listener and builds the state on an open database.
    ///
    /// # Errors
    /// When the port cannot be bound or a key cannot be used.
    pub async fn build(settings: &Settings, pool: PgPool) -> anyhow::Result<Self> {
        let address = format!(
            "{}:{}",
            settings.application.host, settings.application.port
        );
        let listener = TcpListener::bind(&address)
            .await
            .with_context(|| format!("cannot listen on {address}"))?;
        let commands = Arc::new(build_commands(settings, pool.clone())?);
        let sms = crate::sms::from_settings(&settings.sms).context("sms settings")?;
        let entra = crate::entra::Entra::from_settings(&settings.entra)
            .context("entra settings")?
            .map(Arc::new);
        Ok(Self {
            listener,
            state: AppState {
                pool,
                commands,
                sms,
                entra,
                lookups: Arc::new(crate::http::limits::ClientLimiter::per_minute(
                    settings.application.lookups_per_client_per_minute,
                )),
                trusted_proxies: settings.limits.trusted_proxies()?,
                own_origin: crate::http::cross_site::OwnOrigin::of(&settings.email.public_base_url),
                dns: Arc::new(crate::dns::TxtResolver::new(&settings.dns)?),
            },
        })
    }

    /// The write side the application serves with (workers share it).
    pub fn commands(&self) -> Arc<Commands> {
        Arc::clone(&self.state.commands)
    }

    /// The bound address (useful with port 0).
    ///
    /// # Errors
    /// When the socket has no local address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes.
    ///
    /// # Errors
    /// When serving fails.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let app = crate::http::router(self.state);
        axum::serve(
            self.listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await?;
        Ok(())
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}

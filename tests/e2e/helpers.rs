//! Test harness: a fresh, migrated database per test, the write side on it, and the service on a
//! random port.

use std::sync::LazyLock;

use chrono::Utc;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

use api::application::Commands;
use api::configuration::Settings;
use api::executor::CommandContext;
use api::startup::{Application, MIGRATOR, build_commands};
use domain::ids::TenantId;
use domain::metadata::ActorRole;
use domain::values::{DisplayName, Locale};

/// The server the tests create their databases on.
pub fn server_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

static TRACING: LazyLock<()> = LazyLock::new(|| {
    if std::env::var("TEST_LOG").is_ok() {
        let subscriber = api::telemetry::get_subscriber("debug,sqlx=warn", false, std::io::stdout);
        api::telemetry::init_subscriber(subscriber).unwrap();
    }
});

/// A fresh database with every migration applied. Test databases are named `finteqx_test_*`;
/// the test script drops leftovers of earlier runs.
pub struct TestDb {
    pub pool: PgPool,
    pub url: String,
}

impl TestDb {
    pub async fn new() -> Self {
        Self::on_server(&server_url()).await
    }

    /// A fresh database with every migration applied, on the server at `server`.
    pub async fn on_server(server: &str) -> Self {
        LazyLock::force(&TRACING);
        let name = format!("finteqx_test_{}", Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(server)
            .await
            .expect("PostgreSQL must run; see README");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
        let url = replace_database(server, &name);
        let pool = PgPoolOptions::new()
            .max_connections(20)
            .connect(&url)
            .await
            .unwrap();
        MIGRATOR.run(&pool).await.unwrap();
        Self { pool, url }
    }

    /// The settings the service would use on this database.
    pub fn settings(&self) -> Settings {
        let mut settings = Settings::load(&Settings::default_dir()).unwrap();
        settings.database.url = self.url.clone().into();
        settings.application.port = 0;
        settings
    }

    /// The write side on this database.
    pub fn commands(&self) -> Commands {
        build_commands(&self.settings(), self.pool.clone()).unwrap()
    }

    /// The write side with another retry budget.
    pub fn commands_with_attempts(&self, max_attempts: u32) -> Commands {
        let mut settings = self.settings();
        settings.commands.max_attempts = max_attempts;
        build_commands(&settings, self.pool.clone()).unwrap()
    }

    /// A pool on this database as the service's runtime role.
    pub async fn runtime_pool(&self) -> PgPool {
        let owner: sqlx::postgres::PgConnectOptions = self.url.parse().unwrap();
        api::startup::runtime_pool(&owner, &self.settings())
            .await
            .unwrap()
    }

    /// Rows in the event log.
    pub async fn event_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// Starts the service on a random port and returns its base URL.
    pub async fn spawn_app(&self) -> String {
        self.spawn_app_with(&self.settings()).await
    }

    /// Starts the service with `settings` on a random port and returns its base URL.
    /// The service runs as the runtime role, as `finteqx serve` does (ADR-0026).
    pub async fn spawn_app_with(&self, settings: &Settings) -> String {
        let application = Application::build(settings, self.runtime_pool().await)
            .await
            .unwrap();
        let address = application.local_addr().unwrap();
        tokio::spawn(application.run_until(std::future::pending()));
        format!("http://{address}")
    }
}

fn replace_database(url: &str, database: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(base, query)| (base, Some(query)));
    let prefix = base.rsplit_once('/').map_or(base, |(prefix, _)| prefix);
    match query {
        Some(query) => format!("{prefix}/{database}?{query}"),
        None => format!("{prefix}/{database}"),
    }
}

/// A context as an administrator of `tenant_id` would send it.
pub fn admin(tenant_id: TenantId) -> CommandContext {
    CommandContext {
        actor_id: format!("admin-of-{tenant_id}"),
        actor_role: ActorRole::Administrator,
        on_behalf_of: None,
        tenant_id: Some(tenant_id),
        correlation_id: Uuid::new_v4().to_string(),
        occurred_at: Utc::now(),
    }
}

/// A context as the operator CLI sends it.
pub fn operator() -> CommandContext {
    CommandContext {
        actor_id: "cli".to_owned(),
        actor_role: ActorRole::Operator,
        on_behalf_of: None,
        tenant_id: None,
        correlation_id: Uuid::new_v4().to_string(),
        occurred_at: Utc::now(),
    }
}

/// Registers a new tenant and returns its id.
pub async fn register_tenant(commands: &Commands, name: &str) -> TenantId {
    let tenant_id = TenantId::from_uuid(Uuid::now_v7());
    commands
        .register_tenant(
            &operator(),
            tenant_id,
            DisplayName::parse(name).unwrap(),
            Locale::Nl,
        )
        .await
        .unwrap();
    tenant_id
}

impl TestDb {
    /// Brings every projection up to the end of the log. Transactions of parallel tests on the
    /// same server can hold events back for a moment (ADR-0006), so this retries until every
    /// projector has passed the last committed event.
    pub async fn run_projections(&self) -> usize {
        let last: Option<i64> = sqlx::query_scalar("SELECT max(global_position) FROM events")
            .fetch_one(&self.pool)
            .await
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut applied = 0;
        loop {
            applied += ::projections::run_all_to_end(&self.pool).await.unwrap();
            let Some(last) = last else { return applied };
            let mut passed = true;
            for name in ::projections::PROJECTORS {
                passed &= ::projections::runner::wait_for(
                    &self.pool,
                    name,
                    last,
                    std::time::Duration::ZERO,
                )
                .await
                .unwrap();
            }
            if passed {
                return applied;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "projections did not reach position {last}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Asserts that every projection rebuilt from scratch equals its live tables.
    pub async fn assert_projections_verify(&self) {
        for name in ::projections::PROJECTORS {
            let report = ::projections::verify_named(&self.pool, name).await.unwrap();
            assert!(
                report.is_equal(),
                "{name}: rebuild differs from live: {:#?}",
                report.differences
            );
        }
    }
}

/// Sets `password` with the user's outstanding set-password link, as the user would.
pub async fn set_password_via_link(
    commands: &Commands,
    user_id: domain::ids::UserId,
    password: &str,
) {
    let user = commands.users().load(&user_id.to_string()).await.unwrap();
    let token = user.account().unwrap().password_token.unwrap().token_id;
    let secret = commands.keys().password_tokens.secret_for(user_id, token);
    commands
        .set_password(&operator(), &secret, password.to_owned().into())
        .await
        .unwrap();
}

/// The value of a `Set-Cookie` for `name` in a response.
pub fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|header| {
            let pair = header.split(';').next()?;
            let (key, value) = pair.split_once('=')?;
            (key == name && !value.is_empty()).then(|| value.to_owned())
        })
}

/// A PostgreSQL cluster of the test's own (`tests/support/private-cluster.sh`), on a unix socket
/// in a temporary folder; destroyed when dropped.
pub struct PrivateCluster {
    dir: std::path::PathBuf,
    /// The URL of its `postgres` database.
    pub url: String,
}

impl PrivateCluster {
    const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/support/private-cluster.sh");

    /// Initialises and starts a cluster; `next_xid` sets its transaction counter before the first
    /// start.
    pub fn start(next_xid: Option<u64>) -> Self {
        let dir = std::env::temp_dir().join(format!("finteqx-cluster-{}", Uuid::new_v4().simple()));
        let mut command = std::process::Command::new(Self::SCRIPT);
        command.arg("start").arg(&dir);
        if let Some(xid) = next_xid {
            command.arg(xid.to_string());
        }
        let output = command.output().unwrap();
        assert!(
            output.status.success(),
            "private cluster did not start: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let url = String::from_utf8(output.stdout).unwrap().trim().to_owned();
        Self { dir, url }
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = std::process::Command::new(Self::SCRIPT)
            .arg("destroy")
            .arg(&self.dir)
            .output();
    }
}

/// Proves that `tenant_id` owns its claimed `domain` with the fact a DNS check would produce
/// when the tenant's TXT record is published: for tests about what a proven domain allows. The
/// check itself runs against a real DNS server in `domain_proof`.
pub async fn prove_domain(
    commands: &Commands,
    tenant_id: TenantId,
    domain: &domain::values::DomainName,
) {
    let challenge = commands.domain_challenge(tenant_id, domain);
    commands
        .prove_domain(
            &admin(tenant_id),
            tenant_id,
            domain.clone(),
            domain::domain_claim::DomainEvidence::DnsTxt {
                record_name: challenge.record_name,
                found: vec![challenge.value.clone()],
                expected: challenge.value,
            },
        )
        .await
        .unwrap();
}

/// Claims `domain` for `tenant_id`, bound to `entra_tenant_id`, and proves it (see
/// [`prove_domain`]).
pub async fn bind_proven_domain(
    commands: &Commands,
    tenant_id: TenantId,
    domain: &domain::values::DomainName,
    entra_tenant_id: domain::ids::EntraTenantId,
) {
    commands
        .bind_domain(
            &admin(tenant_id),
            tenant_id,
            domain.clone(),
            entra_tenant_id,
        )
        .await
        .unwrap();
    prove_domain(commands, tenant_id, domain).await;
}

//! The embedded default: a private PostgreSQL started from the machine's binaries under a data
//! folder of the service's own, reachable only through a unix socket in that folder.
//!
//! PostgreSQL refuses to run as root. When the service runs as root, the server tools run as the
//! unprivileged `postgres` user (which Debian's package creates) on a folder that user owns.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use sqlx::postgres::PgConnectOptions;
use tokio::process::Command;

/// Name of the database the service uses inside the embedded server.
pub const DATABASE_NAME: &str = "finteqx";
const SUPERUSER: &str = "postgres";

/// A running private PostgreSQL.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    dir: PathBuf,
    bindir: PathBuf,
    as_postgres_user: bool,
}

impl EmbeddedPostgres {
    /// Initialises the cluster in `dir` on first use, then starts it (reusing its data).
    ///
    /// # Errors
    /// Missing binaries, a folder the server cannot own, or a server that does not start.
    pub async fn start(dir: &Path, bindir: Option<&Path>) -> anyhow::Result<Self> {
        let bindir = match bindir {
            Some(bindir) => bindir.to_path_buf(),
            None => find_bindir().await?,
        };
        let as_postgres_user = running_as_root()?;
        tokio::fs::create_dir_all(dir)
            .await
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let dir = tokio::fs::canonicalize(dir).await?;
        let server = Self {
            dir,
            bindir,
            as_postgres_user,
        };
        if server.as_postgres_user {
            server
                .run(
                    "chown",
                    &[
                        "-R".into(),
                        format!("{SUPERUSER}:"),
                        server.dir.display().to_string(),
                    ],
                    false,
                )
                .await?;
        }
        if !server.data_dir().join("PG_VERSION").exists() {
            tracing::info!(data_dir = %server.data_dir().display(), "initialising the embedded PostgreSQL cluster");
            let initdb = server.bindir.join("initdb");
            let args = [
                "-D".into(),
                server.data_dir().display().to_string(),
                "-A".into(),
                "trust".into(),
                "-U".into(),
                SUPERUSER.into(),
                "--encoding=UTF8".into(),
            ];
            server
                .run(&initdb.display().to_string(), &args, true)
                .await?;
        }
        if !server.is_running().await {
            let pg_ctl = server.bindir.join("pg_ctl").display().to_string();
            let options = format!("-k {} -c listen_addresses=''", server.dir.display());
            let args = [
                "-D".into(),
                server.data_dir().display().to_string(),
                "-l".into(),
                server.dir.join("postgres.log").display().to_string(),
                "-o".into(),
                options,
                "-w".into(),
                "start".into(),
            ];
            server
                .run(&pg_ctl, &args, true)
                .await
                .context("the embedded PostgreSQL did not start; see postgres.log in its folder")?;
        }
        tracing::info!(socket_dir = %server.dir.display(), "embedded PostgreSQL is running");
        Ok(server)
    }

    /// Connection options for `database` over the unix socket.
    pub fn connect_options(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new()
            .socket(&self.dir)
            .username(SUPERUSER)
            .database(database)
    }

    /// Creates the service's database if it does not exist yet.
    ///
    /// # Errors
    /// When the server refuses.
    pub async fn ensure_database(&self) -> anyhow::Result<()> {
        use sqlx::ConnectOptions as _;
        let mut connection = self
            .connect_options("postgres")
            .connect()
            .await
            .context("cannot reach the embedded PostgreSQL")?;
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(DATABASE_NAME)
                .fetch_one(&mut connection)
                .await?;
        if !exists {
            sqlx::query(&format!("CREATE DATABASE {DATABASE_NAME}"))
                .execute(&mut connection)
                .await?;
        }
        Ok(())
    }

    /// Stops the server (fast shutdown: clients are disconnected, data is kept).
    ///
    /// # Errors
    /// When `pg_ctl stop` fails.
    pub async fn stop(&self) -> anyhow::Result<()> {
        let pg_ctl = self.bindir.join("pg_ctl").display().to_string();
        let args = [
            "-D".into(),
            self.data_dir().display().to_string(),
            "-m".into(),
            "fast".into(),
            "-w".into(),
            "stop".into(),
        ];
        self.run(&pg_ctl, &args, true).await
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    async fn is_running(&self) -> bool {
        let pg_ctl = self.bindir.join("pg_ctl").display().to_string();
        self.run(
            &pg_ctl,
            &[
                "-D".into(),
                self.data_dir().display().to_string(),
                "status".into(),
            ],
            true,
        )
        .await
        .is_ok()
    }

    async fn run(
        &self,
        program: &str,
        args: &[String],
        as_server_user: bool,
    ) -> anyhow::Result<()> {
        let mut command = if as_server_user && self.as_postgres_user {
            let mut command = Command::new("runuser");
            command.args(["-u", SUPERUSER, "--", program]);
            command
        } else {
            Command::new(program)
        };
        let output = command
            .args(args)
            .output()
            .await
            .with_context(|| format!("cannot run {program}"))?;
        if !output.status.success() {
            bail!(
                "{program} failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    }
}

/// The default data folder: `/var/lib/finteqx/postgres` as root (the `postgres` user can reach
/// it), else `~/.local/share/finteqx/postgres`.
///
/// # Errors
/// When neither root nor `HOME` is known.
pub fn default_dir() -> anyhow::Result<PathBuf> {
    if running_as_root()? {
        return Ok(PathBuf::from("/var/lib/finteqx/postgres"));
    }
    let home =
        std::env::var_os("HOME").context("HOME is not set; set APP_DATABASE__EMBEDDED_DIR")?;
    Ok(Path::new(&home).join(".local/share/finteqx/postgres"))
}

async fn find_bindir() -> anyhow::Result<PathBuf> {
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output().await {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if output.status.success() && dir.join("initdb").exists() {
            return Ok(dir);
        }
    }
    let mut candidates: Vec<(u32, PathBuf)> = Vec::new();
    let mut entries = tokio::fs::read_dir("/usr/lib/postgresql").await.context(
        "no PostgreSQL binaries found (pg_config, /usr/lib/postgresql); install postgresql or set DATABASE_URL",
    )?;
    while let Some(entry) = entries.next_entry().await? {
        let version = entry
            .file_name()
            .to_string_lossy()
            .parse::<u32>()
            .unwrap_or(0);
        let bindir = entry.path().join("bin");
        if bindir.join("initdb").exists() {
            candidates.push((version, bindir));
        }
    }
    candidates
        .into_iter()
        .max()
        .map(|(_, dir)| dir)
        .context("no initdb under /usr/lib/postgresql/*/bin")
}

fn running_as_root() -> anyhow::Result<bool> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("cannot read /proc/self/status")?;
    let uid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().next())
        .context("no Uid line in /proc/self/status")?;
    Ok(uid == "0")
}

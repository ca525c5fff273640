//! The embedded default: a private PostgreSQL started from the machine's binaries under a data
//! folder of the service's own, reachable only through a unix socket in that folder.
//!
//! PostgreSQL refuses to run as root. When the service runs as root, the server tools run as the
//! unprivileged `postgres` user (which Debian's package creates) on a folder that user owns.
//!
//! Several `finteqx` processes share one folder: `finteqx serve`, a second instance, and every
//! operator command run beside them. Two lock files in the folder keep them from taking the
//! server away from each other:
//!
//! - [`USERS_LOCK`] is held *shared* by every process for as long as it uses the server, so the
//!   server is in use exactly while someone holds it. The kernel drops the lock of a process that
//!   dies, `kill -9` included.
//! - [`GATE_LOCK`] is held *exclusively* for the moment of deciding to start or stop, so that no
//!   process joins while another one finds the server unused and stops it, and two processes
//!   never start it at once.
//!
//! Only the process that started the server stops it, and only when it is the last user. A server
//! found running (started by another `finteqx` process, or by hand) is used and left running.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use sqlx::postgres::PgConnectOptions;
use tokio::process::Command;

/// Name of the database the service uses inside the embedded server.
pub const DATABASE_NAME: &str = "finteqx";
/// The lock file every process using the server holds shared (in the embedded folder).
pub const USERS_LOCK: &str = "finteqx.users.lock";
/// The lock file held exclusively while a process decides to start or stop the server.
pub const GATE_LOCK: &str = "finteqx.gate.lock";
const SUPERUSER: &str = "postgres";

/// A private PostgreSQL this process uses; [`EmbeddedPostgres::release`] gives it up.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    dir: PathBuf,
    bindir: PathBuf,
    as_postgres_user: bool,
    /// [`USERS_LOCK`], locked shared until released (or until the process ends).
    users: File,
    /// Whether this process started the server; only then may it stop it.
    started_here: bool,
}

/// What [`EmbeddedPostgres::release`] did with the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Released {
    /// This process started it and was its last user: it is stopped.
    Stopped,
    /// Another process started it: it keeps running for whoever did.
    LeftRunningNotOurs,
    /// Another `finteqx` process still uses it: it keeps running for that one.
    LeftRunningInUse,
}

impl EmbeddedPostgres {
    /// Initialises the cluster in `dir` on first use and starts it, or joins the server already
    /// running there; either way this process counts as one of its users until
    /// [`EmbeddedPostgres::release`].
    ///
    /// # Errors
    /// Missing binaries, a folder the server cannot own, a lock file that cannot be opened, or a
    /// server that does not start.
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
        // Wait for a process that is starting or stopping the server right now.
        let gate = lock_exclusive(open_lock(&dir.join(GATE_LOCK))?).await?;
        let users = open_lock(&dir.join(USERS_LOCK))?;
        // Nobody holds it exclusively without holding the gate, which is ours: this cannot wait.
        users
            .lock_shared()
            .with_context(|| format!("cannot lock {USERS_LOCK}"))?;
        let mut server = Self {
            dir,
            bindir,
            as_postgres_user,
            users,
            started_here: false,
        };
        let started = server.start_unless_running().await;
        drop(gate);
        started?;
        tracing::info!(
            socket_dir = %server.dir.display(),
            started_here = server.started_here,
            "embedded PostgreSQL is running"
        );
        Ok(server)
    }

    async fn start_unless_running(&mut self) -> anyhow::Result<()> {
        if self.as_postgres_user {
            self.run(
                "chown",
                &[
                    "-R".into(),
                    format!("{SUPERUSER}:"),
                    self.dir.display().to_string(),
                ],
                false,
            )
            .await?;
        }
        if !self.data_dir().join("PG_VERSION").exists() {
            tracing::info!(data_dir = %self.data_dir().display(), "initialising the embedded PostgreSQL cluster");
            let initdb = self.bindir.join("initdb");
            let args = [
                "-D".into(),
                self.data_dir().display().to_string(),
                "-A".into(),
                "trust".into(),
                "-U".into(),
                SUPERUSER.into(),
                "--encoding=UTF8".into(),
            ];
            self.run(&initdb.display().to_string(), &args, true).await?;
        }
        if self.is_running().await {
            return Ok(());
        }
        let pg_ctl = self.bindir.join("pg_ctl").display().to_string();
        let args = [
            "-D".into(),
            self.data_dir().display().to_string(),
            "-l".into(),
            self.dir.join("postgres.log").display().to_string(),
            "-o".into(),
            self.server_options(),
            "-w".into(),
            "start".into(),
        ];
        self.run(&pg_ctl, &args, true)
            .await
            .context("the embedded PostgreSQL did not start; see postgres.log in its folder")?;
        self.started_here = true;
        Ok(())
    }

    /// The server's command-line options: its socket in the folder, no TCP listener.
    pub fn server_options(&self) -> String {
        format!("-k {} -c listen_addresses=''", self.dir.display())
    }

    /// The folder the server lives in (its socket too).
    pub fn dir(&self) -> &Path {
        &self.dir
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

    /// Gives the server up: stops it (fast shutdown: clients are disconnected, data is kept) when
    /// this process started it and no other `finteqx` process uses it; else leaves it running.
    ///
    /// # Errors
    /// When a lock cannot be taken or `pg_ctl stop` fails.
    pub async fn release(self) -> anyhow::Result<Released> {
        if !self.started_here {
            return Ok(Released::LeftRunningNotOurs);
        }
        // Hold the gate so that nobody joins between the check and the stop.
        let gate = lock_exclusive(open_lock(&self.dir.join(GATE_LOCK))?).await?;
        // flock(2) converts a lock by dropping it first; drop ours and ask for the whole file.
        self.users
            .unlock()
            .with_context(|| format!("cannot unlock {USERS_LOCK}"))?;
        let released = match self.users.try_lock() {
            Ok(()) => {
                self.stop().await?;
                Released::Stopped
            }
            Err(TryLockError::WouldBlock) => {
                tracing::info!(
                    socket_dir = %self.dir.display(),
                    "another finteqx process uses the embedded PostgreSQL; leaving it running"
                );
                Released::LeftRunningInUse
            }
            Err(TryLockError::Error(error)) => {
                return Err(error).with_context(|| format!("cannot lock {USERS_LOCK}"));
            }
        };
        drop(gate);
        Ok(released)
    }

    async fn stop(&self) -> anyhow::Result<()> {
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

    /// The cluster's data folder.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The folder of the machine's server binaries (`pg_ctl`, `initdb`) this server runs with.
    pub fn bindir(&self) -> &Path {
        &self.bindir
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

fn open_lock(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))
}

/// Locks `file` exclusively, waiting on a blocking thread for whoever holds it.
async fn lock_exclusive(file: File) -> anyhow::Result<File> {
    tokio::task::spawn_blocking(move || file.lock().map(|()| file))
        .await
        .context("the lock task failed")?
        .context("cannot lock the embedded folder's gate")
}

/// Whether this process runs as root (then the server tools run as the `postgres` user).
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

//! The embedded default: a private PostgreSQL from the machine's binaries, started even when the
//! service runs as root, reused across restarts, and shared by `finteqx serve` and the operator
//! commands run beside it without one taking it away from the other.
//!
//! Also the harness the fault tests use: the real `finteqx` binary as a child process on an
//! embedded folder of its own under the temporary directory.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions as _, PgPool};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use uuid::Uuid;

use api::embedded_postgres::{DATABASE_NAME, EmbeddedPostgres, Released};
use api::startup::MIGRATOR;

/// The `finteqx` binary of this build. Cargo builds another package's binary only when that
/// package is tested too, so it is built here once per test process (a no-op when it is fresh).
/// `FINTEQX_BIN` names a binary to use instead.
pub fn binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        if let Ok(path) = std::env::var("FINTEQX_BIN") {
            return PathBuf::from(path);
        }
        // target/<profile>/deps/e2e-<hash>
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().unwrap().parent().unwrap();
        let profile = profile_dir.file_name().unwrap().to_str().unwrap();
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let mut build = std::process::Command::new(cargo);
        build
            .current_dir(workspace)
            .args(["build", "--quiet", "-p", "api", "--bin", "finteqx"])
            .env("CARGO_TARGET_DIR", profile_dir.parent().unwrap());
        match profile {
            "debug" => {}
            "release" => {
                build.arg("--release");
            }
            other => {
                build.args(["--profile", other]);
            }
        }
        let status = build.status().unwrap();
        assert!(status.success(), "cargo build --bin finteqx failed");
        profile_dir.join("finteqx")
    })
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().next())
        == Some("0")
}

/// A private folder for one test: the embedded cluster in `pg/`, e-mails in `outbox/`. Dropping
/// it stops whatever server still runs there and removes the folder.
pub struct Folder {
    pub root: PathBuf,
}

impl Folder {
    pub fn new(name: &str) -> Self {
        let root = std::env::temp_dir().join(format!("finteqx-{name}-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&root).unwrap();
        Self {
            root: std::fs::canonicalize(root).unwrap(),
        }
    }

    /// Creates the cluster now and lets it commit without waiting for the disk, so that a load
    /// measures the service rather than this machine's fsync; a committed transaction is still
    /// never lost unless the server itself crashes, which no test here does.
    pub async fn without_commit_flush(self) -> Self {
        let server = EmbeddedPostgres::start(&self.pg(), None).await.unwrap();
        let mut connection = server.connect_options("postgres").connect().await.unwrap();
        sqlx::query("ALTER SYSTEM SET synchronous_commit = off")
            .execute(&mut connection)
            .await
            .unwrap();
        drop(connection);
        assert_eq!(server.release().await.unwrap(), Released::Stopped);
        self
    }

    /// The embedded folder (`APP_DATABASE__EMBEDDED_DIR`).
    pub fn pg(&self) -> PathBuf {
        self.root.join("pg")
    }

    /// Runs `pg_ctl` on the cluster as the server's user; returns whether it succeeded.
    pub fn pg_ctl(&self, args: &[&str]) -> bool {
        let bindir = std::process::Command::new("pg_config")
            .arg("--bindir")
            .output()
            .unwrap();
        let pg_ctl = Path::new(String::from_utf8_lossy(&bindir.stdout).trim()).join("pg_ctl");
        let data = self.pg().join("data");
        let mut command = if running_as_root() {
            let mut command = std::process::Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&pg_ctl);
            command
        } else {
            std::process::Command::new(&pg_ctl)
        };
        command
            .arg("-D")
            .arg(&data)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    }

    /// Whether the embedded server runs.
    pub fn server_runs(&self) -> bool {
        self.pg_ctl(&["status"])
    }

    /// Stops the server behind everyone's back, as a crash or an operator would.
    pub fn stop_server(&self) {
        assert!(self.pg_ctl(&["-m", "fast", "-w", "stop"]), "pg_ctl stop");
    }

    /// Starts the server again with the options the service gives it.
    pub fn start_server(&self) {
        let log = self.pg().join("postgres.log");
        let options = format!("-k {} -c listen_addresses=''", self.pg().display());
        assert!(
            self.pg_ctl(&["-w", "-l", log.to_str().unwrap(), "-o", &options, "start"]),
            "pg_ctl start"
        );
    }

    /// A pool on the service's database, over the folder's socket.
    pub async fn pool(&self) -> PgPool {
        PgPoolOptions::new()
            .max_connections(4)
            .connect_with(self.connect_options())
            .await
            .unwrap()
    }

    fn connect_options(&self) -> PgConnectOptions {
        PgConnectOptions::new()
            .socket(self.pg())
            .username("postgres")
            .database(DATABASE_NAME)
    }

    /// A `finteqx` command line on this folder, as an operator would type it.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(binary());
        command
            .args(args)
            .env_remove("DATABASE_URL")
            .env_remove("APP_DATABASE__URL")
            .env_remove("APP_ENVIRONMENT")
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .env("APP_DATABASE__EMBEDDED_DIR", self.pg())
            .env("APP_EMAIL__EML_DIR", self.root.join("outbox"))
            .kill_on_drop(true);
        command
    }

    /// Runs an operator command to its end and returns its standard output; fails the test when
    /// it fails.
    pub async fn finteqx(&self, args: &[&str]) -> String {
        let output = self
            .command(args)
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "finteqx {}: {}\n{stdout}\n{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        if self.pg().join("data").exists() {
            self.pg_ctl(&["-m", "immediate", "-w", "stop"]);
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A `finteqx serve` child process on a folder; killed when dropped.
pub struct Service {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Service {
    /// Starts `finteqx serve` on a free port and waits until it serves.
    pub async fn start(folder: &Folder) -> Self {
        let mut child = folder
            .command(&["serve", "--port", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (address, mut serving) = tokio::sync::watch::channel(None::<String>);
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        for (stream, address) in [
            (
                Box::new(stdout) as Box<dyn tokio::io::AsyncRead + Send + Unpin>,
                Some(address),
            ),
            (Box::new(stderr), None),
        ] {
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(address) = &address
                        && line.contains("serving")
                        && let Some((_, port)) = line.split_once("127.0.0.1:")
                    {
                        let port: String = port.chars().take_while(char::is_ascii_digit).collect();
                        address.send_replace(Some(format!("http://127.0.0.1:{port}")));
                    }
                    log.lock().unwrap().push(line);
                }
            });
        }
        let base =
            tokio::time::timeout(Duration::from_secs(120), serving.wait_for(Option::is_some))
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "finteqx serve did not serve:\n{}",
                        log.lock().unwrap().join("\n")
                    )
                })
                .unwrap()
                .clone()
                .unwrap();
        Self { child, base, log }
    }

    /// Lines the service has logged so far.
    pub fn log_lines(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    /// The log lines from `from` on.
    pub fn log_since(&self, from: usize) -> Vec<String> {
        self.log.lock().unwrap()[from..].to_vec()
    }

    /// `kill -9`.
    pub async fn kill(&mut self) {
        self.child.kill().await.unwrap();
    }

    /// SIGTERM, then waits for a clean exit.
    pub async fn shut_down(mut self) {
        let pid = self.child.id().unwrap();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await
                .unwrap()
                .success()
        );
        let status = tokio::time::timeout(Duration::from_secs(120), self.child.wait())
            .await
            .expect("finteqx serve did not stop on SIGTERM")
            .unwrap();
        assert!(status.success(), "finteqx serve exited with {status}");
    }

    /// `GET /health`: the status and the body.
    pub async fn health(&self) -> (StatusCode, serde_json::Value) {
        let response = reqwest::get(format!("{}/health", self.base)).await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or_default())
    }

    /// Waits until `/health` answers 200 `ok`.
    pub async fn wait_healthy(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let (status, body) = self.health().await;
            if status == StatusCode::OK && body["status"] == "ok" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not healthy within {within:?}: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[tokio::test]
async fn starts_migrates_and_keeps_its_data_across_restarts() {
    let folder = Folder::new("embedded");
    let dir = folder.pg();

    let server = EmbeddedPostgres::start(&dir, None).await.unwrap();
    server.ensure_database().await.unwrap();
    let mut connection = server
        .connect_options(DATABASE_NAME)
        .connect()
        .await
        .unwrap();
    MIGRATOR.run(&mut connection).await.unwrap();
    sqlx::query("INSERT INTO password_credentials (credential_id, tenant_id, user_id, phc) VALUES ($1, $1, $1, '$argon2id$x')")
        .bind(Uuid::nil())
        .execute(&mut connection)
        .await
        .unwrap();
    drop(connection);
    assert_eq!(server.release().await.unwrap(), Released::Stopped);
    assert!(!folder.server_runs());

    let restarted = EmbeddedPostgres::start(&dir, None).await.unwrap();
    restarted.ensure_database().await.unwrap();
    let mut connection = restarted
        .connect_options(DATABASE_NAME)
        .connect()
        .await
        .unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM password_credentials")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    assert_eq!(rows, 1, "the data folder is reused");
    let listens: String = sqlx::query_scalar("SHOW listen_addresses")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    assert_eq!(listens, "", "nothing listens on the network");
    drop(connection);
    assert_eq!(restarted.release().await.unwrap(), Released::Stopped);
}

#[tokio::test]
async fn only_the_process_that_started_the_server_stops_it_and_only_as_its_last_user() {
    let folder = Folder::new("embedded-owners");
    let dir = folder.pg();

    // Given a first user who starts the server and a second who finds it running
    let first = EmbeddedPostgres::start(&dir, None).await.unwrap();
    let second = EmbeddedPostgres::start(&dir, None).await.unwrap();

    // When the first leaves while the second still uses it, it keeps running
    assert_eq!(first.release().await.unwrap(), Released::LeftRunningInUse);
    assert!(folder.server_runs());
    // and the second never stops what it did not start.
    let third = EmbeddedPostgres::start(&dir, None).await.unwrap();
    assert_eq!(
        second.release().await.unwrap(),
        Released::LeftRunningNotOurs
    );
    assert_eq!(third.release().await.unwrap(), Released::LeftRunningNotOurs);
    assert!(
        folder.server_runs(),
        "a server nobody here started is left running"
    );

    // A server stopped by hand is started by the next user, who then owns it.
    folder.stop_server();
    let fourth = EmbeddedPostgres::start(&dir, None).await.unwrap();
    assert!(folder.server_runs());
    assert_eq!(fourth.release().await.unwrap(), Released::Stopped);
    assert!(!folder.server_runs());
}

#[tokio::test]
async fn the_service_stays_healthy_beside_every_operator_command() {
    // Given `finteqx serve` on the embedded default
    let folder = Folder::new("embedded-cli");
    let service = Service::start(&folder).await;
    service.wait_healthy(Duration::from_secs(30)).await;

    // When each operator command runs beside it, the service stays healthy after each
    let registered = folder
        .finteqx(&[
            "tenants",
            "register",
            "--name",
            "Akkermans Accountants",
            "--admin-email",
            "beheer@akkermans.nl",
            "--admin-name",
            "Bea Heer",
        ])
        .await;
    let words: Vec<&str> = registered.split_whitespace().collect();
    let tenant = words[words.iter().position(|w| *w == "tenant").unwrap() + 1].to_owned();
    let admin = words[words.iter().position(|w| *w == "administrator").unwrap() + 1].to_owned();
    service.wait_healthy(Duration::from_secs(5)).await;
    let export = folder.root.join("export.ndjson");
    let export = export.to_str().unwrap();
    let verbs: Vec<Vec<&str>> = vec![
        vec!["migrate"],
        vec![
            "tokens",
            "issue",
            "--role",
            "auditor",
            "--holder",
            "Ada Auditor",
        ],
        vec!["projections", "status"],
        vec!["projections", "verify"],
        vec!["projections", "rebuild", "login_page"],
        vec!["audit", "checkpoint"],
        vec!["audit", "export", "--out", export],
        vec!["audit", "verify", export],
        vec!["audit", "public-key"],
        vec!["keys", "rewrap"],
        vec![
            "users",
            "forget",
            "--tenant",
            &tenant,
            "--user",
            &admin,
            "--reason",
            "account_closed",
        ],
    ];
    for verb in &verbs {
        folder.finteqx(verb).await;
        let (status, body) = service.health().await;
        assert_eq!(
            (status, body["status"].as_str()),
            (StatusCode::OK, Some("ok")),
            "after finteqx {}: {body}",
            verb.join(" ")
        );
        assert!(folder.server_runs(), "after finteqx {}", verb.join(" "));
    }

    // Then the service, which started the server and is its last user, stops it on shutdown.
    service.shut_down().await;
    assert!(!folder.server_runs());
}

#[tokio::test]
async fn the_service_keeps_a_server_that_an_operator_command_started() {
    // Given an operator command that started the server, still running when the service starts
    let folder = Folder::new("embedded-cli-first");
    let command = EmbeddedPostgres::start(&folder.pg(), None).await.unwrap();
    let service = Service::start(&folder).await;
    service.wait_healthy(Duration::from_secs(30)).await;

    // When the command ends
    assert_eq!(command.release().await.unwrap(), Released::LeftRunningInUse);

    // Then the service keeps its database
    assert!(folder.server_runs());
    tokio::time::sleep(Duration::from_millis(500)).await;
    service.wait_healthy(Duration::from_secs(1)).await;
    folder.finteqx(&["projections", "status"]).await;
    service.wait_healthy(Duration::from_secs(1)).await;
}

//! The local SMTP server of the delivery row: the tests' aiosmtpd server
//! (`tests/support/smtp_server.py`), started on a free port and killed when dropped.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, anyhow};

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/support/smtp_server.py"
);

/// A running SMTP server storing messages in a temporary directory.
pub struct SmtpServer {
    port: u16,
    directory: PathBuf,
    child: Child,
}

impl SmtpServer {
    /// Starts the server and waits until it accepts connections.
    ///
    /// # Errors
    /// When python3 or aiosmtpd is missing (`python3 -m pip install aiosmtpd`).
    pub fn start() -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let directory = std::env::temp_dir().join(format!(
            "finteqx-bench-smtp-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&directory)?;
        let mut child = Command::new("python3")
            .arg(SCRIPT)
            .arg(port.to_string())
            .arg(&directory)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot run python3")?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(line);
        });
        let server = Self {
            port,
            directory,
            child,
        };
        match receiver.recv_timeout(Duration::from_secs(20)) {
            Ok(line) if line.starts_with("READY") => Ok(server),
            other => Err(anyhow!(
                "the SMTP server did not start ({other:?}); is aiosmtpd installed? python3 -m pip install aiosmtpd"
            )),
        }
    }

    /// The port it listens on.
    pub const fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

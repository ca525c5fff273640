//! A real DNS server for the domain-proof tests: dnsmasq on 127.0.0.1 and a free port, started
//! per test by `tests/support/dns-server.sh` with the TXT records the test publishes, and killed
//! when dropped. Names it was not given answer NXDOMAIN.

use std::net::UdpSocket;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/support/dns-server.sh");
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The running server, killed on drop.
pub struct DnsServer {
    /// `127.0.0.1:PORT`, for `dns.nameserver`.
    pub address: String,
    child: Child,
}

impl DnsServer {
    /// Starts dnsmasq serving `records` (name, value) as TXT records and waits until it answers.
    pub async fn start(records: &[(&str, &str)]) -> Self {
        // Another test may take the port between probing and binding: then try another.
        for _ in 0..5 {
            let port = free_udp_port();
            let mut child = Command::new(SCRIPT)
                .arg(port.to_string())
                .args(
                    records
                        .iter()
                        .map(|(name, value)| format!("--txt-record={name},{value}")),
                )
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {SCRIPT}: {e}"));
            let address = format!("127.0.0.1:{port}");
            let deadline = Instant::now() + START_TIMEOUT;
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    let mut stderr = String::new();
                    if let Some(mut pipe) = child.stderr.take() {
                        let _ = pipe.read_to_string(&mut stderr).await;
                    }
                    assert!(
                        stderr.contains("Address already in use"),
                        "dnsmasq exited ({status}); install it with `apt-get install -y dnsmasq` \
                         (scripts/test does): {stderr}"
                    );
                    break;
                }
                if answers(&address) {
                    return Self { address, child };
                }
                assert!(
                    Instant::now() < deadline,
                    "dnsmasq did not answer on {address}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        panic!("no free port for dnsmasq");
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn free_udp_port() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("a free UDP port");
    socket.local_addr().expect("its address").port()
}

/// Whether a DNS server answers a TXT query at `address` (any answer will do).
fn answers(address: &str) -> bool {
    let Ok(socket) = UdpSocket::bind("127.0.0.1:0") else {
        return false;
    };
    let _ = socket.set_read_timeout(Some(Duration::from_millis(200)));
    // Header: id 0x1234, recursion desired, one question; then `ready.test. TXT IN`.
    let mut query = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in ["ready", "test"] {
        query.push(u8::try_from(label.len()).unwrap());
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 16, 0, 1]);
    if socket.send_to(&query, address).is_err() {
        return false;
    }
    let mut buffer = [0_u8; 512];
    matches!(socket.recv_from(&mut buffer), Ok((n, _)) if n >= 12 && buffer[..2] == [0x12, 0x34])
}

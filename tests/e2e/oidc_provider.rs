//! A real OpenID provider for the Entra ID tests: node `oidc-provider` (panva) with Entra-shaped
//! claims, one issuer per fake Entra tenant (`{base_url}/{tid}/v2.0`), plus Microsoft's v2
//! admin-consent endpoint. The script and its accounts are in `tests/support/oidc-provider/`.
//!
//! Sign-in is automatic: `login_hint` picks the account, consent is granted, and every
//! authorization request starts a fresh provider session. Drive it with [`browser`] and
//! [`follow_until`].

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::LOCATION;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

/// contoso: alice, her alias al, bob, mallory (e-mail claim = alice's), a guest, an unverified
/// e-mail, two consent failures and an administrator.
pub const CONTOSO_TID: &str = "11111111-1111-1111-1111-111111111111";
/// fabrikam: another alice@contoso.com (another oid, `xms_edov` false), carol, an administrator.
pub const FABRIKAM_TID: &str = "22222222-2222-2222-2222-222222222222";
/// A tenant whose administrator declines admin consent (`AADSTS65004`).
pub const DECLINING_TID: &str = "33333333-3333-3333-3333-333333333333";
pub const CLIENT_ID: &str = "test-client";
pub const CLIENT_SECRET: &str = "test-secret";
/// The sign-in callback registered at the provider.
pub const REDIRECT_URI: &str = "https://finteqx.test/sign_in/entra/callback";
/// The admin-consent callback registered at the provider.
pub const CONSENT_REDIRECT_URI: &str = "https://finteqx.test/entra/admin_consent/callback";

const TENANTS: [&str; 3] = [CONTOSO_TID, FABRIKAM_TID, DECLINING_TID];
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The provider's node process, killed on drop.
pub struct OidcProvider {
    /// The "authority base", `http://127.0.0.1:PORT`: tenant T's issuer is `{base_url}/{T}/v2.0`.
    pub base_url: String,
    child: Child,
}

impl OidcProvider {
    /// Starts the provider on a free port and waits until every tenant's discovery answers.
    pub async fn start() -> Self {
        let dir = provider_dir();
        let install_hint = format!(
            "run `npm ci --prefix tests/support/oidc-provider` (scripts/test does it); {} is {}",
            dir.join("node_modules").display(),
            if dir.join("node_modules").is_dir() {
                "present"
            } else {
                "missing"
            }
        );
        let port = {
            let listener =
                std::net::TcpListener::bind("127.0.0.1:0").expect("a free port for the provider");
            listener.local_addr().expect("the port").port()
        };
        let mut child = Command::new("node")
            .arg(dir.join("provider.mjs"))
            .current_dir(&dir)
            .env("PORT", port.to_string())
            .env(
                "REDIRECT_URIS",
                format!("{REDIRECT_URI},{CONSENT_REDIRECT_URI}"),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start node (Node.js 20+ must be on PATH): {e}"));
        let stderr = drain(&mut child);
        let mut provider = Self {
            base_url: format!("http://127.0.0.1:{port}"),
            child,
        };
        provider.wait_until_ready(&stderr, &install_hint).await;
        provider
    }

    /// Tenant `tid`'s issuer, `{base_url}/{tid}/v2.0`.
    pub fn issuer(&self, tid: &str) -> String {
        format!("{}/{tid}/v2.0", self.base_url)
    }

    async fn wait_until_ready(&mut self, stderr: &Arc<Mutex<String>>, install_hint: &str) {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(2))
            .build()
            .expect("an HTTP client");
        let deadline = Instant::now() + START_TIMEOUT;
        let mut pending: Vec<&str> = TENANTS.to_vec();
        while !pending.is_empty() {
            let url = format!(
                "{}/.well-known/openid-configuration",
                self.issuer(pending[0])
            );
            match http.get(&url).send().await {
                Ok(response) if response.status() == reqwest::StatusCode::OK => {
                    pending.remove(0);
                    continue;
                }
                _ if Instant::now() > deadline => panic!(
                    "the OpenID provider did not answer {url} within {START_TIMEOUT:?}; \
                     {install_hint}; its stderr:\n{}",
                    stderr.lock().expect("stderr").as_str()
                ),
                _ => {}
            }
            // A child that exited (e.g. without node_modules) will never answer.
            if let Ok(Some(status)) = self.child.try_wait() {
                tokio::time::sleep(Duration::from_millis(100)).await; // let stderr drain
                panic!(
                    "the OpenID provider exited at start ({status}); {install_hint}; its stderr:\n{}",
                    stderr.lock().expect("stderr").as_str()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn provider_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("support/oidc-provider")
}

/// Reads the child's stderr until it closes, so the provider never blocks on a full pipe; keeps
/// the last 64 KiB for failure messages (oidc-provider warns about Node 20 and its in-memory
/// store at every start: harmless).
fn drain(child: &mut Child) -> Arc<Mutex<String>> {
    let kept = Arc::new(Mutex::new(String::new()));
    let mut stderr = child.stderr.take().expect("piped stderr");
    let sink = Arc::clone(&kept);
    tokio::spawn(async move {
        let mut buffer = [0_u8; 4096];
        while let Ok(n) = stderr.read(&mut buffer).await {
            if n == 0 {
                break;
            }
            let mut text = sink.lock().expect("stderr");
            text.push_str(&String::from_utf8_lossy(&buffer[..n]));
            if text.len() > 64 * 1024 {
                let cut = text.len() - 64 * 1024;
                let cut = (cut..text.len())
                    .find(|i| text.is_char_boundary(*i))
                    .unwrap_or(0);
                text.replace_range(..cut, "");
            }
        }
    });
    kept
}

/// A test "browser": keeps cookies, does not follow redirects (see [`follow_until`]).
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a browser client")
}

/// GETs `start` and follows each `Location` (relative ones resolved) until one starts with
/// `stop_prefix`, and returns that URL (e.g. the callback with `code`, `state` and `iss`, or with
/// `error` and `error_description`). Panics on a non-redirect answer or after 20 hops.
pub async fn follow_until(
    browser: &reqwest::Client,
    start: &str,
    stop_prefix: &str,
) -> reqwest::Url {
    let mut url = reqwest::Url::parse(start).expect("an absolute start URL");
    for _ in 0..20 {
        let response = browser
            .get(url.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let status = response.status();
        if !status.is_redirection() {
            let body = response.text().await.unwrap_or_default();
            panic!(
                "GET {url} answered {status} instead of redirecting towards {stop_prefix}:\n{body}"
            );
        }
        let location = response
            .headers()
            .get(LOCATION)
            .unwrap_or_else(|| panic!("GET {url} answered {status} without a Location"))
            .to_str()
            .expect("an ASCII Location")
            .to_owned();
        let next = url
            .join(&location)
            .unwrap_or_else(|e| panic!("GET {url}: bad Location {location:?}: {e}"));
        if next.as_str().starts_with(stop_prefix) {
            return next;
        }
        url = next;
    }
    panic!("no redirect towards {stop_prefix} within 20 hops; last URL {url}");
}

mod smoke {
    use super::*;

    fn query(url: &reqwest::Url, name: &str) -> Option<String> {
        url.query_pairs()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    }

    /// The sign-in flows themselves run through the service's own client in `entra_sign_in`;
    /// this checks what the fixture adds beside oidc-provider.
    #[tokio::test]
    async fn provider_publishes_one_issuer_per_tenant_and_answers_admin_consent_like_microsoft() {
        let provider = OidcProvider::start().await;
        let browser = browser();
        for tenant in [CONTOSO_TID, FABRIKAM_TID, DECLINING_TID] {
            let metadata: serde_json::Value = browser
                .get(format!(
                    "{}/.well-known/openid-configuration",
                    provider.issuer(tenant)
                ))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(metadata["issuer"], provider.issuer(tenant));
        }

        // Admin consent: granted for contoso (also via /organizations), declined for the third.
        let consent = |tenant: &str| {
            reqwest::Url::parse_with_params(
                &format!("{}/{tenant}/v2.0/adminconsent", provider.base_url),
                [
                    ("client_id", CLIENT_ID),
                    ("scope", "https://graph.microsoft.com/.default"),
                    ("redirect_uri", CONSENT_REDIRECT_URI),
                    ("state", "s1"),
                ],
            )
            .unwrap()
        };
        for tenant in [CONTOSO_TID, "organizations"] {
            let back = follow_until(&browser, consent(tenant).as_str(), CONSENT_REDIRECT_URI).await;
            assert_eq!(query(&back, "admin_consent").as_deref(), Some("True"));
            assert_eq!(query(&back, "tenant").as_deref(), Some(CONTOSO_TID));
            assert_eq!(
                query(&back, "scope").as_deref(),
                Some("https://graph.microsoft.com/.default")
            );
            assert_eq!(query(&back, "state").as_deref(), Some("s1"));
            assert_eq!(query(&back, "error"), None);
        }
        let back = follow_until(
            &browser,
            consent(DECLINING_TID).as_str(),
            CONSENT_REDIRECT_URI,
        )
        .await;
        assert_eq!(query(&back, "error").as_deref(), Some("consent_required"));
        assert!(
            query(&back, "error_description")
                .unwrap()
                .starts_with("AADSTS65004: User declined"),
            "{back}"
        );
        assert_eq!(query(&back, "tenant"), None);
        assert_eq!(query(&back, "state").as_deref(), Some("s1"));
        let mut foreign = consent(CONTOSO_TID);
        foreign.set_query(Some(
            &consent(CONTOSO_TID)
                .query()
                .unwrap()
                .replace("finteqx.test", "evil.example"),
        ));
        let response = browser.get(foreign).send().await.unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::BAD_REQUEST);
    }
}

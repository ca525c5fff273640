//! E-mail delivery end to end: the delivery worker on the real PostgreSQL, sending to a real SMTP
//! server (aiosmtpd, `tests/support/smtp_server.py`) that stores each accepted message as a file.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use secrecy::SecretString;
use uuid::Uuid;

use api::application::{Commands, NewUserSignIn};
use api::email::sender::sanitise_message_id;
use api::email::{
    EmailContext, EmailParty, EmailSender, OutgoingEmail, SendFuture, SmtpSecurity, SmtpSender,
    SmtpSettings, render,
};
use api::workers::delivery::{DeliveryConfig, DeliveryRound, DeliveryWorker};
use domain::ids::{TenantId, UserId};
use domain::values::{DomainName, Locale};
use projections::notification_queue::{self, MessageKind};

use crate::helpers::{TestDb, admin, operator, register_tenant};
use crate::persistence::{entra, new_user};

const MESSAGE_ID_HOST: &str = "finteqx.test";

// ---------------------------------------------------------------------------------------------
// The SMTP server harness.

/// A real SMTP server on a free local port, storing messages in its own directory; killed on drop.
pub struct SmtpServer {
    port: u16,
    directory: PathBuf,
    delay: Duration,
    child: Option<Child>,
}

/// A stored message, minimally parsed.
#[derive(Debug, Clone)]
pub struct Mail {
    /// The `Message-ID` header, with its angle brackets.
    pub message_id: String,
    /// The `To` header.
    pub to: String,
    /// The `Subject` header, RFC 2047 encoded words decoded.
    pub subject: String,
    /// The decoded `text/plain` body.
    pub text: String,
}

impl SmtpServer {
    /// Starts the server on a free port and waits until it accepts connections.
    pub fn start() -> Self {
        Self::start_with_delay(Duration::ZERO)
    }

    /// Starts a slow server: each message is stored and answered `delay` after its data arrived.
    pub fn start_with_delay(delay: Duration) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let directory = std::env::temp_dir().join(format!(
            "finteqx-smtp-{}-{}",
            std::process::id(),
            Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&directory).unwrap();
        let mut server = Self {
            port,
            directory,
            delay,
            child: None,
        };
        server.spawn();
        server
    }

    /// The port it listens on (the same across restarts).
    pub const fn port(&self) -> u16 {
        self.port
    }

    fn spawn(&mut self) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/support/smtp_server.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(self.port.to_string())
            .arg(&self.directory)
            .arg(self.delay.as_secs_f64().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 must be installed");
        let stdout = child.stdout.take().unwrap();
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = sender.send(line);
        });
        let ready = receiver.recv_timeout(Duration::from_secs(20));
        self.child = Some(child);
        match ready {
            Ok(line) if line.starts_with("READY") => {}
            other => {
                self.stop();
                panic!(
                    "the SMTP test server did not start ({other:?}); is aiosmtpd installed? \
                     python3 -m pip install aiosmtpd"
                );
            }
        }
    }

    /// Takes the server down as for maintenance (SIGTERM: messages being stored are finished and
    /// answered, later ones refused with 421, then it exits); connections are refused until
    /// [`Self::restart`]. Killed if it has not exited within five seconds.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, keeping the stored messages.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Every stored message, in arrival order.
    pub fn messages(&self) -> Vec<Mail> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.directory)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "eml"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|path| parse_mail(&String::from_utf8_lossy(&std::fs::read(path).unwrap())))
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

type Headers = Vec<(String, String)>;

fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

/// Splits an entity into unfolded headers (names lower-cased) and its body.
fn split_entity(raw: &str) -> (Headers, &str) {
    let (head, body) = raw.split_once("\n\n").unwrap_or((raw, ""));
    let mut headers: Headers = Vec::new();
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = headers.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    (headers, body)
}

fn parse_mail(raw: &str) -> Mail {
    let raw = raw.replace("\r\n", "\n");
    let (headers, body) = split_entity(&raw);
    Mail {
        message_id: header(&headers, "message-id")
            .unwrap_or_default()
            .to_owned(),
        to: decode_words(header(&headers, "to").unwrap_or_default()),
        subject: decode_words(header(&headers, "subject").unwrap_or_default()),
        text: text_part(&headers, body).unwrap_or_default(),
    }
}

/// The decoded `text/plain` part of an entity (recursing into multiparts).
fn text_part(headers: &Headers, body: &str) -> Option<String> {
    let content_type = header(headers, "content-type").unwrap_or("text/plain");
    if content_type.to_ascii_lowercase().starts_with("multipart/") {
        let boundary = parameter(content_type, "boundary")?;
        let delimiter = format!("--{boundary}");
        return body
            .split(delimiter.as_str())
            .skip(1)
            .take_while(|part| !part.starts_with("--"))
            .find_map(|part| {
                let (part_headers, part_body) = split_entity(part.trim_start_matches('\n'));
                text_part(&part_headers, part_body)
            });
    }
    if !content_type.to_ascii_lowercase().starts_with("text/plain") {
        return None;
    }
    let encoding = header(headers, "content-transfer-encoding")
        .unwrap_or("7bit")
        .to_ascii_lowercase();
    let bytes = match encoding.as_str() {
        "quoted-printable" => quoted_printable(body),
        "base64" => base64(body),
        _ => body.as_bytes().to_vec(),
    };
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

fn parameter(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|parameter| {
        let (key, value) = parameter.trim().split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().trim_matches('"').to_owned())
    })
}

fn quoted_printable(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' {
            if bytes.get(i + 1) == Some(&b'\n') {
                i += 2;
                continue;
            }
            if let Some(hex) = text.get(i + 1..i + 3)
                && let Ok(byte) = u8::from_str_radix(hex, 16)
            {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

fn base64(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut bits, mut count) = (0_u32, 0_u32);
    for byte in text.bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => continue,
        };
        bits = (bits << 6) | u32::from(value);
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push(u8::try_from((bits >> count) & 0xFF).unwrap());
        }
    }
    out
}

/// Decodes RFC 2047 encoded words (`=?utf-8?b?…?=`, `=?utf-8?q?…?=`).
fn decode_words(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    let mut after_word = false;
    while let Some(start) = rest.find("=?") {
        let (before, candidate) = rest.split_at(start);
        if let Some((text, used)) = encoded_word(candidate) {
            if !(after_word && before.trim().is_empty()) {
                out.push_str(before);
            }
            out.push_str(&text);
            rest = &candidate[used..];
            after_word = true;
        } else {
            out.push_str(before);
            out.push_str("=?");
            rest = &candidate[2..];
            after_word = false;
        }
    }
    out.push_str(rest);
    out
}

fn encoded_word(word: &str) -> Option<(String, usize)> {
    let mut parts = word.get(2..)?.splitn(3, '?');
    let charset = parts.next()?;
    let encoding = parts.next()?;
    let remainder = parts.next()?;
    let end = remainder.find("?=")?;
    let text = &remainder[..end];
    let bytes = match encoding {
        "B" | "b" => base64(text),
        "Q" | "q" => quoted_printable(&text.replace('_', " ")),
        _ => return None,
    };
    let used = 2 + charset.len() + 1 + encoding.len() + 1 + end + 2;
    Some((String::from_utf8_lossy(&bytes).into_owned(), used))
}

// ---------------------------------------------------------------------------------------------
// Fixtures.

fn config() -> DeliveryConfig {
    DeliveryConfig {
        from: EmailParty {
            address: "noreply@finteqx.nl".into(),
            display_name: Some("Akkermans FinteQX".into()),
        },
        public_base_url: "https://app.finteqx.test".into(),
        retry_budget: Duration::from_secs(24 * 3600),
        lease: Duration::from_secs(30),
        backoff_base: Duration::from_millis(10),
        backoff_cap: Duration::from_millis(200),
        concurrency: 8,
        batch: 8,
        poll_interval: Duration::from_secs(1),
    }
}

fn smtp_sender(port: u16) -> Arc<dyn EmailSender> {
    Arc::new(
        SmtpSender::new(&SmtpSettings {
            host: "127.0.0.1".to_owned(),
            port: Some(port),
            security: SmtpSecurity::Plain,
            credentials: None,
            timeout: Duration::from_secs(5),
            message_id_host: MESSAGE_ID_HOST.to_owned(),
            connections: 8,
        })
        .unwrap(),
    )
}

/// The `Message-ID` header a queue message id becomes.
fn header_id(message_id: &str) -> String {
    format!("<{}@{MESSAGE_ID_HOST}>", sanitise_message_id(message_id))
}

struct Fixture {
    db: TestDb,
    commands: Arc<Commands>,
    tenant: TenantId,
    domain: DomainName,
}

impl Fixture {
    /// A tenant with contoso.com bound to an Entra tenant.
    async fn new() -> Self {
        let db = TestDb::new().await;
        let commands = Arc::new(db.commands());
        let tenant = register_tenant(&commands, "Akkermans Accountants").await;
        let domain = DomainName::parse("contoso.com").unwrap();
        crate::helpers::bind_proven_domain(&commands, tenant, &domain, entra(1)).await;
        Self {
            db,
            commands,
            tenant,
            domain,
        }
    }

    fn worker(&self, sender: Arc<dyn EmailSender>, config: DeliveryConfig) -> DeliveryWorker {
        DeliveryWorker::new(
            self.db.pool.clone(),
            sender,
            Arc::clone(&self.commands),
            config,
        )
    }

    /// Creates password (+ SMS) users, each queuing a welcome mail.
    async fn users(&self, users: &[(&str, Locale)]) -> Vec<UserId> {
        let mut ids = Vec::new();
        for (email, locale) in users {
            let mut user = new_user(email, NewUserSignIn::Sms);
            user.locale = *locale;
            let created = self
                .commands
                .create_user(&admin(self.tenant), self.tenant, user)
                .await
                .unwrap();
            ids.push(created.user_id);
        }
        ids
    }

    async fn link(&self, users: &[UserId]) {
        self.commands
            .link_domain_users(
                &admin(self.tenant),
                self.tenant,
                self.domain.clone(),
                users,
                false,
            )
            .await
            .unwrap();
    }

    /// Queue message ids of `kind`, with their recipients.
    async fn queued(&self, kind: MessageKind) -> BTreeMap<String, Uuid> {
        let rows: Vec<(String, Uuid)> =
            sqlx::query_as("SELECT message_id, user_id FROM notification_messages WHERE kind = $1")
                .bind(kind.as_str())
                .fetch_all(&self.db.pool)
                .await
                .unwrap();
        rows.into_iter().collect()
    }

    /// Delivery state and attempts of a message.
    async fn delivery(&self, message_id: &str) -> (String, i32) {
        sqlx::query_as("SELECT state, attempts FROM notification_deliveries WHERE message_id = $1")
            .bind(message_id)
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
    }
}

/// Rounds until one does nothing; the sum of what they did.
async fn deliver_all(worker: &DeliveryWorker) -> DeliveryRound {
    let mut total = DeliveryRound::default();
    for _ in 0..100 {
        let round = worker.deliver_due().await.unwrap();
        if round == DeliveryRound::default() {
            return total;
        }
        total.sent += round.sent;
        total.retrying += round.retrying;
        total.dead += round.dead;
    }
    panic!("delivery did not settle: {total:?}");
}

/// How often each `Message-ID` was received.
fn received(smtp: &SmtpServer) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for mail in smtp.messages() {
        *counts.entry(mail.message_id).or_insert(0) += 1;
    }
    counts
}

fn sent(count: usize) -> DeliveryRound {
    DeliveryRound {
        sent: count,
        ..DeliveryRound::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Behaviour.

#[tokio::test]
async fn linking_three_users_delivers_one_mail_each_in_their_own_language_exactly_once() {
    let smtp = SmtpServer::start();
    let f = Fixture::new().await;
    let people = [
        ("anne@contoso.com", Locale::Nl),
        ("bram@contoso.com", Locale::Nl),
        ("carol@contoso.com", Locale::En),
    ];
    let users = f.users(&people).await;
    f.db.run_projections().await;
    let worker = f.worker(smtp_sender(smtp.port()), config());
    assert_eq!(deliver_all(&worker).await, sent(3), "the welcome mails");
    let welcomes = smtp.messages().len();

    f.link(&users).await;
    f.db.run_projections().await;
    let linked = f.queued(MessageKind::Linked).await;
    assert_eq!(linked.len(), 3);
    assert_eq!(worker.deliver_due().await.unwrap(), sent(3));

    let mails = smtp.messages();
    assert_eq!(mails.len(), welcomes + 3, "exactly three more e-mails");
    for (message_id, user_id) in &linked {
        let index = users.iter().position(|u| u.as_uuid() == *user_id).unwrap();
        let (address, locale) = people[index];
        let matching: Vec<&Mail> = mails
            .iter()
            .filter(|mail| mail.message_id == header_id(message_id))
            .collect();
        assert_eq!(matching.len(), 1, "{message_id}: {mails:#?}");
        let mail = matching[0];
        assert!(mail.to.contains(address), "{mail:?}");
        match locale {
            Locale::Nl => {
                assert_eq!(mail.subject, "Je logt voortaan in met Microsoft Entra ID");
                assert!(mail.text.contains("Beste Anne de Vries"), "{}", mail.text);
                assert!(
                    mail.text
                        .contains("gekoppeld aan Microsoft Entra ID, voor het domein contoso.com")
                );
                assert!(!mail.text.contains("Dear"));
            }
            Locale::En => {
                assert_eq!(
                    mail.subject,
                    "From now on, you sign in with Microsoft Entra ID"
                );
                assert!(mail.text.contains("Dear Anne de Vries"), "{}", mail.text);
                assert!(mail.text.contains("linked your Akkermans FinteQX account to Microsoft Entra ID, for the domain contoso.com"));
                assert!(!mail.text.contains("Beste"));
            }
        }
    }

    assert_eq!(
        worker.deliver_due().await.unwrap(),
        DeliveryRound::default()
    );
    assert_eq!(smtp.messages().len(), welcomes + 3, "nothing is sent twice");
}

#[tokio::test]
async fn unlinking_delivers_a_set_password_mail_whose_link_works() {
    let smtp = SmtpServer::start();
    let f = Fixture::new().await;
    let users = f.users(&[("anne@contoso.com", Locale::Nl)]).await;
    f.link(&users).await;
    f.commands
        .unlink_domain_users(&admin(f.tenant), f.tenant, f.domain.clone(), &users, false)
        .await
        .unwrap();
    f.db.run_projections().await;
    let worker = f.worker(smtp_sender(smtp.port()), config());
    assert_eq!(
        deliver_all(&worker).await,
        sent(3),
        "welcome, linked, unlinked"
    );

    let unlinked = f.queued(MessageKind::Unlinked).await;
    let (message_id, _) = unlinked.first_key_value().unwrap();
    let mails = smtp.messages();
    let mail = mails
        .iter()
        .find(|mail| mail.message_id == header_id(message_id))
        .unwrap();
    assert!(mail.text.contains("Beste Anne de Vries"), "{}", mail.text);
    let prefix = "https://app.finteqx.test/password?token=";
    let start = mail.text.find(prefix).expect("a set-password link") + prefix.len();
    let token: String = mail.text[start..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    assert!(!token.is_empty());

    f.commands
        .set_password(
            &operator(),
            &token,
            SecretString::from("correct horse battery staple"),
        )
        .await
        .unwrap();
    let user = f
        .commands
        .users()
        .load(&users[0].to_string())
        .await
        .unwrap();
    assert!(
        f.commands
            .password_matches(&user, SecretString::from("correct horse battery staple"))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn an_smtp_outage_leaves_messages_retrying_and_delivers_each_once_after_it() {
    let mut smtp = SmtpServer::start();
    let f = Fixture::new().await;
    let users = f
        .users(&[
            ("anne@contoso.com", Locale::Nl),
            ("bram@contoso.com", Locale::Nl),
            ("carol@contoso.com", Locale::En),
        ])
        .await;
    f.db.run_projections().await;
    let worker = f.worker(smtp_sender(smtp.port()), config());
    assert_eq!(deliver_all(&worker).await, sent(3));

    smtp.stop();
    f.link(&users).await;
    f.db.run_projections().await;
    let linked = f.queued(MessageKind::Linked).await;
    let round = worker.deliver_due().await.unwrap();
    assert_eq!(
        round,
        DeliveryRound {
            retrying: 3,
            ..DeliveryRound::default()
        }
    );
    for message_id in linked.keys() {
        assert_eq!(f.delivery(message_id).await, ("retrying".to_owned(), 1));
    }

    smtp.restart();
    sqlx::query(
        "UPDATE notification_deliveries SET next_attempt_at = now() WHERE state = 'retrying'",
    )
    .execute(&f.db.pool)
    .await
    .unwrap();
    assert_eq!(deliver_all(&worker).await, sent(3));
    let counts = received(&smtp);
    for message_id in linked.keys() {
        assert_eq!(counts.get(&header_id(message_id)), Some(&1), "{counts:#?}");
        assert_eq!(f.delivery(message_id).await, ("sent".to_owned(), 2));
    }
    assert_eq!(counts.values().sum::<usize>(), 6, "none lost, none doubled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_at_once_deliver_every_message_exactly_once() {
    let smtp = SmtpServer::start();
    let f = Fixture::new().await;
    let people: Vec<(String, Locale)> = (0..24)
        .map(|i| (format!("user{i}@contoso.com"), Locale::Nl))
        .collect();
    let people: Vec<(&str, Locale)> = people.iter().map(|(e, l)| (e.as_str(), *l)).collect();
    f.users(&people).await;
    f.db.run_projections().await;
    let welcomes = f.queued(MessageKind::WelcomeSetPassword).await;
    assert_eq!(welcomes.len(), 24);

    let small_batches = DeliveryConfig {
        batch: 3,
        ..config()
    };
    let first = Arc::new(f.worker(smtp_sender(smtp.port()), small_batches.clone()));
    let second = Arc::new(f.worker(smtp_sender(smtp.port()), small_batches));
    let mut total_sent = 0;
    for _ in 0..50 {
        let (a, b) = (Arc::clone(&first), Arc::clone(&second));
        let (a, b) = tokio::join!(
            tokio::spawn(async move { a.deliver_due().await.unwrap() }),
            tokio::spawn(async move { b.deliver_due().await.unwrap() }),
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!((a.retrying, a.dead, b.retrying, b.dead), (0, 0, 0, 0));
        total_sent += a.sent + b.sent;
        if a.sent + b.sent == 0 {
            break;
        }
    }

    let counts = received(&smtp);
    let expected: BTreeSet<String> = welcomes.keys().map(|id| header_id(id)).collect();
    let doubled: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "delivered more than once: {doubled:?}");
    assert_eq!(counts.keys().cloned().collect::<BTreeSet<_>>(), expected);
    assert_eq!(total_sent, 24);
}

/// A sender that says when a send starts and then never finishes: the worker holding the claim
/// is as good as dead.
struct Hangs(Arc<tokio::sync::Notify>);

impl EmailSender for Hangs {
    fn send<'a>(&'a self, _message: &'a OutgoingEmail) -> SendFuture<'a> {
        self.0.notify_one();
        Box::pin(std::future::pending())
    }
}

#[tokio::test]
async fn a_worker_killed_mid_send_loses_its_claim_when_the_lease_expires() {
    let smtp = SmtpServer::start();
    let f = Fixture::new().await;
    f.users(&[("anne@contoso.com", Locale::Nl)]).await;
    f.db.run_projections().await;
    let welcomes = f.queued(MessageKind::WelcomeSetPassword).await;
    let (message_id, _) = welcomes.first_key_value().unwrap();

    let lease = Duration::from_secs(2);
    let short_lease = DeliveryConfig { lease, ..config() };
    let sending = Arc::new(tokio::sync::Notify::new());
    let doomed = f.worker(Arc::new(Hangs(Arc::clone(&sending))), short_lease.clone());
    // The claim is made and the send begun; then the worker is gone (its round is dropped).
    let hung = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::select! {
            round = doomed.deliver_due() => panic!("the hanging send finished: {round:?}"),
            () = sending.notified() => {}
        }
    })
    .await;
    assert!(hung.is_ok(), "the send never began");
    let claimed_at = Instant::now();
    drop(doomed);
    assert_eq!(
        f.delivery(message_id).await,
        ("sending".to_owned(), 1),
        "the attempt counts from the moment its send began"
    );

    let survivor = f.worker(smtp_sender(smtp.port()), short_lease);
    assert_eq!(
        survivor.deliver_due().await.unwrap(),
        DeliveryRound::default(),
        "the claim holds while the lease runs"
    );
    tokio::time::sleep((lease + Duration::from_millis(300)).saturating_sub(claimed_at.elapsed()))
        .await;
    assert_eq!(deliver_all(&survivor).await, sent(1));

    let counts = received(&smtp);
    assert_eq!(
        counts,
        BTreeMap::from([(header_id(message_id), 1)]),
        "exactly once, under the queue's Message-ID"
    );
    // The killed attempt counts: a message that keeps killing workers ends dead.
    assert_eq!(f.delivery(message_id).await, ("sent".to_owned(), 2));
}

#[tokio::test]
async fn a_permanently_refused_address_is_dead_with_its_attempt_recorded() {
    let smtp = SmtpServer::start();
    let f = Fixture::new().await;
    let users = f
        .users(&[
            ("refuse-anne@contoso.com", Locale::Nl),
            ("bram@contoso.com", Locale::Nl),
        ])
        .await;
    f.db.run_projections().await;
    let worker = f.worker(smtp_sender(smtp.port()), config());
    assert_eq!(
        deliver_all(&worker).await,
        DeliveryRound {
            sent: 1,
            dead: 1,
            ..DeliveryRound::default()
        }
    );

    let dead = notification_queue::messages(&f.db.pool, f.tenant, Some("dead"), 10)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1, "{dead:#?}");
    assert_eq!(dead[0].user_id, users[0]);
    assert_eq!(dead[0].kind, "welcome_set_password");
    assert_eq!(dead[0].attempts, 1, "refused for good: no retries");
    assert!(dead[0].last_error.is_some(), "{dead:#?}");
    eprintln!("dead message last_error: {:?}", dead[0].last_error);

    let mails = smtp.messages();
    assert_eq!(mails.len(), 1);
    assert!(mails[0].to.contains("bram@contoso.com"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_throughput_to_a_local_smtp_server() {
    const COUNT: usize = 100;
    let smtp = SmtpServer::start();
    let f = Fixture::new().await;
    let people: Vec<String> = (0..COUNT).map(|i| format!("user{i}@contoso.com")).collect();
    futures::stream::iter(&people)
        .for_each_concurrent(8, |email| {
            let f = &f;
            async move {
                f.users(&[(email.as_str(), Locale::Nl)]).await;
            }
        })
        .await;
    f.db.run_projections().await;

    let worker = f.worker(smtp_sender(smtp.port()), config());
    let started = Instant::now();
    assert_eq!(deliver_all(&worker).await, sent(COUNT));
    let worker_elapsed = started.elapsed();

    // The same number of sends straight through the pooled lettre transport: no queue, no
    // rendering, no database.
    let content = render(
        MessageKind::WelcomeSetPassword,
        Locale::Nl,
        &EmailContext {
            display_name: "Anne de Vries".to_owned(),
            tenant_name: "Akkermans Accountants".to_owned(),
            set_password_url: Some("https://app.finteqx.test/password?token=abc".to_owned()),
            expires_at: Some(chrono::Utc::now()),
            domain: None,
        },
    )
    .unwrap();
    // As many senders at once as the worker has, each on its own pooled connection.
    let bare = smtp_sender(smtp.port());
    let started = Instant::now();
    futures::stream::iter(0..COUNT)
        .for_each_concurrent(config().concurrency, |i| {
            let (bare, content) = (&bare, &content);
            async move {
                bare.send(&OutgoingEmail {
                    message_id: format!("bare:{i}"),
                    to: EmailParty {
                        address: format!("bare{i}@contoso.com"),
                        display_name: Some("Anne de Vries".to_owned()),
                    },
                    from: config().from,
                    content: content.clone(),
                })
                .await
                .unwrap();
            }
        })
        .await;
    let bare_elapsed = started.elapsed();

    assert_eq!(smtp.messages().len(), 2 * COUNT);
    let rate = |elapsed: Duration| {
        #[allow(clippy::cast_precision_loss, reason = "a printed rate")]
        let count = COUNT as f64;
        count / elapsed.as_secs_f64()
    };
    println!(
        "delivery throughput: worker {COUNT} messages in {worker_elapsed:?} = {:.0} msg/s; \
         bare lettre sends ({} at once) {COUNT} messages in {bare_elapsed:?} = {:.0} msg/s; ratio worker/bare = {:.2}",
        rate(worker_elapsed),
        config().concurrency,
        rate(bare_elapsed),
        rate(worker_elapsed) / rate(bare_elapsed)
    );
}

// ---------------------------------------------------------------------------------------------
// Delivery by time, leases per send, concurrency (issue 12).

impl Fixture {
    /// Queues `users × copies` welcome mails: `users` real users (created 8 at a time), then each
    /// one's queued welcome copied under new message ids, so that a burst costs the test its
    /// deliveries and not thousands of commands. Every copy is rendered, keyed and sent like the
    /// original. Returns the message ids of the burst.
    async fn burst(&self, prefix: &str, users: usize, copies: usize) -> BTreeSet<String> {
        let before: BTreeSet<String> = self
            .queued(MessageKind::WelcomeSetPassword)
            .await
            .into_keys()
            .collect();
        let people: Vec<String> = (0..users)
            .map(|i| format!("{prefix}{i}@contoso.com"))
            .collect();
        futures::stream::iter(&people)
            .for_each_concurrent(8, |email| async move {
                self.users(&[(email.as_str(), Locale::Nl)]).await;
            })
            .await;
        self.db.run_projections().await;
        let originals: Vec<String> = self
            .queued(MessageKind::WelcomeSetPassword)
            .await
            .into_keys()
            .filter(|id| !before.contains(id))
            .collect();
        assert_eq!(originals.len(), users);
        sqlx::query(
            "INSERT INTO notification_messages \
                 (message_id, tenant_id, user_id, channel, kind, data, source_position, created_at) \
             SELECT m.message_id || ':copy' || n, m.tenant_id, m.user_id, m.channel, m.kind, m.data, \
                    m.source_position, m.created_at \
             FROM notification_messages m, generate_series(1, $2) n WHERE m.message_id = ANY($1)",
        )
        .bind(&originals)
        .bind(i32::try_from(copies - 1).unwrap())
        .execute(&self.db.pool)
        .await
        .unwrap();
        let mut burst: BTreeSet<String> = originals.iter().cloned().collect();
        for original in &originals {
            burst.extend((1..copies).map(|n| format!("{original}:copy{n}")));
        }
        burst
    }

    /// How many e-mail messages are in `state` (`pending`: no delivery row yet).
    async fn count_state(&self, state: &str) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM notification_messages m \
             LEFT JOIN notification_deliveries d ON d.message_id = m.message_id \
             WHERE m.channel = 'email' AND coalesce(d.state, 'pending') = $1",
        )
        .bind(state)
        .fetch_one(&self.db.pool)
        .await
        .unwrap()
    }

    /// Waits until `count` e-mail messages are sent; panics after `timeout`.
    async fn wait_until_sent(&self, count: i64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let sent = self.count_state("sent").await;
            if sent >= count {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{sent} of {count} sent after {timeout:?}; dead: {}, retrying: {}",
                self.count_state("dead").await,
                self.count_state("retrying").await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Asserts that every message of `expected` arrived exactly once, and nothing else.
fn assert_each_received_once(smtp: &SmtpServer, expected: &BTreeSet<String>) {
    let counts = received(smtp);
    let doubled: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        doubled.is_empty(),
        "{} Message-IDs delivered more than once: {:?}",
        doubled.len(),
        doubled.iter().take(10).collect::<Vec<_>>()
    );
    let expected: BTreeSet<String> = expected.iter().map(|id| header_id(id)).collect();
    let missing: Vec<_> = expected
        .iter()
        .filter(|id| !counts.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} never arrived: {:?}",
        missing.len(),
        missing.iter().take(10).collect::<Vec<_>>()
    );
    assert_eq!(counts.len(), expected.len(), "no message outside the burst");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_smtp_outage_of_two_minutes_during_a_burst_delivers_every_mail_once_and_none_dead() {
    // Arrange: a running worker with the default 24-hour retry budget and a 10 s back-off cap.
    // Eight attempts from this base would be spent in about 40 s, well inside the outage.
    let mut smtp = SmtpServer::start();
    let f = Fixture::new().await;
    let mut burst = f.burst("before", 20, 20).await;
    let config = DeliveryConfig {
        backoff_base: Duration::from_millis(100),
        backoff_cap: Duration::from_secs(10),
        ..config()
    };
    let worker = f.worker(smtp_sender(smtp.port()), config);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run_until(async move {
        let _ = stopped.await;
    }));
    f.wait_until_sent(50, Duration::from_secs(60)).await;

    // Act: SMTP goes down mid-burst for 120 s; more mail is queued during the outage.
    smtp.stop();
    let outage = Instant::now();
    let sent_before = f.count_state("sent").await;
    burst.extend(f.burst("during", 10, 20).await);
    tokio::time::sleep(Duration::from_secs(120).saturating_sub(outage.elapsed())).await;
    let retrying = f.count_state("retrying").await;
    let dead_in_outage = f.count_state("dead").await;
    let max_attempts: i32 = sqlx::query_scalar("SELECT max(attempts) FROM notification_deliveries")
        .fetch_one(&f.db.pool)
        .await
        .unwrap();
    smtp.restart();
    let total = i64::try_from(burst.len()).unwrap();
    f.wait_until_sent(total, Duration::from_secs(60)).await;
    let _ = stop.send(());
    running.await.unwrap();

    // Assert
    eprintln!(
        "outage: {sent_before} sent before it, {retrying} retrying at its end (up to \
         {max_attempts} attempts), {total} sent after it"
    );
    assert!(sent_before < total, "the outage hit the burst mid-way");
    assert!(retrying > 0, "messages were retrying during the outage");
    assert!(
        max_attempts > 8,
        "the outage outlasted eight attempts: {max_attempts}"
    );
    assert_eq!(dead_in_outage, 0, "none dead during the outage");
    assert_eq!(f.count_state("dead").await, 0, "none dead");
    assert_eq!(f.count_state("sent").await, total, "all sent");
    assert_each_received_once(&smtp, &burst);
}

#[tokio::test]
async fn a_message_still_failing_when_its_retry_budget_is_spent_is_dead_until_support_queues_it_again()
 {
    let mut smtp = SmtpServer::start();
    smtp.stop();
    let f = Fixture::new().await;
    f.users(&[("anne@contoso.com", Locale::Nl)]).await;
    f.db.run_projections().await;
    let welcomes = f.queued(MessageKind::WelcomeSetPassword).await;
    let (message_id, _) = welcomes.first_key_value().unwrap();
    let budget = Duration::from_secs(2);
    let worker = f.worker(
        smtp_sender(smtp.port()),
        DeliveryConfig {
            retry_budget: budget,
            ..config()
        },
    );

    let started = Instant::now();
    let mut rounds = DeliveryRound::default();
    while rounds.dead == 0 {
        assert!(started.elapsed() < Duration::from_secs(15), "{rounds:?}");
        let round = worker.deliver_due().await.unwrap();
        if rounds.retrying == 0 {
            assert_eq!(round.retrying, 1, "a transient failure is retried first");
        }
        rounds.retrying += round.retrying;
        rounds.dead += round.dead;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    assert!(
        started.elapsed() >= budget,
        "dead only once the budget is spent"
    );
    let (state, attempts) = f.delivery(message_id).await;
    assert_eq!(state, "dead");
    assert!(
        attempts > 2,
        "retried until the budget was spent: {attempts}"
    );
    let last_error: String =
        sqlx::query_scalar("SELECT last_error FROM notification_deliveries WHERE message_id = $1")
            .bind(message_id)
            .fetch_one(&f.db.pool)
            .await
            .unwrap();
    assert!(
        last_error.starts_with("retry budget exhausted"),
        "{last_error}"
    );

    // Support queues it again: a fresh budget, so the next failure is retried, not dead.
    notification_queue::retry_dead(&f.db.pool, f.tenant, message_id)
        .await
        .unwrap();
    assert_eq!(
        worker.deliver_due().await.unwrap(),
        DeliveryRound {
            retrying: 1,
            ..DeliveryRound::default()
        }
    );
    smtp.restart();
    sqlx::query("UPDATE notification_deliveries SET next_attempt_at = now() WHERE message_id = $1")
        .bind(message_id)
        .execute(&f.db.pool)
        .await
        .unwrap();
    assert_eq!(deliver_all(&worker).await, sent(1));
    assert_eq!(received(&smtp).get(&header_id(message_id)), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_workers_on_a_slow_server_with_leases_shorter_than_a_batch_send_no_message_twice() {
    // Arrange: the server takes 0.4 s per message; each worker claims 10 messages per sender at
    // a time under a 1 s lease, so a claim's last messages are reached after their lease ran
    // out, and every send outlives a third of the lease (its renewal period).
    let smtp = SmtpServer::start_with_delay(Duration::from_millis(400));
    let f = Fixture::new().await;
    let burst = f.burst("slow", 10, 12).await;
    let total = i64::try_from(burst.len()).unwrap();
    let short_leases = DeliveryConfig {
        lease: Duration::from_secs(1),
        concurrency: 2,
        batch: 10,
        ..config()
    };

    // Act: three workers deliver until every message is sent.
    let workers: Vec<_> = (0..3)
        .map(|_| Arc::new(f.worker(smtp_sender(smtp.port()), short_leases.clone())))
        .collect();
    let pool = f.db.pool.clone();
    let tasks: Vec<_> = workers
        .iter()
        .map(|worker| {
            let (worker, pool) = (Arc::clone(worker), pool.clone());
            tokio::spawn(async move {
                let mut total_round = DeliveryRound::default();
                let deadline = Instant::now() + Duration::from_secs(120);
                loop {
                    let round = worker.deliver_due().await.unwrap();
                    total_round.sent += round.sent;
                    total_round.retrying += round.retrying;
                    total_round.dead += round.dead;
                    total_round.expired += round.expired;
                    let unsent: i64 = sqlx::query_scalar(
                        "SELECT count(*) FROM notification_messages m \
                         LEFT JOIN notification_deliveries d ON d.message_id = m.message_id \
                         WHERE coalesce(d.state, 'pending') <> 'sent'",
                    )
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                    if unsent == 0 {
                        return total_round;
                    }
                    assert!(Instant::now() < deadline, "{unsent} unsent after 120 s");
                    if round.is_idle() {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            })
        })
        .collect();
    let mut rounds = Vec::new();
    for task in tasks {
        rounds.push(task.await.unwrap());
    }

    // Assert
    eprintln!("three workers: {rounds:?}");
    let sent: usize = rounds.iter().map(|round| round.sent).sum();
    let expired: usize = rounds.iter().map(|round| round.expired).sum();
    assert!(
        expired > 0,
        "claims outlived their leases, so the renewal before each send was needed"
    );
    assert_eq!(rounds.iter().map(|round| round.dead).sum::<usize>(), 0);
    assert_eq!(f.count_state("sent").await, total);
    assert_eq!(sent, burst.len(), "each message sent by exactly one send");
    assert_each_received_once(&smtp, &burst);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_five_thousand_mails_drains_at_the_configured_concurrency() {
    let smtp = SmtpServer::start();
    let f = Fixture::new().await;
    let burst = f.burst("burst", 50, 100).await;
    assert_eq!(burst.len(), 5_000);
    let config = config();
    let concurrency = config.concurrency;
    let worker = f.worker(smtp_sender(smtp.port()), config);

    let started = Instant::now();
    let delivered = deliver_all(&worker).await;
    let elapsed = started.elapsed();

    assert_eq!(delivered, sent(5_000));
    assert_each_received_once(&smtp, &burst);
    #[expect(clippy::cast_precision_loss, reason = "a printed rate")]
    let rate = burst.len() as f64 / elapsed.as_secs_f64();
    println!(
        "burst: {} mails delivered in {:.1} s = {rate:.0} mails/s at concurrency {concurrency} \
         (one worker, {concurrency} SMTP connections, aiosmtpd on 127.0.0.1)",
        burst.len(),
        elapsed.as_secs_f64()
    );
}

//! Puts a rendered e-mail on the wire: over SMTP with lettre, or into an `.eml` file when no
//! SMTP server is configured. Failures say whether a retry can help.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};

use super::render::RenderedEmail;

/// The host part of `Message-ID` headers when none is configured.
pub const DEFAULT_MESSAGE_ID_HOST: &str = "finteqx.invalid";

/// A sender or recipient: an address and an optional display name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailParty {
    /// The e-mail address.
    pub address: String,
    /// The name shown beside the address.
    pub display_name: Option<String>,
}

/// One e-mail to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingEmail {
    /// The stable queue message id (`{aggregate_type}:{aggregate_id}:{sequence}`); it becomes the
    /// `Message-ID` header, so a retried send is recognisably the same message.
    pub message_id: String,
    /// The recipient.
    pub to: EmailParty,
    /// The sender.
    pub from: EmailParty,
    /// Subject and bodies.
    pub content: RenderedEmail,
}

/// The future an [`EmailSender`] returns.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SendError>> + Send + 'a>>;

/// Delivers e-mails; held by the delivery worker as `Arc<dyn EmailSender>`.
pub trait EmailSender: Send + Sync {
    /// Delivers `message` once.
    ///
    /// # Errors
    ///
    /// [`SendError::Transient`] when a later attempt may succeed, [`SendError::Permanent`] when
    /// it cannot.
    fn send<'a>(&'a self, message: &'a OutgoingEmail) -> SendFuture<'a>;
}

/// Why a delivery failed, in the failure's own terms.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryFailure {
    /// The SMTP conversation failed (connection, TLS, timeout or a refusal reply).
    #[error("smtp delivery failed")]
    Smtp(#[source] lettre::transport::smtp::Error),
    /// An address of the message is not a valid e-mail address.
    #[error("invalid {role} address")]
    Address {
        /// `to` or `from`.
        role: &'static str,
        /// The parser's error.
        #[source]
        source: lettre::address::AddressError,
    },
    /// The message could not be assembled.
    #[error("message could not be built")]
    Message(#[source] lettre::error::Error),
    /// The `.eml` file could not be written.
    #[error("could not write {path}")]
    File {
        /// The file or directory involved.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// A failed delivery, classified for the retry policy.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Retry later: connection refused, timeout, TLS trouble, a 4xx reply, a disk error.
    #[error("e-mail delivery failed, retry later")]
    Transient(#[source] DeliveryFailure),
    /// Do not retry: the server refused the message or address for good (5xx), or the message
    /// itself is invalid.
    #[error("e-mail delivery failed permanently")]
    Permanent(#[source] DeliveryFailure),
}

impl SendError {
    /// Whether a later attempt may succeed.
    pub const fn is_transient(&self) -> bool {
        matches!(self, Self::Transient(_))
    }
}

/// What an SMTP reply code means for the retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// A later attempt may succeed.
    Transient,
    /// A later attempt will fail the same way.
    Permanent,
}

/// Classifies an SMTP reply code that ended a delivery.
///
/// 4xx replies are transient (RFC 5321 §4.2.1). 5xx replies are permanent, except the
/// authentication failures of RFC 4954 (530, 534, 535, 538): those are our own configuration,
/// not the message, and every queued message would otherwise go dead until it is fixed. A code
/// that should not end a delivery at all (2xx, 3xx, garbage) is treated as transient, so the
/// worker's attempt limit decides.
pub const fn classify_reply_code(code: u16) -> Retry {
    match code {
        530 | 534 | 535 | 538 => Retry::Transient,
        500..=599 => Retry::Permanent,
        _ => Retry::Transient,
    }
}

/// Classifies a lettre SMTP error: by its reply code when the server answered, as a permanent
/// client error when lettre refused the message itself, otherwise (connection, TLS, timeout,
/// unparsable reply) as transient.
fn classify_smtp(error: lettre::transport::smtp::Error) -> SendError {
    let retry = match error.status() {
        Some(code) => classify_reply_code(u16::from(code)),
        None if error.is_client() => Retry::Permanent,
        None => Retry::Transient,
    };
    match retry {
        Retry::Transient => SendError::Transient(DeliveryFailure::Smtp(error)),
        Retry::Permanent => SendError::Permanent(DeliveryFailure::Smtp(error)),
    }
}

/// Maps a message id to characters that are safe in a file name and in a `Message-ID` local
/// part: `:` becomes `.`, anything outside `[A-Za-z0-9._-]` becomes `_`, and a leading `.` is
/// prefixed with `_` (no hidden files, no `..`).
pub fn sanitise_message_id(message_id: &str) -> String {
    let mut sanitised: String = message_id
        .chars()
        .map(|character| match character {
            ':' => '.',
            'A'..='Z' | 'a'..='z' | '0'..='9' | '.' | '_' | '-' => character,
            _ => '_',
        })
        .collect();
    if sanitised.is_empty() || sanitised.starts_with('.') {
        sanitised.insert(0, '_');
    }
    sanitised
}

/// Builds the MIME message: `multipart/alternative` with the text part first, and a
/// `Message-ID` of `<{sanitised message id}@{message_id_host}>`.
///
/// # Errors
///
/// [`SendError::Permanent`] when an address is invalid or the message cannot be assembled.
pub fn build_message(email: &OutgoingEmail, message_id_host: &str) -> Result<Message, SendError> {
    let to = mailbox(&email.to, "to")?;
    let from = mailbox(&email.from, "from")?;
    Message::builder()
        .message_id(Some(format!(
            "<{}@{message_id_host}>",
            sanitise_message_id(&email.message_id)
        )))
        .from(from)
        .to(to)
        .subject(email.content.subject.clone())
        .multipart(MultiPart::alternative_plain_html(
            email.content.text.clone(),
            email.content.html.clone(),
        ))
        .map_err(|error| SendError::Permanent(DeliveryFailure::Message(error)))
}

fn mailbox(party: &EmailParty, role: &'static str) -> Result<Mailbox, SendError> {
    let address = party
        .address
        .parse::<Address>()
        .map_err(|source| SendError::Permanent(DeliveryFailure::Address { role, source }))?;
    Ok(Mailbox::new(party.display_name.clone(), address))
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// No TLS at all (a local test server such as MailDev); default port 25.
    Plain,
    /// Plain connection upgraded with STARTTLS, which is required; default port 587.
    StartTls,
    /// TLS from the first byte (SMTPS); default port 465.
    Tls,
}

/// An SMTP login.
#[derive(Debug, Clone)]
pub struct SmtpCredentials {
    /// The user name.
    pub username: String,
    /// The password.
    pub password: SecretString,
}

/// Where and how to reach the SMTP server.
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    /// The server's host name (also the name its TLS certificate must carry).
    pub host: String,
    /// The port, when not the security mode's default.
    pub port: Option<u16>,
    /// Plain, STARTTLS or TLS.
    pub security: SmtpSecurity,
    /// The login, if the server wants one.
    pub credentials: Option<SmtpCredentials>,
    /// How long one SMTP command may take.
    pub timeout: Duration,
    /// The host part of `Message-ID` headers, such as [`DEFAULT_MESSAGE_ID_HOST`].
    pub message_id_host: String,
    /// The most connections kept open at once: as many as the delivery worker sends at once, so
    /// that no send waits for a connection and none is opened only to be closed again.
    pub connections: u32,
}

/// Why the SMTP transport could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SmtpConfigError {
    /// The TLS parameters for the host could not be built.
    #[error("invalid smtp configuration for host {host}")]
    Tls {
        /// The configured host.
        host: String,
        /// lettre's error.
        #[source]
        source: lettre::transport::smtp::Error,
    },
    /// The connection pool needs a Tokio runtime and none is running.
    #[error("the smtp sender must be built inside a tokio runtime")]
    NoRuntime(#[source] tokio::runtime::TryCurrentError),
}

/// Sends over SMTP with a pooled lettre transport.
#[derive(Clone)]
pub struct SmtpSender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    message_id_host: String,
}

impl std::fmt::Debug for SmtpSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSender")
            .field("message_id_host", &self.message_id_host)
            .finish_non_exhaustive()
    }
}

impl SmtpSender {
    /// Builds the pooled transport; no connection is made until the first send.
    ///
    /// # Errors
    ///
    /// [`SmtpConfigError::NoRuntime`] outside a Tokio runtime (the pool spawns a task), and
    /// [`SmtpConfigError::Tls`] when the TLS parameters for `host` cannot be built.
    pub fn new(settings: &SmtpSettings) -> Result<Self, SmtpConfigError> {
        tokio::runtime::Handle::try_current().map_err(SmtpConfigError::NoRuntime)?;
        let config_error = |source| SmtpConfigError::Tls {
            host: settings.host.clone(),
            source,
        };
        let mut builder = match settings.security {
            SmtpSecurity::Plain => {
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(settings.host.as_str())
            }
            SmtpSecurity::StartTls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&settings.host)
                    .map_err(config_error)?
            }
            SmtpSecurity::Tls => {
                AsyncSmtpTransport::<Tokio1Executor>::relay(&settings.host).map_err(config_error)?
            }
        };
        if let Some(port) = settings.port {
            builder = builder.port(port);
        }
        if let Some(credentials) = &settings.credentials {
            builder = builder.credentials(Credentials::new(
                credentials.username.clone(),
                credentials.password.expose_secret().to_owned(),
            ));
        }
        // lettre offers no TCP_NODELAY on its own connections, so each message's final write
        // waits for the peer's delayed ACK; concurrent connections hide that wait.
        let pool = PoolConfig::new().max_size(settings.connections.max(1));
        Ok(Self {
            transport: builder
                .timeout(Some(settings.timeout))
                .pool_config(pool)
                .build(),
            message_id_host: settings.message_id_host.clone(),
        })
    }
}

impl EmailSender for SmtpSender {
    fn send<'a>(&'a self, message: &'a OutgoingEmail) -> SendFuture<'a> {
        Box::pin(async move {
            let built = build_message(message, &self.message_id_host)?;
            self.transport
                .send(built)
                .await
                .map(drop)
                .map_err(classify_smtp)
        })
    }
}

/// Writes each e-mail to `<dir>/<sanitised message id>.eml` instead of sending it: the default
/// when no SMTP server is configured. Sending the same message again replaces the file.
#[derive(Debug, Clone)]
pub struct EmlFileSender {
    directory: PathBuf,
    message_id_host: String,
}

impl EmlFileSender {
    /// A sender writing into `directory` (created on first send).
    pub fn new(directory: impl Into<PathBuf>, message_id_host: impl Into<String>) -> Self {
        Self {
            directory: directory.into(),
            message_id_host: message_id_host.into(),
        }
    }

    /// The file `message_id` is written to.
    pub fn path_for(&self, message_id: &str) -> PathBuf {
        self.directory
            .join(format!("{}.eml", sanitise_message_id(message_id)))
    }

    async fn write(&self, message: &OutgoingEmail) -> Result<(), SendError> {
        let bytes = build_message(message, &self.message_id_host)?.formatted();
        let io_error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SendError::Transient(DeliveryFailure::File { path, source })
        };
        tokio::fs::create_dir_all(&self.directory)
            .await
            .map_err(io_error(&self.directory))?;
        let path = self.path_for(&message.message_id);
        // Write beside the target and rename over it, so a reader never sees half a message.
        let partial = path.with_extension("eml.partial");
        tokio::fs::write(&partial, bytes)
            .await
            .map_err(io_error(&partial))?;
        tokio::fs::rename(&partial, &path)
            .await
            .map_err(io_error(&path))
    }
}

impl EmailSender for EmlFileSender {
    fn send<'a>(&'a self, message: &'a OutgoingEmail) -> SendFuture<'a> {
        Box::pin(self.write(message))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn email(message_id: &str) -> OutgoingEmail {
        OutgoingEmail {
            message_id: message_id.to_owned(),
            to: EmailParty {
                address: "anne@contoso.nl".to_owned(),
                display_name: Some("Anne de Vries".to_owned()),
            },
            from: EmailParty {
                address: "noreply@finteqx.example".to_owned(),
                display_name: Some("Akkermans FinteQX".to_owned()),
            },
            content: RenderedEmail {
                subject: "Stel een nieuw wachtwoord in".to_owned(),
                text: "Plain body for Anne".to_owned(),
                html: "<p>HTML body for Anne</p>".to_owned(),
            },
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "finteqx-email-{name}-{}-{}",
            std::process::id(),
            uuid::Uuid::now_v7()
        ))
    }

    #[test]
    fn reply_codes_are_classified_for_retry() {
        let table = [
            (421, Retry::Transient), // service not available, closing channel
            (450, Retry::Transient), // mailbox unavailable (busy, greylisted)
            (451, Retry::Transient), // local error in processing
            (452, Retry::Transient), // insufficient storage
            (454, Retry::Transient), // temporary authentication failure
            (500, Retry::Permanent), // syntax error
            (501, Retry::Permanent), // syntax error in parameters
            (550, Retry::Permanent), // mailbox unavailable: address refused
            (551, Retry::Permanent), // user not local
            (552, Retry::Permanent), // exceeded storage allocation
            (553, Retry::Permanent), // mailbox name not allowed
            (554, Retry::Permanent), // transaction failed
            (530, Retry::Transient), // authentication required: our configuration
            (534, Retry::Transient), // authentication mechanism too weak
            (535, Retry::Transient), // authentication credentials invalid
            (538, Retry::Transient), // encryption required for authentication
            (250, Retry::Transient), // not a failure code: let the attempt limit decide
            (354, Retry::Transient),
            (0, Retry::Transient),
            (999, Retry::Transient),
        ];
        for (code, expected) in table {
            assert_eq!(classify_reply_code(code), expected, "{code}");
        }
    }

    #[test]
    fn message_ids_become_safe_file_names() {
        let table = [
            (
                "user:0190f2b4-7c1a-7cc0-8000-000000000001:7",
                "user.0190f2b4-7c1a-7cc0-8000-000000000001.7",
            ),
            ("../../etc/passwd", "_.._.._etc_passwd"),
            ("a b/c\\d", "a_b_c_d"),
            ("", "_"),
            (":x", "_.x"),
        ];
        for (message_id, expected) in table {
            assert_eq!(sanitise_message_id(message_id), expected, "{message_id}");
        }
    }

    #[test]
    fn message_carries_the_stable_message_id_and_both_parts() {
        let message = build_message(&email("user:abc:7"), "mail.finteqx.example").unwrap();
        let formatted = String::from_utf8(message.formatted()).unwrap();
        assert!(formatted.contains("Message-ID: <user.abc.7@mail.finteqx.example>"));
        assert!(formatted.contains("multipart/alternative"));
        assert!(formatted.contains("text/plain"));
        assert!(formatted.contains("text/html"));
    }

    #[test]
    fn invalid_recipient_address_is_a_permanent_failure() {
        let mut message = email("user:abc:7");
        message.to.address = "not an address".to_owned();
        let error = build_message(&message, DEFAULT_MESSAGE_ID_HOST).unwrap_err();
        assert!(matches!(
            error,
            SendError::Permanent(DeliveryFailure::Address { role: "to", .. })
        ));
    }

    #[tokio::test]
    async fn eml_file_sender_writes_message_id_subject_and_both_parts() {
        let directory = temp_dir("eml");
        let sender: Arc<dyn EmailSender> =
            Arc::new(EmlFileSender::new(&directory, DEFAULT_MESSAGE_ID_HOST));
        sender.send(&email("user:abc:7")).await.unwrap();

        let path = directory.join("user.abc.7.eml");
        let content = std::fs::read_to_string(&path).unwrap();
        assert!(content.contains("Message-ID: <user.abc.7@finteqx.invalid>"));
        assert!(content.contains("Subject: Stel een nieuw wachtwoord in"));
        assert!(content.contains("Plain body for Anne"));
        assert!(content.contains("<p>HTML body for Anne</p>"));
        assert!(content.contains("To: \"Anne de Vries\" <anne@contoso.nl>"));
        std::fs::remove_dir_all(&directory).unwrap();
    }

    #[tokio::test]
    async fn eml_file_sender_overwrites_the_same_message() {
        let directory = temp_dir("overwrite");
        let sender = EmlFileSender::new(&directory, DEFAULT_MESSAGE_ID_HOST);
        let mut message = email("user:abc:8");
        sender.send(&message).await.unwrap();
        message.content.text = "Second attempt".to_owned();
        sender.send(&message).await.unwrap();

        let files: Vec<_> = std::fs::read_dir(&directory).unwrap().collect();
        assert_eq!(files.len(), 1);
        let content = std::fs::read_to_string(sender.path_for("user:abc:8")).unwrap();
        assert!(content.contains("Second attempt"));
        assert!(!content.contains("Plain body for Anne"));
        std::fs::remove_dir_all(&directory).unwrap();
    }

    #[tokio::test]
    async fn smtp_connection_refused_is_transient() {
        // Bind and drop a listener to get a local port with nobody listening.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let sender = SmtpSender::new(&SmtpSettings {
            host: "127.0.0.1".to_owned(),
            port: Some(port),
            security: SmtpSecurity::Plain,
            credentials: None,
            timeout: Duration::from_secs(2),
            message_id_host: DEFAULT_MESSAGE_ID_HOST.to_owned(),
            connections: 1,
        })
        .unwrap();
        let error = sender.send(&email("user:abc:9")).await.unwrap_err();
        assert!(error.is_transient(), "{error:?}");
    }

    #[test]
    fn smtp_sender_outside_a_runtime_is_a_config_error() {
        let settings = SmtpSettings {
            host: "localhost".to_owned(),
            port: None,
            security: SmtpSecurity::Plain,
            credentials: None,
            timeout: Duration::from_secs(1),
            message_id_host: DEFAULT_MESSAGE_ID_HOST.to_owned(),
            connections: 1,
        };
        assert!(matches!(
            SmtpSender::new(&settings),
            Err(SmtpConfigError::NoRuntime(_))
        ));
    }

    #[tokio::test]
    async fn smtp_sender_builds_for_every_security_mode() {
        for security in [
            SmtpSecurity::Plain,
            SmtpSecurity::StartTls,
            SmtpSecurity::Tls,
        ] {
            let settings = SmtpSettings {
                host: "smtp.finteqx.example".to_owned(),
                port: None,
                security,
                credentials: Some(SmtpCredentials {
                    username: "mailer".to_owned(),
                    password: SecretString::from("secret"),
                }),
                timeout: Duration::from_secs(10),
                message_id_host: DEFAULT_MESSAGE_ID_HOST.to_owned(),
                connections: 8,
            };
            let sender = SmtpSender::new(&settings).unwrap();
            assert!(!format!("{sender:?}").contains("secret"));
        }
    }
}

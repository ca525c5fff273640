//! E-mail delivery, the sending side: templates embedded per message kind and locale
//! (`templates/<kind>/<locale>/{subject.txt,body.txt,body.html}.j2`), rendering with minijinja,
//! and senders (SMTP with lettre, or `.eml` files when no SMTP server is configured).

pub mod render;
pub mod sender;

pub use render::{EmailContext, RenderError, RenderedEmail, render};
pub use sender::{
    DEFAULT_MESSAGE_ID_HOST, DeliveryFailure, EmailParty, EmailSender, EmlFileSender,
    OutgoingEmail, Retry, SendError, SendFuture, SmtpConfigError, SmtpCredentials, SmtpSecurity,
    SmtpSender, SmtpSettings, classify_reply_code,
};

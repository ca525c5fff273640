//! Sending verification codes by SMS (ADR-0016): a port, the CM.com adapter for production and a
//! development sender that writes codes to the service log, refused in production.

mod cm;
mod development;

use std::future::Future;
use std::pin::Pin;

pub use cm::CmSms;
pub use development::DevelopmentSms;

use domain::values::MobileNumber;

/// One text message to send.
#[derive(Clone)]
pub struct SmsRequest {
    /// The destination.
    pub to: MobileNumber,
    /// The text (holds the code: never log it).
    pub text: String,
    /// Our stable reference (the message id), echoed in the provider's status reports.
    pub reference: String,
}

impl std::fmt::Debug for SmsRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmsRequest")
            .field("to", &self.to.masked())
            .field("reference", &self.reference)
            .finish_non_exhaustive()
    }
}

/// Why an SMS was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SmsError {
    /// The provider refused the request (4xx other than 429): retrying the same request fails too.
    #[error("the SMS provider refused the message: {0}")]
    Rejected(String),
    /// The provider was unreachable, slow or overloaded (5xx, 429, timeout): it may succeed later.
    #[error("the SMS provider is unavailable: {0}")]
    Transient(String),
}

/// A boxed, sendable future (the port is used as `Arc<dyn SmsSender>`).
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), SmsError>> + Send + 'a>>;

/// Something that delivers a text message to a mobile number.
pub trait SmsSender: Send + Sync {
    /// Hands the message to the provider. Acceptance is not delivery.
    fn send<'a>(&'a self, request: &'a SmsRequest) -> SendFuture<'a>;
}

/// The sender the settings choose.
///
/// # Errors
/// When the HTTP client cannot be built.
pub fn from_settings(
    settings: &crate::configuration::SmsSettings,
) -> Result<std::sync::Arc<dyn SmsSender>, reqwest::Error> {
    Ok(match settings.provider {
        crate::configuration::SmsProvider::Development => std::sync::Arc::new(DevelopmentSms),
        crate::configuration::SmsProvider::Cm => std::sync::Arc::new(CmSms::new(
            &settings.cm_base_url,
            settings.cm_product_token.clone(),
            &settings.sender,
            std::time::Duration::from_millis(settings.timeout_ms),
        )?),
    })
}

/// Classifies a provider's HTTP status.
pub fn classify_status(status: u16, body: &str) -> Result<(), SmsError> {
    match status {
        200..=299 => Ok(()),
        429 | 500..=599 => Err(SmsError::Transient(format!("HTTP {status}"))),
        _ => Err(SmsError::Rejected(format!(
            "HTTP {status}: {}",
            body.chars().take(200).collect::<String>()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_split_into_retryable_and_final() {
        let cases = [
            (200, "ok"),
            (202, "ok"),
            (429, "transient"),
            (500, "transient"),
            (503, "transient"),
            (400, "rejected"),
            (401, "rejected"),
            (404, "rejected"),
        ];
        for (status, expected) in cases {
            let kind = match classify_status(status, "") {
                Ok(()) => "ok",
                Err(SmsError::Transient(_)) => "transient",
                Err(SmsError::Rejected(_)) => "rejected",
            };
            assert_eq!(kind, expected, "HTTP {status}");
        }
    }

    #[test]
    fn a_request_never_prints_its_code_or_full_number() {
        let request = SmsRequest {
            to: MobileNumber::parse("06 12345678").unwrap(),
            text: "Uw code is 481516".to_owned(),
            reference: "sign_in:x:3".to_owned(),
        };
        let printed = format!("{request:?}");
        assert!(
            !printed.contains("481516") && !printed.contains("12345678"),
            "{printed}"
        );
    }
}

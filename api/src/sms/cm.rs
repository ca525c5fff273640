//! CM.com Business Messaging (Breda, NL): `POST {base}/v1.0/message` with the product token.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::{SendFuture, SmsError, SmsRequest, SmsSender, classify_status};

/// The CM.com adapter.
pub struct CmSms {
    http: reqwest::Client,
    base_url: String,
    product_token: SecretString,
    sender: String,
}

impl CmSms {
    /// An adapter for `base_url` (`https://gw.messaging.cm.com` in production; tests point it at a
    /// stub), authenticating with `product_token`, sending as `sender` (at most 11 characters),
    /// giving up on a request after `timeout`.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(
        base_url: &str,
        product_token: SecretString,
        sender: &str,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            product_token,
            sender: sender.to_owned(),
        })
    }
}

impl SmsSender for CmSms {
    fn send<'a>(&'a self, request: &'a SmsRequest) -> SendFuture<'a> {
        Box::pin(async move {
            // CM wants 00-prefixed international numbers.
            let number = format!("00{}", request.to.e164().trim_start_matches('+'));
            let body = json!({
                "messages": {
                    "msg": [{
                        "from": self.sender,
                        "to": [{"number": number}],
                        "body": {"type": "auto", "content": request.text},
                        "reference": request.reference,
                        "allowedChannels": ["SMS"],
                    }]
                }
            });
            let response = self
                .http
                .post(format!("{}/v1.0/message", self.base_url))
                .header("X-CM-PRODUCTTOKEN", self.product_token.expose_secret())
                .json(&body)
                .send()
                .await
                .map_err(|error| {
                    SmsError::Transient(if error.is_timeout() {
                        "timeout".to_owned()
                    } else {
                        "connection failed".to_owned()
                    })
                })?;
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            classify_status(status, &text)
        })
    }
}

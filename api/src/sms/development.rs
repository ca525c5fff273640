//! The embedded default: codes go to the service log instead of a phone. Refused in production.

use super::{SendFuture, SmsRequest, SmsSender};

/// Writes each text to the log, with the number masked.
#[derive(Debug, Clone, Copy, Default)]
pub struct DevelopmentSms;

impl SmsSender for DevelopmentSms {
    fn send<'a>(&'a self, request: &'a SmsRequest) -> SendFuture<'a> {
        Box::pin(async move {
            // Development only: the configuration refuses this sender in production.
            tracing::warn!(sms.to = %request.to.masked(), sms.reference = %request.reference, sms.text = %request.text, "development SMS (not sent)");
            Ok(())
        })
    }
}

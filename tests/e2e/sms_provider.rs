//! The CM.com SMS adapter against a stub of CM's HTTP API.

use std::time::Duration;

use secrecy::SecretString;
use serde_json::{Value, json};
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use api::sms::{CmSms, SmsError, SmsRequest, SmsSender};
use domain::values::MobileNumber;

fn request() -> SmsRequest {
    SmsRequest {
        to: MobileNumber::parse("06 12345678").unwrap(),
        text: "Uw FinteQX-code is 481516".to_owned(),
        reference: "sign_in:0193a5c0-1d2e-7f3a-b4c5-d6e7f8091a2b:3".to_owned(),
    }
}

fn adapter(server: &MockServer, timeout: Duration) -> CmSms {
    CmSms::new(
        &server.uri(),
        SecretString::from("test-token".to_owned()),
        "FinteQX",
        timeout,
    )
    .unwrap()
}

#[tokio::test]
async fn sends_the_code_to_the_00_prefixed_number_with_the_product_token() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1.0/message"))
        .and(header("X-CM-PRODUCTTOKEN", "test-token"))
        .and(body_partial_json(json!({"messages": {"msg": [{"to": [{"number": "0031612345678"}], "from": "FinteQX"}]}})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"errorCode": 0})))
        .expect(1)
        .mount(&server)
        .await;

    adapter(&server, Duration::from_secs(5))
        .send(&request())
        .await
        .unwrap();

    let received = server.received_requests().await.unwrap();
    let body: Value = serde_json::from_slice(&received[0].body).unwrap();
    let message = &body["messages"]["msg"][0];
    assert_eq!(message["body"]["content"], "Uw FinteQX-code is 481516");
    assert_eq!(message["reference"], request().reference);
    assert_eq!(message["allowedChannels"], json!(["SMS"]));
    server.verify().await;
}

#[tokio::test]
async fn overload_and_outages_are_transient_and_refusals_are_final() {
    let cases = [
        (429, "transient"),
        (500, "transient"),
        (503, "transient"),
        (400, "rejected"),
        (401, "rejected"),
    ];
    for (status, expected) in cases {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(status))
            .mount(&server)
            .await;
        let kind = match adapter(&server, Duration::from_secs(5))
            .send(&request())
            .await
        {
            Ok(()) => "accepted",
            Err(SmsError::Transient(_)) => "transient",
            Err(SmsError::Rejected(_)) => "rejected",
        };
        assert_eq!(kind, expected, "HTTP {status}");
    }
}

#[tokio::test]
async fn a_slow_provider_times_out_as_transient() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(2)))
        .mount(&server)
        .await;
    let result = adapter(&server, Duration::from_millis(200))
        .send(&request())
        .await;
    assert!(
        matches!(result, Err(SmsError::Transient(ref reason)) if reason == "timeout"),
        "{result:?}"
    );
}

#[tokio::test]
async fn an_unreachable_provider_is_transient() {
    // A port nothing listens on any more.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let uri = format!("http://{closed}");
    let cm = CmSms::new(
        &uri,
        SecretString::from("t".to_owned()),
        "FinteQX",
        Duration::from_secs(2),
    )
    .unwrap();
    assert!(matches!(
        cm.send(&request()).await,
        Err(SmsError::Transient(_))
    ));
}

#[test]
fn production_refuses_the_development_sms_sender() {
    let mut settings =
        api::configuration::Settings::load(&api::configuration::Settings::default_dir()).unwrap();
    settings.application.environment = api::configuration::Environment::Production;
    settings.database.url = SecretString::from("postgres://db.internal/finteqx".to_owned());
    for key in [
        &mut settings.secrets.lookup_key,
        &mut settings.secrets.token_key,
        &mut settings.secrets.code_key,
    ] {
        *key = SecretString::from("p".repeat(48));
    }
    settings.secrets.data_key_encryption_key = SecretString::from("ab".repeat(32));
    settings.audit.signing_key = SecretString::from("cd".repeat(32));
    settings.email.smtp_host = "smtp.finteqx.internal".to_owned();

    let refused = settings.validate().unwrap_err().to_string();
    assert!(
        refused.contains("sms.provider (APP_SMS__PROVIDER)"),
        "{refused}"
    );
    settings.sms.provider = api::configuration::SmsProvider::Cm;
    let refused = settings.validate().unwrap_err().to_string();
    assert!(refused.contains("APP_SMS__CM_PRODUCT_TOKEN"), "{refused}");
    settings.sms.cm_product_token = SecretString::from("token".to_owned());
    settings.validate().unwrap();
}

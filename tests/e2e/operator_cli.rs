//! The operator CLI's tenant provisioning and staff tokens.

use reqwest::StatusCode;

use api::http::auth::{StaffRole, issue_staff_token, revoke_staff_token};
use domain::user::UserEvent;
use domain::values::Role;

use crate::helpers::TestDb;

#[tokio::test]
async fn provisioning_creates_a_tenant_and_its_first_administrator() {
    let db = TestDb::new().await;
    let commands = db.commands();

    let (tenant, admin) = api::cli::register_tenant(
        &commands,
        "Akkermans Accountants",
        "nl",
        "beheer@akkermans.nl",
        "Bea Heer",
    )
    .await
    .unwrap();

    let user = commands.users().load(&admin.to_string()).await.unwrap();
    let account = user.account_in(tenant).unwrap();
    assert_eq!(account.role, Role::Administrator);
    let history = commands
        .users()
        .load_events(&admin.to_string())
        .await
        .unwrap();
    assert!(
        history
            .iter()
            .any(|e| matches!(e.payload, UserEvent::PasswordTokenIssued { .. })),
        "a welcome link is issued"
    );
    assert_eq!(history[0].metadata["actor_role"], "operator");
    let bad = api::cli::register_tenant(&commands, "X", "de", "a@contoso.com", "A").await;
    assert!(bad.unwrap_err().to_string().contains("--locale"));
}

#[tokio::test]
async fn a_revoked_staff_token_no_longer_opens_anything() {
    let db = TestDb::new().await;
    let commands = db.commands();
    let (tenant, _) = api::cli::register_tenant(
        &commands,
        "Akkermans Accountants",
        "nl",
        "beheer@akkermans.nl",
        "Bea Heer",
    )
    .await
    .unwrap();
    db.run_projections().await;
    let base = db.spawn_app().await;
    let (token_id, secret) = issue_staff_token(&db.pool, StaffRole::Support, "Sam Support")
        .await
        .unwrap();
    let stored: Vec<u8> =
        sqlx::query_scalar("SELECT token_hash FROM staff_tokens WHERE token_id = $1")
            .bind(token_id)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_ne!(stored, secret.as_bytes(), "only a hash is stored");
    let settings = format!("{base}/tenants/{tenant}/settings");
    let client = reqwest::Client::new();

    assert_eq!(
        client
            .get(&settings)
            .bearer_auth(&secret)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert!(revoke_staff_token(&db.pool, token_id).await.unwrap());
    assert_eq!(
        client
            .get(&settings)
            .bearer_auth(&secret)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert!(
        !revoke_staff_token(&db.pool, token_id).await.unwrap(),
        "revoking twice reports it"
    );
}

#[tokio::test]
async fn readiness_and_metrics_report_the_projectors() {
    let db = TestDb::new().await;
    let commands = db.commands();
    api::cli::register_tenant(
        &commands,
        "Akkermans Accountants",
        "nl",
        "beheer@akkermans.nl",
        "Bea Heer",
    )
    .await
    .unwrap();
    let base = db.spawn_app().await;
    let client = reqwest::Client::new();

    // Nothing projected yet: a small lag is still ready.
    assert_eq!(
        client
            .get(format!("{base}/ready"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("finteqx_projector_lag_events{projector=\"login_page\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("finteqx_projector_stopped{projector=\"settings_screen\"} 0"),
        "{metrics}"
    );
    db.run_projections().await;
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("finteqx_projector_lag_events{projector=\"login_page\"} 0"),
        "{metrics}"
    );
}

#[tokio::test]
async fn support_finds_an_account_by_address_and_the_lookup_is_recorded() {
    let db = TestDb::new().await;
    let commands = db.commands();
    let (tenant, admin) = api::cli::register_tenant(
        &commands,
        "Akkermans Accountants",
        "nl",
        "beheer@akkermans.nl",
        "Bea Heer",
    )
    .await
    .unwrap();
    db.run_projections().await;
    let base = db.spawn_app().await;
    let (token_id, secret) = issue_staff_token(&db.pool, StaffRole::Support, "Sam Support")
        .await
        .unwrap();
    let (_, auditor) = issue_staff_token(&db.pool, StaffRole::Auditor, "Ada Auditor")
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let lookup = |token: String, email: &'static str| {
        let client = client.clone();
        let url = format!("{base}/support/user_lookup");
        async move {
            client
                .post(url)
                .bearer_auth(token)
                .json(&serde_json::json!({"email": email}))
                .send()
                .await
                .unwrap()
        }
    };

    let found = lookup(secret.clone(), "Beheer@Akkermans.nl").await;
    assert_eq!(found.status(), StatusCode::OK);
    let body: serde_json::Value = found.json().await.unwrap();
    assert_eq!(
        (body["tenant_id"].as_str(), body["user_id"].as_str()),
        (
            Some(tenant.to_string().as_str()),
            Some(admin.to_string().as_str())
        )
    );
    assert_eq!(
        lookup(secret, "nobody@akkermans.nl").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        lookup(auditor, "beheer@akkermans.nl").await.status(),
        StatusCode::FORBIDDEN
    );
    let recorded: (uuid::Uuid, uuid::Uuid, String) =
        sqlx::query_as("SELECT token_id, user_id, route FROM support_reads WHERE tenant_id = $1")
            .bind(tenant.as_uuid())
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        recorded,
        (token_id, admin.as_uuid(), "/support/user_lookup".to_owned())
    );
}

#[tokio::test]
async fn support_queues_a_dead_message_again_and_only_a_dead_one() {
    let db = TestDb::new().await;
    let commands = db.commands();
    let (tenant, admin) = api::cli::register_tenant(
        &commands,
        "Akkermans Accountants",
        "nl",
        "beheer@akkermans.nl",
        "Bea Heer",
    )
    .await
    .unwrap();
    let (other, _) =
        api::cli::register_tenant(&commands, "Andere BV", "en", "beheer@andere.nl", "Ann Der")
            .await
            .unwrap();
    db.run_projections().await;
    let message: String =
        sqlx::query_scalar("SELECT message_id FROM notification_messages WHERE user_id = $1")
            .bind(admin.as_uuid())
            .fetch_one(&db.pool)
            .await
            .unwrap();
    // The delivery worker gave up on it.
    sqlx::query("INSERT INTO notification_deliveries (message_id, state, attempts, last_error) VALUES ($1, 'dead', 8, 'refused')")
        .bind(&message)
        .execute(&db.pool)
        .await
        .unwrap();
    let base = db.spawn_app().await;
    let (_, secret) = issue_staff_token(&db.pool, StaffRole::Support, "Sam Support")
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let retry = |tenant: domain::ids::TenantId, message: String| {
        let client = client.clone();
        let (base, secret) = (base.clone(), secret.clone());
        async move {
            client
                .post(format!(
                    "{base}/tenants/{tenant}/notifications/{message}/retry"
                ))
                .bearer_auth(secret)
                .send()
                .await
                .unwrap()
                .status()
        }
    };

    assert_eq!(
        retry(other, message.clone()).await,
        StatusCode::NOT_FOUND,
        "another tenant's message is missing"
    );
    assert_eq!(retry(tenant, message.clone()).await, StatusCode::OK);
    let (state, attempts): (String, i32) =
        sqlx::query_as("SELECT state, attempts FROM notification_deliveries WHERE message_id = $1")
            .bind(&message)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!((state.as_str(), attempts), ("pending", 0));
    assert_eq!(
        retry(tenant, message.clone()).await,
        StatusCode::CONFLICT,
        "a pending message is not retried"
    );
    assert_eq!(
        retry(tenant, "user:nothing:1".to_owned()).await,
        StatusCode::NOT_FOUND
    );
    let recorded: i64 =
        sqlx::query_scalar("SELECT count(*) FROM support_reads WHERE route LIKE '%/retry'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert!(recorded >= 2, "support's retries are recorded");
}

#[tokio::test]
async fn a_database_outage_is_a_retryable_503_problem() {
    let db = TestDb::new().await;
    let commands = db.commands();
    let (tenant, _) = api::cli::register_tenant(
        &commands,
        "Akkermans Accountants",
        "nl",
        "beheer@akkermans.nl",
        "Bea Heer",
    )
    .await
    .unwrap();
    let (_, secret) = issue_staff_token(&db.pool, StaffRole::Support, "Sam Support")
        .await
        .unwrap();
    let runtime = db.runtime_pool().await;
    let application = api::startup::Application::build(&db.settings(), runtime.clone())
        .await
        .unwrap();
    let base = format!("http://{}", application.local_addr().unwrap());
    tokio::spawn(application.run_until(std::future::pending()));
    // The database goes away under the running service.
    runtime.close().await;

    let response = reqwest::Client::new()
        .get(format!("{base}/tenants/{tenant}/settings"))
        .bearer_auth(secret)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let problem: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        (problem["type"].as_str(), problem["retryable"].as_bool()),
        (
            Some("urn:finteqx:problem:dependency-unavailable"),
            Some(true)
        )
    );
    assert!(
        !problem["detail"].as_str().unwrap().contains("pool"),
        "the cause is logged, not shown"
    );
    let health = reqwest::get(format!("{base}/health")).await.unwrap();
    assert_eq!(health.status(), StatusCode::SERVICE_UNAVAILABLE);
}

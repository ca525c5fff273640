//! Commands persist on PostgreSQL with their metadata and reload into the same state.

use domain::ids::EntraTenantId;
use domain::metadata::REQUIRED_KEYS;
use domain::tenant::{ConsentDecision, TenantEvent};
use domain::user::UserEvent;
use domain::values::{DisplayName, DomainName, EmailAddress, Locale, Role};
use serde_json::Value;
use uuid::Uuid;

use api::application::{NewUser, NewUserSignIn};

use crate::helpers::{TestDb, admin, register_tenant};

pub fn entra(n: u128) -> EntraTenantId {
    EntraTenantId::try_from_uuid(Uuid::from_u128(0xE000 + n)).unwrap()
}

pub fn new_user(email: &str, sign_in: NewUserSignIn) -> NewUser {
    NewUser {
        email: EmailAddress::parse(email).unwrap(),
        display_name: DisplayName::parse("Anne de Vries").unwrap(),
        role: Role::User,
        locale: Locale::Nl,
        sign_in,
    }
}

#[tokio::test]
async fn commands_persist_and_reload_into_the_same_state() {
    let db = TestDb::new().await;
    let commands = db.commands();
    let tenant = register_tenant(&commands, "Akkermans Accountants").await;
    commands
        .set_mfa_policy(&admin(tenant), tenant, true)
        .await
        .unwrap();
    commands
        .record_entra_consent(&admin(tenant), tenant, entra(1), ConsentDecision::Granted)
        .await
        .unwrap();
    let domain = DomainName::parse("contoso.com").unwrap();
    crate::helpers::bind_proven_domain(&commands, tenant, &domain, entra(1)).await;
    let sms = commands
        .create_user(
            &admin(tenant),
            tenant,
            new_user("anne@contoso.com", NewUserSignIn::Sms),
        )
        .await
        .unwrap();
    let entra_user = commands
        .create_user(
            &admin(tenant),
            tenant,
            new_user("bob@contoso.com", NewUserSignIn::EntraId),
        )
        .await
        .unwrap();

    // A fresh write side (another process, say) loads what the first one committed.
    let reloaded = db.commands();
    let tenant_state = reloaded.tenants().load(&tenant.to_string()).await.unwrap();
    assert!(tenant_state.sms_required());
    let user_state = reloaded
        .users()
        .load(&sms.user_id.to_string())
        .await
        .unwrap();
    assert_eq!(user_state, sms.committed.aggregate);
    let linked = reloaded
        .users()
        .load(&entra_user.user_id.to_string())
        .await
        .unwrap();
    let link = linked.account().unwrap().entra.as_ref().unwrap();
    assert_eq!(
        (link.domain.as_str(), link.entra_tenant_id),
        ("contoso.com", entra(1))
    );
    assert!(matches!(
        entra_user.committed.events[1].event,
        UserEvent::UserLinkedToEntra { .. }
    ));
    assert!(matches!(
        reloaded
            .tenants()
            .load_events(&tenant.to_string())
            .await
            .unwrap()[1]
            .payload,
        TenantEvent::MfaPolicySet {
            sms_required: true,
            ..
        }
    ));
}

#[tokio::test]
async fn every_event_carries_the_full_metadata_and_a_commit_safe_position() {
    let db = TestDb::new().await;
    let commands = db.commands();
    let tenant = register_tenant(&commands, "Akkermans Accountants").await;
    let context = admin(tenant);
    let committed = commands
        .set_mfa_policy(&context, tenant, true)
        .await
        .unwrap();

    let rows: Vec<(String, String, i64, String, Value, Value, i64)> = sqlx::query_as(
        "SELECT aggregate_type, aggregate_id, sequence, event_type, payload, metadata, global_position \
         FROM events ORDER BY global_position",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 2);
    for (_, _, _, event_type, payload, metadata, _) in &rows {
        for key in REQUIRED_KEYS {
            assert!(
                metadata.get(key).is_some_and(Value::is_string),
                "{event_type} lacks metadata {key}"
            );
        }
        assert!(
            payload.get(event_type).is_some(),
            "payload is externally tagged by {event_type}"
        );
    }
    let (aggregate_type, aggregate_id, sequence, event_type, _, metadata, position) = &rows[1];
    assert_eq!(
        (aggregate_type.as_str(), aggregate_id.as_str(), *sequence),
        ("tenant", tenant.to_string().as_str(), 2)
    );
    assert_eq!(event_type, "MfaPolicySet");
    assert_eq!(metadata["actor_role"], "administrator");
    assert_eq!(metadata["actor_id"], context.actor_id.as_str());
    assert_eq!(metadata["tenant_id"], tenant.to_string().as_str());
    assert_eq!(metadata["correlation_id"], context.correlation_id.as_str());
    assert_eq!(metadata["causation_command"], "SetMfaPolicy");
    assert_eq!(committed.last_position(), Some(*position));
    assert!(rows[0].6 < rows[1].6);
}

#[tokio::test]
async fn a_command_that_changes_nothing_appends_nothing() {
    let db = TestDb::new().await;
    let commands = db.commands();
    let tenant = register_tenant(&commands, "Akkermans Accountants").await;
    commands
        .set_mfa_policy(&admin(tenant), tenant, true)
        .await
        .unwrap();
    let before = db.event_count().await;
    let again = commands
        .set_mfa_policy(&admin(tenant), tenant, true)
        .await
        .unwrap();
    assert!(again.events.is_empty());
    assert_eq!(db.event_count().await, before);
}

#[tokio::test]
async fn the_log_is_append_only_and_has_no_snapshot_store() {
    let db = TestDb::new().await;
    let commands = db.commands();
    register_tenant(&commands, "Akkermans Accountants").await;
    for statement in [
        "UPDATE events SET event_type = 'X'",
        "DELETE FROM events",
        "TRUNCATE events",
    ] {
        let error = sqlx::query(statement).execute(&db.pool).await.unwrap_err();
        assert!(
            error.to_string().contains("append-only"),
            "{statement}: {error}"
        );
    }
    assert_eq!(db.event_count().await, 1);
    let snapshots: Option<String> = sqlx::query_scalar("SELECT to_regclass('snapshots')::text")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        snapshots, None,
        "cqrs-es snapshots apply events twice (ADR-0002)"
    );
}

#[tokio::test]
async fn the_service_answers_health() {
    let db = TestDb::new().await;
    let base = db.spawn_app().await;
    let response = reqwest::get(format!("{base}/health")).await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["database"], "ok");
}

#[tokio::test]
async fn the_runtime_role_appends_events_but_cannot_rewrite_or_unprotect_them() {
    // Arrange: a history written by the service's runtime role.
    let db = TestDb::new().await;
    let runtime = db.runtime_pool().await;
    let commands = api::startup::build_commands(&db.settings(), runtime.clone()).unwrap();
    let tenant = register_tenant(&commands, "Akkermans Accountants").await;
    commands
        .set_mfa_policy(&admin(tenant), tenant, true)
        .await
        .unwrap();
    let before = db.event_count().await;
    assert!(before >= 2, "the runtime role appended events");

    // Act and assert: every way to change the log is refused for lack of privilege.
    for statement in [
        "UPDATE events SET payload = '{}'",
        "DELETE FROM events",
        "TRUNCATE events",
        "ALTER TABLE events DISABLE TRIGGER events_append_only",
        "ALTER TABLE events DISABLE TRIGGER ALL",
        "DROP TRIGGER events_chain ON events",
        "UPDATE log_checkpoints SET signed_at = now()",
        "DELETE FROM log_checkpoints",
        "DROP TABLE events",
        "SET session_replication_role = replica",
    ] {
        let error = sqlx::query(statement)
            .execute(&runtime)
            .await
            .expect_err(statement);
        let code = error.as_database_error().and_then(|e| e.code()).unwrap();
        assert!(
            code == "42501" || code == "42P01",
            "{statement}: refused for lack of privilege, not {code}: {error}"
        );
    }
    assert_eq!(db.event_count().await, before, "the log is untouched");
}

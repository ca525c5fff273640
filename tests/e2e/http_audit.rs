//! The auditors' and support's read routes over real HTTP: paging and filtering a tenant's
//! history, the NDJSON exports, the state at an instant, support's sign-in history and queue
//! views, the record of who looked at what, and what bad query input gets.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use uuid::Uuid;

use api::workers::checkpoints::{CheckpointSigner, write_checkpoints};
use domain::TenantScoped;
use domain::ids::SignInId;
use domain::sign_in::SignInCommand;
use domain::sign_in_rule::SignInFacts;
use domain::user::UserCommand;
use projections::audit::{AuditEvent, HistoryFilter, HistoryQuery, MAX_PAGE_SIZE, tenant_history};
use projections::verify::verify_export;

use crate::audit::wait_until_visible;
use crate::helpers::admin;
use crate::http_api::{As, World, world};

/// An instant as a query value (UTC, so no `+` to encode).
fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The tenant's whole visible history, read directly from the database.
async fn stored_history(w: &World, filter: HistoryFilter) -> Vec<AuditEvent> {
    let query = HistoryQuery {
        tenant_id: w.tenant,
        filter,
        after: None,
        limit: MAX_PAGE_SIZE,
    };
    let page = tenant_history(&w.db.pool, &query).await.unwrap();
    assert!(page.next.is_none(), "the test tenant fits in one page");
    page.events
}

/// Every page of the history over HTTP with `query`, following `next`.
async fn history_over_http(w: &World, query: &str, limit: u32) -> Vec<AuditEvent> {
    let t = w.tenant;
    let mut events = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..1000 {
        let cursor = after
            .as_ref()
            .map(|cursor| format!("&after={cursor}"))
            .unwrap_or_default();
        let path = format!("/tenants/{t}/audit/events?limit={limit}{cursor}{query}");
        let (status, page, _) = w.api.call(&w.auditor, Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {page}");
        let batch = page["events"].as_array().unwrap();
        assert!(
            batch.len() <= limit as usize,
            "{path}: a page holds at most limit events"
        );
        events.extend(
            batch
                .iter()
                .map(|event| serde_json::from_value::<AuditEvent>(event.clone()).unwrap()),
        );
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => return events,
        }
    }
    panic!("the history never ended");
}

/// A tenant with a policy change, a deactivation and a reactivation, all visible to auditors.
async fn busy_world() -> World {
    let w = world().await;
    let commands = w.db.commands();
    let t = w.tenant;
    tokio::time::sleep(Duration::from_millis(20)).await;
    commands.set_mfa_policy(&admin(t), t, true).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    commands
        .execute_user_command(&admin(t), t, w.user_id, UserCommand::DeactivateUser)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    commands
        .execute_user_command(&admin(t), t, w.user_id, UserCommand::ReactivateUser)
        .await
        .unwrap();
    // Another tenant's events interleave and must never show.
    commands
        .set_mfa_policy(&admin(w.other_tenant), w.other_tenant, true)
        .await
        .unwrap();
    wait_until_visible(&w.db.pool).await;
    w
}

#[tokio::test]
async fn an_auditor_pages_filters_and_exports_a_tenants_history_over_http() {
    // Arrange
    let w = busy_world().await;
    let t = w.tenant;
    let everything = stored_history(&w, HistoryFilter::default()).await;
    assert!(everything.len() >= 6, "{} events", everything.len());

    // Act: page through everything, two events at a time.
    let paged = history_over_http(&w, "", 2).await;

    // Assert: every event once, in audit order, and only this tenant's.
    assert_eq!(paged, everything);
    assert!(
        paged
            .windows(2)
            .all(|pair| pair[0].cursor() < pair[1].cursor()),
        "strictly in audit order"
    );
    assert!(
        paged
            .iter()
            .all(|event| event.aggregate_id != w.other_tenant.to_string()),
        "no event of another tenant"
    );

    // Filters: by type (comma-separated or repeated), by user, by time.
    let policies = history_over_http(&w, "&event_type=MfaPolicySet", 10).await;
    assert_eq!(policies.len(), 1);
    assert_eq!(policies[0].event_type, "MfaPolicySet");
    let comma = history_over_http(&w, "&event_type=UserDeactivated,UserReactivated", 10).await;
    let repeated = history_over_http(
        &w,
        "&event_type=UserDeactivated&event_type=UserReactivated",
        10,
    )
    .await;
    assert_eq!(comma, repeated);
    assert_eq!(
        comma
            .iter()
            .map(|event| event.event_type.as_str())
            .collect::<Vec<_>>(),
        ["UserDeactivated", "UserReactivated"]
    );
    let anne = w.user_id.to_string();
    let annes = history_over_http(&w, &format!("&user_id={anne}"), 3).await;
    assert_eq!(
        annes,
        stored_history(
            &w,
            HistoryFilter {
                user_id: Some(w.user_id),
                ..HistoryFilter::default()
            }
        )
        .await
    );
    assert!(annes.len() >= 3);
    assert!(
        annes
            .iter()
            .all(|event| event.payload.to_string().contains(&anne))
    );
    let policy_at = policies[0].recorded_at;
    let since = history_over_http(&w, &format!("&from={}", rfc3339(policy_at)), 10).await;
    let until = history_over_http(&w, &format!("&to={}", rfc3339(policy_at)), 10).await;
    assert!(since.iter().all(|event| event.recorded_at >= policy_at));
    assert!(until.iter().all(|event| event.recorded_at < policy_at));
    assert_eq!(
        until.len() + since.len(),
        everything.len(),
        "from and to split the history at the instant"
    );

    // Export, one event per line: the same events as the history.
    let (status, _, content_type) = w
        .api
        .call(
            &w.auditor,
            Method::GET,
            &format!("/tenants/{t}/audit/export?format=events"),
            None,
        )
        .await;
    assert_eq!(
        (status, content_type.as_str()),
        (StatusCode::OK, "application/x-ndjson")
    );
    let text = export_text(&w, "?format=events").await;
    assert!(text.ends_with('\n'));
    let lines: Vec<AuditEvent> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(
        lines, everything,
        "one line per event, equal to the history"
    );
    let annes_lines: Vec<AuditEvent> = export_text(&w, &format!("?format=events&user_id={anne}"))
        .await
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(annes_lines, annes, "the export filters like the history");

    // The default export is the verifiable one: it verifies offline against the service's key.
    w.db.run_projections().await;
    let signer = CheckpointSigner::from_settings(&w.db.settings().audit).unwrap();
    write_checkpoints(&w.db.pool, &signer, Utc::now())
        .await
        .unwrap();
    let verifiable = export_text(&w, "").await;
    let summary = verify_export(verifiable.lines(), &[signer.public_key()]).unwrap();
    assert_eq!(summary.events, everything.len() as u64);
    let exported: Vec<AuditEvent> = verifiable
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|line| {
            ["export", "checkpoint", "end"]
                .iter()
                .all(|key| line.get(key).is_none())
        })
        .map(|line| serde_json::from_value(line).unwrap())
        .collect();
    assert_eq!(exported, everything);
}

/// The body of an export as text.
async fn export_text(w: &World, query: &str) -> String {
    let As::Bearer(token) = &w.auditor else {
        unreachable!()
    };
    let response = w
        .api
        .client
        .get(format!(
            "{}/tenants/{}/audit/export{query}",
            w.api.base, w.tenant
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.unwrap()
}

#[tokio::test]
async fn an_auditor_asks_what_was_true_before_and_after_a_change() {
    // Arrange
    let w = busy_world().await;
    let t = w.tenant;
    let u = w.user_id;
    let events = stored_history(&w, HistoryFilter::default()).await;
    let at = |event_type: &str| {
        events
            .iter()
            .find(|event| event.event_type == event_type)
            .unwrap()
            .recorded_at
    };
    let (registered, policy_set, deactivated, reactivated) = (
        at("TenantRegistered"),
        at("MfaPolicySet"),
        at("UserDeactivated"),
        at("UserReactivated"),
    );
    let micro = TimeDelta::microseconds(1);
    let tenant_at = async |at: DateTime<Utc>| {
        w.api
            .call(
                &w.auditor,
                Method::GET,
                &format!("/tenants/{t}/audit/state?at={}", rfc3339(at)),
                None,
            )
            .await
    };
    let user_at = async |at: DateTime<Utc>| {
        w.api
            .call(
                &w.auditor,
                Method::GET,
                &format!("/tenants/{t}/users/{u}/audit/state?at={}", rfc3339(at)),
                None,
            )
            .await
    };

    // The tenant's policy before and after it changed.
    let (status, before, _) = tenant_at(policy_set - micro).await;
    assert_eq!(status, StatusCode::OK, "{before}");
    assert_eq!(before["sms_required"], false);
    assert_eq!(before["display_name"], "Akkermans Accountants");
    assert_eq!(before["consents"], serde_json::json!([]));
    let (_, after, _) = tenant_at(policy_set).await;
    assert_eq!(after["sms_required"], true);
    let (status, missing, content_type) = tenant_at(registered - micro).await;
    assert_eq!(
        (status, content_type.as_str()),
        (StatusCode::NOT_FOUND, "application/problem+json"),
        "the tenant did not exist yet: {missing}"
    );

    // The user before and after the deactivation, and after the reactivation.
    let (status, active, _) = user_at(deactivated - micro).await;
    assert_eq!(status, StatusCode::OK, "{active}");
    assert_eq!(active["active"], true);
    assert_eq!(
        active["email"], "anne@contoso.com",
        "personal fields are opened"
    );
    assert_eq!(active["display_name"], "Anne de Vries");
    assert_eq!(
        (
            active["role"].as_str(),
            active["signs_in_with"].as_str(),
            active["personal_data_erased"].as_bool(),
            active["has_password"].as_bool()
        ),
        (Some("user"), Some("password"), Some(false), Some(false))
    );
    let text = active.to_string();
    assert!(
        !text.contains("sealed") && !text.contains("ciphertext"),
        "never a sealed blob: {text}"
    );
    let (_, inactive, _) = user_at(deactivated).await;
    assert_eq!(inactive["active"], false);
    let (_, again, _) = user_at(reactivated).await;
    assert_eq!(again["active"], true);

    // Absent `at` is now; another tenant's auditor route does not show the user.
    let (status, now, _) = w
        .api
        .call(
            &w.auditor,
            Method::GET,
            &format!("/tenants/{t}/users/{u}/audit/state"),
            None,
        )
        .await;
    assert_eq!(
        (status, now["active"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    let (status, _, _) = w
        .api
        .call(
            &w.auditor,
            Method::GET,
            &format!("/tenants/{}/users/{u}/audit/state", w.other_tenant),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// A password sign-in of the user (as if a password were set) with a wrong password.
async fn failed_sign_in(w: &World) {
    let commands = w.db.commands();
    let account = commands
        .users()
        .load(&w.user_id.to_string())
        .await
        .unwrap()
        .account()
        .cloned()
        .unwrap();
    let sign_in_id = SignInId::from_uuid(Uuid::now_v7());
    commands
        .sign_ins()
        .execute(
            &sign_in_id.to_string(),
            TenantScoped::new(
                w.tenant,
                SignInCommand::StartPasswordSignIn {
                    sign_in_id,
                    user_id: w.user_id,
                    facts: SignInFacts {
                        has_password: true,
                        ..account.sign_in_facts(false)
                    },
                    password_matches: false,
                    recent_failures: 0,
                    now: Utc::now(),
                },
            ),
            &admin(w.tenant),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn support_reads_sign_ins_and_the_queue_and_the_auditor_sees_who_looked() {
    // Arrange
    let w = world().await;
    let t = w.tenant;
    let u = w.user_id;
    failed_sign_in(&w).await;
    w.db.run_projections().await;
    let support_token: Uuid =
        sqlx::query_scalar("SELECT token_id FROM staff_tokens WHERE role = 'support'")
            .fetch_one(&w.db.pool)
            .await
            .unwrap();

    // Act: support looks at the user's sign-ins and the queue.
    let (status, sign_ins, _) = w
        .api
        .call(
            &w.support,
            Method::GET,
            &format!("/tenants/{t}/users/{u}/sign_ins?limit=10"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{sign_ins}");
    let sign_ins = sign_ins.as_array().unwrap();
    assert_eq!(sign_ins.len(), 1);
    assert_eq!(sign_ins[0]["outcome"], "failed");
    assert_eq!(sign_ins[0]["method"], "password");
    assert_eq!(sign_ins[0]["reason"]["kind"], "wrong_password");
    let (status, queue, _) = w
        .api
        .call(
            &w.support,
            Method::GET,
            &format!("/tenants/{t}/notifications?state=pending"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{queue}");
    let queue = queue.as_array().unwrap();
    assert!(
        queue
            .iter()
            .any(|message| message["user_id"] == u.to_string()
                && message["kind"] == "welcome_set_password"),
        "{queue:?}"
    );
    for message in queue {
        let mut keys: Vec<&str> = message
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "attempts",
                "channel",
                "created_at",
                "kind",
                "last_error",
                "message_id",
                "state",
                "user_id"
            ],
            "no body, link or address"
        );
        assert_eq!(message["state"], "pending");
    }
    let (_, dead, _) = w
        .api
        .call(
            &w.support,
            Method::GET,
            &format!("/tenants/{t}/notifications?state=dead"),
            None,
        )
        .await;
    assert_eq!(dead, serde_json::json!([]));

    // Assert: the auditor sees who looked at what, support's token and the auditor's own read.
    let (status, reads, _) = w
        .api
        .call(
            &w.auditor,
            Method::GET,
            &format!("/tenants/{t}/audit/reads"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reads}");
    let reads = reads["reads"].as_array().unwrap();
    let seen: Vec<(String, String, String, Option<String>)> = reads
        .iter()
        .map(|read| {
            (
                read["token_id"].as_str().unwrap().to_owned(),
                read["role"].as_str().unwrap().to_owned(),
                read["route"].as_str().unwrap().to_owned(),
                read["user_id"].as_str().map(str::to_owned),
            )
        })
        .collect();
    let support_token = support_token.to_string();
    let expected = [
        (
            support_token.clone(),
            "support".to_owned(),
            "/tenants/{tenant_id}/users/{user_id}/sign_ins".to_owned(),
            Some(u.to_string()),
        ),
        (
            support_token.clone(),
            "support".to_owned(),
            "/tenants/{tenant_id}/notifications".to_owned(),
            None,
        ),
        (
            support_token,
            "support".to_owned(),
            "/tenants/{tenant_id}/notifications".to_owned(),
            None,
        ),
    ];
    assert_eq!(seen[..3], expected, "{reads:?}");
    assert_eq!(
        (seen[3].1.as_str(), seen[3].2.as_str()),
        ("auditor", "/tenants/{tenant_id}/audit/reads"),
        "the auditor's read is recorded too"
    );
    assert!(reads.iter().all(|read| read["holder"] == "test"));
    // Nothing of another tenant.
    let (_, others, _) = w
        .api
        .call(
            &w.auditor,
            Method::GET,
            &format!("/tenants/{}/audit/reads", w.other_tenant),
            None,
        )
        .await;
    assert!(
        others["reads"]
            .as_array()
            .unwrap()
            .iter()
            .all(|read| read["role"] == "auditor")
    );
}

#[tokio::test]
async fn bad_audit_and_support_queries_get_a_problem_naming_the_parameter() {
    let w = world().await;
    let t = w.tenant;
    let u = w.user_id;
    let events = format!("/tenants/{t}/audit/events");
    let cases: Vec<(&As, String, Option<&str>, &str)> = vec![
        (
            &w.auditor,
            format!("{events}?limit=0"),
            Some("limit"),
            "limit-out-of-range",
        ),
        (
            &w.auditor,
            format!("{events}?limit=1001"),
            Some("limit"),
            "limit-out-of-range",
        ),
        (
            &w.auditor,
            format!("{events}?limit=ten"),
            Some("limit"),
            "limit-out-of-range",
        ),
        (
            &w.auditor,
            format!("{events}?limit=5&limit=6"),
            Some("limit"),
            "limit-out-of-range",
        ),
        (
            &w.auditor,
            format!("{events}?after=42"),
            Some("after"),
            "cursor-malformed",
        ),
        (
            &w.auditor,
            format!("{events}?after=1--2"),
            Some("after"),
            "cursor-malformed",
        ),
        (
            &w.auditor,
            format!("{events}?from=yesterday"),
            Some("from"),
            "time-malformed",
        ),
        (
            &w.auditor,
            format!("{events}?to=2026-13-01T00:00:00Z"),
            Some("to"),
            "time-malformed",
        ),
        (
            &w.auditor,
            format!("{events}?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z"),
            Some("to"),
            "time-range-reversed",
        ),
        (
            &w.auditor,
            format!("{events}?user_id=42"),
            Some("user_id"),
            "id-malformed",
        ),
        (
            &w.auditor,
            format!("{events}?event_type=Mfa-Policy"),
            Some("event_type"),
            "event-type-malformed",
        ),
        (
            &w.auditor,
            format!("{events}?event_type="),
            Some("event_type"),
            "event-type-malformed",
        ),
        (
            &w.auditor,
            format!("{events}?colour=red"),
            None,
            "invalid-query",
        ),
        (
            &w.auditor,
            format!("/tenants/{t}/audit/export?format=xml"),
            Some("format"),
            "format-unknown",
        ),
        (
            &w.auditor,
            format!("/tenants/{t}/audit/export?user_id={u}"),
            Some("user_id"),
            "filter-needs-events-format",
        ),
        (
            &w.auditor,
            format!("/tenants/{t}/audit/state?at=now"),
            Some("at"),
            "time-malformed",
        ),
        (
            &w.auditor,
            format!("/tenants/{t}/users/{u}/audit/state?at=2026"),
            Some("at"),
            "time-malformed",
        ),
        (
            &w.auditor,
            format!("/tenants/{t}/audit/reads?after=-1"),
            Some("after"),
            "cursor-malformed",
        ),
        (
            &w.support,
            format!("/tenants/{t}/notifications?state=stuck"),
            Some("state"),
            "state-unknown",
        ),
        (
            &w.support,
            format!("/tenants/{t}/notifications?limit=501"),
            Some("limit"),
            "limit-out-of-range",
        ),
        (
            &w.admin,
            format!("/tenants/{t}/users/{u}/sign_ins?limit=-1"),
            Some("limit"),
            "limit-out-of-range",
        ),
    ];
    for (who, path, field, slug) in cases {
        let (status, problem, content_type) = w.api.call(who, Method::GET, &path, None).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{path}: {problem}"
        );
        assert_eq!(content_type, "application/problem+json", "{path}");
        assert_eq!(
            (problem["type"].as_str(), problem["field"].as_str()),
            (Some(format!("urn:finteqx:problem:{slug}").as_str()), field),
            "{path}: {problem}"
        );
        assert!(
            problem["detail"]
                .as_str()
                .is_some_and(|detail| !detail.is_empty()),
            "{path}"
        );
    }
    // The principal is checked before the query: a support token with a bad query is refused.
    let (status, _, _) = w
        .api
        .call(&w.support, Method::GET, &format!("{events}?limit=0"), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[test]
fn http_the_new_routes_document_their_query_parameters_and_media_types() {
    let (_, openapi) = api::http::api();
    let document = serde_json::to_value(&openapi).unwrap();
    let cases: [(&str, &[&str]); 7] = [
        (
            "/tenants/{tenant_id}/audit/events",
            &["after", "limit", "user_id", "event_type", "from", "to"],
        ),
        (
            "/tenants/{tenant_id}/audit/export",
            &["format", "user_id", "event_type", "from", "to"],
        ),
        ("/tenants/{tenant_id}/audit/state", &["at"]),
        ("/tenants/{tenant_id}/users/{user_id}/audit/state", &["at"]),
        ("/tenants/{tenant_id}/audit/reads", &["after", "limit"]),
        ("/tenants/{tenant_id}/users/{user_id}/sign_ins", &["limit"]),
        ("/tenants/{tenant_id}/notifications", &["state", "limit"]),
    ];
    for (path, names) in cases {
        let operation = &document["paths"][path]["get"];
        let query: Vec<&str> = operation["parameters"]
            .as_array()
            .unwrap_or_else(|| panic!("{path} is documented"))
            .iter()
            .filter(|parameter| parameter["in"] == "query")
            .map(|parameter| parameter["name"].as_str().unwrap())
            .collect();
        assert_eq!(query, names, "{path}");
        for status in ["200", "401", "403", "404", "422", "503"] {
            assert!(
                operation["responses"].get(status).is_some(),
                "{path} documents {status}"
            );
        }
    }
    let export = &document["paths"]["/tenants/{tenant_id}/audit/export"]["get"]["responses"]["200"]
        ["content"];
    assert!(export.get("application/x-ndjson").is_some(), "{export}");
}

#[tokio::test]
async fn a_large_export_streams_in_several_chunks_and_equals_the_history() {
    // Arrange: enough events for an export of several pipe chunks.
    let w = world().await;
    let commands = w.db.commands();
    let t = w.tenant;
    for round in 0..200 {
        commands
            .set_mfa_policy(&admin(t), t, round % 2 == 0)
            .await
            .unwrap();
    }
    wait_until_visible(&w.db.pool).await;
    let everything = stored_history(&w, HistoryFilter::default()).await;

    // Act
    let text = export_text(&w, "?format=events").await;
    let verifiable = export_text(&w, "").await;

    // Assert
    assert!(text.len() > 2 * 64 * 1024, "{} bytes", text.len());
    let lines: Vec<AuditEvent> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines, everything);
    let end: Value = serde_json::from_str(verifiable.lines().last().unwrap()).unwrap();
    assert_eq!(end["end"]["events"], everything.len());
}

#[tokio::test]
async fn support_sees_addresses_and_names_masked_and_administrators_see_them_in_full() {
    // Arrange
    let w = world().await;
    let users = format!("/tenants/{}/users", w.tenant);
    let anne = w.user_id.to_string();
    let row = |list: &Value| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|row| row["user_id"] == anne.as_str())
            .cloned()
            .unwrap()
    };

    // Act
    let (status, by_support, _) = w.api.call(&w.support, Method::GET, &users, None).await;
    assert_eq!(status, StatusCode::OK, "{by_support}");
    let (status, by_admin, _) = w.api.call(&w.admin, Method::GET, &users, None).await;
    assert_eq!(status, StatusCode::OK, "{by_admin}");

    // Assert
    let masked = row(&by_support);
    assert_eq!(masked["email"], "a***@c***.com");
    assert_eq!(masked["display_name"], "A*** d* V****");
    let text = by_support.to_string();
    assert!(
        !text.contains("anne@") && !text.contains("beheer@") && !text.contains("Vries"),
        "no address or name in full: {text}"
    );
    let full = row(&by_admin);
    assert_eq!(full["email"], "anne@contoso.com");
    assert_eq!(full["display_name"], "Anne de Vries");
}

#[tokio::test]
async fn a_requeued_dead_message_is_an_event_in_the_audit_history_naming_who_requeued_it() {
    // Arrange: delivery gave up on Anne's welcome mail.
    let w = world().await;
    let t = w.tenant;
    let message: String =
        sqlx::query_scalar("SELECT message_id FROM notification_messages WHERE user_id = $1")
            .bind(w.user_id.as_uuid())
            .fetch_one(&w.db.pool)
            .await
            .unwrap();
    let die = || async {
        sqlx::query(
            "INSERT INTO notification_deliveries (message_id, state, attempts, last_error) VALUES ($1, 'dead', 8, 'refused') \
             ON CONFLICT (message_id) DO UPDATE SET state = 'dead', attempts = 8",
        )
        .bind(&message)
        .execute(&w.db.pool)
        .await
        .unwrap();
    };
    die().await;
    let support_token: Uuid =
        sqlx::query_scalar("SELECT token_id FROM staff_tokens WHERE role = 'support'")
            .fetch_one(&w.db.pool)
            .await
            .unwrap();
    let retry = format!("/tenants/{t}/notifications/{message}/retry");

    // Act: support queues it again; a second try finds it pending.
    let (status, accepted, _) = w.api.call(&w.support, Method::POST, &retry, None).await;
    assert_eq!(status, StatusCode::OK, "{accepted}");
    let before = w.db.event_count().await;
    let (status, problem, content_type) = w.api.call(&w.support, Method::POST, &retry, None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(content_type, "application/problem+json");
    assert_eq!(problem["type"], "urn:finteqx:problem:message-not-dead");
    let (status, _, _) = w
        .api
        .call(
            &w.support,
            Method::POST,
            &format!("/tenants/{t}/notifications/user:nothing:1/retry"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        w.db.event_count().await,
        before,
        "a refused retry records nothing"
    );
    // Dead again, the tenant's administrator queues it.
    die().await;
    let (status, _, _) = w.api.call(&w.admin, Method::POST, &retry, None).await;
    assert_eq!(status, StatusCode::OK);

    // Assert: both requeues are facts on Anne's stream, with who did it.
    wait_until_visible(&w.db.pool).await;
    let history = history_over_http(&w, "&event_type=NotificationRequeued", 10).await;
    let seen: Vec<(String, Value, Value, Value)> = history
        .iter()
        .map(|event| {
            (
                event.aggregate_id.clone(),
                event.payload["NotificationRequeued"].clone(),
                event.metadata["actor_id"].clone(),
                event.metadata["actor_role"].clone(),
            )
        })
        .collect();
    let payload = |by_support| {
        serde_json::json!({
            "tenant_id": t.to_string(),
            "user_id": w.user_id.to_string(),
            "message_id": message,
            "by_support": by_support,
        })
    };
    assert_eq!(
        seen,
        [
            (
                w.user_id.to_string(),
                payload(true),
                Value::from(support_token.to_string()),
                Value::from("support")
            ),
            (
                w.user_id.to_string(),
                payload(false),
                Value::from(w.admin_id.to_string()),
                Value::from("administrator")
            ),
        ]
    );
    let state: String =
        sqlx::query_scalar("SELECT state FROM notification_deliveries WHERE message_id = $1")
            .bind(&message)
            .fetch_one(&w.db.pool)
            .await
            .unwrap();
    assert_eq!(state, "pending", "and the message is queued again");
}

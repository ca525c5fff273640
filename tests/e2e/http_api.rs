//! The HTTP API over real HTTP: the seed's story as an administrator, who may reach what, the
//! OpenAPI document, and what bad input gets.

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use api::http::auth::{StaffRole, issue_staff_token, start_session};
use domain::ids::{TenantId, UserId};
use domain::values::Role;

use crate::helpers::{TestDb, register_tenant};
use crate::persistence::new_user;

/// A caller of the API.
#[derive(Clone)]
pub(crate) enum As {
    Anonymous,
    Session(String),
    Bearer(String),
}

pub(crate) struct Api {
    pub(crate) base: String,
    pub(crate) client: Client,
}

impl Api {
    pub(crate) async fn call(
        &self,
        who: &As,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value, String) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        request = match who {
            As::Anonymous => request,
            As::Session(secret) => request.header(
                "cookie",
                format!("{}={secret}", api::http::auth::SESSION_COOKIE),
            ),
            As::Bearer(token) => request.bearer_auth(token),
        };
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::Null),
            content_type,
        )
    }
}

pub(crate) struct World {
    pub(crate) db: TestDb,
    pub(crate) api: Api,
    pub(crate) tenant: TenantId,
    pub(crate) other_tenant: TenantId,
    pub(crate) admin: As,
    pub(crate) foreign_admin: As,
    pub(crate) user: As,
    pub(crate) support: As,
    pub(crate) auditor: As,
    pub(crate) operator: As,
    pub(crate) user_id: UserId,
}

pub(crate) async fn world() -> World {
    let db = TestDb::new().await;
    let commands = db.commands();
    let tenant = register_tenant(&commands, "Akkermans Accountants").await;
    let other_tenant = register_tenant(&commands, "Andere BV").await;
    let admin_id = commands
        .create_user(
            &crate::helpers::admin(tenant),
            tenant,
            new_user("beheer@contoso.com", api::application::NewUserSignIn::Sms),
        )
        .await
        .unwrap()
        .user_id;
    let user_id = commands
        .create_user(
            &crate::helpers::admin(tenant),
            tenant,
            new_user("anne@contoso.com", api::application::NewUserSignIn::Sms),
        )
        .await
        .unwrap()
        .user_id;
    let foreign_id = UserId::from_uuid(Uuid::now_v7());
    let now = chrono::Utc::now();
    let session = |tenant, user, role| {
        let pool = db.pool.clone();
        async move {
            As::Session(
                start_session(&pool, tenant, user, role, "password", now)
                    .await
                    .unwrap(),
            )
        }
    };
    let admin = session(tenant, admin_id, Role::Administrator).await;
    let foreign_admin = session(other_tenant, foreign_id, Role::Administrator).await;
    let user = session(tenant, user_id, Role::User).await;
    let staff = |role| {
        let pool = db.pool.clone();
        async move { As::Bearer(issue_staff_token(&pool, role, "test").await.unwrap().1) }
    };
    let support = staff(StaffRole::Support).await;
    let auditor = staff(StaffRole::Auditor).await;
    let operator = staff(StaffRole::Operator).await;
    db.run_projections().await;
    let base = db.spawn_app().await;
    World {
        db,
        api: Api {
            base,
            client: Client::new(),
        },
        tenant,
        other_tenant,
        admin,
        foreign_admin,
        user,
        support,
        auditor,
        operator,
        user_id,
    }
}

#[tokio::test]
async fn an_administrator_goes_through_the_seed_story_over_http() {
    let w = world().await;
    let t = w.tenant;
    // Bind the domain, create an SMS user and an Entra user, require SMS.
    let (status, _, _) = w
        .api
        .call(&w.admin, Method::POST, &format!("/tenants/{t}/domains"), Some(json!({"domain": "contoso.com", "entra_tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47"})))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, created, _) = w
        .api
        .call(&w.admin, Method::POST, &format!("/tenants/{t}/users"), Some(json!({"email": "Jan@Contoso.com", "display_name": "Jan Jansen", "role": "user", "locale": "nl", "method": "sms"})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let jan = created["user_id"].as_str().unwrap().to_owned();
    let (status, entra, _) = w
        .api
        .call(&w.admin, Method::POST, &format!("/tenants/{t}/users"), Some(json!({"email": "eva@contoso.com", "display_name": "Eva", "role": "user", "locale": "en", "method": "entra_id"})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{entra}");
    let (status, _, _) = w
        .api
        .call(
            &w.admin,
            Method::PUT,
            &format!("/tenants/{t}/mfa_policy"),
            Some(json!({"sms_required": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // Link the domain's users: per-user answers, a dry run first.
    let selected =
        json!({"user_ids": [jan, w.user_id.to_string(), Uuid::now_v7()], "dry_run": true});
    let (status, dry, _) = w
        .api
        .call(
            &w.admin,
            Method::POST,
            &format!("/tenants/{t}/domains/contoso.com/link_users"),
            Some(selected.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let results: Vec<&str> = dry["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["result"].as_str().unwrap())
        .collect();
    assert_eq!(results, ["qualifies", "qualifies", "refused"]);
    assert_eq!(
        dry["users"][2]["problem"]["type"],
        "urn:finteqx:problem:user-not-found"
    );
    let mut real = selected.clone();
    real["dry_run"] = json!(false);
    let (_, linked, _) = w
        .api
        .call(
            &w.admin,
            Method::POST,
            &format!("/tenants/{t}/domains/contoso.com/link_users"),
            Some(real),
        )
        .await;
    assert_eq!(linked["users"][0]["result"], "changed");
    w.db.run_projections().await;

    // The settings screen and the login page show it.
    let (status, settings, _) = w
        .api
        .call(
            &w.admin,
            Method::GET,
            &format!("/tenants/{t}/settings"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (
            settings["sms_required"].as_bool(),
            settings["consent_warning"].as_bool()
        ),
        (Some(true), Some(true))
    );
    assert_eq!(settings["domains"][0]["domain"], "contoso.com");
    let (_, users, _) = w
        .api
        .call(&w.admin, Method::GET, &format!("/tenants/{t}/users"), None)
        .await;
    let jan_row = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["user_id"] == jan.as_str())
        .unwrap();
    assert_eq!(
        (jan_row["email"].as_str(), jan_row["entra_domain"].as_str()),
        (Some("jan@contoso.com"), Some("contoso.com"))
    );
    let (_, options, _) = w
        .api
        .call(
            &As::Anonymous,
            Method::POST,
            "/login/options",
            Some(json!({"email": "JAN@contoso.com"})),
        )
        .await;
    assert_eq!(
        (
            options["step"].as_str(),
            options["consent_notice"].as_bool()
        ),
        (Some("entra_id"), Some(true))
    );
    let (_, unknown, _) = w
        .api
        .call(
            &As::Anonymous,
            Method::POST,
            "/login/options",
            Some(json!({"email": "nobody@contoso.com"})),
        )
        .await;
    assert_eq!(
        unknown["step"], "password",
        "an unknown address looks like a password user"
    );

    // Unlink Jan again: back to a password form.
    let (_, unlinked, _) = w
        .api
        .call(
            &w.admin,
            Method::POST,
            &format!("/tenants/{t}/domains/contoso.com/unlink_users"),
            Some(json!({"user_ids": [jan]})),
        )
        .await;
    assert_eq!(unlinked["users"][0]["result"], "changed");
    w.db.run_projections().await;
    let (_, options, _) = w
        .api
        .call(
            &As::Anonymous,
            Method::POST,
            "/login/options",
            Some(json!({"email": "jan@contoso.com"})),
        )
        .await;
    assert_eq!(options["step"], "password");
    // Every step is in the log with who did it.
    let actors: Vec<String> = sqlx::query_scalar(
        "SELECT metadata ->> 'actor_role' FROM events WHERE event_type IN ('MfaPolicySet', 'UserLinkedToEntra', 'UserUnlinkedFromEntra')",
    )
    .fetch_all(&w.db.pool)
    .await
    .unwrap();
    assert!(
        !actors.is_empty() && actors.iter().all(|role| role == "administrator"),
        "{actors:?}"
    );
}

/// Every documented route with a path filled for the test tenant.
fn routes(w: &World, tenant: TenantId) -> Vec<(Method, String, bool)> {
    let (_, openapi) = api::http::api();
    let mut routes = Vec::new();
    for (path, item) in &openapi.paths.paths {
        let concrete = path
            .replace("{tenant_id}", &tenant.to_string())
            .replace("{user_id}", &w.user_id.to_string())
            .replace("{domain}", "contoso.com");
        for (method, operation) in [
            (Method::GET, &item.get),
            (Method::POST, &item.post),
            (Method::PUT, &item.put),
            (Method::DELETE, &item.delete),
        ] {
            if operation.is_some() {
                routes.push((method, concrete.clone(), path.starts_with("/tenants/")));
            }
        }
    }
    routes
}

#[tokio::test]
async fn no_role_reaches_what_it_may_not_and_a_foreign_tenant_looks_missing() {
    let w = world().await;
    let before = w.db.event_count().await;
    for (method, path, tenant_scoped) in routes(&w, w.tenant) {
        if !tenant_scoped {
            continue;
        }
        let read = method == Method::GET;
        // The audit routes are the auditors' alone; every other read is the tenant's
        // administrators' and support's.
        let audit = path.contains("/audit/");
        let cells: [(&str, &As, &[StatusCode]); 6] = [
            ("anonymous", &As::Anonymous, &[StatusCode::UNAUTHORIZED]),
            (
                "administrator of another tenant",
                &w.foreign_admin,
                &[StatusCode::NOT_FOUND],
            ),
            ("user", &w.user, &[StatusCode::FORBIDDEN]),
            (
                "support",
                &w.support,
                if read && !audit {
                    &[StatusCode::OK]
                } else {
                    &[StatusCode::FORBIDDEN]
                },
            ),
            (
                "auditor",
                &w.auditor,
                if audit {
                    &[StatusCode::OK]
                } else {
                    &[StatusCode::FORBIDDEN]
                },
            ),
            ("operator", &w.operator, &[StatusCode::FORBIDDEN]),
        ];
        for (who, caller, allowed) in cells {
            // No body: an authorised caller gets past authentication to body validation.
            let (status, body, content_type) =
                w.api.call(caller, method.clone(), &path, None).await;
            assert!(
                allowed.contains(&status),
                "{who} {method} {path}: {status} {body}"
            );
            if status != StatusCode::OK {
                assert_eq!(
                    content_type, "application/problem+json",
                    "{who} {method} {path}"
                );
            }
        }
    }
    let unchanged = w.db.event_count().await;
    assert_eq!(unchanged, before, "no refused request changed anything");
    // The tenant's own administrator is refused nothing but the auditors' routes (bodiless
    // commands may even run).
    for (method, path, tenant_scoped) in routes(&w, w.tenant) {
        if !tenant_scoped {
            continue;
        }
        let (status, body, _) = w.api.call(&w.admin, method.clone(), &path, None).await;
        if path.contains("/audit/") {
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "the administrator reads the audit route {method} {path}: {body}"
            );
        } else {
            assert!(
                !matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN),
                "the administrator is refused {method} {path}: {status} {body}"
            );
        }
    }
    // The same routes of the other tenant are missing for our administrator.
    for (method, path, tenant_scoped) in routes(&w, w.other_tenant) {
        if tenant_scoped {
            let (status, _, _) = w.api.call(&w.admin, method.clone(), &path, None).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
        }
    }
    let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM support_reads")
        .fetch_one(&w.db.pool)
        .await
        .unwrap();
    assert!(recorded > 0, "support reads are recorded");
}

#[tokio::test]
async fn the_openapi_document_lists_exactly_the_routes_that_answer() {
    let w = world().await;
    let (_, document, _) = w
        .api
        .call(&As::Anonymous, Method::GET, "/openapi.json", None)
        .await;
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
    let documented: Vec<String> = document["paths"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let (_, openapi) = api::http::api();
    assert_eq!(
        documented,
        openapi.paths.paths.keys().cloned().collect::<Vec<_>>()
    );
    // Every documented path is routed: a method it does not take answers 405, not 404.
    for (_, path, _) in routes(&w, w.tenant) {
        let (status, body, _) = w.api.call(&w.admin, Method::PATCH, &path, None).await;
        assert_eq!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{path} is documented but not routed: {body}"
        );
    }
    let (status, body, content_type) = w
        .api
        .call(&w.admin, Method::GET, "/no/such/route", None)
        .await;
    assert_eq!(
        (status, content_type.as_str(), body["type"].as_str()),
        (
            StatusCode::NOT_FOUND,
            "application/problem+json",
            Some("urn:finteqx:problem:not-found")
        )
    );
}

#[tokio::test]
async fn bad_input_gets_a_problem_and_changes_nothing() {
    let w = world().await;
    let t = w.tenant;
    let before = w.db.event_count().await;
    let users = format!("/tenants/{t}/users");
    let raw = |body: &'static str| {
        let client = w.api.client.clone();
        let url = format!("{}{users}", w.api.base);
        let As::Session(secret) = w.admin.clone() else {
            unreachable!()
        };
        async move {
            client
                .post(url)
                .header(
                    "cookie",
                    format!("{}={secret}", api::http::auth::SESSION_COOKIE),
                )
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap()
        }
    };
    let malformed = raw("{\"email\": ").await;
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        malformed.headers()["content-type"],
        "application/problem+json"
    );
    let huge = "x".repeat(api::http::BODY_LIMIT_BYTES + 10);
    let cases: Vec<(Value, StatusCode, &str, Option<&str>)> = vec![
        (
            json!({"email": 42, "display_name": "A", "role": "user", "locale": "nl", "method": "sms"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
            None,
        ),
        (
            json!({"email": "a@contoso.com", "display_name": "A", "role": "user", "locale": "nl", "method": "sms", "admin": true}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
            None,
        ),
        (
            json!({"email": "not an address", "display_name": "A", "role": "user", "locale": "nl", "method": "sms"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "email-malformed",
            Some("email"),
        ),
        (
            json!({"email": "a@contoso.com", "display_name": " ", "role": "user", "locale": "nl", "method": "sms"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "display-name-empty",
            Some("display_name"),
        ),
        (
            json!({"email": "a@contoso.com", "display_name": "A", "role": "root", "locale": "nl", "method": "sms"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "role-unknown",
            Some("role"),
        ),
        (
            json!({"email": "a@contoso.com", "display_name": "A", "role": "user", "locale": "de", "method": "sms"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "locale-unsupported",
            Some("locale"),
        ),
        (
            json!({"email": "a@contoso.com", "display_name": "A", "role": "user", "locale": "nl", "method": "fax"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "method-unknown",
            Some("method"),
        ),
        (
            json!({"email": "a@contoso.com", "display_name": huge, "role": "user", "locale": "nl", "method": "sms"}),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            None,
        ),
    ];
    for (body, status, slug, field) in cases {
        let (actual, problem, content_type) = w
            .api
            .call(&w.admin, Method::POST, &users, Some(body.clone()))
            .await;
        assert_eq!(actual, status, "{body}: {problem}");
        assert_eq!(content_type, "application/problem+json");
        assert_eq!(
            problem["type"],
            format!("urn:finteqx:problem:{slug}"),
            "{problem}"
        );
        assert_eq!(problem["field"].as_str(), field, "{problem}");
        assert!(
            problem["detail"]
                .as_str()
                .is_some_and(|detail| !detail.is_empty())
        );
    }
    let (status, problem, _) = w
        .api
        .call(
            &w.admin,
            Method::PUT,
            "/tenants/not-a-uuid/mfa_policy",
            Some(json!({"sms_required": true})),
        )
        .await;
    assert_eq!(
        (status, problem["type"].as_str()),
        (StatusCode::NOT_FOUND, Some("urn:finteqx:problem:not-found"))
    );
    let (status, problem, _) = w.api.call(&w.admin, Method::POST, &format!("/tenants/{t}/domains"), Some(json!({"domain": "co.uk", "entra_tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47"}))).await;
    assert_eq!(
        (status, problem["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("domain"))
    );
    assert_eq!(w.db.event_count().await, before, "nothing changed");
}

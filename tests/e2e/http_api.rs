//! The HTTP API over real HTTP: the seed's story as an administrator and what auditors see of it,
//! each command's effect through a read route, who may reach what, the OpenAPI document, and what
//! bad input gets on every route.

use reqwest::{Client, Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use api::http::auth::{StaffRole, issue_staff_token, start_session};
use domain::ids::{TenantId, UserId};
use domain::user::UserCommand;
use domain::values::{MobileNumber, Role};

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
    /// A request of `who` to `path`.
    pub(crate) fn request(&self, who: &As, method: Method, path: &str) -> RequestBuilder {
        let request = self.client.request(method, format!("{}{path}", self.base));
        match who {
            As::Anonymous => request,
            As::Session(secret) => request.header(
                "cookie",
                format!("{}={secret}", api::http::auth::SESSION_COOKIE),
            ),
            As::Bearer(token) => request.bearer_auth(token),
        }
    }

    /// Sends a request: its status, its JSON body (null if none), content type and request id.
    async fn send(request: RequestBuilder) -> (StatusCode, Value, String, String) {
        let response = request.send().await.unwrap();
        let status = response.status();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let (content_type, request_id) = (header("content-type"), header("x-request-id"));
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::Null),
            content_type,
            request_id,
        )
    }

    pub(crate) async fn call(
        &self,
        who: &As,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value, String) {
        let mut request = self.request(who, method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let (status, body, content_type, _) = Self::send(request).await;
        (status, body, content_type)
    }

    /// Like [`Api::call`], sending `request_id` as `x-request-id` (none: the service makes one);
    /// answers the status, the body and the `x-request-id` the service answered.
    pub(crate) async fn call_traced(
        &self,
        who: &As,
        method: Method,
        path: &str,
        body: Option<Value>,
        request_id: Option<&str>,
    ) -> (StatusCode, Value, String) {
        let mut request = self.request(who, method, path);
        if let Some(request_id) = request_id {
            request = request.header("x-request-id", request_id);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let (status, body, _, answered) = Self::send(request).await;
        if let Some(request_id) = request_id {
            assert_eq!(answered, request_id, "the request id comes back");
        }
        assert!(!answered.is_empty(), "every answer names its request");
        (status, body, answered)
    }

    /// Sends `body` as is, with `content_type`.
    pub(crate) async fn call_raw(
        &self,
        who: &As,
        method: Method,
        path: &str,
        content_type: &str,
        body: String,
    ) -> (StatusCode, Value, String) {
        let request = self
            .request(who, method, path)
            .header("content-type", content_type)
            .body(body);
        let (status, body, content_type, _) = Self::send(request).await;
        (status, body, content_type)
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
    /// The administrator behind `admin`.
    pub(crate) admin_id: UserId,
    /// Anne, a user (SMS) of the tenant.
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
        admin_id,
        user_id,
    }
}

#[tokio::test]
async fn an_administrator_goes_through_the_seed_story_over_http() {
    let w = world().await;
    let t = w.tenant;
    // Every command carries its own request id, to find its events in the audit history; one
    // leaves it to the service.
    let request_id = || Uuid::now_v7().to_string();
    let (bind_id, jan_id, eva_id, dry_id, link_id, unlink_id) = (
        request_id(),
        request_id(),
        request_id(),
        request_id(),
        request_id(),
        request_id(),
    );
    // Bind the domain, create an SMS user and an Entra user, require SMS.
    let (status, _, _) = w
        .api
        .call_traced(&w.admin, Method::POST, &format!("/tenants/{t}/domains"), Some(json!({"domain": "contoso.com", "entra_tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47"})), Some(&bind_id))
        .await;
    assert_eq!(status, StatusCode::OK);
    // The proof a published TXT record gives (checked against real DNS in `domain_proof`).
    crate::helpers::prove_domain(
        &w.db.commands(),
        w.tenant,
        &domain::values::DomainName::parse("contoso.com").unwrap(),
    )
    .await;
    let (status, created, _) = w
        .api
        .call_traced(&w.admin, Method::POST, &format!("/tenants/{t}/users"), Some(json!({"email": "Jan@Contoso.com", "display_name": "Jan Jansen", "role": "user", "locale": "nl", "method": "sms"})), Some(&jan_id))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let jan = created["user_id"].as_str().unwrap().to_owned();
    let (status, entra, _) = w
        .api
        .call_traced(&w.admin, Method::POST, &format!("/tenants/{t}/users"), Some(json!({"email": "eva@contoso.com", "display_name": "Eva", "role": "user", "locale": "en", "method": "entra_id"})), Some(&eva_id))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{entra}");
    let eva = entra["user_id"].as_str().unwrap().to_owned();
    let (status, _, policy_id) = w
        .api
        .call_traced(
            &w.admin,
            Method::PUT,
            &format!("/tenants/{t}/mfa_policy"),
            Some(json!({"sms_required": true})),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // Link the domain's users: per-user answers, a dry run first.
    let selected =
        json!({"user_ids": [jan, w.user_id.to_string(), Uuid::now_v7()], "dry_run": true});
    let (status, dry, _) = w
        .api
        .call_traced(
            &w.admin,
            Method::POST,
            &format!("/tenants/{t}/domains/contoso.com/link_users"),
            Some(selected.clone()),
            Some(&dry_id),
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
        .call_traced(
            &w.admin,
            Method::POST,
            &format!("/tenants/{t}/domains/contoso.com/link_users"),
            Some(real),
            Some(&link_id),
        )
        .await;
    assert_eq!(linked["users"][0]["result"], "changed");
    assert_eq!(linked["users"][1]["result"], "changed");
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
        unknown, options,
        "an unknown address on the domain gets the domain's answer, as Jan does"
    );

    // Unlink Jan again: the page still answers for the domain; Jan signs in with a password.
    let (_, unlinked, _) = w
        .api
        .call_traced(
            &w.admin,
            Method::POST,
            &format!("/tenants/{t}/domains/contoso.com/unlink_users"),
            Some(json!({"user_ids": [jan]})),
            Some(&unlink_id),
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
    assert_eq!(options, unknown, "linked or not, the same answer");

    // Auditors see every step over HTTP, in order, with who did it and the request that caused
    // it.
    let history = audit_history(&w).await;
    let admin_id = w.admin_id.to_string();
    let anne = w.user_id.to_string();
    // Each step: its request id, and the events it caused (type, and a text of its payload).
    type Caused<'a> = &'a [(&'a str, &'a str)];
    let steps: [(&str, &str, Caused<'_>); 6] = [
        (
            "bind the domain",
            &bind_id,
            &[("DomainClaimed", "contoso.com")],
        ),
        ("create Jan", &jan_id, &[("UserCreated", &jan)]),
        ("create Eva", &eva_id, &[("UserCreated", &eva)]),
        ("require SMS", &policy_id, &[("MfaPolicySet", "")]),
        (
            "link Jan and Anne",
            &link_id,
            &[("UserLinkedToEntra", &jan), ("UserLinkedToEntra", &anne)],
        ),
        ("unlink Jan", &unlink_id, &[("UserUnlinkedFromEntra", &jan)]),
    ];
    let mut last_step_ends = 0;
    for (step, request_id, expected) in steps {
        let caused: Vec<(usize, &Value)> = history
            .iter()
            .enumerate()
            .filter(|(_, event)| event["metadata"]["correlation_id"] == request_id)
            .collect();
        let seen: Vec<(&str, String)> = caused
            .iter()
            .map(|(_, event)| {
                (
                    event["event_type"].as_str().unwrap(),
                    event["payload"].to_string(),
                )
            })
            .collect();
        for (event_type, about) in expected {
            let matching = seen
                .iter()
                .filter(|(seen_type, payload)| seen_type == event_type && payload.contains(about))
                .count();
            assert_eq!(
                matching, 1,
                "{step}: one {event_type} about {about:?} in {seen:?}"
            );
        }
        for (_, event) in &caused {
            let metadata = &event["metadata"];
            assert_eq!(
                (
                    metadata["actor_role"].as_str(),
                    metadata["actor_id"].as_str()
                ),
                (Some("administrator"), Some(admin_id.as_str())),
                "{step}: {event}"
            );
            assert_eq!(metadata["tenant_id"], t.to_string(), "{step}: {event}");
        }
        let first = caused.first().map(|(index, _)| *index).unwrap();
        assert!(
            first >= last_step_ends,
            "{step} comes after the step before"
        );
        last_step_ends = caused.last().map(|(index, _)| *index).unwrap();
    }
    assert!(
        history
            .iter()
            .all(|event| event["metadata"]["correlation_id"] != dry_id.as_str()),
        "the dry run wrote nothing"
    );
}

/// The tenant's whole history as an auditor reads it over HTTP, page after page.
async fn audit_history(w: &World) -> Vec<Value> {
    crate::audit::wait_until_visible(&w.db.pool).await;
    let mut events = Vec::new();
    let mut after = String::new();
    for _ in 0..100 {
        let path = format!("/tenants/{}/audit/events?limit=100{after}", w.tenant);
        let (status, page, _) = w.api.call(&w.auditor, Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {page}");
        events.extend(page["events"].as_array().unwrap().iter().cloned());
        match page["next"].as_str() {
            Some(next) => after = format!("&after={next}"),
            None => return events,
        }
    }
    panic!("the history never ended");
}

/// Every documented route with a path filled for the test tenant.
pub(crate) fn routes(w: &World, tenant: TenantId) -> Vec<(Method, String, bool)> {
    let (_, openapi) = api::http::api();
    let mut routes = Vec::new();
    for (path, item) in &openapi.paths.paths {
        let concrete = fill(path, &tenant.to_string(), &w.user_id.to_string());
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
        // Support may also retry the tenant's dead notifications (there are none: 404).
        let support_command = method == Method::POST && path.contains("/notifications/");
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
                } else if support_command {
                    &[StatusCode::NOT_FOUND]
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

/// The Entra tenant that owns `contoso.com` in these tests.
const CONTOSO_ENTRA: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

/// Asserts that an answer is the problem `slug` with `status`, naming `field`.
#[track_caller]
fn assert_problem(
    answer: &(StatusCode, Value, String),
    status: StatusCode,
    slug: &str,
    field: Option<&str>,
) {
    let (actual, problem, content_type) = answer;
    assert_eq!(
        (
            *actual,
            content_type.as_str(),
            problem["type"].as_str(),
            problem["field"].as_str()
        ),
        (
            status,
            "application/problem+json",
            Some(format!("urn:finteqx:problem:{slug}").as_str()),
            field
        ),
        "{problem}"
    );
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|detail| !detail.is_empty()),
        "{problem}"
    );
}

/// The users list of the settings screen.
async fn users_list(w: &World) -> Vec<Value> {
    let (status, users, _) = w
        .api
        .call(
            &w.admin,
            Method::GET,
            &format!("/tenants/{}/users", w.tenant),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{users}");
    users.as_array().unwrap().clone()
}

/// A user's row in the users list, if listed.
async fn user_row(w: &World, user_id: &str) -> Option<Value> {
    users_list(w)
        .await
        .into_iter()
        .find(|row| row["user_id"] == user_id)
}

/// The login page's answer for an address.
async fn login_options(w: &World, email: &str) -> Value {
    let (status, options, _) = w
        .api
        .call(
            &As::Anonymous,
            Method::POST,
            "/login/options",
            Some(json!({"email": email})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{options}");
    options
}

/// Creates a user over HTTP and returns their id.
async fn create_user(w: &World, email: &str, method: &str) -> String {
    let (status, created, _) = w
        .api
        .call(
            &w.admin,
            Method::POST,
            &format!("/tenants/{}/users", w.tenant),
            Some(json!({"email": email, "display_name": "Nieuw", "role": "user", "locale": "nl", "method": method})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{email}: {created}");
    created["user_id"].as_str().unwrap().to_owned()
}

/// Binds `contoso.com` over HTTP.
async fn bind_contoso(w: &World) {
    let (status, answer, _) = w
        .api
        .call(
            &w.admin,
            Method::POST,
            &format!("/tenants/{}/domains", w.tenant),
            Some(json!({"domain": "contoso.com", "entra_tenant_id": CONTOSO_ENTRA})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["status"], "pending", "{answer}");
    // The proof a published TXT record gives (checked against real DNS in `domain_proof`).
    crate::helpers::prove_domain(
        &w.db.commands(),
        w.tenant,
        &domain::values::DomainName::parse("contoso.com").unwrap(),
    )
    .await;
}

/// Links (or unlinks) users through `contoso.com` over HTTP and brings the read models up.
async fn link_through_contoso(w: &World, user_ids: &[&str], link: bool) {
    let action = if link { "link_users" } else { "unlink_users" };
    let (status, answer, _) = w
        .api
        .call(
            &w.admin,
            Method::POST,
            &format!("/tenants/{}/domains/contoso.com/{action}", w.tenant),
            Some(json!({ "user_ids": user_ids })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(
        answer["users"]
            .as_array()
            .unwrap()
            .iter()
            .all(|user| user["result"] == "changed"),
        "{answer}"
    );
    w.db.run_projections().await;
}

#[tokio::test]
async fn an_administrator_fixes_an_alias_and_the_old_address_is_free_again() {
    // Arrange
    let w = world().await;
    let anne = w.user_id.to_string();
    let email = format!("/tenants/{}/users/{anne}/email", w.tenant);

    // Act
    let (status, accepted, _) = w
        .api
        .call(
            &w.admin,
            Method::PUT,
            &email,
            Some(json!({"email": "Anne.deVries@contoso.com"})),
        )
        .await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{accepted}");
    assert!(accepted["position"].is_i64(), "{accepted}");
    w.db.run_projections().await;
    assert_eq!(
        user_row(&w, &anne).await.unwrap()["email"],
        "anne.devries@contoso.com"
    );
    create_user(&w, "anne@contoso.com", "sms").await;
    // The same address again, or another user's, is refused and changes nothing.
    let before = w.db.event_count().await;
    assert_problem(
        &w.api
            .call(
                &w.admin,
                Method::PUT,
                &email,
                Some(json!({"email": "anne.devries@contoso.com"})),
            )
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "email-unchanged",
        Some("email"),
    );
    assert_problem(
        &w.api
            .call(
                &w.admin,
                Method::PUT,
                &email,
                Some(json!({"email": "beheer@contoso.com"})),
            )
            .await,
        StatusCode::CONFLICT,
        "email-taken",
        Some("email"),
    );
    assert_eq!(w.db.event_count().await, before);
}

#[tokio::test]
async fn an_administrator_deactivates_and_reactivates_a_user_but_not_twice() {
    // Arrange
    let w = world().await;
    let anne = w.user_id.to_string();
    let user = format!("/tenants/{}/users/{anne}", w.tenant);

    // Act: deactivate.
    let (status, accepted, _) = w
        .api
        .call(&w.admin, Method::POST, &format!("{user}/deactivate"), None)
        .await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{accepted}");
    w.db.run_projections().await;
    assert_eq!(user_row(&w, &anne).await.unwrap()["active"], false);
    let before = w.db.event_count().await;
    assert_problem(
        &w.api
            .call(&w.admin, Method::POST, &format!("{user}/deactivate"), None)
            .await,
        StatusCode::CONFLICT,
        "user-already-deactivated",
        None,
    );
    assert_eq!(w.db.event_count().await, before);

    // Act: reactivate.
    let (status, accepted, _) = w
        .api
        .call(&w.admin, Method::POST, &format!("{user}/reactivate"), None)
        .await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{accepted}");
    w.db.run_projections().await;
    assert_eq!(user_row(&w, &anne).await.unwrap()["active"], true);
    assert_problem(
        &w.api
            .call(&w.admin, Method::POST, &format!("{user}/reactivate"), None)
            .await,
        StatusCode::CONFLICT,
        "user-not-deactivated",
        None,
    );
}

#[tokio::test]
async fn an_administrator_sends_a_new_password_link_but_not_to_an_entra_user() {
    // Arrange
    let w = world().await;
    let t = w.tenant;
    let anne = w.user_id.to_string();
    let request_id = Uuid::now_v7().to_string();

    // Act
    let (status, accepted, _) = w
        .api
        .call_traced(
            &w.admin,
            Method::POST,
            &format!("/tenants/{t}/users/{anne}/password_link"),
            None,
            Some(&request_id),
        )
        .await;

    // Assert: a reset link after the welcome link, sent by the administrator.
    assert_eq!(status, StatusCode::OK, "{accepted}");
    w.db.run_projections().await;
    let issued: Vec<Value> = audit_history(&w)
        .await
        .into_iter()
        .filter(|event| {
            event["event_type"] == "PasswordTokenIssued"
                && event["payload"]["PasswordTokenIssued"]["user_id"] == anne.as_str()
        })
        .collect();
    let purposes: Vec<&str> = issued
        .iter()
        .map(|event| {
            event["payload"]["PasswordTokenIssued"]["purpose"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(purposes, ["welcome", "reset"], "{issued:?}");
    let reset = &issued[1]["metadata"];
    assert_eq!(
        (
            reset["actor_role"].as_str(),
            reset["actor_id"].as_str(),
            reset["correlation_id"].as_str()
        ),
        (
            Some("administrator"),
            Some(w.admin_id.to_string().as_str()),
            Some(request_id.as_str())
        )
    );

    // An Entra user has no password to reset.
    bind_contoso(&w).await;
    let eva = create_user(&w, "eva@contoso.com", "entra_id").await;
    let before = w.db.event_count().await;
    assert_problem(
        &w.api
            .call(
                &w.admin,
                Method::POST,
                &format!("/tenants/{t}/users/{eva}/password_link"),
                None,
            )
            .await,
        StatusCode::CONFLICT,
        "user-signs-in-with-entra",
        None,
    );
    assert_eq!(w.db.event_count().await, before);
}

#[tokio::test]
async fn an_administrator_removes_a_lost_phone_and_without_one_gets_a_conflict() {
    // Arrange
    let w = world().await;
    let t = w.tenant;
    let anne = w.user_id.to_string();
    let phone = format!("/tenants/{t}/users/{anne}/phone");
    assert_problem(
        &w.api.call(&w.admin, Method::DELETE, &phone, None).await,
        StatusCode::CONFLICT,
        "no-phone-enrolled",
        None,
    );
    w.db.commands()
        .execute_user_command(
            &crate::helpers::admin(t),
            t,
            w.user_id,
            UserCommand::EnrollPhone {
                phone: MobileNumber::parse("+31612345678").unwrap(),
            },
        )
        .await
        .unwrap();
    w.db.run_projections().await;
    assert_eq!(user_row(&w, &anne).await.unwrap()["phone"], "+31*******78");

    // Act
    let (status, accepted, _) = w.api.call(&w.admin, Method::DELETE, &phone, None).await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{accepted}");
    w.db.run_projections().await;
    assert_eq!(user_row(&w, &anne).await.unwrap()["phone"], Value::Null);
}

#[tokio::test]
async fn an_administrator_forgets_a_user_whose_address_then_looks_unknown() {
    // Arrange: Anne signs in with Entra ID, which the login page tells.
    let w = world().await;
    let anne = w.user_id.to_string();
    bind_contoso(&w).await;
    link_through_contoso(&w, &[&anne], true).await;
    assert_eq!(
        login_options(&w, "anne@contoso.com").await["step"],
        "entra_id"
    );
    let unknown = login_options(&w, "nobody@contoso.com").await;
    let forget = format!("/tenants/{}/users/{anne}/forget", w.tenant);
    let before = w.db.event_count().await;
    assert_problem(
        &w.api
            .call(
                &w.admin,
                Method::POST,
                &forget,
                Some(json!({"reason": "because"})),
            )
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "erasure-reason-unknown",
        Some("reason"),
    );
    assert_eq!(w.db.event_count().await, before);

    // Act
    let (status, accepted, _) = w
        .api
        .call(
            &w.admin,
            Method::POST,
            &forget,
            Some(json!({"reason": "data_subject_request"})),
        )
        .await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{accepted}");
    w.db.run_projections().await;
    assert!(user_row(&w, &anne).await.is_none(), "no longer listed");
    assert_eq!(login_options(&w, "anne@contoso.com").await, unknown);
}

#[tokio::test]
async fn an_administrator_releases_a_domain_once_no_user_is_linked_through_it() {
    // Arrange
    let w = world().await;
    let t = w.tenant;
    let anne = w.user_id.to_string();
    bind_contoso(&w).await;
    link_through_contoso(&w, &[&anne], true).await;
    let domain = format!("/tenants/{t}/domains/contoso.com");
    let settings = async || {
        let (status, settings, _) = w
            .api
            .call(
                &w.admin,
                Method::GET,
                &format!("/tenants/{t}/settings"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{settings}");
        settings
    };
    let before = w.db.event_count().await;
    assert_problem(
        &w.api.call(&w.admin, Method::DELETE, &domain, None).await,
        StatusCode::CONFLICT,
        "domain-has-linked-users",
        Some("domain"),
    );
    assert_eq!(w.db.event_count().await, before);
    assert_eq!(settings().await["domains"][0]["domain"], "contoso.com");
    link_through_contoso(&w, &[&anne], false).await;

    // Act
    let (status, accepted, _) = w.api.call(&w.admin, Method::DELETE, &domain, None).await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{accepted}");
    w.db.run_projections().await;
    assert_eq!(settings().await["domains"], json!([]));
    assert_problem(
        &w.api.call(&w.admin, Method::DELETE, &domain, None).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "domain-not-linked",
        Some("domain"),
    );
}

#[tokio::test]
async fn a_user_sets_a_password_once_with_the_link_from_the_welcome_mail() {
    // Arrange: the secret of Anne's outstanding welcome link.
    let w = world().await;
    let commands = w.db.commands();
    let anne = w.user_id.to_string();
    let token_id = commands
        .users()
        .load(&anne)
        .await
        .unwrap()
        .account()
        .unwrap()
        .password_token
        .unwrap()
        .token_id;
    let secret = commands
        .keys()
        .password_tokens
        .secret_for(w.user_id, token_id);
    let before = w.db.event_count().await;
    assert_problem(
        &w.api
            .call(
                &As::Anonymous,
                Method::POST,
                "/password",
                Some(json!({"token": secret, "password": "too short"})),
            )
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "password-too-short",
        Some("password"),
    );
    assert_eq!(w.db.event_count().await, before);
    let request_id = Uuid::now_v7().to_string();

    // Act
    let (status, accepted, _) = w
        .api
        .call_traced(
            &As::Anonymous,
            Method::POST,
            "/password",
            Some(json!({"token": secret, "password": "correct horse battery staple"})),
            Some(&request_id),
        )
        .await;

    // Assert
    assert_eq!(status, StatusCode::OK, "{accepted}");
    w.db.run_projections().await;
    assert_eq!(user_row(&w, &anne).await.unwrap()["has_password"], true);
    let set: Vec<Value> = audit_history(&w)
        .await
        .into_iter()
        .filter(|event| event["metadata"]["correlation_id"] == request_id.as_str())
        .collect();
    assert_eq!(set.len(), 1, "{set:?}");
    assert_eq!(
        (
            set[0]["event_type"].as_str(),
            set[0]["metadata"]["actor_role"].as_str()
        ),
        (Some("PasswordSet"), Some("anonymous"))
    );
    let after = w.db.event_count().await;
    assert_problem(
        &w.api
            .call(
                &As::Anonymous,
                Method::POST,
                "/password",
                Some(json!({"token": secret, "password": "another long passphrase"})),
            )
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "set-password-link-used",
        Some("token"),
    );
    assert_eq!(w.db.event_count().await, after);
}

/// A documented operation.
struct Route {
    method: Method,
    /// The path template, such as `/tenants/{tenant_id}/users`.
    template: String,
    /// It takes a request body.
    has_body: bool,
    /// It documents no 401: anyone may call it.
    public: bool,
}

/// Every operation of the OpenAPI document.
fn documented_routes() -> Vec<Route> {
    let (_, openapi) = api::http::api();
    let mut routes = Vec::new();
    for (template, item) in &openapi.paths.paths {
        for (method, operation) in [
            (Method::GET, &item.get),
            (Method::POST, &item.post),
            (Method::PUT, &item.put),
            (Method::PATCH, &item.patch),
            (Method::DELETE, &item.delete),
        ] {
            if let Some(operation) = operation {
                routes.push(Route {
                    method,
                    template: template.clone(),
                    has_body: operation.request_body.is_some(),
                    public: !operation.responses.responses.contains_key("401"),
                });
            }
        }
    }
    routes
}

/// A template with its tenant and user filled in.
fn fill(template: &str, tenant: &str, user: &str) -> String {
    template
        .replace("{tenant_id}", tenant)
        .replace("{user_id}", user)
        .replace("{domain}", "contoso.com")
        .replace("{message_id}", "no-such-message")
}

/// A body the route would accept, so that only the id in its path is wrong.
fn valid_body(w: &World, template: &str) -> Value {
    match template {
        "/tenants/{tenant_id}/users" => {
            json!({"email": "nieuw@contoso.com", "display_name": "Nieuw", "role": "user", "locale": "nl", "method": "sms"})
        }
        "/tenants/{tenant_id}/users/{user_id}/email" => json!({"email": "nieuw@contoso.com"}),
        "/tenants/{tenant_id}/users/{user_id}/forget" => json!({"reason": "account_closed"}),
        "/tenants/{tenant_id}/mfa_policy" => json!({"sms_required": true}),
        "/tenants/{tenant_id}/domains" => {
            json!({"domain": "contoso.com", "entra_tenant_id": CONTOSO_ENTRA})
        }
        "/tenants/{tenant_id}/domains/{domain}/link_users"
        | "/tenants/{tenant_id}/domains/{domain}/unlink_users" => {
            json!({"user_ids": [w.user_id.to_string()]})
        }
        // A route added later: the ids are checked before its body.
        _ => json!({}),
    }
}

/// The first caller who gets past authentication and authorisation on `path`: the tenant's
/// administrator on tenant routes, else a staff role; anyone on public routes.
async fn caller_for(w: &World, route: &Route, path: &str, body: Option<&Value>) -> As {
    if route.public {
        return As::Anonymous;
    }
    let candidates = if route.template.starts_with("/tenants/") {
        [&w.admin, &w.support, &w.auditor, &w.operator]
    } else {
        [&w.support, &w.auditor, &w.operator, &w.admin]
    };
    for candidate in candidates {
        let (status, _, _) = w
            .api
            .call_raw(
                candidate,
                route.method.clone(),
                path,
                "application/json",
                body.map_or_else(|| "{".to_owned(), Value::to_string),
            )
            .await;
        if !matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            return candidate.clone();
        }
    }
    panic!("no role may call {} {}", route.method, route.template);
}

#[tokio::test]
async fn every_route_with_a_body_answers_bad_input_with_a_problem_and_changes_nothing() {
    let w = world().await;
    let before = w.db.event_count().await;
    let (t, anne) = (w.tenant.to_string(), w.user_id.to_string());
    let json = "application/json";
    let oversized = format!(
        "{{\"surprise\": \"{}\"}}",
        "x".repeat(api::http::BODY_LIMIT_BYTES)
    );
    let cases: [(&str, &str, &str, StatusCode, &str); 10] = [
        (
            "truncated JSON",
            "{",
            json,
            StatusCode::BAD_REQUEST,
            "malformed-json",
        ),
        (
            "malformed JSON",
            "{,}",
            json,
            StatusCode::BAD_REQUEST,
            "malformed-json",
        ),
        (
            "no JSON at all",
            "email=anne@contoso.com",
            json,
            StatusCode::BAD_REQUEST,
            "malformed-json",
        ),
        (
            "an array",
            "[]",
            json,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
        ),
        (
            "a string",
            "\"x\"",
            json,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
        ),
        (
            "a number",
            "42",
            json,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
        ),
        (
            "null",
            "null",
            json,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
        ),
        (
            "only an unknown field",
            "{\"surprise\": 1}",
            json,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
        ),
        (
            "a body over 64 KiB",
            &oversized,
            json,
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
        ),
        (
            "no JSON content type",
            "{\"surprise\": 1}",
            "text/plain",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "json-required",
        ),
    ];
    let mut checked = Vec::new();
    for route in documented_routes().iter().filter(|route| route.has_body) {
        let method = &route.method;
        let template = &route.template;
        let path = fill(template, &t, &anne);
        let caller = caller_for(&w, route, &path, None).await;
        for (case, body, content_type, status, slug) in cases {
            let answer = w
                .api
                .call_raw(
                    &caller,
                    method.clone(),
                    &path,
                    content_type,
                    body.to_owned(),
                )
                .await;
            assert_problem_of(&answer, status, slug, &format!("{method} {path}: {case}"));
        }
        if template.starts_with("/tenants/{tenant_id}") {
            let path = fill(template, "not-a-uuid", &anne);
            let answer = w
                .api
                .call(
                    &caller,
                    method.clone(),
                    &path,
                    Some(valid_body(&w, template)),
                )
                .await;
            assert_problem_of(
                &answer,
                StatusCode::NOT_FOUND,
                "not-found",
                &format!("{method} {path}"),
            );
        }
        checked.push(format!("{method} {template}"));
    }
    for route in [
        "POST /tenants/{tenant_id}/users",
        "PUT /tenants/{tenant_id}/users/{user_id}/email",
        "POST /tenants/{tenant_id}/users/{user_id}/forget",
        "PUT /tenants/{tenant_id}/mfa_policy",
        "POST /tenants/{tenant_id}/domains",
        "POST /tenants/{tenant_id}/domains/{domain}/link_users",
        "POST /tenants/{tenant_id}/domains/{domain}/unlink_users",
        "POST /login/options",
        "POST /password",
        "POST /support/user_lookup",
    ] {
        assert!(
            checked.iter().any(|seen| seen == route),
            "{route} was checked"
        );
    }
    assert_eq!(
        w.db.event_count().await,
        before,
        "no bad input changed anything"
    );
}

#[tokio::test]
async fn an_id_that_is_no_uuid_names_nothing_on_any_route() {
    let w = world().await;
    let before = w.db.event_count().await;
    let (t, anne) = (w.tenant.to_string(), w.user_id.to_string());
    let mut users_checked = 0;
    for route in documented_routes() {
        let template = &route.template;
        let mut paths = Vec::new();
        if template.contains("{tenant_id}") {
            paths.push(fill(template, "not-a-uuid", &anne));
        }
        if template.contains("{user_id}") {
            paths.push(fill(template, &t, "not-a-uuid"));
            users_checked += 1;
        }
        for path in paths {
            // A body the route would take, so that only the id is wrong.
            let body = route.has_body.then(|| valid_body(&w, template));
            let caller = caller_for(&w, &route, &path, body.as_ref()).await;
            let answer = w.api.call(&caller, route.method.clone(), &path, body).await;
            assert_problem_of(
                &answer,
                StatusCode::NOT_FOUND,
                "not-found",
                &format!("{} {path}", route.method),
            );
        }
    }
    assert!(users_checked >= 8, "{users_checked} routes with a user id");
    assert_eq!(w.db.event_count().await, before, "nothing changed");
}

/// Asserts a problem+json answer of `status` and `slug` for the request `what`.
#[track_caller]
fn assert_problem_of(
    answer: &(StatusCode, Value, String),
    status: StatusCode,
    slug: &str,
    what: &str,
) {
    let (actual, problem, content_type) = answer;
    assert_eq!(
        (*actual, content_type.as_str()),
        (status, "application/problem+json"),
        "{what}: {problem}"
    );
    let problem_type = problem["type"].as_str().unwrap_or_default();
    assert!(
        problem_type.starts_with("urn:finteqx:problem:"),
        "{what}: {problem}"
    );
    assert_eq!(
        problem_type,
        format!("urn:finteqx:problem:{slug}"),
        "{what}: {problem}"
    );
    assert_eq!(problem["status"], status.as_u16(), "{what}: {problem}");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|detail| !detail.is_empty()),
        "{what}: {problem}"
    );
}

//! Proven domain ownership (ADR-0025), end to end over HTTP: a claimed domain stays pending and
//! links nobody until the tenant's TXT record is served by a real DNS server (dnsmasq on
//! 127.0.0.1, `dns_server`); an address on a domain another tenant has proven is refused
//! without naming that tenant. Microsoft's word is tested in `entra_sign_in`.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use api::application::{NewUserSignIn, VerifyOutcome};
use api::dns::TxtResolver;
use domain::domain_claim::DomainClaimError;
use domain::ids::{TenantId, UserId};
use domain::values::{DomainName, Role};

use crate::dns_server::DnsServer;
use crate::helpers::{TestDb, admin, register_tenant};
use crate::persistence::new_user;

const SESSION_COOKIE: &str = "__Host-finteqx_session";
const CONTOSO_TID: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

fn contoso() -> DomainName {
    DomainName::parse("contoso.com").unwrap()
}

/// A tenant with an administrator's session, served by an app that asks `dns` for TXT records.
struct Tenant {
    id: TenantId,
    name: &'static str,
    session: String,
}

struct World {
    db: TestDb,
    http: reqwest::Client,
}

impl World {
    async fn new() -> Self {
        Self {
            db: TestDb::new().await,
            http: reqwest::Client::new(),
        }
    }

    /// A tenant and an administrator session on it.
    async fn tenant(&self, name: &'static str) -> Tenant {
        let commands = self.db.commands();
        let id = register_tenant(&commands, name).await;
        let mut administrator = new_user(
            &format!("beheer@{}.nl", name.to_lowercase().replace(' ', "-")),
            NewUserSignIn::Sms,
        );
        administrator.role = Role::Administrator;
        let admin_id = commands
            .create_user(&admin(id), id, administrator)
            .await
            .unwrap()
            .user_id;
        let session = api::http::auth::start_session(
            &self.db.pool,
            id,
            admin_id,
            Role::Administrator,
            "password",
            chrono::Utc::now(),
        )
        .await
        .unwrap();
        Tenant { id, name, session }
    }

    /// The service, asking `dns` for TXT records.
    async fn app(&self, dns: &DnsServer) -> String {
        let mut settings = self.db.settings();
        settings.dns.nameserver.clone_from(&dns.address);
        self.db.spawn_app_with(&settings).await
    }

    async fn call(
        &self,
        base: &str,
        tenant: &Tenant,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{base}/tenants/{}{path}", tenant.id))
            .header("cookie", format!("{SESSION_COOKIE}={}", tenant.session));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn create_user(
        &self,
        base: &str,
        tenant: &Tenant,
        email: &str,
        method: &str,
    ) -> (StatusCode, Value) {
        self.call(
            base,
            tenant,
            Method::POST,
            "/users",
            Some(json!({"email": email, "display_name": "Anne de Vries", "role": "user", "locale": "nl", "method": method})),
        )
        .await
    }

    async fn domain_on_settings(&self, base: &str, tenant: &Tenant) -> Value {
        self.db.run_projections().await;
        let (status, settings) = self
            .call(base, tenant, Method::GET, "/settings", None)
            .await;
        assert_eq!(status, StatusCode::OK, "{settings}");
        settings["domains"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["domain"] == "contoso.com")
            .cloned()
            .unwrap_or(Value::Null)
    }

    async fn linked_domain(&self, user_id: UserId) -> Option<String> {
        let user = self
            .db
            .commands()
            .users()
            .load(&user_id.to_string())
            .await
            .unwrap();
        user.account()
            .and_then(|account| account.entra.as_ref())
            .map(|link| link.domain.as_str().to_owned())
    }
}

fn user_id(created: &Value) -> UserId {
    UserId::from_uuid(Uuid::parse_str(created["user_id"].as_str().unwrap()).unwrap())
}

#[tokio::test]
async fn a_claimed_domain_stays_pending_and_links_nobody_until_its_txt_record_is_served() {
    // Arrange: a DNS server that serves a wrong value at the challenge name, and one that
    // serves the tenant's own value.
    let world = World::new().await;
    let tenant = world.tenant("Contoso").await;
    let challenge = world.db.commands().domain_challenge(tenant.id, &contoso());
    assert_eq!(challenge.record_name, "_finteqx-challenge.contoso.com");
    let wrong_dns = DnsServer::start(&[(
        "_finteqx-challenge.contoso.com",
        "finteqx-domain-verification=0123456789abcdef0123456789abcdef",
    )])
    .await;
    let base = world.app(&wrong_dns).await;
    let (status, created) = world
        .create_user(&base, &tenant, "alice@contoso.com", "sms")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let alice = user_id(&created);

    // Act: claim the domain.
    let (status, claimed) = world
        .call(
            &base,
            &tenant,
            Method::POST,
            "/domains",
            Some(json!({"domain": "contoso.com", "entra_tenant_id": CONTOSO_TID})),
        )
        .await;

    // Assert: pending, with the record to publish, here and on the settings screen.
    assert_eq!(status, StatusCode::OK, "{claimed}");
    assert_eq!(claimed["status"], "pending");
    assert_eq!(claimed["txt_record"]["name"], challenge.record_name);
    assert_eq!(claimed["txt_record"]["value"], challenge.value);
    let shown = world.domain_on_settings(&base, &tenant).await;
    assert_eq!(shown["status"], "pending", "{shown}");
    assert_eq!(shown["proof"], Value::Null);
    assert_eq!(shown["txt_record"]["name"], challenge.record_name);
    assert_eq!(shown["txt_record"]["value"], challenge.value);

    // A pending domain links nobody, not even in a dry run, and gets no Entra users.
    for dry_run in [true, false] {
        let (status, problem) = world
            .call(
                &base,
                &tenant,
                Method::POST,
                "/domains/contoso.com/link_users",
                Some(json!({"user_ids": [alice.as_uuid()], "dry_run": dry_run})),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "dry run {dry_run}: {problem}");
        assert_eq!(problem["type"], "urn:finteqx:problem:domain-not-proven");
    }
    assert_eq!(world.linked_domain(alice).await, None);
    let (status, problem) = world
        .create_user(&base, &tenant, "bob@contoso.com", "entra_id")
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["type"], "urn:finteqx:problem:domain-not-proven");

    // A wrong value at the challenge name keeps it pending.
    let (status, checked) = world
        .call(
            &base,
            &tenant,
            Method::POST,
            "/domains/contoso.com/verify",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{checked}");
    assert_eq!(checked["status"], "pending");
    assert_eq!(checked["txt_record"]["value"], challenge.value);
    assert_eq!(
        world.domain_on_settings(&base, &tenant).await["status"],
        "pending"
    );

    // With the tenant's value served, the check proves the domain.
    let right_dns = DnsServer::start(&[
        ("_finteqx-challenge.contoso.com", "v=other-service"),
        ("_finteqx-challenge.contoso.com", &challenge.value),
    ])
    .await;
    let base = world.app(&right_dns).await;
    let (status, checked) = world
        .call(
            &base,
            &tenant,
            Method::POST,
            "/domains/contoso.com/verify",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{checked}");
    assert_eq!(checked["status"], "proven");
    assert!(checked["position"].is_i64(), "{checked}");
    let shown = world.domain_on_settings(&base, &tenant).await;
    assert_eq!(shown["status"], "proven", "{shown}");
    assert_eq!(shown["proof"], "dns_txt");
    assert_eq!(shown["txt_record"], Value::Null);

    // Now linking works.
    let (status, linked) = world
        .call(
            &base,
            &tenant,
            Method::POST,
            "/domains/contoso.com/link_users",
            Some(json!({"user_ids": [alice.as_uuid()]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{linked}");
    assert_eq!(linked["users"][0]["result"], "changed", "{linked}");
    assert_eq!(
        world.linked_domain(alice).await.as_deref(),
        Some("contoso.com")
    );
    // Checking again changes nothing.
    let (_, again) = world
        .call(
            &base,
            &tenant,
            Method::POST,
            "/domains/contoso.com/verify",
            None,
        )
        .await;
    assert_eq!(again["status"], "proven");
    assert_eq!(again["position"], Value::Null);

    world.db.run_projections().await;
    world.db.assert_projections_verify().await;
}

#[tokio::test]
async fn a_domain_with_no_record_at_all_stays_pending() {
    let world = World::new().await;
    let tenant = world.tenant("Contoso").await;
    let dns = DnsServer::start(&[("_finteqx-challenge.fabrikam.com", "unrelated")]).await;
    let commands = world.db.commands();
    commands
        .bind_domain(
            &admin(tenant.id),
            tenant.id,
            contoso(),
            domain::ids::EntraTenantId::parse(CONTOSO_TID).unwrap(),
        )
        .await
        .unwrap();
    let resolver = TxtResolver::with_nameserver(&dns.address, Duration::from_secs(2)).unwrap();
    assert_eq!(
        resolver
            .txt_values("_finteqx-challenge.contoso.com")
            .await
            .unwrap(),
        Vec::<String>::new(),
        "NXDOMAIN reads as no record"
    );
    let outcome = commands
        .verify_domain(&admin(tenant.id), &resolver, tenant.id, contoso())
        .await
        .unwrap();
    assert_eq!(outcome, VerifyOutcome::Pending);
    let claim = commands.domains().load("contoso.com").await.unwrap();
    assert_eq!(
        claim.proven_binding_for(tenant.id),
        Err(DomainClaimError::NotProven)
    );
}

#[tokio::test]
async fn an_address_on_a_domain_proven_by_another_tenant_is_refused_without_naming_that_tenant() {
    // Arrange: a squatter claims contoso.com first; the real owner claims and proves it.
    let world = World::new().await;
    let squatter = world.tenant("Squatter Probe").await;
    let owner = world.tenant("Contoso").await;
    let owner_value = world
        .db
        .commands()
        .domain_challenge(owner.id, &contoso())
        .value;
    let squatter_value = world
        .db
        .commands()
        .domain_challenge(squatter.id, &contoso())
        .value;
    assert_ne!(
        owner_value, squatter_value,
        "each tenant has its own challenge, so a published record cannot be reused"
    );
    let dns = DnsServer::start(&[("_finteqx-challenge.contoso.com", &owner_value)]).await;
    let base = world.app(&dns).await;
    let (status, squatter_user) = world
        .create_user(&base, &squatter, "someone@squatter-probe.nl", "sms")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{squatter_user}");
    let claim = json!({"domain": "contoso.com", "entra_tenant_id": CONTOSO_TID});
    let (status, squatted) = world
        .call(
            &base,
            &squatter,
            Method::POST,
            "/domains",
            Some(claim.clone()),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a pending claim is allowed: {squatted}"
    );
    let (status, _) = world
        .call(&base, &owner, Method::POST, "/domains", Some(claim.clone()))
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the squatter's pending claim keeps nobody out"
    );
    // The owner's record does not prove the squatter's claim.
    let (_, checked) = world
        .call(
            &base,
            &squatter,
            Method::POST,
            "/domains/contoso.com/verify",
            None,
        )
        .await;
    assert_eq!(checked["status"], "pending", "{checked}");
    let (_, checked) = world
        .call(
            &base,
            &owner,
            Method::POST,
            "/domains/contoso.com/verify",
            None,
        )
        .await;
    assert_eq!(checked["status"], "proven", "{checked}");

    // Act + assert: the squatter can no longer give addresses on the domain, claim or prove it.
    let refusals = [
        (
            "create an SMS user",
            world
                .create_user(&base, &squatter, "ceo@contoso.com", "sms")
                .await,
        ),
        (
            "create a user on a subdomain",
            world
                .create_user(&base, &squatter, "ceo@mail.contoso.com", "sms")
                .await,
        ),
        (
            "create an Entra user",
            world
                .create_user(&base, &squatter, "cfo@contoso.com", "entra_id")
                .await,
        ),
        (
            "change an address",
            world
                .call(
                    &base,
                    &squatter,
                    Method::PUT,
                    &format!(
                        "/users/{}/email",
                        squatter_user["user_id"].as_str().unwrap()
                    ),
                    Some(json!({"email": "ceo@contoso.com"})),
                )
                .await,
        ),
    ];
    for (what, (status, problem)) in refusals {
        assert_eq!(status, StatusCode::CONFLICT, "{what}: {problem}");
        assert_eq!(
            problem["type"], "urn:finteqx:problem:email-domain-of-another-organisation",
            "{what}"
        );
        let text = problem.to_string();
        assert!(
            !text.contains(&owner.id.to_string()) && !text.contains(owner.name),
            "{what}: the problem names the owner: {text}"
        );
    }
    let (status, problem) = world
        .call(&base, &squatter, Method::POST, "/domains", Some(claim))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(
        problem["type"],
        "urn:finteqx:problem:domain-claimed-by-another-tenant"
    );
    assert!(!problem.to_string().contains(&owner.id.to_string()));
    let (status, problem) = world
        .call(
            &base,
            &squatter,
            Method::POST,
            "/domains/contoso.com/verify",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");

    // The owner's own users on the domain are fine.
    let (status, created) = world
        .create_user(&base, &owner, "ceo@contoso.com", "sms")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    world.db.run_projections().await;
    world.db.assert_projections_verify().await;
}

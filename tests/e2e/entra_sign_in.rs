//! "Inloggen met Microsoft Entra ID" end to end against a real OpenID provider (node
//! `oidc-provider`, one issuer per fake Entra tenant, Entra-shaped claims): the browser is sent
//! to the tenant's authority, signs in there, and brings the code back to the service's callback.

use reqwest::{StatusCode, Url};
use serde_json::{Value, json};
use uuid::Uuid;

use api::application::NewUserSignIn;
use api::configuration::Settings;
use domain::ids::{EntraTenantId, TenantId, UserId};
use domain::tenant::{ConsentDecision, ConsentState};
use domain::values::DomainName;

use crate::helpers::{TestDb, admin, register_tenant, set_cookie, set_password_via_link};
use crate::oidc_provider::{
    CLIENT_ID, CLIENT_SECRET, CONSENT_REDIRECT_URI, CONTOSO_TID, DECLINING_TID, FABRIKAM_TID,
    OidcProvider, REDIRECT_URI, browser, follow_until,
};
use crate::persistence::new_user;

const FLOW_COOKIE: &str = "__Host-finteqx_entra";
const SESSION_COOKIE: &str = "__Host-finteqx_session";

fn tid(text: &str) -> EntraTenantId {
    EntraTenantId::parse(text).unwrap()
}

struct World {
    db: TestDb,
    provider: OidcProvider,
    base: String,
    tenant: TenantId,
    http: reqwest::Client,
}

/// A tenant whose domain `contoso.com` is bound to the contoso Entra tenant and proven, with
/// its users created; the service points at the local provider.
async fn world(consent_granted: bool) -> World {
    world_with_domain(consent_granted, true).await
}

/// As [`world`], with `contoso.com` proven or still pending.
async fn world_with_domain(consent_granted: bool, proven: bool) -> World {
    let provider = OidcProvider::start().await;
    let db = TestDb::new().await;
    let commands = db.commands();
    let tenant = register_tenant(&commands, "Akkermans Accountants").await;
    if consent_granted {
        commands
            .record_entra_consent(
                &admin(tenant),
                tenant,
                tid(CONTOSO_TID),
                ConsentDecision::Granted,
            )
            .await
            .unwrap();
    }
    let contoso = DomainName::parse("contoso.com").unwrap();
    if proven {
        crate::helpers::bind_proven_domain(&commands, tenant, &contoso, tid(CONTOSO_TID)).await;
    } else {
        commands
            .bind_domain(&admin(tenant), tenant, contoso, tid(CONTOSO_TID))
            .await
            .unwrap();
    }
    db.run_projections().await;
    let mut settings: Settings = db.settings();
    settings.entra.authority_base.clone_from(&provider.base_url);
    settings.entra.client_id = CLIENT_ID.to_owned();
    settings.entra.client_secret = CLIENT_SECRET.to_owned().into();
    settings.entra.redirect_uri = REDIRECT_URI.to_owned();
    settings.entra.consent_redirect_uri = CONSENT_REDIRECT_URI.to_owned();
    let base = db.spawn_app_with(&settings).await;
    World {
        db,
        provider,
        base,
        tenant,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
    }
}

impl World {
    async fn entra_user(&self, email: &str) -> UserId {
        let user_id = self
            .db
            .commands()
            .create_user(
                &admin(self.tenant),
                self.tenant,
                new_user(email, NewUserSignIn::EntraId),
            )
            .await
            .unwrap()
            .user_id;
        self.db.run_projections().await;
        user_id
    }

    /// `POST /sign_in/entra`: Microsoft's URL and the flow cookie.
    async fn start(&self, email: &str) -> (String, String) {
        let response = self
            .http
            .post(format!("{}/sign_in/entra", self.base))
            .json(&json!({ "email": email }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "start for {email}");
        let flow = set_cookie(&response, FLOW_COOKIE).expect("a flow cookie");
        let body: Value = response.json().await.unwrap();
        (body["authorization_url"].as_str().unwrap().to_owned(), flow)
    }

    /// Delivers Microsoft's redirect to the service's callback, as the browser would.
    async fn callback(
        &self,
        path: &str,
        redirect: &Url,
        cookies: &[(&str, &str)],
    ) -> reqwest::Response {
        let cookie = cookies
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut request = self.http.get(format!(
            "{}{path}?{}",
            self.base,
            redirect.query().unwrap_or_default()
        ));
        if !cookie.is_empty() {
            request = request.header("cookie", cookie);
        }
        request.send().await.unwrap()
    }

    /// A whole sign-in; `tamper` changes Microsoft's URL as a user (or attacker) could.
    async fn sign_in(&self, email: &str, tamper: impl Fn(Url) -> Url) -> reqwest::Response {
        let (url, flow) = self.start(email).await;
        let redirect = follow_until(
            &browser(),
            tamper(Url::parse(&url).unwrap()).as_str(),
            REDIRECT_URI,
        )
        .await;
        self.callback(
            "/sign_in/entra/callback",
            &redirect,
            &[(FLOW_COOKIE, &flow)],
        )
        .await
    }

    async fn session(&self, session: &str) -> reqwest::Response {
        self.http
            .get(format!("{}/session", self.base))
            .header("cookie", format!("{SESSION_COOKIE}={session}"))
            .send()
            .await
            .unwrap()
    }

    async fn login_options(&self, email: &str) -> Value {
        self.db.run_projections().await;
        self.http
            .post(format!("{}/login/options", self.base))
            .json(&json!({ "email": email }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The failures recorded for the user's sign-in attempts, in order.
    async fn failures(&self, user_id: UserId) -> Vec<Value> {
        sqlx::query_scalar(
            "SELECT payload->'SignInFailed'->'reason' FROM events \
             WHERE aggregate_type = 'sign_in' AND event_type = 'SignInFailed' AND user_id = $1 \
             ORDER BY global_position",
        )
        .bind(user_id.as_uuid())
        .fetch_all(&self.db.pool)
        .await
        .unwrap()
    }

    async fn bound_identity(&self, user_id: UserId) -> Option<(EntraTenantId, Uuid)> {
        let user = self
            .db
            .commands()
            .users()
            .load(&user_id.to_string())
            .await
            .unwrap();
        let link = user.account().unwrap().entra.as_ref()?;
        let identity = link.identity.as_ref()?;
        Some((
            identity.entra_tenant_id,
            identity.object_id.known().unwrap().as_uuid(),
        ))
    }
}

fn with_param(mut url: Url, name: &str, value: &str) -> Url {
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(key, _)| key != name)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    url.query_pairs_mut()
        .clear()
        .extend_pairs(pairs)
        .append_pair(name, value);
    url
}

async fn problem_type(response: reqwest::Response) -> (StatusCode, String, String) {
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    (
        status,
        body["type"]
            .as_str()
            .unwrap_or_default()
            .trim_start_matches("urn:finteqx:problem:")
            .to_owned(),
        body["detail"].as_str().unwrap_or_default().to_owned(),
    )
}

const ALICE_OID: &str = "c0000000-0000-0000-0000-000000000001";

#[tokio::test]
async fn a_linked_user_signs_in_with_entra_and_later_sign_ins_match_the_bound_identity() {
    let world = world(true).await;
    let alice = world.entra_user("alice@contoso.com").await;
    let options = world.login_options("Alice@Contoso.com").await;
    assert_eq!(options["step"], "entra_id");
    assert_eq!(options["consent_notice"], false);

    // The redirect goes to the domain's Entra tenant with PKCE, state, nonce and the login hint.
    let (url, _) = world.start("alice@contoso.com").await;
    let url = Url::parse(&url).unwrap();
    assert!(
        url.as_str()
            .starts_with(&world.provider.issuer(CONTOSO_TID)),
        "{url}"
    );
    let params: std::collections::BTreeMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(params["code_challenge_method"], "S256");
    assert_eq!(params["login_hint"], "alice@contoso.com");
    assert!(params.contains_key("state") && params.contains_key("nonce"));

    let first = world.sign_in("alice@contoso.com", |url| url).await;
    assert_eq!(first.status(), StatusCode::OK);
    let session = set_cookie(&first, SESSION_COOKIE).expect("a session");
    assert_eq!(first.json::<Value>().await.unwrap()["next"], "signed_in");
    let view: Value = world.session(&session).await.json().await.unwrap();
    assert_eq!(view["method"], "entra_id");
    assert_eq!(view["user_id"], alice.to_string());
    assert_eq!(
        world.bound_identity(alice).await,
        Some((tid(CONTOSO_TID), Uuid::parse_str(ALICE_OID).unwrap())),
        "the first sign-in binds tid + oid"
    );

    let second = world.sign_in("alice@contoso.com", |url| url).await;
    assert_eq!(
        second.status(),
        StatusCode::OK,
        "the bound identity signs in again"
    );
    assert!(world.failures(alice).await.is_empty());
    world.db.run_projections().await;
    world.db.assert_projections_verify().await;
}

#[tokio::test]
async fn an_alias_sign_in_is_refused_naming_the_primary_address() {
    let world = world(true).await;
    let al = world.entra_user("al@contoso.com").await;
    let response = world.sign_in("al@contoso.com", |url| url).await;
    let (status, slug, detail) = problem_type(response).await;
    assert_eq!(
        (status, slug.as_str()),
        (StatusCode::FORBIDDEN, "entra-not-primary-address")
    );
    assert!(detail.contains("alice@contoso.com"), "{detail}");
    assert_eq!(world.bound_identity(al).await, None);
    let failures = world.failures(al).await;
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0]["kind"], "entra_refused");
    assert_eq!(failures[0]["refusal"]["kind"], "not_primary_address");
    assert!(
        !failures[0].to_string().contains("alice@contoso.com"),
        "the address is sealed in the event: {}",
        failures[0]
    );
}

#[tokio::test]
async fn a_token_of_another_entra_tenant_claiming_the_same_email_is_refused() {
    let world = world(true).await;
    let alice = world.entra_user("alice@contoso.com").await;
    // The attacker sends the flow to the Entra tenant they control, where an account carries
    // alice's address as its e-mail claim.
    let contoso = format!("/{CONTOSO_TID}/");
    let fabrikam = format!("/{FABRIKAM_TID}/");
    let response = world
        .sign_in("alice@contoso.com", |url| {
            Url::parse(&url.as_str().replace(&contoso, &fabrikam)).unwrap()
        })
        .await;
    let (status, slug, _) = problem_type(response).await;
    assert_eq!(
        (status, slug.as_str()),
        (StatusCode::UNAUTHORIZED, "entra-sign-in-failed")
    );
    assert_eq!(world.bound_identity(alice).await, None, "nothing bound");
    let failures = world.failures(alice).await;
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0]["kind"], "entra_provider_error");
}

#[tokio::test]
async fn a_second_entra_user_whose_email_claim_equals_a_linked_users_cannot_take_the_account() {
    let world = world(true).await;
    let alice = world.entra_user("alice@contoso.com").await;
    assert_eq!(
        world.sign_in("alice@contoso.com", |url| url).await.status(),
        StatusCode::OK
    );
    // Mallory, another user of the same Entra tenant whose e-mail claim says alice's address,
    // signs in at Microsoft when the flow for alice's account is started.
    let response = world
        .sign_in("alice@contoso.com", |url| {
            with_param(url, "login_hint", "mallory@contoso.com")
        })
        .await;
    assert_eq!(
        response.headers().get("set-cookie").map(|_| ()),
        None,
        "no session"
    );
    let (status, slug, _) = problem_type(response).await;
    assert_eq!(
        (status, slug.as_str()),
        (StatusCode::FORBIDDEN, "entra-identity-mismatch")
    );
    assert_eq!(
        world.bound_identity(alice).await,
        Some((tid(CONTOSO_TID), Uuid::parse_str(ALICE_OID).unwrap())),
        "alice's binding is untouched"
    );
}

#[tokio::test]
async fn guests_and_unverified_addresses_are_refused() {
    let world = world(true).await;
    world.entra_user("guest@contoso.com").await;
    world.entra_user("unverified@contoso.com").await;
    let guest = problem_type(world.sign_in("guest@contoso.com", |url| url).await).await;
    assert_eq!(
        (guest.0, guest.1.as_str()),
        (StatusCode::FORBIDDEN, "entra-guest-account")
    );
    let unverified = problem_type(world.sign_in("unverified@contoso.com", |url| url).await).await;
    assert_eq!(
        (unverified.0, unverified.1.as_str()),
        (StatusCode::FORBIDDEN, "entra-email-not-verified")
    );
}

#[tokio::test]
async fn a_consent_error_is_recorded_and_shown_as_the_consent_notice() {
    let world = world(false).await;
    let user = world.entra_user("noconsent@contoso.com").await;
    let other = world.entra_user("consentrequired@contoso.com").await;
    assert_eq!(
        world.login_options("noconsent@contoso.com").await["consent_notice"],
        true
    );

    for (email, user_id, code) in [
        ("noconsent@contoso.com", user, "AADSTS90094"),
        ("consentrequired@contoso.com", other, "AADSTS65001"),
    ] {
        let (status, slug, detail) = problem_type(world.sign_in(email, |url| url).await).await;
        assert_eq!(
            (status, slug.as_str()),
            (StatusCode::FORBIDDEN, "entra-consent-required")
        );
        assert_eq!(
            detail,
            "your administrator must approve FinteQX in Microsoft Entra ID"
        );
        let failures = world.failures(user_id).await;
        assert_eq!(failures.len(), 1, "{email}");
        assert_eq!(failures[0]["kind"], "entra_consent_required");
        assert_eq!(failures[0]["error_code"], code);
        assert_eq!(failures[0]["entra_tenant_id"], CONTOSO_TID);
    }
    let history: Value = world
        .http
        .get(format!("{}/session", world.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        history["type"], "urn:finteqx:problem:unauthenticated",
        "no session was started"
    );
}

#[tokio::test]
async fn state_nonce_and_pkce_mismatches_are_refused() {
    let world = world(true).await;
    let alice = world.entra_user("alice@contoso.com").await;

    // State: a callback without this browser's flow cookie, or with another flow's state.
    let (url, flow) = world.start("alice@contoso.com").await;
    let redirect = follow_until(&browser(), &url, REDIRECT_URI).await;
    let (_, other_flow) = world.start("alice@contoso.com").await;
    for cookies in [vec![], vec![(FLOW_COOKIE, other_flow.as_str())]] {
        let (status, slug, _) = problem_type(
            world
                .callback("/sign_in/entra/callback", &redirect, &cookies)
                .await,
        )
        .await;
        assert_eq!(
            (status, slug.as_str()),
            (StatusCode::BAD_REQUEST, "entra-state-unknown")
        );
    }
    let forged = with_param(redirect.clone(), "state", &other_flow);
    let (status, slug, _) = problem_type(
        world
            .callback("/sign_in/entra/callback", &forged, &[(FLOW_COOKIE, &flow)])
            .await,
    )
    .await;
    assert_eq!(
        (status, slug.as_str()),
        (StatusCode::BAD_REQUEST, "entra-state-unknown")
    );
    // The genuine callback still works once, and only once.
    let genuine = world
        .callback(
            "/sign_in/entra/callback",
            &redirect,
            &[(FLOW_COOKIE, &flow)],
        )
        .await;
    assert_eq!(genuine.status(), StatusCode::OK);
    let replay = world
        .callback(
            "/sign_in/entra/callback",
            &redirect,
            &[(FLOW_COOKIE, &flow)],
        )
        .await;
    assert_eq!(problem_type(replay).await.1, "entra-state-unknown");

    // Nonce: the ID token carries another nonce than the one kept for the flow.
    let nonce = world
        .sign_in("alice@contoso.com", |url| {
            with_param(url, "nonce", "attacker-nonce")
        })
        .await;
    assert_eq!(problem_type(nonce).await.1, "entra-sign-in-failed");
    // PKCE: the code was issued for another challenge, so the verifier does not redeem it.
    let (_, other_challenge) = openidconnect::PkceCodeChallenge::new_random_sha256();
    let pkce = world
        .sign_in("alice@contoso.com", |url| {
            with_param(url, "code_challenge", other_challenge.secret())
        })
        .await;
    assert_eq!(problem_type(pkce).await.1, "entra-sign-in-failed");
    let codes: Vec<Value> = world
        .failures(alice)
        .await
        .into_iter()
        .map(|failure| failure["error_code"].clone())
        .collect();
    assert_eq!(
        codes,
        vec![json!("invalid_id_token"), json!("invalid_grant")]
    );
}

/// An administrator's session, as the password sign-in would start it.
async fn admin_session(world: &World) -> (UserId, String) {
    let commands = world.db.commands();
    let mut new_admin = new_user("beheer@akkermans.nl", NewUserSignIn::Sms);
    new_admin.role = domain::values::Role::Administrator;
    let admin_id = commands
        .create_user(&admin(world.tenant), world.tenant, new_admin)
        .await
        .unwrap()
        .user_id;
    let secret = api::http::auth::start_session(
        &world.db.pool,
        world.tenant,
        admin_id,
        domain::values::Role::Administrator,
        "password",
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    (admin_id, secret)
}

impl World {
    async fn start_consent(&self, session: &str, entra_tenant_id: &str) -> (String, String) {
        let response = self
            .http
            .post(format!(
                "{}/tenants/{}/entra/admin_consent",
                self.base, self.tenant
            ))
            .header("cookie", format!("{SESSION_COOKIE}={session}"))
            .json(&json!({ "entra_tenant_id": entra_tenant_id }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let flow = set_cookie(&response, FLOW_COOKIE).unwrap();
        let body: Value = response.json().await.unwrap();
        (body["authorization_url"].as_str().unwrap().to_owned(), flow)
    }

    async fn settings(&self, session: &str) -> Value {
        self.http
            .get(format!("{}/tenants/{}/settings", self.base, self.tenant))
            .header("cookie", format!("{SESSION_COOKIE}={session}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn consent_state(&self, entra_tenant_id: &str) -> Option<ConsentState> {
        let tenant = self
            .db
            .commands()
            .tenants()
            .load(&self.tenant.to_string())
            .await
            .unwrap();
        tenant.consent(tid(entra_tenant_id))
    }
}

#[tokio::test]
async fn admin_consent_is_bound_to_the_session_and_confirmed_by_the_entra_tenants_sign_in() {
    let world = world(false).await;
    let (_, session) = admin_session(&world).await;
    let (_, stranger) = admin_session_of_another_tenant(&world).await;

    world.db.run_projections().await;
    assert_eq!(
        world.settings(&session).await["consent_warning"],
        true,
        "the settings screen warns until consent is recorded"
    );
    let (url, flow) = world.start_consent(&session, CONTOSO_TID).await;
    assert!(
        url.starts_with(&format!(
            "{}/adminconsent",
            world.provider.issuer(CONTOSO_TID)
        )),
        "{url}"
    );
    let consented = follow_until(&browser(), &url, CONSENT_REDIRECT_URI).await;

    // Another administrator's browser cannot use (or spend) the callback.
    let foreign = world
        .callback(
            "/entra/admin_consent/callback",
            &consented,
            &[(SESSION_COOKIE, &stranger), (FLOW_COOKIE, &flow)],
        )
        .await;
    assert_eq!(problem_type(foreign).await.1, "entra-state-unknown");

    // The callback's tenant is only a hint: the administrator is sent to sign in at Microsoft.
    let hinted = world
        .callback(
            "/entra/admin_consent/callback",
            &consented,
            &[(SESSION_COOKIE, &session), (FLOW_COOKIE, &flow)],
        )
        .await;
    assert_eq!(hinted.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        world.consent_state(CONTOSO_TID).await,
        None,
        "not recorded yet"
    );
    let confirm_flow = set_cookie(&hinted, FLOW_COOKIE).unwrap();
    let location = hinted.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(&world.provider.issuer(CONTOSO_TID)),
        "{location}"
    );
    let signed_in = follow_until(
        &browser(),
        with_param(
            Url::parse(&location).unwrap(),
            "login_hint",
            "admin@contoso.com",
        )
        .as_str(),
        REDIRECT_URI,
    )
    .await;
    let confirmed = world
        .callback(
            "/sign_in/entra/callback",
            &signed_in,
            &[(SESSION_COOKIE, &session), (FLOW_COOKIE, &confirm_flow)],
        )
        .await;
    assert_eq!(confirmed.status(), StatusCode::OK);
    let body: Value = confirmed.json().await.unwrap();
    assert_eq!(
        body,
        json!({"consent": "granted", "entra_tenant_id": CONTOSO_TID})
    );
    assert_eq!(
        world.consent_state(CONTOSO_TID).await,
        Some(ConsentState::Granted)
    );
    world.db.run_projections().await;
    let settings = world.settings(&session).await;
    assert_eq!(settings["consent_warning"], false, "{settings}");
}

impl World {
    /// The whole admin-consent flow for contoso, confirmed by `entra_admin`'s sign-in there.
    async fn consent_confirmed_by(&self, session: &str, entra_admin: &str) -> Value {
        let (url, flow) = self.start_consent(session, CONTOSO_TID).await;
        let consented = follow_until(&browser(), &url, CONSENT_REDIRECT_URI).await;
        let hinted = self
            .callback(
                "/entra/admin_consent/callback",
                &consented,
                &[(SESSION_COOKIE, session), (FLOW_COOKIE, &flow)],
            )
            .await;
        assert_eq!(hinted.status(), StatusCode::SEE_OTHER);
        let confirm_flow = set_cookie(&hinted, FLOW_COOKIE).unwrap();
        let location = hinted.headers()["location"].to_str().unwrap().to_owned();
        let signed_in = follow_until(
            &browser(),
            with_param(Url::parse(&location).unwrap(), "login_hint", entra_admin).as_str(),
            REDIRECT_URI,
        )
        .await;
        let confirmed = self
            .callback(
                "/sign_in/entra/callback",
                &signed_in,
                &[(SESSION_COOKIE, session), (FLOW_COOKIE, &confirm_flow)],
            )
            .await;
        assert_eq!(confirmed.status(), StatusCode::OK);
        confirmed.json().await.unwrap()
    }

    /// `contoso.com` on the settings screen.
    async fn contoso_on_settings(&self, session: &str) -> Value {
        self.db.run_projections().await;
        let settings = self.settings(session).await;
        settings["domains"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["domain"] == "contoso.com")
            .cloned()
            .unwrap()
    }
}

#[tokio::test]
async fn an_entra_administrators_sign_in_whose_token_verifies_the_domain_proves_it() {
    // Arrange: contoso.com claimed, bound to the contoso Entra tenant, still pending.
    let world = world_with_domain(false, false).await;
    let (_, session) = admin_session(&world).await;
    let shown = world.contoso_on_settings(&session).await;
    assert_eq!(shown["status"], "pending", "{shown}");
    let refused = world
        .db
        .commands()
        .create_user(
            &admin(world.tenant),
            world.tenant,
            new_user("alice@contoso.com", NewUserSignIn::EntraId),
        )
        .await;
    assert!(
        matches!(
            refused,
            Err(api::application::CommandError::DomainClaim(
                domain::domain_claim::DomainClaimError::NotProven
            ))
        ),
        "{refused:?}"
    );

    // Act: the consent confirmation is signed by a contoso user whose token has xms_edov false.
    let body = world
        .consent_confirmed_by(&session, "unverified@contoso.com")
        .await;

    // Assert: consent is granted, but Microsoft did not vouch for the domain.
    assert_eq!(body["consent"], "granted");
    assert_eq!(
        world.contoso_on_settings(&session).await["status"],
        "pending"
    );

    // Act: again, signed by contoso's administrator, whose token says the domain is verified.
    let body = world
        .consent_confirmed_by(&session, "admin@contoso.com")
        .await;

    // Assert: Microsoft's word proves the domain; its Entra users can now be created.
    assert_eq!(body["consent"], "granted");
    let shown = world.contoso_on_settings(&session).await;
    assert_eq!(shown["status"], "proven", "{shown}");
    assert_eq!(shown["proof"], "entra_verified_domain");
    assert_eq!(shown["txt_record"], Value::Null);
    let user = world.entra_user("alice@contoso.com").await;
    let response = world.sign_in("alice@contoso.com", |url| url).await;
    assert_eq!(response.status(), StatusCode::OK, "alice signs in");
    assert!(world.bound_identity(user).await.is_some());
    world.db.assert_projections_verify().await;
}

#[tokio::test]
async fn a_user_linked_through_a_domain_that_is_not_proven_cannot_sign_in_with_entra() {
    // Arrange: contoso.com pending, and a link made before proof existed, written straight to
    // the user's stream as an old log holds it (the use cases no longer link through it).
    let world = world_with_domain(true, false).await;
    let commands = world.db.commands();
    let tenant = world.tenant;
    let user_id = commands
        .create_user(
            &admin(tenant),
            tenant,
            new_user("alice@contoso.com", NewUserSignIn::Sms),
        )
        .await
        .unwrap()
        .user_id;
    let binding = domain::entra::DomainBinding {
        tenant_id: tenant,
        domain: DomainName::parse("contoso.com").unwrap(),
        entra_tenant_id: tid(CONTOSO_TID),
    };
    commands
        .users()
        .execute(
            &user_id.to_string(),
            domain::TenantScoped::new(
                tenant,
                domain::user::UserCommand::LinkUserToEntra { binding },
            ),
            &admin(tenant),
        )
        .await
        .unwrap();
    world.db.run_projections().await;

    // Act
    let response = world
        .http
        .post(format!("{}/sign_in/entra", world.base))
        .json(&json!({ "email": "alice@contoso.com" }))
        .send()
        .await
        .unwrap();

    // Assert: a pending domain sends nobody to Microsoft, linked or not.
    let refused = problem_type(response).await;
    assert_eq!(
        (refused.0, refused.1.as_str()),
        (StatusCode::CONFLICT, "sign-in-with-password")
    );
    assert_eq!(
        world.login_options("alice@contoso.com").await["step"],
        "password"
    );
    assert_eq!(world.bound_identity(user_id).await, None);
}

#[tokio::test]
async fn a_forged_or_refused_admin_consent_records_no_grant() {
    let world = world(false).await;
    let (_, session) = admin_session(&world).await;

    // A callback naming another tenant than the one consent was asked of is not confirmed.
    let (url, flow) = world.start_consent(&session, CONTOSO_TID).await;
    let consented = follow_until(&browser(), &url, CONSENT_REDIRECT_URI).await;
    let forged = with_param(consented, "tenant", FABRIKAM_TID);
    let answer = world
        .callback(
            "/entra/admin_consent/callback",
            &forged,
            &[(SESSION_COOKIE, &session), (FLOW_COOKIE, &flow)],
        )
        .await;
    assert_eq!(problem_type(answer).await.1, "entra-consent-not-confirmed");
    assert_eq!(world.consent_state(FABRIKAM_TID).await, None);
    assert_eq!(world.consent_state(CONTOSO_TID).await, None);

    // The declining tenant's administrator refuses: recorded with Microsoft's code.
    let (url, flow) = world.start_consent(&session, DECLINING_TID).await;
    let declined = follow_until(&browser(), &url, CONSENT_REDIRECT_URI).await;
    let answer = world
        .callback(
            "/entra/admin_consent/callback",
            &declined,
            &[(SESSION_COOKIE, &session), (FLOW_COOKIE, &flow)],
        )
        .await;
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.json::<Value>().await.unwrap()["consent"], "refused");
    assert!(matches!(
        world.consent_state(DECLINING_TID).await,
        Some(ConsentState::Refused)
    ));
    let code: String = sqlx::query_scalar(
        "SELECT payload->'EntraConsentRefused'->>'error_code' FROM events WHERE event_type = 'EntraConsentRefused'",
    )
    .fetch_one(&world.db.pool)
    .await
    .unwrap();
    assert_eq!(code, "AADSTS65004");
}

async fn admin_session_of_another_tenant(world: &World) -> (TenantId, String) {
    let commands = world.db.commands();
    let other = register_tenant(&commands, "Another Firm").await;
    let secret = api::http::auth::start_session(
        &world.db.pool,
        other,
        UserId::from_uuid(Uuid::now_v7()),
        domain::values::Role::Administrator,
        "password",
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    (other, secret)
}

#[tokio::test]
async fn linking_keeps_the_session_and_the_next_sign_in_uses_entra_then_unlinking_needs_a_new_password()
 {
    let world = world(true).await;
    let commands = world.db.commands();
    let bob = commands
        .create_user(
            &admin(world.tenant),
            world.tenant,
            new_user("bob@contoso.com", NewUserSignIn::Sms),
        )
        .await
        .unwrap()
        .user_id;
    set_password_via_link(&commands, bob, "correct horse battery staple").await;
    world.db.run_projections().await;
    let password_sign_in = |password: &'static str| {
        world
            .http
            .post(format!("{}/sign_in/password", world.base))
            .json(&json!({"email": "bob@contoso.com", "password": password}))
            .send()
    };
    let signed_in = password_sign_in("correct horse battery staple")
        .await
        .unwrap();
    assert_eq!(signed_in.status(), StatusCode::OK);
    let password_session = set_cookie(&signed_in, SESSION_COOKIE).unwrap();

    // The administrator links bob's domain users: bob's running session keeps working.
    let domain = DomainName::parse("contoso.com").unwrap();
    commands
        .link_domain_users(
            &admin(world.tenant),
            world.tenant,
            domain.clone(),
            &[bob],
            false,
        )
        .await
        .unwrap();
    let view = world.session(&password_session).await;
    assert_eq!(
        view.status(),
        StatusCode::OK,
        "linking never ends a running session"
    );
    assert_eq!(view.json::<Value>().await.unwrap()["method"], "password");

    // After logout the next sign-in must use Entra ID.
    let out = world
        .http
        .post(format!("{}/sign_out", world.base))
        .header("cookie", format!("{SESSION_COOKIE}={password_session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        world.session(&password_session).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        world.login_options("bob@contoso.com").await["step"],
        "entra_id"
    );
    let refused = password_sign_in("correct horse battery staple")
        .await
        .unwrap();
    assert_eq!(
        refused.status(),
        StatusCode::UNAUTHORIZED,
        "the password is gone"
    );
    let entra = world.sign_in("bob@contoso.com", |url| url).await;
    assert_eq!(entra.status(), StatusCode::OK);
    let entra_session = set_cookie(&entra, SESSION_COOKIE).unwrap();
    assert_eq!(
        world
            .session(&entra_session)
            .await
            .json::<Value>()
            .await
            .unwrap()["method"],
        "entra_id"
    );

    // Unlinking keeps the Entra session too, sends the set-password path, and the old password
    // no longer works; the new one does.
    commands
        .unlink_domain_users(&admin(world.tenant), world.tenant, domain, &[bob], false)
        .await
        .unwrap();
    assert_eq!(world.session(&entra_session).await.status(), StatusCode::OK);
    world.db.run_projections().await;
    let unlinked_mail: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM notification_messages WHERE user_id = $1 AND kind = 'unlinked'",
    )
    .bind(bob.as_uuid())
    .fetch_one(&world.db.pool)
    .await
    .unwrap();
    assert_eq!(
        unlinked_mail, 1,
        "the unlink e-mail with its set-password link is queued"
    );
    // The page still shows the domain's Entra button (it tells nothing about Bob); his new
    // password is what works for him now.
    assert_eq!(
        world.login_options("bob@contoso.com").await["step"],
        "entra_id"
    );
    let old = password_sign_in("correct horse battery staple")
        .await
        .unwrap();
    assert_eq!(
        old.status(),
        StatusCode::UNAUTHORIZED,
        "the old password no longer works"
    );
    let start = world
        .http
        .post(format!("{}/sign_in/entra", world.base))
        .json(&json!({"email": "bob@contoso.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        start.status(),
        StatusCode::OK,
        "the start answers for the domain, as for any address on it"
    );
    set_password_via_link(&commands, bob, "a brand new passphrase").await;
    let new = password_sign_in("a brand new passphrase").await.unwrap();
    assert_eq!(new.status(), StatusCode::OK);
    let view: Value = world
        .session(&set_cookie(&new, SESSION_COOKIE).unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(view["method"], "password");
}

#[tokio::test]
async fn signing_in_again_replaces_the_browsers_session() {
    let world = world(true).await;
    world.entra_user("alice@contoso.com").await;
    let first = world.sign_in("alice@contoso.com", |url| url).await;
    let old = set_cookie(&first, SESSION_COOKIE).unwrap();
    let (url, flow) = world.start("alice@contoso.com").await;
    let redirect = follow_until(&browser(), &url, REDIRECT_URI).await;
    let second = world
        .callback(
            "/sign_in/entra/callback",
            &redirect,
            &[(FLOW_COOKIE, &flow), (SESSION_COOKIE, &old)],
        )
        .await;
    let new = set_cookie(&second, SESSION_COOKIE).unwrap();
    assert_ne!(new, old, "a new session id after each sign-in");
    assert_eq!(world.session(&old).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(world.session(&new).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn unknown_and_password_addresses_get_the_same_answer_and_entra_off_is_a_clear_problem() {
    let world = world(true).await;
    world.entra_user("alice@contoso.com").await;
    // On the Entra domain, a linked user and an unknown address are both sent to Microsoft, with
    // the same answer; what happens there is Microsoft's sign-in, then the callback's refusal.
    for email in ["alice@contoso.com", "nobody@contoso.com"] {
        let (url, _) = world.start(email).await;
        assert!(url.contains(CONTOSO_TID), "{email}: {url}");
    }
    // Elsewhere everyone is told to use the password.
    for email in ["nobody@fabrikam.nl", "not an address"] {
        let response = world
            .http
            .post(format!("{}/sign_in/entra", world.base))
            .json(&json!({ "email": email }))
            .send()
            .await
            .unwrap();
        assert_eq!(
            problem_type(response).await.1,
            "sign-in-with-password",
            "{email}"
        );
    }
    // A service without an app registration says so.
    let plain = world.db.spawn_app().await;
    let response = world
        .http
        .post(format!("{plain}/sign_in/entra"))
        .json(&json!({"email": "alice@contoso.com"}))
        .send()
        .await
        .unwrap();
    let (status, slug, _) = problem_type(response).await;
    assert_eq!(
        (status, slug.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "entra-not-configured")
    );
}

#[tokio::test]
async fn login_page_lookups_are_limited_per_client_address() {
    let db = TestDb::new().await;
    let mut settings = db.settings();
    settings.application.lookups_per_client_per_minute = 5;
    let base = db.spawn_app_with(&settings).await;
    let http = reqwest::Client::new();
    let lookup = |email: String| {
        http.post(format!("{base}/login/options"))
            .json(&json!({ "email": email }))
            .send()
    };
    for n in 0..5 {
        let response = lookup(format!("user{n}@contoso.com")).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "lookup {n}");
    }
    let refused = lookup("user5@contoso.com".to_owned()).await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(problem_type(refused).await.1, "too-many-lookups");
    // The Entra start shares the budget.
    let entra = http
        .post(format!("{base}/sign_in/entra"))
        .json(&json!({"email": "user6@contoso.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(entra.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn a_consent_missing_sign_in_after_a_grant_turns_the_notice_and_warning_back_on_until_the_next_grant()
 {
    // Arrange: consent granted, so neither the login page nor the settings screen warns.
    let world = world(true).await;
    world.entra_user("noconsent@contoso.com").await;
    let (_, session) = admin_session(&world).await;
    let shown = |options: Value, settings: Value| {
        (
            options["consent_notice"].as_bool().unwrap(),
            settings["consent_warning"].as_bool().unwrap(),
        )
    };
    world.db.run_projections().await;
    assert_eq!(
        shown(
            world.login_options("noconsent@contoso.com").await,
            world.settings(&session).await
        ),
        (false, false),
        "granted: no notice, no warning"
    );

    // Act: Microsoft says consent is missing after all.
    let (status, slug, _) =
        problem_type(world.sign_in("noconsent@contoso.com", |url| url).await).await;
    assert_eq!(
        (status, slug.as_str()),
        (StatusCode::FORBIDDEN, "entra-consent-required")
    );

    // Assert: the latest fact wins on both screens.
    world.db.run_projections().await;
    assert_eq!(
        shown(
            world.login_options("noconsent@contoso.com").await,
            world.settings(&session).await
        ),
        (true, true),
        "a consent-missing sign-in turns the notice and the warning back on"
    );
    world
        .db
        .commands()
        .record_entra_consent(
            &admin(world.tenant),
            world.tenant,
            tid(CONTOSO_TID),
            ConsentDecision::Granted,
        )
        .await
        .unwrap();
    world.db.run_projections().await;
    assert_eq!(
        shown(
            world.login_options("noconsent@contoso.com").await,
            world.settings(&session).await
        ),
        (false, false),
        "a new grant turns them off again"
    );
}

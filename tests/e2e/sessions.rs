//! Sessions end when the account changes (spec §1, Sessions): an administrator who is deactivated
//! or erased, whose password is set or whose address changes, is signed out everywhere at once;
//! linking and unlinking keep the session (tested in `entra_sign_in`).

use reqwest::{Method, StatusCode};

use api::application::NewUserSignIn;
use api::http::auth::start_session;
use domain::ids::UserId;
use domain::user::ErasureReason;
use domain::values::{EmailAddress, Role};

use crate::helpers::{admin, set_password_via_link};
use crate::http_api::{As, World, world};
use crate::persistence::new_user;

/// A second administrator of the world's tenant, with a session.
async fn second_administrator(w: &World) -> (UserId, As) {
    let mut user = new_user("tweede-beheerder@contoso.com", NewUserSignIn::Sms);
    user.role = Role::Administrator;
    let id =
        w.db.commands()
            .create_user(&admin(w.tenant), w.tenant, user)
            .await
            .unwrap()
            .user_id;
    let session = start_session(
        &w.db.pool,
        w.tenant,
        id,
        Role::Administrator,
        "password",
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    (id, As::Session(session))
}

/// Asserts that `who` gets 401 on `GET /session` and on every route of the tenant.
async fn assert_signed_out_everywhere(w: &World, who: &As, why: &str) {
    let (status, body, _) = w.api.call(who, Method::GET, "/session", None).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "{why}: GET /session {body}"
    );
    let before = w.db.event_count().await;
    let mut routes = 0;
    for (method, path, tenant_scoped) in crate::http_api::routes(w, w.tenant) {
        if !tenant_scoped {
            continue;
        }
        let (status, body, _) = w.api.call(who, method.clone(), &path, None).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{why}: {method} {path} {body}"
        );
        routes += 1;
    }
    assert!(
        routes > 10,
        "{why}: every tenant route was tried ({routes})"
    );
    assert_eq!(w.db.event_count().await, before, "{why}: nothing changed");
}

/// Asserts that `who` still has a working session.
async fn assert_signed_in(w: &World, who: &As, why: &str) {
    let (status, body, _) = w.api.call(who, Method::GET, "/session", None).await;
    assert_eq!(status, StatusCode::OK, "{why}: {body}");
}

#[tokio::test]
async fn a_deactivated_administrators_old_cookie_opens_nothing() {
    // Arrange
    let w = world().await;
    let (_, second) = second_administrator(&w).await;
    assert_signed_in(&w, &w.admin, "before").await;

    // Act: the second administrator deactivates the first.
    let path = format!("/tenants/{}/users/{}/deactivate", w.tenant, w.admin_id);
    let (status, body, _) = w.api.call(&second, Method::POST, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Assert: the old cookie cannot reactivate itself, create an administrator or change policy.
    assert_signed_out_everywhere(&w, &w.admin, "deactivated administrator").await;
    let reactivate = format!("/tenants/{}/users/{}/reactivate", w.tenant, w.admin_id);
    let (status, _, _) = w.api.call(&w.admin, Method::POST, &reactivate, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The other administrator and the user are still signed in.
    assert_signed_in(&w, &second, "the deactivating administrator").await;
    assert_signed_in(&w, &w.user, "another user").await;
}

#[tokio::test]
async fn an_erased_administrators_old_cookie_opens_nothing() {
    // Arrange
    let w = world().await;

    // Act
    w.db.commands()
        .forget_user(
            &admin(w.tenant),
            w.tenant,
            w.admin_id,
            ErasureReason::AccountClosed,
        )
        .await
        .unwrap();

    // Assert
    assert_signed_out_everywhere(&w, &w.admin, "erased administrator").await;
    assert_signed_in(&w, &w.user, "another user").await;
}

#[tokio::test]
async fn a_new_password_or_address_ends_the_users_sessions_and_new_ones_work() {
    // Arrange
    let w = world().await;
    let commands = w.db.commands();
    let (second_id, second) = second_administrator(&w).await;

    // Act: the first administrator gets a new password.
    commands
        .issue_password_token(&admin(w.tenant), w.tenant, w.admin_id)
        .await
        .unwrap();
    set_password_via_link(&commands, w.admin_id, "een lang en sterk wachtwoord").await;

    // Assert
    assert_signed_out_everywhere(&w, &w.admin, "after a password set").await;
    let fresh = As::Session(
        start_session(
            &w.db.pool,
            w.tenant,
            w.admin_id,
            Role::Administrator,
            "password",
            chrono::Utc::now(),
        )
        .await
        .unwrap(),
    );
    assert_signed_in(&w, &fresh, "a session started after the password was set").await;

    // Act: the second administrator's address is corrected.
    commands
        .change_user_email(
            &admin(w.tenant),
            w.tenant,
            second_id,
            EmailAddress::parse("beheerder2@contoso.com").unwrap(),
        )
        .await
        .unwrap();

    // Assert
    assert_signed_out_everywhere(&w, &second, "after a changed address").await;
    assert_signed_in(&w, &fresh, "the first administrator's new session").await;
}

#[tokio::test]
async fn a_cross_site_request_with_the_session_cookie_changes_nothing() {
    // Arrange
    let w = world().await;
    let deactivate = format!("/tenants/{}/users/{}/deactivate", w.tenant, w.user_id);
    let before = w.db.event_count().await;
    let own = w.db.settings().email.public_base_url;

    // Act and assert: another site's page, as the browser names it in either header.
    for (header, value) in [
        ("origin", "https://evil.example"),
        ("origin", "null"),
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
    ] {
        let response = w
            .api
            .request(&w.admin, Method::POST, &deactivate)
            .header(header, value)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::FORBIDDEN,
            "{header}: {value}"
        );
        let problem: serde_json::Value = response.json().await.unwrap();
        assert_eq!(problem["type"], "urn:finteqx:problem:cross-site-request");
        let sign_out = w
            .api
            .request(&w.admin, Method::POST, "/sign_out")
            .header(header, value)
            .send()
            .await
            .unwrap();
        assert_eq!(
            sign_out.status(),
            StatusCode::FORBIDDEN,
            "sign-out, {header}: {value}"
        );
    }
    assert_eq!(w.db.event_count().await, before, "nothing changed");
    assert_signed_in(&w, &w.admin, "not signed out by another site").await;

    // The service's own pages may.
    let response = w
        .api
        .request(&w.admin, Method::POST, &deactivate)
        .header("origin", own.trim_end_matches('/'))
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn signing_out_removes_the_session_cookie_with_the_cookies_own_attributes() {
    // Arrange
    let w = world().await;

    // Act
    let response = w
        .api
        .request(&w.admin, Method::POST, "/sign_out")
        .send()
        .await
        .unwrap();

    // Assert: a browser only removes a `__Host-` cookie with a `Secure`, `Path=/` removal.
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let removal = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find(|value| value.starts_with(&format!("{}=", api::http::auth::SESSION_COOKIE)))
        .expect("a removal cookie")
        .to_owned();
    let mut attributes: Vec<&str> = removal.split(';').skip(1).map(str::trim).collect();
    attributes.retain(|attribute| !attribute.starts_with("Expires"));
    attributes.sort_unstable();
    assert_eq!(
        attributes,
        ["HttpOnly", "Max-Age=0", "Path=/", "SameSite=Lax", "Secure"],
        "{removal}"
    );
    assert_eq!(
        w.api.call(&w.admin, Method::GET, "/session", None).await.0,
        StatusCode::UNAUTHORIZED,
        "and the session is over"
    );
}

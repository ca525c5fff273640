//! The service's cookies, all `__Host-` ones: one builder makes both the cookie and its removal,
//! so the removal carries the same `Secure`, `HttpOnly`, `SameSite` and `Path`. A browser
//! refuses a `__Host-` cookie without `Secure` or `Path=/`, removals included, and would then
//! keep the old cookie.

use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};

/// A `__Host-` cookie that ends with the browser: `Secure`, `Path=/`, no `Domain` (what the
/// prefix demands), `HttpOnly`, `SameSite=Lax`, no `Max-Age`.
pub fn host_cookie(name: &'static str, value: String) -> Cookie<'static> {
    Cookie::build((name, value))
        .secure(true)
        .http_only(true)
        .same_site(SameSite::Lax)
        .path("/")
        .build()
}

/// `jar` with the `__Host-` cookie `name` removed: the browser gets an expired cookie with the
/// cookie's own attributes (nothing is sent when the request did not carry it).
pub fn remove_host_cookie(jar: CookieJar, name: &'static str) -> CookieJar {
    jar.remove(host_cookie(name, String::new()))
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue, header};
    use axum::response::IntoResponse as _;

    use super::*;

    const NAME: &str = "__Host-finteqx_test";

    fn set_cookies(jar: CookieJar) -> Vec<String> {
        let response = (jar, ()).into_response();
        response
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|value| value.to_str().unwrap().to_owned())
            .collect()
    }

    fn attributes(set_cookie: &str) -> Vec<String> {
        let mut attributes: Vec<String> = set_cookie
            .split(';')
            .skip(1)
            .map(|attribute| attribute.trim().to_owned())
            .filter(|attribute| {
                !attribute.starts_with("Max-Age") && !attribute.starts_with("Expires")
            })
            .collect();
        attributes.sort();
        attributes
    }

    #[test]
    fn a_removal_carries_the_same_attributes_as_the_cookie() {
        let set = set_cookies(CookieJar::new().add(host_cookie(NAME, "secret".to_owned())));
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("__Host-finteqx_test=secret"),
        );
        let removed = set_cookies(remove_host_cookie(CookieJar::from_headers(&headers), NAME));

        assert_eq!(set.len(), 1, "{set:?}");
        assert_eq!(removed.len(), 1, "{removed:?}");
        assert!(removed[0].starts_with(&format!("{NAME}=;")), "{removed:?}");
        assert!(removed[0].contains("Max-Age=0"), "{removed:?}");
        assert_eq!(attributes(&removed[0]), attributes(&set[0]));
        assert_eq!(
            attributes(&set[0]),
            ["HttpOnly", "Path=/", "SameSite=Lax", "Secure"]
        );
    }

    #[test]
    fn nothing_is_removed_that_the_browser_did_not_send() {
        assert!(set_cookies(remove_host_cookie(CookieJar::new(), NAME)).is_empty());
    }
}

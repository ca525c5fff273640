//! Refuses cross-site requests that would ride on the service's cookies (CSRF): a request that
//! changes something (not GET, HEAD or OPTIONS) and carries one of our cookies must come from our
//! own origin, as the browser says in `Sec-Fetch-Site` or, where a browser does not send that,
//! in `Origin`. `SameSite=Lax` cookies alone do not stop a same-site attacker or a top-level
//! form post. Requests without cookies (staff tokens, API clients) and requests naming neither
//! header (not a browser) are not this check's concern.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::problem::Problem;

/// Our cookies all start with this (`__Host-finteqx_session`, `__Host-finteqx_sign_in`, …).
const COOKIE_PREFIX: &str = "__Host-finteqx";

/// The service's own origin (`https://access.example.com`), from its public base URL.
#[derive(Debug, Clone)]
pub struct OwnOrigin(Arc<str>);

impl OwnOrigin {
    /// The origin of `base_url`: scheme, host and port, without a path or a trailing slash.
    pub fn of(base_url: &str) -> Self {
        let without_path = base_url
            .split_once("://")
            .map_or(base_url, |(scheme, rest)| {
                let host = rest.split('/').next().unwrap_or(rest);
                &base_url[..scheme.len() + 3 + host.len()]
            });
        Self(Arc::from(without_path.to_ascii_lowercase()))
    }

    /// Whether a request with these headers may change something with our cookies.
    fn allows(&self, sec_fetch_site: Option<&str>, origin: Option<&str>) -> bool {
        match (sec_fetch_site, origin) {
            (Some(site), _) => matches!(site, "same-origin" | "none"),
            (None, Some(origin)) => origin.eq_ignore_ascii_case(&self.0),
            (None, None) => true,
        }
    }
}

/// The middleware: `403 cross-site-request` for a cookie-carrying change from elsewhere.
pub async fn refuse_cross_site(
    State(own): State<OwnOrigin>,
    request: Request,
    next: Next,
) -> Response {
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    let headers = request.headers();
    let with_our_cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|cookies| {
            cookies
                .split(';')
                .any(|cookie| cookie.trim_start().starts_with(COOKIE_PREFIX))
        });
    let text = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    if safe || !with_our_cookie || own.allows(text("sec-fetch-site"), text("origin")) {
        return next.run(request).await;
    }
    Problem::new(
        StatusCode::FORBIDDEN,
        "cross-site-request",
        "Cross-site request",
        "this request came from another site; open the page of the service itself and try again",
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_origin_is_scheme_host_and_port() {
        assert_eq!(
            &*OwnOrigin::of("https://Access.example.com/x/y").0,
            "https://access.example.com"
        );
        assert_eq!(
            &*OwnOrigin::of("http://127.0.0.1:8080").0,
            "http://127.0.0.1:8080"
        );
    }

    #[test]
    fn only_our_own_origin_or_a_non_browser_may_change_things() {
        let own = OwnOrigin::of("https://access.example.com");
        assert!(own.allows(Some("same-origin"), Some("https://access.example.com")));
        assert!(own.allows(Some("none"), None));
        assert!(!own.allows(Some("cross-site"), Some("https://access.example.com")));
        assert!(!own.allows(Some("same-site"), None));
        assert!(own.allows(None, Some("https://access.example.com")));
        assert!(!own.allows(None, Some("https://evil.example")));
        assert!(!own.allows(None, Some("null")));
        assert!(own.allows(None, None));
    }
}

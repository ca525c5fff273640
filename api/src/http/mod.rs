//! The HTTP API (axum 0.8): one route per command and read, problem+json errors, request ids and
//! tracing on every request, and an OpenAPI 3.1 document generated from the same routes.

pub mod audit;
pub mod auth;
pub mod client;
pub mod cookies;
pub mod cross_site;
pub mod entra;
pub mod json;
pub mod limits;
pub mod lookup;
pub mod path;
pub mod problem;
pub mod public;
pub mod query;
pub mod sign_in;
pub mod support;
pub mod tenants;
pub mod users;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request, StatusCode};
use serde::Serialize;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::ToSchema;
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use domain::values::ValueError;

use self::problem::Problem;
use crate::application::CommandError;
use crate::startup::AppState;

/// The largest request body accepted (JSON commands are small).
pub const BODY_LIMIT_BYTES: usize = 64 * 1024;
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What a command answers: the position of its last event, to wait for before reading.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    /// The global position of the last event; absent when nothing changed.
    pub position: Option<i64>,
}

/// Every route with its OpenAPI description.
pub fn api() -> (Router<AppState>, OpenApi) {
    let (router, mut openapi) = OpenApiRouter::new()
        .merge(public::routes())
        .merge(tenants::routes())
        .merge(users::routes())
        .merge(lookup::routes())
        .merge(sign_in::routes())
        .merge(entra::routes())
        .merge(audit::routes())
        .merge(support::routes())
        .split_for_parts();
    openapi.info.title = "FinteQX Access".to_owned();
    openapi.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let types: Vec<String> = problem::PROBLEM_TYPES
        .iter()
        .map(|slug| format!("{}{slug}", problem::TYPE_PREFIX))
        .collect();
    openapi
        .extensions
        .get_or_insert_with(Default::default)
        .insert("x-problem-types".to_owned(), serde_json::json!(types));
    (router, openapi)
}

/// The service's router with its middleware.
pub fn router(state: AppState) -> Router {
    let (router, openapi) = api();
    let own_origin = state.own_origin.clone();
    router
        .route("/openapi.json", axum::routing::get(move || async move { axum::Json(openapi) }))
        .fallback(|| async { Problem::not_found() })
        .method_not_allowed_fallback(|| async {
            Problem::new(StatusCode::METHOD_NOT_ALLOWED, "method-not-allowed", "Method Not Allowed", "this route does not take that method")
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(axum::middleware::from_fn_with_state(own_origin, cross_site::refuse_cross_site))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                let path = request
                    .extensions()
                    .get::<axum::extract::MatchedPath>()
                    .map_or_else(|| request.uri().path().to_owned(), |path| path.as_str().to_owned());
                let request_id = request.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                tracing::info_span!("request", http.method = %request.method(), http.route = %path, request.id = %request_id)
            }),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .with_state(state)
}

/// A use case's refusal as a problem; outages are logged once here with their cause.
pub fn command_problem(error: &CommandError) -> Problem {
    if let CommandError::Unavailable(cause) = error {
        // `{:#}` is anyhow's one-line chain; its `Debug` would add a backtrace of many lines to
        // every failed request while a dependency is down (RUST_BACKTRACE=1).
        tracing::error!(error.message = %cause, error.cause_chain = %format_args!("{cause:#}"), "dependency unavailable");
    }
    Problem::from(error)
}

/// Parses a field, naming it in the problem.
///
/// # Errors
/// The field's value error as a 422 problem.
pub fn field<T>(name: &'static str, parsed: Result<T, ValueError>) -> Result<T, Problem> {
    parsed.map_err(|error| Problem::from(&CommandError::invalid(name, error)))
}

/// A read model query failed.
pub fn database(error: sqlx::Error) -> Problem {
    command_problem(&CommandError::Unavailable(error.into()))
}

/// A sealed field could not be opened.
pub fn sealing(error: crate::personal_data::SealError) -> Problem {
    command_problem(&CommandError::Unavailable(error.into()))
}

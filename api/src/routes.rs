//! HTTP routes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use projections::runner::{ProjectorStatus, statuses};

use crate::startup::AppState;

/// The router of the whole service.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .with_state(state)
}

/// The health answer.
#[derive(Debug, Serialize)]
struct Health {
    status: &'static str,
    database: &'static str,
    projectors: Vec<ProjectorStatus>,
}

/// `GET /health`: 200 when the database answers and no projector is stopped; 503 otherwise,
/// naming the stopped projector and the event it stopped at.
async fn health(State(state): State<AppState>) -> impl IntoResponse {
    match statuses(&state.pool).await {
        Ok(projectors) if projectors.iter().any(|p| p.stopped.is_some()) => {
            let body = Health {
                status: "degraded",
                database: "ok",
                projectors,
            };
            (StatusCode::SERVICE_UNAVAILABLE, Json(body))
        }
        Ok(projectors) => (
            StatusCode::OK,
            Json(Health {
                status: "ok",
                database: "ok",
                projectors,
            }),
        ),
        Err(error) => {
            tracing::warn!(error = %error, "health check: database unavailable");
            let body = Health {
                status: "unavailable",
                database: "unavailable",
                projectors: Vec::new(),
            };
            (StatusCode::SERVICE_UNAVAILABLE, Json(body))
        }
    }
}

//! A query-string extractor whose every rejection is a problem+json answer, and the parsers of
//! query values that name the offending parameter.
//!
//! Query structs keep their values as text (`Option<String>`) and parse them in the handler with
//! the functions below, so a bad value is a 422 problem whose `field` names the parameter rather
//! than a generic "invalid query". A repeated parameter is joined with commas (`?a=x&a=y` is
//! `?a=x,y`): list parameters accept both spellings, and a single-valued one given twice fails its
//! own parse.

use axum::extract::{FromRequestParts, Query};
use axum::http::StatusCode;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::problem::Problem;

/// `Query<T>` answering a malformed or unknown parameter with a 422 problem (query types deny
/// unknown fields).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map_err(|rejection| invalid_query(rejection.body_text()))?;
        let mut map = Map::new();
        for (key, value) in pairs {
            match map.get_mut(&key) {
                Some(Value::String(joined)) => {
                    joined.push(',');
                    joined.push_str(&value);
                }
                _ => {
                    map.insert(key, Value::String(value));
                }
            }
        }
        serde_json::from_value(Value::Object(map))
            .map(Self)
            .map_err(|error| invalid_query(format!("invalid query: {error}")))
    }
}

fn invalid_query(detail: String) -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid-query",
        "Invalid query",
        detail,
    )
}

/// A 422 problem about query parameter `field`.
pub fn bad_parameter(field: &'static str, slug: &str, detail: impl Into<String>) -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        slug,
        "Unprocessable Entity",
        detail,
    )
    .with_field(field)
}

/// A page size: absent is `default`; otherwise a decimal number within `1..=max`.
///
/// # Errors
/// `limit-out-of-range` naming `field`.
pub fn limit(
    field: &'static str,
    value: Option<&str>,
    default: u32,
    max: u32,
) -> Result<u32, Problem> {
    let Some(value) = value else {
        return Ok(default);
    };
    value
        .parse::<u32>()
        .ok()
        .filter(|limit| (1..=max).contains(limit))
        .ok_or_else(|| {
            bad_parameter(
                field,
                "limit-out-of-range",
                format!("{field} must be a whole number from 1 to {max}"),
            )
        })
}

/// An instant in RFC 3339 (`2026-11-27T09:30:00Z`; percent-encode a `+` offset as `%2B`).
///
/// # Errors
/// `time-malformed` naming `field`.
pub fn instant(field: &'static str, value: Option<&str>) -> Result<Option<DateTime<Utc>>, Problem> {
    value
        .map(|value| {
            DateTime::parse_from_rfc3339(value)
                .map(|instant| instant.with_timezone(&Utc))
                .map_err(|_| {
                    bad_parameter(
                        field,
                        "time-malformed",
                        format!("{field} must be an RFC 3339 date and time, such as 2026-11-27T09:30:00Z"),
                    )
                })
        })
        .transpose()
}

/// A UUID.
///
/// # Errors
/// `id-malformed` naming `field`.
pub fn uuid(field: &'static str, value: Option<&str>) -> Result<Option<uuid::Uuid>, Problem> {
    value
        .map(|value| {
            value.parse().map_err(|_| {
                bad_parameter(field, "id-malformed", format!("{field} must be a UUID"))
            })
        })
        .transpose()
}

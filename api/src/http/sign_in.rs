//! The login page's sign-in steps: password, then (if the rule asks) a number to enroll and a
//! code. The attempt is carried between steps in a `__Host-` cookie; success starts a session
//! whose cookie ends with the browser (ADR-0014).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use domain::ids::SignInId;
use domain::metadata::ActorRole;
use domain::sign_in::SignInMethod;
use domain::values::MobileNumber;

use super::auth::{
    Caller, Principal, SESSION_COOKIE, end_session, session_start, start_session, unauthorized,
};
use super::client::ClientAddress;
use super::cookies::{host_cookie, remove_host_cookie};
use super::json::ApiJson;
use super::problem::Problem;
use super::{command_problem, field};
use crate::application::{CodeOutcome, CommandError, PasswordOutcome, SignedIn};
use crate::executor::CommandContext;
use crate::startup::AppState;

/// The cookie that carries the attempt between the password and the code (`{id}.{mac}`).
pub const SIGN_IN_COOKIE: &str = "__Host-finteqx_sign_in";

/// The routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(sign_in_password))
        .routes(routes!(send_code))
        .routes(routes!(verify_code))
        .routes(routes!(sign_out))
        .routes(routes!(current_session))
}

/// Where the login page goes next.
#[derive(Debug, Serialize, ToSchema)]
pub struct NextStep {
    /// `signed_in`, `sms_code` (a code was or can be sent) or `enroll_phone`.
    pub next: &'static str,
}

/// The metadata of commands sent from the login page (no one is signed in yet).
pub(super) fn login_page_context(headers: &HeaderMap) -> CommandContext {
    CommandContext {
        actor_id: "login-page".to_owned(),
        actor_role: ActorRole::Anonymous,
        on_behalf_of: None,
        tenant_id: None,
        correlation_id: headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        occurred_at: chrono::Utc::now(),
    }
}

/// Starts a new session for `who` (ending any session this browser had: a new id after each
/// step up) and spends the attempt cookie.
pub(super) async fn signed_in(
    app: &AppState,
    jar: CookieJar,
    who: SignedIn,
) -> Result<Response, Problem> {
    if let Some(previous) = jar.get(SESSION_COOKIE) {
        end_session(&app.pool, previous.value())
            .await
            .map_err(super::database)?;
    }
    let method = match who.method {
        SignInMethod::Password => "password",
        SignInMethod::PasswordAndSms => "password_and_sms",
        SignInMethod::EntraId => "entra_id",
    };
    let secret = start_session(
        &app.pool,
        who.tenant_id,
        who.user_id,
        who.role,
        method,
        chrono::Utc::now(),
    )
    .await
    .map_err(super::database)?;
    // A new session id after each step up; the attempt cookie is spent.
    let jar = remove_host_cookie(jar, SIGN_IN_COOKIE).add(host_cookie(SESSION_COOKIE, secret));
    Ok((jar, Json(NextStep { next: "signed_in" })).into_response())
}

fn refused() -> Problem {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "sign-in-failed",
        "Unauthorized",
        "the e-mail address or password is not right",
    )
}

fn attempt_of(app: &AppState, jar: &CookieJar) -> Result<SignInId, Problem> {
    jar.get(SIGN_IN_COOKIE)
        .and_then(|cookie| app.commands.keys().attempt_cookies.verify(cookie.value()))
        .ok_or_else(|| {
            Problem::new(
                StatusCode::UNAUTHORIZED,
                "sign-in-failed",
                "Unauthorized",
                "start with the password",
            )
        })
}

/// The password step.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordRequest {
    /// The e-mail address.
    pub email: String,
    /// The password.
    #[schema(value_type = String)]
    pub password: SecretString,
}

/// `POST /sign_in/password`: checks the password; signs in, or asks for a code or a number.
#[utoipa::path(post, path = "/sign_in/password", tag = "sign-in",
    request_body = PasswordRequest,
    responses((status = 200, body = NextStep), (status = 401, body = Problem), (status = 422, body = Problem), (status = 429, body = Problem), (status = 503, body = Problem)))]
pub async fn sign_in_password(
    State(app): State<AppState>,
    headers: HeaderMap,
    ClientAddress(client): ClientAddress,
    jar: CookieJar,
    ApiJson(body): ApiJson<PasswordRequest>,
) -> Result<Response, Problem> {
    let outcome = match app
        .commands
        .sign_in_with_password(
            &login_page_context(&headers),
            &body.email,
            body.password,
            client,
        )
        .await
    {
        Ok(outcome) => outcome,
        Err(
            error @ CommandError::TooManySignInAttempts {
                retry_after_seconds,
            },
        ) => {
            let retry_after = [(
                axum::http::header::RETRY_AFTER,
                retry_after_seconds.to_string(),
            )];
            return Ok((retry_after, command_problem(&error)).into_response());
        }
        Err(error) => return Err(command_problem(&error)),
    };
    match outcome {
        PasswordOutcome::SignedIn(who) => signed_in(&app, jar, who).await,
        PasswordOutcome::CodeRequired(id) | PasswordOutcome::PhoneRequired(id) => {
            let next = if matches!(outcome, PasswordOutcome::PhoneRequired(_)) {
                "enroll_phone"
            } else {
                "sms_code"
            };
            let value = app.commands.keys().attempt_cookies.value_for(id);
            let jar = jar.add(host_cookie(SIGN_IN_COOKIE, value));
            Ok((jar, Json(NextStep { next })).into_response())
        }
        PasswordOutcome::Refused => Err(refused()),
    }
}

/// The code step's request for a (new) code.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendCodeRequest {
    /// The mobile number to enroll, when the user has none yet.
    pub phone: Option<String>,
}

/// `POST /sign_in/sms_code`: sends a (new) code to the enrolled number or the one to enroll.
#[utoipa::path(post, path = "/sign_in/sms_code", tag = "sign-in",
    request_body = SendCodeRequest,
    responses((status = 204, description = "sent"), (status = 401, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem), (status = 429, body = Problem), (status = 503, body = Problem)))]
pub async fn send_code(
    State(app): State<AppState>,
    headers: HeaderMap,
    jar: CookieJar,
    ApiJson(body): ApiJson<SendCodeRequest>,
) -> Result<StatusCode, Problem> {
    let sign_in_id = attempt_of(&app, &jar)?;
    let phone = body
        .phone
        .as_deref()
        .map(|phone| field("phone", MobileNumber::parse(phone)))
        .transpose()?;
    app.commands
        .send_sms_code(
            &login_page_context(&headers),
            sign_in_id,
            phone,
            app.sms.as_ref(),
        )
        .await
        .map_err(|e| command_problem(&e))?;
    Ok(StatusCode::NO_CONTENT)
}

/// The typed code.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// The six digits.
    pub code: String,
}

/// `POST /sign_in/verify`: checks the code; signs in, or says how many guesses are left.
#[utoipa::path(post, path = "/sign_in/verify", tag = "sign-in",
    request_body = VerifyRequest,
    responses((status = 200, body = NextStep), (status = 401, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem)))]
pub async fn verify_code(
    State(app): State<AppState>,
    headers: HeaderMap,
    jar: CookieJar,
    ApiJson(body): ApiJson<VerifyRequest>,
) -> Result<Response, Problem> {
    let sign_in_id = attempt_of(&app, &jar)?;
    let outcome = app
        .commands
        .verify_sms_code(&login_page_context(&headers), sign_in_id, &body.code)
        .await
        .map_err(|e| command_problem(&e))?;
    match outcome {
        CodeOutcome::SignedIn(who) => signed_in(&app, jar, who).await,
        CodeOutcome::Wrong { attempts_left } => Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "code-wrong",
            "Unprocessable Entity",
            format!("the code is not right; {attempts_left} tries left for this code"),
        )
        .with_field("code")),
        CodeOutcome::Locked => Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "sign-in-locked",
            "Unauthorized",
            "too many wrong codes; sign in again later",
        )),
    }
}

/// `POST /sign_out`: ends the session server-side and clears its cookie. The next sign-in uses
/// whatever method the user's account requires by then.
#[utoipa::path(post, path = "/sign_out", tag = "sign-in",
    responses((status = 204, description = "signed out"), (status = 503, body = Problem)))]
pub async fn sign_out(
    State(app): State<AppState>,
    jar: CookieJar,
) -> Result<(CookieJar, StatusCode), Problem> {
    if let Some(session) = jar.get(SESSION_COOKIE) {
        end_session(&app.pool, session.value())
            .await
            .map_err(super::database)?;
    }
    Ok((
        remove_host_cookie(jar, SESSION_COOKIE),
        StatusCode::NO_CONTENT,
    ))
}

/// The signed-in user's session.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    /// The tenant.
    pub tenant_id: uuid::Uuid,
    /// The user.
    pub user_id: uuid::Uuid,
    /// `administrator` or `user`.
    pub role: &'static str,
    /// How the session started: `password`, `password_and_sms` or `entra_id`.
    pub method: String,
    /// When it started.
    pub started_at: chrono::DateTime<chrono::Utc>,
}

/// `GET /session`: who is signed in, and how. Linking or unlinking the user does not end it.
#[utoipa::path(get, path = "/session", tag = "sign-in",
    responses((status = 200, body = SessionView), (status = 401, body = Problem), (status = 503, body = Problem)))]
pub async fn current_session(
    State(app): State<AppState>,
    caller: Caller,
    jar: CookieJar,
) -> Result<Json<SessionView>, Problem> {
    let Principal::Tenant {
        tenant_id,
        user_id,
        role,
    } = caller.principal
    else {
        return Err(unauthorized());
    };
    let secret = jar.get(SESSION_COOKIE).ok_or_else(unauthorized)?;
    let (method, started_at) = session_start(&app.pool, secret.value())
        .await
        .map_err(super::database)?
        .ok_or_else(unauthorized)?;
    Ok(Json(SessionView {
        tenant_id: tenant_id.as_uuid(),
        user_id: user_id.as_uuid(),
        role: role.as_str(),
        method,
        started_at,
    }))
}

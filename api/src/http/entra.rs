//! "Inloggen met Microsoft Entra ID" and Entra admin consent over HTTP (ADR-0018). The flow's
//! `state` travels in a `__Host-` cookie as well as through Microsoft, so a callback only works
//! in the browser that started it (login CSRF); admin consent is also bound to the
//! administrator's session.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use domain::entra::EntraSignInRefusal;
use domain::ids::EntraTenantId;

use super::auth::{Caller, Principal, SESSION_COOKIE, TenantAdmin, secret_hash};
use super::client::ClientAddress;
use super::cookies::{host_cookie, remove_host_cookie};
use super::json::ApiJson;
use super::problem::Problem;
use super::query::ApiQuery;
use super::sign_in::{NextStep, login_page_context, signed_in};
use super::{command_problem, field};
use crate::application::{Callback, EntraFlowError, EntraOutcome, EntraRedirect};
use crate::entra::Entra;
use crate::startup::AppState;

/// The cookie that carries an Entra flow's `state` until Microsoft sends the browser back.
pub const ENTRA_FLOW_COOKIE: &str = "__Host-finteqx_entra";

/// The routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(start_sign_in))
        .routes(routes!(sign_in_callback))
        .routes(routes!(start_admin_consent))
        .routes(routes!(admin_consent_callback))
}

fn entra(app: &AppState) -> Result<&Entra, Problem> {
    app.entra
        .as_deref()
        .ok_or_else(|| command_problem(&EntraFlowError::NotConfigured.into()))
}

/// Where to send the browser.
#[derive(Debug, Serialize, ToSchema)]
pub struct RedirectToMicrosoft {
    /// Microsoft's page (sign-in or admin consent).
    pub authorization_url: String,
}

fn redirect_answer(jar: CookieJar, redirect: EntraRedirect) -> Response {
    let jar = jar.add(host_cookie(ENTRA_FLOW_COOKIE, redirect.state));
    (
        jar,
        Json(RedirectToMicrosoft {
            authorization_url: redirect.url,
        }),
    )
        .into_response()
}

/// The callback's `state` must be the one this browser was given (compared as hashes).
fn flow_state<'a>(jar: &CookieJar, state: Option<&'a str>) -> Result<&'a str, Problem> {
    let cookie = jar.get(ENTRA_FLOW_COOKIE).map(|c| secret_hash(c.value()));
    match state {
        Some(state) if cookie == Some(secret_hash(state)) => Ok(state),
        _ => Err(command_problem(&EntraFlowError::StateUnknown.into())),
    }
}

fn spent(jar: CookieJar) -> CookieJar {
    remove_host_cookie(jar, ENTRA_FLOW_COOKIE)
}

/// "Inloggen met Microsoft Entra ID" for a typed address.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartEntraSignIn {
    /// The e-mail address typed on the login page (also sent to Microsoft as `login_hint`).
    pub email: String,
}

/// `POST /sign_in/entra`: the account's Entra tenant's sign-in page, for an address the login
/// page sends to Entra; other addresses (also unknown ones) sign in with a password.
#[utoipa::path(post, path = "/sign_in/entra", tag = "sign-in",
    request_body = StartEntraSignIn,
    responses((status = 200, body = RedirectToMicrosoft), (status = 409, body = Problem), (status = 422, body = Problem), (status = 429, body = Problem), (status = 503, body = Problem)))]
pub async fn start_sign_in(
    State(app): State<AppState>,
    ClientAddress(client): ClientAddress,
    jar: CookieJar,
    ApiJson(body): ApiJson<StartEntraSignIn>,
) -> Result<Response, Problem> {
    if let Err(refused) = app.lookups.check(client) {
        return Ok(refused.into_response());
    }
    let entra = entra(&app)?;
    let redirect = app
        .commands
        .start_entra_sign_in(entra, &body.email)
        .await
        .map_err(|e| command_problem(&e))?;
    Ok(redirect_answer(jar, redirect))
}

/// What Microsoft appends to a redirect URI. Other parameters (`session_state`, …) are ignored.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackQuery {
    /// The authorization code.
    pub code: Option<String>,
    /// The flow's state.
    pub state: Option<String>,
    /// The issuer (RFC 9207), when sent.
    pub iss: Option<String>,
    /// An OAuth error instead of a code.
    pub error: Option<String>,
    /// Microsoft's error text (only its AADSTS code is kept).
    pub error_description: Option<String>,
    /// Admin consent: the consenting tenant (a hint).
    pub tenant: Option<String>,
    /// Admin consent: `True`.
    pub admin_consent: Option<String>,
    /// Admin consent: the granted scopes.
    pub scope: Option<String>,
}

impl CallbackQuery {
    fn callback(self) -> Callback {
        Callback {
            code: self.code,
            iss: self.iss,
            error: self.error,
            error_description: self.error_description,
            tenant: self.tenant,
        }
    }
}

fn refusal_problem(refusal: &EntraSignInRefusal) -> Problem {
    let slug = match refusal {
        EntraSignInRefusal::AccountDeactivated => "user-deactivated",
        EntraSignInRefusal::NotLinked => "entra-not-linked",
        EntraSignInRefusal::WrongEntraTenant => "entra-wrong-tenant",
        EntraSignInRefusal::GuestAccount => "entra-guest-account",
        EntraSignInRefusal::IdentityMismatch => "entra-identity-mismatch",
        EntraSignInRefusal::EmailNotVerified => "entra-email-not-verified",
        EntraSignInRefusal::NotPrimaryAddress { .. } => "entra-not-primary-address",
    };
    let detail = match refusal {
        EntraSignInRefusal::NotPrimaryAddress { primary_email } => match primary_email.known() {
            Some(primary) => format!(
                "your FinteQX account's e-mail address is not the primary address of your Microsoft account; \
                     ask your administrator to change the account's address to {primary} and sign in with that address"
            ),
            None => refusal.to_string(),
        },
        other => other.to_string(),
    };
    Problem::new(StatusCode::FORBIDDEN, slug, "Forbidden", detail)
}

fn consent_required() -> Problem {
    Problem::new(
        StatusCode::FORBIDDEN,
        "entra-consent-required",
        "Forbidden",
        "your administrator must approve FinteQX in Microsoft Entra ID",
    )
}

fn sign_in_failed() -> Problem {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "entra-sign-in-failed",
        "Unauthorized",
        "Microsoft did not sign you in; start again",
    )
}

/// The outcome of an admin-consent flow.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsentResult {
    /// `granted` or `refused`.
    pub consent: &'static str,
    /// The Entra tenant that granted it (confirmed by its administrator's sign-in).
    pub entra_tenant_id: Option<Uuid>,
}

/// `GET /sign_in/entra/callback`: Microsoft's redirect back after sign-in. Signs the user in
/// (a new session, method `entra_id`), or says why not; or confirms an admin consent.
#[utoipa::path(get, path = "/sign_in/entra/callback", tag = "sign-in",
    params(CallbackQuery),
    responses((status = 200, body = NextStep), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 503, body = Problem)))]
pub async fn sign_in_callback(
    State(app): State<AppState>,
    headers: HeaderMap,
    jar: CookieJar,
    ApiQuery(query): ApiQuery<CallbackQuery>,
) -> Result<Response, Problem> {
    let entra = entra(&app)?;
    let state = flow_state(&jar, query.state.as_deref())?.to_owned();
    let session_hash = jar.get(SESSION_COOKIE).map(|c| secret_hash(c.value()));
    let outcome = app
        .commands
        .complete_entra_sign_in(
            &login_page_context(&headers),
            entra,
            &state,
            &query.callback(),
            session_hash.as_deref(),
        )
        .await
        .map_err(|e| command_problem(&e))?;
    let jar = spent(jar);
    match outcome {
        EntraOutcome::SignedIn(who) => signed_in(&app, jar, who).await,
        EntraOutcome::ConsentGranted(entra_tenant_id) => Ok((
            jar,
            Json(ConsentResult {
                consent: "granted",
                entra_tenant_id: Some(entra_tenant_id.as_uuid()),
            }),
        )
            .into_response()),
        EntraOutcome::Refused(refusal) => Err(refusal_problem(&refusal)),
        EntraOutcome::ConsentRequired => Err(consent_required()),
        EntraOutcome::Failed
        | EntraOutcome::ConsentRefused
        | EntraOutcome::ConfirmConsent { .. } => Err(sign_in_failed()),
    }
}

/// Admin consent for one Entra tenant, or for whichever tenant the administrator picks.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartAdminConsent {
    /// The Entra tenant (`tid`), when known; otherwise Microsoft asks (`organizations`).
    pub entra_tenant_id: Option<String>,
}

/// `POST /tenants/{tenant_id}/entra/admin_consent`: Microsoft's admin-consent page, bound to
/// this administrator's session.
#[utoipa::path(post, path = "/tenants/{tenant_id}/entra/admin_consent", tag = "tenants",
    params(("tenant_id" = Uuid, Path, description = "The tenant")),
    request_body = StartAdminConsent,
    responses((status = 200, body = RedirectToMicrosoft), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem), (status = 503, body = Problem)))]
pub async fn start_admin_consent(
    State(app): State<AppState>,
    admin: TenantAdmin,
    jar: CookieJar,
    ApiJson(body): ApiJson<StartAdminConsent>,
) -> Result<Response, Problem> {
    // Consent is bound to a browser session; a staff token has none.
    let session = jar.get(SESSION_COOKIE).ok_or_else(Problem::not_found)?;
    let entra_tenant_id = body
        .entra_tenant_id
        .as_deref()
        .map(|id| field("entra_tenant_id", EntraTenantId::parse(id)))
        .transpose()?;
    let entra = entra(&app)?;
    let redirect = app
        .commands
        .start_admin_consent(
            entra,
            admin.administrator,
            admin.tenant_id,
            entra_tenant_id,
            secret_hash(session.value()),
        )
        .await
        .map_err(|e| command_problem(&e))?;
    Ok(redirect_answer(jar, redirect))
}

/// `GET /entra/admin_consent/callback`: Microsoft's redirect back after admin consent, in the
/// administrator's session. A refusal is recorded; a grant sends the browser on to an Entra
/// administrator's sign-in whose token must confirm the tenant.
#[utoipa::path(get, path = "/entra/admin_consent/callback", tag = "tenants",
    params(CallbackQuery),
    responses((status = 200, body = ConsentResult), (status = 303, description = "to Microsoft's sign-in, to confirm the tenant"), (status = 400, body = Problem), (status = 401, body = Problem), (status = 503, body = Problem)))]
pub async fn admin_consent_callback(
    State(app): State<AppState>,
    caller: Caller,
    jar: CookieJar,
    ApiQuery(query): ApiQuery<CallbackQuery>,
) -> Result<Response, Problem> {
    let entra = entra(&app)?;
    let state = flow_state(&jar, query.state.as_deref())?.to_owned();
    let Principal::Tenant { tenant_id, .. } = caller.principal else {
        return Err(command_problem(&EntraFlowError::StateUnknown.into()));
    };
    let context = caller.administrator_of(tenant_id)?;
    let session_hash = jar
        .get(SESSION_COOKIE)
        .map(|c| secret_hash(c.value()))
        .unwrap_or_default();
    let outcome = app
        .commands
        .admin_consent_returned(&context, entra, &state, &query.callback(), &session_hash)
        .await
        .map_err(|e| command_problem(&e))?;
    let jar = spent(jar);
    match outcome {
        EntraOutcome::ConfirmConsent { url, state } => {
            let jar = jar.add(host_cookie(ENTRA_FLOW_COOKIE, state));
            Ok((StatusCode::SEE_OTHER, jar, [(header::LOCATION, url)]).into_response())
        }
        _ => Ok((
            jar,
            Json(ConsentResult {
                consent: "refused",
                entra_tenant_id: None,
            }),
        )
            .into_response()),
    }
}

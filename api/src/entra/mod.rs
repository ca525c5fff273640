//! Microsoft Entra ID over OpenID Connect (ADR-0018): one authority per Entra tenant
//! (`{authority_base}/{tid}/v2.0`, found by discovery so the issuer is checked exactly),
//! authorization code with PKCE, `state` and `nonce`, and an HTTP client that follows no
//! redirects. What the validated ID token says is handed to the domain's decision as
//! [`domain::entra::EntraClaims`]; nothing here decides who may sign in.

pub mod pending;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreErrorResponseType, CoreGenderClaim, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm, CoreProviderMetadata,
    CoreResponseType, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::url::Url;
use openidconnect::{
    AdditionalClaims, AuthType, AuthenticationFlow, AuthorizationCode, ClaimsVerificationError,
    Client, ClientId, ClientSecret, CsrfToken, EmptyExtraTokenFields, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, IdTokenFields, IssuerUrl, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope, StandardErrorResponse,
    StandardTokenResponse, TokenResponse as _,
};
use secrecy::ExposeSecret as _;
use serde::{Deserialize, Serialize};

use domain::entra::{EntraClaims, EntraIdentity};
use domain::ids::{EntraObjectId, EntraTenantId};
use domain::values::EmailAddress;

use crate::configuration::EntraSettings;

/// Microsoft asks clients to re-read signing keys at least daily.
const METADATA_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// The Entra-specific claims of a v2.0 ID token (research §1.3).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct EntraTokenClaims {
    /// The Entra tenant.
    pub tid: String,
    /// The user's immutable object id within the tenant.
    pub oid: String,
    /// Whether the e-mail's domain is verified by the tenant; a bool in practice, parsed
    /// tolerantly.
    #[serde(default)]
    pub xms_edov: Option<serde_json::Value>,
    /// The identity provider, present for guests (differs from the issuer).
    #[serde(default)]
    pub idp: Option<String>,
    /// 1 for guests.
    #[serde(default)]
    pub acct: Option<serde_json::Value>,
}

impl AdditionalClaims for EntraTokenClaims {}

type EntraIdTokenFields = IdTokenFields<
    EntraTokenClaims,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type EntraTokenResponse = StandardTokenResponse<EntraIdTokenFields, CoreTokenType>;
type EntraClient = Client<
    EntraTokenClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    EntraTokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Why Microsoft's answer signs nobody in.
#[derive(Debug, thiserror::Error)]
pub enum EntraError {
    /// Microsoft (discovery, keys, token endpoint) could not be reached or answered badly.
    #[error("Microsoft Entra ID is unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// The token endpoint refused the code (`invalid_grant` for a wrong PKCE verifier, a code of
    /// another tenant, a replayed code, …).
    #[error("Microsoft refused the authorization code: {error_code}")]
    CodeRefused {
        /// The OAuth error code.
        error_code: String,
    },
    /// The ID token failed validation (signature, issuer, audience, expiry, nonce, claims).
    #[error("the ID token is not valid: {0}")]
    InvalidToken(String),
}

/// A redirect to Microsoft, and the secrets to keep server-side until the browser comes back.
#[derive(Debug)]
pub struct Authorization {
    /// Where to send the browser.
    pub url: Url,
    /// The CSRF `state`.
    pub state: String,
    /// The ID token's expected `nonce`.
    pub nonce: String,
    /// The PKCE verifier.
    pub pkce_verifier: String,
}

/// A validated ID token, as facts for the domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The claims the sign-in decision uses.
    pub claims: EntraClaims,
}

struct Discovered {
    client: Arc<EntraClient>,
    fetched: Instant,
}

/// FinteQX's app registration in Entra ID, with a cache of each Entra tenant's metadata and keys.
pub struct Entra {
    http: openidconnect::reqwest::Client,
    authority_base: String,
    client_id: ClientId,
    client_secret: ClientSecret,
    redirect_uri: RedirectUrl,
    consent_redirect_uri: Url,
    discovered: Mutex<BTreeMap<EntraTenantId, Discovered>>,
}

impl std::fmt::Debug for Entra {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entra")
            .field("authority_base", &self.authority_base)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl Entra {
    /// The app registration of `settings`; `None` when no client id is configured.
    ///
    /// # Errors
    /// A malformed URL or an HTTP client that cannot be built.
    pub fn from_settings(settings: &EntraSettings) -> anyhow::Result<Option<Self>> {
        if settings.client_id.is_empty() {
            return Ok(None);
        }
        let http = openidconnect::reqwest::Client::builder()
            // Following redirects from an identity provider invites SSRF (openidconnect's
            // UPGRADE notes); Microsoft's endpoints answer directly.
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(Duration::from_millis(settings.timeout_ms))
            .build()
            .context("cannot build the HTTP client for Entra ID")?;
        let authority_base = settings.authority_base.trim_end_matches('/').to_owned();
        Url::parse(&authority_base).context("entra.authority_base is not a URL")?;
        Ok(Some(Self {
            http,
            authority_base,
            client_id: ClientId::new(settings.client_id.clone()),
            client_secret: ClientSecret::new(settings.client_secret.expose_secret().to_owned()),
            redirect_uri: RedirectUrl::new(settings.redirect_uri.clone())
                .context("entra.redirect_uri is not a URL")?,
            consent_redirect_uri: Url::parse(&settings.consent_redirect_uri)
                .context("entra.consent_redirect_uri is not a URL")?,
            discovered: Mutex::new(BTreeMap::new()),
        }))
    }

    /// The issuer of an Entra tenant: `{authority_base}/{tid}/v2.0`.
    pub fn issuer(&self, entra_tenant_id: EntraTenantId) -> String {
        format!("{}/{entra_tenant_id}/v2.0", self.authority_base)
    }

    /// The tenant's client, discovered once and re-read after a day or when `refresh` is set.
    /// The cache is not locked while Microsoft answers, so one slow tenant holds up no other.
    async fn client(
        &self,
        entra_tenant_id: EntraTenantId,
        refresh: bool,
    ) -> Result<Arc<EntraClient>, EntraError> {
        if !refresh
            && let Some(entry) = self.cache().get(&entra_tenant_id)
            && entry.fetched.elapsed() < METADATA_LIFETIME
        {
            return Ok(Arc::clone(&entry.client));
        }
        let issuer = IssuerUrl::new(self.issuer(entra_tenant_id))
            .map_err(|error| EntraError::Unavailable(error.into()))?;
        // Discovery checks that the metadata names exactly this issuer.
        let metadata = CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|error| EntraError::Unavailable(anyhow::anyhow!("discovery: {error}")))?;
        let client = Arc::new(
            EntraClient::from_provider_metadata(
                metadata,
                self.client_id.clone(),
                Some(self.client_secret.clone()),
            )
            .set_auth_type(AuthType::RequestBody)
            .set_redirect_uri(self.redirect_uri.clone()),
        );
        self.cache().insert(
            entra_tenant_id,
            Discovered {
                client: Arc::clone(&client),
                fetched: Instant::now(),
            },
        );
        Ok(client)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, BTreeMap<EntraTenantId, Discovered>> {
        // A panic while holding the guard cannot leave a half-written entry behind.
        self.discovered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A redirect to the tenant's sign-in page, with PKCE, `state` and `nonce`, and the e-mail
    /// the user typed as `login_hint`.
    ///
    /// # Errors
    /// [`EntraError::Unavailable`] when the tenant's metadata cannot be read.
    pub async fn authorize(
        &self,
        entra_tenant_id: EntraTenantId,
        login_hint: Option<&str>,
    ) -> Result<Authorization, EntraError> {
        let client = self.client(entra_tenant_id, false).await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("profile".to_owned()))
            .add_scope(Scope::new("email".to_owned()))
            .set_pkce_challenge(challenge);
        if let Some(hint) = login_hint {
            request = request.add_extra_param("login_hint", hint.to_owned());
        }
        let (url, state, nonce) = request.url();
        Ok(Authorization {
            url,
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        })
    }

    /// Microsoft's admin-consent page (v2) for the tenant, or for `organizations` when the
    /// Entra tenant is not known yet.
    ///
    /// # Errors
    /// [`EntraError::Unavailable`] when the configured base does not make a URL.
    pub fn admin_consent_url(
        &self,
        entra_tenant_id: Option<EntraTenantId>,
        state: &str,
    ) -> Result<Url, EntraError> {
        let tenant = entra_tenant_id.map_or_else(|| "organizations".to_owned(), |t| t.to_string());
        let mut url = Url::parse(&format!(
            "{}/{tenant}/v2.0/adminconsent",
            self.authority_base
        ))
        .map_err(|error| EntraError::Unavailable(error.into()))?;
        url.query_pairs_mut()
            .append_pair("client_id", self.client_id.as_str())
            .append_pair("scope", "https://graph.microsoft.com/.default")
            .append_pair("redirect_uri", self.consent_redirect_uri.as_str())
            .append_pair("state", state);
        Ok(url)
    }

    /// Redeems an authorization code with its PKCE verifier and validates the ID token:
    /// signature (re-reading the tenant's keys once for an unknown key), issuer, audience,
    /// expiry and nonce.
    ///
    /// # Errors
    /// [`EntraError`].
    pub async fn redeem(
        &self,
        entra_tenant_id: EntraTenantId,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
    ) -> Result<VerifiedToken, EntraError> {
        let client = self.client(entra_tenant_id, false).await?;
        let token = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|error| EntraError::Unavailable(error.into()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
            .request_async(&self.http)
            .await
            .map_err(|error| match error {
                RequestTokenError::ServerResponse(response) => EntraError::CodeRefused {
                    error_code: response.error().as_ref().to_owned(),
                },
                other => EntraError::Unavailable(anyhow::anyhow!("token endpoint: {other}")),
            })?;
        let id_token = token
            .id_token()
            .ok_or_else(|| EntraError::InvalidToken("no ID token".to_owned()))?;
        let nonce = Nonce::new(nonce.to_owned());
        let claims = match id_token.claims(&client.id_token_verifier(), &nonce) {
            Err(ClaimsVerificationError::SignatureVerification(_)) => {
                // Microsoft rolls its keys: read them again once before refusing.
                let client = self.client(entra_tenant_id, true).await?;
                id_token
                    .claims(&client.id_token_verifier(), &nonce)
                    .map_err(|error| EntraError::InvalidToken(error.to_string()))?
                    .clone()
            }
            Err(error) => return Err(EntraError::InvalidToken(error.to_string())),
            Ok(claims) => claims.clone(),
        };
        let extra = claims.additional_claims();
        let token_tenant = EntraTenantId::parse(&extra.tid).map_err(|_| {
            EntraError::InvalidToken("tid is not an organisation's tenant id".to_owned())
        })?;
        let object_id: EntraObjectId = extra
            .oid
            .parse()
            .map_err(|_| EntraError::InvalidToken("oid is not a GUID".to_owned()))?;
        let issuer = claims.issuer().as_str();
        let is_guest = extra.idp.as_deref().is_some_and(|idp| idp != issuer)
            || extra.acct.as_ref().is_some_and(flag);
        Ok(VerifiedToken {
            claims: EntraClaims {
                identity: EntraIdentity {
                    entra_tenant_id: token_tenant,
                    object_id,
                },
                email: claims
                    .email()
                    .and_then(|email| EmailAddress::parse(email.as_str()).ok()),
                email_domain_verified: extra.xms_edov.as_ref().is_some_and(flag),
                preferred_username: claims
                    .preferred_username()
                    .and_then(|name| EmailAddress::parse(name.as_str()).ok()),
                is_guest,
            },
        })
    }
}

/// A claim that is a boolean or a number in practice, sometimes a string.
fn flag(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::Bool(flag) => *flag,
        serde_json::Value::Number(number) => number.as_i64() == Some(1),
        serde_json::Value::String(text) => matches!(text.as_str(), "true" | "True" | "1"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_read_tolerantly() {
        for (value, expected) in [
            (serde_json::json!(true), true),
            (serde_json::json!("true"), true),
            (serde_json::json!(1), true),
            (serde_json::json!("1"), true),
            (serde_json::json!(false), false),
            (serde_json::json!(0), false),
            (serde_json::json!("no"), false),
            (serde_json::json!(null), false),
        ] {
            assert_eq!(flag(&value), expected, "{value}");
        }
    }
}

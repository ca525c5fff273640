//! "Inloggen met Microsoft Entra ID" and Entra admin consent (ADR-0018). The browser goes to the
//! account domain's Entra tenant and comes back with a code; the flow's secrets wait server-side.
//! The validated token's facts go to the user's decision (`tid` + `oid` binding, primary
//! address, guests); every outcome is recorded as a sign-in attempt or a consent decision.

use chrono::{DateTime, Utc};

use domain::TenantScoped;
use domain::domain_claim::{DomainEvidence, TenantClaim};
use domain::entra::{
    AuthorizationError, EntraClaims, EntraSignInRefusal, classify_authorization_error,
};
use domain::ids::{EntraTenantId, SignInId, TenantId, UserId};
use domain::sign_in::{EntraSignInOutcome, SignInCommand, SignInMethod};
use domain::tenant::ConsentDecision;
use domain::user::{UserCommand, UserError};
use domain::values::{EmailAddress, ProviderErrorCode};
use projections::login_page;

use super::{CommandError, Commands, SignedIn};
use crate::entra::pending::{self, FlowSecrets, PendingLogin, Purpose};
use crate::entra::{Entra, EntraError};
use crate::executor::CommandContext;

/// The user of a sign-in flow started for an address without an account on its domain's tenant:
/// no user has this id, so the callback finds no account and refuses like for an unlinked one.
const NO_ACCOUNT: UserId = UserId::from_uuid(uuid::Uuid::nil());

/// Why an Entra flow cannot go on; nothing was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EntraFlowError {
    /// No app registration is configured.
    #[error("sign-in with Microsoft Entra ID is not configured")]
    NotConfigured,
    /// The address signs in with a password (or is unknown: the same answer).
    #[error("this address signs in with a password")]
    UsePassword,
    /// The `state` is unknown, expired, already used, not this browser's or not this session's.
    #[error("the sign-in with Microsoft expired or was already used; start again")]
    StateUnknown,
    /// The Entra administrator's sign-in did not come from the tenant that consented.
    #[error("the Microsoft sign-in did not confirm the consenting Entra tenant")]
    ConsentNotConfirmed,
}

/// What Microsoft sent back to a redirect URI.
#[derive(Debug, Clone, Default)]
pub struct Callback {
    /// The authorization code.
    pub code: Option<String>,
    /// The RFC 9207 issuer, when the provider sends it.
    pub iss: Option<String>,
    /// The OAuth error.
    pub error: Option<String>,
    /// Microsoft's error text (only its AADSTS code is kept).
    pub error_description: Option<String>,
    /// The admin-consent callback's tenant: a hint, confirmed by a sign-in.
    pub tenant: Option<String>,
}

/// How a return from Microsoft ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntraOutcome {
    /// A user is signed in.
    SignedIn(SignedIn),
    /// The token does not sign this user in.
    Refused(EntraSignInRefusal),
    /// The organisation has not approved FinteQX.
    ConsentRequired,
    /// Microsoft did not sign the user in (an error, a refused code, an invalid token).
    Failed,
    /// Admin consent was granted and confirmed by an Entra administrator's sign-in.
    ConsentGranted(EntraTenantId),
    /// Admin consent was refused.
    ConsentRefused,
    /// Admin consent was reported; an Entra administrator must now sign in to confirm the
    /// tenant: send the browser here.
    ConfirmConsent {
        /// Microsoft's sign-in page.
        url: String,
        /// The new flow's state (the browser's cookie).
        state: String,
    },
}

/// A redirect to Microsoft and the state the browser must bring back.
#[derive(Debug, Clone)]
pub struct EntraRedirect {
    /// Where to send the browser.
    pub url: String,
    /// The state, for the browser's flow cookie.
    pub state: String,
}

fn code(text: &str) -> ProviderErrorCode {
    ProviderErrorCode::parse(text).unwrap_or_else(|_| ProviderErrorCode::unrecognised())
}

fn unavailable(error: EntraError) -> CommandError {
    CommandError::Unavailable(error.into())
}

fn redeem_failure(error: EntraError) -> Result<ProviderErrorCode, CommandError> {
    match error {
        EntraError::Unavailable(cause) => Err(CommandError::Unavailable(cause)),
        EntraError::CodeRefused { error_code } => Ok(code(&error_code)),
        EntraError::InvalidToken(reason) => {
            tracing::warn!(reason = %reason, "Entra ID token refused");
            Ok(code("invalid_id_token"))
        }
    }
}

impl Commands {
    /// Starts "Inloggen met Microsoft Entra ID" for a typed address: only an account that the
    /// sign-in rule sends to Entra gets a redirect, to its domain's Entra tenant.
    ///
    /// # Errors
    /// [`EntraFlowError::UsePassword`] for every other address, or an infrastructure error.
    pub async fn start_entra_sign_in(
        &self,
        entra: &Entra,
        email: &str,
    ) -> Result<EntraRedirect, CommandError> {
        let email = EmailAddress::parse(email).map_err(|_| EntraFlowError::UsePassword)?;
        // By the address's domain alone (ADR-0028): every address on a proven domain bound to an
        // Entra tenant is sent there the same way, known or not; only Microsoft's answer, at the
        // callback, meets the account. An address without an account waits for no one there.
        let domain = login_page::entra_domain(&self.pool, email.domain())
            .await?
            .ok_or(EntraFlowError::UsePassword)?;
        let account = login_page::account(&self.pool, &self.keys.email_lookup.key_for(&email))
            .await?
            .filter(|account| account.tenant_id == domain.tenant_id);
        let user_id = account.map_or(NO_ACCOUNT, |account| account.user_id);
        let (tenant_id, entra_tenant_id) = (domain.tenant_id, domain.entra_tenant_id);
        let authorization = entra
            .authorize(entra_tenant_id, Some(&email.to_string()))
            .await
            .map_err(unavailable)?;
        let pending = PendingLogin {
            purpose: Purpose::SignIn,
            tenant_id,
            user_id,
            entra_tenant_id: Some(entra_tenant_id),
            secrets: Some(FlowSecrets {
                nonce: authorization.nonce,
                pkce_verifier: authorization.pkce_verifier,
            }),
            session_hash: None,
        };
        pending::save(&self.pool, &authorization.state, &pending, self.clock.now()).await?;
        Ok(EntraRedirect {
            url: authorization.url.to_string(),
            state: authorization.state,
        })
    }

    /// The browser came back to the sign-in redirect URI: a user's sign-in, or the Entra
    /// administrator's sign-in that confirms an admin consent (bound to `session_hash`).
    ///
    /// # Errors
    /// [`EntraFlowError`] for an unknown, reused or foreign `state`, or an infrastructure error.
    pub async fn complete_entra_sign_in(
        &self,
        context: &CommandContext,
        entra: &Entra,
        state: &str,
        callback: &Callback,
        session_hash: Option<&[u8]>,
    ) -> Result<EntraOutcome, CommandError> {
        let now = self.clock.now();
        let pending = pending::take(&self.pool, state, session_hash, now)
            .await?
            .ok_or(EntraFlowError::StateUnknown)?;
        let (Some(entra_tenant_id), Some(secrets)) = (pending.entra_tenant_id, &pending.secrets)
        else {
            return Err(EntraFlowError::StateUnknown.into());
        };
        match pending.purpose {
            Purpose::SignIn => {
                let flow = Flow {
                    tenant_id: pending.tenant_id,
                    user_id: pending.user_id,
                    entra_tenant_id,
                    now,
                };
                self.finish_sign_in(context, entra, &flow, secrets, callback)
                    .await
            }
            Purpose::ConsentConfirmation if pending.session_hash.as_deref() == session_hash => {
                // Recorded as the administrator who started the consent flow.
                let context = CommandContext {
                    actor_id: pending.user_id.to_string(),
                    actor_role: domain::metadata::ActorRole::Administrator,
                    tenant_id: Some(pending.tenant_id),
                    ..context.clone()
                };
                self.confirm_consent(
                    &context,
                    entra,
                    &pending,
                    entra_tenant_id,
                    secrets,
                    callback,
                )
                .await
            }
            Purpose::ConsentConfirmation | Purpose::AdminConsent => {
                Err(EntraFlowError::StateUnknown.into())
            }
        }
    }

    async fn finish_sign_in(
        &self,
        context: &CommandContext,
        entra: &Entra,
        flow: &Flow,
        secrets: &FlowSecrets,
        callback: &Callback,
    ) -> Result<EntraOutcome, CommandError> {
        let context = CommandContext {
            tenant_id: Some(flow.tenant_id),
            ..context.clone()
        };
        let mut role = None;
        let outcome = match self
            .redeem(entra, flow.entra_tenant_id, secrets, callback)
            .await?
        {
            Redeemed::Error(AuthorizationError::ConsentRequired(error_code)) => {
                EntraSignInOutcome::ConsentRequired {
                    entra_tenant_id: Some(flow.entra_tenant_id),
                    error_code,
                }
            }
            Redeemed::Error(AuthorizationError::Other(error_code)) => {
                EntraSignInOutcome::ProviderError { error_code }
            }
            Redeemed::Token(_) if flow.user_id == NO_ACCOUNT => {
                EntraSignInOutcome::Refused(EntraSignInRefusal::NotLinked)
            }
            Redeemed::Token(token) => {
                let user = self.users.load(&flow.user_id.to_string()).await?;
                let email = user
                    .account_in(flow.tenant_id)
                    .and_then(|account| account.email.known().cloned())
                    .ok_or(UserError::UserNotFound)?;
                let binding = match self.binding_of(flow.tenant_id, email.domain()).await {
                    Ok(binding) => Some(binding),
                    Err(CommandError::DomainClaim(_)) => None,
                    Err(other) => return Err(other),
                };
                match binding {
                    None => EntraSignInOutcome::Refused(EntraSignInRefusal::NotLinked),
                    Some(binding) => match self
                        .execute_user_command(
                            &context,
                            flow.tenant_id,
                            flow.user_id,
                            UserCommand::CompleteEntraSignIn {
                                binding,
                                claims: token.claims,
                            },
                        )
                        .await
                    {
                        Ok(committed) => {
                            // The account as the sign-in left it: its role goes on the session.
                            role = committed
                                .aggregate
                                .account_in(flow.tenant_id)
                                .map(|account| account.role);
                            EntraSignInOutcome::Succeeded
                        }
                        Err(CommandError::User(UserError::EntraSignInRefused(refusal))) => {
                            EntraSignInOutcome::Refused(refusal)
                        }
                        Err(other) => return Err(other),
                    },
                }
            }
        };
        if flow.user_id == NO_ACCOUNT {
            // No account to record the attempt against; the answer is an unlinked account's.
            return Ok(match outcome {
                EntraSignInOutcome::ConsentRequired { .. } => EntraOutcome::ConsentRequired,
                EntraSignInOutcome::ProviderError { .. } => EntraOutcome::Failed,
                _ => EntraOutcome::Refused(EntraSignInRefusal::NotLinked),
            });
        }
        let sign_in_id = SignInId::from_uuid(uuid::Uuid::now_v7());
        let command = SignInCommand::RecordEntraSignIn {
            sign_in_id,
            user_id: flow.user_id,
            outcome: outcome.clone(),
            now: flow.now,
        };
        self.sign_ins
            .execute(
                &sign_in_id.to_string(),
                TenantScoped::new(flow.tenant_id, command),
                &context,
            )
            .await?;
        Ok(match outcome {
            EntraSignInOutcome::Succeeded => EntraOutcome::SignedIn(SignedIn {
                tenant_id: flow.tenant_id,
                user_id: flow.user_id,
                role: role.ok_or(UserError::UserNotFound)?,
                method: SignInMethod::EntraId,
            }),
            EntraSignInOutcome::Refused(refusal) => EntraOutcome::Refused(refusal),
            EntraSignInOutcome::ConsentRequired { .. } => EntraOutcome::ConsentRequired,
            EntraSignInOutcome::ProviderError { .. } => EntraOutcome::Failed,
        })
    }

    /// Turns a callback into a validated token or Microsoft's error, checking the RFC 9207
    /// issuer when present (mix-up defence).
    async fn redeem(
        &self,
        entra: &Entra,
        entra_tenant_id: EntraTenantId,
        secrets: &FlowSecrets,
        callback: &Callback,
    ) -> Result<Redeemed, CommandError> {
        if let Some(error) = &callback.error {
            return Ok(Redeemed::Error(classify_authorization_error(
                error,
                callback.error_description.as_deref(),
            )));
        }
        if callback
            .iss
            .as_deref()
            .is_some_and(|iss| iss != entra.issuer(entra_tenant_id))
        {
            return Ok(Redeemed::Error(AuthorizationError::Other(code(
                "issuer_mismatch",
            ))));
        }
        let Some(authorization_code) = &callback.code else {
            return Ok(Redeemed::Error(AuthorizationError::Other(code(
                "invalid_request",
            ))));
        };
        match entra
            .redeem(
                entra_tenant_id,
                authorization_code,
                &secrets.pkce_verifier,
                &secrets.nonce,
            )
            .await
        {
            Ok(token) => Ok(Redeemed::Token(Box::new(token))),
            Err(error) => Ok(Redeemed::Error(AuthorizationError::Other(redeem_failure(
                error,
            )?))),
        }
    }

    /// Starts Microsoft's admin-consent flow for `tenant_id`'s administrator, bound to their
    /// session; `entra_tenant_id` is the Entra tenant when known (else `organizations`).
    ///
    /// # Errors
    /// [`CommandError::Tenant`] for an unknown tenant, or an infrastructure error.
    pub async fn start_admin_consent(
        &self,
        entra: &Entra,
        administrator: UserId,
        tenant_id: TenantId,
        entra_tenant_id: Option<EntraTenantId>,
        session_hash: Vec<u8>,
    ) -> Result<EntraRedirect, CommandError> {
        if self
            .tenants
            .load(&tenant_id.to_string())
            .await?
            .profile()
            .is_none()
        {
            return Err(domain::tenant::TenantError::NotRegistered.into());
        }
        let state = crate::http::auth::new_secret();
        let pending = PendingLogin {
            purpose: Purpose::AdminConsent,
            tenant_id,
            user_id: administrator,
            entra_tenant_id,
            secrets: None,
            session_hash: Some(session_hash),
        };
        pending::save(&self.pool, &state, &pending, self.clock.now()).await?;
        Ok(EntraRedirect {
            url: entra
                .admin_consent_url(entra_tenant_id, &state)
                .map_err(unavailable)?
                .to_string(),
            state,
        })
    }

    /// The browser came back from Microsoft's admin-consent page. A refusal is recorded; a
    /// grant only names a tenant as a hint, so an Entra administrator of that tenant must now
    /// sign in and the token's `tid` must confirm it (research §1.7).
    ///
    /// # Errors
    /// [`EntraFlowError::StateUnknown`] for a state that is not this session's, or an
    /// infrastructure error.
    pub async fn admin_consent_returned(
        &self,
        context: &CommandContext,
        entra: &Entra,
        state: &str,
        callback: &Callback,
        session_hash: &[u8],
    ) -> Result<EntraOutcome, CommandError> {
        let now = self.clock.now();
        let pending = pending::take(&self.pool, state, Some(session_hash), now)
            .await?
            .filter(|p| {
                p.purpose == Purpose::AdminConsent
                    && p.session_hash.as_deref() == Some(session_hash)
            })
            .ok_or(EntraFlowError::StateUnknown)?;
        let hinted = callback
            .tenant
            .as_deref()
            .and_then(|tenant| EntraTenantId::parse(tenant).ok());
        if let Some(error) = &callback.error {
            let error_code =
                match classify_authorization_error(error, callback.error_description.as_deref()) {
                    AuthorizationError::ConsentRequired(code) | AuthorizationError::Other(code) => {
                        code
                    }
                };
            match pending.entra_tenant_id {
                Some(entra_tenant_id) => {
                    self.record_entra_consent(
                        context,
                        pending.tenant_id,
                        entra_tenant_id,
                        ConsentDecision::Refused { error_code },
                    )
                    .await?;
                }
                None => {
                    self.tenants
                        .execute(
                            &pending.tenant_id.to_string(),
                            domain::tenant::TenantCommand::RecordEntraConsentRefusedWithoutTenant {
                                error_code,
                            },
                            context,
                        )
                        .await?;
                }
            }
            return Ok(EntraOutcome::ConsentRefused);
        }
        let entra_tenant_id = match (pending.entra_tenant_id, hinted) {
            (Some(expected), Some(hint)) if expected == hint => expected,
            (None, Some(hint)) => hint,
            _ => return Err(EntraFlowError::ConsentNotConfirmed.into()),
        };
        let authorization = entra
            .authorize(entra_tenant_id, None)
            .await
            .map_err(unavailable)?;
        let confirmation = PendingLogin {
            purpose: Purpose::ConsentConfirmation,
            tenant_id: pending.tenant_id,
            user_id: pending.user_id,
            entra_tenant_id: Some(entra_tenant_id),
            secrets: Some(FlowSecrets {
                nonce: authorization.nonce,
                pkce_verifier: authorization.pkce_verifier,
            }),
            session_hash: pending.session_hash,
        };
        pending::save(&self.pool, &authorization.state, &confirmation, now).await?;
        Ok(EntraOutcome::ConfirmConsent {
            url: authorization.url.to_string(),
            state: authorization.state,
        })
    }

    async fn confirm_consent(
        &self,
        context: &CommandContext,
        entra: &Entra,
        pending: &PendingLogin,
        entra_tenant_id: EntraTenantId,
        secrets: &FlowSecrets,
        callback: &Callback,
    ) -> Result<EntraOutcome, CommandError> {
        match self
            .redeem(entra, entra_tenant_id, secrets, callback)
            .await?
        {
            Redeemed::Token(token)
                if token.claims.identity.entra_tenant_id == entra_tenant_id
                    && !token.claims.is_guest =>
            {
                self.record_entra_consent(
                    context,
                    pending.tenant_id,
                    entra_tenant_id,
                    ConsentDecision::Granted,
                )
                .await?;
                self.prove_domain_by_entra(context, pending.tenant_id, &token.claims)
                    .await?;
                Ok(EntraOutcome::ConsentGranted(entra_tenant_id))
            }
            Redeemed::Token(_) => Err(EntraFlowError::ConsentNotConfirmed.into()),
            Redeemed::Error(_) => Ok(EntraOutcome::Failed),
        }
    }
}

impl Commands {
    /// Microsoft's word on a domain (ADR-0025): the Entra administrator's sign-in that confirms
    /// consent proves the tenant's pending claim on the token's e-mail domain when the token
    /// comes from the Entra tenant the claim is bound to and says that tenant has verified the
    /// domain (`xms_edov`). Anything less proves nothing and is not an error: consent stands.
    async fn prove_domain_by_entra(
        &self,
        context: &CommandContext,
        tenant_id: TenantId,
        claims: &EntraClaims,
    ) -> Result<(), CommandError> {
        let Some(email) = &claims.email else {
            return Ok(());
        };
        let domain = email.domain().clone();
        let claim = self.domains.load(domain.as_str()).await?;
        if claim.claim_of(tenant_id).is_none_or(TenantClaim::is_proven) {
            return Ok(());
        }
        let evidence = DomainEvidence::EntraToken {
            entra_tenant_id: claims.identity.entra_tenant_id,
            email_domain: Some(domain.clone()),
            email_domain_verified: claims.email_domain_verified,
            is_guest: claims.is_guest,
        };
        match self
            .prove_domain(context, tenant_id, domain, evidence)
            .await
        {
            Ok(_) => Ok(()),
            Err(CommandError::DomainClaim(refusal)) => {
                tracing::info!(tenant.id = %tenant_id, reason = %refusal, "the Entra sign-in proves no domain");
                Ok(())
            }
            Err(error) => Err(error),
        }
    }
}

/// A user's sign-in flow as it came back.
struct Flow {
    tenant_id: TenantId,
    user_id: UserId,
    entra_tenant_id: EntraTenantId,
    now: DateTime<Utc>,
}

enum Redeemed {
    Token(Box<crate::entra::VerifiedToken>),
    Error(AuthorizationError),
}

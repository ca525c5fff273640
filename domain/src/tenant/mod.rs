//! The tenant: its registration, MFA policy and the Entra admin consents it recorded.
//!
//! A short stream: it grows only with administrator edits, never with users or sign-ins
//! (ADR-0004).

mod command;
mod error;
mod event;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use command::{ConsentDecision, TenantCommand};
pub use error::TenantError;
pub use event::TenantEvent;

use crate::aggregate::impl_aggregate;
use crate::ids::{EntraTenantId, TenantId};
use crate::values::{DisplayName, Locale};

/// Whether an Entra tenant's administrator approved FinteQX.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentState {
    /// Admin consent was granted.
    Granted,
    /// The administrator refused, and it was never granted.
    Refused,
}

/// The tenant's state as its events left it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tenant {
    profile: Option<TenantProfile>,
    sms_required: bool,
    consents: BTreeMap<EntraTenantId, ConsentState>,
}

/// What registration recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantProfile {
    /// The tenant id.
    pub tenant_id: TenantId,
    /// The name shown to administrators and support.
    pub display_name: DisplayName,
    /// The language of texts for users without their own.
    pub default_locale: Locale,
}

impl_aggregate!(Tenant, "tenant", TenantCommand, TenantEvent, TenantError);

impl Tenant {
    /// The registration, if the tenant exists.
    pub const fn profile(&self) -> Option<&TenantProfile> {
        self.profile.as_ref()
    }

    /// Whether SMS is required for users who do not sign in through Entra ID.
    pub const fn sms_required(&self) -> bool {
        self.sms_required
    }

    /// The consent state recorded for an Entra tenant, if any.
    pub fn consent(&self, entra_tenant_id: EntraTenantId) -> Option<ConsentState> {
        self.consents.get(&entra_tenant_id).copied()
    }

    /// Every recorded consent state, by Entra tenant in ascending order.
    pub fn consents(&self) -> impl Iterator<Item = (EntraTenantId, ConsentState)> + '_ {
        self.consents
            .iter()
            .map(|(entra_tenant_id, state)| (*entra_tenant_id, *state))
    }

    /// Decides a command against the current state.
    ///
    /// # Errors
    /// [`TenantError::NotRegistered`] for any command before registration,
    /// [`TenantError::AlreadyRegistered`] for a second registration.
    pub fn decide(&self, command: TenantCommand) -> Result<Vec<TenantEvent>, TenantError> {
        let tenant_id = match (&self.profile, &command) {
            (
                None,
                TenantCommand::RegisterTenant {
                    tenant_id,
                    display_name,
                    default_locale,
                },
            ) => {
                return Ok(vec![TenantEvent::TenantRegistered {
                    tenant_id: *tenant_id,
                    display_name: display_name.clone(),
                    default_locale: *default_locale,
                }]);
            }
            (Some(_), TenantCommand::RegisterTenant { .. }) => {
                return Err(TenantError::AlreadyRegistered);
            }
            (None, _) => return Err(TenantError::NotRegistered),
            (Some(profile), _) => profile.tenant_id,
        };
        Ok(match command {
            TenantCommand::RegisterTenant { .. } => vec![],
            TenantCommand::SetMfaPolicy { sms_required } if sms_required == self.sms_required => {
                vec![]
            }
            TenantCommand::SetMfaPolicy { sms_required } => {
                vec![TenantEvent::MfaPolicySet {
                    tenant_id,
                    sms_required,
                }]
            }
            // Every confirmed grant is recorded, also a repeated one: a sign-in may have found
            // consent missing since the last grant (its failure is on the sign-in's stream, not
            // here), and the views show the latest fact (ADR-0027).
            TenantCommand::RecordEntraConsent {
                entra_tenant_id,
                decision: ConsentDecision::Granted,
            } => vec![TenantEvent::EntraConsentGranted {
                tenant_id,
                entra_tenant_id,
            }],
            TenantCommand::RecordEntraConsent {
                entra_tenant_id,
                decision: ConsentDecision::Refused { error_code },
            } => {
                vec![TenantEvent::EntraConsentRefused {
                    tenant_id,
                    entra_tenant_id: Some(entra_tenant_id),
                    error_code,
                }]
            }
            TenantCommand::RecordEntraConsentRefusedWithoutTenant { error_code } => {
                vec![TenantEvent::EntraConsentRefused {
                    tenant_id,
                    entra_tenant_id: None,
                    error_code,
                }]
            }
        })
    }

    /// Applies an event; never fails and checks no rules.
    pub fn evolve(&mut self, event: TenantEvent) {
        match event {
            TenantEvent::TenantRegistered {
                tenant_id,
                display_name,
                default_locale,
            } => {
                self.profile = Some(TenantProfile {
                    tenant_id,
                    display_name,
                    default_locale,
                });
            }
            TenantEvent::MfaPolicySet { sms_required, .. } => self.sms_required = sms_required,
            TenantEvent::EntraConsentGranted {
                entra_tenant_id, ..
            } => {
                self.consents.insert(entra_tenant_id, ConsentState::Granted);
            }
            TenantEvent::EntraConsentRefused {
                entra_tenant_id: Some(entra_tenant_id),
                ..
            } => {
                // A later refusal (someone cancelling the prompt) does not revoke a granted consent.
                self.consents
                    .entry(entra_tenant_id)
                    .or_insert(ConsentState::Refused);
            }
            TenantEvent::EntraConsentRefused {
                entra_tenant_id: None,
                ..
            } => {}
        }
    }
}

#[cfg(test)]
mod tests;

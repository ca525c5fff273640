use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::ids::{EntraTenantId, TenantId};
use crate::values::{DisplayName, Locale, ProviderErrorCode};

/// Facts about a tenant. A persisted contract: never rename a variant or a field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TenantEvent {
    /// The operator provisioned the tenant.
    TenantRegistered {
        /// The tenant.
        tenant_id: TenantId,
        /// Its display name.
        display_name: DisplayName,
        /// Its default language.
        default_locale: Locale,
    },
    /// The administrator changed whether SMS is required.
    MfaPolicySet {
        /// The tenant.
        tenant_id: TenantId,
        /// The new policy.
        sms_required: bool,
    },
    /// An Entra tenant's administrator granted consent to FinteQX.
    EntraConsentGranted {
        /// The tenant.
        tenant_id: TenantId,
        /// The Entra tenant that granted it.
        entra_tenant_id: EntraTenantId,
    },
    /// The admin-consent flow ended in a refusal or an error.
    EntraConsentRefused {
        /// The tenant.
        tenant_id: TenantId,
        /// The Entra tenant, when the callback named one.
        entra_tenant_id: Option<EntraTenantId>,
        /// Microsoft's error code.
        error_code: ProviderErrorCode,
    },
}

impl DomainEvent for TenantEvent {
    fn event_type(&self) -> String {
        match self {
            Self::TenantRegistered { .. } => "TenantRegistered",
            Self::MfaPolicySet { .. } => "MfaPolicySet",
            Self::EntraConsentGranted { .. } => "EntraConsentGranted",
            Self::EntraConsentRefused { .. } => "EntraConsentRefused",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

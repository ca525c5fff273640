use crate::ids::{EntraTenantId, TenantId};
use crate::values::{DisplayName, Locale, ProviderErrorCode};

/// Commands to the tenant aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantCommand {
    /// The operator provisions a tenant.
    RegisterTenant {
        /// The new tenant's id.
        tenant_id: TenantId,
        /// Its display name.
        display_name: DisplayName,
        /// Its default language.
        default_locale: Locale,
    },
    /// The administrator requires SMS (or not) for every user who does not sign in through Entra ID.
    SetMfaPolicy {
        /// The new policy.
        sms_required: bool,
    },
    /// The admin-consent callback reported a decision of an Entra tenant's administrator.
    RecordEntraConsent {
        /// The Entra tenant that decided (confirmed by a token's `tid` when granted).
        entra_tenant_id: EntraTenantId,
        /// Granted or refused.
        decision: ConsentDecision,
    },
    /// The admin-consent callback reported a refusal that names no Entra tenant.
    RecordEntraConsentRefusedWithoutTenant {
        /// Microsoft's error code.
        error_code: ProviderErrorCode,
    },
}

/// An administrator's answer to the admin-consent prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsentDecision {
    /// Consent granted.
    Granted,
    /// Consent refused, with Microsoft's error code.
    Refused {
        /// For example `access_denied`.
        error_code: ProviderErrorCode,
    },
}

impl crate::metadata::NamedCommand for TenantCommand {
    fn command_name(&self) -> &'static str {
        match self {
            Self::RegisterTenant { .. } => "RegisterTenant",
            Self::SetMfaPolicy { .. } => "SetMfaPolicy",
            Self::RecordEntraConsent { .. } => "RecordEntraConsent",
            Self::RecordEntraConsentRefusedWithoutTenant { .. } => {
                "RecordEntraConsentRefusedWithoutTenant"
            }
        }
    }
}

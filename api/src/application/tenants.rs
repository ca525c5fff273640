//! Tenant use cases: registration (operator), MFA policy, admin consent.

use domain::ids::EntraTenantId;
use domain::ids::TenantId;
use domain::tenant::{ConsentDecision, TenantCommand};
use domain::values::{DisplayName, Locale};

use super::{CommandError, Commands};
use crate::executor::{CommandContext, Committed};
use domain::tenant::Tenant;

impl Commands {
    /// `RegisterTenant`.
    ///
    /// # Errors
    /// [`CommandError::Tenant`] when the id is taken, or an infrastructure error.
    pub async fn register_tenant(
        &self,
        context: &CommandContext,
        tenant_id: TenantId,
        display_name: DisplayName,
        default_locale: Locale,
    ) -> Result<Committed<Tenant>, CommandError> {
        let command = TenantCommand::RegisterTenant {
            tenant_id,
            display_name,
            default_locale,
        };
        Ok(self
            .tenants
            .execute(&tenant_id.to_string(), command, context)
            .await?)
    }

    /// `SetMfaPolicy`.
    ///
    /// # Errors
    /// [`CommandError::Tenant`] for an unknown tenant, or an infrastructure error.
    pub async fn set_mfa_policy(
        &self,
        context: &CommandContext,
        tenant_id: TenantId,
        sms_required: bool,
    ) -> Result<Committed<Tenant>, CommandError> {
        let command = TenantCommand::SetMfaPolicy { sms_required };
        Ok(self
            .tenants
            .execute(&tenant_id.to_string(), command, context)
            .await?)
    }

    /// Records the outcome of Microsoft's admin-consent flow.
    ///
    /// # Errors
    /// [`CommandError::Tenant`] for an unknown tenant, or an infrastructure error.
    pub async fn record_entra_consent(
        &self,
        context: &CommandContext,
        tenant_id: TenantId,
        entra_tenant_id: EntraTenantId,
        decision: ConsentDecision,
    ) -> Result<Committed<Tenant>, CommandError> {
        let command = TenantCommand::RecordEntraConsent {
            entra_tenant_id,
            decision,
        };
        Ok(self
            .tenants
            .execute(&tenant_id.to_string(), command, context)
            .await?)
    }
}

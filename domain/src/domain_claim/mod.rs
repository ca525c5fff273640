//! A domain claimed by one FinteQX tenant and bound to the Entra tenant that owns it.
//!
//! One stream per domain (the aggregate id is the canonical domain name), so "a domain is bound
//! by at most one FinteQX tenant" holds under concurrency: two racing claims append the same
//! sequence number and the event store lets only one commit (ADR-0005).

use serde::{Deserialize, Serialize};

use crate::aggregate::impl_aggregate;
use crate::entra::DomainBinding;
use crate::ids::{EntraTenantId, TenantId};
use crate::values::DomainName;

/// The claim's state as its events left it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DomainClaim {
    binding: Option<DomainBinding>,
}

/// Commands to a domain claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainClaimCommand {
    /// Claims the domain for a tenant and binds it to an Entra tenant, or rebinds it.
    ClaimDomain {
        /// The claiming tenant.
        tenant_id: TenantId,
        /// The domain (also the stream id).
        domain: DomainName,
        /// The Entra tenant that owns the domain.
        entra_tenant_id: EntraTenantId,
        /// How many users are linked through the domain now (read model): a bound domain
        /// with linked users is not moved to another Entra tenant.
        linked_users: u32,
    },
    /// Gives the domain up.
    ReleaseDomain {
        /// The tenant giving it up.
        tenant_id: TenantId,
        /// How many users are linked through the domain now (read model).
        linked_users: u32,
    },
}

/// Facts about a domain claim. A persisted contract: never rename a variant or a field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DomainClaimEvent {
    /// The tenant claimed the domain, bound to an Entra tenant.
    DomainClaimed {
        /// The tenant.
        tenant_id: TenantId,
        /// The domain.
        domain: DomainName,
        /// The Entra tenant that owns it.
        entra_tenant_id: EntraTenantId,
    },
    /// The administrator bound the domain to another Entra tenant.
    DomainRebound {
        /// The tenant.
        tenant_id: TenantId,
        /// The domain.
        domain: DomainName,
        /// The new Entra tenant.
        entra_tenant_id: EntraTenantId,
        /// The Entra tenant before.
        previous_entra_tenant_id: EntraTenantId,
    },
    /// The tenant gave the domain up.
    DomainReleased {
        /// The tenant.
        tenant_id: TenantId,
        /// The domain.
        domain: DomainName,
    },
}

/// Why a domain claim refused a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainClaimError {
    /// Another FinteQX tenant has claimed the domain.
    #[error("the domain is claimed by another tenant")]
    ClaimedByAnotherTenant,
    /// The tenant has not claimed the domain.
    #[error("the domain is not claimed by this tenant")]
    NotClaimedByTenant,
    /// Users are still linked through the domain.
    #[error("{linked_users} users are still linked through this domain")]
    HasLinkedUsers {
        /// How many.
        linked_users: u32,
    },
}

impl_aggregate!(
    DomainClaim,
    "domain_claim",
    DomainClaimCommand,
    DomainClaimEvent,
    DomainClaimError
);

impl DomainClaim {
    /// The current binding, if the domain is claimed.
    pub const fn binding(&self) -> Option<&DomainBinding> {
        self.binding.as_ref()
    }

    /// The binding if `tenant_id` holds the claim.
    pub fn binding_for(&self, tenant_id: TenantId) -> Option<&DomainBinding> {
        self.binding
            .as_ref()
            .filter(|binding| binding.tenant_id == tenant_id)
    }

    /// Decides a command against the current state.
    ///
    /// # Errors
    /// See [`DomainClaimError`].
    pub fn decide(
        &self,
        command: DomainClaimCommand,
    ) -> Result<Vec<DomainClaimEvent>, DomainClaimError> {
        match command {
            DomainClaimCommand::ClaimDomain {
                tenant_id,
                domain,
                entra_tenant_id,
                linked_users,
            } => match &self.binding {
                None => Ok(vec![DomainClaimEvent::DomainClaimed {
                    tenant_id,
                    domain,
                    entra_tenant_id,
                }]),
                Some(current) if current.tenant_id != tenant_id => {
                    Err(DomainClaimError::ClaimedByAnotherTenant)
                }
                Some(current) if current.entra_tenant_id == entra_tenant_id => Ok(vec![]),
                Some(_) if linked_users > 0 => {
                    Err(DomainClaimError::HasLinkedUsers { linked_users })
                }
                Some(current) => Ok(vec![DomainClaimEvent::DomainRebound {
                    tenant_id,
                    domain,
                    entra_tenant_id,
                    previous_entra_tenant_id: current.entra_tenant_id,
                }]),
            },
            DomainClaimCommand::ReleaseDomain {
                tenant_id,
                linked_users,
            } => {
                let current = self
                    .binding_for(tenant_id)
                    .ok_or(DomainClaimError::NotClaimedByTenant)?;
                if linked_users > 0 {
                    return Err(DomainClaimError::HasLinkedUsers { linked_users });
                }
                Ok(vec![DomainClaimEvent::DomainReleased {
                    tenant_id,
                    domain: current.domain.clone(),
                }])
            }
        }
    }

    /// Applies an event; never fails and checks no rules.
    pub fn evolve(&mut self, event: DomainClaimEvent) {
        match event {
            DomainClaimEvent::DomainClaimed {
                tenant_id,
                domain,
                entra_tenant_id,
            }
            | DomainClaimEvent::DomainRebound {
                tenant_id,
                domain,
                entra_tenant_id,
                ..
            } => {
                self.binding = Some(DomainBinding {
                    tenant_id,
                    domain,
                    entra_tenant_id,
                });
            }
            DomainClaimEvent::DomainReleased { .. } => self.binding = None,
        }
    }
}

impl cqrs_es::DomainEvent for DomainClaimEvent {
    fn event_type(&self) -> String {
        match self {
            Self::DomainClaimed { .. } => "DomainClaimed",
            Self::DomainRebound { .. } => "DomainRebound",
            Self::DomainReleased { .. } => "DomainReleased",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

impl crate::metadata::NamedCommand for DomainClaimCommand {
    fn command_name(&self) -> &'static str {
        match self {
            Self::ClaimDomain { .. } => "ClaimDomain",
            Self::ReleaseDomain { .. } => "ReleaseDomain",
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;
    use crate::test_support::{domain, entra_tenant, other_tenant_id, tenant_id};

    type Given = TestFramework<DomainClaim>;

    fn claim(tenant: TenantId, entra: u128, linked_users: u32) -> DomainClaimCommand {
        DomainClaimCommand::ClaimDomain {
            tenant_id: tenant,
            domain: domain("contoso.com"),
            entra_tenant_id: entra_tenant(entra),
            linked_users,
        }
    }

    fn claimed() -> DomainClaimEvent {
        DomainClaimEvent::DomainClaimed {
            tenant_id: tenant_id(),
            domain: domain("contoso.com"),
            entra_tenant_id: entra_tenant(1),
        }
    }

    #[test]
    fn claims_a_free_domain() {
        Given::with(())
            .given_no_previous_events()
            .when(claim(tenant_id(), 1, 0))
            .then_expect_events(vec![claimed()]);
    }

    #[test]
    fn refuses_a_domain_claimed_by_another_tenant() {
        Given::with(())
            .given(vec![claimed()])
            .when(claim(other_tenant_id(), 1, 0))
            .then_expect_error(DomainClaimError::ClaimedByAnotherTenant);
    }

    #[test]
    fn claiming_again_with_the_same_entra_tenant_changes_nothing() {
        Given::with(())
            .given(vec![claimed()])
            .when(claim(tenant_id(), 1, 3))
            .then_expect_events(vec![]);
    }

    #[test]
    fn rebinds_to_another_entra_tenant_only_without_linked_users() {
        Given::with(())
            .given(vec![claimed()])
            .when(claim(tenant_id(), 2, 3))
            .then_expect_error(DomainClaimError::HasLinkedUsers { linked_users: 3 });
        Given::with(())
            .given(vec![claimed()])
            .when(claim(tenant_id(), 2, 0))
            .then_expect_events(vec![DomainClaimEvent::DomainRebound {
                tenant_id: tenant_id(),
                domain: domain("contoso.com"),
                entra_tenant_id: entra_tenant(2),
                previous_entra_tenant_id: entra_tenant(1),
            }]);
    }

    #[test]
    fn releases_only_own_domains_without_linked_users() {
        Given::with(())
            .given(vec![claimed()])
            .when(DomainClaimCommand::ReleaseDomain {
                tenant_id: other_tenant_id(),
                linked_users: 0,
            })
            .then_expect_error(DomainClaimError::NotClaimedByTenant);
        Given::with(())
            .given(vec![claimed()])
            .when(DomainClaimCommand::ReleaseDomain {
                tenant_id: tenant_id(),
                linked_users: 1,
            })
            .then_expect_error(DomainClaimError::HasLinkedUsers { linked_users: 1 });
        Given::with(())
            .given(vec![claimed()])
            .when(DomainClaimCommand::ReleaseDomain {
                tenant_id: tenant_id(),
                linked_users: 0,
            })
            .then_expect_events(vec![DomainClaimEvent::DomainReleased {
                tenant_id: tenant_id(),
                domain: domain("contoso.com"),
            }]);
    }

    #[test]
    fn a_released_domain_can_be_claimed_by_another_tenant() {
        Given::with(())
            .given(vec![
                claimed(),
                DomainClaimEvent::DomainReleased {
                    tenant_id: tenant_id(),
                    domain: domain("contoso.com"),
                },
            ])
            .when(claim(other_tenant_id(), 3, 0))
            .then_expect_events(vec![DomainClaimEvent::DomainClaimed {
                tenant_id: other_tenant_id(),
                domain: domain("contoso.com"),
                entra_tenant_id: entra_tenant(3),
            }]);
    }
}

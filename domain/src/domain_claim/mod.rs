//! A domain claimed by FinteQX tenants, proven by one of them, and bound to the Entra tenant
//! that owns it.
//!
//! One stream per domain (the aggregate id is the canonical domain name), so "a domain is proven
//! by at most one FinteQX tenant" holds under concurrency: two racing commands append the same
//! sequence number and the event store lets only one commit (ADR-0005).
//!
//! A claim starts **pending** and grants nothing: a pending domain binds no sign-in and links
//! no user, and several tenants may hold pending claims on one domain, so a squatter's claim
//! does not keep the real owner out. A claim becomes **proven** by a DNS TXT record or by
//! Microsoft's word (ADR-0023); from then on no other tenant can claim the domain or give an
//! address on it to a user. Claims recorded before proof existed load as pending.

use serde::{Deserialize, Serialize};

use crate::aggregate::impl_aggregate;
use crate::entra::DomainBinding;
use crate::ids::{EntraTenantId, TenantId};
use crate::values::DomainName;

/// One tenant's claim on the domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantClaim {
    /// The claiming tenant, the domain and the Entra tenant it is bound to.
    pub binding: DomainBinding,
    /// How ownership was proven; `None` while the claim is pending.
    pub proof: Option<DomainProofMethod>,
}

impl TenantClaim {
    /// Whether the tenant has proven that it owns the domain.
    pub const fn is_proven(&self) -> bool {
        self.proof.is_some()
    }
}

/// The claims on the domain as their events left them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DomainClaim {
    /// At most one claim per tenant, and at most one of them proven.
    claims: Vec<TenantClaim>,
}

/// How a tenant proved that it owns a domain. Part of [`DomainClaimEvent::DomainProven`]: a
/// persisted contract, never rename a variant or a field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DomainProofMethod {
    /// The tenant's challenge value was found in a DNS TXT record.
    DnsTxt {
        /// The name the record was found at, e.g. `_finteqx-challenge.contoso.com`.
        record_name: String,
    },
    /// An administrator of the bound Entra tenant signed in, and Microsoft's ID token said the
    /// e-mail's domain is verified by that Entra tenant (`xms_edov`).
    EntraVerifiedDomain {
        /// The Entra tenant that vouched for the domain.
        entra_tenant_id: EntraTenantId,
    },
}

/// What the `api` layer found when it checked a proof: facts, not the check itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainEvidence {
    /// The TXT records found at a name.
    DnsTxt {
        /// The name that was queried.
        record_name: String,
        /// The value the tenant was told to publish (derived per tenant and domain).
        expected: String,
        /// Every TXT value found at `record_name` (empty when none or no such name).
        found: Vec<String>,
    },
    /// A validated Entra ID token of an administrator's sign-in.
    EntraToken {
        /// The token's `tid`.
        entra_tenant_id: EntraTenantId,
        /// The domain of the token's `email` claim, if any.
        email_domain: Option<DomainName>,
        /// The token's `xms_edov` claim: the e-mail's domain is verified by the Entra tenant.
        email_domain_verified: bool,
        /// A B2B guest's token, which speaks for the guest's home tenant, not this one.
        is_guest: bool,
    },
}

/// Commands to a domain claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainClaimCommand {
    /// Claims the domain for a tenant (pending until proven) and binds it to an Entra tenant,
    /// or rebinds the tenant's claim.
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
    /// Gives the tenant's claim up.
    ReleaseDomain {
        /// The tenant giving it up.
        tenant_id: TenantId,
        /// How many users are linked through the domain now (read model).
        linked_users: u32,
    },
    /// Records that the tenant owns the domain, if the evidence proves it.
    ProveDomain {
        /// The tenant whose claim is to be proven.
        tenant_id: TenantId,
        /// What the check found.
        evidence: DomainEvidence,
    },
}

/// Facts about a domain claim. A persisted contract: never rename a variant or a field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DomainClaimEvent {
    /// The tenant claimed the domain, bound to an Entra tenant; pending until proven.
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
    /// The tenant proved that it owns the domain: from now on it is bound for sign-in and its
    /// users can be linked, and no other tenant can claim it.
    DomainProven {
        /// The tenant.
        tenant_id: TenantId,
        /// The domain.
        domain: DomainName,
        /// How.
        method: DomainProofMethod,
    },
}

/// Why a domain claim refused a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainClaimError {
    /// Another FinteQX tenant has proven that it owns the domain.
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
    /// The tenant's claim is pending: ownership of the domain is not proven yet.
    #[error("ownership of the domain is not proven yet")]
    NotProven,
    /// The DNS check did not find the tenant's challenge value.
    #[error("the expected TXT record was not found at the domain")]
    TxtRecordNotFound,
    /// The Entra sign-in does not prove ownership: another Entra tenant, a guest, another
    /// domain, or a domain Microsoft does not call verified.
    #[error("the Microsoft sign-in does not prove ownership of the domain")]
    EntraProofInsufficient,
    /// An address on a domain that another tenant has proven it owns cannot be given to a user
    /// of this tenant. Deliberately says nothing about who.
    #[error("the address is on a domain that belongs to another organisation")]
    AddressOnAnotherTenantsDomain,
}

impl_aggregate!(
    DomainClaim,
    "domain_claim",
    DomainClaimCommand,
    DomainClaimEvent,
    DomainClaimError
);

impl DomainClaim {
    /// The tenant's claim, pending or proven.
    pub fn claim_of(&self, tenant_id: TenantId) -> Option<&TenantClaim> {
        self.claims
            .iter()
            .find(|claim| claim.binding.tenant_id == tenant_id)
    }

    /// The proven claim, if a tenant has proven that it owns the domain.
    pub fn proven(&self) -> Option<&TenantClaim> {
        self.claims.iter().find(|claim| claim.is_proven())
    }

    /// The binding if `tenant_id` has proven that it owns the domain; a pending claim binds
    /// nothing.
    pub fn binding_for(&self, tenant_id: TenantId) -> Option<&DomainBinding> {
        self.proven_binding_for(tenant_id).ok()
    }

    /// The binding sign-in and linking may use: only a proven claim of `tenant_id` has one.
    ///
    /// # Errors
    /// [`DomainClaimError::NotClaimedByTenant`] without a claim, [`DomainClaimError::NotProven`]
    /// while the claim is pending.
    pub fn proven_binding_for(
        &self,
        tenant_id: TenantId,
    ) -> Result<&DomainBinding, DomainClaimError> {
        let claim = self
            .claim_of(tenant_id)
            .ok_or(DomainClaimError::NotClaimedByTenant)?;
        if claim.is_proven() {
            Ok(&claim.binding)
        } else {
            Err(DomainClaimError::NotProven)
        }
    }

    /// Whether a user of `tenant_id` may be given an address on this domain: not when another
    /// tenant has proven that it owns it.
    ///
    /// # Errors
    /// [`DomainClaimError::AddressOnAnotherTenantsDomain`].
    pub fn check_address_for(&self, tenant_id: TenantId) -> Result<(), DomainClaimError> {
        match self.proven() {
            Some(owner) if owner.binding.tenant_id != tenant_id => {
                Err(DomainClaimError::AddressOnAnotherTenantsDomain)
            }
            _ => Ok(()),
        }
    }

    fn proven_by_another(&self, tenant_id: TenantId) -> bool {
        self.proven()
            .is_some_and(|owner| owner.binding.tenant_id != tenant_id)
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
            } => {
                if self.proven_by_another(tenant_id) {
                    return Err(DomainClaimError::ClaimedByAnotherTenant);
                }
                match self.claim_of(tenant_id) {
                    None => Ok(vec![DomainClaimEvent::DomainClaimed {
                        tenant_id,
                        domain,
                        entra_tenant_id,
                    }]),
                    Some(current) if current.binding.entra_tenant_id == entra_tenant_id => {
                        Ok(vec![])
                    }
                    Some(_) if linked_users > 0 => {
                        Err(DomainClaimError::HasLinkedUsers { linked_users })
                    }
                    Some(current) => Ok(vec![DomainClaimEvent::DomainRebound {
                        tenant_id,
                        domain,
                        entra_tenant_id,
                        previous_entra_tenant_id: current.binding.entra_tenant_id,
                    }]),
                }
            }
            DomainClaimCommand::ReleaseDomain {
                tenant_id,
                linked_users,
            } => {
                let current = self
                    .claim_of(tenant_id)
                    .ok_or(DomainClaimError::NotClaimedByTenant)?;
                if linked_users > 0 {
                    return Err(DomainClaimError::HasLinkedUsers { linked_users });
                }
                Ok(vec![DomainClaimEvent::DomainReleased {
                    tenant_id,
                    domain: current.binding.domain.clone(),
                }])
            }
            DomainClaimCommand::ProveDomain {
                tenant_id,
                evidence,
            } => self.decide_proof(tenant_id, evidence),
        }
    }

    fn decide_proof(
        &self,
        tenant_id: TenantId,
        evidence: DomainEvidence,
    ) -> Result<Vec<DomainClaimEvent>, DomainClaimError> {
        if self.proven_by_another(tenant_id) {
            return Err(DomainClaimError::ClaimedByAnotherTenant);
        }
        let claim = self
            .claim_of(tenant_id)
            .ok_or(DomainClaimError::NotClaimedByTenant)?;
        if claim.is_proven() {
            return Ok(vec![]);
        }
        let binding = &claim.binding;
        let method = match evidence {
            DomainEvidence::DnsTxt {
                record_name,
                expected,
                found,
            } => {
                // An empty expectation would be met by any empty record.
                if expected.is_empty() || !found.iter().any(|value| value.trim() == expected) {
                    return Err(DomainClaimError::TxtRecordNotFound);
                }
                DomainProofMethod::DnsTxt { record_name }
            }
            DomainEvidence::EntraToken {
                entra_tenant_id,
                email_domain,
                email_domain_verified,
                is_guest,
            } => {
                let vouches = entra_tenant_id == binding.entra_tenant_id
                    && email_domain.as_ref() == Some(&binding.domain)
                    && email_domain_verified
                    && !is_guest;
                if !vouches {
                    return Err(DomainClaimError::EntraProofInsufficient);
                }
                DomainProofMethod::EntraVerifiedDomain { entra_tenant_id }
            }
        };
        Ok(vec![DomainClaimEvent::DomainProven {
            tenant_id,
            domain: binding.domain.clone(),
            method,
        }])
    }

    /// Applies an event; never fails and checks no rules.
    pub fn evolve(&mut self, event: DomainClaimEvent) {
        match event {
            DomainClaimEvent::DomainClaimed {
                tenant_id,
                domain,
                entra_tenant_id,
            } => {
                self.claims.retain(|c| c.binding.tenant_id != tenant_id);
                self.claims.push(TenantClaim {
                    binding: DomainBinding {
                        tenant_id,
                        domain,
                        entra_tenant_id,
                    },
                    proof: None,
                });
            }
            DomainClaimEvent::DomainRebound {
                tenant_id,
                entra_tenant_id,
                ..
            } => {
                // Proof is of the FinteQX tenant's ownership, so it survives a new Entra tenant.
                if let Some(claim) = self
                    .claims
                    .iter_mut()
                    .find(|c| c.binding.tenant_id == tenant_id)
                {
                    claim.binding.entra_tenant_id = entra_tenant_id;
                }
            }
            DomainClaimEvent::DomainReleased { tenant_id, .. } => {
                self.claims.retain(|c| c.binding.tenant_id != tenant_id);
            }
            DomainClaimEvent::DomainProven {
                tenant_id, method, ..
            } => {
                if let Some(claim) = self
                    .claims
                    .iter_mut()
                    .find(|c| c.binding.tenant_id == tenant_id)
                {
                    claim.proof = Some(method);
                }
            }
        }
    }
}

impl cqrs_es::DomainEvent for DomainClaimEvent {
    fn event_type(&self) -> String {
        match self {
            Self::DomainClaimed { .. } => "DomainClaimed",
            Self::DomainRebound { .. } => "DomainRebound",
            Self::DomainReleased { .. } => "DomainReleased",
            Self::DomainProven { .. } => "DomainProven",
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
            Self::ProveDomain { .. } => "ProveDomain",
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;
    use crate::test_support::{domain, entra_tenant, other_tenant_id, tenant_id};

    type Given = TestFramework<DomainClaim>;

    const TOKEN: &str = "finteqx-domain-proof=abc123";
    const RECORD: &str = "_finteqx-challenge.contoso.com";

    fn claim(tenant: TenantId, entra: u128, linked_users: u32) -> DomainClaimCommand {
        DomainClaimCommand::ClaimDomain {
            tenant_id: tenant,
            domain: domain("contoso.com"),
            entra_tenant_id: entra_tenant(entra),
            linked_users,
        }
    }

    fn claimed_by(tenant: TenantId, entra: u128) -> DomainClaimEvent {
        DomainClaimEvent::DomainClaimed {
            tenant_id: tenant,
            domain: domain("contoso.com"),
            entra_tenant_id: entra_tenant(entra),
        }
    }

    fn claimed() -> DomainClaimEvent {
        claimed_by(tenant_id(), 1)
    }

    fn proven_by(tenant: TenantId) -> DomainClaimEvent {
        DomainClaimEvent::DomainProven {
            tenant_id: tenant,
            domain: domain("contoso.com"),
            method: DomainProofMethod::DnsTxt {
                record_name: RECORD.to_owned(),
            },
        }
    }

    fn proven() -> DomainClaimEvent {
        proven_by(tenant_id())
    }

    fn txt(tenant: TenantId, found: &[&str]) -> DomainClaimCommand {
        DomainClaimCommand::ProveDomain {
            tenant_id: tenant,
            evidence: DomainEvidence::DnsTxt {
                record_name: RECORD.to_owned(),
                expected: TOKEN.to_owned(),
                found: found.iter().map(|v| (*v).to_owned()).collect(),
            },
        }
    }

    fn entra_token(entra: u128, email_domain: &str, verified: bool) -> DomainClaimCommand {
        DomainClaimCommand::ProveDomain {
            tenant_id: tenant_id(),
            evidence: DomainEvidence::EntraToken {
                entra_tenant_id: entra_tenant(entra),
                email_domain: Some(domain(email_domain)),
                email_domain_verified: verified,
                is_guest: false,
            },
        }
    }

    fn state(events: Vec<DomainClaimEvent>) -> DomainClaim {
        let mut claim = DomainClaim::default();
        for event in events {
            claim.evolve(event);
        }
        claim
    }

    #[test]
    fn claims_a_free_domain_as_pending() {
        Given::with(())
            .given_no_previous_events()
            .when(claim(tenant_id(), 1, 0))
            .then_expect_events(vec![claimed()]);
        let pending = state(vec![claimed()]);
        assert_eq!(
            pending.proven_binding_for(tenant_id()),
            Err(DomainClaimError::NotProven)
        );
        assert_eq!(pending.binding_for(tenant_id()), None);
    }

    #[test]
    fn a_pending_claim_does_not_keep_another_tenant_out() {
        Given::with(())
            .given(vec![claimed()])
            .when(claim(other_tenant_id(), 2, 0))
            .then_expect_events(vec![claimed_by(other_tenant_id(), 2)]);
        Given::with(())
            .given(vec![claimed(), claimed_by(other_tenant_id(), 2)])
            .when(txt(other_tenant_id(), &[TOKEN]))
            .then_expect_events(vec![proven_by(other_tenant_id())]);
    }

    #[test]
    fn refuses_a_domain_proven_by_another_tenant() {
        Given::with(())
            .given(vec![claimed(), proven()])
            .when(claim(other_tenant_id(), 1, 0))
            .then_expect_error(DomainClaimError::ClaimedByAnotherTenant);
        Given::with(())
            .given(vec![claimed_by(other_tenant_id(), 2), claimed(), proven()])
            .when(txt(other_tenant_id(), &[TOKEN]))
            .then_expect_error(DomainClaimError::ClaimedByAnotherTenant);
    }

    #[test]
    fn proves_with_the_expected_txt_value_among_others() {
        Given::with(())
            .given(vec![claimed()])
            .when(txt(tenant_id(), &["v=spf1 -all", TOKEN]))
            .then_expect_events(vec![proven()]);
        let owned = state(vec![claimed(), proven()]);
        assert_eq!(
            owned.binding_for(tenant_id()).map(|b| b.entra_tenant_id),
            Some(entra_tenant(1))
        );
    }

    #[test]
    fn a_wrong_or_missing_txt_value_keeps_the_claim_pending() {
        for found in [&[][..], &["finteqx-domain-proof=other"][..], &[""][..]] {
            Given::with(())
                .given(vec![claimed()])
                .when(txt(tenant_id(), found))
                .then_expect_error(DomainClaimError::TxtRecordNotFound);
        }
    }

    #[test]
    fn proof_needs_a_claim_and_is_recorded_once() {
        Given::with(())
            .given_no_previous_events()
            .when(txt(tenant_id(), &[TOKEN]))
            .then_expect_error(DomainClaimError::NotClaimedByTenant);
        Given::with(())
            .given(vec![claimed(), proven()])
            .when(txt(tenant_id(), &[TOKEN]))
            .then_expect_events(vec![]);
    }

    #[test]
    fn microsofts_word_proves_only_for_the_bound_entra_tenant_and_a_verified_domain() {
        Given::with(())
            .given(vec![claimed()])
            .when(entra_token(1, "contoso.com", true))
            .then_expect_events(vec![DomainClaimEvent::DomainProven {
                tenant_id: tenant_id(),
                domain: domain("contoso.com"),
                method: DomainProofMethod::EntraVerifiedDomain {
                    entra_tenant_id: entra_tenant(1),
                },
            }]);
        for (description, command) in [
            ("another Entra tenant", entra_token(2, "contoso.com", true)),
            ("not verified", entra_token(1, "contoso.com", false)),
            ("another domain", entra_token(1, "fabrikam.com", true)),
            (
                "a guest",
                DomainClaimCommand::ProveDomain {
                    tenant_id: tenant_id(),
                    evidence: DomainEvidence::EntraToken {
                        entra_tenant_id: entra_tenant(1),
                        email_domain: Some(domain("contoso.com")),
                        email_domain_verified: true,
                        is_guest: true,
                    },
                },
            ),
        ] {
            assert_eq!(
                state(vec![claimed()]).decide(command),
                Err(DomainClaimError::EntraProofInsufficient),
                "{description}"
            );
        }
    }

    #[test]
    fn an_address_on_another_tenants_proven_domain_is_refused() {
        let owned = state(vec![
            claimed_by(other_tenant_id(), 2),
            proven_by(other_tenant_id()),
        ]);
        assert_eq!(
            owned.check_address_for(tenant_id()),
            Err(DomainClaimError::AddressOnAnotherTenantsDomain)
        );
        assert_eq!(owned.check_address_for(other_tenant_id()), Ok(()));
        let pending = state(vec![claimed_by(other_tenant_id(), 2)]);
        assert_eq!(pending.check_address_for(tenant_id()), Ok(()));
    }

    #[test]
    fn claiming_again_with_the_same_entra_tenant_changes_nothing() {
        Given::with(())
            .given(vec![claimed()])
            .when(claim(tenant_id(), 1, 3))
            .then_expect_events(vec![]);
    }

    #[test]
    fn rebinds_to_another_entra_tenant_only_without_linked_users_and_stays_proven() {
        Given::with(())
            .given(vec![claimed()])
            .when(claim(tenant_id(), 2, 3))
            .then_expect_error(DomainClaimError::HasLinkedUsers { linked_users: 3 });
        let rebound = DomainClaimEvent::DomainRebound {
            tenant_id: tenant_id(),
            domain: domain("contoso.com"),
            entra_tenant_id: entra_tenant(2),
            previous_entra_tenant_id: entra_tenant(1),
        };
        Given::with(())
            .given(vec![claimed(), proven()])
            .when(claim(tenant_id(), 2, 0))
            .then_expect_events(vec![rebound.clone()]);
        let after = state(vec![claimed(), proven(), rebound]);
        assert_eq!(
            after.binding_for(tenant_id()).map(|b| b.entra_tenant_id),
            Some(entra_tenant(2))
        );
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
    fn a_released_proven_domain_can_be_claimed_and_proven_by_another_tenant() {
        let released = DomainClaimEvent::DomainReleased {
            tenant_id: tenant_id(),
            domain: domain("contoso.com"),
        };
        Given::with(())
            .given(vec![claimed(), proven(), released.clone()])
            .when(claim(other_tenant_id(), 3, 0))
            .then_expect_events(vec![claimed_by(other_tenant_id(), 3)]);
        Given::with(())
            .given(vec![
                claimed(),
                proven(),
                released,
                claimed_by(other_tenant_id(), 3),
            ])
            .when(txt(other_tenant_id(), &[TOKEN]))
            .then_expect_events(vec![proven_by(other_tenant_id())]);
    }

    #[test]
    fn a_claim_recorded_before_proof_existed_loads_as_pending() {
        let legacy: DomainClaimEvent = serde_json::from_str(
            r#"{"DomainClaimed":{"tenant_id":"00000000-0000-0000-0000-000000001000","domain":"contoso.com","entra_tenant_id":"00000000-0000-0000-0000-000000006001"}}"#,
        )
        .unwrap();
        assert_eq!(
            state(vec![legacy]).proven_binding_for(tenant_id()),
            Err(DomainClaimError::NotProven)
        );
    }
}

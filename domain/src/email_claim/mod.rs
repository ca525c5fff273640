//! An e-mail address held by one account on the whole platform.
//!
//! One stream per keyed hash of the normalised address: the login page asks for an e-mail before
//! it knows the tenant, so two accounts can never share one. Racing claims append the same
//! sequence number and only one commits (ADR-0005). The address itself is not in the stream.

use serde::{Deserialize, Serialize};

use crate::aggregate::impl_aggregate;
use crate::ids::{TenantId, UserId};
use crate::values::EmailKey;

/// Who holds the address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailHolder {
    /// The keyed hash of the address.
    pub email_key: EmailKey,
    /// The holder's tenant.
    pub tenant_id: TenantId,
    /// The holding account.
    pub user_id: UserId,
}

/// The claim's state as its events left it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EmailClaim {
    holder: Option<EmailHolder>,
}

/// Commands to an e-mail claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailClaimCommand {
    /// Reserves the address for an account about to be created or to change its address.
    ClaimEmail {
        /// The keyed hash (also the stream id).
        email_key: EmailKey,
        /// The claimant's tenant.
        tenant_id: TenantId,
        /// The claimant.
        user_id: UserId,
        /// A holder the caller found abandoned (its account never came into existence, or no
        /// longer has this address, long after the claim): only that holder may be replaced.
        abandoned_holder: Option<UserId>,
    },
    /// Frees the address (e-mail changed, or the person was forgotten).
    ReleaseEmail {
        /// The account giving it up.
        user_id: UserId,
    },
}

/// Facts about an e-mail claim. A persisted contract: never rename a variant or a field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EmailClaimEvent {
    /// An account holds the address now.
    EmailClaimed {
        /// The keyed hash of the address.
        email_key: EmailKey,
        /// The holder's tenant.
        tenant_id: TenantId,
        /// The holder.
        user_id: UserId,
        /// An abandoned claim that this one replaced.
        replaced_user_id: Option<UserId>,
    },
    /// The address is free again.
    EmailReleased {
        /// The keyed hash of the address.
        email_key: EmailKey,
        /// The former holder's tenant.
        tenant_id: TenantId,
        /// The former holder.
        user_id: UserId,
    },
}

/// Why an e-mail claim refused a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailClaimError {
    /// Another account uses the address.
    #[error("the e-mail address is already in use")]
    EmailTaken,
    /// The account does not hold the address.
    #[error("the account does not hold this e-mail address")]
    NotHeldByUser,
}

impl_aggregate!(
    EmailClaim,
    "email_claim",
    EmailClaimCommand,
    EmailClaimEvent,
    EmailClaimError
);

impl EmailClaim {
    /// The current holder.
    pub const fn holder(&self) -> Option<&EmailHolder> {
        self.holder.as_ref()
    }

    /// Decides a command against the current state.
    ///
    /// # Errors
    /// See [`EmailClaimError`].
    pub fn decide(
        &self,
        command: EmailClaimCommand,
    ) -> Result<Vec<EmailClaimEvent>, EmailClaimError> {
        match command {
            EmailClaimCommand::ClaimEmail {
                email_key,
                tenant_id,
                user_id,
                abandoned_holder,
            } => {
                let replaced_user_id = match &self.holder {
                    None => None,
                    Some(holder) if holder.user_id == user_id => return Ok(vec![]),
                    Some(holder) if abandoned_holder == Some(holder.user_id) => {
                        Some(holder.user_id)
                    }
                    Some(_) => return Err(EmailClaimError::EmailTaken),
                };
                Ok(vec![EmailClaimEvent::EmailClaimed {
                    email_key,
                    tenant_id,
                    user_id,
                    replaced_user_id,
                }])
            }
            EmailClaimCommand::ReleaseEmail { user_id } => match &self.holder {
                Some(holder) if holder.user_id == user_id => {
                    Ok(vec![EmailClaimEvent::EmailReleased {
                        email_key: holder.email_key.clone(),
                        tenant_id: holder.tenant_id,
                        user_id,
                    }])
                }
                _ => Err(EmailClaimError::NotHeldByUser),
            },
        }
    }

    /// Applies an event; never fails and checks no rules.
    pub fn evolve(&mut self, event: EmailClaimEvent) {
        match event {
            EmailClaimEvent::EmailClaimed {
                email_key,
                tenant_id,
                user_id,
                ..
            } => {
                self.holder = Some(EmailHolder {
                    email_key,
                    tenant_id,
                    user_id,
                });
            }
            EmailClaimEvent::EmailReleased { .. } => self.holder = None,
        }
    }
}

impl cqrs_es::DomainEvent for EmailClaimEvent {
    fn event_type(&self) -> String {
        match self {
            Self::EmailClaimed { .. } => "EmailClaimed",
            Self::EmailReleased { .. } => "EmailReleased",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

impl crate::metadata::NamedCommand for EmailClaimCommand {
    fn command_name(&self) -> &'static str {
        match self {
            Self::ClaimEmail { .. } => "ClaimEmail",
            Self::ReleaseEmail { .. } => "ReleaseEmail",
        }
    }
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;
    use uuid::Uuid;

    use super::*;
    use crate::test_support::{email_key, other_tenant_id, tenant_id, user_id};

    type Given = TestFramework<EmailClaim>;

    fn other_user() -> UserId {
        UserId::from_uuid(Uuid::from_u128(0x3001))
    }

    fn claim(
        tenant: TenantId,
        user: UserId,
        abandoned_holder: Option<UserId>,
    ) -> EmailClaimCommand {
        EmailClaimCommand::ClaimEmail {
            email_key: email_key(1),
            tenant_id: tenant,
            user_id: user,
            abandoned_holder,
        }
    }

    fn claimed() -> EmailClaimEvent {
        EmailClaimEvent::EmailClaimed {
            email_key: email_key(1),
            tenant_id: tenant_id(),
            user_id: user_id(),
            replaced_user_id: None,
        }
    }

    #[test]
    fn claims_a_free_address() {
        Given::with(())
            .given_no_previous_events()
            .when(claim(tenant_id(), user_id(), None))
            .then_expect_events(vec![claimed()]);
    }

    #[test]
    fn refuses_an_address_held_by_another_account_in_any_tenant() {
        Given::with(())
            .given(vec![claimed()])
            .when(claim(other_tenant_id(), other_user(), None))
            .then_expect_error(EmailClaimError::EmailTaken);
    }

    #[test]
    fn claiming_own_address_again_changes_nothing() {
        Given::with(())
            .given(vec![claimed()])
            .when(claim(tenant_id(), user_id(), None))
            .then_expect_events(vec![]);
    }

    #[test]
    fn an_abandoned_claim_can_be_taken_over() {
        Given::with(())
            .given(vec![claimed()])
            .when(claim(other_tenant_id(), other_user(), Some(user_id())))
            .then_expect_events(vec![EmailClaimEvent::EmailClaimed {
                email_key: email_key(1),
                tenant_id: other_tenant_id(),
                user_id: other_user(),
                replaced_user_id: Some(user_id()),
            }]);
    }

    #[test]
    fn only_the_holder_found_abandoned_is_replaced() {
        let third = UserId::from_uuid(Uuid::from_u128(0x3002));
        Given::with(())
            .given(vec![claimed()])
            .when(claim(other_tenant_id(), other_user(), Some(third)))
            .then_expect_error(EmailClaimError::EmailTaken);
    }

    #[test]
    fn a_released_address_is_free_again() {
        let released = EmailClaimEvent::EmailReleased {
            email_key: email_key(1),
            tenant_id: tenant_id(),
            user_id: user_id(),
        };
        Given::with(())
            .given(vec![claimed()])
            .when(EmailClaimCommand::ReleaseEmail { user_id: user_id() })
            .then_expect_events(vec![released.clone()]);
        Given::with(())
            .given(vec![claimed(), released])
            .when(claim(other_tenant_id(), other_user(), None))
            .then_expect_events(vec![EmailClaimEvent::EmailClaimed {
                email_key: email_key(1),
                tenant_id: other_tenant_id(),
                user_id: other_user(),
                replaced_user_id: None,
            }]);
    }

    #[test]
    fn only_the_holder_releases() {
        Given::with(())
            .given(vec![claimed()])
            .when(EmailClaimCommand::ReleaseEmail {
                user_id: other_user(),
            })
            .then_expect_error(EmailClaimError::NotHeldByUser);
    }
}

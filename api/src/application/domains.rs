//! Domain use cases: claiming a domain and binding it to an Entra tenant, proving that the
//! tenant owns it (a DNS TXT record, or Microsoft's word: ADR-0025), and `LinkDomainUsers` /
//! `UnlinkDomainUsers` as a process over the selected users' streams, with a dry run.

use futures::{StreamExt, stream};

use domain::TenantScoped;
use domain::domain_claim::{DomainClaim, DomainClaimCommand, DomainClaimError, DomainEvidence};
use domain::entra::DomainBinding;
use domain::ids::{EntraTenantId, TenantId, UserId};
use domain::user::{UserCommand, UserError, UserEvent};
use domain::values::DomainName;

use super::{CommandError, Commands, MAX_USERS_PER_REQUEST, credentials};
use crate::dns::{self, TxtResolver};
use crate::executor::{CommandContext, Committed};

/// Users processed at once within one request.
const PARALLEL_USERS: usize = 8;

/// What happened to one selected user.
#[derive(Debug)]
pub struct DomainUserOutcome {
    /// The selected user.
    pub user_id: UserId,
    /// The result.
    pub result: DomainUserResult,
}

/// The result for one selected user.
#[derive(Debug)]
pub enum DomainUserResult {
    /// Dry run: the user would be (un)linked.
    Qualifies,
    /// The user was (un)linked; the position of the last event, for read-your-writes.
    Changed {
        /// The global position.
        position: i64,
    },
    /// The user does not qualify, and why.
    Refused(UserError),
    /// The user was not processed because a dependency failed or kept conflicting; retry.
    Failed(CommandError),
}

/// The DNS TXT record that proves a tenant owns a domain: what the settings screen tells the
/// administrator to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainChallenge {
    /// Where: `_finteqx-challenge.<domain>`.
    pub record_name: String,
    /// What: the tenant's value for this domain.
    pub value: String,
}

/// How a proof check ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyOutcome {
    /// The domain is proven; the position of the proof for read-your-writes, absent when it was
    /// proven before.
    Proven {
        /// The global position of the proof event.
        position: Option<i64>,
    },
    /// The record was not found (or holds another value): the domain stays pending.
    Pending,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Link,
    Unlink,
}

impl Commands {
    /// Claims `domain` for the tenant and binds it to `entra_tenant_id` (or rebinds it). A new
    /// claim is pending until the tenant proves that it owns the domain.
    ///
    /// # Errors
    /// [`CommandError::DomainClaim`] when another tenant has proven it or users are still linked
    /// through it to another Entra tenant, or an infrastructure error.
    pub async fn bind_domain(
        &self,
        context: &CommandContext,
        tenant_id: TenantId,
        domain: DomainName,
        entra_tenant_id: EntraTenantId,
    ) -> Result<Committed<DomainClaim>, CommandError> {
        let linked_users =
            projections::settings_screen::linked_user_count(&self.pool, tenant_id, &domain).await?;
        let command = DomainClaimCommand::ClaimDomain {
            tenant_id,
            domain: domain.clone(),
            entra_tenant_id,
            linked_users,
        };
        Ok(self
            .domains
            .execute(domain.as_str(), command, context)
            .await?)
    }

    /// The TXT record `tenant_id` publishes to prove that it owns `domain`.
    pub fn domain_challenge(&self, tenant_id: TenantId, domain: &DomainName) -> DomainChallenge {
        DomainChallenge {
            record_name: dns::challenge_name(domain),
            value: self.keys.domain_challenges.value_for(tenant_id, domain),
        }
    }

    /// Checks the tenant's TXT record for `domain` now, with a real DNS resolver, and records
    /// the proof when the tenant's value is there.
    ///
    /// # Errors
    /// [`CommandError::DomainClaim`] when the tenant has not claimed the domain or another tenant
    /// has proven it, [`CommandError::Unavailable`] when DNS gave no answer.
    #[tracing::instrument(skip_all, fields(tenant.id = %tenant_id, domain = %domain))]
    pub async fn verify_domain(
        &self,
        context: &CommandContext,
        resolver: &TxtResolver,
        tenant_id: TenantId,
        domain: DomainName,
    ) -> Result<VerifyOutcome, CommandError> {
        // Refuse what no record can fix before asking DNS.
        let claim = self.domains.load(domain.as_str()).await?;
        if claim
            .proven()
            .is_some_and(|owner| owner.binding.tenant_id != tenant_id)
        {
            return Err(DomainClaimError::ClaimedByAnotherTenant.into());
        }
        match claim.claim_of(tenant_id) {
            None => return Err(DomainClaimError::NotClaimedByTenant.into()),
            Some(own) if own.is_proven() => return Ok(VerifyOutcome::Proven { position: None }),
            Some(_) => {}
        }
        let challenge = self.domain_challenge(tenant_id, &domain);
        let found = resolver
            .txt_values(&challenge.record_name)
            .await
            .map_err(|e| CommandError::Unavailable(e.into()))?;
        let evidence = DomainEvidence::DnsTxt {
            record_name: challenge.record_name,
            expected: challenge.value,
            found,
        };
        match self
            .prove_domain(context, tenant_id, domain, evidence)
            .await
        {
            Ok(committed) => Ok(VerifyOutcome::Proven {
                position: committed.last_position(),
            }),
            Err(CommandError::DomainClaim(DomainClaimError::TxtRecordNotFound)) => {
                tracing::info!("domain proof record not found");
                Ok(VerifyOutcome::Pending)
            }
            Err(error) => Err(error),
        }
    }

    /// `ProveDomain` with evidence the caller gathered (a DNS answer, an Entra token's claims).
    ///
    /// # Errors
    /// [`CommandError::DomainClaim`] when the evidence does not prove ownership, the tenant has
    /// not claimed the domain or another tenant has proven it; or an infrastructure error.
    pub async fn prove_domain(
        &self,
        context: &CommandContext,
        tenant_id: TenantId,
        domain: DomainName,
        evidence: DomainEvidence,
    ) -> Result<Committed<DomainClaim>, CommandError> {
        let command = DomainClaimCommand::ProveDomain {
            tenant_id,
            evidence,
        };
        let committed = self
            .domains
            .execute(domain.as_str(), command, context)
            .await?;
        if !committed.events.is_empty() {
            tracing::info!(tenant.id = %tenant_id, domain = %domain, "domain proven");
        }
        Ok(committed)
    }

    /// Releases `domain`.
    ///
    /// # Errors
    /// [`CommandError::DomainClaim`] when the tenant does not hold it or users are still linked.
    pub async fn release_domain(
        &self,
        context: &CommandContext,
        tenant_id: TenantId,
        domain: DomainName,
    ) -> Result<Committed<DomainClaim>, CommandError> {
        let linked_users =
            projections::settings_screen::linked_user_count(&self.pool, tenant_id, &domain).await?;
        let command = DomainClaimCommand::ReleaseDomain {
            tenant_id,
            linked_users,
        };
        Ok(self
            .domains
            .execute(domain.as_str(), command, context)
            .await?)
    }

    /// `LinkDomainUsers`: links each selected user of the domain to the domain's Entra tenant,
    /// reporting per user. With `dry_run`, decides without writing.
    ///
    /// # Errors
    /// [`CommandError::TooManyUsers`], or [`CommandError::DomainClaim`] when the tenant has not
    /// claimed the domain or not proven that it owns it (`NotProven`): then nobody is linked.
    /// Per-user refusals are in the outcomes, not errors.
    pub async fn link_domain_users(
        &self,
        context: &CommandContext,
        tenant_id: TenantId,
        domain: DomainName,
        user_ids: &[UserId],
        dry_run: bool,
    ) -> Result<Vec<DomainUserOutcome>, CommandError> {
        let binding = self.binding_of(tenant_id, &domain).await?;
        self.for_each_user(
            context,
            tenant_id,
            user_ids,
            dry_run,
            Direction::Link,
            |_| UserCommand::LinkUserToEntra {
                binding: binding.clone(),
            },
        )
        .await
    }

    /// `UnlinkDomainUsers`: returns each selected user of the domain to password (+ SMS) sign-in
    /// with a set-password link, reporting per user. With `dry_run`, decides without writing.
    ///
    /// # Errors
    /// [`CommandError::TooManyUsers`]. Per-user refusals are in the outcomes, not errors.
    pub async fn unlink_domain_users(
        &self,
        context: &CommandContext,
        tenant_id: TenantId,
        domain: DomainName,
        user_ids: &[UserId],
        dry_run: bool,
    ) -> Result<Vec<DomainUserOutcome>, CommandError> {
        self.for_each_user(
            context,
            tenant_id,
            user_ids,
            dry_run,
            Direction::Unlink,
            |_| UserCommand::UnlinkUserFromEntra {
                domain: domain.clone(),
                password_token: self.new_password_token(),
            },
        )
        .await
    }

    pub(super) async fn binding_of(
        &self,
        tenant_id: TenantId,
        domain: &DomainName,
    ) -> Result<DomainBinding, CommandError> {
        // Only a proven claim binds: a pending domain signs no one in and links no one.
        let claim = self.domains.load(domain.as_str()).await?;
        Ok(claim.proven_binding_for(tenant_id)?.clone())
    }

    async fn for_each_user(
        &self,
        context: &CommandContext,
        tenant_id: TenantId,
        user_ids: &[UserId],
        dry_run: bool,
        direction: Direction,
        command_for: impl Fn(UserId) -> UserCommand,
    ) -> Result<Vec<DomainUserOutcome>, CommandError> {
        let mut selected: Vec<UserId> = Vec::with_capacity(user_ids.len());
        for user_id in user_ids {
            if !selected.contains(user_id) {
                selected.push(*user_id);
            }
        }
        if selected.len() > MAX_USERS_PER_REQUEST {
            return Err(CommandError::TooManyUsers {
                max: MAX_USERS_PER_REQUEST,
            });
        }
        let outcomes = stream::iter(selected.into_iter().map(|user_id| {
            let command = TenantScoped::new(tenant_id, command_for(user_id));
            async move {
                let result = if dry_run {
                    self.dry_run(user_id, command).await
                } else {
                    self.apply_to_user(context, tenant_id, user_id, command, direction)
                        .await
                };
                DomainUserOutcome { user_id, result }
            }
        }))
        .buffered(PARALLEL_USERS)
        .collect()
        .await;
        Ok(outcomes)
    }

    async fn dry_run(
        &self,
        user_id: UserId,
        command: TenantScoped<UserCommand>,
    ) -> DomainUserResult {
        match self.users.load(&user_id.to_string()).await {
            Ok(user) => match user.decide(command) {
                Ok(_) => DomainUserResult::Qualifies,
                Err(refusal) => DomainUserResult::Refused(refusal),
            },
            Err(error) => DomainUserResult::Failed(error.into()),
        }
    }

    async fn apply_to_user(
        &self,
        context: &CommandContext,
        tenant_id: TenantId,
        user_id: UserId,
        command: TenantScoped<UserCommand>,
        direction: Direction,
    ) -> DomainUserResult {
        match self
            .users
            .execute(&user_id.to_string(), command, context)
            .await
        {
            Ok(committed) => {
                let removed_password = committed.events.iter().any(|e| {
                    matches!(
                        e.event,
                        UserEvent::UserLinkedToEntra {
                            password_removed: true,
                            ..
                        }
                    )
                });
                if direction == Direction::Link && removed_password {
                    // The event made the password unusable; this removes the verifier itself.
                    if let Err(error) =
                        credentials::delete_all_but(&self.pool, tenant_id, user_id, None).await
                    {
                        tracing::warn!(user.id = %user_id, error = %error, "password verifier not deleted yet");
                    }
                }
                committed
                    .last_position()
                    .map_or(DomainUserResult::Qualifies, |position| {
                        DomainUserResult::Changed { position }
                    })
            }
            Err(crate::executor::ExecuteError::Rejected(refusal)) => {
                DomainUserResult::Refused(refusal)
            }
            Err(error) => DomainUserResult::Failed(error.into()),
        }
    }
}

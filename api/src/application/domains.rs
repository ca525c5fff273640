//! Domain use cases: binding a domain to an Entra tenant, and `LinkDomainUsers` /
//! `UnlinkDomainUsers` as a process over the selected users' streams, with a dry run.

use futures::{StreamExt, stream};

use domain::TenantScoped;
use domain::domain_claim::{DomainClaim, DomainClaimCommand, DomainClaimError};
use domain::entra::DomainBinding;
use domain::ids::{EntraTenantId, TenantId, UserId};
use domain::user::{UserCommand, UserError, UserEvent};
use domain::values::DomainName;

use super::{CommandError, Commands, MAX_USERS_PER_REQUEST, credentials};
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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Link,
    Unlink,
}

impl Commands {
    /// Claims `domain` for the tenant and binds it to `entra_tenant_id` (or rebinds it).
    ///
    /// # Errors
    /// [`CommandError::DomainClaim`] when another tenant holds it or users are still linked
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
    /// claimed the domain. Per-user refusals are in the outcomes, not errors.
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
        let claim = self.domains.load(domain.as_str()).await?;
        claim
            .binding_for(tenant_id)
            .cloned()
            .ok_or_else(|| DomainClaimError::NotClaimedByTenant.into())
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

//! User use cases: creation with its platform-wide e-mail claim, e-mail changes, lifecycle,
//! set-password links and passwords.

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use domain::TenantScoped;
use domain::domain_claim::DomainClaimError;
use domain::email_claim::{EmailClaimCommand, EmailClaimError};
use domain::ids::{CredentialId, PasswordTokenId, TenantId, UserId};
use domain::metadata::NamedCommand;
use domain::user::{
    ErasureReason, NewUserMethod, PasswordTokenGrant, User, UserCommand, UserError,
};
use domain::values::{
    DisplayName, DomainName, EmailAddress, EmailKey, Locale, Role, check_password_length,
};

use super::{CommandError, Commands, PASSWORD_TOKEN_LIFETIME, credentials, sessions};
use crate::executor::{CommandContext, Committed, ExecuteError};
use crate::keys::PasswordHashing;

/// An argon2id verifier, made once, to spend the same time on accounts that
/// have no verifier.
fn throwaway_verifier(hashing: &PasswordHashing) -> String {
    static VERIFIER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERIFIER
        .get_or_init(|| {
            // Its password is irrelevant: a missing verifier never matches.
            hashing
                .hash(&SecretString::from("throwaway".to_owned()))
                .unwrap_or_default()
        })
        .clone()
}

/// A claim whose holder has not come into existence (or moved to another address) this long
/// after claiming counts as abandoned: its creation failed between claim and account.
const CLAIM_ABANDONED_AFTER: chrono::Duration = chrono::Duration::minutes(2);

/// What an administrator fills in to create a user.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// E-mail address.
    pub email: EmailAddress,
    /// Display name.
    pub display_name: DisplayName,
    /// Role.
    pub role: Role,
    /// Language of the user's e-mails.
    pub locale: Locale,
    /// SMS (password + SMS) or Entra ID.
    pub sign_in: NewUserSignIn,
}

/// The method the administrator chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewUserSignIn {
    /// Password, plus SMS by policy.
    Sms,
    /// Microsoft Entra ID through the e-mail's domain.
    EntraId,
}

/// A created user.
#[derive(Debug, Clone)]
pub struct CreatedUser {
    /// The new id.
    pub user_id: UserId,
    /// What was committed on the user's stream.
    pub committed: Committed<User>,
}

impl Commands {
    /// `CreateUser`: claims the e-mail address on the whole platform, then creates the account;
    /// with Entra ID the e-mail's domain must be claimed and proven by the tenant and is linked
    /// at once.
    ///
    /// # Errors
    /// [`CommandError::EmailClaim`] when the address is taken, [`CommandError::DomainClaim`] when
    /// the address is on a domain another tenant has proven (`AddressOnAnotherTenantsDomain`) or,
    /// for Entra ID, the tenant's own claim is still pending (`NotProven`),
    /// [`CommandError::User`] or [`CommandError::Tenant`] for broken rules, or an
    /// infrastructure error.
    pub async fn create_user(
        &self,
        context: &CommandContext,
        tenant_id: TenantId,
        new_user: NewUser,
    ) -> Result<CreatedUser, CommandError> {
        self.ensure_tenant(tenant_id).await?;
        let user_id = UserId::from_uuid(Uuid::now_v7());
        let email_key = self.keys.email_lookup.key_for(&new_user.email);
        self.check_address_domain(tenant_id, &new_user.email)
            .await?;
        let method = match new_user.sign_in {
            NewUserSignIn::Sms => NewUserMethod::Sms {
                password_token: self.new_password_token(),
            },
            NewUserSignIn::EntraId => {
                let claim = self.domains.load(new_user.email.domain().as_str()).await?;
                let binding = match claim.proven_binding_for(tenant_id) {
                    Ok(binding) => binding.clone(),
                    Err(DomainClaimError::NotProven) => {
                        return Err(DomainClaimError::NotProven.into());
                    }
                    Err(_) => return Err(UserError::DomainNotClaimedByTenant.into()),
                };
                NewUserMethod::EntraId { binding }
            }
        };
        let command = TenantScoped::new(
            tenant_id,
            UserCommand::CreateUser {
                user_id,
                email: new_user.email,
                email_key: email_key.clone(),
                display_name: new_user.display_name,
                role: new_user.role,
                locale: new_user.locale,
                method,
            },
        );
        // Refuse bad input before reserving the address.
        User::default().decide(command.clone())?;
        self.claim_email(context, &email_key, tenant_id, user_id)
            .await?;
        match self
            .users
            .execute(&user_id.to_string(), command, context)
            .await
        {
            Ok(committed) => Ok(CreatedUser { user_id, committed }),
            Err(error) => {
                self.release_email_after_failure(context, &email_key, user_id)
                    .await;
                Err(error.into())
            }
        }
    }

    /// `ChangeUserEmail`: claims the new address, changes it, then frees the old one.
    ///
    /// # Errors
    /// As [`Commands::create_user`].
    pub async fn change_user_email(
        &self,
        context: &CommandContext,
        tenant_id: TenantId,
        user_id: UserId,
        email: EmailAddress,
    ) -> Result<Committed<User>, CommandError> {
        let user = self.users.load(&user_id.to_string()).await?;
        let account = user.account_in(tenant_id).ok_or(UserError::UserNotFound)?;
        self.check_address_domain(tenant_id, &email).await?;
        let old_key = account.email_key.clone();
        let new_key = self.keys.email_lookup.key_for(&email);
        let command = TenantScoped::new(
            tenant_id,
            UserCommand::ChangeUserEmail {
                email,
                email_key: new_key.clone(),
            },
        );
        user.decide(command.clone())?;
        self.claim_email(context, &new_key, tenant_id, user_id)
            .await?;
        let committed = match self
            .users
            .execute(&user_id.to_string(), command, context)
            .await
        {
            Ok(committed) => committed,
            Err(error) => {
                self.release_email_after_failure(context, &new_key, user_id)
                    .await;
                return Err(error.into());
            }
        };
        self.end_sessions_after(tenant_id, user_id, &committed)
            .await?;
        if let Err(error) = self
            .emails
            .execute(
                old_key.as_str(),
                EmailClaimCommand::ReleaseEmail { user_id },
                context,
            )
            .await
        {
            // The old claim then counts as abandoned after CLAIM_ABANDONED_AFTER.
            tracing::warn!(user.id = %user_id, error = %error, "the old e-mail claim was not released");
        }
        Ok(committed)
    }

    /// `DeactivateUser`, `ReactivateUser`, `RemovePhone` and other commands that need no facts.
    ///
    /// # Errors
    /// [`CommandError::User`] for broken rules, or an infrastructure error.
    pub async fn execute_user_command(
        &self,
        context: &CommandContext,
        tenant_id: TenantId,
        user_id: UserId,
        command: UserCommand,
    ) -> Result<Committed<User>, CommandError> {
        let committed = self
            .users
            .execute(
                &user_id.to_string(),
                TenantScoped::new(tenant_id, command),
                context,
            )
            .await?;
        self.end_sessions_after(tenant_id, user_id, &committed)
            .await?;
        Ok(committed)
    }

    /// Ends every session of the user when a committed change calls for it
    /// ([`domain::user::UserEvent::ends_sessions`]): deactivation, erasure, a password set, a new address.
    async fn end_sessions_after(
        &self,
        tenant_id: TenantId,
        user_id: UserId,
        committed: &Committed<User>,
    ) -> Result<(), CommandError> {
        if committed.events.iter().any(|e| e.event.ends_sessions()) {
            sessions::end_all(&self.pool, tenant_id, user_id, self.clock.now()).await?;
        }
        Ok(())
    }

    /// Issues a new set-password link (the e-mail derives its secret from the token id).
    ///
    /// # Errors
    /// [`CommandError::User`] for Entra or deactivated users, or an infrastructure error.
    pub async fn issue_password_token(
        &self,
        context: &CommandContext,
        tenant_id: TenantId,
        user_id: UserId,
    ) -> Result<Committed<User>, CommandError> {
        let command = UserCommand::IssuePasswordToken {
            password_token: self.new_password_token(),
        };
        self.execute_user_command(context, tenant_id, user_id, command)
            .await
    }

    /// `SetPassword` with the secret from a set-password link.
    ///
    /// # Errors
    /// [`CommandError::InvalidInput`] for a password outside the length rule,
    /// [`CommandError::User`] for an invalid, used or expired link, or an infrastructure error.
    pub async fn set_password(
        &self,
        context: &CommandContext,
        token_secret: &str,
        password: SecretString,
    ) -> Result<Committed<User>, CommandError> {
        check_password_length(password.expose_secret().chars().count())
            .map_err(|error| CommandError::invalid("password", error))?;
        let (user_id, token_id) = self
            .keys
            .password_tokens
            .verify(token_secret)
            .ok_or(UserError::PasswordTokenUnknown)?;
        let user = self.users.load(&user_id.to_string()).await?;
        let tenant_id = user
            .account()
            .map(|account| account.tenant_id)
            .ok_or(UserError::PasswordTokenUnknown)?;
        let now = self.clock.now();
        let check = |credential_id| {
            TenantScoped::new(
                tenant_id,
                UserCommand::SetPassword {
                    token_id,
                    credential_id,
                    now,
                },
            )
        };
        // Refuse a used or expired link before spending argon2 time on it.
        user.decide(check(CredentialId::from_uuid(Uuid::nil())))?;
        let credential_id = CredentialId::from_uuid(Uuid::now_v7());
        let hashing = self.passwords.clone();
        let phc = tokio::task::spawn_blocking(move || hashing.hash(&password))
            .await
            .map_err(|e| CommandError::Unavailable(e.into()))?
            .map_err(|e| CommandError::Unavailable(e.into()))?;
        credentials::insert(&self.pool, credential_id, tenant_id, user_id, &phc).await?;
        let context = CommandContext {
            tenant_id: Some(tenant_id),
            ..context.clone()
        };
        match self
            .users
            .execute(&user_id.to_string(), check(credential_id), &context)
            .await
        {
            Ok(committed) => {
                credentials::delete_all_but(&self.pool, tenant_id, user_id, Some(credential_id))
                    .await?;
                self.end_sessions_after(tenant_id, user_id, &committed)
                    .await?;
                Ok(committed)
            }
            Err(error) => {
                credentials::delete_all_but(
                    &self.pool,
                    tenant_id,
                    user_id,
                    user.account().and_then(|a| a.credential),
                )
                .await?;
                Err(error.into())
            }
        }
    }

    /// `ForgetUser` (AVG/GDPR erasure): records who erased the person and why, destroys their
    /// data key (every personal field of every event then loads as erased), frees their e-mail
    /// address and deletes their password verifiers. The read models drop their rows when they
    /// apply the event. Safe to repeat: a second call finishes an interrupted erasure.
    ///
    /// # Errors
    /// [`CommandError::User`] with `UserNotFound` for an unknown account, or an infrastructure
    /// error (the erasure can then be repeated).
    pub async fn forget_user(
        &self,
        context: &CommandContext,
        tenant_id: TenantId,
        user_id: UserId,
        reason: ErasureReason,
    ) -> Result<Committed<User>, CommandError> {
        let committed = match self
            .users
            .execute(
                &user_id.to_string(),
                TenantScoped::new(tenant_id, UserCommand::ForgetUser { reason }),
                context,
            )
            .await
        {
            Ok(committed) => committed,
            Err(ExecuteError::Rejected(UserError::UserNotFound)) => {
                // Already forgotten? Then finish what an interrupted erasure left.
                let user = self.users.load(&user_id.to_string()).await?;
                if user.forgotten_in(tenant_id).is_none() {
                    return Err(UserError::UserNotFound.into());
                }
                Committed {
                    events: Vec::new(),
                    aggregate: user,
                }
            }
            Err(error) => return Err(error.into()),
        };
        self.personal_data.destroy(user_id).await?;
        if let Some(forgotten) = committed.aggregate.forgotten_in(tenant_id) {
            let release = EmailClaimCommand::ReleaseEmail { user_id };
            match self
                .emails
                .execute(forgotten.email_key.as_str(), release, context)
                .await
            {
                Ok(_) | Err(ExecuteError::Rejected(EmailClaimError::NotHeldByUser)) => {}
                Err(error) => return Err(error.into()),
            }
        }
        credentials::delete_all_but(&self.pool, tenant_id, user_id, None).await?;
        // Also when repeating an interrupted erasure, whose events are already committed.
        sessions::end_all(&self.pool, tenant_id, user_id, self.clock.now()).await?;
        tracing::info!(user.id = %user_id, "person erased");
        Ok(committed)
    }

    /// Whether `password` is the user's current password (argon2id, off the async threads).
    /// Linked users and users without a password never match.
    ///
    /// # Errors
    /// An infrastructure error.
    pub async fn password_matches(
        &self,
        user: &User,
        password: SecretString,
    ) -> Result<bool, CommandError> {
        let phc = match user.account().and_then(|account| account.credential) {
            Some(credential_id) => credentials::phc(&self.pool, credential_id).await?,
            None => None,
        };
        // Without a verifier, check against a throwaway one: the answer takes as long either
        // way, so timing tells no one which accounts exist or have a password.
        let hashing = self.passwords.clone();
        tokio::task::spawn_blocking(move || match phc {
            Some(phc) => hashing.verify(&password, &phc),
            None => {
                let _ = hashing.verify(&password, &throwaway_verifier(&hashing));
                false
            }
        })
        .await
        .map_err(|e| CommandError::Unavailable(e.into()))
    }

    pub(super) fn new_password_token(&self) -> PasswordTokenGrant {
        PasswordTokenGrant {
            token_id: PasswordTokenId::from_uuid(Uuid::now_v7()),
            expires_at: self.clock.now() + PASSWORD_TOKEN_LIFETIME,
        }
    }

    /// An address on a domain another tenant has proven, or on a subdomain of one, is that
    /// organisation's to give (ADR-0025): refused without saying whose.
    async fn check_address_domain(
        &self,
        tenant_id: TenantId,
        email: &EmailAddress,
    ) -> Result<(), CommandError> {
        let mut domain = Some(email.domain().clone());
        while let Some(current) = domain {
            self.domains
                .load(current.as_str())
                .await?
                .check_address_for(tenant_id)?;
            // Up to the registrable domain: a public suffix such as `co.uk` does not parse.
            domain = current
                .as_str()
                .split_once('.')
                .and_then(|(_, parent)| DomainName::parse(parent).ok());
        }
        Ok(())
    }

    async fn ensure_tenant(&self, tenant_id: TenantId) -> Result<(), CommandError> {
        let tenant = self.tenants.load(&tenant_id.to_string()).await?;
        match tenant.profile() {
            Some(_) => Ok(()),
            None => Err(domain::tenant::TenantError::NotRegistered.into()),
        }
    }

    async fn claim_email(
        &self,
        context: &CommandContext,
        email_key: &EmailKey,
        tenant_id: TenantId,
        user_id: UserId,
    ) -> Result<(), CommandError> {
        let claim = |abandoned_holder| EmailClaimCommand::ClaimEmail {
            email_key: email_key.clone(),
            tenant_id,
            user_id,
            abandoned_holder,
        };
        match self
            .emails
            .execute(email_key.as_str(), claim(None), context)
            .await
        {
            Ok(_) => Ok(()),
            Err(ExecuteError::Rejected(EmailClaimError::EmailTaken)) => {
                let Some(abandoned) = self.abandoned_holder(email_key).await? else {
                    return Err(EmailClaimError::EmailTaken.into());
                };
                tracing::warn!(user.id = %abandoned, "taking over an abandoned e-mail claim");
                self.emails
                    .execute(email_key.as_str(), claim(Some(abandoned)), context)
                    .await?;
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }

    /// The current holder of the claim if it has been abandoned: its account does not hold the
    /// address, well after it was claimed.
    async fn abandoned_holder(&self, email_key: &EmailKey) -> Result<Option<UserId>, CommandError> {
        let events = self.emails.load_events(email_key.as_str()).await?;
        let Some(last) = events.last() else {
            return Ok(None);
        };
        let Some(holder) = self
            .emails
            .load(email_key.as_str())
            .await?
            .holder()
            .map(|holder| holder.user_id)
        else {
            return Ok(None);
        };
        let claimed_at = last
            .metadata
            .get(domain::metadata::OCCURRED_AT)
            .and_then(|at| DateTime::parse_from_rfc3339(at).ok())
            .map(|at| at.with_timezone(&Utc));
        let old_enough = claimed_at.is_some_and(|at| self.clock.now() - at > CLAIM_ABANDONED_AFTER);
        if !old_enough {
            return Ok(None);
        }
        let user = self.users.load(&holder.to_string()).await?;
        let holds_it = user
            .account()
            .is_some_and(|account| &account.email_key == email_key);
        Ok((!holds_it).then_some(holder))
    }

    async fn release_email_after_failure(
        &self,
        context: &CommandContext,
        email_key: &EmailKey,
        user_id: UserId,
    ) {
        let release = EmailClaimCommand::ReleaseEmail { user_id };
        let name = release.command_name();
        if let Err(error) = self
            .emails
            .execute(email_key.as_str(), release, context)
            .await
        {
            tracing::warn!(user.id = %user_id, command = name, error = %error, "the e-mail claim stays until it counts as abandoned");
        }
    }
}

//! A user account: identity, role, credentials, Entra link and enrolled phone.
//!
//! Its stream grows with administrator edits and credential changes, never with sign-ins: those
//! are recorded on per-attempt [`crate::sign_in`] streams (ADR-0004).

mod command;
mod error;
mod event;

use serde::{Deserialize, Serialize};

pub use command::{NewUserMethod, PasswordTokenGrant, UserCommand};
pub use error::UserError;
pub use event::{ErasureReason, LinkOrigin, PasswordTokenPurpose, UserEvent, UserMethod};

use crate::TenantScoped;
use crate::aggregate::impl_aggregate;
use crate::entra::{
    DomainBinding, EntraAccount, EntraIdentity, EntraSignInAccepted, EntraSignInRefusal,
    decide_entra_sign_in,
};
use crate::ids::{CredentialId, EntraObjectId, EntraTenantId, PasswordTokenId, TenantId, UserId};
use crate::sign_in_rule::SignInFacts;
use crate::values::{
    DisplayName, DomainName, EmailAddress, EmailKey, Locale, MobileNumber, Personal, Role,
};

/// The account's state as its events left it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct User {
    account: Option<Account>,
    /// The person was erased: the id stays taken, the account is gone.
    forgotten: Option<Forgotten>,
}

/// What remains of an erased account: enough to finish its erasure (free the address claim).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forgotten {
    /// The tenant it belonged to.
    pub tenant_id: TenantId,
    /// The lookup key of the address it held.
    pub email_key: EmailKey,
}

/// A created account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    /// The tenant the account belongs to.
    pub tenant_id: TenantId,
    /// The account id.
    pub user_id: UserId,
    /// The e-mail address (canonical).
    pub email: Personal<EmailAddress>,
    /// The keyed hash of the address: the e-mail claim it holds.
    pub email_key: EmailKey,
    /// Display name.
    pub display_name: Personal<DisplayName>,
    /// Role within the tenant.
    pub role: Role,
    /// Language of its e-mails.
    pub locale: Locale,
    /// Not deactivated.
    pub active: bool,
    /// The Entra link, if linked.
    pub entra: Option<EntraLink>,
    /// The active password verifier, if a password is set.
    pub credential: Option<CredentialId>,
    /// The set-password token that may be used now.
    pub password_token: Option<OutstandingToken>,
    /// The last token that was used, to tell "used" from "unknown".
    pub used_token: Option<PasswordTokenId>,
    /// The enrolled mobile number.
    pub phone: Option<Personal<MobileNumber>>,
}

/// How an account is linked to Entra ID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntraLink {
    /// The domain the account was linked through.
    pub domain: DomainName,
    /// The Entra tenant of that domain at link time.
    pub entra_tenant_id: EntraTenantId,
    /// The identity bound at the first Entra sign-in.
    pub identity: Option<BoundIdentity>,
}

/// The Entra identity an account is bound to; the object id is personal data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoundIdentity {
    /// The `tid`.
    pub entra_tenant_id: EntraTenantId,
    /// The `oid`.
    pub object_id: Personal<EntraObjectId>,
}

/// A set-password token that can be used until it expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutstandingToken {
    /// The token id.
    pub token_id: PasswordTokenId,
    /// When it stops working.
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

impl_aggregate!(
    User,
    "user",
    TenantScoped<UserCommand>,
    UserEvent,
    UserError
);

impl Account {
    /// The facts the sign-in rule needs, given the tenant's policy.
    pub fn sign_in_facts(&self, tenant_requires_sms: bool) -> SignInFacts {
        SignInFacts {
            active: self.active,
            tenant_requires_sms,
            entra_link: self.entra.as_ref().map(|link| link.entra_tenant_id),
            phone_enrolled: self.phone.is_some(),
            has_password: self.credential.is_some(),
        }
    }
}

#[derive(Clone, Copy)]
struct UserScope {
    tenant_id: TenantId,
    user_id: UserId,
}

impl User {
    /// The account, if created.
    pub const fn account(&self) -> Option<&Account> {
        self.account.as_ref()
    }

    /// What remains of an erased account seen by a principal of `tenant_id`.
    pub fn forgotten_in(&self, tenant_id: TenantId) -> Option<&Forgotten> {
        self.forgotten
            .as_ref()
            .filter(|forgotten| forgotten.tenant_id == tenant_id)
    }

    /// The account as seen by a principal of `tenant_id`: another tenant's account is missing.
    pub fn account_in(&self, tenant_id: TenantId) -> Option<&Account> {
        self.account
            .as_ref()
            .filter(|account| account.tenant_id == tenant_id)
    }

    /// Decides a command against the current state.
    ///
    /// # Errors
    /// The broken rule as a [`UserError`]; an account of another tenant is
    /// [`UserError::UserNotFound`], exactly like a missing one.
    pub fn decide(&self, scoped: TenantScoped<UserCommand>) -> Result<Vec<UserEvent>, UserError> {
        let TenantScoped { tenant_id, command } = scoped;
        if let UserCommand::CreateUser {
            user_id,
            email,
            email_key,
            display_name,
            role,
            locale,
            method,
        } = command
        {
            if self.account.is_some() || self.forgotten.is_some() {
                return Err(UserError::UserAlreadyExists);
            }
            return create_user(
                tenant_id,
                user_id,
                email,
                email_key,
                display_name,
                role,
                locale,
                method,
            );
        }
        let account = self.account_in(tenant_id).ok_or(UserError::UserNotFound)?;
        let scope = UserScope {
            tenant_id,
            user_id: account.user_id,
        };
        // Only an erased person's fields are unreadable here, and an erased person has no account.
        let email = account.email.known().ok_or(UserError::UserNotFound)?;
        match command {
            UserCommand::CreateUser { .. } => Err(UserError::UserAlreadyExists),
            UserCommand::ChangeUserEmail {
                email: new_email,
                email_key,
            } => change_email(account, email, scope, new_email, email_key),
            UserCommand::DeactivateUser => {
                if !account.active {
                    return Err(UserError::AlreadyDeactivated);
                }
                Ok(vec![UserEvent::UserDeactivated {
                    tenant_id,
                    user_id: scope.user_id,
                }])
            }
            UserCommand::ReactivateUser => {
                if account.active {
                    return Err(UserError::NotDeactivated);
                }
                Ok(vec![UserEvent::UserReactivated {
                    tenant_id,
                    user_id: scope.user_id,
                }])
            }
            UserCommand::LinkUserToEntra { binding } => link(account, email, scope, binding),
            UserCommand::UnlinkUserFromEntra {
                domain,
                password_token,
            } => unlink(account, email, scope, &domain, password_token),
            UserCommand::IssuePasswordToken { password_token } => {
                ensure_password_user(account)?;
                Ok(vec![token_issued(
                    scope,
                    password_token,
                    PasswordTokenPurpose::Reset,
                )])
            }
            UserCommand::SetPassword {
                token_id,
                credential_id,
                now,
            } => {
                ensure_password_user(account)?;
                if account.used_token == Some(token_id) {
                    return Err(UserError::PasswordTokenAlreadyUsed);
                }
                let token = account
                    .password_token
                    .filter(|token| token.token_id == token_id)
                    .ok_or(UserError::PasswordTokenUnknown)?;
                if now >= token.expires_at {
                    return Err(UserError::PasswordTokenExpired);
                }
                Ok(vec![UserEvent::PasswordSet {
                    tenant_id,
                    user_id: scope.user_id,
                    credential_id,
                    token_id,
                }])
            }
            UserCommand::EnrollPhone { phone } => {
                ensure_password_user(account)?;
                if account.phone.is_some() {
                    return Err(UserError::PhoneAlreadyEnrolled);
                }
                Ok(vec![UserEvent::PhoneEnrolled {
                    tenant_id,
                    user_id: scope.user_id,
                    phone: Personal::new(scope.user_id, phone),
                }])
            }
            UserCommand::RemovePhone => {
                if account.phone.is_none() {
                    return Err(UserError::NoPhoneEnrolled);
                }
                Ok(vec![UserEvent::PhoneRemoved {
                    tenant_id,
                    user_id: scope.user_id,
                }])
            }
            UserCommand::ForgetUser { reason } => Ok(vec![UserEvent::UserForgotten {
                tenant_id,
                user_id: scope.user_id,
                reason,
            }]),
            UserCommand::RequeueNotification {
                message_id,
                by_support,
            } => Ok(vec![UserEvent::NotificationRequeued {
                tenant_id,
                user_id: scope.user_id,
                message_id,
                by_support,
            }]),
            UserCommand::CompleteEntraSignIn { binding, claims } => {
                let bound = account
                    .entra
                    .as_ref()
                    .and_then(|link| link.identity.as_ref());
                let bound_identity = match bound {
                    None => None,
                    Some(BoundIdentity {
                        entra_tenant_id,
                        object_id,
                    }) => {
                        // An unreadable binding must never look unbound (that would rebind).
                        let object_id = *object_id.known().ok_or(UserError::EntraSignInRefused(
                            EntraSignInRefusal::IdentityMismatch,
                        ))?;
                        Some(EntraIdentity {
                            entra_tenant_id: *entra_tenant_id,
                            object_id,
                        })
                    }
                };
                let view = EntraAccount {
                    user_id: scope.user_id,
                    active: account.active,
                    email,
                    linked_entra_tenant: account.entra.as_ref().map(|link| link.entra_tenant_id),
                    bound_identity,
                };
                match decide_entra_sign_in(&view, &binding, &claims)
                    .map_err(UserError::EntraSignInRefused)?
                {
                    EntraSignInAccepted::KnownIdentity => Ok(vec![]),
                    EntraSignInAccepted::BindIdentity(identity) => {
                        Ok(vec![UserEvent::EntraIdentityBound {
                            tenant_id,
                            user_id: scope.user_id,
                            entra_tenant_id: identity.entra_tenant_id,
                            object_id: Personal::new(scope.user_id, identity.object_id),
                        }])
                    }
                }
            }
        }
    }

    /// Applies an event; never fails and checks no rules.
    pub fn evolve(&mut self, event: UserEvent) {
        if let UserEvent::UserCreated {
            tenant_id,
            user_id,
            email,
            email_key,
            display_name,
            role,
            locale,
            ..
        } = event
        {
            self.account = Some(Account {
                tenant_id,
                user_id,
                email,
                email_key,
                display_name,
                role,
                locale,
                active: true,
                entra: None,
                credential: None,
                password_token: None,
                used_token: None,
                phone: None,
            });
            return;
        }
        if let UserEvent::UserForgotten { tenant_id, .. } = event {
            if let Some(account) = self.account.take() {
                self.forgotten = Some(Forgotten {
                    tenant_id,
                    email_key: account.email_key,
                });
            }
            return;
        }
        let Some(account) = self.account.as_mut() else {
            return;
        };
        match event {
            // A requeued message changes the queue, not the account.
            UserEvent::UserCreated { .. }
            | UserEvent::UserForgotten { .. }
            | UserEvent::NotificationRequeued { .. } => {}
            UserEvent::UserEmailChanged {
                email, email_key, ..
            } => {
                account.email = email;
                account.email_key = email_key;
            }
            UserEvent::UserDeactivated { .. } => account.active = false,
            UserEvent::UserReactivated { .. } => account.active = true,
            UserEvent::UserLinkedToEntra {
                domain,
                entra_tenant_id,
                ..
            } => {
                account.entra = Some(EntraLink {
                    domain,
                    entra_tenant_id,
                    identity: None,
                });
                account.credential = None;
                account.password_token = None;
            }
            UserEvent::UserUnlinkedFromEntra { .. } => account.entra = None,
            UserEvent::PasswordTokenIssued {
                token_id,
                expires_at,
                ..
            } => {
                account.password_token = Some(OutstandingToken {
                    token_id,
                    expires_at,
                });
            }
            UserEvent::PasswordSet {
                credential_id,
                token_id,
                ..
            } => {
                account.credential = Some(credential_id);
                account.password_token = None;
                account.used_token = Some(token_id);
            }
            UserEvent::PhoneEnrolled { phone, .. } => account.phone = Some(phone),
            UserEvent::PhoneRemoved { .. } => account.phone = None,
            UserEvent::EntraIdentityBound {
                entra_tenant_id,
                object_id,
                ..
            } => {
                if let Some(link) = account.entra.as_mut() {
                    link.identity = Some(BoundIdentity {
                        entra_tenant_id,
                        object_id,
                    });
                }
            }
        }
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "mirrors the fields of CreateUser one to one"
)]
fn create_user(
    tenant_id: TenantId,
    user_id: UserId,
    email: EmailAddress,
    email_key: EmailKey,
    display_name: DisplayName,
    role: Role,
    locale: Locale,
    method: NewUserMethod,
) -> Result<Vec<UserEvent>, UserError> {
    let scope = UserScope { tenant_id, user_id };
    let follow_up = match method {
        NewUserMethod::Sms { password_token } => {
            token_issued(scope, password_token, PasswordTokenPurpose::Welcome)
        }
        NewUserMethod::EntraId { binding } => {
            check_binding(tenant_id, &email, &binding)?;
            UserEvent::UserLinkedToEntra {
                tenant_id,
                user_id,
                domain: binding.domain,
                entra_tenant_id: binding.entra_tenant_id,
                password_removed: false,
                origin: LinkOrigin::CreatedWithEntra,
            }
        }
    };
    let method = match follow_up {
        UserEvent::UserLinkedToEntra { .. } => UserMethod::EntraId,
        _ => UserMethod::Sms,
    };
    Ok(vec![
        UserEvent::UserCreated {
            tenant_id,
            user_id,
            email: Personal::new(user_id, email),
            email_key,
            display_name: Personal::new(user_id, display_name),
            role,
            locale,
            method,
        },
        follow_up,
    ])
}

fn change_email(
    account: &Account,
    current: &EmailAddress,
    scope: UserScope,
    email: EmailAddress,
    email_key: EmailKey,
) -> Result<Vec<UserEvent>, UserError> {
    if &email == current {
        return Err(UserError::EmailUnchanged);
    }
    if let Some(link) = &account.entra
        && !email.is_on_domain(&link.domain)
    {
        return Err(UserError::EmailNotOnDomain);
    }
    Ok(vec![UserEvent::UserEmailChanged {
        tenant_id: scope.tenant_id,
        user_id: scope.user_id,
        email: Personal::new(scope.user_id, email),
        email_key,
        previous_email_key: account.email_key.clone(),
    }])
}

fn link(
    account: &Account,
    email: &EmailAddress,
    scope: UserScope,
    binding: DomainBinding,
) -> Result<Vec<UserEvent>, UserError> {
    if !account.active {
        return Err(UserError::UserDeactivated);
    }
    check_binding(scope.tenant_id, email, &binding)?;
    if account.entra.is_some() {
        return Err(UserError::AlreadyLinked);
    }
    Ok(vec![UserEvent::UserLinkedToEntra {
        tenant_id: scope.tenant_id,
        user_id: scope.user_id,
        domain: binding.domain,
        entra_tenant_id: binding.entra_tenant_id,
        password_removed: account.credential.is_some(),
        origin: LinkOrigin::DomainLink,
    }])
}

fn unlink(
    account: &Account,
    email: &EmailAddress,
    scope: UserScope,
    domain: &DomainName,
    password_token: PasswordTokenGrant,
) -> Result<Vec<UserEvent>, UserError> {
    if !account.active {
        return Err(UserError::UserDeactivated);
    }
    if !email.is_on_domain(domain) {
        return Err(UserError::EmailNotOnDomain);
    }
    let link = account
        .entra
        .as_ref()
        .filter(|link| &link.domain == domain)
        .ok_or(UserError::NotLinked)?;
    Ok(vec![
        UserEvent::UserUnlinkedFromEntra {
            tenant_id: scope.tenant_id,
            user_id: scope.user_id,
            domain: link.domain.clone(),
            entra_tenant_id: link.entra_tenant_id,
        },
        token_issued(scope, password_token, PasswordTokenPurpose::AfterUnlink),
    ])
}

fn check_binding(
    tenant_id: TenantId,
    email: &EmailAddress,
    binding: &DomainBinding,
) -> Result<(), UserError> {
    if binding.tenant_id != tenant_id {
        return Err(UserError::DomainNotClaimedByTenant);
    }
    if !email.is_on_domain(&binding.domain) {
        return Err(UserError::EmailNotOnDomain);
    }
    Ok(())
}

fn ensure_password_user(account: &Account) -> Result<(), UserError> {
    if !account.active {
        return Err(UserError::UserDeactivated);
    }
    if account.entra.is_some() {
        return Err(UserError::LinkedToEntra);
    }
    Ok(())
}

fn token_issued(
    scope: UserScope,
    grant: PasswordTokenGrant,
    purpose: PasswordTokenPurpose,
) -> UserEvent {
    UserEvent::PasswordTokenIssued {
        tenant_id: scope.tenant_id,
        user_id: scope.user_id,
        token_id: grant.token_id,
        expires_at: grant.expires_at,
        purpose,
    }
}

#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::ids::{CredentialId, EntraObjectId, EntraTenantId, PasswordTokenId, TenantId, UserId};
use crate::values::{
    DisplayName, DomainName, EmailAddress, EmailKey, Locale, MobileNumber, Personal, Role,
};

/// Facts about a user account. A persisted contract: never rename a variant or a field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum UserEvent {
    /// The administrator created the account.
    UserCreated {
        /// The tenant.
        tenant_id: TenantId,
        /// The account.
        user_id: UserId,
        /// Its e-mail address (personal, sealed in the store).
        email: Personal<EmailAddress>,
        /// The keyed hash of the address.
        email_key: EmailKey,
        /// Display name (personal, sealed in the store).
        display_name: Personal<DisplayName>,
        /// Role.
        role: Role,
        /// Language.
        locale: Locale,
        /// The method chosen at creation.
        method: UserMethod,
    },
    /// The account's address changed.
    UserEmailChanged {
        /// The tenant.
        tenant_id: TenantId,
        /// The account.
        user_id: UserId,
        /// The new address (personal, sealed in the store).
        email: Personal<EmailAddress>,
        /// Its keyed hash.
        email_key: EmailKey,
        /// The keyed hash of the address before.
        previous_email_key: EmailKey,
    },
    /// The account was deactivated.
    UserDeactivated {
        /// The tenant.
        tenant_id: TenantId,
        /// The account.
        user_id: UserId,
    },
    /// The account was reactivated.
    UserReactivated {
        /// The tenant.
        tenant_id: TenantId,
        /// The account.
        user_id: UserId,
    },
    /// The account signs in with Entra ID from now on; any password is gone.
    UserLinkedToEntra {
        /// The tenant.
        tenant_id: TenantId,
        /// The account.
        user_id: UserId,
        /// The domain it was linked through.
        domain: DomainName,
        /// The domain's Entra tenant.
        entra_tenant_id: EntraTenantId,
        /// A password existed and was removed.
        password_removed: bool,
        /// Created as an Entra user, or linked later through `LinkDomainUsers`.
        origin: LinkOrigin,
    },
    /// The account signs in with a password (+ SMS) again; all its data is kept.
    UserUnlinkedFromEntra {
        /// The tenant.
        tenant_id: TenantId,
        /// The account.
        user_id: UserId,
        /// The domain it was linked through.
        domain: DomainName,
        /// The Entra tenant it was linked to.
        entra_tenant_id: EntraTenantId,
    },
    /// A set-password link was issued; the e-mail carries a secret derived from the token id.
    PasswordTokenIssued {
        /// The tenant.
        tenant_id: TenantId,
        /// The account.
        user_id: UserId,
        /// The token.
        token_id: PasswordTokenId,
        /// When it stops working.
        expires_at: DateTime<Utc>,
        /// Which e-mail carries it.
        purpose: PasswordTokenPurpose,
    },
    /// The user set a password with a token.
    PasswordSet {
        /// The tenant.
        tenant_id: TenantId,
        /// The account.
        user_id: UserId,
        /// The stored verifier.
        credential_id: CredentialId,
        /// The token used up.
        token_id: PasswordTokenId,
    },
    /// A mobile number was enrolled, confirmed by a code.
    PhoneEnrolled {
        /// The tenant.
        tenant_id: TenantId,
        /// The account.
        user_id: UserId,
        /// The number (personal, sealed in the store).
        phone: Personal<MobileNumber>,
    },
    /// The enrolled number was removed.
    PhoneRemoved {
        /// The tenant.
        tenant_id: TenantId,
        /// The account.
        user_id: UserId,
    },
    /// The first Entra sign-in bound the account to this Entra identity.
    EntraIdentityBound {
        /// The tenant.
        tenant_id: TenantId,
        /// The account.
        user_id: UserId,
        /// The token's `tid`.
        entra_tenant_id: EntraTenantId,
        /// The token's `oid` (personal: it identifies the person in their directory).
        object_id: Personal<EntraObjectId>,
    },
    /// The person was erased (AVG/GDPR): their data key is destroyed, so every personal field of
    /// every event loads as erased; the events themselves stay.
    UserForgotten {
        /// The tenant.
        tenant_id: TenantId,
        /// The account.
        user_id: UserId,
        /// Why.
        reason: ErasureReason,
    },
    /// A message to the user that delivery had given up on was queued again by hand.
    NotificationRequeued {
        /// The tenant.
        tenant_id: TenantId,
        /// The account the message is for.
        user_id: UserId,
        /// The message's stable id (`{aggregate_type}:{aggregate_id}:{sequence}` of its cause).
        message_id: String,
        /// Support staff queued it (otherwise one of the tenant's administrators).
        by_support: bool,
    },
}

/// Why a person was erased.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErasureReason {
    /// The person asked (AVG/GDPR article 17).
    DataSubjectRequest,
    /// The customer closed the account and asked for its data to be removed.
    AccountClosed,
    /// The retention period ended.
    RetentionExpired,
}

/// The method chosen when the account was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserMethod {
    /// Password, plus SMS as the policy requires.
    Sms,
    /// Microsoft Entra ID.
    EntraId,
}

/// Why an account was linked to Entra ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkOrigin {
    /// The administrator created the user with Entra ID (the welcome mail explains it).
    CreatedWithEntra,
    /// `LinkDomainUsers` linked an existing user (the link mail explains it).
    DomainLink,
}

/// Which message carries a set-password link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PasswordTokenPurpose {
    /// The welcome mail of a new password user.
    Welcome,
    /// The unlink mail: the password was removed at linking.
    AfterUnlink,
    /// A requested new link.
    Reset,
}

impl UserEvent {
    /// Whether the change ends every running session of the user (spec §1, Sessions):
    /// deactivation, erasure, a password set and a changed e-mail address do; linking and
    /// unlinking do not (the article: a session stays active until logout).
    pub const fn ends_sessions(&self) -> bool {
        matches!(
            self,
            Self::UserDeactivated { .. }
                | Self::UserForgotten { .. }
                | Self::PasswordSet { .. }
                | Self::UserEmailChanged { .. }
        )
    }
}

impl DomainEvent for UserEvent {
    fn event_type(&self) -> String {
        match self {
            Self::UserCreated { .. } => "UserCreated",
            Self::UserEmailChanged { .. } => "UserEmailChanged",
            Self::UserDeactivated { .. } => "UserDeactivated",
            Self::UserReactivated { .. } => "UserReactivated",
            Self::UserLinkedToEntra { .. } => "UserLinkedToEntra",
            Self::UserUnlinkedFromEntra { .. } => "UserUnlinkedFromEntra",
            Self::PasswordTokenIssued { .. } => "PasswordTokenIssued",
            Self::PasswordSet { .. } => "PasswordSet",
            Self::PhoneEnrolled { .. } => "PhoneEnrolled",
            Self::PhoneRemoved { .. } => "PhoneRemoved",
            Self::EntraIdentityBound { .. } => "EntraIdentityBound",
            Self::UserForgotten { .. } => "UserForgotten",
            Self::NotificationRequeued { .. } => "NotificationRequeued",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

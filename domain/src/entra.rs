//! The Entra ID sign-in decision: which token may sign a user in, and why others may not.
//!
//! A token is matched to an account by the immutable `tid` + `oid`, never by its mutable e-mail
//! claim alone (nOAuth). The e-mail claim is compared once, at the first sign-in, to bind the
//! identity, and must then be the account's real (primary) address, not an alias.

use serde::{Deserialize, Serialize};

use crate::ids::{EntraObjectId, EntraTenantId, TenantId, UserId};
use crate::values::{DomainName, EmailAddress, Personal, ProviderErrorCode};

/// A domain claimed by a FinteQX tenant and bound to the Entra tenant that owns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainBinding {
    /// The FinteQX tenant that claimed the domain.
    pub tenant_id: TenantId,
    /// The domain.
    pub domain: DomainName,
    /// The Entra tenant whose tokens may sign in the domain's linked users.
    pub entra_tenant_id: EntraTenantId,
}

/// An Entra identity: the binding key of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EntraIdentity {
    /// The `tid` claim.
    pub entra_tenant_id: EntraTenantId,
    /// The `oid` claim.
    pub object_id: EntraObjectId,
}

/// The claims of a validated ID token that the decision uses. Signature, issuer, audience,
/// expiry and nonce were checked by the OpenID client before these facts were taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntraClaims {
    /// `tid` and `oid`.
    pub identity: EntraIdentity,
    /// The `email` claim (the primary address), if present and parseable.
    pub email: Option<EmailAddress>,
    /// Whether the e-mail's domain is verified by the Entra tenant (`xms_edov`).
    pub email_domain_verified: bool,
    /// The `preferred_username` claim, if it parses as an address: the name the user typed,
    /// possibly an alias.
    pub preferred_username: Option<EmailAddress>,
    /// A B2B guest (`idp` differs from the issuer, or `acct` = 1).
    pub is_guest: bool,
}

/// What the account looks like to the decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntraAccount<'a> {
    /// The account (the subject of any personal data in a refusal).
    pub user_id: UserId,
    /// Not deactivated.
    pub active: bool,
    /// The account's e-mail address.
    pub email: &'a EmailAddress,
    /// The Entra tenant the account is linked through, if linked.
    pub linked_entra_tenant: Option<EntraTenantId>,
    /// The identity bound at the first Entra sign-in, if any.
    pub bound_identity: Option<EntraIdentity>,
}

/// Why an Entra token does not sign the user in. Shown to the user in words the login page owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EntraSignInRefusal {
    /// The account is deactivated.
    #[error("the account is deactivated")]
    AccountDeactivated,
    /// The account is not linked to Entra ID; it signs in with a password.
    #[error("the account is not linked to Microsoft Entra ID")]
    NotLinked,
    /// The token comes from an Entra tenant other than the one the account's domain is bound to.
    #[error("the token was issued by another Entra tenant")]
    WrongEntraTenant,
    /// The token belongs to a B2B guest of the Entra tenant.
    #[error("guest accounts cannot sign in")]
    GuestAccount,
    /// The token's identity differs from the one bound at the first sign-in.
    #[error("the Entra account is not the one bound to this account")]
    IdentityMismatch,
    /// The token has no e-mail claim from a verified domain, so the first sign-in cannot bind.
    #[error("the token carries no verified e-mail address")]
    EmailNotVerified,
    /// The account's e-mail is not the primary address of the Entra account (for example an alias).
    #[error("the account e-mail is not the primary address of the Microsoft account")]
    NotPrimaryAddress {
        /// The address to use instead: the token's primary address (personal data).
        primary_email: Personal<EmailAddress>,
    },
}

/// What a successful decision asks to record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntraSignInAccepted {
    /// The identity was already bound and matches.
    KnownIdentity,
    /// First sign-in: bind this identity to the account.
    BindIdentity(EntraIdentity),
}

/// Decides whether `claims` sign in `account` whose domain is bound as `binding`.
///
/// # Errors
/// The first broken rule, as an [`EntraSignInRefusal`].
pub fn decide_entra_sign_in(
    account: &EntraAccount<'_>,
    binding: &DomainBinding,
    claims: &EntraClaims,
) -> Result<EntraSignInAccepted, EntraSignInRefusal> {
    if !account.active {
        return Err(EntraSignInRefusal::AccountDeactivated);
    }
    let Some(linked_tenant) = account.linked_entra_tenant else {
        return Err(EntraSignInRefusal::NotLinked);
    };
    let token_tenant = claims.identity.entra_tenant_id;
    if token_tenant != binding.entra_tenant_id || token_tenant != linked_tenant {
        return Err(EntraSignInRefusal::WrongEntraTenant);
    }
    if claims.is_guest {
        return Err(EntraSignInRefusal::GuestAccount);
    }
    if let Some(bound) = account.bound_identity {
        return if bound == claims.identity {
            Ok(EntraSignInAccepted::KnownIdentity)
        } else {
            Err(EntraSignInRefusal::IdentityMismatch)
        };
    }
    let primary = match &claims.email {
        Some(email) if claims.email_domain_verified => email,
        _ => return Err(EntraSignInRefusal::EmailNotVerified),
    };
    if primary != account.email {
        return Err(EntraSignInRefusal::NotPrimaryAddress {
            primary_email: Personal::new(account.user_id, primary.clone()),
        });
    }
    Ok(EntraSignInAccepted::BindIdentity(claims.identity))
}

/// Microsoft's codes that mean the organisation has not approved the application (research §1.8):
/// the user cannot fix them, their administrator must grant consent.
pub const CONSENT_ERROR_CODES: [&str; 5] = [
    "AADSTS65001",
    "AADSTS65004",
    "AADSTS90093",
    "AADSTS90094",
    "AADSTS900941",
];

/// An error Microsoft sent back to the redirect URI instead of a code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizationError {
    /// The organisation must approve FinteQX: the login page shows the consent notice.
    ConsentRequired(ProviderErrorCode),
    /// Any other error (cancelled, misconfigured, …), with the most specific code found.
    Other(ProviderErrorCode),
}

/// Classifies the `error` and `error_description` parameters of an authorization response.
/// Only codes are kept: the AADSTS code at the start of the description when there is one, else
/// the OAuth `error`; Microsoft's free text is never recorded.
pub fn classify_authorization_error(error: &str, description: Option<&str>) -> AuthorizationError {
    let aadsts = description
        .and_then(|text| {
            text.split(|c: char| !c.is_ascii_alphanumeric())
                .find(|word| word.starts_with("AADSTS"))
        })
        .and_then(|code| ProviderErrorCode::parse(code).ok());
    let oauth =
        ProviderErrorCode::parse(error).unwrap_or_else(|_| ProviderErrorCode::unrecognised());
    let consent = error == "consent_required"
        || aadsts
            .as_ref()
            .is_some_and(|code| CONSENT_ERROR_CODES.contains(&code.as_str()));
    let code = aadsts.unwrap_or(oauth);
    if consent {
        AuthorizationError::ConsentRequired(code)
    } else {
        AuthorizationError::Other(code)
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn tid(n: u128) -> EntraTenantId {
        EntraTenantId::try_from_uuid(Uuid::from_u128(n)).unwrap()
    }

    fn identity(tenant: u128, object: u128) -> EntraIdentity {
        EntraIdentity {
            entra_tenant_id: tid(tenant),
            object_id: EntraObjectId::from_uuid(Uuid::from_u128(object)),
        }
    }

    fn email(s: &str) -> EmailAddress {
        EmailAddress::parse(s).unwrap()
    }

    fn binding() -> DomainBinding {
        DomainBinding {
            tenant_id: TenantId::from_uuid(Uuid::from_u128(1)),
            domain: DomainName::parse("contoso.com").unwrap(),
            entra_tenant_id: tid(10),
        }
    }

    fn claims(identity: EntraIdentity, primary: &str) -> EntraClaims {
        EntraClaims {
            identity,
            email: Some(email(primary)),
            email_domain_verified: true,
            preferred_username: Some(email(primary)),
            is_guest: false,
        }
    }

    #[test]
    fn first_sign_in_binds_when_primary_address_matches() {
        let account_email = email("alice@contoso.com");
        let account = EntraAccount {
            user_id: UserId::from_uuid(Uuid::from_u128(0x42)),
            active: true,
            email: &account_email,
            linked_entra_tenant: Some(tid(10)),
            bound_identity: None,
        };
        assert_eq!(
            decide_entra_sign_in(
                &account,
                &binding(),
                &claims(identity(10, 5), "Alice@Contoso.com")
            ),
            Ok(EntraSignInAccepted::BindIdentity(identity(10, 5)))
        );
    }

    #[test]
    fn later_sign_ins_match_on_tid_and_oid_only() {
        let account_email = email("alice@contoso.com");
        let account = EntraAccount {
            user_id: UserId::from_uuid(Uuid::from_u128(0x42)),
            active: true,
            email: &account_email,
            linked_entra_tenant: Some(tid(10)),
            bound_identity: Some(identity(10, 5)),
        };
        // The e-mail claim drifted (renamed user): still the same person.
        assert_eq!(
            decide_entra_sign_in(
                &account,
                &binding(),
                &claims(identity(10, 5), "alice.smit@contoso.com")
            ),
            Ok(EntraSignInAccepted::KnownIdentity)
        );
        // Another Entra user claiming alice's address cannot take the account (nOAuth).
        assert_eq!(
            decide_entra_sign_in(
                &account,
                &binding(),
                &claims(identity(10, 6), "alice@contoso.com")
            ),
            Err(EntraSignInRefusal::IdentityMismatch)
        );
    }

    #[test]
    fn refusals_name_the_broken_rule() {
        let account_email = email("al@contoso.com");
        let linked = EntraAccount {
            user_id: UserId::from_uuid(Uuid::from_u128(0x42)),
            active: true,
            email: &account_email,
            linked_entra_tenant: Some(tid(10)),
            bound_identity: None,
        };
        let mut alias = claims(identity(10, 5), "alice@contoso.com");
        alias.preferred_username = Some(email("al@contoso.com"));
        let mut guest = claims(identity(10, 5), "al@contoso.com");
        guest.is_guest = true;
        let mut unverified = claims(identity(10, 5), "al@contoso.com");
        unverified.email_domain_verified = false;
        let mut no_email = claims(identity(10, 5), "al@contoso.com");
        no_email.email = None;
        let cases = [
            (
                linked.clone(),
                alias,
                EntraSignInRefusal::NotPrimaryAddress {
                    primary_email: Personal::new(
                        UserId::from_uuid(Uuid::from_u128(0x42)),
                        email("alice@contoso.com"),
                    ),
                },
                "alias",
            ),
            (
                linked.clone(),
                claims(identity(11, 5), "al@contoso.com"),
                EntraSignInRefusal::WrongEntraTenant,
                "another Entra tenant with the same e-mail",
            ),
            (
                linked.clone(),
                guest,
                EntraSignInRefusal::GuestAccount,
                "guest",
            ),
            (
                linked.clone(),
                unverified,
                EntraSignInRefusal::EmailNotVerified,
                "unverified domain",
            ),
            (
                linked.clone(),
                no_email,
                EntraSignInRefusal::EmailNotVerified,
                "no e-mail claim",
            ),
            (
                EntraAccount {
                    linked_entra_tenant: None,
                    ..linked.clone()
                },
                claims(identity(10, 5), "al@contoso.com"),
                EntraSignInRefusal::NotLinked,
                "password user",
            ),
            (
                EntraAccount {
                    active: false,
                    ..linked.clone()
                },
                claims(identity(10, 5), "al@contoso.com"),
                EntraSignInRefusal::AccountDeactivated,
                "deactivated",
            ),
        ];
        for (account, token, expected, why) in cases {
            assert_eq!(
                decide_entra_sign_in(&account, &binding(), &token),
                Err(expected),
                "{why}"
            );
        }
    }

    #[test]
    fn a_domain_rebound_to_another_entra_tenant_refuses_old_links() {
        let account_email = email("alice@contoso.com");
        let account = EntraAccount {
            user_id: UserId::from_uuid(Uuid::from_u128(0x42)),
            active: true,
            email: &account_email,
            linked_entra_tenant: Some(tid(10)),
            bound_identity: None,
        };
        let rebound = DomainBinding {
            entra_tenant_id: tid(11),
            ..binding()
        };
        assert_eq!(
            decide_entra_sign_in(
                &account,
                &rebound,
                &claims(identity(11, 5), "alice@contoso.com")
            ),
            Err(EntraSignInRefusal::WrongEntraTenant)
        );
    }

    #[test]
    fn consent_errors_are_told_apart_from_other_errors_by_code_only() {
        let cases = [
            (
                "access_denied",
                Some("AADSTS90094: admin approval required"),
                true,
                "AADSTS90094",
            ),
            (
                "access_denied",
                Some("AADSTS65004: User declined to consent"),
                true,
                "AADSTS65004",
            ),
            (
                "invalid_grant",
                Some("AADSTS65001: The user or administrator has not consented"),
                true,
                "AADSTS65001",
            ),
            (
                "access_denied",
                Some("AADSTS900941: Administrator consent is required"),
                true,
                "AADSTS900941",
            ),
            (
                "access_denied",
                Some("AADSTS90093: not authorized"),
                true,
                "AADSTS90093",
            ),
            ("consent_required", None, true, "consent_required"),
            (
                "access_denied",
                Some("AADSTS50105: not assigned"),
                false,
                "AADSTS50105",
            ),
            ("access_denied", None, false, "access_denied"),
            ("<script>", None, false, "unrecognised_error"),
        ];
        for (error, description, consent, code) in cases {
            let classified = classify_authorization_error(error, description);
            let expected_code = ProviderErrorCode::parse(code).expect("valid code");
            let expected = if consent {
                AuthorizationError::ConsentRequired(expected_code)
            } else {
                AuthorizationError::Other(expected_code)
            };
            assert_eq!(classified, expected, "{error} {description:?}");
        }
    }
}

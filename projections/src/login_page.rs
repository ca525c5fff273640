//! The login page: for an entered e-mail, whether to show the "Inloggen met Microsoft Entra ID"
//! button and the consent notice, and the accounts the sign-in flow starts from.
//!
//! The page's answer depends on the address's domain alone (ADR-0028): a domain that a tenant has
//! proven and bound to an Entra tenant gets the button, every other address the password form,
//! whether or not an account exists and whatever the tenant's policy; the SMS and phone steps
//! are told only after the password is right. Accounts are keyed by the e-mail lookup hash, so
//! the tables hold no address; what an account must do is computed by
//! `domain::sign_in_rule::required_sign_in`, the function the sign-in decision uses.

use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use domain::domain_claim::DomainClaimEvent;
use domain::ids::{EntraTenantId, TenantId, UserId};
use domain::sign_in::{SignInEvent, SignInFailure};
use domain::sign_in_rule::SignInFacts;
use domain::tenant::TenantEvent;
use domain::user::UserEvent;
use domain::values::{DomainName, EmailKey};

use crate::envelope::{DomainEvent, Envelope};
use crate::runner::Projector;

/// The login-page projector.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoginPage;

/// A consent state as the login page and settings screen show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Consent {
    /// Admin consent granted.
    Granted,
    /// The administrator refused.
    Refused,
    /// A sign-in failed because consent is missing.
    Required,
}

impl Consent {
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Granted => "granted",
            Self::Refused => "refused",
            Self::Required => "required",
        }
    }
}

/// One row change of the login page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginPageChange {
    /// A tenant's policy.
    Tenant {
        /// The tenant.
        tenant_id: TenantId,
        /// SMS required.
        sms_required: bool,
    },
    /// A consent state; the latest fact wins, except that a cancelled consent prompt does not
    /// undo a grant (a consent-missing sign-in does).
    Consent {
        /// The tenant.
        tenant_id: TenantId,
        /// The Entra tenant.
        entra_tenant_id: EntraTenantId,
        /// The state.
        state: Consent,
    },
    /// A new account.
    Account {
        /// Its lookup key.
        email_key: EmailKey,
        /// The tenant.
        tenant_id: TenantId,
        /// The user.
        user_id: UserId,
    },
    /// An erased person's account: its row goes.
    Forget {
        /// The tenant.
        tenant_id: TenantId,
        /// The user.
        user_id: UserId,
    },
    /// A domain claimed for (or moved to) a tenant and bound to an Entra tenant, not yet proven.
    DomainClaimed {
        /// The domain.
        domain: DomainName,
        /// The claiming tenant.
        tenant_id: TenantId,
        /// The Entra tenant it is bound to.
        entra_tenant_id: EntraTenantId,
    },
    /// A claimed domain bound to another Entra tenant.
    DomainRebound {
        /// The domain.
        domain: DomainName,
        /// The claiming tenant.
        tenant_id: TenantId,
        /// The new Entra tenant.
        entra_tenant_id: EntraTenantId,
    },
    /// A claimed domain proven by its tenant.
    DomainProven {
        /// The domain.
        domain: DomainName,
        /// The proving tenant.
        tenant_id: TenantId,
    },
    /// A claim given up.
    DomainReleased {
        /// The domain.
        domain: DomainName,
        /// The releasing tenant.
        tenant_id: TenantId,
    },
    /// An account's state.
    Update {
        /// The tenant.
        tenant_id: TenantId,
        /// The user.
        user_id: UserId,
        /// What changed.
        field: AccountField,
    },
}

/// A changed account field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountField {
    /// New lookup key.
    EmailKey(EmailKey),
    /// Active or deactivated.
    Active(bool),
    /// Linked through this Entra tenant, or unlinked.
    EntraLink(Option<EntraTenantId>),
    /// Password set or removed.
    HasPassword(bool),
    /// Phone enrolled or removed.
    PhoneEnrolled(bool),
}

impl Projector for LoginPage {
    const NAME: &'static str = "login_page";
    const TABLES: &'static [&'static str] = &[
        "login_accounts",
        "login_tenants",
        "login_consents",
        "login_domains",
    ];
    type Change = LoginPageChange;

    fn changes(event: &Envelope) -> Vec<LoginPageChange> {
        use LoginPageChange as C;
        let update = |tenant_id: &TenantId, user_id: &UserId, field| C::Update {
            tenant_id: *tenant_id,
            user_id: *user_id,
            field,
        };
        match &event.event {
            DomainEvent::Tenant(TenantEvent::TenantRegistered { tenant_id, .. }) => {
                vec![C::Tenant {
                    tenant_id: *tenant_id,
                    sms_required: false,
                }]
            }
            DomainEvent::Tenant(TenantEvent::MfaPolicySet {
                tenant_id,
                sms_required,
            }) => {
                vec![C::Tenant {
                    tenant_id: *tenant_id,
                    sms_required: *sms_required,
                }]
            }
            DomainEvent::Tenant(TenantEvent::EntraConsentGranted {
                tenant_id,
                entra_tenant_id,
            }) => {
                vec![C::Consent {
                    tenant_id: *tenant_id,
                    entra_tenant_id: *entra_tenant_id,
                    state: Consent::Granted,
                }]
            }
            DomainEvent::Tenant(TenantEvent::EntraConsentRefused {
                tenant_id,
                entra_tenant_id: Some(entra_tenant_id),
                ..
            }) => {
                vec![C::Consent {
                    tenant_id: *tenant_id,
                    entra_tenant_id: *entra_tenant_id,
                    state: Consent::Refused,
                }]
            }
            DomainEvent::User(UserEvent::UserCreated {
                tenant_id,
                user_id,
                email_key,
                ..
            }) => {
                vec![C::Account {
                    email_key: email_key.clone(),
                    tenant_id: *tenant_id,
                    user_id: *user_id,
                }]
            }
            DomainEvent::User(UserEvent::UserEmailChanged {
                tenant_id,
                user_id,
                email_key,
                ..
            }) => {
                vec![update(
                    tenant_id,
                    user_id,
                    AccountField::EmailKey(email_key.clone()),
                )]
            }
            DomainEvent::User(UserEvent::UserDeactivated { tenant_id, user_id }) => {
                vec![update(tenant_id, user_id, AccountField::Active(false))]
            }
            DomainEvent::User(UserEvent::UserReactivated { tenant_id, user_id }) => {
                vec![update(tenant_id, user_id, AccountField::Active(true))]
            }
            DomainEvent::User(UserEvent::UserLinkedToEntra {
                tenant_id,
                user_id,
                entra_tenant_id,
                ..
            }) => vec![
                update(
                    tenant_id,
                    user_id,
                    AccountField::EntraLink(Some(*entra_tenant_id)),
                ),
                update(tenant_id, user_id, AccountField::HasPassword(false)),
            ],
            DomainEvent::User(UserEvent::UserUnlinkedFromEntra {
                tenant_id, user_id, ..
            }) => {
                vec![update(tenant_id, user_id, AccountField::EntraLink(None))]
            }
            DomainEvent::User(UserEvent::PasswordSet {
                tenant_id, user_id, ..
            }) => {
                vec![update(tenant_id, user_id, AccountField::HasPassword(true))]
            }
            DomainEvent::User(UserEvent::PhoneEnrolled {
                tenant_id, user_id, ..
            }) => {
                vec![update(
                    tenant_id,
                    user_id,
                    AccountField::PhoneEnrolled(true),
                )]
            }
            DomainEvent::User(UserEvent::UserForgotten {
                tenant_id, user_id, ..
            }) => {
                vec![C::Forget {
                    tenant_id: *tenant_id,
                    user_id: *user_id,
                }]
            }
            DomainEvent::User(UserEvent::PhoneRemoved { tenant_id, user_id }) => {
                vec![update(
                    tenant_id,
                    user_id,
                    AccountField::PhoneEnrolled(false),
                )]
            }
            DomainEvent::DomainClaim(DomainClaimEvent::DomainClaimed {
                tenant_id,
                domain,
                entra_tenant_id,
            }) => vec![C::DomainClaimed {
                domain: domain.clone(),
                tenant_id: *tenant_id,
                entra_tenant_id: *entra_tenant_id,
            }],
            DomainEvent::DomainClaim(DomainClaimEvent::DomainRebound {
                tenant_id,
                domain,
                entra_tenant_id,
                ..
            }) => vec![C::DomainRebound {
                domain: domain.clone(),
                tenant_id: *tenant_id,
                entra_tenant_id: *entra_tenant_id,
            }],
            DomainEvent::DomainClaim(DomainClaimEvent::DomainProven {
                tenant_id, domain, ..
            }) => vec![C::DomainProven {
                domain: domain.clone(),
                tenant_id: *tenant_id,
            }],
            DomainEvent::DomainClaim(DomainClaimEvent::DomainReleased { tenant_id, domain }) => {
                vec![C::DomainReleased {
                    domain: domain.clone(),
                    tenant_id: *tenant_id,
                }]
            }
            DomainEvent::SignIn(SignInEvent::SignInFailed {
                tenant_id,
                reason:
                    SignInFailure::EntraConsentRequired {
                        entra_tenant_id: Some(entra_tenant_id),
                        ..
                    },
                ..
            }) => vec![C::Consent {
                tenant_id: *tenant_id,
                entra_tenant_id: *entra_tenant_id,
                state: Consent::Required,
            }],
            _ => vec![],
        }
    }

    async fn write(
        connection: &mut PgConnection,
        change: LoginPageChange,
    ) -> Result<(), sqlx::Error> {
        match change {
            LoginPageChange::Tenant {
                tenant_id,
                sms_required,
            } => {
                sqlx::query(
                    "INSERT INTO login_tenants (tenant_id, sms_required) VALUES ($1, $2) \
                     ON CONFLICT (tenant_id) DO UPDATE SET sms_required = EXCLUDED.sms_required",
                )
                .bind(tenant_id.as_uuid())
                .bind(sms_required)
                .execute(connection)
                .await?;
            }
            LoginPageChange::Consent {
                tenant_id,
                entra_tenant_id,
                state,
            } => {
                sqlx::query(
                    "INSERT INTO login_consents (tenant_id, entra_tenant_id, state) VALUES ($1, $2, $3) \
                     ON CONFLICT (tenant_id, entra_tenant_id) DO UPDATE SET state = \
                     CASE WHEN login_consents.state = 'granted' AND EXCLUDED.state = 'refused' THEN 'granted' ELSE EXCLUDED.state END",
                )
                .bind(tenant_id.as_uuid())
                .bind(entra_tenant_id.as_uuid())
                .bind(state.as_str())
                .execute(connection)
                .await?;
            }
            LoginPageChange::Account {
                email_key,
                tenant_id,
                user_id,
            } => {
                sqlx::query(
                    "INSERT INTO login_accounts (email_key, tenant_id, user_id, active, entra_tenant_id, has_password, phone_enrolled) \
                     VALUES ($1, $2, $3, true, NULL, false, false)",
                )
                .bind(email_key.as_str())
                .bind(tenant_id.as_uuid())
                .bind(user_id.as_uuid())
                .execute(connection)
                .await?;
            }
            LoginPageChange::DomainClaimed {
                domain,
                tenant_id,
                entra_tenant_id,
            } => {
                sqlx::query(
                    "INSERT INTO login_domains (domain, tenant_id, entra_tenant_id, proven) \
                     VALUES ($1, $2, $3, false) \
                     ON CONFLICT (domain, tenant_id) DO UPDATE \
                     SET entra_tenant_id = EXCLUDED.entra_tenant_id, proven = false",
                )
                .bind(domain.as_str())
                .bind(tenant_id.as_uuid())
                .bind(entra_tenant_id.as_uuid())
                .execute(connection)
                .await?;
            }
            LoginPageChange::DomainRebound {
                domain,
                tenant_id,
                entra_tenant_id,
            } => {
                sqlx::query(
                    "UPDATE login_domains SET entra_tenant_id = $3 WHERE domain = $1 AND tenant_id = $2",
                )
                .bind(domain.as_str())
                .bind(tenant_id.as_uuid())
                .bind(entra_tenant_id.as_uuid())
                .execute(connection)
                .await?;
            }
            LoginPageChange::DomainProven { domain, tenant_id } => {
                sqlx::query(
                    "UPDATE login_domains SET proven = true WHERE domain = $1 AND tenant_id = $2",
                )
                .bind(domain.as_str())
                .bind(tenant_id.as_uuid())
                .execute(connection)
                .await?;
            }
            LoginPageChange::DomainReleased { domain, tenant_id } => {
                sqlx::query("DELETE FROM login_domains WHERE domain = $1 AND tenant_id = $2")
                    .bind(domain.as_str())
                    .bind(tenant_id.as_uuid())
                    .execute(connection)
                    .await?;
            }
            LoginPageChange::Forget { tenant_id, user_id } => {
                crate::runner::delete_person(connection, "login_accounts", tenant_id, user_id)
                    .await?;
            }
            LoginPageChange::Update {
                tenant_id,
                user_id,
                field,
            } => {
                let (sql, value) = match field {
                    AccountField::EmailKey(key) => {
                        ("email_key = $3::text", Some(key.as_str().to_owned()))
                    }
                    AccountField::Active(active) => {
                        ("active = $3::boolean", Some(active.to_string()))
                    }
                    AccountField::EntraLink(link) => {
                        ("entra_tenant_id = $3::uuid", link.map(|id| id.to_string()))
                    }
                    AccountField::HasPassword(has) => {
                        ("has_password = $3::boolean", Some(has.to_string()))
                    }
                    AccountField::PhoneEnrolled(enrolled) => {
                        ("phone_enrolled = $3::boolean", Some(enrolled.to_string()))
                    }
                };
                sqlx::query(&format!(
                    "UPDATE login_accounts SET {sql} WHERE tenant_id = $1 AND user_id = $2"
                ))
                .bind(tenant_id.as_uuid())
                .bind(user_id.as_uuid())
                .bind(value)
                .execute(connection)
                .await?;
            }
        }
        Ok(())
    }
}

/// What the login page shows for an entered e-mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LoginStep {
    /// Ask for the password: every address whose domain is not bound to an Entra tenant, known or
    /// not, whatever its account needs next (no account enumeration).
    Password,
    /// The "Inloggen met Microsoft Entra ID" button, sending the user to this Entra tenant: every
    /// address on a proven domain bound to it. Accounts on the domain that are not linked still
    /// sign in with their password.
    EntraId {
        /// The authority's tenant.
        entra_tenant_id: EntraTenantId,
    },
}

/// The login page's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LoginOptions {
    /// How to continue.
    pub step: LoginStep,
    /// Show "your administrator must approve FinteQX in Microsoft Entra ID".
    pub consent_notice: bool,
}

/// An account as the sign-in flow needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginAccount {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The user.
    pub user_id: UserId,
    /// The facts of the sign-in rule.
    pub facts: SignInFacts,
    /// The consent state of the linked Entra tenant, if linked.
    pub consent: Option<Consent>,
}

/// The answer for an address whose domain is not bound to an Entra tenant.
pub const PASSWORD_FORM: LoginOptions = LoginOptions {
    step: LoginStep::Password,
    consent_notice: false,
};

/// A proven domain bound to an Entra tenant, as the login page and the Entra flow need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntraDomain {
    /// The FinteQX tenant that proved the domain.
    pub tenant_id: TenantId,
    /// The Entra tenant it is bound to.
    pub entra_tenant_id: EntraTenantId,
    /// The admin-consent state for that Entra tenant.
    pub consent: Option<Consent>,
}

/// The proven Entra binding of `domain`, if any.
///
/// # Errors
/// A database error.
pub async fn entra_domain(
    pool: &PgPool,
    domain: &DomainName,
) -> Result<Option<EntraDomain>, sqlx::Error> {
    let row: Option<(Uuid, Uuid, Option<String>)> = sqlx::query_as(
        "SELECT d.tenant_id, d.entra_tenant_id, c.state FROM login_domains d \
         LEFT JOIN login_consents c ON c.tenant_id = d.tenant_id AND c.entra_tenant_id = d.entra_tenant_id \
         WHERE d.domain = $1 AND d.proven",
    )
    .bind(domain.as_str())
    .fetch_optional(pool)
    .await?;
    Ok(row.and_then(|(tenant_id, entra_tenant_id, consent)| {
        Some(EntraDomain {
            tenant_id: TenantId::from_uuid(tenant_id),
            entra_tenant_id: EntraTenantId::try_from_uuid(entra_tenant_id).ok()?,
            consent: consent.as_deref().and_then(parse_consent),
        })
    }))
}

/// The login page's answer for an address on `domain`: by the domain alone.
///
/// # Errors
/// A database error.
pub async fn login_options(
    pool: &PgPool,
    domain: &DomainName,
) -> Result<LoginOptions, sqlx::Error> {
    Ok(entra_domain(pool, domain)
        .await?
        .map_or(PASSWORD_FORM, |bound| LoginOptions {
            step: LoginStep::EntraId {
                entra_tenant_id: bound.entra_tenant_id,
            },
            consent_notice: !matches!(bound.consent, Some(Consent::Granted)),
        }))
}

/// The account behind an e-mail lookup key.
///
/// # Errors
/// A database error.
pub async fn account(
    pool: &PgPool,
    email_key: &EmailKey,
) -> Result<Option<LoginAccount>, sqlx::Error> {
    type Row = (
        Uuid,
        Uuid,
        bool,
        Option<Uuid>,
        bool,
        bool,
        Option<bool>,
        Option<String>,
    );
    let row: Option<Row> = sqlx::query_as(
        "SELECT a.tenant_id, a.user_id, a.active, a.entra_tenant_id, a.has_password, a.phone_enrolled, t.sms_required, c.state \
         FROM login_accounts a \
         LEFT JOIN login_tenants t ON t.tenant_id = a.tenant_id \
         LEFT JOIN login_consents c ON c.tenant_id = a.tenant_id AND c.entra_tenant_id = a.entra_tenant_id \
         WHERE a.email_key = $1",
    )
    .bind(email_key.as_str())
    .fetch_optional(pool)
    .await?;
    Ok(row.map(
        |(
            tenant_id,
            user_id,
            active,
            entra,
            has_password,
            phone_enrolled,
            sms_required,
            consent,
        )| LoginAccount {
            tenant_id: TenantId::from_uuid(tenant_id),
            user_id: UserId::from_uuid(user_id),
            facts: SignInFacts {
                active,
                tenant_requires_sms: sms_required.unwrap_or(false),
                entra_link: entra.and_then(|id| EntraTenantId::try_from_uuid(id).ok()),
                phone_enrolled,
                has_password,
            },
            consent: consent.as_deref().and_then(parse_consent),
        },
    ))
}

pub(crate) fn parse_consent(state: &str) -> Option<Consent> {
    match state {
        "granted" => Some(Consent::Granted),
        "refused" => Some(Consent::Refused),
        "required" => Some(Consent::Required),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use domain::sign_in::SignInMethod;
    use domain::user::LinkOrigin;
    use domain::values::ProviderErrorCode;

    use super::*;
    use crate::test_support::{domain, entra, envelope, key, tenant, user};

    fn changes(event: DomainEvent) -> Vec<LoginPageChange> {
        LoginPage::changes(&envelope("x", 1, event))
    }

    #[test]
    fn linking_points_the_account_at_entra_and_drops_the_password() {
        let linked = UserEvent::UserLinkedToEntra {
            tenant_id: tenant(),
            user_id: user(),
            domain: domain(),
            entra_tenant_id: entra(),
            password_removed: true,
            origin: LinkOrigin::DomainLink,
        };
        assert_eq!(
            changes(DomainEvent::User(linked)),
            vec![
                LoginPageChange::Update {
                    tenant_id: tenant(),
                    user_id: user(),
                    field: AccountField::EntraLink(Some(entra()))
                },
                LoginPageChange::Update {
                    tenant_id: tenant(),
                    user_id: user(),
                    field: AccountField::HasPassword(false)
                },
            ]
        );
    }

    #[test]
    fn a_consent_required_failure_marks_the_entra_tenant() {
        let failed = SignInEvent::SignInFailed {
            sign_in_id: domain::ids::SignInId::from_uuid(Uuid::nil()),
            tenant_id: tenant(),
            user_id: user(),
            reason: SignInFailure::EntraConsentRequired {
                entra_tenant_id: Some(entra()),
                error_code: ProviderErrorCode::parse("AADSTS65001").unwrap(),
            },
        };
        assert_eq!(
            changes(DomainEvent::SignIn(failed)),
            vec![LoginPageChange::Consent {
                tenant_id: tenant(),
                entra_tenant_id: entra(),
                state: Consent::Required
            }]
        );
    }

    #[test]
    fn accounts_are_keyed_by_the_lookup_hash_and_other_events_change_nothing() {
        let created = UserEvent::UserCreated {
            tenant_id: tenant(),
            user_id: user(),
            email: domain::values::Personal::new(user(), crate::test_support::email()),
            email_key: key(),
            display_name: domain::values::Personal::new(
                user(),
                domain::values::DisplayName::parse("Anne").unwrap(),
            ),
            role: domain::values::Role::User,
            locale: domain::values::Locale::Nl,
            method: domain::user::UserMethod::Sms,
        };
        assert_eq!(
            changes(DomainEvent::User(created)),
            vec![LoginPageChange::Account {
                email_key: key(),
                tenant_id: tenant(),
                user_id: user()
            }]
        );
        let succeeded = SignInEvent::SignInSucceeded {
            sign_in_id: domain::ids::SignInId::from_uuid(Uuid::nil()),
            tenant_id: tenant(),
            user_id: user(),
            method: SignInMethod::Password,
        };
        assert!(changes(DomainEvent::SignIn(succeeded)).is_empty());
    }

    #[test]
    fn domain_claims_are_followed_from_claim_to_proof_and_release() {
        let claimed = DomainClaimEvent::DomainClaimed {
            tenant_id: tenant(),
            domain: domain(),
            entra_tenant_id: entra(),
        };
        assert_eq!(
            changes(DomainEvent::DomainClaim(claimed)),
            vec![LoginPageChange::DomainClaimed {
                domain: domain(),
                tenant_id: tenant(),
                entra_tenant_id: entra(),
            }]
        );
        let proven = DomainClaimEvent::DomainProven {
            tenant_id: tenant(),
            domain: domain(),
            method: domain::domain_claim::DomainProofMethod::DnsTxt {
                record_name: "_finteqx-challenge.contoso.com".to_owned(),
            },
        };
        assert_eq!(
            changes(DomainEvent::DomainClaim(proven)),
            vec![LoginPageChange::DomainProven {
                domain: domain(),
                tenant_id: tenant()
            }]
        );
        let released = DomainClaimEvent::DomainReleased {
            tenant_id: tenant(),
            domain: domain(),
        };
        assert_eq!(
            changes(DomainEvent::DomainClaim(released)),
            vec![LoginPageChange::DomainReleased {
                domain: domain(),
                tenant_id: tenant()
            }]
        );
        assert_eq!(PASSWORD_FORM.step, LoginStep::Password);
    }
}

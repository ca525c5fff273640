//! The login page: for an entered e-mail, how to sign in now and whether to show the consent
//! notice. Keyed by the e-mail lookup hash, so the table holds no address. The answer is computed
//! at read time by `domain::sign_in_rule::required_sign_in`, the function the sign-in decision
//! uses, so the page and the decision cannot disagree.

use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use domain::ids::{EntraTenantId, TenantId, UserId};
use domain::sign_in::{SignInEvent, SignInFailure};
use domain::sign_in_rule::{SignInFacts, SignInRequirement, required_sign_in};
use domain::tenant::TenantEvent;
use domain::user::UserEvent;
use domain::values::EmailKey;

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
    const TABLES: &'static [&'static str] = &["login_accounts", "login_tenants", "login_consents"];
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
    /// Ask for the password (also for unknown, deactivated and password-less accounts: no
    /// account enumeration; the sign-in then fails the same way).
    Password,
    /// Password, then a code sent to the enrolled phone.
    PasswordThenSms,
    /// Password, then enroll a mobile number.
    PasswordThenEnrollPhone,
    /// The "Inloggen met Microsoft Entra ID" button, sending the user to this Entra tenant.
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

impl LoginAccount {
    /// The page's answer for this account.
    pub const fn options(&self) -> LoginOptions {
        let step = match required_sign_in(&self.facts) {
            SignInRequirement::EntraId { entra_tenant_id } => {
                LoginStep::EntraId { entra_tenant_id }
            }
            SignInRequirement::PasswordAndSms => LoginStep::PasswordThenSms,
            SignInRequirement::PasswordThenEnrollPhone => LoginStep::PasswordThenEnrollPhone,
            SignInRequirement::Blocked
            | SignInRequirement::SetPasswordFirst
            | SignInRequirement::Password => LoginStep::Password,
        };
        let consent_notice = matches!(step, LoginStep::EntraId { .. })
            && !matches!(self.consent, Some(Consent::Granted));
        LoginOptions {
            step,
            consent_notice,
        }
    }
}

/// The answer for an unknown e-mail: the same shape as a password user's.
pub const UNKNOWN_ACCOUNT: LoginOptions = LoginOptions {
    step: LoginStep::Password,
    consent_notice: false,
};

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

/// The login page's answer for an e-mail lookup key.
///
/// # Errors
/// A database error.
pub async fn login_options(
    pool: &PgPool,
    email_key: &EmailKey,
) -> Result<LoginOptions, sqlx::Error> {
    Ok(account(pool, email_key)
        .await?
        .map_or(UNKNOWN_ACCOUNT, |account| account.options()))
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
    fn the_answer_follows_the_sign_in_rule_and_hides_blocked_accounts() {
        let facts = SignInFacts {
            active: true,
            tenant_requires_sms: true,
            entra_link: None,
            phone_enrolled: false,
            has_password: true,
        };
        let account = |facts, consent| LoginAccount {
            tenant_id: tenant(),
            user_id: user(),
            facts,
            consent,
        };
        let cases = [
            (facts, None, LoginStep::PasswordThenEnrollPhone, false),
            (
                SignInFacts {
                    phone_enrolled: true,
                    ..facts
                },
                None,
                LoginStep::PasswordThenSms,
                false,
            ),
            (
                SignInFacts {
                    active: false,
                    ..facts
                },
                None,
                LoginStep::Password,
                false,
            ),
            (
                SignInFacts {
                    has_password: false,
                    ..facts
                },
                None,
                LoginStep::Password,
                false,
            ),
            (
                SignInFacts {
                    entra_link: Some(entra()),
                    ..facts
                },
                None,
                LoginStep::EntraId {
                    entra_tenant_id: entra(),
                },
                true,
            ),
            (
                SignInFacts {
                    entra_link: Some(entra()),
                    ..facts
                },
                Some(Consent::Required),
                LoginStep::EntraId {
                    entra_tenant_id: entra(),
                },
                true,
            ),
            (
                SignInFacts {
                    entra_link: Some(entra()),
                    ..facts
                },
                Some(Consent::Granted),
                LoginStep::EntraId {
                    entra_tenant_id: entra(),
                },
                false,
            ),
        ];
        for (facts, consent, step, notice) in cases {
            assert_eq!(
                account(facts, consent).options(),
                LoginOptions {
                    step,
                    consent_notice: notice
                },
                "{facts:?} {consent:?}"
            );
        }
        assert_eq!(UNKNOWN_ACCOUNT.step, LoginStep::Password);
    }
}

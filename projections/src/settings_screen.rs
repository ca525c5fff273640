//! The settings screen ("Instellingen → Multi-factor authenticatie"): the tenant's policy, its
//! domains with their Entra tenant and consent state, and every user with e-mail, method, link
//! state, phone (masked) and last sign-in.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use domain::domain_claim::{DomainClaimEvent, DomainProofMethod};
use domain::ids::{EntraTenantId, TenantId, UserId};
use domain::sign_in::{SignInEvent, SignInFailure};
use domain::tenant::TenantEvent;
use domain::user::{UserEvent, UserMethod};
use domain::values::DomainName;

use crate::envelope::{DomainEvent, Envelope};
use crate::login_page::{Consent, parse_consent};
use crate::runner::Projector;

/// The settings-screen projector.
#[derive(Debug, Clone, Copy, Default)]
pub struct SettingsScreen;

/// One row change of the settings screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingsChange {
    /// A registered tenant.
    Tenant {
        /// The tenant.
        tenant_id: TenantId,
        /// Display name.
        display_name: String,
        /// Default locale.
        default_locale: &'static str,
    },
    /// The policy.
    Policy {
        /// The tenant.
        tenant_id: TenantId,
        /// SMS required.
        sms_required: bool,
    },
    /// A consent state; the latest fact wins, except that a cancelled consent prompt does not
    /// undo a grant: a consent-missing sign-in does, so the warning shows again.
    Consent {
        /// The tenant.
        tenant_id: TenantId,
        /// The Entra tenant.
        entra_tenant_id: EntraTenantId,
        /// The state.
        state: Consent,
        /// Microsoft's error code, for refusals.
        error_code: Option<String>,
    },
    /// A claimed or rebound domain.
    Domain {
        /// The tenant.
        tenant_id: TenantId,
        /// The domain.
        domain: String,
        /// Its Entra tenant.
        entra_tenant_id: EntraTenantId,
    },
    /// A domain the tenant proved it owns.
    DomainProven {
        /// The tenant.
        tenant_id: TenantId,
        /// The domain.
        domain: String,
        /// How: `dns_txt` or `entra_verified_domain`.
        proof: &'static str,
    },
    /// A released domain.
    DomainReleased {
        /// The tenant.
        tenant_id: TenantId,
        /// The domain.
        domain: String,
    },
    /// A created user.
    User(Box<NewUserRow>),
    /// An erased person: their row goes.
    UserForgotten {
        /// The tenant.
        tenant_id: TenantId,
        /// The user.
        user_id: UserId,
    },
    /// A changed user.
    Update {
        /// The tenant.
        tenant_id: TenantId,
        /// The user.
        user_id: UserId,
        /// What changed.
        field: UserField,
    },
}

/// A created user's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUserRow {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The user.
    pub user_id: UserId,
    /// E-mail, sealed as the event carries it.
    pub email: serde_json::Value,
    /// Display name, sealed as the event carries it.
    pub display_name: serde_json::Value,
    /// Role.
    pub role: &'static str,
    /// Locale.
    pub locale: &'static str,
    /// Method at creation.
    pub method: &'static str,
}

/// A changed user column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserField {
    /// New e-mail, sealed.
    Email(serde_json::Value),
    /// Active or deactivated.
    Active(bool),
    /// Linked through a domain and Entra tenant.
    Linked {
        /// The domain.
        domain: String,
        /// The Entra tenant.
        entra_tenant_id: EntraTenantId,
    },
    /// Unlinked.
    Unlinked,
    /// The first Entra sign-in bound the identity.
    IdentityBound,
    /// Password set or removed.
    HasPassword(bool),
    /// Phone enrolled (sealed) or removed.
    Phone(Option<serde_json::Value>),
    /// Signed in at.
    LastSignIn(DateTime<Utc>),
}

impl Projector for SettingsScreen {
    const NAME: &'static str = "settings_screen";
    const TABLES: &'static [&'static str] = &[
        "settings_tenants",
        "settings_domains",
        "settings_consents",
        "settings_users",
    ];
    type Change = SettingsChange;

    fn changes(event: &Envelope) -> Vec<SettingsChange> {
        use SettingsChange as C;
        let update = |tenant_id: &TenantId, user_id: &UserId, field| C::Update {
            tenant_id: *tenant_id,
            user_id: *user_id,
            field,
        };
        match &event.event {
            DomainEvent::Tenant(TenantEvent::TenantRegistered {
                tenant_id,
                display_name,
                default_locale,
            }) => vec![C::Tenant {
                tenant_id: *tenant_id,
                display_name: display_name.as_str().to_owned(),
                default_locale: default_locale.as_str(),
            }],
            DomainEvent::Tenant(TenantEvent::MfaPolicySet {
                tenant_id,
                sms_required,
            }) => {
                vec![C::Policy {
                    tenant_id: *tenant_id,
                    sms_required: *sms_required,
                }]
            }
            DomainEvent::Tenant(TenantEvent::EntraConsentGranted {
                tenant_id,
                entra_tenant_id,
            }) => vec![C::Consent {
                tenant_id: *tenant_id,
                entra_tenant_id: *entra_tenant_id,
                state: Consent::Granted,
                error_code: None,
            }],
            DomainEvent::Tenant(TenantEvent::EntraConsentRefused {
                tenant_id,
                entra_tenant_id: Some(entra),
                error_code,
            }) => {
                vec![C::Consent {
                    tenant_id: *tenant_id,
                    entra_tenant_id: *entra,
                    state: Consent::Refused,
                    error_code: Some(error_code.as_str().to_owned()),
                }]
            }
            DomainEvent::SignIn(SignInEvent::SignInFailed {
                tenant_id,
                reason:
                    SignInFailure::EntraConsentRequired {
                        entra_tenant_id: Some(entra),
                        error_code,
                    },
                ..
            }) => vec![C::Consent {
                tenant_id: *tenant_id,
                entra_tenant_id: *entra,
                state: Consent::Required,
                error_code: Some(error_code.as_str().to_owned()),
            }],
            DomainEvent::SignIn(SignInEvent::SignInSucceeded {
                tenant_id, user_id, ..
            }) => {
                vec![update(
                    tenant_id,
                    user_id,
                    UserField::LastSignIn(event.recorded_at),
                )]
            }
            DomainEvent::DomainClaim(
                DomainClaimEvent::DomainClaimed {
                    tenant_id,
                    domain,
                    entra_tenant_id,
                }
                | DomainClaimEvent::DomainRebound {
                    tenant_id,
                    domain,
                    entra_tenant_id,
                    ..
                },
            ) => vec![C::Domain {
                tenant_id: *tenant_id,
                domain: domain.as_str().to_owned(),
                entra_tenant_id: *entra_tenant_id,
            }],
            DomainEvent::DomainClaim(DomainClaimEvent::DomainProven {
                tenant_id,
                domain,
                method,
            }) => vec![C::DomainProven {
                tenant_id: *tenant_id,
                domain: domain.as_str().to_owned(),
                proof: match method {
                    DomainProofMethod::DnsTxt { .. } => "dns_txt",
                    DomainProofMethod::EntraVerifiedDomain { .. } => "entra_verified_domain",
                },
            }],
            DomainEvent::DomainClaim(DomainClaimEvent::DomainReleased { tenant_id, domain }) => {
                vec![C::DomainReleased {
                    tenant_id: *tenant_id,
                    domain: domain.as_str().to_owned(),
                }]
            }
            DomainEvent::User(event) => user_changes(event),
            _ => vec![],
        }
    }

    async fn write(
        connection: &mut PgConnection,
        change: SettingsChange,
    ) -> Result<(), sqlx::Error> {
        match change {
            SettingsChange::Tenant {
                tenant_id,
                display_name,
                default_locale,
            } => {
                sqlx::query(
                    "INSERT INTO settings_tenants (tenant_id, display_name, default_locale, sms_required) VALUES ($1, $2, $3, false)",
                )
                .bind(tenant_id.as_uuid())
                .bind(display_name)
                .bind(default_locale)
                .execute(connection)
                .await?;
            }
            SettingsChange::Policy {
                tenant_id,
                sms_required,
            } => {
                sqlx::query("UPDATE settings_tenants SET sms_required = $2 WHERE tenant_id = $1")
                    .bind(tenant_id.as_uuid())
                    .bind(sms_required)
                    .execute(connection)
                    .await?;
            }
            SettingsChange::Consent {
                tenant_id,
                entra_tenant_id,
                state,
                error_code,
            } => {
                sqlx::query(
                    "INSERT INTO settings_consents (tenant_id, entra_tenant_id, state, error_code) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (tenant_id, entra_tenant_id) DO UPDATE SET \
                     state = CASE WHEN settings_consents.state = 'granted' AND EXCLUDED.state = 'refused' THEN 'granted' ELSE EXCLUDED.state END, \
                     error_code = CASE WHEN settings_consents.state = 'granted' AND EXCLUDED.state = 'refused' THEN NULL ELSE EXCLUDED.error_code END",
                )
                .bind(tenant_id.as_uuid())
                .bind(entra_tenant_id.as_uuid())
                .bind(state.as_str())
                .bind(error_code)
                .execute(connection)
                .await?;
            }
            SettingsChange::Domain {
                tenant_id,
                domain,
                entra_tenant_id,
            } => {
                sqlx::query(
                    "INSERT INTO settings_domains (tenant_id, domain, entra_tenant_id) VALUES ($1, $2, $3) \
                     ON CONFLICT (tenant_id, domain) DO UPDATE SET entra_tenant_id = EXCLUDED.entra_tenant_id",
                )
                .bind(tenant_id.as_uuid())
                .bind(domain)
                .bind(entra_tenant_id.as_uuid())
                .execute(connection)
                .await?;
            }
            SettingsChange::DomainProven {
                tenant_id,
                domain,
                proof,
            } => {
                sqlx::query(
                    "UPDATE settings_domains SET proof = $3 WHERE tenant_id = $1 AND domain = $2",
                )
                .bind(tenant_id.as_uuid())
                .bind(domain)
                .bind(proof)
                .execute(connection)
                .await?;
            }
            SettingsChange::DomainReleased { tenant_id, domain } => {
                sqlx::query("DELETE FROM settings_domains WHERE tenant_id = $1 AND domain = $2")
                    .bind(tenant_id.as_uuid())
                    .bind(domain)
                    .execute(connection)
                    .await?;
            }
            SettingsChange::User(row) => {
                sqlx::query(
                    "INSERT INTO settings_users (tenant_id, user_id, email, display_name, role, locale, method, active, \
                     entra_domain, entra_tenant_id, entra_identity_bound, has_password, phone, last_sign_in_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, true, NULL, NULL, false, false, NULL, NULL)",
                )
                .bind(row.tenant_id.as_uuid())
                .bind(row.user_id.as_uuid())
                .bind(row.email)
                .bind(row.display_name)
                .bind(row.role)
                .bind(row.locale)
                .bind(row.method)
                .execute(connection)
                .await?;
            }
            SettingsChange::UserForgotten { tenant_id, user_id } => {
                crate::runner::delete_person(connection, "settings_users", tenant_id, user_id)
                    .await?;
            }
            SettingsChange::Update {
                tenant_id,
                user_id,
                field,
            } => write_user_field(connection, tenant_id, user_id, field).await?,
        }
        Ok(())
    }
}

/// A personal field as stored: the events' sealed form (the API opens it when serving).
fn sealed<T: serde::Serialize>(field: &domain::values::Personal<T>) -> serde_json::Value {
    serde_json::to_value(field).unwrap_or(serde_json::Value::Null)
}

fn user_changes(event: &UserEvent) -> Vec<SettingsChange> {
    let update = |tenant_id: &TenantId, user_id: &UserId, field| SettingsChange::Update {
        tenant_id: *tenant_id,
        user_id: *user_id,
        field,
    };
    match event {
        UserEvent::UserCreated {
            tenant_id,
            user_id,
            email,
            display_name,
            role,
            locale,
            method,
            ..
        } => {
            vec![SettingsChange::User(Box::new(NewUserRow {
                tenant_id: *tenant_id,
                user_id: *user_id,
                email: sealed(email),
                display_name: sealed(display_name),
                role: role.as_str(),
                locale: locale.as_str(),
                method: match method {
                    UserMethod::Sms => "sms",
                    UserMethod::EntraId => "entra_id",
                },
            }))]
        }
        UserEvent::UserEmailChanged {
            tenant_id,
            user_id,
            email,
            ..
        } => vec![update(tenant_id, user_id, UserField::Email(sealed(email)))],
        UserEvent::UserDeactivated { tenant_id, user_id } => {
            vec![update(tenant_id, user_id, UserField::Active(false))]
        }
        UserEvent::UserReactivated { tenant_id, user_id } => {
            vec![update(tenant_id, user_id, UserField::Active(true))]
        }
        UserEvent::UserLinkedToEntra {
            tenant_id,
            user_id,
            domain,
            entra_tenant_id,
            ..
        } => vec![
            update(
                tenant_id,
                user_id,
                UserField::Linked {
                    domain: domain.as_str().to_owned(),
                    entra_tenant_id: *entra_tenant_id,
                },
            ),
            update(tenant_id, user_id, UserField::HasPassword(false)),
        ],
        UserEvent::UserUnlinkedFromEntra {
            tenant_id, user_id, ..
        } => vec![update(tenant_id, user_id, UserField::Unlinked)],
        UserEvent::PasswordSet {
            tenant_id, user_id, ..
        } => vec![update(tenant_id, user_id, UserField::HasPassword(true))],
        UserEvent::PhoneEnrolled {
            tenant_id,
            user_id,
            phone,
        } => vec![update(
            tenant_id,
            user_id,
            UserField::Phone(Some(sealed(phone))),
        )],
        UserEvent::PhoneRemoved { tenant_id, user_id } => {
            vec![update(tenant_id, user_id, UserField::Phone(None))]
        }
        UserEvent::EntraIdentityBound {
            tenant_id, user_id, ..
        } => vec![update(tenant_id, user_id, UserField::IdentityBound)],
        UserEvent::PasswordTokenIssued { .. } | UserEvent::NotificationRequeued { .. } => vec![],
        UserEvent::UserForgotten {
            tenant_id, user_id, ..
        } => {
            vec![SettingsChange::UserForgotten {
                tenant_id: *tenant_id,
                user_id: *user_id,
            }]
        }
    }
}

async fn write_user_field(
    connection: &mut PgConnection,
    tenant_id: TenantId,
    user_id: UserId,
    field: UserField,
) -> Result<(), sqlx::Error> {
    macro_rules! user {
        ($assignment:literal) => {
            sqlx::query(concat!(
                "UPDATE settings_users SET ",
                $assignment,
                " WHERE tenant_id = $1 AND user_id = $2"
            ))
            .bind(tenant_id.as_uuid())
            .bind(user_id.as_uuid())
        };
    }
    let query = match field {
        UserField::Email(email) => user!("email = $3").bind(email),
        UserField::Active(active) => user!("active = $3").bind(active),
        UserField::Linked {
            domain,
            entra_tenant_id,
        } => user!("entra_domain = $3, entra_tenant_id = $4, entra_identity_bound = false")
            .bind(domain)
            .bind(entra_tenant_id.as_uuid()),
        UserField::Unlinked => {
            user!("entra_domain = NULL, entra_tenant_id = NULL, entra_identity_bound = false")
        }
        UserField::IdentityBound => user!("entra_identity_bound = true"),
        UserField::HasPassword(has) => user!("has_password = $3").bind(has),
        UserField::Phone(masked) => user!("phone = $3").bind(masked),
        UserField::LastSignIn(at) => user!("last_sign_in_at = $3").bind(at),
    };
    query.execute(connection).await?;
    Ok(())
}

/// A domain as the settings screen lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SettingsDomain {
    /// The domain.
    pub domain: String,
    /// Its Entra tenant.
    pub entra_tenant_id: EntraTenantId,
    /// Consent of that Entra tenant; `None` when none was recorded yet.
    pub consent: Option<Consent>,
    /// How the tenant proved it owns the domain (`dns_txt`, `entra_verified_domain`); `None`
    /// while the domain is pending: not bound for sign-in, no user can be linked.
    pub proof: Option<String>,
}

/// A user as the settings screen lists it. Personal fields are sealed as the events carry them;
/// the API opens them (and masks the phone) when it serves the screen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct SettingsUser {
    /// The user.
    #[sqlx(try_from = "Uuid")]
    pub user_id: UserId,
    /// E-mail (sealed).
    pub email: serde_json::Value,
    /// Display name (sealed).
    pub display_name: serde_json::Value,
    /// `administrator` or `user`.
    pub role: String,
    /// `nl` or `en`.
    pub locale: String,
    /// `sms` or `entra_id`, as chosen at creation.
    pub method: String,
    /// Not deactivated.
    pub active: bool,
    /// The domain the user is linked to Entra ID through, if linked.
    pub entra_domain: Option<String>,
    /// The first Entra sign-in bound the identity.
    pub entra_identity_bound: bool,
    /// A password is set.
    pub has_password: bool,
    /// The enrolled phone (sealed).
    pub phone: Option<serde_json::Value>,
    /// The last successful sign-in.
    pub last_sign_in_at: Option<DateTime<Utc>>,
}

/// The settings screen of one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SettingsView {
    /// The tenant.
    pub tenant_id: TenantId,
    /// Its display name.
    pub display_name: String,
    /// Its default locale.
    pub default_locale: String,
    /// SMS required for users who do not sign in through Entra ID.
    pub sms_required: bool,
    /// Its domains.
    pub domains: Vec<SettingsDomain>,
    /// Some domain's Entra tenant has not granted consent: show the "Verified Publisher" warning.
    pub consent_warning: bool,
}

/// The tenant part of the settings screen; `None` for an unknown tenant.
///
/// # Errors
/// A database error.
pub async fn settings(
    pool: &PgPool,
    tenant_id: TenantId,
) -> Result<Option<SettingsView>, sqlx::Error> {
    let tenant: Option<(String, String, bool)> =
        sqlx::query_as("SELECT display_name, default_locale, sms_required FROM settings_tenants WHERE tenant_id = $1")
            .bind(tenant_id.as_uuid())
            .fetch_optional(pool)
            .await?;
    let Some((display_name, default_locale, sms_required)) = tenant else {
        return Ok(None);
    };
    let rows: Vec<(String, Uuid, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT d.domain, d.entra_tenant_id, c.state, d.proof FROM settings_domains d \
         LEFT JOIN settings_consents c ON c.tenant_id = d.tenant_id AND c.entra_tenant_id = d.entra_tenant_id \
         WHERE d.tenant_id = $1 ORDER BY d.domain",
    )
    .bind(tenant_id.as_uuid())
    .fetch_all(pool)
    .await?;
    let domains: Vec<SettingsDomain> = rows
        .into_iter()
        .filter_map(|(domain, entra, state, proof)| {
            Some(SettingsDomain {
                domain,
                entra_tenant_id: EntraTenantId::try_from_uuid(entra).ok()?,
                consent: state.as_deref().and_then(parse_consent),
                proof,
            })
        })
        .collect();
    let consent_warning = domains
        .iter()
        .any(|domain| domain.consent != Some(Consent::Granted));
    Ok(Some(SettingsView {
        tenant_id,
        display_name,
        default_locale,
        sms_required,
        domains,
        consent_warning,
    }))
}

/// A page of the tenant's users in id order (creation order: ids are UUIDv7), after `after`.
///
/// # Errors
/// A database error.
pub async fn users(
    pool: &PgPool,
    tenant_id: TenantId,
    after: Option<UserId>,
    limit: i64,
) -> Result<Vec<SettingsUser>, sqlx::Error> {
    sqlx::query_as(
        "SELECT user_id, email, display_name, role, locale, method, active, entra_domain, entra_identity_bound, \
                has_password, phone, last_sign_in_at \
         FROM settings_users WHERE tenant_id = $1 AND ($2::uuid IS NULL OR user_id > $2) ORDER BY user_id LIMIT $3",
    )
    .bind(tenant_id.as_uuid())
    .bind(after.map(|id| id.as_uuid()))
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// How many users of the tenant are linked to Entra ID through `domain` now.
///
/// # Errors
/// A database error.
pub async fn linked_user_count(
    pool: &PgPool,
    tenant_id: TenantId,
    domain: &DomainName,
) -> Result<u32, sqlx::Error> {
    let count: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM settings_users WHERE tenant_id = $1 AND entra_domain = $2",
    )
    .bind(tenant_id.as_uuid())
    .bind(domain.as_str())
    .fetch_one(pool)
    .await?;
    Ok(u32::try_from(count).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    use domain::user::LinkOrigin;
    use domain::values::MobileNumber;

    use super::*;
    use crate::test_support::{domain, entra, envelope, tenant, user};

    fn changes(event: DomainEvent) -> Vec<SettingsChange> {
        SettingsScreen::changes(&envelope("x", 1, event))
    }

    #[test]
    fn the_phone_is_stored_as_the_event_carries_it() {
        let enrolled = UserEvent::PhoneEnrolled {
            tenant_id: tenant(),
            user_id: user(),
            phone: domain::values::Personal::new(
                user(),
                MobileNumber::parse("+31612345678").unwrap(),
            ),
        };
        assert_eq!(
            changes(DomainEvent::User(enrolled)),
            vec![SettingsChange::Update {
                tenant_id: tenant(),
                user_id: user(),
                field: UserField::Phone(Some(
                    serde_json::json!({"personal": {"subject": user(), "value": "+31612345678"}})
                ))
            }]
        );
    }

    #[test]
    fn last_sign_in_is_the_recorded_time_of_success() {
        let succeeded = SignInEvent::SignInSucceeded {
            sign_in_id: domain::ids::SignInId::from_uuid(Uuid::nil()),
            tenant_id: tenant(),
            user_id: user(),
            method: domain::sign_in::SignInMethod::EntraId,
        };
        let event = envelope("sign_in", 2, DomainEvent::SignIn(succeeded));
        assert_eq!(
            SettingsScreen::changes(&event),
            vec![SettingsChange::Update {
                tenant_id: tenant(),
                user_id: user(),
                field: UserField::LastSignIn(event.recorded_at)
            }]
        );
    }

    #[test]
    fn domains_follow_claims_and_links_follow_users() {
        let claimed = DomainClaimEvent::DomainClaimed {
            tenant_id: tenant(),
            domain: domain(),
            entra_tenant_id: entra(),
        };
        assert_eq!(
            changes(DomainEvent::DomainClaim(claimed)),
            vec![SettingsChange::Domain {
                tenant_id: tenant(),
                domain: "contoso.com".to_owned(),
                entra_tenant_id: entra()
            }]
        );
        let linked = UserEvent::UserLinkedToEntra {
            tenant_id: tenant(),
            user_id: user(),
            domain: domain(),
            entra_tenant_id: entra(),
            password_removed: true,
            origin: LinkOrigin::DomainLink,
        };
        assert_eq!(changes(DomainEvent::User(linked)).len(), 2);
    }

    #[test]
    fn a_consent_missing_sign_in_after_a_grant_shows_the_warning_until_the_next_grant() {
        let granted = || {
            DomainEvent::Tenant(TenantEvent::EntraConsentGranted {
                tenant_id: tenant(),
                entra_tenant_id: entra(),
            })
        };
        let consent_missing = DomainEvent::SignIn(SignInEvent::SignInFailed {
            sign_in_id: domain::ids::SignInId::from_uuid(Uuid::nil()),
            tenant_id: tenant(),
            user_id: user(),
            reason: SignInFailure::EntraConsentRequired {
                entra_tenant_id: Some(entra()),
                error_code: domain::values::ProviderErrorCode::parse("AADSTS65001").unwrap(),
            },
        });
        let consent = |state, error_code: Option<&str>| SettingsChange::Consent {
            tenant_id: tenant(),
            entra_tenant_id: entra(),
            state,
            error_code: error_code.map(str::to_owned),
        };
        let facts: Vec<SettingsChange> = [granted(), consent_missing, granted()]
            .into_iter()
            .flat_map(changes)
            .collect();
        assert_eq!(
            facts,
            [
                consent(Consent::Granted, None),
                consent(Consent::Required, Some("AADSTS65001")),
                consent(Consent::Granted, None),
            ],
            "each fact is written in log order; the write keeps the latest"
        );
    }

    #[test]
    fn a_proof_marks_the_domain_proven_with_its_method() {
        let proven = |method| DomainClaimEvent::DomainProven {
            tenant_id: tenant(),
            domain: domain(),
            method,
        };
        for (method, proof) in [
            (
                DomainProofMethod::DnsTxt {
                    record_name: "_finteqx-challenge.contoso.com".to_owned(),
                },
                "dns_txt",
            ),
            (
                DomainProofMethod::EntraVerifiedDomain {
                    entra_tenant_id: entra(),
                },
                "entra_verified_domain",
            ),
        ] {
            assert_eq!(
                changes(DomainEvent::DomainClaim(proven(method))),
                vec![SettingsChange::DomainProven {
                    tenant_id: tenant(),
                    domain: "contoso.com".to_owned(),
                    proof,
                }]
            );
        }
    }
}

use cqrs_es::test::TestFramework;

use super::*;
use crate::test_support::{entra_tenant, error_code, tenant_id};

type Given = TestFramework<Tenant>;

fn registered() -> TenantEvent {
    TenantEvent::TenantRegistered {
        tenant_id: tenant_id(),
        display_name: DisplayName::parse("Akkermans Accountants").unwrap(),
        default_locale: Locale::Nl,
    }
}

#[test]
fn registers_a_new_tenant() {
    Given::with(())
        .given_no_previous_events()
        .when(TenantCommand::RegisterTenant {
            tenant_id: tenant_id(),
            display_name: DisplayName::parse("Akkermans Accountants").unwrap(),
            default_locale: Locale::Nl,
        })
        .then_expect_events(vec![registered()]);
}

#[test]
fn refuses_a_second_registration() {
    Given::with(())
        .given(vec![registered()])
        .when(TenantCommand::RegisterTenant {
            tenant_id: tenant_id(),
            display_name: DisplayName::parse("Other").unwrap(),
            default_locale: Locale::En,
        })
        .then_expect_error(TenantError::AlreadyRegistered);
}

#[test]
fn refuses_policy_changes_before_registration() {
    Given::with(())
        .given_no_previous_events()
        .when(TenantCommand::SetMfaPolicy { sms_required: true })
        .then_expect_error(TenantError::NotRegistered);
}

#[test]
fn requiring_sms_is_recorded_once() {
    Given::with(())
        .given(vec![registered()])
        .when(TenantCommand::SetMfaPolicy { sms_required: true })
        .then_expect_events(vec![TenantEvent::MfaPolicySet {
            tenant_id: tenant_id(),
            sms_required: true,
        }]);
    Given::with(())
        .given(vec![
            registered(),
            TenantEvent::MfaPolicySet {
                tenant_id: tenant_id(),
                sms_required: true,
            },
        ])
        .when(TenantCommand::SetMfaPolicy { sms_required: true })
        .then_expect_events(vec![]);
}

#[test]
fn records_admin_consent_granted_and_refused() {
    Given::with(())
        .given(vec![registered()])
        .when(TenantCommand::RecordEntraConsent {
            entra_tenant_id: entra_tenant(1),
            decision: ConsentDecision::Granted,
        })
        .then_expect_events(vec![TenantEvent::EntraConsentGranted {
            tenant_id: tenant_id(),
            entra_tenant_id: entra_tenant(1),
        }]);
    Given::with(())
        .given(vec![registered()])
        .when(TenantCommand::RecordEntraConsent {
            entra_tenant_id: entra_tenant(1),
            decision: ConsentDecision::Refused {
                error_code: error_code("access_denied"),
            },
        })
        .then_expect_events(vec![TenantEvent::EntraConsentRefused {
            tenant_id: tenant_id(),
            entra_tenant_id: Some(entra_tenant(1)),
            error_code: error_code("access_denied"),
        }]);
    Given::with(())
        .given(vec![registered()])
        .when(TenantCommand::RecordEntraConsentRefusedWithoutTenant {
            error_code: error_code("access_denied"),
        })
        .then_expect_events(vec![TenantEvent::EntraConsentRefused {
            tenant_id: tenant_id(),
            entra_tenant_id: None,
            error_code: error_code("access_denied"),
        }]);
}

#[test]
fn a_later_refusal_does_not_revoke_granted_consent() {
    let mut tenant = Tenant::default();
    for event in [
        registered(),
        TenantEvent::EntraConsentGranted {
            tenant_id: tenant_id(),
            entra_tenant_id: entra_tenant(1),
        },
        TenantEvent::EntraConsentRefused {
            tenant_id: tenant_id(),
            entra_tenant_id: Some(entra_tenant(1)),
            error_code: error_code("access_denied"),
        },
    ] {
        tenant.evolve(event);
    }
    assert_eq!(tenant.consent(entra_tenant(1)), Some(ConsentState::Granted));
    let again = tenant
        .decide(TenantCommand::RecordEntraConsent {
            entra_tenant_id: entra_tenant(1),
            decision: ConsentDecision::Granted,
        })
        .unwrap();
    assert_eq!(
        again,
        [TenantEvent::EntraConsentGranted {
            tenant_id: tenant_id(),
            entra_tenant_id: entra_tenant(1),
        }],
        "a repeated grant is recorded: consent may have gone missing since the last one"
    );
}

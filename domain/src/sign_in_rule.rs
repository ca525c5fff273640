//! "How must this user sign in now?": one pure function of the tenant's MFA policy, the user's
//! Entra link and phone enrollment. The sign-in decision and the login-page projection both call
//! it, so the two cannot disagree.

use serde::{Deserialize, Serialize};

use crate::ids::EntraTenantId;

/// Everything the sign-in rule looks at; nothing else may influence the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignInFacts {
    /// The account is active (not deactivated).
    pub active: bool,
    /// The tenant requires SMS for every user who does not sign in through Entra ID.
    pub tenant_requires_sms: bool,
    /// The Entra tenant the user is linked through, if linked.
    pub entra_link: Option<EntraTenantId>,
    /// A mobile number is enrolled.
    pub phone_enrolled: bool,
    /// A password is set.
    pub has_password: bool,
}

/// The way a user must sign in now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SignInRequirement {
    /// The account is deactivated; no way in.
    Blocked,
    /// "Inloggen met Microsoft Entra ID" against this Entra tenant; a password is never accepted.
    EntraId {
        /// The user's Entra tenant: the authority the login page sends the user to.
        entra_tenant_id: EntraTenantId,
    },
    /// No password yet: the user must first use the set-password link from their e-mail.
    SetPasswordFirst,
    /// Password alone.
    Password,
    /// Password, then a code sent to the enrolled mobile number.
    PasswordAndSms,
    /// Password, then enroll a mobile number and confirm it with a code.
    PasswordThenEnrollPhone,
}

/// Decides how a user must sign in.
///
/// The order encodes the rules: a deactivated account is blocked; an Entra-linked user signs in
/// only through Entra; a password is needed before anything else; SMS applies when the tenant
/// requires it, and also whenever the user has a phone enrolled, because a second factor once
/// enrolled is never silently dropped (ADR-0009).
pub const fn required_sign_in(facts: &SignInFacts) -> SignInRequirement {
    if !facts.active {
        return SignInRequirement::Blocked;
    }
    if let Some(entra_tenant_id) = facts.entra_link {
        return SignInRequirement::EntraId { entra_tenant_id };
    }
    if !facts.has_password {
        return SignInRequirement::SetPasswordFirst;
    }
    match (facts.phone_enrolled, facts.tenant_requires_sms) {
        (true, _) => SignInRequirement::PasswordAndSms,
        (false, true) => SignInRequirement::PasswordThenEnrollPhone,
        (false, false) => SignInRequirement::Password,
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn entra() -> EntraTenantId {
        EntraTenantId::try_from_uuid(Uuid::from_u128(7)).unwrap()
    }

    #[test]
    fn every_combination_has_the_documented_answer() {
        use SignInRequirement::*;
        // (active, requires_sms, linked, phone, password) => requirement
        let table = [
            (
                (false, true, true, true, true),
                Blocked,
                "deactivated beats everything",
            ),
            (
                (false, false, false, false, false),
                Blocked,
                "deactivated without anything",
            ),
            (
                (true, true, true, true, true),
                EntraId {
                    entra_tenant_id: entra(),
                },
                "linked ignores SMS and password",
            ),
            (
                (true, false, true, false, false),
                EntraId {
                    entra_tenant_id: entra(),
                },
                "linked, nothing else",
            ),
            (
                (true, true, false, true, false),
                SetPasswordFirst,
                "no password yet",
            ),
            (
                (true, false, false, false, false),
                SetPasswordFirst,
                "no password, no policy",
            ),
            (
                (true, false, false, false, true),
                Password,
                "no policy, no phone",
            ),
            (
                (true, true, false, false, true),
                PasswordThenEnrollPhone,
                "policy, no phone yet",
            ),
            (
                (true, true, false, true, true),
                PasswordAndSms,
                "policy and phone",
            ),
            (
                (true, false, false, true, true),
                PasswordAndSms,
                "enrolled phone keeps SMS after policy is off",
            ),
        ];
        for ((active, tenant_requires_sms, linked, phone_enrolled, has_password), expected, why) in
            table
        {
            let facts = SignInFacts {
                active,
                tenant_requires_sms,
                entra_link: linked.then(entra),
                phone_enrolled,
                has_password,
            };
            assert_eq!(required_sign_in(&facts), expected, "{why}");
        }
    }
}

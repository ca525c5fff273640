//! RFC 9457 problem details: every refused request gets `application/problem+json` with a stable
//! `type` per broken rule, a human `detail` and, for bad input, the offending `field`. The one
//! table from domain errors to HTTP lives here.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use domain::domain_claim::DomainClaimError;
use domain::email_claim::EmailClaimError;
use domain::sign_in::SignInError;
use domain::tenant::TenantError;
use domain::user::UserError;
use domain::values::ValueError;

use crate::application::{CommandError, EntraFlowError};

/// The media type of problem details.
pub const PROBLEM_JSON: &str = "application/problem+json";
/// The prefix of every problem type.
pub const TYPE_PREFIX: &str = "urn:finteqx:problem:";

/// Every problem type the API answers with (after [`TYPE_PREFIX`]); published in the OpenAPI
/// document as `x-problem-types`.
pub const PROBLEM_TYPES: &[&str] = &[
    "already-exists",
    "body-too-large",
    "code-attempts-exhausted",
    "code-expired",
    "code-malformed",
    "code-resend-too-soon",
    "code-wrong",
    "concurrent-change",
    "cross-site-request",
    "cursor-malformed",
    "dependency-unavailable",
    "display-name-control-characters",
    "display-name-empty",
    "display-name-too-long",
    "domain-claimed-by-another-tenant",
    "domain-has-linked-users",
    "domain-malformed",
    "domain-not-linked",
    "domain-not-proven",
    "domain-not-registrable",
    "domain-proof-insufficient",
    "domain-proof-not-found",
    "email-domain-of-another-organisation",
    "email-malformed",
    "email-not-held",
    "email-not-on-domain",
    "email-taken",
    "email-too-long",
    "email-unchanged",
    "entra-consent-not-confirmed",
    "entra-consent-required",
    "entra-email-not-verified",
    "entra-guest-account",
    "entra-identity-mismatch",
    "entra-not-configured",
    "entra-not-linked",
    "entra-not-primary-address",
    "entra-sign-in-failed",
    "entra-sign-in-refused",
    "entra-state-unknown",
    "entra-tenant-id-invalid",
    "entra-wrong-tenant",
    "erasure-reason-unknown",
    "event-type-malformed",
    "filter-needs-events-format",
    "forbidden",
    "format-unknown",
    "hash-malformed",
    "id-malformed",
    "invalid-body",
    "invalid-query",
    "json-required",
    "limit-out-of-range",
    "locale-unsupported",
    "malformed-json",
    "message-not-dead",
    "method-not-allowed",
    "method-unknown",
    "no-code-sent",
    "no-phone-enrolled",
    "not-found",
    "password-not-accepted",
    "password-too-long",
    "password-too-short",
    "personal-microsoft-tenant",
    "phone-already-enrolled",
    "phone-malformed",
    "phone-not-mobile",
    "phone-required",
    "provider-error-code-malformed",
    "role-unknown",
    "set-password-link-expired",
    "set-password-link-invalid",
    "set-password-link-used",
    "sign-in-already-started",
    "sign-in-expired",
    "sign-in-failed",
    "sign-in-finished",
    "sign-in-locked",
    "sign-in-not-found",
    "sign-in-with-password",
    "sms-not-required",
    "sms-send-limit",
    "state-unknown",
    "tenant-not-found",
    "time-malformed",
    "time-range-reversed",
    "too-many-codes",
    "too-many-lookups",
    "too-many-sign-in-attempts",
    "too-many-users",
    "unauthenticated",
    "unreadable-body",
    "user-already-deactivated",
    "user-already-linked",
    "user-deactivated",
    "user-not-deactivated",
    "user-not-found",
    "user-not-linked",
    "user-signs-in-with-entra",
];

/// A problem response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// `urn:finteqx:problem:<slug>`, stable per broken rule.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// A short, stable summary of the type.
    #[schema(value_type = String)]
    pub title: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// What happened, for a person.
    pub detail: String,
    /// The offending request field, for bad input.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub field: Option<&'static str>,
    /// Whether repeating the same request may succeed (conflicts, unavailable dependencies).
    pub retryable: bool,
}

impl Problem {
    /// A problem of `slug` with `status`.
    pub fn new(
        status: StatusCode,
        slug: &str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            problem_type: format!("{TYPE_PREFIX}{slug}"),
            title,
            status: status.as_u16(),
            detail: detail.into(),
            field: None,
            // Only a lost race or an outage can go away by itself.
            retryable: status == StatusCode::SERVICE_UNAVAILABLE || slug == "concurrent-change",
        }
    }

    /// Names the offending field.
    #[must_use]
    pub const fn with_field(mut self, field: &'static str) -> Self {
        self.field = Some(field);
        self
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// 404, the same for missing and foreign resources.
    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "Not found",
            "the resource does not exist",
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = (status, axum::Json(&self)).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        response
    }
}

/// Status, slug and field of a value error.
pub const fn value_problem(error: &ValueError) -> &'static str {
    match error {
        ValueError::EmailMalformed => "email-malformed",
        ValueError::EmailTooLong => "email-too-long",
        ValueError::DomainMalformed => "domain-malformed",
        ValueError::DomainNotRegistrable => "domain-not-registrable",
        ValueError::PhoneMalformed => "phone-malformed",
        ValueError::PhoneNotMobile => "phone-not-mobile",
        ValueError::DisplayNameEmpty => "display-name-empty",
        ValueError::DisplayNameTooLong => "display-name-too-long",
        ValueError::DisplayNameControlCharacters => "display-name-control-characters",
        ValueError::LocaleUnsupported => "locale-unsupported",
        ValueError::RoleUnknown => "role-unknown",
        ValueError::EntraTenantIdInvalid => "entra-tenant-id-invalid",
        ValueError::PersonalMicrosoftTenant => "personal-microsoft-tenant",
        ValueError::HashMalformed => "hash-malformed",
        ValueError::PasswordTooShort => "password-too-short",
        ValueError::PasswordTooLong => "password-too-long",
        ValueError::ProviderErrorCodeMalformed => "provider-error-code-malformed",
        ValueError::CodeMalformed => "code-malformed",
    }
}

const fn user_problem(error: &UserError) -> (StatusCode, &'static str, Option<&'static str>) {
    use StatusCode as S;
    match error {
        UserError::UserNotFound => (S::NOT_FOUND, "user-not-found", None),
        UserError::UserAlreadyExists => (S::CONFLICT, "already-exists", None),
        UserError::UserDeactivated => (S::CONFLICT, "user-deactivated", None),
        UserError::AlreadyDeactivated => (S::CONFLICT, "user-already-deactivated", None),
        UserError::NotDeactivated => (S::CONFLICT, "user-not-deactivated", None),
        UserError::EmailUnchanged => (S::UNPROCESSABLE_ENTITY, "email-unchanged", Some("email")),
        UserError::EmailNotOnDomain => (
            S::UNPROCESSABLE_ENTITY,
            "email-not-on-domain",
            Some("email"),
        ),
        UserError::DomainNotClaimedByTenant => {
            (S::UNPROCESSABLE_ENTITY, "domain-not-linked", Some("domain"))
        }
        UserError::AlreadyLinked => (S::CONFLICT, "user-already-linked", None),
        UserError::NotLinked => (S::CONFLICT, "user-not-linked", None),
        UserError::LinkedToEntra => (S::CONFLICT, "user-signs-in-with-entra", None),
        UserError::PasswordTokenUnknown => (
            S::UNPROCESSABLE_ENTITY,
            "set-password-link-invalid",
            Some("token"),
        ),
        UserError::PasswordTokenExpired => (
            S::UNPROCESSABLE_ENTITY,
            "set-password-link-expired",
            Some("token"),
        ),
        UserError::PasswordTokenAlreadyUsed => (
            S::UNPROCESSABLE_ENTITY,
            "set-password-link-used",
            Some("token"),
        ),
        UserError::PhoneAlreadyEnrolled => (S::CONFLICT, "phone-already-enrolled", None),
        UserError::NoPhoneEnrolled => (S::CONFLICT, "no-phone-enrolled", None),
        UserError::EntraSignInRefused(_) => (S::FORBIDDEN, "entra-sign-in-refused", None),
    }
}

const fn sign_in_problem(error: &SignInError) -> (StatusCode, &'static str, Option<&'static str>) {
    use StatusCode as S;
    match error {
        SignInError::AlreadyStarted => (S::CONFLICT, "sign-in-already-started", None),
        SignInError::NotStarted => (S::NOT_FOUND, "sign-in-not-found", None),
        SignInError::Finished => (S::CONFLICT, "sign-in-finished", None),
        SignInError::AttemptExpired => (S::CONFLICT, "sign-in-expired", None),
        SignInError::PasswordNotAccepted => (S::CONFLICT, "password-not-accepted", None),
        SignInError::SmsNotRequired => (S::CONFLICT, "sms-not-required", None),
        SignInError::PhoneNumberRequired => {
            (S::UNPROCESSABLE_ENTITY, "phone-required", Some("phone"))
        }
        SignInError::ResendTooSoon { .. } => (S::TOO_MANY_REQUESTS, "code-resend-too-soon", None),
        SignInError::TooManyCodes => (S::TOO_MANY_REQUESTS, "too-many-codes", None),
        SignInError::SendLimitReached { .. } => (S::TOO_MANY_REQUESTS, "sms-send-limit", None),
        SignInError::NoCodeIssued => (S::CONFLICT, "no-code-sent", None),
        SignInError::CodeExpired => (S::UNPROCESSABLE_ENTITY, "code-expired", Some("code")),
        SignInError::CodeAttemptsExhausted => (
            S::UNPROCESSABLE_ENTITY,
            "code-attempts-exhausted",
            Some("code"),
        ),
    }
}

const fn entra_problem(error: EntraFlowError) -> (StatusCode, &'static str, Option<&'static str>) {
    use StatusCode as S;
    match error {
        EntraFlowError::NotConfigured => (S::SERVICE_UNAVAILABLE, "entra-not-configured", None),
        EntraFlowError::UsePassword => (S::CONFLICT, "sign-in-with-password", Some("email")),
        EntraFlowError::StateUnknown => (S::BAD_REQUEST, "entra-state-unknown", Some("state")),
        EntraFlowError::ConsentNotConfirmed => (S::FORBIDDEN, "entra-consent-not-confirmed", None),
    }
}

impl From<&CommandError> for Problem {
    fn from(error: &CommandError) -> Self {
        use StatusCode as S;
        let (status, slug, field) = match error {
            CommandError::InvalidInput { field, error } => {
                (S::UNPROCESSABLE_ENTITY, value_problem(error), Some(*field))
            }
            CommandError::Tenant(TenantError::NotRegistered) => {
                (S::NOT_FOUND, "tenant-not-found", None)
            }
            CommandError::Tenant(TenantError::AlreadyRegistered) => {
                (S::CONFLICT, "already-exists", None)
            }
            CommandError::User(error) => user_problem(error),
            CommandError::DomainClaim(DomainClaimError::ClaimedByAnotherTenant) => (
                S::CONFLICT,
                "domain-claimed-by-another-tenant",
                Some("domain"),
            ),
            CommandError::DomainClaim(DomainClaimError::NotClaimedByTenant) => {
                (S::UNPROCESSABLE_ENTITY, "domain-not-linked", Some("domain"))
            }
            CommandError::DomainClaim(DomainClaimError::HasLinkedUsers { .. }) => {
                (S::CONFLICT, "domain-has-linked-users", Some("domain"))
            }
            CommandError::DomainClaim(DomainClaimError::NotProven) => {
                (S::CONFLICT, "domain-not-proven", Some("domain"))
            }
            CommandError::DomainClaim(DomainClaimError::TxtRecordNotFound) => {
                (S::CONFLICT, "domain-proof-not-found", Some("domain"))
            }
            CommandError::DomainClaim(DomainClaimError::EntraProofInsufficient) => {
                (S::CONFLICT, "domain-proof-insufficient", Some("domain"))
            }
            // Says that the domain belongs to someone else, never whom (spec §1).
            CommandError::DomainClaim(DomainClaimError::AddressOnAnotherTenantsDomain) => (
                S::CONFLICT,
                "email-domain-of-another-organisation",
                Some("email"),
            ),
            CommandError::EmailClaim(EmailClaimError::EmailTaken) => {
                (S::CONFLICT, "email-taken", Some("email"))
            }
            CommandError::EmailClaim(EmailClaimError::NotHeldByUser) => {
                (S::CONFLICT, "email-not-held", Some("email"))
            }
            CommandError::SignIn(error) => sign_in_problem(error),
            CommandError::Entra(error) => entra_problem(*error),
            CommandError::TooManySignInAttempts { .. } => {
                (S::TOO_MANY_REQUESTS, "too-many-sign-in-attempts", None)
            }
            CommandError::TooManyUsers { .. } => {
                (S::UNPROCESSABLE_ENTITY, "too-many-users", Some("user_ids"))
            }
            CommandError::Conflict => (S::CONFLICT, "concurrent-change", None),
            CommandError::Unavailable(_) => {
                (S::SERVICE_UNAVAILABLE, "dependency-unavailable", None)
            }
        };
        let detail = match error {
            // The cause of an outage is logged, not shown.
            CommandError::Unavailable(_) => {
                "a dependency is unavailable; nothing was lost, retry later".to_owned()
            }
            other => other.to_string(),
        };
        let title = status.canonical_reason().unwrap_or("Error");
        let problem = Self::new(status, slug, title, detail);
        match field {
            Some(field) => problem.with_field(field),
            None => problem,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mapped_refusal_has_a_published_type() {
        let value_errors = [
            ValueError::EmailMalformed,
            ValueError::EmailTooLong,
            ValueError::DomainMalformed,
            ValueError::DomainNotRegistrable,
            ValueError::PhoneMalformed,
            ValueError::PhoneNotMobile,
            ValueError::DisplayNameEmpty,
            ValueError::DisplayNameTooLong,
            ValueError::DisplayNameControlCharacters,
            ValueError::LocaleUnsupported,
            ValueError::RoleUnknown,
            ValueError::EntraTenantIdInvalid,
            ValueError::PersonalMicrosoftTenant,
            ValueError::HashMalformed,
            ValueError::PasswordTooShort,
            ValueError::PasswordTooLong,
            ValueError::ProviderErrorCodeMalformed,
            ValueError::CodeMalformed,
        ];
        let user_errors = [
            UserError::UserNotFound,
            UserError::UserAlreadyExists,
            UserError::UserDeactivated,
            UserError::AlreadyDeactivated,
            UserError::NotDeactivated,
            UserError::EmailUnchanged,
            UserError::EmailNotOnDomain,
            UserError::DomainNotClaimedByTenant,
            UserError::AlreadyLinked,
            UserError::NotLinked,
            UserError::LinkedToEntra,
            UserError::PasswordTokenUnknown,
            UserError::PasswordTokenExpired,
            UserError::PasswordTokenAlreadyUsed,
            UserError::PhoneAlreadyEnrolled,
            UserError::NoPhoneEnrolled,
            UserError::EntraSignInRefused(domain::entra::EntraSignInRefusal::GuestAccount),
        ];
        let sign_in_errors = [
            SignInError::AlreadyStarted,
            SignInError::NotStarted,
            SignInError::Finished,
            SignInError::AttemptExpired,
            SignInError::PasswordNotAccepted,
            SignInError::SmsNotRequired,
            SignInError::PhoneNumberRequired,
            SignInError::ResendTooSoon {
                retry_after_seconds: 1,
            },
            SignInError::TooManyCodes,
            SignInError::SendLimitReached {
                limit: domain::sign_in::SendLimit::PerUser,
            },
            SignInError::NoCodeIssued,
            SignInError::CodeExpired,
            SignInError::CodeAttemptsExhausted,
        ];
        let mut errors: Vec<CommandError> = value_errors
            .into_iter()
            .map(|e| CommandError::invalid("f", e))
            .collect();
        errors.extend(user_errors.into_iter().map(CommandError::User));
        errors.extend(sign_in_errors.into_iter().map(CommandError::SignIn));
        errors.extend([
            CommandError::Tenant(TenantError::NotRegistered),
            CommandError::Tenant(TenantError::AlreadyRegistered),
            CommandError::DomainClaim(DomainClaimError::ClaimedByAnotherTenant),
            CommandError::DomainClaim(DomainClaimError::NotClaimedByTenant),
            CommandError::DomainClaim(DomainClaimError::HasLinkedUsers { linked_users: 1 }),
            CommandError::DomainClaim(DomainClaimError::NotProven),
            CommandError::DomainClaim(DomainClaimError::TxtRecordNotFound),
            CommandError::DomainClaim(DomainClaimError::EntraProofInsufficient),
            CommandError::DomainClaim(DomainClaimError::AddressOnAnotherTenantsDomain),
            CommandError::EmailClaim(EmailClaimError::EmailTaken),
            CommandError::EmailClaim(EmailClaimError::NotHeldByUser),
            CommandError::Entra(EntraFlowError::NotConfigured),
            CommandError::Entra(EntraFlowError::UsePassword),
            CommandError::Entra(EntraFlowError::StateUnknown),
            CommandError::Entra(EntraFlowError::ConsentNotConfirmed),
            CommandError::TooManySignInAttempts {
                retry_after_seconds: 60,
            },
            CommandError::TooManyUsers { max: 1 },
            CommandError::Conflict,
            CommandError::Unavailable(anyhow::anyhow!("down")),
        ]);
        for error in errors {
            let problem = Problem::from(&error);
            let slug = problem.problem_type.trim_start_matches(TYPE_PREFIX);
            assert!(
                PROBLEM_TYPES.contains(&slug),
                "{slug} ({error:?}) is not published"
            );
        }
    }

    #[test]
    fn domain_refusals_map_to_stable_types_statuses_and_fields() {
        let cases = [
            (
                CommandError::User(UserError::EmailNotOnDomain),
                422,
                "email-not-on-domain",
                Some("email"),
                false,
            ),
            (
                CommandError::EmailClaim(EmailClaimError::EmailTaken),
                409,
                "email-taken",
                Some("email"),
                false,
            ),
            (CommandError::Conflict, 409, "concurrent-change", None, true),
            (
                CommandError::User(UserError::UserNotFound),
                404,
                "user-not-found",
                None,
                false,
            ),
            (
                CommandError::invalid("phone", ValueError::PhoneNotMobile),
                422,
                "phone-not-mobile",
                Some("phone"),
                false,
            ),
            (
                CommandError::Unavailable(anyhow::anyhow!("db down")),
                503,
                "dependency-unavailable",
                None,
                true,
            ),
        ];
        for (error, status, slug, field, retryable) in cases {
            let problem = Problem::from(&error);
            assert_eq!(
                (
                    problem.status,
                    problem.problem_type.as_str(),
                    problem.field,
                    problem.retryable
                ),
                (
                    status,
                    format!("{TYPE_PREFIX}{slug}").as_str(),
                    field,
                    retryable
                ),
                "{error:?}"
            );
        }
        assert!(
            !Problem::from(&CommandError::Unavailable(anyhow::anyhow!("secret dsn")))
                .detail
                .contains("secret")
        );
    }
}

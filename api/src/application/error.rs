use domain::domain_claim::DomainClaimError;
use domain::email_claim::EmailClaimError;
use domain::sign_in::SignInError;
use domain::tenant::TenantError;
use domain::user::UserError;
use domain::values::ValueError;

use crate::executor::ExecuteError;

/// Why a use case changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// An input is not a valid value.
    #[error("{field}: {error}")]
    InvalidInput {
        /// The offending field, as the client named it.
        field: &'static str,
        /// The broken rule.
        error: ValueError,
    },
    /// The tenant refused.
    #[error(transparent)]
    Tenant(#[from] TenantError),
    /// The user account refused.
    #[error(transparent)]
    User(#[from] UserError),
    /// The domain claim refused.
    #[error(transparent)]
    DomainClaim(#[from] DomainClaimError),
    /// The e-mail claim refused.
    #[error(transparent)]
    EmailClaim(#[from] EmailClaimError),
    /// The sign-in attempt refused.
    #[error(transparent)]
    SignIn(#[from] SignInError),
    /// An Entra flow cannot go on.
    #[error(transparent)]
    Entra(#[from] super::entra::EntraFlowError),
    /// Too many password attempts for this address or from this client; wait.
    #[error("too many sign-in attempts; wait {retry_after_seconds} seconds and try again")]
    TooManySignInAttempts {
        /// When the oldest counted attempt leaves the window.
        retry_after_seconds: i64,
    },
    /// Too many users selected in one request.
    #[error("at most {max} users can be selected at once")]
    TooManyUsers {
        /// The maximum.
        max: usize,
    },
    /// Concurrent changes kept winning; retrying the request is safe.
    #[error("the data was changed concurrently; retry")]
    Conflict,
    /// The database (or another dependency) failed; nothing was lost.
    #[error("a dependency is unavailable")]
    Unavailable(#[source] anyhow::Error),
}

impl CommandError {
    /// Wraps a value error with the field it came from.
    pub const fn invalid(field: &'static str, error: ValueError) -> Self {
        Self::InvalidInput { field, error }
    }
}

impl<E> From<ExecuteError<E>> for CommandError
where
    E: std::error::Error + Into<Self> + 'static,
{
    fn from(error: ExecuteError<E>) -> Self {
        match error {
            ExecuteError::Rejected(rejection) => rejection.into(),
            ExecuteError::Conflict { .. } => Self::Conflict,
            ExecuteError::Store(source) => Self::Unavailable(source),
        }
    }
}

impl From<crate::personal_data::SealError> for CommandError {
    fn from(error: crate::personal_data::SealError) -> Self {
        Self::Unavailable(error.into())
    }
}

impl From<sqlx::Error> for CommandError {
    fn from(error: sqlx::Error) -> Self {
        Self::Unavailable(error.into())
    }
}

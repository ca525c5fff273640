use super::SendLimit;

/// Why a sign-in attempt refused a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignInError {
    /// An attempt with this id exists already.
    #[error("the sign-in attempt already started")]
    AlreadyStarted,
    /// No such attempt in the principal's tenant.
    #[error("the sign-in attempt does not exist")]
    NotStarted,
    /// The attempt succeeded, failed or was locked.
    #[error("the sign-in attempt is finished")]
    Finished,
    /// The attempt is older than its lifetime.
    #[error("the sign-in attempt has expired; start again")]
    AttemptExpired,
    /// The password step has not succeeded.
    #[error("the password has not been accepted")]
    PasswordNotAccepted,
    /// This attempt needs no SMS code (or needs a number to enroll first).
    #[error("no SMS code is needed for this sign-in")]
    SmsNotRequired,
    /// The user has no phone yet: a number to enroll is needed.
    #[error("a mobile number is needed")]
    PhoneNumberRequired,
    /// A code was sent moments ago.
    #[error("a new code can be sent in {retry_after_seconds} seconds")]
    ResendTooSoon {
        /// Seconds until the next code may be sent.
        retry_after_seconds: u64,
    },
    /// The attempt sent its maximum number of codes.
    #[error("too many codes were sent for this sign-in")]
    TooManyCodes,
    /// An SMS send limit is reached.
    #[error("the SMS send limit is reached")]
    SendLimitReached {
        /// Which limit.
        limit: SendLimit,
    },
    /// No code was sent in this attempt.
    #[error("no code was sent")]
    NoCodeIssued,
    /// The code expired.
    #[error("the code has expired")]
    CodeExpired,
    /// The code was guessed wrong too often; request a new one.
    #[error("the code was entered wrongly too often")]
    CodeAttemptsExhausted,
}

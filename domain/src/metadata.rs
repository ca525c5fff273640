//! The metadata every event carries (spec §3): who did it, on whose behalf, when, in which
//! request, and which command caused it. The keys are a persisted contract, like event names.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Metadata key: the id of the principal that sent the command.
pub const ACTOR_ID: &str = "actor_id";
/// Metadata key: the principal's role ([`ActorRole`]).
pub const ACTOR_ROLE: &str = "actor_role";
/// Metadata key: the person the actor acted for (a support engineer for a user), or empty.
pub const ON_BEHALF_OF: &str = "on_behalf_of";
/// Metadata key: the tenant the command was scoped to, or empty for platform commands.
pub const TENANT_ID: &str = "tenant_id";
/// Metadata key: when the command was decided (RFC 3339, UTC).
pub const OCCURRED_AT: &str = "occurred_at";
/// Metadata key: the request or correlation id that ties a user action's events together.
pub const CORRELATION_ID: &str = "correlation_id";
/// Metadata key: the name of the command that produced the event.
pub const CAUSATION_COMMAND: &str = "causation_command";
/// Metadata key: a unique id of the command execution (shared by the events it produced).
pub const COMMAND_ID: &str = "command_id";

/// Every key an event's metadata must carry.
pub const REQUIRED_KEYS: [&str; 8] = [
    ACTOR_ID,
    ACTOR_ROLE,
    ON_BEHALF_OF,
    TENANT_ID,
    OCCURRED_AT,
    CORRELATION_ID,
    CAUSATION_COMMAND,
    COMMAND_ID,
];

/// Who sent a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorRole {
    /// A tenant's administrator (Beheerder).
    Administrator,
    /// An end user of a tenant, signing in or managing their own credentials.
    User,
    /// Platform support staff.
    Support,
    /// An auditor.
    Auditor,
    /// The platform operator (CLI).
    Operator,
    /// The service itself: reactors and workers.
    System,
    /// Someone not yet signed in (the login page).
    Anonymous,
}

impl ActorRole {
    /// The wire and metadata name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Administrator => "administrator",
            Self::User => "user",
            Self::Support => "support",
            Self::Auditor => "auditor",
            Self::Operator => "operator",
            Self::System => "system",
            Self::Anonymous => "anonymous",
        }
    }
}

impl FromStr for ActorRole {
    type Err = UnknownActorRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Self::Administrator,
            Self::User,
            Self::Support,
            Self::Auditor,
            Self::Operator,
            Self::System,
            Self::Anonymous,
        ]
        .into_iter()
        .find(|role| role.as_str() == s)
        .ok_or(UnknownActorRole)
    }
}

/// The metadata value is not a known actor role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown actor role")]
pub struct UnknownActorRole;

/// A command's name as recorded in [`CAUSATION_COMMAND`]: the spec's verb, verbatim.
pub trait NamedCommand {
    /// The command's name, for example `LinkUserToEntra`.
    fn command_name(&self) -> &'static str;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actor_roles_round_trip_through_their_names() {
        for role in [
            ActorRole::Administrator,
            ActorRole::Support,
            ActorRole::Anonymous,
        ] {
            assert_eq!(role.as_str().parse::<ActorRole>(), Ok(role));
        }
        assert_eq!("root".parse::<ActorRole>(), Err(UnknownActorRole));
    }
}

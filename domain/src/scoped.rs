//! A command addressed to an aggregate that belongs to one tenant.

use crate::ids::TenantId;

/// A command together with the tenant of the principal that sent it.
///
/// Aggregates that belong to a tenant refuse a scoped command from another tenant exactly as
/// they refuse one for a missing aggregate, so tenant isolation is decided in one place and a
/// foreign id reveals nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantScoped<C> {
    /// The tenant of the principal; never taken from a request body.
    pub tenant_id: TenantId,
    /// The command itself.
    pub command: C,
}

impl<C> TenantScoped<C> {
    /// Scopes `command` to `tenant_id`.
    pub const fn new(tenant_id: TenantId, command: C) -> Self {
        Self { tenant_id, command }
    }
}

impl<C: crate::metadata::NamedCommand> crate::metadata::NamedCommand for TenantScoped<C> {
    fn command_name(&self) -> &'static str {
        self.command.command_name()
    }
}

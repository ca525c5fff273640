/// Why the tenant aggregate refused a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantError {
    /// The tenant does not exist.
    #[error("the tenant is not registered")]
    NotRegistered,
    /// A tenant with this id exists already.
    #[error("the tenant is already registered")]
    AlreadyRegistered,
}

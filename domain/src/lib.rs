//! The pure model of FinteQX Access: aggregates, commands, events, errors and value types.
//!
//! Nothing here performs I/O, reads a clock or draws randomness: time, generated ids, keyed
//! hashes and facts read elsewhere travel *in* the commands (ADR-0003). Each aggregate is a
//! synchronous `decide`/`evolve` pair with a thin `cqrs_es::Aggregate` adapter beside it.

mod aggregate;
pub mod domain_claim;
pub mod email_claim;
pub mod entra;
pub mod ids;
pub mod metadata;
pub mod scoped;
pub mod sign_in;
pub mod sign_in_rule;
pub mod tenant;
pub mod user;
pub mod values;

pub use scoped::TenantScoped;

#[cfg(test)]
mod test_support;

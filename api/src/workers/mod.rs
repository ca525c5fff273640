//! Background workers the service runs next to its projectors.

pub mod checkpoints;
pub mod delivery;

//! The FinteQX Access service: composition root, HTTP API, configuration, adapters, workers and
//! the operator CLI. The only crate that knows about configuration, secrets and the network.

pub mod application;
pub mod audit;
pub mod cli;
pub mod clock;
pub mod configuration;
pub mod dns;
pub mod email;
pub mod embedded_postgres;
pub mod entra;
pub mod executor;
pub mod http;
pub mod keys;
pub mod personal_data;
pub mod sealed_store;
pub mod sms;
pub mod startup;
pub mod telemetry;
pub mod workers;

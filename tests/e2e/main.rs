//! End-to-end tests of FinteQX Access against the real PostgreSQL: one test binary, one module
//! per feature. Each test gets a fresh database (see `helpers`).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test helpers")]

mod helpers;

mod audit;
mod bad_input;
mod concurrency;
mod delivery;
mod dns_server;
mod domain_proof;
mod embedded_database;
mod entra_sign_in;
mod enumeration;
mod erasure;
mod faults;
mod http_api;
mod http_audit;
mod log_signer;
mod oidc_provider;
mod operator_cli;
mod passwords;
mod persistence;
mod read_models;
mod sessions;
mod sms_provider;
mod sms_sign_in;
mod tamper_evidence;
mod transaction_boundary;
mod uniqueness;

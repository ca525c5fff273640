//! Read models of FinteQX Access: catch-up projectors that turn the event log into the tables
//! the login page, the settings screen, support and the notification workers read. Talks only to
//! PostgreSQL.

pub mod settings_screen;

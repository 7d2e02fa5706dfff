//! Integration tests of berth-store. Every test runs twice, against a real SQLite file in a
//! temporary directory and against the test environment's real PostgreSQL (a fresh database
//! per test): `cargo test -p berth-store --test it -- runs::lifecycle::postgres`.

mod support;

mod concurrency;
mod deliveries;
mod events;
mod migrations;
mod notifications;
mod runs;
mod secrets;
mod sessions;
mod tokens;
mod urls;

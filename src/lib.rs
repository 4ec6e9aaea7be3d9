//! The `rxledger` binary's library: configuration and wiring of the services.
//!
//! `main.rs` parses the command line; [`server::start`] wires the store, the ingest pipeline
//! and the HTTP API together and is what the end-to-end tests start on port 0.

pub mod backup;
pub mod keyfile;
pub mod metrics;
pub mod ratelimit;
pub mod remote_audit;
pub mod server;
pub mod tls;
pub mod verify_answer;
pub mod verify_bundle;

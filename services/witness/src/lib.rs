//! Witnesses: holding the log to one append-only history that others can check.
//!
//! Two sides, one crate, because they speak one protocol (c2sp.org/tlog-witness):
//!
//! * the **witness** ([`server`], with its state in [`state`]): `rxledger witness` verifies
//!   each checkpoint a log submits against the log's Ed25519 key and a consistency proof from
//!   the checkpoint it cosigned before, and cosigns it (`cosignature/v1`). A trading partner
//!   or a regulator runs one with one command; it needs nothing from the log but its vkey;
//! * the **log** ([`client`], [`submit`], [`guard`]): the node submits each new checkpoint to
//!   its witnesses off the ingest path, publishes a checkpoint as cosigned only with a quorum,
//!   and refuses to start on a database that is behind, or forked from, what it or its
//!   witnesses remember.
//!
//! The decisions (request parsing, consistency, cosignature format, quorum) are in
//! `rxledger_core::witness` and `rxledger_core::cosignature`, with no I/O.

pub mod client;
pub mod guard;
pub mod server;
pub mod state;
pub mod submit;

pub use client::WitnessClient;
pub use guard::{CheckpointFile, Refused, check_start};
pub use rxledger_store::witnessing::{CosignedHead, WitnessStatus, WitnessView};
pub use server::{WitnessConfig, WitnessServer};
pub use submit::Witnessing;

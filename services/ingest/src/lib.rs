//! rxledger's MQTT side: scanners' signed envelopes in, receipts out.
//!
//! The server is an ordinary MQTT client of either the embedded broker ([`broker`], rumqttd
//! in this process) or an external one (Mosquitto, EMQX); after the connection both paths run
//! the same code. [`pipeline`] turns envelopes into ledger entries:
//!
//! ```text
//! MQTT event loop ──► batcher (≤ N messages or T ms) ──► verify on every core ──► sequencer
//!      ▲                                                                            │
//!      └──────────── PUBACK + receipt, only after the batch is committed ◄──────────┘
//! ```
//!
//! Delivery is at-least-once from the broker and exactly-once in the ledger: the MQTT PUBACK
//! goes out only after the batch commit, and a redelivered envelope is found in the ledger and
//! answered with its original receipt.

pub mod broker;
pub mod brokeracl;
pub mod gate;
mod monitor;
mod mqtt;
pub mod pipeline;
mod proofs;
pub mod revocation;
pub mod window;

pub use broker::EmbeddedBroker;
pub use gate::{Gatekeeper, TlsListener};
pub use mqtt::{MqttTarget, MqttUrl};
pub use pipeline::{Ingest, IngestConfig, IngestError};

//! firmware-sim: a fleet of simulated rxledger scanners.
//!
//! Real scanners are the only way to see rxledger work end to end, so this crate behaves like
//! their firmware: a device [`identity`] (a secp256k1 key, signed with `rxledger-core`, the
//! same code the server verifies with), a durable store-and-forward [`queue`] and a
//! [`device`] link that resends until it holds a receipt. On top of that it plays a whole
//! supply chain with optional counterfeiters ([`scenario`]), generates benchmark load
//! ([`load`]) and prints pack labels ([`label`]).
//!
//! Two modules serve the server's end-to-end tests and benchmarks too, so there is one of
//! each: the EPCIS event builder ([`events`]) and the small HTTP/1.1 client ([`http`]).

pub mod api;
pub mod device;
pub mod events;
pub mod http;
pub mod identity;
pub mod label;
pub mod load;
pub mod partner;
pub mod queue;
pub mod scenario;
pub mod witness;

pub use api::{Api, GraphQl};
pub use device::{Broker, Device, DeviceOptions};
pub use identity::Identity;
pub use load::{LoadOptions, LoadReport, run_load};
pub use queue::Queue;
pub use scenario::{ScenarioOptions, ScenarioReport, run_scenario};

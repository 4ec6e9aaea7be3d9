//! rxledger's storage: the verifiable log and the device registry on sea-orm.
//!
//! The same code runs on SQLite (the zero-setup default, one file in WAL mode) and on
//! PostgreSQL. [`Ledger`] is the log: it sequences batches of entries in one transaction
//! each, integrates them into the tile-stored Merkle tree, signs a checkpoint and advances
//! the head with a compare-and-swap, so two inconsistent checkpoints can never both be
//! signed. [`Registry`] holds organizations, sites and devices, [`Products`] the product
//! master data, [`NamedQueries`] the EPCIS binding's named queries, [`PartnerDocuments`] the
//! exact bytes of partner-signed capture documents. [`audit`] recomputes the
//! whole tree from the raw entries and compares it with what is stored.

pub mod alerts;
pub mod apikeys;
pub mod audit;
pub mod cases;
mod db;
pub mod desk;
pub mod documents;
mod error;
mod frontier;
pub mod indexaudit;
pub mod ledger;
pub mod map;
pub mod packs;
pub mod partners;
pub mod postings;
pub mod products;
pub mod queries;
pub mod registry;
pub mod rules;
pub mod sessions;
#[cfg(feature = "testdb")]
pub mod testdb;
pub mod witnessing;

pub use alerts::{Alerts, NewAlert, Severity, Subject};
pub use apikeys::{ApiKeys, Principal};
pub use cases::{Cases, Clock};
pub use db::{Database, connect, normalize_url, redact};
pub use error::StoreError;
pub use ledger::{
    Admission, Batch, IndexCheck, Ledger, LedgerOptions, LogKeys, NewEntry, SignedHead,
};
pub use partners::{NewDocument, PartnerDocument, PartnerDocuments};
pub use products::{Products, TradeItem};
pub use queries::{NamedQueries, QueryName};
pub use registry::Registry;
pub use sessions::Sessions;

/// Milliseconds since the Unix epoch. The store is the only place that reads the clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

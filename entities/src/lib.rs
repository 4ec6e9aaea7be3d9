//! sea-orm entities and migrations for rxledger.
//!
//! One schema serves SQLite and PostgreSQL. The tables fall in three groups:
//! - the log: [`entry`] (exact bytes as received), [`tile`] (the Merkle tree as C2SP tiles),
//!   [`head`] (the single row advanced by compare-and-swap) and [`checkpoint`] (every signed
//!   checkpoint, so an auditor can prove none were inconsistent);
//! - indexes derived from the log: [`event`] (one row per EPCIS event, keyed by its CBV hash),
//!   [`epc`] (which identifiers each entry names; the pack index map is built from it);
//! - the registry: [`organization`], [`company_prefix`], [`site`], [`device`], and [`alert`];
//! - product master data: [`product`] (what a GTIN is, for the pages);
//! - the desk: [`trace_party`] (who may read a tracing request), [`alert_case`] (an alert's
//!   case: its records in the log, its state for lists and timers) and [`alert_case_cursor`]
//!   (how far those rows have read the log).
//! - access: [`api_key`] and the browser [`session`]s signed in with them;
//! - the EPCIS binding: [`epcis_query`] (an organisation's named queries) and
//!   [`partner_document`] (the exact bytes of partner-signed capture documents).

pub mod alert;
pub mod alert_case;
pub mod alert_case_cursor;
pub mod api_key;
pub mod checkpoint;
pub mod commission;
pub mod company_prefix;
pub mod device;
pub mod entry;
pub mod epc;
pub mod epcis_query;
pub mod event;
pub mod head;
pub mod migration;
pub mod organization;
pub mod partner_document;
pub mod product;
pub mod session;
pub mod site;
pub mod tile;
pub mod trace_party;

pub use migration::Migrator;

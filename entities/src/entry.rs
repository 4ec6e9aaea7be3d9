//! One log entry: the exact bytes as received, plus metadata that is not hashed.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "entries")]
pub struct Model {
    /// Position in the log, from 0. Dense: every index below the head exists.
    #[sea_orm(primary_key, auto_increment = false)]
    pub idx: i64,
    /// The exact bytes that were appended; the leaf hash is SHA-256(0x00 || data).
    pub data: Vec<u8>,
    /// What the bytes are: 1 = a signed device envelope, 2 = a signed state change made through the API,
    /// 3 = a desk record (a tracing request or an alert case's transition), 4 = a map-root entry
    /// (`rxledger_core::map::rootentry`); 2 to 4 are signed by the log.
    pub kind: i16,
    /// The device (or API party) that signed the entry.
    pub signer: String,
    /// The signer's sequence number, for replay detection; unique per signer.
    pub seq: i64,
    /// When the sequencer received it, in Unix milliseconds.
    pub received_ms: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

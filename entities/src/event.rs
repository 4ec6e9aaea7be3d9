//! One EPCIS event inside a log entry, keyed by its CBV 2.0 event hash.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "events")]
pub struct Model {
    /// SHA-256 digest of the CBV 2.0 pre-hash string (the hex inside `ni:///sha-256;…`).
    #[sea_orm(primary_key, auto_increment = false)]
    pub hash: Vec<u8>,
    pub entry_idx: i64,
    /// Position of the event inside the envelope's `events` array.
    pub position: i32,
    pub event_time_ms: i64,
    pub event_type: String,
    pub action: Option<String>,
    pub biz_step: Option<String>,
    pub disposition: Option<String>,
    pub read_point: Option<String>,
    pub biz_location: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

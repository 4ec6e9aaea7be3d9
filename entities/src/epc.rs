//! Which events name which EPC: the index provenance and verdict queries walk.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "epcs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub epc: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub event_hash: Vec<u8>,
    pub entry_idx: i64,
    /// Position of the event inside its entry's `events` array.
    pub position: i32,
    pub event_time_ms: i64,
    /// 0 = in epcList, 1 = parentID, 2 = in childEPCs, 3 = class (quantityList).
    pub role: i16,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

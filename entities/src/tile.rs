//! A C2SP tlog-tiles tile: up to 256 consecutive node hashes of one tree level.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "tiles")]
pub struct Model {
    /// Tile level L holds the hashes of tree level 8L.
    #[sea_orm(primary_key, auto_increment = false)]
    pub level: i16,
    #[sea_orm(primary_key, auto_increment = false)]
    pub idx: i64,
    /// Concatenated 32-byte hashes, 1 to 256 of them. A full tile never changes again.
    pub hashes: Vec<u8>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

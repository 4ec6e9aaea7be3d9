//! One key of the authenticated pack index (`rxledger_core::map`): an identifier's history
//! commitment. Only leaves are stored; the tree's inner nodes are rebuilt from them in memory.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "map_leaves")]
pub struct Model {
    /// `rxledger_core::map::key_of` of the identifier's index key: 32 bytes.
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: Vec<u8>,
    /// How many entries name the identifier.
    pub count: i64,
    /// The head of the hash chain over those entries' (index, leaf hash): 32 bytes.
    pub head: Vec<u8>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

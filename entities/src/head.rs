//! The log head: one row, advanced only by compare-and-swap on its size.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "head")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: i16,
    pub size: i64,
    pub root: Vec<u8>,
    /// The signed checkpoint note for this size.
    pub note: String,
    /// Fencing token of the sequencer that wrote this head (its lease generation).
    pub fence: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

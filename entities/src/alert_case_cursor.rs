//! How far the alert-case listing (`alert_cases`) has read the log: one row. Every desk record
//! below `covered` is folded into the rows; the store reads only the records from there on,
//! and moves it in the same transaction as the rows it writes (`store::cases`).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "alert_case_cursor")]
pub struct Model {
    /// Always [`ID`].
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: i16,
    /// The first entry index the listing has not read yet.
    pub covered: i64,
}

/// The primary key of the single row.
pub const ID: i16 = 1;

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

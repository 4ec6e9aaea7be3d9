//! One row per commissioned serial: enforces "commissioned once" and answers product lookups.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "commissions")]
pub struct Model {
    /// The SGTIN as `gtin14.serial`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub sgtin: String,
    pub gtin: String,
    pub entry_idx: i64,
    pub org_id: String,
    pub lot: Option<String>,
    /// ISO date of the last valid day, if the event carried an expiry.
    pub expiry: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

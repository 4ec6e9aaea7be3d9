//! A rejected event or a suspicious pattern, kept for regulators.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "alerts")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Stable code, e.g. BAD_SIGNATURE, UNKNOWN_DEVICE, SERIAL_ALREADY_COMMISSIONED.
    pub code: String,
    /// INFO, WARNING or CRITICAL.
    pub severity: String,
    /// The identifiers it concerns (device id, SGTIN URN, ...), space separated.
    pub subject: String,
    pub message: String,
    /// Ledger indices that are evidence, space separated.
    pub evidence_entries: String,
    /// The raw rejected bytes, when the alert is about a rejected message.
    pub raw: Option<Vec<u8>>,
    pub created_ms: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

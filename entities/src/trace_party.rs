//! Who may read a tracing request (issue 23): one row per (request entry, organisation), the
//! requester and every party asked. Derived from the request's ledger entry, which carries
//! the same list under the log's signature (`rxledger_core::trace::TraceRecord`).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "trace_parties")]
pub struct Model {
    /// The ledger entry of the request.
    #[sea_orm(primary_key, auto_increment = false)]
    pub entry_idx: i64,
    /// An organisation id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub org_id: String,
    /// Whether this organisation made the request (else it was asked).
    pub requester: bool,
    pub asked_ms: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

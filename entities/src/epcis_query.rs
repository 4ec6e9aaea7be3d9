//! A named EPCIS query (the REST binding's `/queries`): one row per (organisation, name), the
//! simple event query's parameters as the caller gave them. A view over the log, never part
//! of it: deleting one changes no event (`rxledger_store::queries`).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "epcis_queries")]
pub struct Model {
    /// The organisation whose API keys made it; no other organisation sees it.
    #[sea_orm(primary_key, auto_increment = false)]
    pub org_id: String,
    /// Its name, unique within the organisation.
    #[sea_orm(primary_key, auto_increment = false)]
    pub name: String,
    /// The query object as JSON text (`{"EQ_bizStep": ["shipping"], ...}`), checked when it
    /// was created and read by the same parser as `GET /epcis/events` each time it runs.
    pub query: String,
    pub created_ms: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

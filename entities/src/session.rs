//! A browser session: signed in with an API key, named by a random cookie of which only the
//! SHA-256 is stored. It stands for its key and dies with it (`rxledger_store::sessions`).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sessions")]
pub struct Model {
    /// SHA-256 of the cookie value, hex. The cookie itself is never stored.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id_hash: String,
    /// The API key the session was opened with (`api_keys.id`).
    pub key_id: String,
    pub created_ms: i64,
    /// Last use, kept to the minute; the idle bound counts from here.
    pub last_seen_ms: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

//! An enrolled scanner and its public key.
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "devices")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// SEC1 compressed secp256k1 public key, lowercase hex (66 characters).
    pub public_key: String,
    pub org_id: String,
    pub site_gln: String,
    /// `active` or `revoked`.
    pub status: String,
    /// Highest sequence number appended for this device; -1 before the first.
    pub last_seq: i64,
    pub enrolled_ms: i64,
    pub revoked_ms: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

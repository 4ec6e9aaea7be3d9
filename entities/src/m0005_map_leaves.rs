//! The authenticated pack index's stored leaves (issue 24), as first released: one row per
//! identifier, its history commitment. m0010 drops the table again: the ledger now builds the
//! map from the `epcs` rows and the tiles (`rxledger_store::map`), so nothing reads or writes
//! it, and the entity lives here only so that this applied migration stays as it ran.

use sea_orm_migration::prelude::*;

use super::create;

pub struct M0005MapLeaves;

impl MigrationName for M0005MapLeaves {
    fn name(&self) -> &str {
        "m0005_map_leaves"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0005MapLeaves {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        create(manager, map_leaf::Entity).await
    }
}

pub(super) mod map_leaf {
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
}

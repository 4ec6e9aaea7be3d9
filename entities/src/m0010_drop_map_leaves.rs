//! The pack index map is no longer stored (issue 24's cost): the ledger builds it from the
//! `epcs` rows and the level-0 tiles at open and catches it up from them, so the leaves
//! m0005 kept, rewritten with every batch, go. Nothing is lost: every row was derived.

use sea_orm_migration::prelude::*;

pub struct M0010DropMapLeaves;

impl MigrationName for M0010DropMapLeaves {
    fn name(&self) -> &str {
        "m0010_drop_map_leaves"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0010DropMapLeaves {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("map_leaves").if_exists().to_owned())
            .await
    }
}

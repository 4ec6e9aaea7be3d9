//! Migrations, run by `rxledger serve` and `rxledger audit` at start-up.
//!
//! Tables are created from the entities themselves so the schema cannot drift from the code.
//! A new release adds a new migration; an applied one is never edited.

use sea_orm::{EntityTrait, Schema};
use sea_orm_migration::prelude::*;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(M0001Initial)]
    }
}

#[derive(DeriveMigrationName)]
struct M0001Initial;

async fn create<E: EntityTrait>(manager: &SchemaManager<'_>, entity: E) -> Result<(), DbErr> {
    let schema = Schema::new(manager.get_database_backend());
    manager
        .create_table(
            schema
                .create_table_from_entity(entity)
                .if_not_exists()
                .to_owned(),
        )
        .await
}

#[async_trait::async_trait]
impl MigrationTrait for M0001Initial {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use crate::*;
        create(manager, entry::Entity).await?;
        create(manager, tile::Entity).await?;
        create(manager, head::Entity).await?;
        create(manager, checkpoint::Entity).await?;
        create(manager, event::Entity).await?;
        create(manager, organization::Entity).await?;
        create(manager, company_prefix::Entity).await?;
        create(manager, site::Entity).await?;
        create(manager, device::Entity).await?;
        create(manager, alert::Entity).await?;
        create(manager, api_key::Entity).await?;
        create(manager, epc::Entity).await?;
        create(manager, commission::Entity).await?;
        // A signer's sequence number is used once: this is what makes replays detectable and
        // makes a resent envelope find its original entry.
        manager
            .create_index(
                Index::create()
                    .name("entries_signer_seq")
                    .table(entry::Entity)
                    .col(entry::Column::Signer)
                    .col(entry::Column::Seq)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("events_entry_idx")
                    .table(event::Entity)
                    .col(event::Column::EntryIdx)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("epcs_entry_idx")
                    .table(epc::Entity)
                    .col(epc::Column::EntryIdx)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("commissions_gtin")
                    .table(commission::Entity)
                    .col(commission::Column::Gtin)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("alerts_created")
                    .table(alert::Entity)
                    .col(alert::Column::CreatedMs)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}

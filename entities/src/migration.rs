//! Migrations, run by `rxledger serve` and `rxledger audit` at start-up.
//!
//! Tables are created from the entities themselves so the schema cannot drift from the code.
//! A new release adds a new migration; an applied one is never edited.

use sea_orm::{EntityTrait, Schema};
use sea_orm_migration::prelude::*;

#[path = "m0005_map_leaves.rs"]
mod m0005_map;
#[path = "m0007_epcis_query_indexes.rs"]
mod m0007_epcis;
#[path = "m0008_desk_alert_cases.rs"]
mod m0008_cases;
#[path = "m0009_epcis_queries.rs"]
mod m0009_queries;
#[path = "m0010_drop_map_leaves.rs"]
mod m0010_map;
#[path = "m0011_partner_documents.rs"]
mod m0011_partner;
#[path = "m0012_desk_record_index.rs"]
mod m0012_desk;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(M0001Initial),
            Box::new(M0002Products),
            Box::new(M0003CommissionsByEntry),
            Box::new(M0004DeskTraceParties),
            Box::new(m0005_map::M0005MapLeaves),
            Box::new(M0006OpsSessions),
            Box::new(m0007_epcis::M0007EpcisQueryIndexes),
            Box::new(m0008_cases::M0008DeskAlertCases),
            Box::new(m0009_queries::M0009EpcisQueries),
            Box::new(m0010_map::M0010DropMapLeaves),
            Box::new(m0011_partner::M0011PartnerDocuments),
            Box::new(m0012_desk::M0012DeskRecordIndex),
        ]
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

async fn index<E, C, const N: usize>(
    manager: &SchemaManager<'_>,
    mut stmt: IndexCreateStatement,
    name: &str,
    table: E,
    cols: [C; N],
) -> Result<(), DbErr>
where
    E: EntityTrait,
    C: sea_orm::ColumnTrait,
{
    stmt.name(name).table(table).if_not_exists();
    for c in cols {
        stmt.col(c);
    }
    manager.create_index(stmt).await
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
        let mut unique = Index::create();
        unique.unique();
        index(
            manager,
            unique,
            "entries_signer_seq",
            entry::Entity,
            [entry::Column::Signer, entry::Column::Seq],
        )
        .await?;
        index(
            manager,
            Index::create(),
            "events_entry_idx",
            event::Entity,
            [event::Column::EntryIdx],
        )
        .await?;
        index(
            manager,
            Index::create(),
            "epcs_entry_idx",
            epc::Entity,
            [epc::Column::EntryIdx],
        )
        .await?;
        index(
            manager,
            Index::create(),
            "commissions_gtin",
            commission::Entity,
            [commission::Column::Gtin],
        )
        .await?;
        index(
            manager,
            Index::create(),
            "alerts_created",
            alert::Entity,
            [alert::Column::CreatedMs],
        )
        .await?;
        Ok(())
    }
}

/// Product master data (issue 20): one row per GTIN. Named by hand: the derived name is
/// the file's, which the first migration already has.
struct M0002Products;

impl MigrationName for M0002Products {
    fn name(&self) -> &str {
        "m0002_products"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0002Products {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        create(manager, crate::product::Entity).await
    }
}

/// The auditor reads the `commissions` rows of each page of entries (`store::indexaudit`).
struct M0003CommissionsByEntry;

impl MigrationName for M0003CommissionsByEntry {
    // Not derived: the derive names a migration after its file, and both live in this one.
    fn name(&self) -> &str {
        "m0003_commissions_entry_idx"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0003CommissionsByEntry {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use crate::commission;
        index(
            manager,
            Index::create(),
            "commissions_entry_idx",
            commission::Entity,
            [commission::Column::EntryIdx],
        )
        .await
    }
}

/// Who may read a tracing request (issue 23), and the look-up by organisation.
struct M0004DeskTraceParties;

impl MigrationName for M0004DeskTraceParties {
    fn name(&self) -> &str {
        "m0004_desk_trace_parties"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0004DeskTraceParties {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use crate::trace_party;
        create(manager, trace_party::Entity).await?;
        index(
            manager,
            Index::create(),
            "trace_parties_org",
            trace_party::Entity,
            [trace_party::Column::OrgId],
        )
        .await
    }
}

/// Browser sessions (issue 20): in the database, so that nodes sharing a PostgreSQL database
/// share them, with the key id indexed for revocation.
struct M0006OpsSessions;

impl MigrationName for M0006OpsSessions {
    fn name(&self) -> &str {
        "m0006_ops_sessions"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0006OpsSessions {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use crate::session;
        create(manager, session::Entity).await?;
        index(
            manager,
            Index::create(),
            "sessions_key_id",
            session::Entity,
            [session::Column::KeyId],
        )
        .await
    }
}

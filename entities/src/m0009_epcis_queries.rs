//! Named EPCIS queries (issue 22, standing queries): one table, keyed by (organisation,
//! name), which is also how an organisation lists its own.

use sea_orm_migration::prelude::*;

use super::create;
use crate::epcis_query;

pub struct M0009EpcisQueries;

impl MigrationName for M0009EpcisQueries {
    fn name(&self) -> &str {
        "m0009_epcis_queries"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0009EpcisQueries {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        create(manager, epcis_query::Entity).await
    }
}

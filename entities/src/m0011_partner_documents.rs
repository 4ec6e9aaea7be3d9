//! Partner-signed EPCIS documents (issue 22, partner signatures): one table, keyed by
//! (sha256, organization), holding the exact bytes a partner signed.

use sea_orm_migration::prelude::*;

use super::create;
use crate::partner_document;

pub struct M0011PartnerDocuments;

impl MigrationName for M0011PartnerDocuments {
    fn name(&self) -> &str {
        "m0011_partner_documents"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0011PartnerDocuments {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        create(manager, partner_document::Entity).await
    }
}

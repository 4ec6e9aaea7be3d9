//! Indexes for the EPCIS REST query (`GET /epcis/events`): record-time bounds read the
//! entries by `received_ms`, and the most common filters (a business step, an event-time
//! window) find their rows without walking the whole event table.

use sea_orm_migration::prelude::*;

use super::index;
use crate::{entry, event};

pub struct M0007EpcisQueryIndexes;

impl MigrationName for M0007EpcisQueryIndexes {
    fn name(&self) -> &str {
        "m0007_epcis_query_indexes"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0007EpcisQueryIndexes {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        index(
            manager,
            Index::create(),
            "entries_received_ms",
            entry::Entity,
            [entry::Column::ReceivedMs],
        )
        .await?;
        index(
            manager,
            Index::create(),
            "events_biz_step_entry_idx",
            event::Entity,
            [event::Column::BizStep, event::Column::EntryIdx],
        )
        .await?;
        index(
            manager,
            Index::create(),
            "events_event_time_ms",
            event::Entity,
            [event::Column::EventTimeMs],
        )
        .await
    }
}

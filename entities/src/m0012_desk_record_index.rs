//! The alert-case listing is derived from the log and caught up from it (issue 23 item 2):
//! each catch-up reads the desk records (entry kind 3) after the cursor, so they get a
//! partial index of their own, and the cursor gets its row. Without the index a catch-up would
//! walk every entry sequenced since the last one, device envelopes included.
//!
//! The index is written by hand: the same statement serves SQLite and PostgreSQL, and both
//! use it only for queries that spell `kind = 3` as a literal, as `store::cases` does.

use sea_orm_migration::prelude::*;

use super::create;
use crate::alert_case_cursor;

pub struct M0012DeskRecordIndex;

impl MigrationName for M0012DeskRecordIndex {
    fn name(&self) -> &str {
        "m0012_desk_record_index"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0012DeskRecordIndex {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX IF NOT EXISTS entries_desk_records ON entries (idx) WHERE kind = 3",
            )
            .await?;
        create(manager, alert_case_cursor::Entity).await?;
        // From entry 0: the first catch-up reads every desk record once and skips those the
        // rows already list, so a database that had cases before this migration is checked too.
        manager
            .exec_stmt(
                Query::insert()
                    .into_table(alert_case_cursor::Entity)
                    .columns([
                        alert_case_cursor::Column::Id,
                        alert_case_cursor::Column::Covered,
                    ])
                    .values_panic([alert_case_cursor::ID.into(), 0i64.into()])
                    .on_conflict(
                        OnConflict::column(alert_case_cursor::Column::Id)
                            .do_nothing()
                            .to_owned(),
                    )
                    .to_owned(),
            )
            .await
    }
}

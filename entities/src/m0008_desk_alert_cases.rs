//! Alert cases (issue 23 item 2): the case table, one case per alert, and the look-ups of
//! the brand owner's list and the timer sweep.

use sea_orm_migration::prelude::*;

use super::{create, index};
use crate::alert_case;

pub struct M0008DeskAlertCases;

impl MigrationName for M0008DeskAlertCases {
    fn name(&self) -> &str {
        "m0008_desk_alert_cases"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0008DeskAlertCases {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        create(manager, alert_case::Entity).await?;
        let mut unique = Index::create();
        unique.unique();
        index(
            manager,
            unique,
            "alert_cases_alert_id",
            alert_case::Entity,
            [alert_case::Column::AlertId],
        )
        .await?;
        index(
            manager,
            Index::create(),
            "alert_cases_brand_owner",
            alert_case::Entity,
            [alert_case::Column::BrandOwner],
        )
        .await?;
        index(
            manager,
            Index::create(),
            "alert_cases_next_due_ms",
            alert_case::Entity,
            [alert_case::Column::NextDueMs],
        )
        .await
    }
}

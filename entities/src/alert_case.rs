//! An alert case (issue 23 item 2): one row per case, listing its ledger records and the
//! summary its lists and timers filter on. The records themselves (`rxledger_core::case`)
//! are desk entries of the log, sealed by its key; a case's state is always their fold, and
//! this row is derived from the log: written from that fold only when the store catches up
//! with the records ([`crate::alert_case_cursor`] says how far it has read).
use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "alert_cases")]
pub struct Model {
    /// The ledger entry of the opening record: the case's id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: i64,
    /// The alert it was opened for (`alerts.id`); one case per alert.
    pub alert_id: i64,
    /// The alert's code.
    pub code: String,
    /// The pack, as its index key (`sgtin:<gtin>.<serial>`).
    pub pack: String,
    /// The organisation owning the GTIN's company prefix; `None` when unregistered.
    pub brand_owner: Option<String>,
    /// OPEN, INFORMATION_REQUESTED or CLOSED.
    pub status: String,
    pub root_cause: Option<String>,
    pub escalated: bool,
    /// When the next timer transition (a reminder, the escalation) is due, if any.
    pub next_due_ms: Option<i64>,
    pub opened_ms: i64,
    pub updated_ms: i64,
    /// The ledger entries of its records, in order, space separated.
    pub records: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

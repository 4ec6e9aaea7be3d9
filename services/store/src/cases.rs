//! Alert cases (issue 23 item 2): every alert about a pack becomes a case assigned to the
//! pack's brand owner, and every transition of the case is a sealed desk record in the log
//! (`rxledger_core::case`).
//!
//! A case's state is the fold of its records, read back from the log and checked against the
//! log key each time it is needed; the `alert_cases` row lists the records and keeps the
//! summary that lists and the timer sweep filter on, written from the fold after each record
//! commits (like `trace_parties`, it is not rebuilt by the auditor). A crash between the two
//! leaves a record in the log that the row does not list: evidence is never lost, a listing
//! can be. Transitions on one node run one at a time ([`Cases`] holds a lock), so a decision
//! and the record it appends never interleave with another's.
//!
//! [`Cases::sweep`] is the timer task's one step: open a case for every alert not seen yet,
//! then make every timer transition that is due at the [`Clock`]'s "now". The server runs it
//! on a tick and whenever an alert is recorded; tests run it with a clock they set.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use rxledger_core::case::{
    self, AlertRef, Case, CaseAction, CaseError, CaseRecord, NODE_ACTOR, Party, Timers, Transition,
};
use rxledger_core::gs1::Gtin;
use rxledger_entities::{alert, alert_case, company_prefix, entry};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use tokio::sync::{Mutex, broadcast};

use crate::ledger::{EntryKind, Ledger, NewEntry};
use crate::{Admission, StoreError};

/// The signer column of the node's own case records (opening, reminders, escalation).
pub const NODE_SIGNER: &str = "log:desk";
/// Alerts read per step of a sweep, and timer transitions made per sweep.
const SWEEP_PAGE: u64 = 500;

/// Where "now" comes from: the system clock, or a clock a test sets.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    manual: Option<Arc<AtomicI64>>,
}

impl Clock {
    pub fn system() -> Self {
        Clock::default()
    }

    /// A clock that reads `start_ms` until it is moved.
    pub fn manual(start_ms: i64) -> Self {
        Clock {
            manual: Some(Arc::new(AtomicI64::new(start_ms))),
        }
    }

    pub fn now_ms(&self) -> i64 {
        match &self.manual {
            Some(ms) => ms.load(Ordering::SeqCst),
            None => crate::now_ms(),
        }
    }

    /// Moves a manual clock forward (a system clock ignores it).
    pub fn advance(&self, ms: i64) {
        if let Some(m) = &self.manual {
            m.fetch_add(ms, Ordering::SeqCst);
        }
    }
}

/// A transition that committed: the case after it, and the record.
#[derive(Clone, Debug)]
pub struct CaseChange {
    pub case: alert_case::Model,
    pub record_index: u64,
    pub record: CaseRecord,
}

/// What one sweep did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Cases opened, by id.
    pub opened: Vec<u64>,
    /// Timer transitions made: (case, REMINDED or ESCALATED).
    pub timers: Vec<(u64, CaseAction)>,
}

/// Which cases a list returns.
#[derive(Clone, Debug, Default)]
pub struct CaseFilter {
    /// Only this brand owner's (a brand owner's own view); `None`: every case.
    pub brand_owner: Option<String>,
    pub status: Option<String>,
    pub escalated: Option<bool>,
    /// Only cases with an id below this (the page before).
    pub before: Option<u64>,
}

/// The cases, their timers and a broadcast of their transitions.
#[derive(Clone)]
pub struct Cases {
    ledger: Arc<Ledger>,
    timers: Timers,
    clock: Clock,
    /// Held for a whole decision and its append; holds the highest alert id examined.
    lock: Arc<Mutex<Option<i64>>>,
    tx: broadcast::Sender<CaseChange>,
}

impl Cases {
    pub fn new(ledger: Arc<Ledger>, timers: Timers, clock: Clock) -> Self {
        let (tx, _) = broadcast::channel(1024);
        Cases {
            ledger,
            timers,
            clock,
            lock: Arc::new(Mutex::new(None)),
            tx,
        }
    }

    pub fn timers(&self) -> &Timers {
        &self.timers
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn subscribe(&self) -> broadcast::Receiver<CaseChange> {
        self.tx.subscribe()
    }

    fn db(&self) -> &sea_orm::DatabaseConnection {
        &self.ledger.database().conn
    }

    /// Opens a case for every alert about a pack not examined yet, then makes every timer
    /// transition due now.
    pub async fn sweep(&self) -> Result<Swept, StoreError> {
        let mut examined = self.lock.lock().await;
        let mut swept = Swept::default();
        self.open_new(&mut examined, &mut swept).await?;
        self.fire_timers(&mut swept).await?;
        Ok(swept)
    }

    async fn open_new(
        &self,
        examined: &mut Option<i64>,
        swept: &mut Swept,
    ) -> Result<(), StoreError> {
        let mut after = match *examined {
            Some(a) => a,
            None => alert_case::Entity::find()
                .order_by_desc(alert_case::Column::AlertId)
                .one(self.db())
                .await?
                .map_or(0, |c| c.alert_id),
        };
        loop {
            let page = alert::Entity::find()
                .filter(alert::Column::Id.gt(after))
                .order_by_asc(alert::Column::Id)
                .limit(SWEEP_PAGE)
                .all(self.db())
                .await?;
            if page.is_empty() {
                return Ok(());
            }
            let prefixes = self.prefixes().await?;
            for a in page {
                if let Some(alert) = alert_ref(&a, &prefixes) {
                    swept.opened.push(self.open(alert).await?);
                }
                after = a.id;
                // Moved on only once the case is listed: a failure retries this alert.
                *examined = Some(after);
            }
        }
    }

    async fn prefixes(&self) -> Result<Vec<(String, String)>, StoreError> {
        Ok(company_prefix::Entity::find()
            .all(self.db())
            .await?
            .into_iter()
            .map(|p| (p.prefix, p.org_id))
            .collect())
    }

    /// Appends the opening record of a case for `alert` and lists it.
    async fn open(&self, alert: AlertRef) -> Result<u64, StoreError> {
        let record = CaseRecord {
            case: None,
            action: CaseAction::Opened,
            actor: NODE_ACTOR.into(),
            at: rxledger_core::epcis::format_time(self.clock.now_ms()),
            alert: Some(alert),
            root_cause: None,
            text: None,
        };
        let index = self.append(&record, NODE_SIGNER).await?;
        let c = Case::open(index, record.clone()).map_err(corrupt)?;
        let row = self.summary(&c);
        alert_case::ActiveModel {
            id: Set(row.id),
            alert_id: Set(row.alert_id),
            code: Set(row.code.clone()),
            pack: Set(row.pack.clone()),
            brand_owner: Set(row.brand_owner.clone()),
            status: Set(row.status.clone()),
            root_cause: Set(row.root_cause.clone()),
            escalated: Set(row.escalated),
            next_due_ms: Set(row.next_due_ms),
            opened_ms: Set(row.opened_ms),
            updated_ms: Set(row.updated_ms),
            records: Set(row.records.clone()),
        }
        .insert(self.db())
        .await?;
        let _ = self.tx.send(CaseChange {
            case: row,
            record_index: index,
            record,
        });
        Ok(index)
    }

    /// Makes the timer transitions due now, oldest first, at most a page per sweep.
    async fn fire_timers(&self, swept: &mut Swept) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        let due: Vec<i64> = alert_case::Entity::find()
            .select_only()
            .column(alert_case::Column::Id)
            .filter(alert_case::Column::NextDueMs.lte(now))
            .order_by_asc(alert_case::Column::NextDueMs)
            .limit(SWEEP_PAGE)
            .into_tuple()
            .all(self.db())
            .await?;
        for id in due {
            let Some(mut c) = self.fold(id as u64).await? else {
                continue;
            };
            // A node that was down catches up every transition due, one record each.
            while let Some(t) = c.due(now, &self.timers) {
                match self
                    .transit(&mut c, Party::Node, NODE_ACTOR, t, None)
                    .await?
                {
                    Ok(action) => swept.timers.push((c.id, action)),
                    Err(e) => {
                        tracing::error!(case = id, error = %e, "a due timer was refused");
                        break;
                    }
                }
            }
            // Timers changed since the row was written: put it at its real next due time.
            self.write_summary(&c).await?;
        }
        Ok(())
    }

    /// A party's transition of case `id`, and the case's row after it: `Some(Err(_))` when
    /// the case rules refuse it, `None` when there is no such case.
    pub async fn act(
        &self,
        id: u64,
        party: Party,
        actor: &str,
        transition: Transition,
        text: Option<String>,
    ) -> Result<Option<Result<alert_case::Model, CaseError>>, StoreError> {
        let _turn = self.lock.lock().await;
        let Some(mut c) = self.fold(id).await? else {
            return Ok(None);
        };
        Ok(Some(
            self.transit(&mut c, party, actor, transition, text)
                .await?
                .map(|_| self.summary(&c)),
        ))
    }

    /// Decides, appends and lists one transition, and folds it into `c` (left as it was when
    /// refused); the caller holds the lock.
    async fn transit(
        &self,
        c: &mut Case,
        party: Party,
        actor: &str,
        transition: Transition,
        text: Option<String>,
    ) -> Result<Result<CaseAction, CaseError>, StoreError> {
        let now = self.clock.now_ms();
        let record = match c.next(party, actor, transition, text, now, &self.timers) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        let signer = match party {
            Party::Node => NODE_SIGNER.to_string(),
            _ => format!("org:{actor}"),
        };
        let index = self.append(&record, &signer).await?;
        let action = record.action;
        c.apply(index, record.clone()).map_err(corrupt)?;
        let row = self.write_summary(c).await?;
        let _ = self.tx.send(CaseChange {
            case: row,
            record_index: index,
            record,
        });
        Ok(Ok(action))
    }

    async fn append(&self, record: &CaseRecord, signer: &str) -> Result<u64, StoreError> {
        let entry = NewEntry {
            data: case::seal_record(self.ledger.key(), record),
            kind: EntryKind::DeskRecord,
            signer: signer.to_string(),
            seq: None,
            events: vec![],
        };
        match self.ledger.append(vec![entry]).await?.admissions.pop() {
            Some(Admission::Appended { index, .. }) => Ok(index),
            other => Err(StoreError::Invalid(format!(
                "the case record was not appended: {other:?}"
            ))),
        }
    }

    /// The row a case's fold gives.
    fn summary(&self, c: &Case) -> alert_case::Model {
        alert_case::Model {
            id: c.id as i64,
            alert_id: c.alert.id,
            code: c.alert.code.clone(),
            pack: c.alert.pack.clone(),
            brand_owner: c.alert.brand_owner.clone(),
            status: c.status.to_string(),
            root_cause: c.root_cause.map(|r| r.to_string()),
            escalated: c.escalated,
            next_due_ms: c.next_timer(&self.timers).map(|(at, _)| at),
            opened_ms: c.opened_ms,
            updated_ms: c.updated_ms,
            records: c
                .records
                .iter()
                .map(|(i, _)| i.to_string())
                .collect::<Vec<_>>()
                .join(" "),
        }
    }

    async fn write_summary(&self, c: &Case) -> Result<alert_case::Model, StoreError> {
        let row = self.summary(c);
        alert_case::ActiveModel {
            id: Set(row.id),
            status: Set(row.status.clone()),
            root_cause: Set(row.root_cause.clone()),
            escalated: Set(row.escalated),
            next_due_ms: Set(row.next_due_ms),
            updated_ms: Set(row.updated_ms),
            records: Set(row.records.clone()),
            ..Default::default()
        }
        .update(self.db())
        .await?;
        Ok(row)
    }

    /// A case's row.
    pub async fn row(&self, id: u64) -> Result<Option<alert_case::Model>, StoreError> {
        Ok(alert_case::Entity::find_by_id(id as i64)
            .one(self.db())
            .await?)
    }

    /// A case's state: its records read from the log, checked against the log key and folded.
    pub async fn fold(&self, id: u64) -> Result<Option<Case>, StoreError> {
        let Some(row) = self.row(id).await? else {
            return Ok(None);
        };
        let indices: Vec<i64> = row
            .records
            .split_whitespace()
            .filter_map(|i| i.parse().ok())
            .collect();
        let mut entries = entry::Entity::find()
            .filter(entry::Column::Idx.is_in(indices.clone()))
            .all(self.db())
            .await?;
        entries.sort_by_key(|e| e.idx);
        if entries.len() != indices.len() {
            return Err(StoreError::Corrupt(format!(
                "case {id} lists records that are not in the log"
            )));
        }
        let log = self.ledger.verifier();
        let mut records = entries.into_iter().map(|e| {
            case::open_record(&e.data, log)
                .map(|r| (e.idx as u64, r))
                .map_err(corrupt)
        });
        let (first, opening) = records
            .next()
            .ok_or_else(|| StoreError::Corrupt(format!("case {id} has no records")))??;
        let mut c = Case::open(first, opening).map_err(corrupt)?;
        for r in records {
            let (index, record) = r?;
            c.apply(index, record).map_err(corrupt)?;
        }
        Ok(Some(c))
    }

    /// Cases newest first, at most `first`.
    pub async fn list(
        &self,
        filter: &CaseFilter,
        first: u64,
    ) -> Result<Vec<alert_case::Model>, StoreError> {
        let mut q = alert_case::Entity::find()
            .order_by_desc(alert_case::Column::Id)
            .limit(first);
        if let Some(org) = &filter.brand_owner {
            q = q.filter(alert_case::Column::BrandOwner.eq(org.as_str()));
        }
        if let Some(s) = &filter.status {
            q = q.filter(alert_case::Column::Status.eq(s.as_str()));
        }
        if let Some(e) = filter.escalated {
            q = q.filter(alert_case::Column::Escalated.eq(e));
        }
        if let Some(b) = filter.before {
            q = q.filter(alert_case::Column::Id.lt(b as i64));
        }
        Ok(q.all(self.db()).await?)
    }
}

fn corrupt(e: CaseError) -> StoreError {
    StoreError::Corrupt(format!("an alert case's records: {e}"))
}

/// The alert as a case's opening record names it, if it is about a pack: its first `sgtin:`
/// subject, assigned to the organisation owning the GTIN's company prefix.
fn alert_ref(a: &alert::Model, prefixes: &[(String, String)]) -> Option<AlertRef> {
    let pack = a
        .subject
        .split_whitespace()
        .find(|s| s.starts_with("sgtin:"))?;
    let gtin = pack
        .strip_prefix("sgtin:")
        .and_then(|k| k.split('.').next())
        .and_then(|g| Gtin::parse(g).ok())?;
    let message: String = a.message.chars().take(case::MAX_TEXT).collect();
    Some(AlertRef {
        id: a.id,
        code: a.code.clone(),
        pack: pack.to_string(),
        brand_owner: rxledger_core::index::owner_of(prefixes, &gtin),
        message,
        evidence: a
            .evidence_entries
            .split_whitespace()
            .filter_map(|i| i.parse().ok())
            .collect(),
    })
}

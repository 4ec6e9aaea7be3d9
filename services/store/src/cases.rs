//! Alert cases (issue 23 item 2): every alert about a pack becomes a case assigned to the
//! pack's brand owner, and every transition of the case is a sealed desk record in the log
//! (`rxledger_core::case`).
//!
//! # The listing is derived from the log
//!
//! A case's state is the fold of its records, read back from the log and checked against the
//! log key each time it is needed. The `alert_cases` rows list each case's records and keep
//! the summary that lists and the timer sweep filter on; they are never written beside an
//! append, only by [`Cases::reconcile`], which reads the desk records after a cursor
//! (`alert_case_cursor`), folds the case records among them (a tracing request is skipped)
//! and writes the rows and the moved cursor in one transaction. Every append is followed by
//! a catch-up, and every sweep and decision starts with one, as does a service's first read:
//! a crash between a record's commit and its row leaves the record to the next catch-up,
//! never unlisted. The cursor moves by compare-and-swap, so catch-ups on several nodes (or
//! services) at once write each record's row once; one reads only the desk records after the
//! cursor (a partial index, `m0012_desk_record_index`), so its cost does not grow with the log.
//!
//! # Exactly once, on any number of nodes
//!
//! A decision is made on the rows after a catch-up, and its record is appended with
//! [`Ledger::append_checked`]: inside the append transaction, where the sequencer lease keeps
//! every other append out, [`Cases::still`] reads the rows and the desk records after the
//! cursor again and confirms what the decision rests on (no case for an opening's alert; the
//! case's newest record for a transition). If another node (or a crash's leftover) got there
//! first, the record is not appended; the listing catches up and the decision is made again
//! on what is now there. So an alert opens one case and a due timer makes one record, however
//! many nodes sweep. On one node [`Cases`] also holds a lock for a whole decision, so its own
//! decisions never race each other.
//!
//! [`Cases::sweep`] is the timer task's one step: open a case for every alert not seen yet,
//! then make every timer transition that is due at the [`Clock`]'s "now". The server runs it
//! on a tick and whenever an alert is recorded; tests run it with a clock they set.

use std::collections::{BTreeMap, HashSet, btree_map};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use rxledger_core::case::{
    self, AlertRef, Case, CaseAction, CaseError, CaseRecord, NODE_ACTOR, Party, Timers, Transition,
};
use rxledger_core::gs1::Gtin;
use rxledger_core::pack::{RuleCode, RuleViolation};
use rxledger_entities::{alert, alert_case, alert_case_cursor, company_prefix, entry};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, TransactionTrait,
};
use tokio::sync::{Mutex, OnceCell, broadcast};

use crate::ledger::{EntryKind, Ledger, NewEntry};
use crate::{Admission, StoreError};

/// The signer column of the node's own case records (opening, reminders, escalation).
pub const NODE_SIGNER: &str = "log:desk";
/// Alerts read per step of a sweep, and timer transitions made per sweep.
const SWEEP_PAGE: u64 = 500;
/// How far below the alerts already passed a sweep looks again. Alert ids come from one
/// sequence, but on PostgreSQL two nodes' inserts can commit out of order, so an alert can
/// appear below an id a sweep has passed; one whose case is listed is skipped by a lookup,
/// not an append.
const LOOKBACK_IDS: i64 = 1000;
/// Desk records read per step of a catch-up or a precondition.
const DESK_PAGE: u64 = 500;

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
    /// Cases this service opened, by id (not those another node opened first).
    pub opened: Vec<u64>,
    /// Timer transitions this service made: (case, REMINDED or ESCALATED).
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
    /// Set once this service has caught the listing up with the log (at its first use).
    started: Arc<OnceCell<()>>,
}

/// What a decision rests on, confirmed inside the append transaction ([`Cases::still`]).
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// An opening: no case exists for this alert.
    NoCaseFor(i64),
    /// A transition: the case's newest record is still `last`.
    Last { case: u64, last: u64 },
}

/// What [`Cases::transit`] did.
enum Step {
    /// The record was appended.
    Made(CaseAction),
    /// The case rules refused the transition.
    Refused(CaseError),
    /// There was nothing to do (no timer due).
    Idle,
}

/// A case a catch-up read: whether it has a row already, and whether the catch-up changed it.
struct Touched {
    case: Case,
    listed: bool,
    changed: bool,
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
            started: Arc::new(OnceCell::new()),
        }
    }

    pub fn timers(&self) -> &Timers {
        &self.timers
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Every transition this service lists, in log order, once its row is written: its own,
    /// and any other node's or crash's it catches up.
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
        self.reconcile().await?;
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
        // Alerts are opened in id order, so the newest listed alert (after the catch-up) is
        // one every node has passed; another node may have gone further than this one.
        let listed = alert_case::Entity::find()
            .order_by_desc(alert_case::Column::AlertId)
            .one(self.db())
            .await?
            .map_or(0, |c| c.alert_id);
        let mut after = (examined.unwrap_or(0).max(listed) - LOOKBACK_IDS).max(0);
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
            let cased: HashSet<i64> = alert_case::Entity::find()
                .select_only()
                .column(alert_case::Column::AlertId)
                .filter(alert_case::Column::AlertId.is_in(page.iter().map(|a| a.id)))
                .into_tuple()
                .all(self.db())
                .await?
                .into_iter()
                .collect();
            for a in page {
                if !cased.contains(&a.id)
                    && let Some(alert) = alert_ref(&a, &prefixes)
                    && let Some(id) = self.open(alert).await?
                {
                    swept.opened.push(id);
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

    /// Appends the opening record of a case for `alert`, unless a case for it is in the log
    /// already, and lists it: the case's id, or `None` when another node (or an earlier run
    /// that crashed before listing it) opened it.
    async fn open(&self, alert: AlertRef) -> Result<Option<u64>, StoreError> {
        let expect = Expect::NoCaseFor(alert.id);
        let record = CaseRecord {
            case: None,
            action: CaseAction::Opened,
            actor: NODE_ACTOR.into(),
            at: rxledger_core::epcis::format_time(self.clock.now_ms()),
            alert: Some(alert),
            root_cause: None,
            text: None,
        };
        let opened = self.append(&record, NODE_SIGNER, expect).await?;
        self.reconcile().await?;
        Ok(opened)
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
        let timer = |c: &Case| match c.due(now, &self.timers) {
            Some(t) => c
                .next(Party::Node, NODE_ACTOR, t, None, now, &self.timers)
                .map(Some),
            None => Ok(None),
        };
        for id in due {
            let id = id as u64;
            // A node that was down catches up every transition due, one record each.
            loop {
                match self.transit(id, NODE_SIGNER, timer).await? {
                    Some((_, Step::Made(action))) => swept.timers.push((id, action)),
                    Some((c, Step::Idle)) => {
                        self.put_due(&c).await?;
                        break;
                    }
                    Some((_, Step::Refused(e))) => {
                        tracing::error!(case = id, error = %e, "a due timer was refused");
                        break;
                    }
                    None => break,
                }
            }
        }
        Ok(())
    }

    /// Puts a case's row at its next due time by this node's timers: after a timer setting
    /// changed, the row keeps the due time it was written with until then. Only while the
    /// row lists the records `c` was folded from.
    async fn put_due(&self, c: &Case) -> Result<(), StoreError> {
        let row = self.summary(c);
        alert_case::Entity::update_many()
            .col_expr(alert_case::Column::NextDueMs, Expr::value(row.next_due_ms))
            .filter(alert_case::Column::Id.eq(row.id))
            .filter(alert_case::Column::Records.eq(row.records))
            .exec(self.db())
            .await?;
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
        self.reconcile().await?;
        let signer = match party {
            Party::Node => NODE_SIGNER.to_string(),
            _ => format!("org:{actor}"),
        };
        let decide = |c: &Case| {
            let now = self.clock.now_ms();
            c.next(
                party,
                actor,
                transition.clone(),
                text.clone(),
                now,
                &self.timers,
            )
            .map(Some)
        };
        Ok(match self.transit(id, &signer, decide).await? {
            None => None,
            Some((_, Step::Refused(e))) => Some(Err(e)),
            Some((c, Step::Made(_) | Step::Idle)) => Some(Ok(self.summary(&c))),
        })
    }

    /// One transition of case `id`: `decide` makes its record from the case as the listing
    /// has it, and the record is appended only if no other record of the case landed since
    /// (checked inside the append transaction, so against every node). If one did, the
    /// listing catches up and `decide` runs again on the case with it: someone else's record
    /// is never an error. Each retry follows a record of the case that another appended, so
    /// it ends (a case takes a bounded number of records, and nothing after its closing).
    /// Returns the case after the step; `None` when there is no such case. The caller holds
    /// the lock and has caught the listing up.
    async fn transit(
        &self,
        id: u64,
        signer: &str,
        mut decide: impl FnMut(&Case) -> Result<Option<CaseRecord>, CaseError>,
    ) -> Result<Option<(Case, Step)>, StoreError> {
        loop {
            let Some(mut c) = self.fold_listed(id).await? else {
                return Ok(None);
            };
            let record = match decide(&c) {
                Ok(Some(r)) => r,
                Ok(None) => return Ok(Some((c, Step::Idle))),
                Err(e) => return Ok(Some((c, Step::Refused(e)))),
            };
            let last = c.records.last().map_or(c.id, |(i, _)| *i);
            let expect = Expect::Last { case: id, last };
            let appended = self.append(&record, signer, expect).await?;
            self.reconcile().await?;
            if let Some(index) = appended {
                let action = record.action;
                c.apply(index, record).map_err(corrupt)?;
                return Ok(Some((c, Step::Made(action))));
            }
        }
    }

    /// Appends a record if what its decision rests on still holds: its entry index, or `None`
    /// when it no longer does and nothing was appended.
    async fn append(
        &self,
        record: &CaseRecord,
        signer: &str,
        expect: Expect,
    ) -> Result<Option<u64>, StoreError> {
        let entry = NewEntry {
            data: case::seal_record(self.ledger.key(), record),
            kind: EntryKind::DeskRecord,
            signer: signer.to_string(),
            seq: None,
            events: vec![],
        };
        let check = Box::pin(self.still(expect));
        match self
            .ledger
            .append_checked(entry, check)
            .await?
            .admissions
            .pop()
        {
            Some(Admission::Appended { index, .. }) => Ok(Some(index)),
            Some(Admission::Refused(why)) => {
                tracing::debug!(?expect, reason = %why.message, "a case record was not needed");
                Ok(None)
            }
            other => Err(StoreError::Invalid(format!(
                "the case record was not appended: {other:?}"
            ))),
        }
    }

    /// The precondition of a case record, run inside the append transaction (the lease is
    /// held: nothing else commits until it ends). It reads committed state only, through the
    /// pool: the cursor first, then the rows, then every desk record from the cursor on.
    /// Rows only ever take records below the cursor they move to, so whatever a catch-up
    /// commits meanwhile, each record is seen in the rows or in the tail.
    async fn still(&self, expect: Expect) -> Result<Result<(), RuleViolation>, StoreError> {
        let db = self.db();
        let from = covered(db).await?;
        let mut newest = match expect {
            Expect::NoCaseFor(alert) => {
                let listed = alert_case::Entity::find()
                    .filter(alert_case::Column::AlertId.eq(alert))
                    .one(db)
                    .await?;
                if listed.is_some() {
                    return Ok(Err(taken("a case for this alert is listed")));
                }
                None
            }
            Expect::Last { case, .. } => self
                .listed(case)
                .await?
                .and_then(|r| listed_records(&r).last().map(|i| *i as u64)),
        };
        let mut page_from = from;
        loop {
            let page = desk_records(db, page_from, None).await?;
            for e in &page {
                let Some(r) = self.case_record(e)? else {
                    continue;
                };
                match expect {
                    Expect::NoCaseFor(alert)
                        if r.case.is_none() && r.alert.as_ref().is_some_and(|a| a.id == alert) =>
                    {
                        return Ok(Err(taken("a case for this alert is in the log")));
                    }
                    Expect::Last { case, .. } if r.case == Some(case) => {
                        newest = newest.max(Some(e.idx as u64));
                    }
                    _ => {}
                }
            }
            match page.last() {
                Some(e) if page.len() as u64 == DESK_PAGE => page_from = e.idx as u64 + 1,
                _ => break,
            }
        }
        Ok(match expect {
            Expect::Last { last, .. } if newest != Some(last) => {
                Err(taken("another record of the case came first"))
            }
            _ => Ok(()),
        })
    }

    /// Catches the listing up with the log: reads the desk records from the cursor to the
    /// head, folds the case records among them into their cases, and writes those cases' rows
    /// and the moved cursor in one transaction. Records a row already lists are skipped, so a
    /// catch-up can run again over the same records (the cursor starts at 0 on a database
    /// that had cases before it). A second opening for an alert that has a case, and the
    /// records of such a case, stay unlisted (the unique alert id allows one; the first
    /// opening in the log wins) and are logged; before preconditions, two nodes could write
    /// them. Afterwards every record below the head read at the start is listed.
    pub async fn reconcile(&self) -> Result<(), StoreError> {
        let head = self.ledger.refresh().await?.size;
        loop {
            let from = covered(self.db()).await?;
            if from >= head {
                return Ok(());
            }
            let page = desk_records(self.db(), from, Some(head)).await?;
            let to = match page.last() {
                Some(e) if page.len() as u64 == DESK_PAGE => e.idx as u64 + 1,
                _ => head,
            };
            let (touched, changes) = self.fold_page(&page).await?;
            // When another catch-up moved the cursor first, this one reads on from there.
            if self.write_rows(from, to, &touched).await? {
                for change in changes {
                    let _ = self.tx.send(change);
                }
            }
        }
    }

    /// The cases a page of desk records changes, each folded to its last record in the page,
    /// and the change each newly listed record makes.
    async fn fold_page(
        &self,
        page: &[entry::Model],
    ) -> Result<(BTreeMap<u64, Touched>, Vec<CaseChange>), StoreError> {
        let mut touched: BTreeMap<u64, Touched> = BTreeMap::new();
        let mut changes = Vec::new();
        for e in page {
            let Some(record) = self.case_record(e)? else {
                continue;
            };
            let index = e.idx as u64;
            let folded = match record.case {
                None => self.fold_opening(index, &record, &mut touched).await?,
                Some(id) => self.fold_into(id, index, &record, &mut touched).await?,
            };
            if let Some(t) = folded.and_then(|id| touched.get(&id)) {
                changes.push(CaseChange {
                    case: self.summary(&t.case),
                    record_index: index,
                    record,
                });
            }
        }
        Ok((touched, changes))
    }

    /// Opens the case of the opening record at `index` in `touched`, unless it is listed:
    /// its id, or `None` when it is not newly listed.
    async fn fold_opening(
        &self,
        index: u64,
        record: &CaseRecord,
        touched: &mut BTreeMap<u64, Touched>,
    ) -> Result<Option<u64>, StoreError> {
        if !self.opens_unlisted(index, record, touched).await? {
            return Ok(None);
        }
        let case = match Case::open(index, record.clone()) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(entry = index, error = %e, "an opening that does not fold");
                return Ok(None);
            }
        };
        let t = Touched {
            case,
            listed: false,
            changed: true,
        };
        touched.insert(index, t);
        Ok(Some(index))
    }

    /// Folds the record at `index` into case `id` in `touched` (read from its row first),
    /// unless the case lists it already: the case's id, or `None` when nothing changed.
    async fn fold_into(
        &self,
        id: u64,
        index: u64,
        record: &CaseRecord,
        touched: &mut BTreeMap<u64, Touched>,
    ) -> Result<Option<u64>, StoreError> {
        let t = match touched.entry(id) {
            btree_map::Entry::Occupied(o) => o.into_mut(),
            btree_map::Entry::Vacant(v) => {
                let Some(case) = self.fold_listed(id).await? else {
                    tracing::warn!(case = id, entry = index, "a record of an unlisted case");
                    return Ok(None);
                };
                v.insert(Touched {
                    case,
                    listed: true,
                    changed: false,
                })
            }
        };
        if t.case.records.iter().any(|(i, _)| *i == index) {
            return Ok(None);
        }
        if let Err(e) = t.case.apply(index, record.clone()) {
            tracing::warn!(case = id, entry = index, error = %e, "a case record that does not fold");
            return Ok(None);
        }
        t.changed = true;
        Ok(Some(id))
    }

    /// Whether the opening record at `index` opens a case not listed yet: not one listed
    /// already, nor a second opening for an alert that has a case.
    async fn opens_unlisted(
        &self,
        index: u64,
        record: &CaseRecord,
        touched: &BTreeMap<u64, Touched>,
    ) -> Result<bool, StoreError> {
        if touched.contains_key(&index) || self.listed(index).await?.is_some() {
            return Ok(false);
        }
        let Some(alert) = record.alert.as_ref().map(|a| a.id) else {
            return Ok(true);
        };
        let listed = alert_case::Entity::find()
            .filter(alert_case::Column::AlertId.eq(alert))
            .one(self.db())
            .await?
            .is_some();
        if listed || touched.values().any(|t| t.case.alert.id == alert) {
            tracing::warn!(
                alert,
                entry = index,
                "a second opening for an alert: left unlisted"
            );
            return Ok(false);
        }
        Ok(true)
    }

    /// Writes the rows of `touched` and moves the cursor from `from` to `to`, in one
    /// transaction; `false` (and nothing written) when the cursor is no longer at `from`.
    async fn write_rows(
        &self,
        from: u64,
        to: u64,
        touched: &BTreeMap<u64, Touched>,
    ) -> Result<bool, StoreError> {
        let txn = self.db().begin().await?;
        // First, so that on PostgreSQL a concurrent catch-up waits on the cursor's row lock
        // and then finds it moved; on SQLite the write lock orders them.
        let moved = alert_case_cursor::Entity::update_many()
            .col_expr(alert_case_cursor::Column::Covered, Expr::value(to as i64))
            .filter(alert_case_cursor::Column::Id.eq(alert_case_cursor::ID))
            .filter(alert_case_cursor::Column::Covered.eq(from as i64))
            .exec(&txn)
            .await?;
        if moved.rows_affected != 1 {
            txn.rollback().await?;
            return Ok(false);
        }
        for t in touched.values().filter(|t| t.changed) {
            let row = self.summary(&t.case);
            if t.listed {
                update_row(&txn, row).await?;
            } else {
                alert_case::ActiveModel::from(row).insert(&txn).await?;
            }
        }
        txn.commit().await?;
        Ok(true)
    }

    /// The case record an entry holds, checked against the log key; `None` for any other
    /// desk record (a tracing request).
    fn case_record(&self, e: &entry::Model) -> Result<Option<CaseRecord>, StoreError> {
        if !case::is_case_record(&e.data) {
            return Ok(None);
        }
        case::open_record(&e.data, self.ledger.verifier())
            .map(Some)
            .map_err(corrupt)
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

    /// Catches the listing up once, at this service's first read.
    async fn start(&self) -> Result<(), StoreError> {
        self.started
            .get_or_try_init(|| self.reconcile())
            .await
            .map(|_| ())
    }

    /// A case's row.
    pub async fn row(&self, id: u64) -> Result<Option<alert_case::Model>, StoreError> {
        self.start().await?;
        self.listed(id).await
    }

    async fn listed(&self, id: u64) -> Result<Option<alert_case::Model>, StoreError> {
        Ok(alert_case::Entity::find_by_id(id as i64)
            .one(self.db())
            .await?)
    }

    /// A case's state: its records read from the log, checked against the log key and folded.
    pub async fn fold(&self, id: u64) -> Result<Option<Case>, StoreError> {
        self.start().await?;
        self.fold_listed(id).await
    }

    /// The fold of the records case `id`'s row lists.
    async fn fold_listed(&self, id: u64) -> Result<Option<Case>, StoreError> {
        let Some(row) = self.listed(id).await? else {
            return Ok(None);
        };
        let indices = listed_records(&row);
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
        self.start().await?;
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

/// The first entry index the listing has not read.
async fn covered(db: &impl ConnectionTrait) -> Result<u64, StoreError> {
    let row = alert_case_cursor::Entity::find_by_id(alert_case_cursor::ID)
        .one(db)
        .await?
        .ok_or_else(|| StoreError::Corrupt("the alert_case_cursor row is missing".into()))?;
    u64::try_from(row.covered)
        .map_err(|_| StoreError::Corrupt(format!("alert_case_cursor at {}", row.covered)))
}

/// Up to a page of desk records from entry `from` (below `until`), in log order. `kind = 3`
/// is spelled as a literal so that both databases use the partial index on it (m0012).
async fn desk_records(
    db: &impl ConnectionTrait,
    from: u64,
    until: Option<u64>,
) -> Result<Vec<entry::Model>, StoreError> {
    let mut q = entry::Entity::find()
        .filter(Expr::cust(format!(
            "kind = {}",
            EntryKind::DeskRecord as i16
        )))
        .filter(entry::Column::Idx.gte(from as i64));
    if let Some(until) = until {
        q = q.filter(entry::Column::Idx.lt(until as i64));
    }
    Ok(q.order_by_asc(entry::Column::Idx)
        .limit(DESK_PAGE)
        .all(db)
        .await?)
}

/// Rewrites a case's row, all but what its opening fixed.
async fn update_row(db: &impl ConnectionTrait, row: alert_case::Model) -> Result<(), StoreError> {
    alert_case::ActiveModel {
        id: Set(row.id),
        status: Set(row.status),
        root_cause: Set(row.root_cause),
        escalated: Set(row.escalated),
        next_due_ms: Set(row.next_due_ms),
        updated_ms: Set(row.updated_ms),
        records: Set(row.records),
        ..Default::default()
    }
    .update(db)
    .await?;
    Ok(())
}

/// The entries of the records a row lists, in log order.
fn listed_records(row: &alert_case::Model) -> Vec<i64> {
    row.records
        .split_whitespace()
        .filter_map(|i| i.parse().ok())
        .collect()
}

/// The refusal of a case record whose decision no longer holds: someone else made it.
fn taken(why: &str) -> RuleViolation {
    RuleViolation::new_public(RuleCode::StatusAlreadySet, why)
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

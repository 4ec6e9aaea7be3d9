//! Reading a pack's events back out of the log, for the rules in `rxledger_core::pack`.
//!
//! The `epcs` table indexes every identifier an event names. A pack's history is the events
//! that name it, plus those of every container it was ever packed into (up to
//! `MAX_NESTING` levels), plus class-level events for its lot (a recall). Each event is read
//! from the exact logged bytes and parsed again by the core: the index only says where to look,
//! the ledger is the source of truth. Parsed events are cached by position, because a pallet's
//! events are shared by every pack on it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use rxledger_core::envelope;
use rxledger_core::epcis;
use rxledger_core::gs1::{EpcId, Gtin, Sgtin};
use rxledger_core::index;
use rxledger_core::pack::{self, LoggedEvent, PackEvents};
use rxledger_entities::{commission, company_prefix, device, entry, epc, site};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};

use crate::ledger::read_head;
use crate::postings::Postings;
use crate::{Database, StoreError};

/// Parsed events kept in memory (two generations of half this size each; see [`EventCache`]).
/// A million-pack log of realistic shape has about 90,000 events, shared by the packs they
/// name, so this holds all of it.
pub const EVENT_CACHE: usize = 262_144;
/// A gap between the in-memory index and the log that a reader closes itself; a larger one
/// (the first load) is closed in the background while readers use the table.
const CATCH_UP_INLINE: u64 = 2_000;

// The keys and owners are decided in the core; these callers reach them through the store.
pub use rxledger_core::index::{epc_key, owner_of, owning_prefix, sgtin_key};

/// Reads pack histories and the facts the ingest rules need.
pub struct Packs {
    db: Database,
    cache: Mutex<EventCache>,
    /// The identifier index in memory, when these reads share a process with the ledger.
    postings: Option<Arc<Postings>>,
    signers: Mutex<HashMap<String, (String, Option<String>)>>,
    registry: Mutex<Option<RegistryCopy>>,
}

/// Registry data read on every verify and every batch, kept in memory. It is reloaded when
/// this process changes the registry (the generation moves) and at least every
/// `REGISTRY_TTL`, for changes made by another process (the CLI, another node).
struct RegistryCopy {
    generation: u64,
    loaded: std::time::Instant,
    prefixes: Arc<Vec<(String, String)>>,
    directory: Arc<Directory>,
}

/// GLN → (organization, coordinates).
pub type Directory = HashMap<String, (String, Option<(f64, f64)>)>;

const REGISTRY_TTL: std::time::Duration = std::time::Duration::from_secs(2);

impl Packs {
    /// Reads that always walk the `epcs` table.
    pub fn new(db: Database) -> Self {
        Packs {
            db,
            cache: Mutex::new(EventCache::new(EVENT_CACHE)),
            postings: None,
            signers: Mutex::new(HashMap::new()),
            registry: Mutex::new(None),
        }
    }

    /// Reads that use the ledger's in-memory identifier index ([`crate::Ledger::postings`])
    /// whenever it is complete, and the table otherwise. Call [`Packs::load_index`] once to
    /// fill it.
    pub fn indexed(db: Database, postings: Arc<Postings>) -> Self {
        Packs {
            postings: Some(postings),
            ..Packs::new(db)
        }
    }

    /// Fills the in-memory index from the table up to the committed log (the first load: about
    /// 3 s for a million packs). Readers use the table until it is done.
    pub async fn load_index(&self) -> Result<(), StoreError> {
        if let Some(p) = &self.postings {
            let size = read_head(&self.db).await?.size;
            p.saw_head(size);
            p.catch_up(&self.db, size).await?;
        }
        Ok(())
    }

    /// The in-memory index, if it is complete for every committed entry this node knows of.
    pub(crate) async fn index(&self) -> Result<Option<&Postings>, StoreError> {
        let Some(p) = self.postings.as_deref() else {
            return Ok(None);
        };
        if self.db.is_postgres() {
            // Other nodes append to the same log: ask the database how far it is, so a pack
            // dispensed through another node reads as dispensed here at once.
            p.saw_head(read_head(&self.db).await?.size);
        }
        let (covered, known) = (p.covered(), p.known());
        if covered >= known {
            return Ok(Some(p));
        }
        if covered > 0 && known - covered <= CATCH_UP_INLINE {
            p.catch_up(&self.db, known).await?;
            return Ok(Some(p));
        }
        Ok(None)
    }

    /// Every event that applies to `pack`: its own, its containers' (transitively) and its
    /// classes', as the core's [`pack::Walk`] names them, with the closure it walked.
    /// Unordered; the core sorts by event time.
    pub async fn events(&self, pack: &Sgtin) -> Result<PackEvents<Arc<LoggedEvent>>, StoreError> {
        let index = self.index().await?;
        if let Some(p) = index {
            // Read every event of the pack and of every container it was ever in with one
            // query (the index's closure is a superset of the walk's), so that the walk below
            // finds them all in the cache.
            let keys = p.closure(&[sgtin_key(pack)], pack::MAX_NESTING);
            let wanted: Vec<(i64, i32)> = p
                .lookup_ids(&keys)
                .into_iter()
                .map(|(i, pos)| (i as i64, pos as i32))
                .collect();
            let missing: Vec<i64> = {
                let cache = lock(&self.cache);
                wanted
                    .iter()
                    .filter(|k| !cache.contains(k))
                    .map(|k| k.0)
                    .collect()
            };
            self.fetch(missing, &wanted).await?;
        }
        let mut out: Vec<Arc<LoggedEvent>> = Vec::new();
        let mut seen: HashSet<(i64, i32)> = HashSet::new();
        let mut walk = pack::Walk::new(pack);
        loop {
            let keys: Vec<String> = walk.next(&out).iter().map(epc_key).collect();
            if keys.is_empty() {
                return Ok(walk.finish(out));
            }
            self.load(index, &keys, &mut seen, &mut out).await?;
        }
    }

    pub(crate) async fn load(
        &self,
        index: Option<&Postings>,
        keys: &[String],
        seen: &mut HashSet<(i64, i32)>,
        out: &mut Vec<Arc<LoggedEvent>>,
    ) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let found: Vec<(i64, i32)> = match index {
            Some(p) => p
                .lookup(keys)
                .into_iter()
                .map(|(i, pos)| (i as i64, pos as i32))
                .collect(),
            None => {
                epc::Entity::find()
                    .select_only()
                    .column(epc::Column::EntryIdx)
                    .column(epc::Column::Position)
                    .filter(epc::Column::Epc.is_in(keys.to_vec()))
                    .into_tuple()
                    .all(&self.db.conn)
                    .await?
            }
        };
        let mut wanted: Vec<(i64, i32)> = Vec::new();
        for k in found {
            if seen.insert(k) {
                wanted.push(k);
            }
        }
        let mut missing: Vec<i64> = Vec::new();
        {
            let mut cache = lock(&self.cache);
            for k in &wanted {
                match cache.get(k) {
                    Some(e) => out.push(e),
                    None => missing.push(k.0),
                }
            }
        }
        out.extend(self.fetch(missing, &wanted).await?);
        Ok(())
    }

    /// Reads the `wanted` events of the `missing` entries from the log, parses them and caches
    /// them; returns them.
    async fn fetch(
        &self,
        mut missing: Vec<i64>,
        wanted: &[(i64, i32)],
    ) -> Result<Vec<Arc<LoggedEvent>>, StoreError> {
        let mut out = Vec::new();
        if missing.is_empty() {
            return Ok(out);
        }
        missing.sort_unstable();
        missing.dedup();
        let entries = entry::Entity::find()
            .filter(entry::Column::Idx.is_in(missing))
            .all(&self.db.conn)
            .await?;
        for e in entries {
            let body = envelope::read_body(&e.data).map_err(|err| {
                StoreError::Corrupt(format!(
                    "entry {} does not parse as an envelope: {err}",
                    e.idx
                ))
            })?;
            let (org, site) = self.signer(&e.signer).await?;
            for (pos, json) in body.events.iter().enumerate() {
                let key = (e.idx, pos as i32);
                if !wanted.contains(&key) {
                    continue;
                }
                let event = epcis::parse_event(json).map_err(|err| {
                    StoreError::Corrupt(format!(
                        "entry {} event {pos} no longer parses: {err}",
                        e.idx
                    ))
                })?;
                let logged = Arc::new(LoggedEvent {
                    index: e.idx as u64,
                    event,
                    org: org.clone(),
                    site: site.clone(),
                });
                lock(&self.cache).insert(key, logged.clone());
                out.push(logged);
            }
        }
        Ok(out)
    }

    /// The organization and site of a signer: a device, or `org:<id>` for API state changes.
    async fn signer(&self, signer: &str) -> Result<(String, Option<String>), StoreError> {
        if let Some(org) = signer.strip_prefix("org:") {
            return Ok((org.to_string(), None));
        }
        if let Some(v) = lock(&self.signers).get(signer) {
            return Ok(v.clone());
        }
        let d = device::Entity::find_by_id(signer)
            .one(&self.db.conn)
            .await?;
        let v = match d {
            Some(d) => (d.org_id, Some(d.site_gln)),
            None => (String::new(), None),
        };
        lock(&self.signers).insert(signer.to_string(), v.clone());
        Ok(v)
    }

    /// Which of these SGTIN keys are already commissioned, and at which entry.
    pub async fn commissioned(&self, keys: &[String]) -> Result<HashMap<String, u64>, StoreError> {
        let mut out = HashMap::new();
        for chunk in keys.chunks(500) {
            for r in commission::Entity::find()
                .filter(commission::Column::Sgtin.is_in(chunk.to_vec()))
                .all(&self.db.conn)
                .await?
            {
                out.insert(r.sgtin, r.entry_idx as u64);
            }
        }
        Ok(out)
    }

    /// (signer, seq) of these entries.
    pub async fn signers_of(
        &self,
        indices: &[u64],
    ) -> Result<HashMap<u64, (String, i64)>, StoreError> {
        let mut out = HashMap::new();
        let idx: Vec<i64> = indices.iter().map(|i| *i as i64).collect();
        for chunk in idx.chunks(500) {
            let rows = entry::Entity::find()
                .select_only()
                .column(entry::Column::Idx)
                .column(entry::Column::Signer)
                .column(entry::Column::Seq)
                .filter(entry::Column::Idx.is_in(chunk.to_vec()))
                .into_tuple::<(i64, String, i64)>()
                .all(&self.db.conn)
                .await?;
            for (i, signer, seq) in rows {
                out.insert(i as u64, (signer, seq));
            }
        }
        Ok(out)
    }

    /// Every commissioned pack of a lot, with the organization that commissioned it.
    pub async fn lot_serials(
        &self,
        gtin: &Gtin,
        lot: &rxledger_core::gs1::Lot,
    ) -> Result<Vec<(Sgtin, String)>, StoreError> {
        let rows = commission::Entity::find()
            .filter(commission::Column::Gtin.eq(gtin.as_str()))
            .filter(commission::Column::Lot.eq(lot.as_str()))
            .all(&self.db.conn)
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let serial = r.sgtin.rsplit_once('.').map(|(_, s)| s)?;
                let serial = rxledger_core::gs1::Serial::parse(serial).ok()?;
                Some((
                    Sgtin {
                        gtin: gtin.clone(),
                        serial,
                    },
                    r.org_id,
                ))
            })
            .collect())
    }

    /// Whether any pack of this GTIN was ever commissioned.
    pub async fn product_known(&self, gtin: &Gtin) -> Result<bool, StoreError> {
        Ok(commission::Entity::find()
            .filter(commission::Column::Gtin.eq(gtin.as_str()))
            .one(&self.db.conn)
            .await?
            .is_some())
    }

    /// Every registered company prefix and its owner.
    pub async fn prefixes(&self) -> Result<Arc<Vec<(String, String)>>, StoreError> {
        Ok(self.registry_copy().await?.0)
    }

    /// GLN → (organization, coordinates), for the rules' site directory.
    pub async fn directory(&self) -> Result<Arc<Directory>, StoreError> {
        Ok(self.registry_copy().await?.1)
    }

    async fn registry_copy(
        &self,
    ) -> Result<(Arc<Vec<(String, String)>>, Arc<Directory>), StoreError> {
        let generation = self
            .db
            .registry_generation
            .load(std::sync::atomic::Ordering::Acquire);
        if let Some(c) = lock(&self.registry).as_ref()
            && c.generation == generation
            && c.loaded.elapsed() < REGISTRY_TTL
        {
            return Ok((c.prefixes.clone(), c.directory.clone()));
        }
        let prefixes: Vec<(String, String)> = company_prefix::Entity::find()
            .all(&self.db.conn)
            .await?
            .into_iter()
            .map(|p| (p.prefix, p.org_id))
            .collect();
        let directory: Directory = site::Entity::find()
            .all(&self.db.conn)
            .await?
            .into_iter()
            .map(|s| {
                let coords = s.latitude.zip(s.longitude);
                (s.gln, (s.org_id, coords))
            })
            .collect();
        let copy = RegistryCopy {
            generation,
            loaded: std::time::Instant::now(),
            prefixes: Arc::new(prefixes),
            directory: Arc::new(directory),
        };
        let out = (copy.prefixes.clone(), copy.directory.clone());
        *lock(&self.registry) = Some(copy);
        Ok(out)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every mutation is a single insert or clear; a poisoned lock is still consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Appends a state change requested through the API (dispense, undo, stolen, destroy,
/// recall) as a ledger entry of its own, signed by the log key and attributed to `org`, if
/// `check` (when given) passes inside the append transaction ([`crate::Ledger::append_checked`]).
/// Returns the entry index and the checkpoint that includes it, or the rule that refused it.
pub async fn append_state_change(
    ledger: &crate::Ledger,
    org: &str,
    event: serde_json::Value,
    check: Option<crate::ledger::Precondition<'_>>,
) -> Result<Result<(u64, crate::SignedHead), pack::RuleViolation>, StoreError> {
    let now = crate::now_ms();
    let (row, _) = index::index_event(&event, org, now, 60_000).map_err(|e| {
        StoreError::Invalid(format!("the state change is not a valid EPCIS event: {e}"))
    })?;
    let body = envelope::Body {
        v: envelope::VERSION,
        device_id: format!("org:{org}"),
        seq: 0,
        sent_at: epcis::format_time(now),
        events: vec![event],
    };
    let data = envelope::seal(ledger.key(), &body);
    let entry = crate::NewEntry {
        data,
        kind: crate::ledger::EntryKind::ApiStateChange,
        signer: format!("org:{org}"),
        seq: None,
        events: vec![row],
    };
    let batch = match check {
        Some(check) => ledger.append_checked(entry, check).await?,
        None => ledger.append(vec![entry]).await?,
    };
    match batch.admissions.into_iter().next() {
        Some(crate::Admission::Appended { index, .. }) => Ok(Ok((index, batch.head))),
        Some(crate::Admission::Refused(rule)) => Ok(Err(rule)),
        Some(crate::Admission::DuplicateEvent { index, .. }) => Err(StoreError::Invalid(format!(
            "the same state change is already in the log at entry {index}"
        ))),
        other => Err(StoreError::Invalid(format!(
            "the state change was not appended: {other:?}"
        ))),
    }
}

/// EPCIS-style filters over the event index (the names follow the EPCIS query interface).
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    /// MATCH_anyEPC: events that name this identifier in any role.
    pub any_epc: Option<EpcId>,
    /// GE_eventTime / LT_eventTime, Unix milliseconds.
    pub from_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub biz_step: Option<String>,
    pub disposition: Option<String>,
    /// Location keys as `epcis::Location::key` makes them (a GLN, or GLN.extension).
    pub biz_location: Option<String>,
    pub read_point: Option<String>,
    /// Only events whose entries were signed by one of these signers (access control).
    pub signers: Option<Vec<String>>,
    /// The EPCIS REST query's lists (`EQ_bizStep=shipping|receiving`, ...): each non-empty
    /// one keeps the events that match any of its values.
    pub any_of: AnyOf,
}

/// Lists of accepted values, as the EPCIS REST query passes them; empty: no condition.
#[derive(Clone, Debug, Default)]
pub struct AnyOf {
    /// `eventType`: `ObjectEvent`, ...
    pub event_types: Vec<String>,
    /// `EQ_action`: ADD, OBSERVE, DELETE.
    pub actions: Vec<String>,
    pub biz_steps: Vec<String>,
    pub dispositions: Vec<String>,
    pub biz_locations: Vec<String>,
    pub read_points: Vec<String>,
    /// `MATCH_epc`: named in epcList or childEPCs.
    pub epcs: Vec<EpcId>,
    /// `MATCH_parentID`.
    pub parents: Vec<EpcId>,
    /// `MATCH_anyEPC`: named in any role.
    pub any_epcs: Vec<EpcId>,
    /// `EQ_eventID`: CBV 2.0 event hashes.
    pub hashes: Vec<[u8; 32]>,
    /// `GE_eventTime` / `LT_eventTime`, Unix ms.
    pub event_from_ms: Option<i64>,
    pub event_until_ms: Option<i64>,
    /// `GE_recordTime` / `LT_recordTime`: when the log received the entry, Unix ms.
    pub record_from_ms: Option<i64>,
    pub record_until_ms: Option<i64>,
}

impl Packs {
    /// One page of events in ledger order, after the cursor `(entry index, position)`.
    pub async fn events_page(
        &self,
        f: &EventFilter,
        first: u64,
        after: Option<(i64, i32)>,
    ) -> Result<Vec<rxledger_entities::event::Model>, StoreError> {
        use rxledger_entities::event;
        use sea_orm::sea_query::Query;
        use sea_orm::{Condition, QueryOrder};
        let mut q = event::Entity::find();
        if let Some(id) = &f.any_epc {
            q = q.filter(
                event::Column::Hash.in_subquery(
                    Query::select()
                        .column(epc::Column::EventHash)
                        .from(epc::Entity)
                        .and_where(epc::Column::Epc.eq(epc_key(id)))
                        .to_owned(),
                ),
            );
        }
        if let Some(t) = f.from_ms {
            q = q.filter(event::Column::EventTimeMs.gte(t));
        }
        if let Some(t) = f.until_ms {
            q = q.filter(event::Column::EventTimeMs.lt(t));
        }
        if let Some(v) = &f.biz_step {
            q = q.filter(event::Column::BizStep.eq(v.clone()));
        }
        if let Some(v) = &f.disposition {
            q = q.filter(event::Column::Disposition.eq(v.clone()));
        }
        if let Some(v) = &f.biz_location {
            q = q.filter(event::Column::BizLocation.eq(v.clone()));
        }
        if let Some(v) = &f.read_point {
            q = q.filter(event::Column::ReadPoint.eq(v.clone()));
        }
        if let Some(signers) = &f.signers {
            q = q.filter(
                event::Column::EntryIdx.in_subquery(
                    Query::select()
                        .column(entry::Column::Idx)
                        .from(entry::Entity)
                        .and_where(entry::Column::Signer.is_in(signers.clone()))
                        .to_owned(),
                ),
            );
        }
        q = f.any_of.apply(q);
        if let Some((idx, pos)) = after {
            q = q.filter(
                Condition::any().add(event::Column::EntryIdx.gt(idx)).add(
                    Condition::all()
                        .add(event::Column::EntryIdx.eq(idx))
                        .add(event::Column::Position.gt(pos)),
                ),
            );
        }
        Ok(q.order_by_asc(event::Column::EntryIdx)
            .order_by_asc(event::Column::Position)
            .limit(first)
            .all(&self.db.conn)
            .await?)
    }
}

impl AnyOf {
    fn apply(
        &self,
        mut q: sea_orm::Select<rxledger_entities::event::Entity>,
    ) -> sea_orm::Select<rxledger_entities::event::Entity> {
        use rxledger_entities::event;
        use sea_orm::sea_query::Query;
        let strings = |v: &[String]| v.to_vec();
        if !self.event_types.is_empty() {
            q = q.filter(event::Column::EventType.is_in(strings(&self.event_types)));
        }
        if !self.actions.is_empty() {
            q = q.filter(event::Column::Action.is_in(strings(&self.actions)));
        }
        if !self.biz_steps.is_empty() {
            q = q.filter(event::Column::BizStep.is_in(strings(&self.biz_steps)));
        }
        if !self.dispositions.is_empty() {
            q = q.filter(event::Column::Disposition.is_in(strings(&self.dispositions)));
        }
        if !self.biz_locations.is_empty() {
            q = q.filter(event::Column::BizLocation.is_in(strings(&self.biz_locations)));
        }
        if !self.read_points.is_empty() {
            q = q.filter(event::Column::ReadPoint.is_in(strings(&self.read_points)));
        }
        if let Some(t) = self.event_from_ms {
            q = q.filter(event::Column::EventTimeMs.gte(t));
        }
        if let Some(t) = self.event_until_ms {
            q = q.filter(event::Column::EventTimeMs.lt(t));
        }
        if !self.hashes.is_empty() {
            q = q.filter(event::Column::Hash.is_in(self.hashes.iter().map(|h| h.to_vec())));
        }
        for (ids, roles) in [
            (&self.epcs, &[0i16, 2][..]),
            (&self.parents, &[1][..]),
            (&self.any_epcs, &[][..]),
        ] {
            if ids.is_empty() {
                continue;
            }
            let mut sub = Query::select();
            sub.column(epc::Column::EventHash)
                .from(epc::Entity)
                .and_where(epc::Column::Epc.is_in(ids.iter().map(epc_key)));
            if !roles.is_empty() {
                sub.and_where(epc::Column::Role.is_in(roles.to_vec()));
            }
            q = q.filter(event::Column::Hash.in_subquery(sub.to_owned()));
        }
        if self.record_from_ms.is_some() || self.record_until_ms.is_some() {
            let mut sub = Query::select();
            sub.column(entry::Column::Idx).from(entry::Entity);
            if let Some(t) = self.record_from_ms {
                sub.and_where(entry::Column::ReceivedMs.gte(t));
            }
            if let Some(t) = self.record_until_ms {
                sub.and_where(entry::Column::ReceivedMs.lt(t));
            }
            q = q.filter(event::Column::EntryIdx.in_subquery(sub.to_owned()));
        }
        q
    }
}

/// Parsed events by (entry, position), bounded: new and recently used events live in `hot`;
/// when `hot` fills, it becomes `cold` and the old `cold` is dropped. An event read from
/// `cold` moves back to `hot`. Memory stays under `capacity` events, and the events a working
/// set keeps touching (a pallet's, shared by its thousand packs) survive the turnover.
pub struct EventCache {
    hot: HashMap<(i64, i32), Arc<LoggedEvent>>,
    cold: HashMap<(i64, i32), Arc<LoggedEvent>>,
    half: usize,
}

impl EventCache {
    pub fn new(capacity: usize) -> Self {
        EventCache {
            hot: HashMap::new(),
            cold: HashMap::new(),
            half: (capacity / 2).max(1),
        }
    }

    pub fn get(&mut self, k: &(i64, i32)) -> Option<Arc<LoggedEvent>> {
        if let Some(e) = self.hot.get(k) {
            return Some(e.clone());
        }
        let e = self.cold.remove(k)?;
        self.insert(*k, e.clone());
        Some(e)
    }

    /// Whether `k` is held, without counting as a use.
    pub fn contains(&self, k: &(i64, i32)) -> bool {
        self.hot.contains_key(k) || self.cold.contains_key(k)
    }

    pub fn insert(&mut self, k: (i64, i32), e: Arc<LoggedEvent>) {
        if self.hot.len() >= self.half {
            self.cold = std::mem::take(&mut self.hot);
        }
        self.hot.insert(k, e);
    }

    pub fn len(&self) -> usize {
        self.hot.len() + self.cold.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

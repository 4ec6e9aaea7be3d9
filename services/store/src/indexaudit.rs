//! The index audit: every derived row a verdict reads, rebuilt from the raw entries.
//!
//! Verdicts find a pack's events through the `epcs` table (and its in-memory copy), learn
//! whether a product is known from `commissions`, and the ingest's exactly-once rule reads
//! the `events` table. None of them is hashed into the log, so an operator could delete the
//! rows of a dispensing and the pack would read as never dispensed. This pass rebuilds every
//! row of the three tables from the entry bytes with the code ingest used
//! (`core::index::reindex_event`, the same rows as `index_event` without the time check) and
//! names each row that is missing, extra or different.
//!
//! It works one page of entries at a time: the rows the page's entries give against the rows
//! the tables hold for that page's entry indices (each table has an index on `entry_idx`).
//! Memory is one page of entries with their rows, whatever the size of the log; only the
//! device directory (device id → organization) is held whole, and the list of findings is
//! capped at [`MAX_LISTED`].
//!
//! The same pass recomputes the authenticated pack index (`rxledger_core::map`) entry by
//! entry and checks every map-root entry against it: its root, key count and size must be the
//! map of every entry before it (and, in `rxledger audit`, its signature the log key's). The
//! map is the one thing held whole (one leaf per identifier). The map itself is not stored:
//! the ledger builds it from the `epcs` rows and tiles this pass checks.
//!
//! What is not checked here: `alerts` (rejections never reach the log, so they cannot be
//! rebuilt from it, and no verdict reads them) and `devices.last_seq` (the replay guard of
//! ingest; a verdict never reads it).

use std::collections::{BTreeMap, HashMap, HashSet};

use rxledger_core::envelope;
use rxledger_core::index::{self, IndexedEvent};
use rxledger_core::keys::PublicKey;
use rxledger_core::map::rootentry::MapRoot;
use rxledger_core::map::{self, MapTree};
use rxledger_core::merkle;
use rxledger_entities::{commission, device, entry, epc, event};
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QuerySelect};

use crate::audit::{AuditReport, current_size};
use crate::{Database, StoreError};

/// Index findings listed one by one; beyond this they are only counted.
pub const MAX_LISTED: usize = 1000;
/// Rows read beyond the head per table: a few name the problem.
const BEYOND_LISTED: u64 = 20;

/// The index audit in progress (see the module docs).
pub struct IndexAudit {
    /// Device id → organization, for the commissions a device's events make.
    devices: HashMap<String, String>,
    listed: usize,
    unlisted: u64,
    /// The pack index recomputed from the entries so far (`None`: not recomputed, see
    /// [`check_index_rows`]).
    map: Option<MapTree>,
    /// The log key map-root entries must be signed with, when the caller knows it.
    log_key: Option<PublicKey>,
    /// Device id → (organization, enrolled public key, SEC1 hex), for partner signatures.
    keys: HashMap<String, (String, String)>,
    /// The partner-signed document the last attested entry named (`sha256|org`), and the
    /// hashes of its events or why it does not hold: a capture's entries are consecutive,
    /// so one is enough and memory stays flat.
    document: Option<(String, DocumentHashes)>,
}

/// A partner-signed document's event hashes, or why it does not hold.
type DocumentHashes = Result<HashSet<[u8; 32]>, String>;

/// The rows of one page, by each table's primary key.
#[derive(Default)]
struct Rows {
    events: BTreeMap<String, event::Model>,
    epcs: BTreeMap<String, epc::Model>,
    commissions: BTreeMap<String, commission::Model>,
}

/// How a finding names a row: its primary key, then its other columns.
trait Row: PartialEq {
    fn key(&self) -> String;
    fn describe(&self) -> String;
}

impl Row for event::Model {
    fn key(&self) -> String {
        format!("event {}", hex::encode(&self.hash))
    }
    fn describe(&self) -> String {
        format!(
            "entry {} position {} eventTime {} {} action {:?} bizStep {:?} disposition {:?} readPoint {:?} bizLocation {:?}",
            self.entry_idx,
            self.position,
            self.event_time_ms,
            self.event_type,
            self.action,
            self.biz_step,
            self.disposition,
            self.read_point,
            self.biz_location
        )
    }
}

impl Row for epc::Model {
    fn key(&self) -> String {
        format!("{} in event {}", self.epc, hex::encode(&self.event_hash))
    }
    fn describe(&self) -> String {
        format!(
            "entry {} position {} eventTime {} role {}",
            self.entry_idx, self.position, self.event_time_ms, self.role
        )
    }
}

impl Row for commission::Model {
    fn key(&self) -> String {
        self.sgtin.clone()
    }
    fn describe(&self) -> String {
        format!(
            "gtin {} entry {} org {} lot {:?} expiry {:?}",
            self.gtin, self.entry_idx, self.org_id, self.lot, self.expiry
        )
    }
}

impl IndexAudit {
    /// Reads the device directory the commissions' organizations come from.
    pub async fn load(db: &Database) -> Result<IndexAudit, StoreError> {
        let rows = device::Entity::find().all(&db.conn).await?;
        let devices = rows
            .iter()
            .map(|d| (d.id.clone(), d.org_id.clone()))
            .collect();
        let keys = rows
            .into_iter()
            .map(|d| (d.id, (d.org_id, d.public_key)))
            .collect();
        Ok(IndexAudit {
            devices,
            listed: 0,
            unlisted: 0,
            map: Some(MapTree::new()),
            log_key: None,
            keys,
            document: None,
        })
    }

    /// Also checks each map-root entry's signature with the log's k256 key, and each
    /// partner-signed entry against its kept document (the full audit; the start-up check
    /// does neither).
    pub fn with_log_key(mut self, key: PublicKey) -> Self {
        self.log_key = Some(key);
        self
    }

    /// Compares the rows of `entries` (the whole of entries `from..from + entries.len()`)
    /// with the rows the tables hold for those indices.
    pub async fn check_page(
        &mut self,
        db: &Database,
        from: u64,
        entries: &[entry::Model],
        report: &mut AuditReport,
    ) -> Result<(), StoreError> {
        let to = from + entries.len() as u64;
        let expected = self.rebuild(entries, report);
        self.map_page(entries, report);
        if self.log_key.is_some() {
            self.check_attestations(db, entries, report).await?;
        }
        let stored = stored_rows(db, Span::Page(from, to)).await?;
        report.index_rows_checked +=
            (expected.events.len() + expected.epcs.len() + expected.commissions.len()) as u64;
        self.compare("events", expected.events, stored.events, report);
        self.compare("epcs", expected.epcs, stored.epcs, report);
        self.compare(
            "commissions",
            expected.commissions,
            stored.commissions,
            report,
        );
        Ok(())
    }

    /// Each entry of a partner-signed capture (`envelope::read_attested`): its document is
    /// kept, is the attested bytes, was signed by the enrolled key of a device of the entry's
    /// organization, and holds every event of the entry (`core::epcis::attestation`).
    async fn check_attestations(
        &mut self,
        db: &Database,
        entries: &[entry::Model],
        report: &mut AuditReport,
    ) -> Result<(), StoreError> {
        for e in entries {
            let Ok((body, Some(att))) = envelope::read_attested(&e.data) else {
                continue;
            };
            let org = body
                .device_id
                .strip_prefix("org:")
                .unwrap_or("")
                .to_string();
            let name = format!("{}|{org}", att.sha256);
            let (name, found) = match self.document.take() {
                Some((n, found)) if n == name => (n, found),
                _ => {
                    let found = self.read_document(db, &att, &org).await?;
                    (name, found)
                }
            };
            match &found {
                Err(why) => self.note(
                    format!(
                        "entry {}: the partner-signed document {} {why}",
                        e.idx, att.sha256
                    ),
                    report,
                ),
                Ok(hashes) => {
                    for (p, event) in body.events.iter().enumerate() {
                        let held = rxledger_core::epcis::event_hash(event)
                            .is_ok_and(|h| hashes.contains(&h));
                        if !held {
                            self.note(
                                format!(
                                    "entry {} event {p} is not one of the events of the partner-signed document {}",
                                    e.idx, att.sha256
                                ),
                                report,
                            );
                        }
                    }
                }
            }
            self.document = Some((name, found));
        }
        Ok(())
    }

    /// The hashes of the events of the document `att` names, as `org` sent it, once it is
    /// found to be the attested bytes signed by an enrolled device of `org`; or why not.
    async fn read_document(
        &self,
        db: &Database,
        att: &rxledger_core::epcis::attestation::Attestation,
        org: &str,
    ) -> Result<DocumentHashes, StoreError> {
        use rxledger_core::epcis::attestation;
        let Some(doc) = crate::PartnerDocuments::new(db.clone())
            .get(&att.sha256, Some(org))
            .await?
        else {
            return Ok(Err("is not kept".into()));
        };
        let key = match self.keys.get(&att.keyid) {
            Some((owner, key)) if owner == org => key,
            Some(_) => {
                return Ok(Err(format!(
                    "names device {:?}, which is not {org}'s",
                    att.keyid
                )));
            }
            None => {
                return Ok(Err(format!(
                    "names device {:?}, which was never enrolled",
                    att.keyid
                )));
            }
        };
        let Ok(key) = PublicKey::from_sec1_hex(key) else {
            return Ok(Err(format!(
                "names device {:?}, whose key is unreadable",
                att.keyid
            )));
        };
        if let Err(e) = att.verify_document(&doc.data, &key) {
            return Ok(Err(format!("does not verify: {e}")));
        }
        let hashes = att
            .decode()
            .and_then(|(media, _, _)| attestation::event_hashes(&doc.data, media));
        Ok(match hashes {
            Ok(h) => Ok(h.into_iter().flatten().collect()),
            Err(e) => Err(format!("cannot be read: {e}")),
        })
    }

    /// Rows that name an entry at or beyond the head (or a negative one) belong to no entry.
    /// A live node commits a batch's rows and its new head in one transaction, so the rows are
    /// read first and the head after them: a row of an entry below that head belongs to a
    /// batch committed since `size` was read, which the next audit covers.
    pub async fn check_beyond(
        &mut self,
        db: &Database,
        size: u64,
        report: &mut AuditReport,
    ) -> Result<(), StoreError> {
        let mut extra = stored_rows(db, Span::Outside(size)).await?;
        let now = current_size(db).await?.max(size) as i64;
        let beyond = |idx: i64| idx >= now || idx < 0;
        extra.events.retain(|_, r| beyond(r.entry_idx));
        extra.epcs.retain(|_, r| beyond(r.entry_idx));
        extra.commissions.retain(|_, r| beyond(r.entry_idx));
        self.compare("events", BTreeMap::new(), extra.events, report);
        self.compare("epcs", BTreeMap::new(), extra.epcs, report);
        self.compare("commissions", BTreeMap::new(), extra.commissions, report);
        Ok(())
    }

    /// Adds the count of findings beyond [`MAX_LISTED`] to the report.
    pub fn finish(self, report: &mut AuditReport) {
        if self.unlisted > 0 {
            report.problems.push(format!(
                "index: {} more rows missing, extra or different (not listed)",
                self.unlisted
            ));
        }
    }

    /// The rows ingest wrote for these entries, rebuilt from their bytes. An entry that does
    /// not read as an envelope, or an event that does not parse, gives no rows (it gave none
    /// when it was appended, and no verdict can read it either); it is counted.
    fn rebuild(&self, entries: &[entry::Model], report: &mut AuditReport) -> Rows {
        let mut rows = Rows::default();
        for e in entries {
            // A desk record (a tracing request) and a map root name no event: they give no rows.
            if rxledger_core::trace::is_record(&e.data)
                || e.kind == crate::ledger::EntryKind::MapRoot as i16
            {
                continue;
            }
            let Ok(body) = envelope::read_body(&e.data) else {
                report.entries_unreadable += 1;
                continue;
            };
            let org = index::org_of_signer(&body.device_id, |d| self.devices.get(d).cloned());
            for (pos, json) in body.events.iter().enumerate() {
                match index::reindex_event(json, org.as_deref().unwrap_or("")) {
                    Ok(v) => add_event_rows(&mut rows, e.idx, pos as i32, &v),
                    Err(_) => report.entries_unreadable += 1,
                }
            }
        }
        rows
    }

    /// Pushes the page's entries onto the recomputed map and checks its map-root entries.
    fn map_page(&mut self, entries: &[entry::Model], report: &mut AuditReport) {
        // Taken out for the page, so that findings can be noted while it is borrowed.
        let Some(mut tree) = self.map.take() else {
            return;
        };
        for e in entries {
            let idx = e.idx as u64;
            if e.kind == crate::ledger::EntryKind::MapRoot as i16 {
                match self.check_map_root(&mut tree, e) {
                    Ok(()) => report.map_roots_checked += 1,
                    Err(why) => self.note(format!("map: map-root entry {idx} {why}"), report),
                }
                continue;
            }
            let leaf = merkle::leaf_hash(&e.data);
            for key in crate::map::named_in_entry(&e.data) {
                tree.push(&map::key_of(&key), idx, &leaf);
            }
        }
        self.map = Some(tree);
    }

    /// Whether a map-root entry states `tree`, the map of every entry before it.
    fn check_map_root(&self, tree: &mut MapTree, e: &entry::Model) -> Result<(), String> {
        let stated = match &self.log_key {
            Some(key) => MapRoot::open(&e.data, key),
            None => MapRoot::parse(&e.data).map(|(s, _)| s),
        }
        .map_err(|err| format!("does not read: {err}"))?;
        if stated.size != e.idx as u64 {
            return Err(format!("states size {}, not its own index", stated.size));
        }
        let (root, keys) = (tree.root(), tree.len());
        if stated.root != root || stated.keys != keys {
            return Err(format!(
                "states root {} of {} keys; the entries before it give {} of {keys}",
                hex::encode(stated.root),
                stated.keys,
                hex::encode(root)
            ));
        }
        Ok(())
    }

    fn compare<V: Row>(
        &mut self,
        table: &str,
        mut expected: BTreeMap<String, V>,
        stored: BTreeMap<String, V>,
        report: &mut AuditReport,
    ) {
        for (key, found) in stored {
            let finding = match expected.remove(&key) {
                Some(want) if want == found => continue,
                Some(want) => format!(
                    "index: {table} row {key} differs: the entries give {}, the table holds {}",
                    want.describe(),
                    found.describe()
                ),
                None => format!(
                    "index: {table} row {key} is extra: no entry gives it (the table holds {})",
                    found.describe()
                ),
            };
            self.note(finding, report);
        }
        for (key, want) in expected {
            self.note(
                format!(
                    "index: {table} row {key} is missing: the entries give {}",
                    want.describe()
                ),
                report,
            );
        }
    }

    fn note(&mut self, finding: String, report: &mut AuditReport) {
        if self.listed < MAX_LISTED {
            self.listed += 1;
            report.problems.push(finding);
        } else {
            self.unlisted += 1;
        }
    }
}

/// The rows `insert_entries` writes for one event of entry `idx` at `pos`: its `events` row,
/// one `epcs` row per identifier it names (the first role counts), one `commissions` row per
/// serial it commissions.
fn add_event_rows(rows: &mut Rows, idx: i64, pos: i32, v: &IndexedEvent) {
    let event_key = hex::encode(v.hash);
    rows.events.insert(
        format!("event {event_key}"),
        event::Model {
            hash: v.hash.to_vec(),
            entry_idx: idx,
            position: pos,
            event_time_ms: v.event_time_ms,
            event_type: v.event_type.clone(),
            action: v.action.clone(),
            biz_step: v.biz_step.clone(),
            disposition: v.disposition.clone(),
            read_point: v.read_point.clone(),
            biz_location: v.biz_location.clone(),
        },
    );
    for (key, role) in &v.ids {
        rows.epcs
            .entry(format!("{key} in event {event_key}"))
            .or_insert_with(|| epc::Model {
                epc: key.clone(),
                event_hash: v.hash.to_vec(),
                entry_idx: idx,
                position: pos,
                event_time_ms: v.event_time_ms,
                role: *role,
            });
    }
    for c in &v.commissions {
        rows.commissions.insert(
            c.sgtin.clone(),
            commission::Model {
                sgtin: c.sgtin.clone(),
                gtin: c.gtin.clone(),
                entry_idx: idx,
                org_id: c.org.clone(),
                lot: c.lot.clone(),
                expiry: c.expiry.clone(),
            },
        );
    }
}

/// Which rows of the three tables to read, by `entry_idx`.
#[derive(Clone, Copy)]
enum Span {
    /// The rows of entries `from..to`.
    Page(u64, u64),
    /// At most [`BEYOND_LISTED`] rows at or beyond the head `size`, or negative.
    Outside(u64),
}

impl Span {
    fn condition<C: ColumnTrait>(self, col: C) -> Condition {
        match self {
            Span::Page(from, to) => Condition::all()
                .add(col.gte(from as i64))
                .add(col.lt(to as i64)),
            Span::Outside(size) => Condition::any().add(col.gte(size as i64)).add(col.lt(0i64)),
        }
    }

    fn limit(self) -> Option<u64> {
        match self {
            Span::Page(..) => None,
            Span::Outside(_) => Some(BEYOND_LISTED),
        }
    }
}

/// The rows the three tables hold for `span`.
async fn stored_rows(db: &Database, span: Span) -> Result<Rows, StoreError> {
    Ok(Rows {
        events: keyed(
            event::Entity::find()
                .filter(span.condition(event::Column::EntryIdx))
                .limit(span.limit())
                .all(&db.conn)
                .await?,
        ),
        epcs: keyed(
            epc::Entity::find()
                .filter(span.condition(epc::Column::EntryIdx))
                .limit(span.limit())
                .all(&db.conn)
                .await?,
        ),
        commissions: keyed(
            commission::Entity::find()
                .filter(span.condition(commission::Column::EntryIdx))
                .limit(span.limit())
                .all(&db.conn)
                .await?,
        ),
    })
}

fn keyed<V: Row>(rows: Vec<V>) -> BTreeMap<String, V> {
    rows.into_iter().map(|r| (r.key(), r)).collect()
}

/// Checks the index rows of the first `size` entries against the entries, page by page,
/// and every map-root entry against the map they give, without the tree audit: what the
/// server runs before it starts when its map did not vouch for the rows (see
/// `server::check_index`).
pub async fn check_index(db: &Database, size: u64) -> Result<AuditReport, StoreError> {
    check(IndexAudit::load(db).await?, db, size).await
}

/// [`check_index`] without recomputing the map: what the server runs behind its start when the
/// map it built from these `epcs` rows is the one the log's last map-root entry states. Rows
/// that match the entries then give that map too, and the older map-root entries are
/// `rxledger audit`'s. It saves a second map held whole (one leaf per identifier) and the
/// hashing that builds it.
pub async fn check_index_rows(db: &Database, size: u64) -> Result<AuditReport, StoreError> {
    let mut audit = IndexAudit::load(db).await?;
    audit.map = None;
    check(audit, db, size).await
}

async fn check(mut audit: IndexAudit, db: &Database, size: u64) -> Result<AuditReport, StoreError> {
    let mut report = AuditReport {
        size,
        ..Default::default()
    };
    let mut next = 0u64;
    while next < size {
        let Some(rows) = crate::audit::read_page(db, next, size, &mut report).await? else {
            return Ok(report);
        };
        audit.check_page(db, next, &rows, &mut report).await?;
        next += rows.len() as u64;
        report.entries_checked = next;
    }
    audit.check_beyond(db, size, &mut report).await?;
    audit.finish(&mut report);
    Ok(report)
}

//! The offline auditor: recompute everything from the raw entries and compare.
//!
//! The auditor trusts nothing the server computed. It reads the entries in index order,
//! hashes them, rebuilds every tile, and compares each rebuilt full tile and the final
//! right edge with the stored ones. That catches a changed entry (its leaf no longer matches)
//! and a changed stored hash (the tile no longer matches) alike. Every checkpoint the log
//! ever signed must verify and carry the root recomputed at its size, which proves the log
//! never signed two inconsistent views. A checkpoint saved earlier by a client must also be
//! consistent with the current log, checked both by recomputation and through the server's
//! own consistency proof.
//!
//! The same pass rebuilds the derived tables a verdict reads (`epcs`, `commissions`,
//! `events`) from the entry bytes and names every row that is missing, extra or different
//! ([`crate::indexaudit`]): the tree proves the entries, and the entries prove the index.

use std::collections::BTreeMap;

use rxledger_core::checkpoint::{self, Checkpoint};
use rxledger_core::keys::LogVerifier;
use rxledger_core::merkle::{self, CompactRange, Hash};
use rxledger_core::tiles::{Tile, TileId};
use rxledger_entities::{checkpoint as cp_row, entry, head, tile};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

use crate::frontier::Frontier;
use crate::indexaudit::IndexAudit;
use crate::ledger::{read_checkpoint_origin, read_tiles, tile_from_row};
use crate::{Database, Ledger, StoreError};

/// Entries read per query. The index check holds one page's entries and their rows, rebuilt
/// and stored, twice over: about 110 KB an entry of a hundred-pack event (900 MB for 8,192
/// such entries at 1M packs, against 120 MB for 1,024), while a query costs well under a
/// millisecond.
pub(crate) const PAGE: u64 = 1024;

/// What the audit found. `problems` is empty when the log is sound.
#[derive(Debug, Default)]
pub struct AuditReport {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    pub entries_checked: u64,
    pub tiles_checked: u64,
    pub checkpoints_checked: u64,
    /// Rows of `events`, `epcs` and `commissions` rebuilt from the entries and compared.
    pub index_rows_checked: u64,
    /// Entries (or events in them) that do not read as EPCIS: they give no index rows.
    pub entries_unreadable: u64,
    /// Map-root entries whose root was recomputed from the entries before them and matched.
    pub map_roots_checked: u64,
    /// Size of the client-saved checkpoint that was proven consistent, if one was given.
    pub consistent_with: Option<u64>,
    pub problems: Vec<String>,
}

impl AuditReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Audits the log in `db` against the log key `verifier`. `saved` is a checkpoint note a
/// client kept earlier. `progress(done, total)` is called after every page.
///
/// Returns `Err` only when the audit cannot run at all (unreachable database, a saved
/// checkpoint from another log); anything found wrong in the data goes into the report.
pub async fn audit(
    db: &Database,
    verifier: &LogVerifier,
    saved: Option<&str>,
    mut progress: impl FnMut(u64, u64),
) -> Result<AuditReport, StoreError> {
    let head = head::Entity::find_by_id(1i16)
        .one(&db.conn)
        .await?
        .ok_or_else(|| StoreError::Corrupt("the database holds no log (no head row)".into()))?;
    let origin = read_checkpoint_origin(&head.note)?;
    let mut report = AuditReport {
        origin: origin.clone(),
        ..Default::default()
    };
    let saved = match saved {
        Some(note) => Some(open_saved(note, verifier, &origin)?),
        None => None,
    };
    let Some(size) = check_head(&head, verifier, &mut report) else {
        return Ok(report);
    };
    report.size = size;
    let signed = Signed::load(db, verifier).await?;
    let saved_size = saved.as_ref().map(|s| s.size);
    let mut index = IndexAudit::load(db)
        .await?
        .with_log_key(*verifier.public_key());
    let pass = Pass {
        size,
        signed: &signed,
        saved_size,
    };
    let log = recompute(db, &pass, &mut index, &mut report, &mut progress).await?;
    // A live node may have committed batches since the head was read: they are covered by
    // the newer head (and the next audit), not extra rows of this one's.
    let now = current_size(db).await?.max(size);
    index.check_beyond(db, now, &mut report).await?;
    index.finish(&mut report);
    let Some(log) = log else {
        return Ok(report);
    };
    check_beyond_head(db, &mut report).await?;
    // The right edge, including partial tiles, must match exactly; a partial tile the log
    // grew into since must still begin with it.
    let edge: Vec<Tile> = Frontier::ids_for(size)
        .into_iter()
        .filter_map(|id| rebuilt_tile(&log.rebuilt, id))
        .collect();
    let edge_refs: Vec<&Tile> = edge.iter().collect();
    compare_tiles_grown(db, &edge_refs, Some(size), &mut report).await?;

    report.root = log.range.root();
    if head.root.as_slice() != report.root.as_slice() {
        report.problems.push(format!(
            "the head root {} differs from the root recomputed from the entries {}",
            hex::encode(&head.root),
            hex::encode(report.root)
        ));
    }
    if let Some(s) = saved {
        check_saved(db, &s, size, log.saved_root, &mut report).await?;
    }
    Ok(report)
}

/// The head row against its own signed checkpoint; the head size, unless it is negative
/// (then nothing more can be checked).
fn check_head(head: &head::Model, verifier: &LogVerifier, report: &mut AuditReport) -> Option<u64> {
    let head_cp = match checkpoint::open_checkpoint(&head.note, verifier) {
        Ok(cp) => Some(cp),
        Err(e) => {
            report.problems.push(format!(
                "the head checkpoint does not verify with the log key: {e}"
            ));
            None
        }
    };
    let Ok(size) = u64::try_from(head.size) else {
        report
            .problems
            .push(format!("head size is negative ({})", head.size));
        return None;
    };
    if let Some(cp) =
        head_cp.filter(|cp| cp.size != size || cp.root.as_slice() != head.root.as_slice())
    {
        report.problems.push(format!(
            "the head row (size {size}) differs from its signed checkpoint (size {})",
            cp.size
        ));
    }
    Some(size)
}

/// Every checkpoint the log ever signed, by size: each must verify and carry the root
/// recomputed at its size.
struct Signed<'v> {
    rows: BTreeMap<u64, cp_row::Model>,
    verifier: &'v LogVerifier,
}

impl<'v> Signed<'v> {
    async fn load(db: &Database, verifier: &'v LogVerifier) -> Result<Signed<'v>, StoreError> {
        let mut rows = BTreeMap::new();
        for row in cp_row::Entity::find()
            .order_by_asc(cp_row::Column::Size)
            .all(&db.conn)
            .await?
        {
            rows.insert(row.size.max(0) as u64, row);
        }
        Ok(Signed { rows, verifier })
    }

    /// Checks the checkpoint signed at size `at`, if there is one, against `root`.
    fn check(&self, report: &mut AuditReport, at: u64, root: &Hash) {
        let Some(row) = self.rows.get(&at) else {
            return;
        };
        report.checkpoints_checked += 1;
        match checkpoint::open_checkpoint(&row.note, self.verifier) {
            Ok(cp) if cp.size == at && &cp.root == root => {}
            Ok(cp) => report.problems.push(format!(
                "checkpoint at size {at} signs root {} but the entries give {}",
                hex::encode(cp.root),
                hex::encode(root)
            )),
            Err(e) => report
                .problems
                .push(format!("checkpoint at size {at} does not verify: {e}")),
        }
    }
}

/// The log as recomputed from its entries.
struct Recomputed {
    range: CompactRange,
    rebuilt: Frontier,
    /// The root at the size of the client's saved checkpoint, when it was reached.
    saved_root: Option<Hash>,
}

/// What one pass over the entries checks against.
struct Pass<'a> {
    size: u64,
    signed: &'a Signed<'a>,
    saved_size: Option<u64>,
}

/// Hashes the first `size` entries page by page, checking each signed checkpoint on the way,
/// each full tile rebuilt against the stored one and each page's index rows. `None` when an
/// entry is missing (the report says which): nothing after it can be recomputed.
async fn recompute(
    db: &Database,
    pass: &Pass<'_>,
    index: &mut IndexAudit,
    report: &mut AuditReport,
    progress: &mut impl FnMut(u64, u64),
) -> Result<Option<Recomputed>, StoreError> {
    let Pass {
        size,
        signed,
        saved_size,
    } = *pass;
    let mut log = Recomputed {
        range: CompactRange::new(),
        rebuilt: Frontier::default(),
        saved_root: None,
    };
    signed.check(report, 0, &log.range.root());
    let mut next = 0u64;
    while next < size {
        let Some(rows) = read_page(db, next, size, report).await? else {
            return Ok(None);
        };
        index.check_page(db, next, &rows, report).await?;
        let leaves: Vec<Hash> = rows.iter().map(|r| merkle::leaf_hash(&r.data)).collect();
        for leaf in &leaves {
            log.range.push(*leaf);
            let at = log.range.size();
            if saved_size == Some(at) {
                log.saved_root = Some(log.range.root());
            }
            if signed.rows.contains_key(&at) {
                signed.check(report, at, &log.range.root());
            }
        }
        let (after, changed) = log.rebuilt.append(&leaves)?;
        log.rebuilt = after;
        let full: Vec<&Tile> = changed.iter().filter(|t| t.hashes.len() == 256).collect();
        compare_tiles(db, &full, report).await?;
        next += leaves.len() as u64;
        report.entries_checked = next;
        progress(next, size);
    }
    Ok(Some(log))
}

/// One page of entries from `next` (below `size`); `None` when an entry is missing, which is
/// reported.
pub(crate) async fn read_page(
    db: &Database,
    next: u64,
    size: u64,
    report: &mut AuditReport,
) -> Result<Option<Vec<entry::Model>>, StoreError> {
    let rows = entry::Entity::find()
        .filter(entry::Column::Idx.gte(next as i64))
        .filter(entry::Column::Idx.lt((next + PAGE).min(size) as i64))
        .order_by_asc(entry::Column::Idx)
        .all(&db.conn)
        .await?;
    let dense = rows
        .iter()
        .enumerate()
        .take_while(|(i, r)| r.idx as u64 == next + *i as u64)
        .count();
    if dense < rows.len() || rows.is_empty() {
        report
            .problems
            .push(format!("entry {} is missing", next + dense as u64));
        return Ok(None);
    }
    Ok(Some(rows))
}

/// Entries beyond the head would be a batch that never committed its checkpoint. A live node
/// commits a batch's entries and its new head in one transaction, so the highest entry is
/// read first and the head after it: every entry that read saw belongs to a batch whose head
/// the second read sees, unless it is beyond any head the log committed.
async fn check_beyond_head(db: &Database, report: &mut AuditReport) -> Result<(), StoreError> {
    let last = entry::Entity::find()
        .order_by_desc(entry::Column::Idx)
        .one(&db.conn)
        .await?;
    let size = current_size(db).await?;
    if let Some(row) = last.filter(|r| r.idx >= size as i64) {
        report.problems.push(format!(
            "entry {} exists beyond the head (size {size})",
            row.idx
        ));
    }
    Ok(())
}

fn rebuilt_tile(f: &Frontier, id: TileId) -> Option<Tile> {
    f.tile(id.level).filter(|t| t.id == id).cloned()
}

fn open_saved(note: &str, verifier: &LogVerifier, origin: &str) -> Result<Checkpoint, StoreError> {
    let found = note.lines().next().unwrap_or("").to_string();
    if found != origin {
        return Err(StoreError::WrongLog {
            expected: origin.to_string(),
            found,
        });
    }
    checkpoint::open_checkpoint(note, verifier).map_err(|e| {
        StoreError::Invalid(format!(
            "the saved checkpoint is not signed by this log's key: {e}"
        ))
    })
}

async fn check_saved(
    db: &Database,
    saved: &Checkpoint,
    size: u64,
    recomputed: Option<Hash>,
    report: &mut AuditReport,
) -> Result<(), StoreError> {
    if saved.size > size {
        report.problems.push(format!(
            "the saved checkpoint has size {} but the log now has only {size} entries: the log was truncated",
            saved.size
        ));
        return Ok(());
    }
    let recomputed = if saved.size == 0 {
        Some(merkle::empty_root())
    } else {
        recomputed
    };
    if recomputed != Some(saved.root) {
        report.problems.push(format!(
            "the saved checkpoint at size {} is inconsistent with the log: the entries give a different root",
            saved.size
        ));
        return Ok(());
    }
    // The same fact through the client path: the server's proof from stored tiles.
    if saved.size > 0 && saved.size < size {
        let proof = consistency_from_tiles(db, saved.size, size).await?;
        let new_root = report.root;
        if let Err(e) = merkle::verify_consistency(saved.size, size, &saved.root, &new_root, &proof)
        {
            report.problems.push(format!(
                "the stored tiles give a consistency proof that fails: {e}"
            ));
            return Ok(());
        }
    }
    report.consistent_with = Some(saved.size);
    Ok(())
}

async fn consistency_from_tiles(
    db: &Database,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, StoreError> {
    let nodes = merkle::consistency_nodes(old, new)?;
    let ids = rxledger_core::tiles::tiles_for_nodes(&nodes);
    let mut set = rxledger_core::tiles::TileSet::with_capacity(ids.len() + 1);
    for t in read_tiles(&db.conn, &ids).await? {
        set.insert(t);
    }
    Ok(merkle::consistency_proof(old, new, &set)?)
}

/// The head size as committed now.
pub(crate) async fn current_size(db: &Database) -> Result<u64, StoreError> {
    Ok(head::Entity::find_by_id(1i16)
        .one(&db.conn)
        .await?
        .and_then(|h| u64::try_from(h.size).ok())
        .unwrap_or(0))
}

async fn compare_tiles(
    db: &Database,
    rebuilt: &[&Tile],
    report: &mut AuditReport,
) -> Result<(), StoreError> {
    compare_tiles_grown(db, rebuilt, None, report).await
}

/// [`compare_tiles`] of the right edge of the tree of the `audited` size: when the log grew
/// past it, a stored partial tile may hold more hashes than the rebuilt one, which must then
/// be its beginning. Tiles and the head commit together, so the head is read after the tiles.
async fn compare_tiles_grown(
    db: &Database,
    rebuilt: &[&Tile],
    audited: Option<u64>,
    report: &mut AuditReport,
) -> Result<(), StoreError> {
    let ids: Vec<TileId> = rebuilt.iter().map(|t| t.id).collect();
    let stored = read_tiles_lenient(db, &ids, report).await?;
    let grew = match audited {
        Some(size) => current_size(db).await? > size,
        None => false,
    };
    for t in rebuilt {
        report.tiles_checked += 1;
        match stored.iter().find(|s| s.id == t.id) {
            None => report.problems.push(format!(
                "tile level {} index {} is missing",
                t.id.level, t.id.index
            )),
            Some(s)
                if grew && s.hashes.len() > t.hashes.len() && s.hashes.starts_with(&t.hashes) => {}
            Some(s) if s.hashes != t.hashes => {
                let at = s
                    .hashes
                    .iter()
                    .zip(&t.hashes)
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                let first = t.id.index * 256 + at as u64;
                report.problems.push(if t.id.level == 0 {
                    format!("entry {first}: its bytes do not hash to the stored leaf hash (entry or tile changed)")
                } else {
                    format!("tile level {} index {} differs from the hashes recomputed from the entries (node {first})", t.id.level, t.id.index)
                });
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Like `read_tiles`, but a malformed row becomes a reported problem rather than an error.
async fn read_tiles_lenient(
    db: &Database,
    ids: &[TileId],
    report: &mut AuditReport,
) -> Result<Vec<Tile>, StoreError> {
    let mut out = Vec::new();
    for id in ids {
        let row = tile::Entity::find_by_id((id.level as i16, id.index as i64))
            .one(&db.conn)
            .await?;
        if let Some(row) = row {
            match tile_from_row(row) {
                Ok(t) => out.push(t),
                Err(e) => report.problems.push(e.to_string()),
            }
        }
    }
    Ok(out)
}

/// Audits the live ledger of a running node (used by tests and the status page).
pub async fn audit_ledger(ledger: &Ledger) -> Result<AuditReport, StoreError> {
    audit(ledger.database(), ledger.verifier(), None, |_, _| {}).await
}

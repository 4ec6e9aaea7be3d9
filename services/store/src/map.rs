//! The authenticated pack index (`rxledger_core::map`) beside the log.
//!
//! The ledger keeps the whole map in memory and updates it inside each append transaction:
//! the batch's entries are pushed onto the histories of the identifiers they name and a
//! map-root entry signed by the log key is appended as the batch's last entry, before the
//! checkpoint is signed and in the same transaction. So the map never disagrees with the log:
//! both commit or neither does.
//!
//! Nothing of the map itself is stored. It is derived from two things the transaction commits
//! anyway: the `epcs` rows (which identifiers each entry names; the server audits them
//! against the entry bytes at start) and the level-0 tiles (each entry's leaf hash). Writing
//! leaves back each batch cost about 30 µs per event on the sequencer's path (an upsert of a
//! random 32-byte key per identifier) and 180 B per entry on disk, for nothing a rebuild
//! cannot give.
//!
//! The map is built at open, and caught up whenever the log moved without this node (another
//! node's batch on PostgreSQL): only the entries it has not seen are read. A batch that failed
//! after the map had taken its entries leaves uncommitted histories in memory, so the map is
//! then built again from the start. A log written without a map (before this feature, or by a
//! ledger opened without one) is caught up the same way, and the next batch commits its root.
//!
//! Answers take their proofs under the same lock as the sequencer, so they only ever see the
//! map as committed: at most one batch's transaction waits in front of them.

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;

use rxledger_core::keys::LogKey;
use rxledger_core::map::rootentry::{self, MapRoot};
use rxledger_core::map::{self, History, MapProof, MapTree};
use rxledger_core::merkle::{self, Hash};
use rxledger_core::tiles::{TILE_WIDTH, TileId};
use rxledger_core::{envelope, index};
use rxledger_entities::entry;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    Statement,
};

use crate::StoreError;
use crate::ledger::{EntryKind, NewEntry, read_tiles};

/// Tiles per SELECT statement.
const TILE_CHUNK: usize = 500;
/// Entries read per page when the map is built from the entries' bytes.
const ENTRY_PAGE: u64 = 1000;
/// Entries whose `epcs` rows are read per query when the map is built from the index (as the
/// in-memory postings catch up).
const INDEX_PAGE: u64 = 2000;
/// The signer column of map-root entries (device ids cannot contain `:`; API state changes
/// are `org:<id>`).
pub const MAP_SIGNER: &str = "log:map";

/// The map and how far it is committed.
#[derive(Default)]
pub struct MapState {
    tree: MapTree,
    /// Entries `0..size` are in `tree`; `None` when the tree must be built again first.
    size: Option<u64>,
    /// The newest map-root entry whose root is the tree's.
    committed: Option<CommittedRoot>,
    /// What the last build found: `Some(true)` when the `epcs` rows gave the map the log's
    /// last map-root entry states, `Some(false)` when they did not, `None` when the log did
    /// not end with a map-root entry to compare with.
    index_agreed: Option<bool>,
}

/// A map-root entry as committed: where it is and what it states.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedRoot {
    pub index: u64,
    pub entry: Vec<u8>,
    pub stated: MapRoot,
}

/// One identifier's proof from the committed map.
#[derive(Clone, Debug)]
pub struct KeyProof {
    pub identifier: String,
    pub history: Option<History>,
    pub proof: MapProof,
}

impl MapState {
    /// The committed map-root entry, if the tree is the one it states.
    pub fn committed(&self) -> Option<&CommittedRoot> {
        self.committed.as_ref()
    }

    /// Whether the `epcs` rows gave, at the last build, the map the log commits to (see the
    /// field): the start-up check's fast half.
    pub fn index_agreed(&self) -> Option<bool> {
        self.index_agreed
    }

    /// How many identifiers the map holds.
    pub fn keys(&self) -> u64 {
        self.tree.len()
    }

    /// Proofs of `identifiers` (index keys) from the committed map, with the map-root entry
    /// they are against; `None` when no map-root entry covers the log as this node has it.
    pub fn prove(&self, identifiers: &[String]) -> Option<(CommittedRoot, Vec<KeyProof>)> {
        let committed = self.committed.clone()?;
        let proofs = identifiers
            .iter()
            .map(|id| {
                let key = map::key_of(id);
                KeyProof {
                    identifier: id.clone(),
                    history: self.tree.get(&key),
                    proof: self.tree.prove(&key),
                }
            })
            .collect();
        Some((committed, proofs))
    }

    /// Forgets the tree: it is built again before the next batch (after a failed append).
    pub(crate) fn invalidate(&mut self) {
        self.size = None;
        self.committed = None;
    }

    /// Makes the tree hold entries `0..size` of the log as committed in `conn`: nothing when
    /// it does, the entries it lacks when the log moved on without it, and otherwise all.
    ///
    /// The index rows are the fast source. When the map they give is not the one the log's
    /// last map-root entry states, the index is wrong (a bug, or rows changed behind the
    /// ledger's back): the map is then built from the entries' own bytes, as the auditor does,
    /// so answers from the wrong index still fail their clients' check, naming the identifier.
    pub(crate) async fn ensure(
        &mut self,
        conn: &impl ConnectionTrait,
        size: u64,
    ) -> Result<(), StoreError> {
        let from = match self.size {
            Some(have) if have == size => return Ok(()),
            Some(have) if have < size => have,
            _ => {
                self.tree = MapTree::new();
                0
            }
        };
        self.size = None;
        self.committed = None;
        push_from_index(conn, &mut self.tree, from..size).await?;
        let last = match size.checked_sub(1) {
            Some(i) => last_root_entry(conn, i).await?,
            None => None,
        };
        if from == 0 {
            // Only a build from the first entry vouches for every row.
            self.index_agreed = None;
        }
        if let Some(c) = last {
            let agreed = states(&c, &mut self.tree);
            if from == 0 {
                self.index_agreed = Some(agreed);
            }
            if !agreed {
                tracing::error!(
                    size,
                    "the pack index map the epcs rows give is not the one the log's last \
                     map-root entry states: the index is wrong (run rxledger audit); building \
                     the map from the entries themselves"
                );
                self.tree = MapTree::new();
                push_from_entries(conn, &mut self.tree, 0..size).await?;
            }
            if states(&c, &mut self.tree) {
                self.committed = Some(c);
            } else {
                tracing::error!(
                    size,
                    "the entries do not give the map the log's last map-root entry states \
                     either; the next batch commits the map they give"
                );
            }
        }
        self.size = Some(size);
        Ok(())
    }

    /// Takes a batch's accepted entries (with their leaf hashes) into the map and returns the
    /// map-root entry to append after them at `index`.
    pub(crate) fn take_batch(
        &mut self,
        accepted: &[(u64, &NewEntry)],
        leaves: &[Hash],
        index: u64,
        origin: &str,
        key: &LogKey,
    ) -> NewEntry {
        // From here until the commit the tree holds histories the database may still lose.
        self.size = None;
        self.committed = None;
        for ((entry_index, e), leaf) in accepted.iter().zip(leaves) {
            for k in named_keys(e) {
                self.tree.push(&map::key_of(k), *entry_index, leaf);
            }
        }
        let stated = MapRoot {
            origin: origin.to_string(),
            size: index,
            keys: self.tree.len(),
            root: self.tree.root(),
        };
        let data = stated.sign(key);
        self.committed = Some(CommittedRoot {
            index,
            entry: data.clone(),
            stated,
        });
        NewEntry {
            data,
            kind: EntryKind::MapRoot,
            signer: MAP_SIGNER.to_string(),
            seq: None,
            events: Vec::new(),
        }
    }

    /// The batch ending with the map-root entry from [`MapState::take_batch`] committed: the
    /// log now has `size` entries.
    pub(crate) fn committed_at(&mut self, size: u64) {
        self.size = Some(size);
    }
}

/// The distinct identifiers an entry's events name, as the `epcs` rows list them.
fn named_keys(e: &NewEntry) -> Vec<&str> {
    let mut seen: HashSet<&str> = HashSet::new();
    let mut out = Vec::new();
    for v in &e.events {
        for (k, _) in &v.ids {
            if seen.insert(k.as_str()) {
                out.push(k.as_str());
            }
        }
    }
    out
}

/// The map of the first `size` entries of the log in `conn`.
pub(crate) async fn load(conn: &impl ConnectionTrait, size: u64) -> Result<MapState, StoreError> {
    let mut state = MapState::default();
    state.ensure(conn, size).await?;
    Ok(state)
}

/// Whether the map-root entry `c` states `tree`.
fn states(c: &CommittedRoot, tree: &mut MapTree) -> bool {
    c.stated.root == tree.root() && c.stated.keys == tree.len()
}

/// Entry `index` when it is a well-formed map-root entry for itself.
async fn last_root_entry(
    conn: &impl ConnectionTrait,
    index: u64,
) -> Result<Option<CommittedRoot>, StoreError> {
    let Some(row) = entry::Entity::find_by_id(index as i64).one(conn).await? else {
        return Ok(None);
    };
    if row.kind != EntryKind::MapRoot as i16 {
        return Ok(None);
    }
    Ok(rootentry::MapRoot::parse(&row.data)
        .ok()
        .filter(|(s, _)| s.size == index)
        .map(|(stated, _)| CommittedRoot {
            index,
            entry: row.data,
            stated,
        }))
}

/// Pushes entries `range` onto `tree`, in log order, from the `epcs` rows (which identifiers
/// each names; an identifier counts once per entry) and the level-0 tiles (its leaf hash),
/// [`INDEX_PAGE`] entries at a time, so a build holds one page of rows, not the log's.
async fn push_from_index(
    conn: &impl ConnectionTrait,
    tree: &mut MapTree,
    range: Range<u64>,
) -> Result<(), StoreError> {
    let mut start = range.start;
    while start < range.end {
        let end = range.end.min(start + INDEX_PAGE);
        push_page_from_index(conn, tree, start..end).await?;
        start = end;
    }
    Ok(())
}

/// One page of [`push_from_index`]. The rows come one per entry, its identifiers joined by a
/// line feed (which no GS1 identifier holds; a row that did would split into keys the log
/// never named, and the map would not be the log's): at 1M packs that is 83,000 rows to
/// decode instead of 4.2 million, each of which sqlx's SQLite worker sends across threads.
async fn push_page_from_index(
    conn: &impl ConnectionTrait,
    tree: &mut MapTree,
    range: Range<u64>,
) -> Result<(), StoreError> {
    let backend = conn.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "SELECT entry_idx, string_agg(epc, chr(10)) FROM epcs \
             WHERE entry_idx >= $1 AND entry_idx < $2 GROUP BY entry_idx ORDER BY entry_idx"
        }
        _ => {
            "SELECT entry_idx, group_concat(epc, char(10)) FROM epcs \
             WHERE entry_idx >= ? AND entry_idx < ? GROUP BY entry_idx ORDER BY entry_idx"
        }
    };
    let values = [(range.start as i64).into(), (range.end as i64).into()];
    let rows = conn
        .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?;
    let leaf_of = leaf_hashes(conn, &range).await?;
    let mut pushes: Vec<(Hash, u64)> = Vec::new();
    let mut seen = HashSet::new();
    for row in rows {
        let idx: i64 = row.try_get_by_index(0)?;
        let keys: String = row.try_get_by_index(1)?;
        // An identifier counts once per entry.
        seen.clear();
        for key in keys.split('\n') {
            let key = map::key_of(key);
            if seen.insert(key) {
                pushes.push((key, idx as u64));
            }
        }
    }
    // In key order, so that each walk down the tree starts where the last one went (the
    // sort is stable: a key's entries keep their log order, which its history chains).
    pushes.sort_by_key(|(key, _)| *key);
    for (key, idx) in pushes {
        let leaf = leaf_of.get(&idx).ok_or_else(|| {
            StoreError::Corrupt(format!("entry {idx} has no leaf hash in the tiles"))
        })?;
        tree.push(&key, idx, leaf);
    }
    Ok(())
}

/// Pushes entries `range` onto `tree` from their own bytes: the identifiers
/// [`named_in_entry`] reads and the leaf hash of the bytes. Slow (every event is parsed), so
/// only when the index is found wrong.
async fn push_from_entries(
    conn: &impl ConnectionTrait,
    tree: &mut MapTree,
    range: Range<u64>,
) -> Result<(), StoreError> {
    let mut next = range.start;
    while next < range.end {
        let rows: Vec<(i64, i16, Vec<u8>)> = entry::Entity::find()
            .select_only()
            .column(entry::Column::Idx)
            .column(entry::Column::Kind)
            .column(entry::Column::Data)
            .filter(entry::Column::Idx.gte(next as i64))
            .filter(entry::Column::Idx.lt(range.end as i64))
            .order_by_asc(entry::Column::Idx)
            .limit(ENTRY_PAGE)
            .into_tuple()
            .all(conn)
            .await?;
        let Some(last) = rows.last() else {
            return Err(StoreError::Corrupt(format!("entry {next} is missing")));
        };
        next = last.0 as u64 + 1;
        for (idx, kind, data) in rows {
            if kind == EntryKind::MapRoot as i16 {
                continue;
            }
            let leaf = merkle::leaf_hash(&data);
            for key in named_in_entry(&data) {
                tree.push(&map::key_of(&key), idx as u64, &leaf);
            }
        }
    }
    Ok(())
}

/// The distinct identifiers an entry's events name, read from the entry's bytes (none for a
/// map-root entry, a desk record or bytes that do not read): what the map and its audit push.
pub(crate) fn named_in_entry(data: &[u8]) -> Vec<String> {
    let Ok(body) = envelope::read_body(data) else {
        return Vec::new();
    };
    let mut named: Vec<String> = Vec::new();
    for json in &body.events {
        if let Ok(v) = index::reindex_event(json, "") {
            for (key, _) in v.ids {
                if !named.contains(&key) {
                    named.push(key);
                }
            }
        }
    }
    named
}

/// The leaf hashes of entries `range`, from the level-0 tiles that hold them.
async fn leaf_hashes(
    conn: &impl ConnectionTrait,
    range: &Range<u64>,
) -> Result<BTreeMap<u64, Hash>, StoreError> {
    let ids: Vec<TileId> = (range.start / TILE_WIDTH..range.end.div_ceil(TILE_WIDTH))
        .map(|index| TileId { level: 0, index })
        .collect();
    let mut leaf_of = BTreeMap::new();
    for chunk in ids.chunks(TILE_CHUNK) {
        for t in read_tiles(conn, chunk).await? {
            for (i, h) in t.hashes.into_iter().enumerate() {
                let index = t.id.index * TILE_WIDTH + i as u64;
                if range.contains(&index) {
                    leaf_of.insert(index, h);
                }
            }
        }
    }
    Ok(leaf_of)
}

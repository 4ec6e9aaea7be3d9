//! The authenticated pack index (`rxledger_core::map`) beside the log.
//!
//! The ledger keeps the whole map in memory and updates it inside each append transaction:
//! the batch's entries are pushed onto the histories of the identifiers they name, the changed
//! leaves are written back (one upsert per 500 keys) and a map-root entry signed by the log
//! key is appended as the batch's last entry, all before the checkpoint is signed and in the
//! same transaction. So the map never disagrees with the log: both commit or neither does.
//!
//! Only the leaves are stored (`map_leaves`: key, count, chain head); the inner nodes are
//! rebuilt when the map is loaded. The map is loaded at open, and again whenever the log
//! moved without this node (another node's batch on PostgreSQL) or a batch failed after the
//! map had taken its entries, since the memory then holds uncommitted histories. A log
//! written without a map (before this feature, or by a ledger opened without one) is caught
//! up from the `epcs` table, which the server audits against the entries at start, and the
//! next batch writes every leaf and commits the root.
//!
//! Answers take their proofs under the same lock as the sequencer, so they only ever see the
//! map as committed: at most one batch's transaction waits in front of them.

use std::collections::{BTreeMap, HashSet};

use rxledger_core::keys::LogKey;
use rxledger_core::map::rootentry::{self, MapRoot};
use rxledger_core::map::{self, History, MapProof, MapTree};
use rxledger_core::merkle::{self, Hash};
use rxledger_core::tiles::{TILE_WIDTH, TileId};
use rxledger_entities::{entry, epc, map_leaf};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ConnectionTrait, EntityTrait, QueryOrder, QuerySelect, Set};

use crate::StoreError;
use crate::ledger::{EntryKind, NewEntry, read_tiles};

/// Leaves per INSERT statement.
const LEAF_CHUNK: usize = 500;
/// The signer column of map-root entries (device ids cannot contain `:`; API state changes
/// are `org:<id>`).
pub const MAP_SIGNER: &str = "log:map";

/// The map and how far it is committed.
#[derive(Default)]
pub struct MapState {
    tree: MapTree,
    /// Entries `0..size` are in `tree`; `None` when the tree must be loaded again first.
    size: Option<u64>,
    /// Write every leaf (and drop every stored one) with the next batch: after a catch-up.
    rewrite: bool,
    /// The newest map-root entry whose root is the tree's.
    committed: Option<CommittedRoot>,
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

    /// Forgets the tree: it is loaded again before the next batch (after a failed append).
    pub(crate) fn invalidate(&mut self) {
        self.size = None;
        self.committed = None;
    }

    /// Makes the tree hold entries `0..size` of the log as committed in `conn`.
    pub(crate) async fn ensure(
        &mut self,
        conn: &impl ConnectionTrait,
        size: u64,
    ) -> Result<(), StoreError> {
        if self.size == Some(size) {
            return Ok(());
        }
        *self = load(conn, size).await?;
        Ok(())
    }

    /// Takes a batch's accepted entries (with their leaf hashes) into the map, writes the
    /// changed leaves and returns the map-root entry to append after them at `index`.
    pub(crate) async fn take_batch(
        &mut self,
        txn: &impl ConnectionTrait,
        accepted: &[(u64, &NewEntry)],
        leaves: &[Hash],
        index: u64,
        origin: &str,
        key: &LogKey,
    ) -> Result<NewEntry, StoreError> {
        // From here until the commit the tree holds histories the database may still lose.
        self.size = None;
        self.committed = None;
        let mut changed: HashSet<Hash> = HashSet::new();
        for ((entry_index, e), leaf) in accepted.iter().zip(leaves) {
            for k in named_keys(e) {
                let key = map::key_of(k);
                self.tree.push(&key, *entry_index, leaf);
                changed.insert(key);
            }
        }
        if self.rewrite {
            map_leaf::Entity::delete_many().exec(txn).await?;
            let all: Vec<(Hash, History)> = self.tree.leaves();
            write_leaves(txn, &all).await?;
        } else {
            let rows: Vec<(Hash, History)> = changed
                .iter()
                .filter_map(|k| self.tree.get(k).map(|v| (*k, v)))
                .collect();
            write_leaves(txn, &rows).await?;
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
        Ok(NewEntry {
            data,
            kind: EntryKind::MapRoot,
            signer: MAP_SIGNER.to_string(),
            seq: None,
            events: Vec::new(),
        })
    }

    /// The batch ending with the map-root entry from [`MapState::take_batch`] committed: the
    /// log now has `size` entries.
    pub(crate) fn committed_at(&mut self, size: u64) {
        self.size = Some(size);
        self.rewrite = false;
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

/// Upserts leaves.
async fn write_leaves(
    txn: &impl ConnectionTrait,
    leaves: &[(Hash, History)],
) -> Result<(), StoreError> {
    for chunk in leaves.chunks(LEAF_CHUNK) {
        let rows = chunk.iter().map(|(k, v)| map_leaf::ActiveModel {
            key: Set(k.to_vec()),
            count: Set(v.count as i64),
            head: Set(v.head.to_vec()),
        });
        map_leaf::Entity::insert_many(rows)
            .on_conflict(
                OnConflict::column(map_leaf::Column::Key)
                    .update_columns([map_leaf::Column::Count, map_leaf::Column::Head])
                    .to_owned(),
            )
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

/// The map of the first `size` entries: the stored leaves when the log's last entry is a
/// map-root entry stating their root, and otherwise rebuilt from the `epcs` table.
pub(crate) async fn load(conn: &impl ConnectionTrait, size: u64) -> Result<MapState, StoreError> {
    let mut tree = MapTree::from_leaves(read_leaves(conn).await?);
    let last = match size.checked_sub(1) {
        Some(i) => last_root_entry(conn, i).await?,
        None => None,
    };
    if let Some(c) = last
        && c.stated.root == tree.root()
        && c.stated.keys == tree.len()
    {
        return Ok(MapState {
            tree,
            size: Some(size),
            rewrite: false,
            committed: Some(c),
        });
    }
    if size > 0 {
        tracing::warn!(
            size,
            "the pack index map does not match the log's last map-root entry; rebuilding it \
             from the index (the next batch commits its root)"
        );
    }
    Ok(MapState {
        tree: rebuild(conn, size).await?,
        size: Some(size),
        rewrite: true,
        committed: None,
    })
}

/// Every stored leaf, checking its shape.
pub async fn read_leaves(conn: &impl ConnectionTrait) -> Result<Vec<(Hash, History)>, StoreError> {
    map_leaf::Entity::find()
        .all(conn)
        .await?
        .into_iter()
        .map(|r| {
            let bad = || StoreError::Corrupt("a map_leaves row is not 32-byte key and head".into());
            let key = merkle::hash_from_slice(&r.key).map_err(|_| bad())?;
            let head = merkle::hash_from_slice(&r.head).map_err(|_| bad())?;
            let count = u64::try_from(r.count).map_err(|_| bad())?;
            Ok((key, History { count, head }))
        })
        .collect()
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

/// The map of the first `size` entries from the `epcs` rows and the stored leaf hashes.
async fn rebuild(conn: &impl ConnectionTrait, size: u64) -> Result<MapTree, StoreError> {
    let rows: Vec<(String, i64)> = epc::Entity::find()
        .select_only()
        .column(epc::Column::Epc)
        .column(epc::Column::EntryIdx)
        .order_by_asc(epc::Column::EntryIdx)
        .into_tuple()
        .all(conn)
        .await?;
    let ids: Vec<TileId> = (0..size.div_ceil(TILE_WIDTH))
        .map(|index| TileId { level: 0, index })
        .collect();
    let mut leaf_of: BTreeMap<u64, Hash> = BTreeMap::new();
    for chunk in ids.chunks(LEAF_CHUNK) {
        for t in read_tiles(conn, chunk).await? {
            for (i, h) in t.hashes.into_iter().enumerate() {
                leaf_of.insert(t.id.index * TILE_WIDTH + i as u64, h);
            }
        }
    }
    let mut tree = MapTree::new();
    let mut seen: HashSet<(String, i64)> = HashSet::new();
    for (key, idx) in rows {
        if idx < 0 || idx as u64 >= size || !seen.insert((key.clone(), idx)) {
            continue;
        }
        let leaf = leaf_of.get(&(idx as u64)).ok_or_else(|| {
            StoreError::Corrupt(format!("entry {idx} has no leaf hash in the tiles"))
        })?;
        tree.push(&map::key_of(&key), idx as u64, leaf);
    }
    Ok(tree)
}

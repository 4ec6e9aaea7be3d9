//! The identifier index held in memory: which (entry, position) pairs name each EPC key.
//!
//! It is a copy of the `epcs` table (key → event positions, no other columns), so that a
//! verdict finds a pack's events, its containers' and its classes' without a database round
//! trip. The table stays the source of truth; this copy is only used when it is known to be
//! complete up to the tree size a reader needs:
//!
//! - `covered` is the size of the log prefix whose rows are all in memory. Rows are only ever
//!   added for whole entries, in index order, so `covered = n` means exactly the entries
//!   `0..n` are in.
//! - The ledger adds its own batches right after they commit (and before it publishes their
//!   checkpoint), when they start at `covered`. Anything else (the first load, another node's
//!   batches on a shared PostgreSQL) is read from the `epcs` table by [`Postings::catch_up`].
//! - A reader whose log is ahead of `covered` reads the table instead (see `Packs::events`).
//!
//! A key is held as [`KeyId`], the first 16 bytes of its map key (SHA-256 with the map's key
//! prefix), not as its string, and a key named by one event keeps that posting inline: about
//! 60 bytes per distinct key (a pack, case, pallet or class, with the hash table's slack) plus
//! 8 bytes per further row, and 40 per event with a parentID. Two distinct keys share an id with
//! probability about n²/2¹²⁹, some 10⁻²² for ten billion keys.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use rxledger_core::index::IndexedEvent;
use rxledger_entities::epc;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::{Database, StoreError};

/// Bits of a posting that hold the event's position inside its entry; above them, 2 bits of
/// role (0 epcList, 1 parentID, 2 childEPCs, 3 class), then the entry index.
const POS_BITS: u32 = 20;
const ROLE_BITS: u32 = 2;
const ROLE_CHILD: u64 = 2;
const ROLE_PARENT: u64 = 1;
/// Entries read per query while catching up.
const CATCH_UP_CHUNK: i64 = 2_000;

/// An event's place in the log: entry index and position inside the entry.
pub type EventPos = (u64, u32);

/// A key's identity in memory: the first 16 bytes of its map key
/// ([`rxledger_core::map::key_of`]), already uniformly distributed, so its first half is the
/// hash table's hash.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct KeyId(u64, u64);

impl KeyId {
    pub fn of(key: &str) -> KeyId {
        let h = rxledger_core::map::key_of(key);
        let half = |r: std::ops::Range<usize>| {
            u64::from_le_bytes(h[r].try_into().expect("8 bytes of a 32-byte hash"))
        };
        KeyId(half(0..8), half(8..16))
    }
}

impl Hash for KeyId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0);
    }
}

/// Hashes a `u64` with one finalizer round instead of SipHash: the keys of both tables are a
/// SHA-256 prefix or a packed event position. A per-process random seed goes in first, so an
/// enrolled device that grinds serials until their ids share low bits still cannot aim them at
/// one bucket: it does not know where the bucket is.
struct Seeded(u64);

impl Default for Seeded {
    fn default() -> Self {
        static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        let seed = *SEED.get_or_init(|| {
            use std::hash::BuildHasher;
            std::collections::hash_map::RandomState::new().hash_one(0x7278_6c65_6467_6572_u64)
        });
        Seeded(seed)
    }
}

impl Hasher for Seeded {
    fn finish(&self) -> u64 {
        // MurmurHash3's finalizer: a packed position's low 22 bits are mostly zero, and the
        // table takes its bucket from the low bits and its control byte from the top.
        let mut x = self.0;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        x ^ (x >> 33)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }
}

type Table<K, V> = HashMap<K, V, BuildHasherDefault<Seeded>>;

/// A key's postings: most keys (a pack commissioned and never moved) have one.
enum Slot {
    One(u64),
    Many(Vec<u64>),
}

impl Slot {
    fn as_slice(&self) -> &[u64] {
        match self {
            Slot::One(p) => std::slice::from_ref(p),
            Slot::Many(v) => v,
        }
    }

    fn push(&mut self, posting: u64) {
        match self {
            Slot::One(p) => *self = Slot::Many(vec![*p, posting]),
            Slot::Many(v) => v.push(posting),
        }
    }
}

#[derive(Default)]
struct Inner {
    covered: u64,
    map: Table<KeyId, Slot>,
    /// The parentID of every event that has one, by its packed position (role bits clear):
    /// with the child postings, what a pack's containers are, without reading the events.
    parents: Table<u64, KeyId>,
    rows: u64,
}

/// See the module docs.
#[derive(Default)]
pub struct Postings {
    inner: RwLock<Inner>,
    /// The largest tree size this process's ledger has seen (its own appends, or the head it
    /// re-read from the database). The index is complete when `covered` reaches it.
    known: AtomicU64,
    /// One catch-up at a time; the others wait for it instead of reading the same rows.
    catching_up: tokio::sync::Mutex<()>,
}

fn pack(index: u64, pos: usize, role: i16) -> u64 {
    debug_assert!(pos < (1 << POS_BITS));
    (index << (POS_BITS + ROLE_BITS)) | ((role as u64 & 3) << POS_BITS) | pos as u64
}

fn unpack(p: u64) -> EventPos {
    (
        p >> (POS_BITS + ROLE_BITS),
        (p & ((1 << POS_BITS) - 1)) as u32,
    )
}

fn role(p: u64) -> u64 {
    (p >> POS_BITS) & 3
}

/// A posting's event, without its role.
fn event_of(p: u64) -> u64 {
    p & !(3 << POS_BITS)
}

impl Postings {
    pub fn new() -> Self {
        Self::default()
    }

    /// The size of the log prefix whose index rows are all in memory.
    pub fn covered(&self) -> u64 {
        self.read().covered
    }

    /// Records a tree size the ledger knows to be committed.
    pub fn saw_head(&self, size: u64) {
        self.known.fetch_max(size, Ordering::AcqRel);
    }

    /// The largest committed tree size the ledger has reported.
    pub fn known(&self) -> u64 {
        self.known.load(Ordering::Acquire)
    }

    /// Whether every entry the ledger knows of is indexed in memory.
    pub fn complete(&self) -> bool {
        self.covered() >= self.known()
    }

    /// (distinct keys, rows) held.
    pub fn len(&self) -> (usize, u64) {
        let g = self.read();
        (g.map.len(), g.rows)
    }

    pub fn is_empty(&self) -> bool {
        self.read().rows == 0
    }

    /// The events that name each of `keys`, in the order of `keys` then log order.
    pub fn lookup(&self, keys: &[String]) -> Vec<EventPos> {
        let ids: Vec<KeyId> = keys.iter().map(|k| KeyId::of(k)).collect();
        self.lookup_ids(&ids)
    }

    /// [`Postings::lookup`] by key id.
    pub fn lookup_ids(&self, ids: &[KeyId]) -> Vec<EventPos> {
        let g = self.read();
        let mut out = Vec::new();
        for id in ids {
            if let Some(v) = g.map.get(id) {
                out.extend(v.as_slice().iter().map(|p| unpack(*p)));
            }
        }
        out
    }

    /// Every key `keys` are, or were ever, packed into (transitively, up to `depth` levels
    /// above them), with the keys themselves, as key ids: a superset of the containers whose
    /// events apply, found from the index alone so that all their events can be read in one go.
    pub fn closure(&self, keys: &[String], depth: usize) -> Vec<KeyId> {
        let g = self.read();
        let mut all: Vec<KeyId> = keys.iter().map(|k| KeyId::of(k)).collect();
        let mut level: Vec<KeyId> = all.clone();
        for _ in 0..depth {
            let mut next = Vec::new();
            for k in &level {
                for p in g.map.get(k).map(Slot::as_slice).unwrap_or_default() {
                    if role(*p) != ROLE_CHILD {
                        continue;
                    }
                    if let Some(parent) = g.parents.get(&event_of(*p))
                        && !all.contains(parent)
                    {
                        all.push(*parent);
                        next.push(*parent);
                    }
                }
            }
            if next.is_empty() {
                break;
            }
            level = next;
        }
        all
    }

    /// Adds a batch the ledger has just committed: `accepted` are its entries' indices with
    /// their events, contiguous from the old tree size. Ignored unless it starts exactly at
    /// `covered` (otherwise another writer's entries sit in between, and only the table has
    /// them).
    pub fn committed(&self, accepted: &[(u64, &[IndexedEvent])]) {
        let Some(first) = accepted.first().map(|(i, _)| *i) else {
            return;
        };
        let mut g = self.write();
        if g.covered != first {
            return;
        }
        let mut next = first;
        for (index, events) in accepted {
            debug_assert_eq!(*index, next);
            for (pos, v) in events.iter().enumerate() {
                // An event names a key once, whatever its roles (as in the table).
                let mut seen = HashSet::new();
                for (key, role) in &v.ids {
                    if seen.insert(key.as_str()) {
                        add(&mut g, key, *index, pos, *role);
                    }
                }
            }
            next = index + 1;
        }
        g.covered = next;
    }

    /// Reads the table's rows for entries `covered..size` (entries below `size` must be
    /// committed) and moves `covered` to `size`. Returns the new `covered`.
    pub async fn catch_up(&self, db: &Database, size: u64) -> Result<u64, StoreError> {
        let _one = self.catching_up.lock().await;
        loop {
            let from = self.covered();
            if from >= size {
                return Ok(from);
            }
            let to = size.min(from + CATCH_UP_CHUNK as u64);
            let rows: Vec<(String, i64, i32, i16)> = epc::Entity::find()
                .select_only()
                .column(epc::Column::Epc)
                .column(epc::Column::EntryIdx)
                .column(epc::Column::Position)
                .column(epc::Column::Role)
                .filter(epc::Column::EntryIdx.gte(from as i64))
                .filter(epc::Column::EntryIdx.lt(to as i64))
                .order_by_asc(epc::Column::EntryIdx)
                .order_by_asc(epc::Column::Position)
                .into_tuple()
                .all(&db.conn)
                .await?;
            let mut g = self.write();
            // The ledger may have added its own batch meanwhile (it only does so at `covered`).
            if g.covered != from {
                continue;
            }
            for (key, idx, pos, role) in rows {
                add(&mut g, &key, idx as u64, pos as usize, role);
            }
            g.covered = to;
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        // Every write leaves the map consistent before `covered` moves; a poisoned lock is
        // still safe to read.
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }
}

fn add(g: &mut Inner, key: &str, index: u64, pos: usize, role: i16) {
    let posting = pack(index, pos, role);
    let id = KeyId::of(key);
    if role as u64 == ROLE_PARENT {
        g.parents.insert(event_of(posting), id);
    }
    g.rows += 1;
    match g.map.get_mut(&id) {
        Some(v) => v.push(posting),
        None => {
            g.map.insert(id, Slot::One(posting));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_costs_forty_bytes_of_table() {
        assert_eq!(std::mem::size_of::<(KeyId, Slot)>(), 40);
        assert_eq!(std::mem::size_of::<(u64, KeyId)>(), 24);
    }

    #[test]
    fn ids_are_distinct_and_stable() {
        let a = KeyId::of("sgtin:0614141.107346.B1");
        assert_eq!(a, KeyId::of("sgtin:0614141.107346.B1"));
        assert_ne!(a, KeyId::of("sgtin:0614141.107346.B2"));
        let h = rxledger_core::map::key_of("sgtin:0614141.107346.B1");
        assert_eq!(a.0.to_le_bytes(), h[..8]);
    }

    #[test]
    fn postings_pack_and_unpack() {
        for (i, p) in [
            (0, 0),
            (1, 0),
            (123_456_789, 7),
            ((1 << 40) + 3, (1 << 20) - 1),
        ] {
            for r in 0..4 {
                let packed = pack(i, p, r);
                assert_eq!(unpack(packed), (i, p as u32));
                assert_eq!(role(packed), r as u64);
            }
        }
    }
}

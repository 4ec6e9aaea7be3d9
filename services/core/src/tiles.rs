//! The tree stored as C2SP tlog-tiles: rows of up to 256 node hashes, never one row per node.
//!
//! Why tiles: a tile at level `L` holds the hashes of 256 consecutive complete subtrees of
//! height `8L`, and the 8 tree levels in between are recomputed from them on demand. A full
//! tile never changes, so it can be cached forever; only the right edge (at most one partial
//! tile per level) is rewritten as the log grows. Integration appends a batch of leaf hashes to
//! the right edge ([`append`]); reads turn the complete nodes a proof needs
//! ([`crate::merkle::inclusion_nodes`] and friends) into tile ids ([`tiles_for_nodes`]), load
//! them into a [`TileSet`], and run the synchronous proof generators over it.
//!
//! Layout (c2sp.org/tlog-tiles): hash `i` of tile `n` at level `l` is
//! `MTH(D[(n * 256 + i) * 256^l : (n * 256 + i + 1) * 256^l])`, i.e. node `(8l, 256n + i)`.
//! A partial tile of a tree of size `s` at level `l` has width `floor(s / 256^l) mod 256`.

use crate::merkle::{Hash, NodeId, NodeSource, node_hash};
use std::collections::HashMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Tree levels covered by one tile.
pub const TILE_HEIGHT: u8 = 8;
/// Hashes in a full tile.
pub const TILE_WIDTH: u64 = 256;

/// A tile's position: tile level `level` holds node hashes at tree level `8 * level`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileId {
    pub level: u8,
    pub index: u64,
}

impl TileId {
    /// The C2SP resource path, `tile/<L>/<N>[.p/<W>]`, with `N` in `x`-prefixed groups of three
    /// digits. `width` of 256 (or more) names the full tile.
    pub fn c2sp_path(&self, width: u64) -> String {
        let digits = self.index.to_string();
        let pad = (3 - digits.len() % 3) % 3;
        let padded = format!("{}{digits}", "0".repeat(pad));
        let groups: Vec<&str> = padded
            .as_bytes()
            .chunks(3)
            // Chunks of an ASCII string are valid UTF-8.
            .map(|c| std::str::from_utf8(c).unwrap_or("000"))
            .collect();
        let last = groups.len() - 1;
        let n: Vec<String> = groups
            .iter()
            .enumerate()
            .map(|(i, g)| {
                if i < last {
                    format!("x{g}")
                } else {
                    (*g).to_string()
                }
            })
            .collect();
        let mut path = format!("tile/{}/{}", self.level, n.join("/"));
        if width < TILE_WIDTH {
            path.push_str(&format!(".p/{width}"));
        }
        path
    }
}

/// How many hashes tile `id` holds in the tree of `size`: 256 when it is full, its C2SP
/// partial width when it is on the right edge, 0 when the tree does not reach it.
pub fn width_in(id: TileId, size: u64) -> u64 {
    let Some(span) = TILE_WIDTH.checked_pow(u32::from(id.level)) else {
        return 0;
    };
    (size / span)
        .saturating_sub(id.index.saturating_mul(TILE_WIDTH))
        .min(TILE_WIDTH)
}

/// What a C2SP tlog-tiles resource path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TilePath {
    /// `tile/<L>/<N>[.p/<W>]`: the first `width` hashes of a tile.
    Hashes { id: TileId, width: u64 },
    /// `tile/entries/<N>[.p/<W>]`: the entries under the first `width` hashes of level-0 tile
    /// `index`.
    Entries { index: u64, width: u64 },
}

/// A path that is not a C2SP tile or entry bundle path in its one canonical spelling.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a tlog-tiles path: {0}")]
pub struct TilePathError(pub &'static str);

/// Highest tile level a path may name (c2sp.org/tlog-tiles).
pub const MAX_TILE_LEVEL: u8 = 63;

impl TilePath {
    /// Reads `rest`, the part after `tile/`. Only the spelling [`TileId::c2sp_path`] writes is
    /// accepted (no extra leading groups, no leading zeroes in `L` or `W`), so one resource has
    /// one URL and caches hold it once.
    pub fn parse(rest: &str) -> Result<TilePath, TilePathError> {
        let (head, n) = rest.split_once('/').ok_or(TilePathError("no tile index"))?;
        let (n, width) = match n.rsplit_once(".p/") {
            Some((n, w)) => {
                let w: u64 = w.parse().map_err(|_| TilePathError("bad width"))?;
                if !(1..TILE_WIDTH).contains(&w) {
                    return Err(TilePathError("a partial width is 1 to 255"));
                }
                (n, w)
            }
            None => (n, TILE_WIDTH),
        };
        let mut index: u64 = 0;
        for group in n.split('/') {
            let digits = group.strip_prefix('x').unwrap_or(group);
            if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(TilePathError("index groups are three digits"));
            }
            index = index
                .checked_mul(1000)
                .and_then(|i| i.checked_add(digits.parse::<u64>().unwrap_or(0)))
                .ok_or(TilePathError("index too large"))?;
        }
        let parsed = if head == "entries" {
            TilePath::Entries { index, width }
        } else {
            let level: u8 = head.parse().map_err(|_| TilePathError("bad level"))?;
            if level > MAX_TILE_LEVEL {
                return Err(TilePathError("level above 63"));
            }
            TilePath::Hashes {
                id: TileId { level, index },
                width,
            }
        };
        if parsed.path() != format!("tile/{rest}") {
            return Err(TilePathError("not in canonical form"));
        }
        Ok(parsed)
    }

    /// The resource path, `tile/…`.
    pub fn path(&self) -> String {
        match *self {
            TilePath::Hashes { id, width } => id.c2sp_path(width),
            TilePath::Entries { index, width } => {
                let p = TileId { level: 0, index }.c2sp_path(width);
                format!("tile/entries/{}", p.trim_start_matches("tile/0/"))
            }
        }
    }

    /// Whether it names a full tile or bundle (immutable, cacheable forever).
    pub fn is_full(&self) -> bool {
        match *self {
            TilePath::Hashes { width, .. } | TilePath::Entries { width, .. } => width == TILE_WIDTH,
        }
    }
}

/// The bottom row of a tile: 1..=256 hashes. A tile is full at 256 and then immutable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tile {
    pub id: TileId,
    pub hashes: Vec<Hash>,
}

impl Tile {
    pub fn width(&self) -> u64 {
        self.hashes.len() as u64
    }

    pub fn is_full(&self) -> bool {
        self.width() == TILE_WIDTH
    }
}

/// Errors of [`append`]: the caller's view of the right edge does not match the tree size.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TileError {
    #[error("right-edge tile {0:?} is missing")]
    MissingRightEdge(TileId),
    #[error("tile {0:?} is not on the right edge of the tree")]
    UnexpectedTile(TileId),
    #[error("tile {id:?} has width {got}, expected {expected}")]
    WrongWidth { id: TileId, expected: u64, got: u64 },
    #[error("appending {adding} leaves to a tree of size {size} overflows")]
    TreeFull { size: u64, adding: u64 },
}

/// The tile holding `node`, and the minimum width that tile must have to contain it.
pub fn tile_of(node: NodeId) -> (TileId, u64) {
    let level = node.level / TILE_HEIGHT;
    let rise = u32::from(node.level % TILE_HEIGHT);
    // Within its tile the node is one of 256 >> rise nodes at its level.
    let per_tile_bits = u32::from(TILE_HEIGHT) - rise;
    let pos = node.index & ((1u64 << per_tile_bits) - 1);
    let id = TileId {
        level,
        index: node.index >> per_tile_bits,
    };
    (id, (pos + 1) << rise)
}

/// The tiles holding `nodes`, deduplicated and sorted.
pub fn tiles_for_nodes(nodes: &[NodeId]) -> Vec<TileId> {
    let mut ids: Vec<TileId> = nodes.iter().map(|&n| tile_of(n).0).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Like [`tiles_for_nodes`], with the minimum width each tile must have.
pub fn tiles_for_nodes_with_width(nodes: &[NodeId]) -> Vec<(TileId, u64)> {
    let mut out: Vec<(TileId, u64)> = Vec::new();
    let mut all: Vec<(TileId, u64)> = nodes.iter().map(|&n| tile_of(n)).collect();
    all.sort_unstable();
    for (id, width) in all {
        match out.last_mut() {
            Some((last, w)) if *last == id => *w = (*w).max(width),
            _ => out.push((id, width)),
        }
    }
    out
}

/// The partial tile of every tile level for a tree of `size`, lowest level first: exactly the
/// tiles whose width is 1..=255, which are also all that [`append`] needs.
pub fn right_edge(size: u64) -> Vec<(TileId, u64)> {
    let mut out = Vec::new();
    for level in 0..8u8 {
        let count = size >> (u32::from(level) * 8);
        if count == 0 {
            break;
        }
        let width = count % TILE_WIDTH;
        if width > 0 {
            let id = TileId {
                level,
                index: count / TILE_WIDTH,
            };
            out.push((id, width));
        }
    }
    out
}

/// Appends leaf hashes to a tree of `size` whose right-edge tiles are `right_edge` (exactly
/// the tiles and widths of [`right_edge(size)`](right_edge)). Returns every tile that changed or
/// was created, by level then index: new full tiles and the new partial ones. When a level-`L`
/// tile becomes full its root (a level `8(L+1)` node) is appended to level `L+1`.
pub fn append(size: u64, right_edge: &[Tile], leaves: &[Hash]) -> Result<Vec<Tile>, TileError> {
    let adding = leaves.len() as u64;
    if size.checked_add(adding).is_none() {
        return Err(TileError::TreeFull { size, adding });
    }
    let edge = check_right_edge(size, right_edge)?;

    let mut out = Vec::new();
    let mut incoming: Vec<Hash> = leaves.to_vec();
    let mut level = 0u8;
    while !incoming.is_empty() {
        // Hashes already stored at this tile level, and the tile the next one goes into.
        let count = size >> (u32::from(level) * 8);
        let mut index = count / TILE_WIDTH;
        let mut row: Vec<Hash> = match edge.get(usize::from(level)).and_then(|t| *t) {
            Some(t) => t.hashes.clone(),
            None => Vec::with_capacity(incoming.len().min(256)),
        };
        let mut completed = Vec::new();
        for h in incoming {
            row.push(h);
            if row.len() as u64 == TILE_WIDTH {
                completed.push(perfect_root(&row));
                let full = std::mem::replace(&mut row, Vec::with_capacity(256));
                out.push(Tile {
                    id: TileId { level, index },
                    hashes: full,
                });
                index += 1;
            }
        }
        if !row.is_empty() {
            out.push(Tile {
                id: TileId { level, index },
                hashes: row,
            });
        }
        incoming = completed;
        level += 1;
    }
    Ok(out)
}

/// Checks the caller's right edge against the tree size; returns it indexed by tile level.
fn check_right_edge(size: u64, given: &[Tile]) -> Result<Vec<Option<&Tile>>, TileError> {
    let mut by_level: Vec<Option<&Tile>> = vec![None; 8];
    let expected = right_edge(size);
    for t in given {
        let Some(&(_, width)) = expected.iter().find(|(id, _)| *id == t.id) else {
            return Err(TileError::UnexpectedTile(t.id));
        };
        if t.width() != width {
            return Err(TileError::WrongWidth {
                id: t.id,
                expected: width,
                got: t.width(),
            });
        }
        by_level[usize::from(t.id.level)] = Some(t);
    }
    for (id, _) in expected {
        if by_level[usize::from(id.level)].is_none() {
            return Err(TileError::MissingRightEdge(id));
        }
    }
    Ok(by_level)
}

/// Root of a perfect subtree given its bottom row (length a power of two).
fn perfect_root(row: &[Hash]) -> Hash {
    let mut level: Vec<Hash> = row.to_vec();
    while level.len() > 1 {
        level = level
            .chunks_exact(2)
            .map(|p| node_hash(&p[0], &p[1]))
            .collect();
    }
    level
        .first()
        .copied()
        .unwrap_or_else(crate::merkle::empty_root)
}

/// An in-memory set of tiles that answers [`NodeSource`] reads, usable as a bounded cache.
///
/// The 8 inner levels of a tile (up to 255 hashes) are computed on the first read that needs
/// them and kept, since proofs hit the same upper tiles again and again. With a capacity, the
/// least recently used tiles are evicted in batches of about an eighth of the capacity.
/// Inserting a tile keeps the widest version seen for its id: a narrower version is a prefix
/// of a wider one, so it never needs to replace it.
#[derive(Debug, Default)]
pub struct TileSet {
    tiles: HashMap<TileId, Entry>,
    capacity: Option<usize>,
    clock: AtomicU64,
}

#[derive(Debug)]
struct Entry {
    tile: Tile,
    /// Levels 1..=7 of the tile, concatenated; level `k` has `width >> k` hashes.
    inner: OnceLock<Vec<Hash>>,
    last_used: AtomicU64,
}

impl TileSet {
    /// An unbounded set.
    pub fn new() -> Self {
        Self::default()
    }

    /// A set that holds at most about `capacity` tiles (at least 1).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            capacity: Some(capacity.max(1)),
            ..Self::default()
        }
    }

    /// Adds a tile, or widens the one held for its id. Returns false (and stores nothing) for a
    /// tile with no hashes or more than 256.
    pub fn insert(&mut self, t: Tile) -> bool {
        if t.hashes.is_empty() || t.width() > TILE_WIDTH {
            return false;
        }
        let tick = self.tick();
        if let Some(e) = self.tiles.get(&t.id)
            && e.tile.width() >= t.width()
        {
            debug_assert_eq!(e.tile.hashes[..t.hashes.len()], t.hashes[..]);
            e.last_used.store(tick, Ordering::Relaxed);
            return true;
        }
        let entry = Entry {
            tile: t,
            inner: OnceLock::new(),
            last_used: AtomicU64::new(tick),
        };
        self.tiles.insert(entry.tile.id, entry);
        self.evict_if_full();
        true
    }

    pub fn get(&self, id: TileId) -> Option<&Tile> {
        self.entry(id).map(|e| &e.tile)
    }

    pub fn contains(&self, id: TileId) -> bool {
        self.tiles.contains_key(&id)
    }

    /// Whether the tile is held with at least `width` hashes.
    pub fn contains_width(&self, id: TileId, width: u64) -> bool {
        self.tiles.get(&id).is_some_and(|e| e.tile.width() >= width)
    }

    /// Of the `(tile, minimum width)` pairs needed, those this set cannot serve.
    pub fn missing(&self, needed: &[(TileId, u64)]) -> Vec<(TileId, u64)> {
        needed
            .iter()
            .copied()
            .filter(|&(id, w)| !self.contains_width(id, w))
            .collect()
    }

    pub fn remove(&mut self, id: TileId) -> Option<Tile> {
        self.tiles.remove(&id).map(|e| e.tile)
    }

    pub fn len(&self) -> usize {
        self.tiles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tiles.is_empty()
    }

    pub fn capacity(&self) -> Option<usize> {
        self.capacity
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed)
    }

    fn entry(&self, id: TileId) -> Option<&Entry> {
        let e = self.tiles.get(&id)?;
        e.last_used.store(self.tick(), Ordering::Relaxed);
        Some(e)
    }

    fn evict_if_full(&mut self) {
        let Some(cap) = self.capacity else { return };
        if self.tiles.len() <= cap {
            return;
        }
        // Evict down to 7/8 of capacity so the O(n) selection runs once per cap/8 inserts.
        let keep = cap - cap / 8;
        let excess = self.tiles.len() - keep;
        let mut ages: Vec<(u64, TileId)> = self
            .tiles
            .iter()
            .map(|(id, e)| (e.last_used.load(Ordering::Relaxed), *id))
            .collect();
        ages.select_nth_unstable(excess - 1);
        for (_, id) in &ages[..excess] {
            self.tiles.remove(id);
        }
    }
}

impl Entry {
    fn inner(&self) -> &[Hash] {
        self.inner.get_or_init(|| {
            let bottom = &self.tile.hashes;
            let mut out: Vec<Hash> = Vec::with_capacity(bottom.len());
            // `below` is where the level under the one being built starts in `out`.
            let (mut below, mut below_len) = (0usize, bottom.len());
            for rise in 1..TILE_HEIGHT {
                let start = out.len();
                for j in 0..below_len / 2 {
                    let h = if rise == 1 {
                        node_hash(&bottom[2 * j], &bottom[2 * j + 1])
                    } else {
                        node_hash(&out[below + 2 * j], &out[below + 2 * j + 1])
                    };
                    out.push(h);
                }
                below = start;
                below_len /= 2;
            }
            out
        })
    }

    /// Hash at `rise` levels above the tile's bottom row, position `pos` in that level.
    fn hash_at(&self, rise: u8, pos: u64) -> Option<Hash> {
        let pos = usize::try_from(pos).ok()?;
        if rise == 0 {
            return self.tile.hashes.get(pos).copied();
        }
        let width = self.tile.hashes.len();
        let offset: usize = (1..rise).map(|k| width >> k).sum();
        if pos >= width >> rise {
            return None;
        }
        self.inner().get(offset + pos).copied()
    }
}

impl NodeSource for TileSet {
    fn node(&self, id: NodeId) -> Option<Hash> {
        let (tile_id, width) = tile_of(id);
        let e = self.entry(tile_id)?;
        if e.tile.width() < width {
            return None;
        }
        let rise = id.level % TILE_HEIGHT;
        let pos = id.index & ((1u64 << (TILE_HEIGHT - rise)) - 1);
        e.hash_at(rise, pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{self, empty_root, leaf_hash};
    use proptest::prelude::*;

    // --- A naive RFC 9162 implementation, straight from the recursive definitions. ---

    fn split(n: usize) -> usize {
        let mut k = 1;
        while k * 2 < n {
            k *= 2;
        }
        k
    }

    fn mth(d: &[Hash]) -> Hash {
        match d.len() {
            0 => empty_root(),
            1 => d[0],
            n => {
                let k = split(n);
                node_hash(&mth(&d[..k]), &mth(&d[k..]))
            }
        }
    }

    fn path(m: usize, d: &[Hash]) -> Vec<Hash> {
        if d.len() <= 1 {
            return vec![];
        }
        let k = split(d.len());
        if m < k {
            let mut p = path(m, &d[..k]);
            p.push(mth(&d[k..]));
            p
        } else {
            let mut p = path(m - k, &d[k..]);
            p.push(mth(&d[..k]));
            p
        }
    }

    fn subproof(m: usize, d: &[Hash], b: bool) -> Vec<Hash> {
        let n = d.len();
        if m == n {
            return if b { vec![] } else { vec![mth(d)] };
        }
        let k = split(n);
        if m <= k {
            let mut p = subproof(m, &d[..k], b);
            p.push(mth(&d[k..]));
            p
        } else {
            let mut p = subproof(m - k, &d[k..], false);
            p.push(mth(&d[..k]));
            p
        }
    }

    // --- Helpers driving the tile code the way the store will. ---

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_le_bytes())).collect()
    }

    /// Appends `all` in the given batch sizes, keeping tiles as a store would.
    fn build(all: &[Hash], batches: &[usize]) -> TileSet {
        let mut set = TileSet::new();
        let mut size = 0u64;
        let mut rest = all;
        let mut batches = batches.iter().copied().cycle();
        while !rest.is_empty() {
            let n = batches.next().unwrap().clamp(1, rest.len());
            let edge: Vec<Tile> = right_edge(size)
                .iter()
                .map(|(id, _)| set.get(*id).unwrap().clone())
                .collect();
            for t in append(size, &edge, &rest[..n]).unwrap() {
                assert!(set.insert(t));
            }
            size += n as u64;
            rest = &rest[n..];
            // Right edge the store would now hold is exactly what right_edge() names.
            for (id, w) in right_edge(size) {
                assert_eq!(set.get(id).unwrap().width(), w);
            }
        }
        set
    }

    #[test]
    fn tile_of_maps_levels() {
        let t = |level, index| TileId { level, index };
        assert_eq!(tile_of(NodeId { level: 0, index: 0 }), (t(0, 0), 1));
        assert_eq!(
            tile_of(NodeId {
                level: 0,
                index: 257
            }),
            (t(0, 1), 2)
        );
        assert_eq!(tile_of(NodeId { level: 1, index: 0 }), (t(0, 0), 2));
        assert_eq!(tile_of(NodeId { level: 7, index: 1 }), (t(0, 0), 256));
        assert_eq!(tile_of(NodeId { level: 7, index: 2 }), (t(0, 1), 128));
        assert_eq!(tile_of(NodeId { level: 8, index: 0 }), (t(1, 0), 1));
        assert_eq!(tile_of(NodeId { level: 9, index: 3 }), (t(1, 0), 8));
        assert_eq!(
            tile_of(NodeId {
                level: 63,
                index: 0
            }),
            (t(7, 0), 128)
        );
        assert_eq!(
            tiles_for_nodes(&[NodeId { level: 1, index: 0 }, NodeId { level: 0, index: 3 }]),
            vec![t(0, 0)]
        );
        assert_eq!(
            tiles_for_nodes_with_width(&[
                NodeId { level: 1, index: 0 },
                NodeId { level: 0, index: 3 }
            ]),
            vec![(t(0, 0), 4)]
        );
    }

    #[test]
    fn right_edge_matches_c2sp_examples() {
        let t = |level, index| TileId { level, index };
        // "a tree of size 70,000 will be represented by 273 full level 0 tiles, one partial
        // level 0 tile of width 112, one full level 1 tile, one partial level 1 tile of width
        // 17, and one partial level 2 tile of width 1."
        assert_eq!(
            right_edge(70_000),
            vec![(t(0, 273), 112), (t(1, 1), 17), (t(2, 0), 1)]
        );
        // "a tree of size 256 will be represented by a full level 0 tile and a partial level 1
        // tile of width 1."
        assert_eq!(right_edge(256), vec![(t(1, 0), 1)]);
        assert!(right_edge(0).is_empty());
        assert_eq!(right_edge(u64::MAX).len(), 8);
    }

    #[test]
    fn c2sp_paths() {
        let t = |level, index| TileId { level, index };
        assert_eq!(t(0, 1_234_067).c2sp_path(256), "tile/0/x001/x234/067");
        assert_eq!(t(2, 5).c2sp_path(17), "tile/2/005.p/17");
        assert_eq!(t(1, 1000).c2sp_path(256), "tile/1/x001/000");
    }

    #[test]
    fn c2sp_paths_read_back_in_their_one_spelling() {
        let t = |level, index| TileId { level, index };
        for (rest, want) in [
            (
                "0/x001/x234/067",
                TilePath::Hashes {
                    id: t(0, 1_234_067),
                    width: 256,
                },
            ),
            (
                "2/005.p/17",
                TilePath::Hashes {
                    id: t(2, 5),
                    width: 17,
                },
            ),
            (
                "entries/x001/000",
                TilePath::Entries {
                    index: 1000,
                    width: 256,
                },
            ),
            ("entries/000.p/1", TilePath::Entries { index: 0, width: 1 }),
        ] {
            assert_eq!(TilePath::parse(rest), Ok(want), "{rest}");
            assert_eq!(want.path(), format!("tile/{rest}"));
        }
        for bad in [
            "0/1",
            "0/x000/001",
            "00/001",
            "64/000",
            "0/001.p/0",
            "0/001.p/256",
            "0/001.p/017",
            "0/001/002",
            "0/x001",
            "0",
            "entries/01",
            "0/x999/x999/x999/x999/x999/x999/x999/999",
            "-1/000",
            "0/00a",
        ] {
            assert!(TilePath::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_width_of_a_tile_in_a_tree() {
        let t = |level, index| TileId { level, index };
        // The spec's example: a tree of 70,000 entries.
        assert_eq!(width_in(t(0, 272), 70_000), 256);
        assert_eq!(width_in(t(0, 273), 70_000), 112);
        assert_eq!(width_in(t(0, 274), 70_000), 0);
        assert_eq!(width_in(t(1, 0), 70_000), 256);
        assert_eq!(width_in(t(1, 1), 70_000), 17);
        assert_eq!(width_in(t(2, 0), 70_000), 1);
        assert_eq!(width_in(t(3, 0), 70_000), 0);
        assert_eq!(width_in(t(63, 0), u64::MAX), 0);
        assert_eq!(width_in(t(0, u64::MAX), u64::MAX), 0);
    }

    #[test]
    fn append_checks_the_right_edge() {
        let all = leaves(300);
        let tiles = append(0, &[], &all).unwrap();
        let ids: Vec<(TileId, u64)> = tiles.iter().map(|t| (t.id, t.width())).collect();
        let t = |level, index| TileId { level, index };
        assert_eq!(ids, vec![(t(0, 0), 256), (t(0, 1), 44), (t(1, 0), 1)]);
        assert_eq!(
            append(300, &[], &all[..1]),
            Err(TileError::MissingRightEdge(t(0, 1)))
        );
        let mut short = tiles[1].clone();
        short.hashes.pop();
        assert_eq!(
            append(300, &[short, tiles[2].clone()], &all[..1]),
            Err(TileError::WrongWidth {
                id: t(0, 1),
                expected: 44,
                got: 43
            })
        );
        assert_eq!(
            append(300, &[tiles[0].clone()], &all[..1]),
            Err(TileError::UnexpectedTile(t(0, 0)))
        );
        assert_eq!(
            append(u64::MAX, &[], &all[..1]),
            Err(TileError::TreeFull {
                size: u64::MAX,
                adding: 1
            })
        );
        // Appending nothing changes nothing.
        assert_eq!(append(300, &tiles[1..], &[]), Ok(vec![]));
    }

    #[test]
    fn seventy_thousand_leaves_reach_tile_level_two() {
        let all = leaves(70_000);
        let set = build(&all, &[1000, 1, 4095, 256]);
        assert_eq!(merkle::root(70_000, &set).unwrap(), mth(&all));
        for &i in &[0usize, 255, 256, 65_535, 65_536, 69_999] {
            let p = merkle::inclusion_proof(i as u64, 70_000, &set).unwrap();
            assert_eq!(p, path(i, &all));
        }
        let p = merkle::consistency_proof(65_537, 70_000, &set).unwrap();
        assert_eq!(p, subproof(65_537, &all, true));
    }

    #[test]
    fn bounded_cache_evicts_least_recently_used() {
        let all = leaves(256 * 20);
        let full = build(&all, &[256 * 20]);
        let mut cache = TileSet::with_capacity(8);
        for i in 0..20 {
            let id = TileId { level: 0, index: i };
            cache.insert(full.get(id).unwrap().clone());
            // Keep tile 0 hot.
            assert!(cache.node(NodeId { level: 0, index: 0 }).is_some());
            assert!(cache.len() <= 8);
        }
        assert!(cache.contains(TileId { level: 0, index: 0 }));
        assert!(cache.contains(TileId {
            level: 0,
            index: 19
        }));
        assert!(!cache.contains(TileId { level: 0, index: 1 }));
    }

    #[test]
    fn wider_tile_wins_and_bad_tiles_are_refused() {
        let all = leaves(10);
        let id = TileId { level: 0, index: 0 };
        let mut set = TileSet::new();
        assert!(!set.insert(Tile { id, hashes: vec![] }));
        assert!(!set.insert(Tile {
            id,
            hashes: vec![[0; 32]; 257]
        }));
        assert!(set.insert(Tile {
            id,
            hashes: all[..4].to_vec()
        }));
        assert_eq!(set.node(NodeId { level: 0, index: 4 }), None);
        assert!(set.insert(Tile {
            id,
            hashes: all.clone()
        }));
        assert!(set.insert(Tile {
            id,
            hashes: all[..4].to_vec()
        }));
        assert_eq!(set.get(id).unwrap().width(), 10);
        assert_eq!(
            set.node(NodeId { level: 3, index: 0 }),
            Some(mth(&all[..8]))
        );
        assert_eq!(set.node(NodeId { level: 2, index: 2 }), None);
        assert_eq!(set.missing(&[(id, 10), (id, 11)]), vec![(id, 11)]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn tiles_agree_with_naive_rfc9162(
            size in 1u64..3000,
            batches in proptest::collection::vec(1usize..700, 1..6),
            picks in proptest::collection::vec(any::<u64>(), 4),
        ) {
            let all = leaves(size);
            let set = build(&all, &batches);
            let n = size as usize;
            prop_assert_eq!(merkle::root(size, &set).unwrap(), mth(&all));
            for &p in &picks {
                let i = (p % size) as usize;
                prop_assert_eq!(merkle::inclusion_proof(i as u64, size, &set).unwrap(), path(i, &all));
                let m = (p % size) as usize + 1;
                prop_assert_eq!(
                    merkle::consistency_proof(m as u64, size, &set).unwrap(),
                    subproof(m, &all, true)
                );
                // The node lists name exactly the tiles that the proofs then read.
                let needed = tiles_for_nodes_with_width(&merkle::inclusion_nodes(i as u64, size).unwrap());
                prop_assert!(set.missing(&needed).is_empty());
                let old_root = mth(&all[..m]);
                prop_assert_eq!(merkle::root(m as u64, &set).unwrap(), old_root);
            }
            prop_assert_eq!(n, all.len());
        }
    }

    /// Timing of the read path at 1M entries; run with
    /// `cargo test -p rxledger-core --release --lib -- --ignored --nocapture inclusion_at_1m`.
    #[test]
    #[ignore = "benchmark: slow in debug builds, run explicitly with --release"]
    fn inclusion_at_1m() {
        let size = 1u64 << 20;
        let all = leaves(size);
        let t0 = std::time::Instant::now();
        let store = build(&all, &[1000]);
        eprintln!(
            "integrate {size} leaves in batches of 1000: {:?}",
            t0.elapsed()
        );
        let root = merkle::root(size, &store).unwrap();
        let mut times = Vec::new();
        for k in 0..2000u64 {
            let i = (k * 7919 * 131) % size;
            let t = std::time::Instant::now();
            // A cold cache per proof: fetch the needed tiles (cloned, as if loaded), then prove.
            let mut cache = TileSet::with_capacity(64);
            let nodes = merkle::inclusion_nodes(i, size).unwrap();
            for (id, _) in tiles_for_nodes_with_width(&nodes) {
                cache.insert(store.get(id).unwrap().clone());
            }
            let p = merkle::inclusion_proof(i, size, &cache).unwrap();
            times.push(t.elapsed());
            merkle::verify_inclusion(&all[i as usize], i, size, &p, &root).unwrap();
        }
        times.sort();
        eprintln!(
            "inclusion proof, cold tiles: p50 {:?} p99 {:?}",
            times[times.len() / 2],
            times[times.len() * 99 / 100]
        );
    }
}

//! The right edge of the tile-stored tree: the last tile of every tile level.
//!
//! This is all the sequencer needs to append, so start-up reads O(log n) rows whatever the
//! size of the log, and nothing is ever rebuilt.

use std::collections::BTreeMap;

use rxledger_core::merkle::Hash;
use rxledger_core::tiles::{self, Tile, TileId};

use crate::StoreError;

#[derive(Clone, Debug, Default)]
pub(crate) struct Frontier {
    pub size: u64,
    /// The right-most tile of each tile level, keyed by level.
    last: BTreeMap<u8, Tile>,
}

impl Frontier {
    /// Builds the frontier of a tree of `size` from its right-edge tiles, checking that each
    /// has the width the size implies.
    pub fn from_tiles(size: u64, found: Vec<Tile>) -> Result<Self, StoreError> {
        let mut last = BTreeMap::new();
        for (id, width) in tiles::right_edge(size) {
            let tile = found.iter().find(|t| t.id == id).ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "tile level {} index {} is missing below the head (size {size})",
                    id.level, id.index
                ))
            })?;
            if (tile.hashes.len() as u64) != width {
                return Err(StoreError::Corrupt(format!(
                    "tile level {} index {} has {} hashes; a tree of size {size} needs {width}",
                    id.level,
                    id.index,
                    tile.hashes.len()
                )));
            }
            last.insert(id.level, tile.clone());
        }
        Ok(Frontier { size, last })
    }

    /// The tile ids to read to rebuild the frontier of a tree of `size`.
    pub fn ids_for(size: u64) -> Vec<TileId> {
        tiles::right_edge(size)
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    }

    fn right_edge(&self) -> Vec<Tile> {
        tiles::right_edge(self.size)
            .into_iter()
            .filter_map(|(id, _)| self.last.get(&id.level).filter(|t| t.id == id).cloned())
            .collect()
    }

    /// Appends leaves, returning the new frontier and every tile that changed. `self` is left
    /// untouched so that a failed transaction leaves the sequencer's state as it was.
    pub fn append(&self, leaves: &[Hash]) -> Result<(Frontier, Vec<Tile>), StoreError> {
        let changed = tiles::append(self.size, &self.right_edge(), leaves)?;
        let mut next = self.clone();
        next.size += leaves.len() as u64;
        for t in &changed {
            let newer = next
                .last
                .get(&t.id.level)
                .is_none_or(|cur| cur.id.index <= t.id.index);
            if newer {
                next.last.insert(t.id.level, t.clone());
            }
        }
        Ok((next, changed))
    }
}

impl Frontier {
    /// The right-most tile of tile level `level`, if any.
    pub fn tile(&self, level: u8) -> Option<&Tile> {
        self.last.get(&level)
    }
}

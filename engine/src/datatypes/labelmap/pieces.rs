//! The last block-by-block mesh of each label, kept in pieces so that meshing it again after
//! an edit runs the kernel only where the edit reached.
//!
//! A piece is the `surface` kernel's output for one owner block: a pure function of the
//! label's mask in that block and its seven high neighbours. A block's mask is a function of
//! its stored bytes and of which of the label's supervoxels it holds (the label index says;
//! the mask is the voxels of those). So an owner whose eight blocks have the same stored bytes
//! and the same supervoxels as when its piece was made gets that piece back, at any version:
//! the comparison is of contents, so no edit has to invalidate anything, and the mesh is the
//! one a full meshing gives.

use std::collections::HashMap;
use std::sync::Arc;

use crate::bounded::BoundedCache;
use crate::compute::LabelSurface;

/// (z, y, x) block coordinate at the meshed scale.
pub type Coord = [i32; 3];

/// The blocks an owner's piece is meshed from: its own and its seven high neighbours.
pub fn item_blocks(owner: Coord) -> [Coord; 8] {
    std::array::from_fn(|d| {
        let d = d as i32;
        [
            owner[0] + (d >> 2 & 1),
            owner[1] + (d >> 1 & 1),
            owner[2] + (d & 1),
        ]
    })
}

/// What a block's mask was made from.
#[derive(PartialEq, Eq)]
pub struct Source {
    pub stored: Vec<u8>,
    /// The label's supervoxels the block holds, sorted.
    pub svs: Vec<u64>,
}

/// One label's mesh in pieces, with the blocks they were made from.
#[derive(Default)]
pub struct Pieces {
    pub blocks: HashMap<Coord, Source>,
    /// Every owner block meshed, `None` where it had no surface.
    pub owners: HashMap<Coord, Option<Arc<LabelSurface>>>,
}

impl Pieces {
    /// The piece made earlier for `owner`, when none of its eight blocks changed since.
    pub fn reusable(
        &self,
        owner: Coord,
        now: &HashMap<Coord, Source>,
    ) -> Option<&Option<Arc<LabelSurface>>> {
        let piece = self.owners.get(&owner)?;
        let same = item_blocks(owner)
            .iter()
            .all(|b| self.blocks.get(b) == now.get(b));
        same.then_some(piece)
    }

    fn bytes(&self) -> usize {
        let blocks: usize = self
            .blocks
            .values()
            .map(|s| s.stored.len() + 8 * s.svs.len())
            .sum();
        let pieces: usize = self
            .owners
            .values()
            .flatten()
            .map(|p| 12 * (p.vertices.len() + p.triangles.len()))
            .sum();
        blocks + pieces
    }
}

/// Label, scale, supervoxels.
pub type Key = (u64, u8, bool);

/// The pieces of recently meshed labels, up to `BUDGET` bytes, least recently stored first
/// out.
pub struct Cache {
    kept: BoundedCache<Key, Arc<Pieces>>,
    /// The fewest owner blocks a label's pieces are kept for: a smaller label is meshed again
    /// about as fast as its pieces would be compared and kept.
    min_owners: usize,
}

impl Default for Cache {
    /// Labels of one kernel call's worth of owner blocks or more.
    fn default() -> Self {
        Cache::keeping_from(64)
    }
}

/// About five 10M-voxel bodies (~90 MiB of pieces and blocks each), or one of 100M voxels
/// (~300 MiB).
const BUDGET: usize = 512 << 20;

impl Cache {
    pub fn keeping_from(min_owners: usize) -> Cache {
        Cache {
            kept: BoundedCache::new(BUDGET, BUDGET),
            min_owners,
        }
    }

    pub fn get(&self, key: &Key) -> Option<Arc<Pieces>> {
        self.kept.get(key)
    }

    pub fn put(&self, key: Key, pieces: Pieces) {
        if pieces.owners.len() < self.min_owners {
            self.kept.remove(&key);
            return;
        }
        let size = pieces.bytes();
        self.kept.put(key, Arc::new(pieces), size);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(owners: i32) -> Pieces {
        Pieces {
            blocks: HashMap::new(),
            owners: (0..owners).map(|x| ([0, 0, x], None)).collect(),
        }
    }

    #[test]
    fn keeps_labels_of_enough_owner_blocks_and_replaces_them() {
        let c = Cache::keeping_from(2);
        c.put((1, 0, false), pieces(1));
        assert!(c.get(&(1, 0, false)).is_none());
        c.put((1, 0, false), pieces(3));
        assert_eq!(c.get(&(1, 0, false)).unwrap().owners.len(), 3);
        // Shrunk below the bar, the label's old pieces go too.
        c.put((1, 0, false), pieces(1));
        assert!(c.get(&(1, 0, false)).is_none());
        c.put((2, 0, true), pieces(2));
        assert!(c.get(&(2, 0, false)).is_none() && c.get(&(2, 0, true)).is_some());
    }

    #[test]
    fn an_owner_is_reusable_while_its_eight_blocks_are_unchanged() {
        let source = |b: u8| Source {
            stored: vec![b],
            svs: vec![7],
        };
        let before = Pieces {
            blocks: item_blocks([0, 0, 0])
                .into_iter()
                .map(|b| (b, source(1)))
                .collect(),
            owners: HashMap::from([([0, 0, 0], None)]),
        };
        let mut now: HashMap<Coord, Source> = item_blocks([0, 0, 0])
            .into_iter()
            .map(|b| (b, source(1)))
            .collect();
        assert!(before.reusable([0, 0, 0], &now).is_some());
        assert!(before.reusable([0, 0, 1], &now).is_none(), "never meshed");
        // Another block beside them changes nothing.
        now.insert([0, 0, 2], source(2));
        assert!(before.reusable([0, 0, 0], &now).is_some());
        now.get_mut(&[1, 1, 1]).unwrap().svs.push(8);
        assert!(before.reusable([0, 0, 0], &now).is_none(), "supervoxels");
        now.insert([1, 1, 1], source(2));
        assert!(before.reusable([0, 0, 0], &now).is_none(), "stored bytes");
        now.insert([1, 1, 1], source(1));
        now.remove(&[0, 1, 0]);
        assert!(before.reusable([0, 0, 0], &now).is_none(), "a block gone");
    }
}

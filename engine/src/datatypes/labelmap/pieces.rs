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

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;

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
#[derive(Default)]
pub struct Cache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Key, (usize, Arc<Pieces>)>,
    order: VecDeque<Key>,
    bytes: usize,
}

/// About ten 10M-voxel bodies (~90 MiB of pieces and blocks each), or one of 100M voxels.
const BUDGET: usize = 1 << 30;

impl Cache {
    pub fn get(&self, key: &Key) -> Option<Arc<Pieces>> {
        self.inner.lock().entries.get(key).map(|(_, p)| p.clone())
    }

    pub fn put(&self, key: Key, pieces: Pieces) {
        let size = pieces.bytes();
        let mut c = self.inner.lock();
        if let Some((old, _)) = c.entries.remove(&key) {
            c.bytes -= old;
            c.order.retain(|k| *k != key);
        }
        if size > BUDGET {
            return;
        }
        c.entries.insert(key, (size, Arc::new(pieces)));
        c.order.push_back(key);
        c.bytes += size;
        while c.bytes > BUDGET {
            let Some(k) = c.order.pop_front() else { break };
            if let Some((n, _)) = c.entries.remove(&k) {
                c.bytes -= n;
            }
        }
    }
}

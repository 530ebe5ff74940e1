//! The last block-by-block mesh of each label, kept in pieces so that meshing it again after
//! an edit runs the kernel only where the edit reached.
//!
//! A piece is the `surface` kernel's output for one owner block: a pure function of its item,
//! the label's mask in that block and in the parts of its seven high neighbours next to it
//! (the first plane, row or voxel of each). The pieces keep every block's mask, one bit a
//! voxel, with the block's source: its stored bytes and which of the label's supervoxels it
//! holds (the label index says; the mask is the voxels of those). A block whose source is as
//! it was has the mask it had; one whose source changed is masked again and compared. An owner
//! whose item reads the same bits as when its piece was made gets that piece back, at any
//! version: the comparison is of contents, so no edit has to invalidate anything, and the mesh
//! is the one a full meshing gives. An edit inside a block leaves its low neighbours' pieces
//! alone, and a split that only renames a block's supervoxels remeshes nothing there.

use std::collections::HashMap;
use std::sync::Arc;

use crate::bounded::BoundedCache;
use crate::compute::{LabelSurface, Shape};

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

/// A block's mask, one bit a voxel (x fastest, then y, then z).
#[derive(PartialEq, Eq)]
pub struct Mask(Vec<u64>);

impl Mask {
    /// `mask` (0 or 1 a voxel) packed.
    pub fn of(mask: &[u8]) -> Mask {
        Mask(
            mask.chunks(64)
                .map(|c| {
                    c.iter()
                        .rev()
                        .fold(0u64, |w, &v| w << 1 | u64::from(v != 0))
                })
                .collect(),
        )
    }

    /// The mask again, 0 or 1 for each of its `voxels`.
    pub fn unpack(&self, voxels: usize) -> Vec<u8> {
        (0..voxels).map(|i| u8::from(self.get(i))).collect()
    }

    fn get(&self, i: usize) -> bool {
        self.0[i / 64] >> (i % 64) & 1 == 1
    }

    fn bytes(&self) -> usize {
        8 * self.0.len()
    }
}

/// The voxels of a neighbour block at offset `d` (bit 0: x + 1, bit 1: y + 1, bit 2: z + 1)
/// that an owner's item reads: all of them for the owner's own block, else the plane, row or
/// voxel where the neighbour's low planes of `d`'s axes meet.
fn read_by(d: usize, bs: Shape) -> impl Iterator<Item = usize> {
    let span = move |bit: usize, n: usize| if d >> bit & 1 == 0 { 0..n } else { 0..1 };
    span(2, bs.z).flat_map(move |z| {
        span(1, bs.y).flat_map(move |y| span(0, bs.x).map(move |x| (z * bs.y + y) * bs.x + x))
    })
}

/// Whether two masks of a block agree on `voxels`; `None` is a block holding none of the
/// label.
fn agree(a: Option<&Mask>, b: Option<&Mask>, mut voxels: impl Iterator<Item = usize>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => voxels.all(|i| a.get(i) == b.get(i)),
        (Some(m), None) | (None, Some(m)) => voxels.all(|i| !m.get(i)),
        (None, None) => true,
    }
}

/// One label's mesh in pieces, with the blocks they were made from.
#[derive(Default)]
pub struct Pieces {
    pub blocks: HashMap<Coord, Source>,
    /// The mask of every block of `blocks`.
    pub masks: HashMap<Coord, Arc<Mask>>,
    /// Every owner block meshed, `None` where it had no surface.
    pub owners: HashMap<Coord, Option<Arc<LabelSurface>>>,
}

impl Pieces {
    /// The blocks whose source in `now` is not the one these pieces were made from (gone,
    /// new, or different): the only ones whose masks may differ.
    pub fn changed(&self, now: &HashMap<Coord, Source>) -> Vec<Coord> {
        let mut out: Vec<Coord> = now
            .keys()
            .chain(self.blocks.keys())
            .filter(|b| self.blocks.get(*b) != now.get(*b))
            .copied()
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The piece made earlier for `owner`, when its item reads the same mask bits now.
    /// `changed` has the mask now of every block `changed` named (`None`: none of the label).
    pub fn reusable(
        &self,
        owner: Coord,
        bs: Shape,
        changed: &HashMap<Coord, Option<Arc<Mask>>>,
    ) -> Option<&Option<Arc<LabelSurface>>> {
        let piece = self.owners.get(&owner)?;
        for (d, b) in item_blocks(owner).iter().enumerate() {
            let Some(now) = changed.get(b) else {
                continue;
            };
            let was = self.masks.get(b).map(|m| &**m);
            let same = match d {
                0 => match (was, now.as_deref()) {
                    (Some(a), Some(b)) => a == b,
                    (a, b) => agree(a, b, 0..bs.voxels()),
                },
                _ => agree(was, now.as_deref(), read_by(d, bs)),
            };
            if !same {
                return None;
            }
        }
        Some(piece)
    }

    fn bytes(&self) -> usize {
        let blocks: usize = self
            .blocks
            .values()
            .map(|s| s.stored.len() + 8 * s.svs.len())
            .sum::<usize>()
            + self.masks.values().map(|m| m.bytes()).sum::<usize>();
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
            owners: (0..owners).map(|x| ([0, 0, x], None)).collect(),
            ..Pieces::default()
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
    fn an_item_reads_its_block_and_where_its_neighbours_low_planes_meet() {
        let bs = Shape::new(2, 3, 4);
        // Voxel (x, y, z) is at (z * 3 + y) * 2 + x.
        assert_eq!(read_by(0, bs).count(), 24);
        assert_eq!(
            read_by(1, bs).collect::<Vec<_>>(),
            [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22]
        );
        assert_eq!(
            read_by(2, bs).collect::<Vec<_>>(),
            [0, 1, 6, 7, 12, 13, 18, 19]
        );
        assert_eq!(read_by(4, bs).collect::<Vec<_>>(), [0, 1, 2, 3, 4, 5]);
        assert_eq!(read_by(3, bs).collect::<Vec<_>>(), [0, 6, 12, 18]);
        assert_eq!(read_by(7, bs).collect::<Vec<_>>(), [0]);
        let m: Vec<u8> = (0..130).map(|i| u8::from(i % 3 == 0)).collect();
        let packed = Mask::of(&m);
        assert!((0..130).all(|i| packed.get(i) == (m[i] == 1)));
        assert_eq!(packed.unpack(130), m);
    }

    #[test]
    fn an_owner_is_reusable_while_what_its_item_reads_is_unchanged() {
        let bs = Shape::new(2, 2, 2);
        let source = |b: u8| Source {
            stored: vec![b],
            svs: vec![7],
        };
        // Voxel (x, y, z) is at z * 4 + y * 2 + x.
        let mask = |ones: &[usize]| {
            let m: Vec<u8> = (0..8).map(|i| u8::from(ones.contains(&i))).collect();
            Some(Arc::new(Mask::of(&m)))
        };
        let before = Pieces {
            blocks: item_blocks([0, 0, 0])
                .into_iter()
                .map(|b| (b, source(1)))
                .collect(),
            masks: item_blocks([0, 0, 0])
                .into_iter()
                .map(|b| (b, mask(&[7]).unwrap()))
                .collect(),
            owners: HashMap::from([([0, 0, 0], None)]),
        };
        let mut now: HashMap<Coord, Source> = item_blocks([0, 0, 0])
            .into_iter()
            .map(|b| (b, source(1)))
            .collect();
        assert!(before.changed(&now).is_empty());
        let none = HashMap::new();
        assert!(before.reusable([0, 0, 0], bs, &none).is_some());
        assert!(
            before.reusable([0, 0, 1], bs, &none).is_none(),
            "never meshed"
        );
        // The owner's own block: its source changed, and its mask did or did not.
        now.get_mut(&[0, 0, 0]).unwrap().svs.push(8);
        assert_eq!(before.changed(&now), [[0, 0, 0]]);
        let own = |m| HashMap::from([([0, 0, 0], m)]);
        assert!(before.reusable([0, 0, 0], bs, &own(mask(&[7]))).is_some());
        assert!(
            before
                .reusable([0, 0, 0], bs, &own(mask(&[6, 7])))
                .is_none()
        );
        assert!(before.reusable([0, 0, 0], bs, &own(None)).is_none());
        // The +x neighbour: the owner reads its plane x = 0 (voxels 0, 2, 4, 6).
        let x = |m| HashMap::from([([0, 0, 1], m)]);
        assert!(
            before
                .reusable([0, 0, 0], bs, &x(mask(&[1, 3, 7])))
                .is_some()
        );
        assert!(before.reusable([0, 0, 0], bs, &x(mask(&[6, 7]))).is_none());
        // The (+x, +y, +z) neighbour: only its voxel 0.
        let xyz = |m| HashMap::from([([1, 1, 1], m)]);
        assert!(before.reusable([0, 0, 0], bs, &xyz(None)).is_some());
        assert!(before.reusable([0, 0, 0], bs, &xyz(mask(&[0]))).is_none());
        // A block that was not the label's had an empty mask.
        let new = Pieces {
            masks: HashMap::new(),
            ..before
        };
        assert!(new.reusable([0, 0, 0], bs, &x(mask(&[1]))).is_some());
        assert!(new.reusable([0, 0, 0], bs, &x(mask(&[2]))).is_none());
        // Blocks gone from the label are changed too.
        now.remove(&[1, 1, 1]);
        assert!(new.changed(&now).contains(&[1, 1, 1]));
    }
}

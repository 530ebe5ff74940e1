//! The one block writer: puts a write's blocks at one scale into a storage batch and rebuilds
//! the scales above them, for any voxel type. Datatypes add what they keep besides blocks
//! (label indices, extents) to the same batch, and commit it through the mutation service.

use std::sync::Arc;

use rayon::prelude::*;
use tessera_storage::WriteBatch;
use tessera_storage::versioned::put_into;

use super::geom::BlockCoord;
use super::keys::block_key;
use super::pyramid::Level;
use super::read::Blocks;
use super::voxel::Voxel;
use crate::Result;
use crate::compute::Compute;

pub struct Writer<V: Voxel> {
    blocks: Blocks,
    compute: Arc<dyn Compute>,
    scale: u8,
    /// The highest scale rebuilt (0: no pyramid).
    top: u8,
    pyramid: Level<V>,
    batch: WriteBatch,
}

impl<V: Voxel> Writer<V> {
    /// A writer of blocks at `scale` whose pyramid is rebuilt up to scale `top` (none when
    /// `top <= scale`).
    pub fn new(blocks: Blocks, compute: Arc<dyn Compute>, scale: u8, top: u8) -> Writer<V> {
        let shape = blocks.shape;
        Writer {
            blocks,
            compute,
            scale,
            top,
            pyramid: Level::new(shape),
            batch: WriteBatch::new(),
        }
    }

    /// Whether written blocks feed a pyramid.
    pub fn downres(&self) -> bool {
        self.top > self.scale
    }

    /// The batch the write commits, for the datatype's other records.
    pub fn batch(&mut self) -> &mut WriteBatch {
        &mut self.batch
    }

    /// Puts already serialized block values at `coords`.
    pub fn put_stored(&mut self, coords: &[BlockCoord], values: Vec<Vec<u8>>) {
        for (c, v) in coords.iter().zip(values) {
            put_into(
                &mut self.batch,
                &self.blocks.view,
                &block_key(self.scale, *c),
                &v,
            );
        }
    }

    /// Hands the pyramid the new blocks' voxels (one block after another).
    pub fn add_voxels(&mut self, coords: &[BlockCoord], voxels: &[V]) -> Result<()> {
        if self.downres() {
            self.pyramid
                .add_children(self.compute.as_ref(), coords, voxels)?;
        }
        Ok(())
    }

    /// Hands the pyramid the new blocks already downsampled one level (each half a block).
    pub fn add_half(&mut self, coords: &[BlockCoord], half: &[V]) {
        if self.downres() {
            self.pyramid.add_half(coords, half);
        }
    }

    /// Encodes, serializes and puts blocks of voxels, and hands them to the pyramid.
    pub fn put_voxels(&mut self, coords: &[BlockCoord], voxels: &[V]) -> Result<()> {
        let payloads = V::encode(self.compute.as_ref(), voxels, self.blocks.shape)?;
        let stored = self.blocks.stored;
        let values = payloads
            .par_iter()
            .map(|p| stored.serialize(p))
            .collect::<Result<_>>()?;
        self.put_stored(coords, values);
        self.add_voxels(coords, voxels)
    }

    /// Rebuilds the pyramid's changed blocks into the batch and hands the batch back (the
    /// writer is then empty).
    pub fn finish(&mut self) -> Result<WriteBatch> {
        let shape = self.blocks.shape;
        let mut level = std::mem::replace(&mut self.pyramid, Level::new(shape));
        for scale in self.scale + 1..=self.top {
            if level.is_empty() {
                break;
            }
            let (coords, voxels) = level.finish(&self.blocks, self.compute.as_ref(), scale)?;
            let payloads = V::encode(self.compute.as_ref(), &voxels, shape)?;
            let stored = self.blocks.stored;
            let values: Vec<Vec<u8>> = payloads
                .par_iter()
                .map(|p| stored.serialize(p))
                .collect::<Result<_>>()?;
            for (c, v) in coords.iter().zip(values) {
                put_into(
                    &mut self.batch,
                    &self.blocks.view,
                    &block_key(scale, *c),
                    &v,
                );
            }
            let mut next = Level::new(shape);
            if scale < self.top {
                next.add_children(self.compute.as_ref(), &coords, &voxels)?;
            }
            level = next;
        }
        Ok(std::mem::take(&mut self.batch))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tessera_storage::{Dag, MemoryStore, VersionedStore, View};

    use super::*;
    use crate::block::Stored;
    use crate::compute::Shape;
    use crate::compute::cpu::CpuCompute;

    fn blocks(stored: Stored) -> Blocks {
        let mut dag = Dag::new();
        dag.add(1, vec![]);
        Blocks {
            store: VersionedStore::new(Arc::new(MemoryStore::new())),
            view: View {
                instance: 1,
                version: 1,
                dag: Arc::new(dag),
            },
            shape: Shape::cube(8),
            stored,
            held: None,
        }
    }

    /// The voxels of block `c` at `scale`, zeros where none is stored.
    fn read<V: Voxel>(b: &Blocks, scale: u8, c: BlockCoord) -> Vec<V> {
        let mut out = vec![V::default(); b.shape.voxels()];
        if let Some(s) = b.get(scale, c).unwrap() {
            b.decode(&CpuCompute::new(), &[s], &mut out).unwrap();
        }
        out
    }

    /// x-halves of a block: `lo` where x < half, `hi` in the other half, per plane.
    fn halves<V: Voxel + PartialEq + std::fmt::Debug>(v: &[V], half: usize, lo: V, hi: V) {
        for (i, got) in v.iter().enumerate() {
            let x = i % 8;
            let want = if x < half { lo } else { hi };
            assert_eq!(*got, want, "voxel {i}");
        }
    }

    #[test]
    fn uint8_pyramid_is_the_mean_of_what_was_written_and_merges_with_stored_parents() {
        let b = blocks(Stored::Lz4);
        let compute: Arc<dyn Compute> = Arc::new(CpuCompute::new());
        let mut w = Writer::<u8>::new(b.clone(), compute.clone(), 0, 2);
        let vox: Vec<u8> = [vec![10u8; 512], vec![21u8; 512]].concat();
        w.put_voxels(&[[0, 0, 0], [1, 0, 0]], &vox).unwrap();
        b.store.write(w.finish().unwrap()).unwrap();
        assert_eq!(read::<u8>(&b, 0, [1, 0, 0]), vec![21u8; 512]);
        // Scale 1: the two children fill the low-y, low-z x-halves of one parent; the other
        // octants stay zero.
        let s1 = read::<u8>(&b, 1, [0, 0, 0]);
        for z in 0..8 {
            for y in 0..8 {
                let row = &s1[(z * 8 + y) * 8..(z * 8 + y + 1) * 8];
                if z < 4 && y < 4 {
                    halves(row, 4, 10, 21);
                } else {
                    assert_eq!(row, [0; 8]);
                }
            }
        }
        // Scale 2: each voxel the mean of a 2×2×2 window of scale 1.
        assert_eq!(read::<u8>(&b, 2, [0, 0, 0])[..5], [10, 10, 21, 21, 0]);
        // A second write of one other child keeps what the parent held.
        let mut w = Writer::<u8>::new(b.clone(), compute, 0, 1);
        w.put_voxels(&[[0, 1, 0]], &[7u8; 512]).unwrap();
        b.store.write(w.finish().unwrap()).unwrap();
        let s1 = read::<u8>(&b, 1, [0, 0, 0]);
        halves(&s1[..8], 4, 10, 21);
        // The new child is the octant at y 4..8, z 0..4, x 0..4.
        assert_eq!(s1[4 * 8..4 * 8 + 5], [7, 7, 7, 7, 0]);
    }

    #[test]
    fn label_blocks_round_trip_and_batched_reads_match_single_ones() {
        let b = blocks(Stored::Gzip(1));
        let compute: Arc<dyn Compute> = Arc::new(CpuCompute::new());
        let mut w = Writer::<u64>::new(b.clone(), compute, 0, 0);
        let vox: Vec<u64> = (0..1024u64).map(|i| u64::MAX - i % 3).collect();
        let coords = [[-1, 0, 0], [5, -2, 3]];
        w.put_voxels(&coords, &vox).unwrap();
        b.store.write(w.finish().unwrap()).unwrap();
        assert_eq!(read::<u64>(&b, 0, [5, -2, 3]), vox[512..]);
        let asked = [[5, -2, 3], [0, 0, 0], [-1, 0, 0]];
        let many = b.get_many(0, &asked).unwrap();
        let one: Vec<_> = asked.iter().map(|c| b.get(0, *c).unwrap()).collect();
        assert_eq!(many, one);
        assert!(many[1].is_none() && many[0].is_some());
        assert!(
            b.get(1, [0, 0, 0]).unwrap().is_none(),
            "no pyramid was asked for"
        );
    }
}

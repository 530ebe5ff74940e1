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

    pub fn blocks(&self) -> &Blocks {
        &self.blocks
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
        let values = payloads.par_iter().map(|p| stored.serialize(p)).collect();
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
            let values: Vec<Vec<u8>> = payloads.par_iter().map(|p| stored.serialize(p)).collect();
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

//! Multiscale pyramids (spec §6.2): the scale-s block at B covers the 2×2×2 scale-(s−1)
//! blocks 2B + (ox, oy, oz). A write hands its changed blocks down level by level; each
//! parent is assembled from the downsampled changed children, and only its unchanged octants
//! come from the stored parent.
//!
//! Every scale uses the same block size, and a block's sides are even, so downsampling a
//! batch of blocks stacked along z never mixes two blocks: each child contributes exactly its
//! own octant of the parent.

use std::collections::HashMap;

use rayon::prelude::*;

use super::geom::{BlockCoord, zyx};
use super::read::Blocks;
use super::voxel::Voxel;
use crate::Result;
use crate::compute::{Compute, Shape};

/// The changed children of one parent: per octant (bit oz·4+oy·2+ox), its downsampled voxels.
type Children<V> = Vec<(usize, Vec<V>)>;

/// The changed blocks of one scale, waiting to be finished and handed to the next.
pub struct Level<V: Voxel> {
    block: Shape,
    parents: HashMap<BlockCoord, Children<V>>,
}

impl<V: Voxel> Level<V> {
    pub fn new(block: Shape) -> Level<V> {
        Level {
            block,
            parents: HashMap::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.parents.is_empty()
    }

    /// Downsamples a batch of changed child blocks (stacked one after another) into their
    /// parents' octants.
    pub fn add_children(
        &mut self,
        compute: &dyn Compute,
        coords: &[BlockCoord],
        voxels: &[V],
    ) -> Result<()> {
        let b = self.block;
        let stacked = Shape::new(b.x, b.y, b.z * coords.len());
        let half = V::downsample(compute, voxels, stacked)?;
        self.add_half(coords, &half);
        Ok(())
    }

    /// Keeps already downsampled children (each `block.half()`, one after another) for their
    /// parents' octants.
    pub fn add_half(&mut self, coords: &[BlockCoord], half: &[V]) {
        let n = self.block.half().voxels();
        for (c, voxels) in coords.iter().zip(half.chunks_exact(n)) {
            let [ox, oy, oz] = c.map(|v| (v & 1) as usize);
            let children = self.parents.entry(c.map(|v| v >> 1)).or_default();
            children.push((oz * 4 + oy * 2 + ox, voxels.to_vec()));
        }
    }

    /// The finished blocks of this scale, sorted by coordinate and stacked: each parent is
    /// the block stored at `scale` (zeros where none is; read in one batch, decoded in place)
    /// with its changed octants written over it.
    pub fn finish(
        self,
        blocks: &Blocks,
        compute: &dyn Compute,
        scale: u8,
    ) -> Result<(Vec<BlockCoord>, Vec<V>)> {
        let b = self.block;
        let mut parents: Vec<(BlockCoord, Children<V>)> = self.parents.into_iter().collect();
        parents.sort_unstable_by_key(|(c, _)| zyx(c));
        // A parent whose eight octants all changed needs nothing stored.
        let partial: Vec<BlockCoord> = parents
            .iter()
            .filter(|(_, children)| children.iter().fold(0u8, |have, (o, _)| have | 1 << o) != 0xFF)
            .map(|(c, _)| *c)
            .collect();
        let stored: HashMap<BlockCoord, Vec<u8>> = partial
            .iter()
            .zip(blocks.get_many(scale, &partial)?)
            .filter_map(|(c, s)| s.map(|s| (*c, s)))
            .collect();
        let mut voxels = vec![V::default(); parents.len() * b.voxels()];
        let (hx, hy, hz) = (b.x / 2, b.y / 2, b.z / 2);
        voxels
            .par_chunks_mut(b.voxels())
            .zip(&parents)
            .try_for_each(|(out, (c, children))| -> Result<()> {
                if let Some(old) = stored.get(c) {
                    blocks.decode(compute, std::slice::from_ref(old), out)?;
                }
                for (oct, half) in children {
                    let (ox, oy, oz) = (oct & 1, (oct >> 1) & 1, oct >> 2);
                    for (row, src) in half.chunks_exact(hx).enumerate() {
                        let (y, z) = (row % hy, row / hy);
                        let at = ((oz * hz + z) * b.y + oy * hy + y) * b.x + ox * hx;
                        out[at..at + hx].copy_from_slice(src);
                    }
                }
                Ok(())
            })?;
        let coords = parents.iter().map(|(c, _)| *c).collect();
        Ok((coords, voxels))
    }
}

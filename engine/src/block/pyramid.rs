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

/// A parent block being assembled: its voxels and which octants are filled (bit oz·4+oy·2+ox).
struct Parent<V> {
    voxels: Vec<V>,
    have: u8,
}

/// The changed blocks of one scale, waiting to be finished and handed to the next.
pub struct Level<V: Voxel> {
    block: Shape,
    parents: HashMap<BlockCoord, Parent<V>>,
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

    /// Places already downsampled children (each `block.half()`, one after another) into
    /// their parents' octants.
    pub fn add_half(&mut self, coords: &[BlockCoord], half: &[V]) {
        let b = self.block;
        let (hx, hy, hz) = (b.x / 2, b.y / 2, b.z / 2);
        for (i, c) in coords.iter().enumerate() {
            let parent_coord = c.map(|v| v >> 1);
            let [ox, oy, oz] = c.map(|v| (v & 1) as usize);
            let parent = self.parents.entry(parent_coord).or_insert_with(|| Parent {
                voxels: vec![V::default(); b.voxels()],
                have: 0,
            });
            parent.have |= 1 << (oz * 4 + oy * 2 + ox);
            let src = &half[i * hx * hy * hz..(i + 1) * hx * hy * hz];
            for z in 0..hz {
                for y in 0..hy {
                    let from = (z * hy + y) * hx;
                    let to = ((oz * hz + z) * b.y + oy * hy + y) * b.x + ox * hx;
                    parent.voxels[to..to + hx].copy_from_slice(&src[from..from + hx]);
                }
            }
        }
    }

    /// The finished blocks of this scale, sorted by coordinate: octants no child changed are
    /// copied from the block stored at `scale` (zeros where none is), read in one batch.
    pub fn finish(
        self,
        blocks: &Blocks,
        compute: &dyn Compute,
        scale: u8,
    ) -> Result<(Vec<BlockCoord>, Vec<V>)> {
        let b = self.block;
        let mut parents: Vec<(BlockCoord, Parent<V>)> = self.parents.into_iter().collect();
        parents.sort_unstable_by_key(|(c, _)| zyx(c));
        let partial: Vec<BlockCoord> = parents
            .iter()
            .filter(|(_, p)| p.have != 0xFF)
            .map(|(c, _)| *c)
            .collect();
        let stored: HashMap<BlockCoord, Vec<u8>> = partial
            .iter()
            .zip(blocks.get_many(scale, &partial)?)
            .filter_map(|(c, s)| s.map(|s| (*c, s)))
            .collect();
        parents
            .par_iter_mut()
            .map(|(c, p)| (stored.get(c), p))
            .try_for_each(|(old, p)| -> Result<()> {
                let Some(old) = old else { return Ok(()) };
                let mut prev = vec![V::default(); b.voxels()];
                blocks.decode(compute, std::slice::from_ref(old), &mut prev)?;
                let (hx, hy, hz) = (b.x / 2, b.y / 2, b.z / 2);
                for oct in (0..8).filter(|o| p.have & (1 << o) == 0) {
                    let (ox, oy, oz) = (oct & 1, (oct >> 1) & 1, oct >> 2);
                    for z in oz * hz..(oz + 1) * hz {
                        for y in oy * hy..(oy + 1) * hy {
                            let at = (z * b.y + y) * b.x + ox * hx;
                            p.voxels[at..at + hx].copy_from_slice(&prev[at..at + hx]);
                        }
                    }
                }
                Ok(())
            })?;
        let coords = parents.iter().map(|(c, _)| *c).collect();
        let mut voxels = Vec::with_capacity(parents.len() * b.voxels());
        for (_, p) in parents {
            voxels.extend_from_slice(&p.voxels);
        }
        Ok((coords, voxels))
    }
}

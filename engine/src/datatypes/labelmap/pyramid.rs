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

use super::geom::BlockCoord;
use super::store::{Labels, deserialize};
use crate::Result;
use crate::compute::Shape;

/// A parent block being assembled: its voxels and which octants are filled (bit oz·4+oy·2+ox).
struct Parent {
    voxels: Vec<u64>,
    have: u8,
}

/// The changed blocks of one scale, waiting to be finished and handed to the next.
pub struct Level {
    block: Shape,
    parents: HashMap<BlockCoord, Parent>,
}

impl Level {
    pub fn new(block: Shape) -> Level {
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
        labels: &Labels,
        coords: &[BlockCoord],
        voxels: &[u64],
    ) -> Result<()> {
        let b = self.block;
        let stacked = Shape::new(b.x, b.y, b.z * coords.len());
        let half = labels.compute.downsample_mode(voxels, stacked)?;
        let (hx, hy, hz) = (b.x / 2, b.y / 2, b.z / 2);
        for (i, c) in coords.iter().enumerate() {
            let parent_coord = c.map(|v| v >> 1);
            let [ox, oy, oz] = c.map(|v| (v & 1) as usize);
            let parent = self.parents.entry(parent_coord).or_insert_with(|| Parent {
                voxels: vec![0; b.voxels()],
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
        Ok(())
    }

    /// The finished blocks of this scale, sorted by coordinate: octants no child changed are
    /// copied from the block stored at `scale` (zeros where none is).
    pub fn finish(self, labels: &Labels, scale: u8) -> Result<(Vec<BlockCoord>, Vec<u64>)> {
        let b = self.block;
        let mut parents: Vec<(BlockCoord, Parent)> = self.parents.into_iter().collect();
        parents.sort_unstable_by_key(|(c, _)| super::geom::zyx(c));
        parents
            .par_iter_mut()
            .try_for_each(|(c, p)| -> Result<()> {
                if p.have == 0xFF {
                    return Ok(());
                }
                let Some(stored) = labels.stored_block(scale, *c)? else {
                    return Ok(());
                };
                let mut old = vec![0u64; b.voxels()];
                labels.decode_blocks(&[&deserialize(&stored)?], &mut old)?;
                let (hx, hy, hz) = (b.x / 2, b.y / 2, b.z / 2);
                for oct in (0..8).filter(|o| p.have & (1 << o) == 0) {
                    let (ox, oy, oz) = (oct & 1, (oct >> 1) & 1, oct >> 2);
                    for z in oz * hz..(oz + 1) * hz {
                        for y in oy * hy..(oy + 1) * hy {
                            let at = (z * b.y + y) * b.x + ox * hx;
                            p.voxels[at..at + hx].copy_from_slice(&old[at..at + hx]);
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

//! The typed handle on a labelblk, for the labelvol synced to it: its blocks (which the
//! labelvol's sparse volumes read) and block rewrites (its merges and splits relabel voxels).

use rayon::prelude::*;

use crate::Result;
use crate::block::Blocks;
use crate::block::geom::BlockCoord;
use crate::compute::{LabelTable, Run};
use crate::datatype::{DataCtx, Handle};
use crate::datatypes::imageblk::image::{Image, Write, label_set};
use crate::datatypes::labelmap::runs::runs_in_block;
use crate::sync::BlockChange;

/// A labelblk at one version.
pub struct Labelblk {
    ctx: DataCtx,
    image: Image,
}

impl Handle for Labelblk {
    const TYPE_NAME: &'static str = "labelblk";

    fn from_ctx(ctx: DataCtx) -> Result<Labelblk> {
        let image = Image::new(&ctx)?;
        Ok(Labelblk { ctx, image })
    }
}

impl Labelblk {
    pub fn name(&self) -> &str {
        &self.ctx.instance.name
    }

    /// The blocks, raw uint64 voxels (at this handle's version).
    pub fn blocks(&self) -> &Blocks {
        &self.image.blocks
    }

    pub fn block_size(&self) -> [usize; 3] {
        self.image.cfg.block_size
    }

    /// Rewrites the stored blocks among `coords`: in each, the voxels under `runs` (voxel
    /// coordinates) whose label is a key of `split` take its value, then every voxel goes
    /// through `relabel`. Commits through the labelblk's write path (so its labelvols get
    /// `BLOCK_MUTATE`) and returns each rewritten block's labels before and after.
    pub fn rewrite(
        &self,
        coords: &[BlockCoord],
        runs: &[Run],
        split: Option<&LabelTable>,
        relabel: Option<&LabelTable>,
    ) -> Result<Vec<BlockChange>> {
        let lock = super::writes(&self.ctx);
        let _writes = lock.lock();
        let image = &self.image;
        let bs = image.cfg.block_size;
        let shape = image.blocks.shape;
        let compute = image.compute.as_ref();
        let found = image.blocks.get_many(0, coords)?;
        let rewritten: Vec<(BlockCoord, Vec<u8>, BlockChange)> = coords
            .par_iter()
            .zip(found)
            .filter_map(|(c, s)| s.map(|s| (*c, s)))
            .map(|(c, stored)| {
                let old = image.decode(&stored)?;
                let mut v: Vec<u64> = old
                    .chunks_exact(8)
                    .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
                    .collect();
                if let Some(table) = split {
                    let mut local = Vec::new();
                    runs_in_block(runs, c, bs, 0, &mut local);
                    if !local.is_empty() {
                        compute.split_apply(&mut v, shape, &local, table)?;
                    }
                }
                if let Some(table) = relabel {
                    compute.relabel(&mut v, table)?;
                }
                let new: Vec<u8> = v.iter().flat_map(|l| l.to_le_bytes()).collect();
                let change = BlockChange {
                    coord: c,
                    prev: Some(label_set(&old)),
                    labels: label_set(&new),
                };
                Ok((c, new, change))
            })
            .collect::<Result<_>>()?;
        if rewritten.is_empty() {
            return Ok(Vec::new());
        }
        let cs: Vec<BlockCoord> = rewritten.iter().map(|r| r.0).collect();
        let bytes: Vec<u8> = rewritten.iter().flat_map(|r| r.1.iter().copied()).collect();
        let mut write = Write::new(image, self.ctx.write());
        write.add(&cs, &bytes)?;
        write.commit()?;
        Ok(rewritten.into_iter().map(|r| r.2).collect())
    }
}

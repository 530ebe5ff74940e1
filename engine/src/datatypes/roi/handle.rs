//! [`Roi`]: an ROI instance at one version, for the instances that mask with it (`roi=` on
//! image and label reads and writes).

use std::sync::Arc;

use serde_json::Value;
use tessera_storage::versioned::{delete_into, put_into};

use super::spans::{self, Span};
use crate::block::geom::VoxelBox;
use crate::datatype::{DataCtx, Handle};
use crate::{Error, Result};

/// The one TKey an ROI's spans are stored under (per version).
pub(super) const SPANS_KEY: &[u8] = &[1];

/// An ROI at one version: its block size and normalized spans (sorted, merged), cheap to clone.
#[derive(Clone)]
pub struct Roi {
    pub name: String,
    pub block_size: [i32; 3],
    spans: Arc<Vec<Span>>,
}

impl Handle for Roi {
    const TYPE_NAME: &'static str = "roi";

    fn from_ctx(ctx: DataCtx) -> Result<Roi> {
        Roi::load(&ctx)
    }
}

/// The block size of an roi instance's configuration.
pub fn block_size(config: &Value) -> Result<[i32; 3]> {
    serde_json::from_value(config["BlockSize"].clone())
        .map_err(|e| Error::Internal(format!("roi configuration: {e}")))
}

impl Roi {
    pub fn load(ctx: &DataCtx) -> Result<Roi> {
        let spans = match ctx.store.get(&ctx.view, SPANS_KEY)? {
            Some(v) => spans::decode(&v)?,
            None => Vec::new(),
        };
        Ok(Roi {
            name: ctx.instance.name.clone(),
            block_size: block_size(&ctx.instance.config)?,
            spans: Arc::new(spans),
        })
    }

    /// The ROI named by a `roi=` query of another instance's request: a 400 naming it when
    /// there is no such instance or it is not an ROI.
    pub fn for_query(ctx: &DataCtx, name: &str) -> Result<Roi> {
        ctx.handle::<Roi>(name)
            .map_err(|e| Error::bad(format!("roi={name:?}: no roi instance of that name ({e})")))
    }

    /// The spans, sorted by (z, y, x0) and merged.
    pub fn spans(&self) -> &[Span] {
        &self.spans
    }

    pub fn contains_block(&self, block: [i32; 3]) -> bool {
        spans::contains(&self.spans, block)
    }

    /// Whether voxel `p` is inside.
    pub fn contains_voxel(&self, p: [i64; 3]) -> bool {
        let b = std::array::from_fn(|a| p[a].div_euclid(i64::from(self.block_size[a])) as i32);
        self.contains_block(b)
    }

    /// Calls `outside(start, len)` for each run of voxels of `bx` (x fastest) outside the ROI.
    pub fn outside_runs(&self, bx: &VoxelBox, outside: impl FnMut(usize, usize)) {
        spans::outside_runs(&self.spans, self.block_size, bx, outside)
    }

    /// `bx` as one byte per voxel, x fastest: 1 inside, 0 outside.
    pub fn mask_box(&self, bx: &VoxelBox) -> Vec<u8> {
        let mut mask = vec![1u8; bx.voxels()];
        self.outside_runs(bx, |a, n| mask[a..a + n].fill(0));
        mask
    }

    /// Whether some voxel of `bx` is inside.
    pub fn touches(&self, bx: &VoxelBox) -> bool {
        let mut outside = 0usize;
        self.outside_runs(bx, |_, n| outside += n);
        outside < bx.voxels()
    }
}

/// Replaces the ROI at this version.
pub(super) fn put(ctx: &DataCtx, spans: &[Span]) -> Result<()> {
    let mut m = ctx.write();
    put_into(&mut m.batch, &ctx.view, SPANS_KEY, &spans::encode(spans));
    m.commit()
}

/// Deletes the ROI at this version (a tombstone: ancestors keep theirs).
pub(super) fn delete(ctx: &DataCtx) -> Result<()> {
    let mut m = ctx.write();
    delete_into(&mut m.batch, &ctx.view, SPANS_KEY);
    m.commit()
}

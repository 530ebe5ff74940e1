//! [`Annotation`]: an annotation instance at one version, for its own endpoints, its sync
//! worker and labelsz.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::Value;

use super::element::Point;
use super::element::decode_points;
use super::store::{BlockCoord, CLASS_LABEL, Editor, label_prefix, scan_prefix, scan_shards};
use crate::datatype::{DataCtx, Handle};
use crate::datatypes::labelmap::Labelmap;
use crate::{Error, Result};

/// How long a read waits for the sync to apply edits acknowledged before it.
pub const SETTLE: Duration = Duration::from_secs(30);

/// An annotation instance at one version.
pub struct Annotation {
    ctx: DataCtx,
    pub block_size: [i32; 3],
}

impl Handle for Annotation {
    const TYPE_NAME: &'static str = "annotation";

    fn from_ctx(ctx: DataCtx) -> Result<Annotation> {
        let block_size = block_size(&ctx.instance.config)?;
        Ok(Annotation { ctx, block_size })
    }
}

pub fn block_size(config: &Value) -> Result<[i32; 3]> {
    serde_json::from_value(config["BlockSize"].clone())
        .map_err(|e| Error::Internal(format!("annotation configuration: {e}")))
}

/// Serializes an instance's writers (element edits and its sync worker): an edit reads
/// blocks and index shards and writes them back.
#[derive(Default)]
pub struct Writes(Mutex<()>);

pub fn writes(ctx: &DataCtx) -> Arc<Writes> {
    ctx.services
        .instance_state(ctx.instance.id, Writes::default)
}

impl Writes {
    pub fn lock(&self) -> parking_lot::MutexGuard<'_, ()> {
        self.0.lock()
    }
}

impl Annotation {
    pub fn ctx(&self) -> &DataCtx {
        &self.ctx
    }

    pub fn editor(&self) -> Editor<'_> {
        Editor::new(&self.ctx, self.block_size)
    }

    pub fn block_of(&self, p: [i32; 3]) -> BlockCoord {
        std::array::from_fn(|a| p[a].div_euclid(self.block_size[a]))
    }

    /// The labelmap this instance is synced to, at the same version; `None` when unsynced.
    pub fn labelmap(&self) -> Result<Option<Labelmap>> {
        for source in &self.ctx.instance.syncs {
            let ctx = self.ctx.catalog.ctx_at(
                &self.ctx.uuid,
                source,
                Some(self.ctx.view.version),
                &crate::datatype::Caller::admin(),
            )?;
            if ctx.instance.type_name == Labelmap::TYPE_NAME {
                return Ok(Some(Labelmap::open(ctx)?));
            }
        }
        Ok(None)
    }

    /// Waits (up to [`SETTLE`]) for the label sync to apply the label edits acknowledged
    /// before this call, so label queries see them.
    pub fn settle(&self) -> Result<()> {
        let mutations = &self.ctx.services.mutations;
        if !mutations.settle(&self.ctx.instance.data_uuid, SETTLE)? {
            tracing::warn!(
                instance = %self.ctx.instance.name,
                "label sync still behind after {SETTLE:?}; answering with what it applied"
            );
        }
        Ok(())
    }

    /// The points whose voxel belongs to body `label` (as the sync last applied), in block
    /// order; empty when none.
    pub fn label_points(&self, label: u64) -> Result<Vec<Point>> {
        let mut out = Vec::new();
        scan_shards(&self.ctx, &label_prefix(label), &mut |_, points| {
            out.extend(points);
            Ok(true)
        })?;
        Ok(out)
    }

    /// The blocks holding points of `label`, with those points.
    pub fn label_shards(&self, label: u64) -> Result<Vec<(BlockCoord, Vec<Point>)>> {
        let mut out = Vec::new();
        scan_shards(&self.ctx, &label_prefix(label), &mut |b, points| {
            out.push((b, points));
            Ok(true)
        })?;
        Ok(out)
    }

    /// Visits every label holding points, ascending, with its points; stops when `visit`
    /// returns false.
    pub fn for_each_label(
        &self,
        visit: &mut dyn FnMut(u64, Vec<Point>) -> Result<bool>,
    ) -> Result<()> {
        let mut current: Option<(u64, Vec<Point>)> = None;
        let mut stopped = false;
        scan_prefix(&self.ctx, &[CLASS_LABEL], &mut |k, v| {
            let label = u64::from_be_bytes(k[1..9].try_into().expect("label keys hold 8"));
            let points = decode_points(v)?;
            match &mut current {
                Some((l, list)) if *l == label => list.extend(points),
                _ => {
                    if let Some((l, list)) = current.replace((label, points))
                        && !visit(l, list)?
                    {
                        stopped = true;
                        return Ok(false);
                    }
                }
            }
            Ok(true)
        })?;
        if let (false, Some((l, list))) = (stopped, current) {
            visit(l, list)?;
        }
        Ok(())
    }
}

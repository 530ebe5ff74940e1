//! Multiscale grayscale as sibling instances, the convention neuroglancer and neuclease read
//! (`grayscale`, `grayscale_1`, `grayscale_2`, …): a uint8blk instance synced to another
//! uint8blk keeps itself the 2×2×2 mean of its source, one level down, with the compute
//! backend's `downsample_mean` (GPU or CPU, the same bytes).
//!
//! Incremental: a durable subscription to the source's `BLOCK_INGEST` events recomputes every
//! block whose children were written, at the version they were written in, and writes it
//! through the instance's own write path — whose event moves the next level. Recomputing a
//! block reads all eight children, so applying an event twice (after a crash) changes
//! nothing. Bulk: `POST resync` recomputes every block under the source's blocks at a version.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tessera_storage::VersionId;

use super::config::Kind;
use super::image::{Image, Write};
use crate::block::geom::{BlockCoord, zyx};
use crate::block::keys::{block_key, block_key_coord};
use crate::block::pyramid::Level;
use crate::block::read::scan_visible;
use crate::datatype::{Caller, DataCtx, DataRequest, DataResponse, WorkerCatalog};
use crate::mutation::{Subscriber, Subscription};
use crate::sync::{BLOCK_INGEST, Delta, SyncEvent};
use crate::{Error, Result};

/// Parent blocks written per commit: a level's next level then recomputes once per this many,
/// not once per batch (1024 JPEG blocks of 64³ are some 70 MiB).
const PARENTS_PER_COMMIT: usize = 1024;

/// Parent blocks recomputed per batch (their children are read in one storage call); 32
/// parents of 64³ are 64 MiB of children.
const PARENTS_PER_BATCH: usize = 32;

/// How long a level waits for its source's writes to pause before it recomputes.
const GATHER: std::time::Duration = std::time::Duration::from_millis(300);

/// One subscription per synced source (an image level has one).
pub fn subscriptions(ctx: &DataCtx) -> Result<Vec<Subscription>> {
    let admin = Caller::admin();
    let mut out = Vec::new();
    for source in &ctx.instance.syncs {
        let src = ctx.catalog.ctx_at(&ctx.uuid, source, None, &admin)?;
        out.push(Subscription {
            id: format!("{}/downres/{source}", ctx.instance.data_uuid),
            publisher: source.clone(),
            events: vec![BLOCK_INGEST],
            kv: src.store.kv().clone(),
            handler: Arc::new(Worker {
                repo: WorkerCatalog::new(ctx),
                name: ctx.instance.name.clone(),
                source: source.clone(),
            }),
            // Clients write a volume as a run of slabs, and two consecutive slabs share their
            // parent blocks: gathering them computes each parent once, not twice. A level
            // fed by another level gets each of its writes whole, so it applies at once.
            awaited: false,
            gather: if src.instance.syncs.is_empty() {
                GATHER
            } else {
                std::time::Duration::ZERO
            },
        });
    }
    Ok(out)
}

struct Worker {
    repo: WorkerCatalog,
    name: String,
    /// DataUUID of the source level.
    source: String,
}

impl Subscriber for Worker {
    fn apply(&self, events: &[SyncEvent]) -> Result<()> {
        let mut by_version: BTreeMap<VersionId, BTreeSet<(i32, i32, i32)>> = BTreeMap::new();
        for e in events {
            if let Delta::Image(blocks) = &e.delta {
                let parents = by_version.entry(e.version).or_default();
                parents.extend(blocks.iter().map(|c| zyx(&c.map(|v| v >> 1))));
            }
        }
        for (version, parents) in by_version {
            let src = Image::new(&self.repo.ctx_at(version, &self.source)?)?;
            let ctx = self.repo.ctx_at(version, &self.name)?;
            let parents: Vec<BlockCoord> = parents.into_iter().map(|(z, y, x)| [x, y, z]).collect();
            if let Err(e) = rebuild(&src, &ctx, &parents) {
                if matches!(e, Error::BadRequest(_)) {
                    // A level that can't be built from its source (a mismatched block size)
                    // won't become buildable by retrying: say so and drop the events.
                    tracing::error!(instance = %self.name, "downres: {e}");
                    continue;
                }
                return Err(e);
            }
        }
        Ok(())
    }
}

/// Recomputes the blocks `parents` of the instance of `ctx` from their eight children in
/// `src`, unwritten children reading as zeros.
fn rebuild(src: &Image, ctx: &DataCtx, parents: &[BlockCoord]) -> Result<()> {
    let dst = Image::new(ctx)?;
    if src.cfg.kind != Kind::Uint8 || dst.cfg.kind != Kind::Uint8 {
        return Err(Error::bad("lower resolutions are built for uint8blk only"));
    }
    if src.cfg.block_size != dst.cfg.block_size {
        return Err(Error::bad(format!(
            "{:?} has blocks of {:?} but its source's are {:?}: levels need the same block size",
            ctx.instance.name, dst.cfg.block_size, src.cfg.block_size
        )));
    }
    let block = dst.blocks.shape;
    let n = src.cfg.block_bytes();
    let started = std::time::Instant::now();
    let mut voxels = Vec::new();
    let (mut read, mut decode, mut mean, mut write) = (0.0, 0.0, 0.0, 0.0);
    // One commit (so one event for the next level) per PARENTS_PER_COMMIT blocks.
    let mut w = Write::new(&dst, ctx.write());
    let mut pending = 0;
    for batch in parents.chunks(PARENTS_PER_BATCH) {
        let t = std::time::Instant::now();
        let children: Vec<BlockCoord> = batch
            .iter()
            .flat_map(|p| {
                (0..8).map(move |o| {
                    [
                        2 * p[0] + (o & 1),
                        2 * p[1] + ((o >> 1) & 1),
                        2 * p[2] + (o >> 2),
                    ]
                })
            })
            .collect();
        let stored = src.blocks.get_many(0, &children)?;
        read += t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        voxels.resize(children.len() * n, 0);
        {
            use rayon::prelude::*;
            voxels
                .par_chunks_mut(n)
                .zip(&stored)
                .try_for_each(|(out, s)| match s {
                    Some(s) => src.decode_into(s, out),
                    None => {
                        out.fill(0);
                        Ok(())
                    }
                })?;
        }
        decode += t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        let mut level = Level::<u8>::new(block);
        level.add_children(
            dst.compute.as_ref(),
            &children,
            &voxels[..children.len() * n],
        )?;
        // Every parent has all eight octants, so nothing stored is read back.
        let (coords, halves) = level.finish(&dst.blocks, dst.compute.as_ref(), 0)?;
        mean += t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        w.add(&coords, &halves)?;
        pending += coords.len();
        if pending >= PARENTS_PER_COMMIT {
            std::mem::replace(&mut w, Write::new(&dst, ctx.write())).commit()?;
            pending = 0;
        }
        write += t.elapsed().as_secs_f64();
    }
    w.commit()?;
    tracing::debug!(
        instance = %ctx.instance.name,
        blocks = parents.len(),
        seconds = started.elapsed().as_secs_f64(),
        read,
        decode,
        mean,
        write,
        "level rebuilt"
    );
    Ok(())
}

/// `POST resync`: rebuilds this level from all of its source's blocks at this version.
pub fn resync(ctx: &DataCtx, _req: &DataRequest) -> Result<DataResponse> {
    let [source] = ctx.instance.syncs.as_slice() else {
        return Err(Error::bad(format!(
            "resync rebuilds {:?} from the one instance it syncs to; it syncs to {}",
            ctx.instance.name,
            ctx.instance.syncs.len()
        )));
    };
    let src = Image::new(&ctx.catalog.ctx_at(
        &ctx.uuid,
        source,
        Some(ctx.view.version),
        &Caller::admin(),
    )?)?;
    let mut parents = BTreeSet::new();
    let lo = block_key(0, [i32::MIN, i32::MIN, i32::MIN]);
    let hi = block_key(0, [i32::MAX, i32::MAX, i32::MAX]);
    scan_visible(
        &src.blocks.store,
        &src.blocks.view,
        &lo,
        &hi,
        &mut |k, _| {
            let c = block_key_coord(k)?;
            parents.insert(zyx(&c.map(|v| v >> 1)));
            Ok(true)
        },
    )?;
    let parents: Vec<BlockCoord> = parents.into_iter().map(|(z, y, x)| [x, y, z]).collect();
    rebuild(&src, ctx, &parents)?;
    Ok(DataResponse::json(
        &serde_json::json!({ "blocks": parents.len() }),
    ))
}

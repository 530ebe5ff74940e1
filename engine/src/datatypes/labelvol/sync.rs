//! How a labelvol follows its labelblk: a durable subscription to the labelblk's
//! `BLOCK_INGEST`/`BLOCK_MUTATE` events, and [`reindex`], which recounts changed blocks from
//! the labelblk's voxels into the label index (labelmap's `IndexUpdate` and
//! `put_index_update`).
//!
//! Recounting reads each block as it is at the event's version, and rewrites the index entry
//! of that block for every label the event names (before and after) and every label the block
//! holds now, so applying an event twice — after a crash, or after a labelvol merge indexed
//! its own rewrite already — changes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tessera_storage::VersionId;

use super::labels_over;
use crate::block::geom::{BlockCoord, pack_block, zyx};
use crate::compute::BlockCounts;
use crate::datatype::{Caller, DataCtx, Handle, Mutation, WorkerCatalog};
use crate::datatypes::labelblk::Labelblk;
use crate::datatypes::labelmap::index::IndexUpdate;
use crate::datatypes::labelmap::ingest::{put_index_update, raise_max_label};
use crate::datatypes::labelmap::state::state;
use crate::datatypes::labelmap::store::Labels;
use crate::mutation::{Subscriber, Subscription};
use crate::sync::{BLOCK_INGEST, BLOCK_MUTATE, BlockChange, Delta, SyncEvent};
use crate::{Error, Result};

/// One subscription per synced labelblk.
pub fn subscriptions(ctx: &DataCtx) -> Result<Vec<Subscription>> {
    let admin = Caller::admin();
    let mut out = Vec::new();
    for source in &ctx.instance.syncs {
        let src = ctx.catalog.ctx_at(&ctx.uuid, source, None, &admin)?;
        if src.instance.type_name != Labelblk::TYPE_NAME {
            continue;
        }
        out.push(Subscription {
            id: format!(
                "{}/labelvol/{}",
                ctx.instance.data_uuid, src.instance.data_uuid
            ),
            publisher: src.instance.data_uuid.clone(),
            events: vec![BLOCK_INGEST, BLOCK_MUTATE],
            kv: src.store.kv().clone(),
            handler: Arc::new(Worker {
                repo: WorkerCatalog::new(ctx),
                name: ctx.instance.name.clone(),
                source: src.instance.data_uuid.clone(),
            }),
            awaited: false,
            gather: std::time::Duration::ZERO,
        });
    }
    Ok(out)
}

struct Worker {
    repo: WorkerCatalog,
    name: String,
    /// DataUUID of the labelblk.
    source: String,
}

impl Subscriber for Worker {
    fn apply(&self, events: &[SyncEvent]) -> Result<()> {
        let mut by_version: BTreeMap<VersionId, Vec<BlockChange>> = BTreeMap::new();
        for e in events {
            if let Delta::Blocks(blocks) = &e.delta {
                by_version
                    .entry(e.version)
                    .or_default()
                    .extend(blocks.iter().cloned());
            }
        }
        for (version, changes) in by_version {
            let ctx = self.repo.ctx_at(version, &self.name)?;
            let blk = Labelblk::open(self.repo.ctx_at(version, &self.source)?)?;
            let labels = match labels_over(&ctx, &blk) {
                Ok(l) => l,
                Err(e @ Error::BadRequest(_)) => {
                    // Mismatched block sizes won't be fixed by retrying.
                    tracing::error!(instance = %self.name, "labelvol sync: {e}");
                    continue;
                }
                Err(e) => return Err(e),
            };
            let st = state(&ctx);
            let _writes = st.writes.write();
            let mut m = ctx.write();
            let max = reindex(&labels, &mut m, &changes)?;
            commit(&labels, m, max)?;
        }
        Ok(())
    }
}

/// Blocks recounted per batch.
const BATCH: usize = 64;

/// Adds to `m` the index entries of the changed blocks, recounted from the voxels as they are
/// at the labels' version; returns the largest label found.
pub fn reindex(labels: &Labels, m: &mut Mutation<'_>, changes: &[BlockChange]) -> Result<u64> {
    // Per block, every label an entry may have to change for.
    let mut named: BTreeMap<(i32, i32, i32), BTreeSet<u64>> = BTreeMap::new();
    for ch in changes {
        let set = named.entry(zyx(&ch.coord)).or_default();
        set.extend(ch.prev.iter().flatten().copied());
        set.extend(ch.labels.iter().copied());
    }
    let coords: Vec<BlockCoord> = named.keys().map(|&(z, y, x)| [x, y, z]).collect();
    let bv = labels.cfg.block_voxels();
    let shape = labels.block_shape();
    let mut update = IndexUpdate::default();
    let mut max = 0u64;
    let mut buf = Vec::new();
    for batch in coords.chunks(BATCH) {
        let stored = labels.voxel_blocks().get_many(0, batch)?;
        let present: Vec<Vec<u8>> = stored.iter().flatten().cloned().collect();
        buf.resize(present.len() * bv, 0);
        labels.decode_stored(&present, &mut buf)?;
        let mut counts = if present.is_empty() {
            Vec::new().into_iter()
        } else {
            labels.compute.label_counts(&buf, shape)?.into_iter()
        };
        for (c, s) in batch.iter().zip(&stored) {
            let new = match s {
                Some(_) => counts.next().unwrap_or_default(),
                None => BlockCounts::default(),
            };
            let old: Vec<u64> = named[&zyx(c)].iter().copied().collect();
            update.add_block(pack_block(*c), &old, &new, |l| l, |l| l);
            if let Some(&top) = new.labels.last() {
                max = max.max(top);
            }
        }
    }
    put_index_update(labels, m, update.bodies)?;
    Ok(max)
}

/// Commits `m`, raising the max label to `max` with it (under the allocation lock, as
/// labelmap's writes do).
pub fn commit(labels: &Labels, mut m: Mutation<'_>, max: u64) -> Result<()> {
    let st = state(m.ctx());
    let _alloc = st.alloc.lock();
    if max > 0 {
        raise_max_label(&mut m.batch, labels, max)?;
    }
    m.commit()
}

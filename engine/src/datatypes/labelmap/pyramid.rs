//! Scales 1..MaxDownresLevel as a view of scale 0 ("pyramids ← level 0") for the edits that
//! rewrite blocks (split, split-supervoxel): the edit answers once its scale-0 blocks, label
//! indices and mapping commit, with a `DOWNRES` event naming the rewritten blocks in the same
//! atomic batch — in this instance's own durable outbox. This subscription rebuilds their
//! parents at every scale from the blocks stored at the event's version.
//!
//! Nobody reads a stale coarse scale: reads of scale ≥ 1, writes that rebuild a pyramid
//! themselves and locking a node first wait until every event of an edit answered before them
//! is applied (`settle`). A crash between the answer and the rebuild leaves the event in the
//! outbox, applied at the next start. DVID, too, answers a split before its lower resolutions
//! are rebuilt (docs/compatibility.md).
//!
//! Rebuilding reads all the children it needs and only the octants of the parents it was told
//! of change, so applying an event twice, or after a later edit of the same blocks, gives the
//! same blocks.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera_storage::VersionId;

use super::rewrite::block_lock_key;
use super::state::state;
use super::store::Labels;
use crate::Result;
use crate::block::Writer;
use crate::block::geom::{BlockCoord, zyx};
use crate::block::stored::deserialize;
use crate::compute::{BatchInput, BatchSteps};
use crate::datatype::{DataCtx, WorkerCatalog};
use crate::mutation::{Subscriber, Subscription};
use crate::sync::{DOWNRES, Delta, SyncEvent};

/// How long a read waits for the rebuild before it answers with what is stored.
const SETTLE: Duration = Duration::from_secs(60);

/// The subscription's id ends with this.
const SUFFIX: &str = "/pyramid";

fn id(data_uuid: &str) -> String {
    format!("{data_uuid}{SUFFIX}")
}

/// Whether subscription `id` rebuilds some labelmap's pyramid (locking a node waits for these).
pub fn is_pyramid(id: &str) -> bool {
    id.ends_with(SUFFIX)
}

/// The instance's subscription to its own `DOWNRES` events.
pub fn subscription(ctx: &DataCtx) -> Subscription {
    Subscription {
        id: id(&ctx.instance.data_uuid),
        publisher: ctx.instance.data_uuid.clone(),
        events: vec![DOWNRES],
        kv: ctx.store.kv().clone(),
        handler: Arc::new(Worker {
            repo: WorkerCatalog::new(ctx),
            name: ctx.instance.name.clone(),
        }),
        // Kept meshes at a coarse scale wait for it from their worker.
        awaited: true,
        gather: Duration::ZERO,
    }
}

/// Waits until the rebuilds of edits answered before this call are stored.
pub fn settle(ctx: &DataCtx) -> Result<()> {
    let own = id(&ctx.instance.data_uuid);
    if !ctx.services.mutations.settle_where(|s| s == own, SETTLE)? {
        tracing::warn!(
            instance = %ctx.instance.name,
            "lower resolutions still being rebuilt after {SETTLE:?}; answering with what is stored"
        );
    }
    Ok(())
}

struct Worker {
    repo: WorkerCatalog,
    name: String,
}

impl Subscriber for Worker {
    fn apply(&self, events: &[SyncEvent]) -> Result<()> {
        let mut by_version: BTreeMap<VersionId, BTreeSet<(i32, i32, i32)>> = BTreeMap::new();
        for e in events {
            if let Delta::Image(blocks) = &e.delta {
                by_version
                    .entry(e.version)
                    .or_default()
                    .extend(blocks.iter().map(zyx));
            }
        }
        for (version, blocks) in by_version {
            let ctx = self.repo.ctx_at(version, &self.name)?;
            let blocks: Vec<BlockCoord> = blocks.into_iter().map(|(z, y, x)| [x, y, z]).collect();
            rebuild(&ctx, &blocks)?;
        }
        Ok(())
    }
}

/// Rebuilds scales 1..MaxDownresLevel above the scale-0 blocks `coords` (sorted in (z, y, x)
/// order) from what is stored at the version of `ctx`; a block no longer stored counts as
/// zeros.
pub fn rebuild(ctx: &DataCtx, coords: &[BlockCoord]) -> Result<()> {
    let started = Instant::now();
    let labels = Labels::new(ctx)?;
    let top = labels.cfg.max_downres_level;
    let st = state(ctx);
    // Shared like an edit's: writes that rebuild a pyramid themselves are exclusive. The
    // parents at every scale are this rebuild's alone while it reads and writes them.
    let _writes = st.writes.read();
    let keys: BTreeSet<u64> = coords
        .iter()
        .flat_map(|c| (1..=top).map(move |s| block_lock_key(s, c.map(|v| v >> s))))
        .collect();
    let _parents = st.blocks.lock(keys);
    let locked = started.elapsed();
    let mut writer = Writer::<u64>::new(labels.blocks.clone(), labels.compute.clone(), 0, top);
    let steps = BatchSteps {
        levels: 1,
        ..BatchSteps::default()
    };
    let half_block = labels.block_shape().half().voxels();
    for batch in coords.chunks(labels.blocks_per_batch()) {
        let (mut at, mut payloads, mut gone) = (Vec::new(), Vec::new(), Vec::new());
        for (c, s) in batch.iter().zip(labels.blocks.get_many(0, batch)?) {
            match s {
                Some(s) => {
                    at.push(*c);
                    payloads.push(deserialize(&s)?);
                }
                None => gone.push(*c),
            }
        }
        if !at.is_empty() {
            let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
            let input = BatchInput::Encoded(&refs);
            let out = labels
                .compute
                .run_batch(input, labels.block_shape(), &steps)?;
            writer.add_half(&at, &out.levels[0]);
        }
        if !gone.is_empty() {
            writer.add_half(&gone, &vec![0; gone.len() * half_block]);
        }
    }
    let children = started.elapsed();
    let mut m = ctx.write();
    m.batch = writer.finish()?;
    let levels = started.elapsed();
    // Synced although it could be rebuilt after a crash: left unsynced, its megabytes would
    // be written out by the next edit's synced commit, in that edit's answer time.
    m.commit()?;
    let ms = |d: Duration| d.as_millis() as u64;
    tracing::info!(
        instance = %ctx.instance.name,
        blocks = coords.len(),
        locked_ms = ms(locked),
        children_ms = ms(children - locked),
        levels_ms = ms(levels - children),
        commit_ms = ms(started.elapsed() - levels),
        ms = ms(started.elapsed()),
        "labelmap downres"
    );
    Ok(())
}

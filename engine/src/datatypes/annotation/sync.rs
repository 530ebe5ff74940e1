//! How an annotation instance follows the labelmap it syncs to: a durable subscription to its
//! block writes, merges, splits and cleaves (renumbers arrive as merges).
//!
//! Every event is applied by setting points' labels to what the labelmap says *now* at the
//! event's version, so re-applying an event after a crash changes nothing:
//! * block writes and splits: every point in the blocks named is looked up in the voxels;
//! * cleaves: every point of the cleaved body is looked up (its supervoxels decide);
//! * merges: the points of the merged bodies move to the target without reading voxels (all of
//!   a merged body's supervoxels now map to the target) — what keeps a merge of large bodies
//!   cheap. Events are applied in commit order, so a later edit of those points is applied
//!   after the move.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::handle::{Annotation, writes};
use super::store::{BlockCoord, Editor};
use super::write::publish;
use crate::Result;
use crate::datatype::{Caller, DataCtx, Handle, WorkerCatalog};
use crate::datatypes::labelmap::Labelmap;
use crate::mutation::{Subscriber, Subscription};
use crate::sync::{
    BLOCK_INGEST, BLOCK_MUTATE, CLEAVE_LABEL, Delta, MERGE_BLOCK, SPLIT_LABEL, SyncEvent,
};

/// One subscription, to the synced labelmap (if any).
pub fn subscriptions(ctx: &DataCtx) -> Result<Vec<Subscription>> {
    let admin = Caller::admin();
    let mut out = Vec::new();
    for source in &ctx.instance.syncs {
        let src = ctx.catalog.ctx_at(&ctx.uuid, source, None, &admin)?;
        if src.instance.type_name != Labelmap::TYPE_NAME {
            continue;
        }
        out.push(Subscription {
            id: format!(
                "{}/annotation/{}",
                ctx.instance.data_uuid, src.instance.data_uuid
            ),
            publisher: src.instance.data_uuid.clone(),
            events: vec![
                BLOCK_INGEST,
                BLOCK_MUTATE,
                MERGE_BLOCK,
                SPLIT_LABEL,
                CLEAVE_LABEL,
            ],
            kv: src.store.kv().clone(),
            handler: Arc::new(Worker {
                repo: WorkerCatalog::new(ctx),
                name: ctx.instance.name.clone(),
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
}

impl Subscriber for Worker {
    fn apply(&self, events: &[SyncEvent]) -> Result<()> {
        for e in events {
            let ann = Annotation::open(self.repo.ctx_at(e.version, &self.name)?)?;
            let Some(lm) = ann.labelmap()? else {
                return Ok(());
            };
            let ctx = ann.ctx();
            let writes = writes(ctx);
            let _w = writes.lock();
            let mut ed = ann.editor();
            match &e.delta {
                Delta::Blocks(changes) => {
                    let label_bs = lm.block_size();
                    let blocks = changes
                        .iter()
                        .flat_map(|c| covering(&ann, c.coord, label_bs))
                        .collect();
                    relabel_blocks(&mut ed, &lm, blocks)?;
                }
                Delta::Split { blocks, .. } => {
                    let label_bs = lm.block_size();
                    let blocks = blocks
                        .iter()
                        .flat_map(|c| covering(&ann, *c, label_bs))
                        .collect();
                    relabel_blocks(&mut ed, &lm, blocks)?;
                }
                Delta::Cleave { target, .. } => {
                    let blocks = ann.label_shards(*target)?.into_iter().map(|(b, _)| b);
                    relabel_blocks(&mut ed, &lm, blocks.collect())?;
                }
                Delta::Merge { target, merged, .. } => {
                    for m in merged {
                        let shards = ann.label_shards(*m)?;
                        ed.load(shards.iter().map(|(b, _)| *b))?;
                        for (b, points) in shards {
                            let moved: BTreeSet<[i32; 3]> = points.iter().map(|p| p.pos).collect();
                            for entry in ed.block_mut(b).iter_mut() {
                                if moved.contains(&entry.point.pos) {
                                    entry.label = *target;
                                }
                            }
                        }
                    }
                }
                Delta::Image(_) | Delta::Labels(_) | Delta::Logged(_) => continue,
            }
            let mut m = ctx.write();
            let labels = ed.finish(&mut m.batch)?;
            publish(&mut m, &labels);
            m.commit()?;
        }
        Ok(())
    }
}

/// The annotation blocks a labelmap block of size `label_bs` at `c` overlaps.
fn covering(ann: &Annotation, c: [i32; 3], label_bs: [usize; 3]) -> Vec<BlockCoord> {
    let ab = ann.block_size;
    let lo: [i64; 3] = std::array::from_fn(|a| i64::from(c[a]) * label_bs[a] as i64);
    let first: [i32; 3] = std::array::from_fn(|a| lo[a].div_euclid(ab[a].into()) as i32);
    let last: [i32; 3] =
        std::array::from_fn(|a| (lo[a] + label_bs[a] as i64 - 1).div_euclid(ab[a].into()) as i32);
    let mut out = Vec::new();
    for z in first[2]..=last[2] {
        for y in first[1]..=last[1] {
            for x in first[0]..=last[0] {
                out.push([x, y, z]);
            }
        }
    }
    out
}

/// Sets the label of every point of `blocks` to its body in the labelmap now.
fn relabel_blocks(ed: &mut Editor<'_>, lm: &Labelmap, blocks: Vec<BlockCoord>) -> Result<()> {
    let blocks: Vec<BlockCoord> = blocks
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    ed.load(blocks.iter().copied())?;
    let positions: Vec<[i32; 3]> = blocks
        .iter()
        .flat_map(|b| ed.block(*b).iter().map(|e| e.point.pos))
        .collect();
    if positions.is_empty() {
        return Ok(());
    }
    let mut bodies: BTreeMap<[i32; 3], u64> = BTreeMap::new();
    for (p, l) in positions.iter().zip(lm.bodies_at(&positions)?) {
        bodies.insert(*p, l);
    }
    for b in blocks {
        if ed.block(b).iter().any(|e| bodies[&e.point.pos] != e.label) {
            for e in ed.block_mut(b).iter_mut() {
                e.label = bodies[&e.point.pos];
            }
        }
    }
    Ok(())
}

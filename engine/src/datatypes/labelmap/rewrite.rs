//! Rewriting stored label blocks for a mutation (split, split-supervoxel, and labelarray's
//! merge and split): each batch of blocks is read in one storage call; blocks a split only
//! relabels get their label table renamed, the rest go to the compute backend once (decode →
//! split → relabel → counts → encode), and everything commits through `ingest::Write`.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::index::LabelIndex;
use super::ingest::{Computed, Mode, Renamed, Write};
use super::runs::{UnderRuns, runs_in_block};
use super::state::state;
use super::store::Labels;
use crate::block::Blocks;
use crate::block::geom::{BlockCoord, pack_block};
use crate::compute::{BatchInput, BlockCounts, LabelTable, Run, codec};
use crate::datatype::Mutation;
use crate::sync::{DOWNRES, Delta};
use crate::{Error, Result};

/// A rewrite of some blocks: in each, the voxels under `runs` go through `split`, then every
/// voxel through `relabel`. `after` and `only` are `Write::relabel`'s: the mapping changes the
/// rewrite commits and the bodies whose indices it updates.
pub(super) struct Rewrite<'r> {
    /// The blocks, in (z, y, x) order; each must be stored.
    pub coords: Vec<BlockCoord>,
    pub runs: &'r [Run],
    pub split: Option<LabelTable>,
    pub relabel: Option<LabelTable>,
    pub after: HashMap<u64, u64>,
    pub only: HashSet<u64>,
    /// Rebuild the pyramid above the rewritten blocks.
    pub downres: bool,
    /// Blocks (packed) that `Whole` describes; the rest go through the kernel batch.
    pub whole: HashMap<u64, Whole>,
}

/// A block a split only relabels: each renamed supervoxel in it goes wholly to its split id
/// or wholly to its remain id (the runs cover all of it there, or none). Its label table is
/// renamed in place (`codec::rename_labels`) and its counts are its body's index entry renamed,
/// so no voxel is decoded or encoded; a proofreading cut leaves to the kernel batch only the
/// blocks it passes through.
pub(super) struct Whole {
    table: LabelTable,
    counts: BlockCounts,
}

/// The blocks of `coords` a split of `index`'s body only relabels (`Whole`), from the voxels
/// its runs cover (`under`). The index must list every supervoxel of the bodies the rewrite
/// updates: the split ids and remain ids are new labels.
pub(super) fn whole_blocks(
    index: &LabelIndex,
    renamed: &BTreeMap<u64, (u64, u64)>,
    under: &UnderRuns,
    coords: &[BlockCoord],
) -> Result<HashMap<u64, Whole>> {
    let mut out = HashMap::new();
    'blocks: for c in coords {
        let block = pack_block(*c);
        let Some(held) = index.blocks.get(&block) else {
            continue;
        };
        let (mut table, mut counts) = (Vec::new(), Vec::with_capacity(held.counts.len()));
        for (&sv, &n) in &held.counts {
            let to = match renamed.get(&sv) {
                None => sv,
                Some(&(split, remain)) => match under.in_block(block, sv) {
                    0 => remain,
                    u if u == n as u64 => split,
                    _ => continue 'blocks,
                },
            };
            if to != sv {
                table.push((sv, to));
            }
            counts.push((to, n));
        }
        counts.sort_unstable();
        let (labels, counts) = counts.into_iter().unzip();
        let whole = Whole {
            table: LabelTable::new(table)?,
            counts: BlockCounts { labels, counts },
        };
        out.insert(block, whole);
    }
    Ok(out)
}

/// Rewrites the blocks of `rw` and commits `m` through `Write` (indices of `rw.only`, pyramid
/// when `rw.downres`), after `finish` added the mutation's own records, events and keys.
///
/// Each batch of blocks is read in one storage call, once. Blocks of `rw.whole` get their label
/// tables renamed, unless the pyramid is built here (it needs every block's half-size voxels);
/// the others go to the compute backend once: decode → split → relabel → counts → first
/// pyramid level → encode.
pub(super) fn rewrite(
    labels: &Labels,
    m: Mutation<'_>,
    rw: Rewrite<'_>,
    finish: impl FnOnce(&mut Mutation<'_>),
) -> Result<()> {
    let ctx = m.ctx();
    let st = state(ctx);
    let coords = &rw.coords;
    let downres = rw.downres && labels.cfg.max_downres_level > 0;
    // The lower resolutions are rebuilt after the answer when the instance's pyramid
    // subscription runs (`pyramid`), else here, before the commit.
    let deferred = downres && m.wants(DOWNRES);
    // The blocks and, when the pyramid is rebuilt here, their parents at every scale: two
    // mutations rewriting different children of one parent must not both rebuild it from a
    // stale copy.
    let levels = if downres && !deferred {
        labels.cfg.max_downres_level
    } else {
        0
    };
    let keys = coords
        .iter()
        .flat_map(|c| (0..=levels).map(move |s| block_lock_key(s, c.map(|v| v >> s))));
    let _blocks = st.blocks.lock(keys);
    let mode = Mode {
        scale: 0,
        index: true,
        track: false,
        downres: downres && !deferred,
    };
    let mut write = Write::new(labels.clone(), mode, m, labels.mapping.clone());
    write.relabel(rw.after, rw.only);
    let bs = labels.cfg.block_size;
    let shape = labels.block_shape();
    let mut steps = write.steps();
    // A pyramid built here needs every block's half-size voxels, which only the batch gives.
    let mut whole = if mode.downres {
        HashMap::new()
    } else {
        rw.whole
    };
    for batch in coords.chunks(labels.blocks_per_batch()) {
        let stored = write
            .timed_read(|| labels.blocks.get_many(0, batch))?
            .into_iter()
            .zip(batch)
            .map(|(s, c)| {
                s.ok_or_else(|| {
                    Error::Internal(format!(
                        "the label index lists block {c:?}, which is not stored"
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let payloads = write.timed_read(|| Blocks::payloads(&stored))?;
        let mut renamed = Renamed::default();
        let mut cut: (Vec<BlockCoord>, Vec<Vec<u8>>) = Default::default();
        for (c, payload) in batch.iter().zip(payloads) {
            if let Some(w) = whole.remove(&pack_block(*c)) {
                // None: the new table would list a label twice (a given id already there).
                if let Some(new) =
                    write.timed_compute(|| codec::rename_labels(&payload, &w.table))?
                {
                    renamed.coords.push(*c);
                    renamed.prev.push(Some(payload));
                    renamed.blocks.push(new);
                    renamed.counts.push(w.counts);
                    continue;
                }
            }
            cut.0.push(*c);
            cut.1.push(payload);
        }
        if !renamed.coords.is_empty() {
            write.add_renamed(renamed)?;
        }
        let (cut, payloads) = cut;
        if cut.is_empty() {
            continue;
        }
        steps.split = match &rw.split {
            None => None,
            Some(table) => {
                let mut stacked = Vec::new();
                for (i, c) in cut.iter().enumerate() {
                    runs_in_block(rw.runs, *c, bs, (i * bs[2]) as i32, &mut stacked);
                }
                Some((stacked, table.clone()))
            }
        };
        steps.relabel = rw.relabel.clone();
        let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        let out = write.timed_compute(|| {
            labels
                .compute
                .run_batch(BatchInput::Encoded(&refs), shape, &steps)
        })?;
        let computed = Computed {
            blocks: out.blocks,
            counts: out.counts,
            half: out.levels.into_iter().next().unwrap_or_default(),
        };
        let prev = payloads.into_iter().map(Some).collect();
        write.add_computed(&cut, computed, vec![None; cut.len()], prev)?;
    }
    finish(write.change());
    if deferred {
        write.change().event(DOWNRES, Delta::Image(coords.clone()));
    }
    write.commit()
}

/// The lock key of block `c` at `scale`. Distinct blocks may share a key; that only makes
/// them wait for each other.
pub(super) fn block_lock_key(scale: u8, c: BlockCoord) -> u64 {
    pack_block(c).rotate_left(5 * scale as u32) ^ scale as u64
}

//! The write path shared by `POST raw`, `POST blocks`, `POST ingest-supervoxels` and the
//! block-rewriting mutations: new blocks in; label indices, max label, extents and sync events
//! around the block layer's writer (blocks and pyramid), all committed through the mutation
//! service in one storage batch before the request returns (spec §4.4; DVID updates the index
//! asynchronously, Tessera before replying — see docs/compatibility.md).
//!
//! The voxels of a batch of blocks go to the compute backend once (`Compute::run_batch`):
//! counts, the first pyramid level and the encoded blocks come back together.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rayon::prelude::*;
use tessera_storage::versioned::{delete_into, put_into};

use super::index::IndexUpdate;
use super::mapping::Mapping;
use super::store::{self, CLASS_MAX_LABEL, Labels, encode_index, index_key};
use crate::block::geom::{BlockCoord, pack_block};
use crate::block::stored::{Stored, deserialize, wrap_gzip};
use crate::block::{Writer, extents};
use crate::compute::{BatchInput, BatchOutput, BatchSteps};
use crate::datatype::Mutation;
use crate::sync::{BLOCK_INGEST, BLOCK_MUTATE, BlockChange, Delta};
use crate::{Error, Result};

/// What a write updates besides the blocks themselves.
#[derive(Debug, Clone, Copy)]
pub struct Mode {
    pub scale: u8,
    /// Label indices (and the max label that goes with them).
    pub index: bool,
    /// Extents and sync events: scale-0 writes other than `ingest-supervoxels`.
    pub track: bool,
    /// Recompute scales 1..MaxDownresLevel.
    pub downres: bool,
}

/// Where the time of a write went, logged once per write.
#[derive(Default, Debug)]
struct Timings {
    compute: Duration,
    index: Duration,
    pyramid: Duration,
    storage: Duration,
}

fn timed<T>(acc: &mut Duration, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let out = f();
    *acc += t.elapsed();
    out
}

/// A block a client sent as a labels.Block (already checked by decoding it): its bytes, and
/// the gzip stream they came in, which is stored as sent when blocks are stored gzipped.
pub struct Given {
    pub raw: Vec<u8>,
    pub gzipped: Option<Vec<u8>>,
}

/// New blocks as the compute backend handed them back: labels.Block bytes, counts (when the
/// index is kept) and the half-size first pyramid level (when it is rebuilt).
pub struct Computed {
    pub blocks: Vec<Vec<u8>>,
    pub counts: Vec<crate::compute::BlockCounts>,
    pub half: Vec<u64>,
}

/// Blocks whose label tables were renamed in place (`codec::rename_labels`): no voxels went
/// through the backend, so there is no half-size block for a pyramid built in the write.
#[derive(Default)]
pub struct Renamed {
    pub coords: Vec<BlockCoord>,
    pub blocks: Vec<Vec<u8>>,
    pub counts: Vec<crate::compute::BlockCounts>,
    /// The labels.Block bytes stored before.
    pub prev: Vec<Option<Vec<u8>>>,
}

pub struct Write<'a> {
    labels: Labels,
    mode: Mode,
    change: Mutation<'a>,
    writer: Writer<u64>,
    index: IndexUpdate,
    extents: Option<extents::Bounds>,
    max_label: u64,
    events: Option<Vec<BlockChange>>,
    /// The mapping before the write, and what the write changes in it (splits give
    /// supervoxels new ids); supervoxels of the old blocks are counted under their old bodies.
    before: Arc<Mapping>,
    after: HashMap<u64, u64>,
    /// The bodies whose indices this write may change (all when `None`): a split rewrites
    /// blocks other bodies share, whose counts don't change and whose locks it doesn't hold.
    only: Option<HashSet<u64>>,
    blocks: usize,
    /// Of `blocks`, those renamed in place.
    renamed: usize,
    timings: Timings,
    started: Instant,
}

impl<'a> Write<'a> {
    /// A write committed as `change` (a numbered mutation).
    pub fn new(
        labels: Labels,
        mode: Mode,
        change: Mutation<'a>,
        mapping: Arc<Mapping>,
    ) -> Write<'a> {
        let subscribed = change.wants(BLOCK_INGEST) || change.wants(BLOCK_MUTATE);
        let top = if mode.downres {
            labels.cfg.max_downres_level
        } else {
            0
        };
        let writer = Writer::new(
            labels.blocks.clone(),
            labels.compute.clone(),
            mode.scale,
            top,
        );
        Write {
            labels,
            mode,
            change,
            writer,
            index: IndexUpdate::default(),
            extents: None,
            max_label: 0,
            events: (mode.track && subscribed).then(Vec::new),
            before: mapping,
            after: HashMap::new(),
            only: None,
            blocks: 0,
            renamed: 0,
            timings: Timings::default(),
            started: Instant::now(),
        }
    }

    /// Makes this write a relabelling: `after` holds the mapping changes it commits, and only
    /// the indices of `only` are updated.
    pub fn relabel(&mut self, after: HashMap<u64, u64>, only: HashSet<u64>) {
        self.after = after;
        self.only = Some(only);
    }

    /// The mutation the write commits as, for its other records.
    pub fn change(&mut self) -> &mut Mutation<'a> {
        &mut self.change
    }

    /// Runs `f`, a read of stored blocks done outside this write, counted in its storage time.
    pub fn timed_read<T>(&mut self, f: impl FnOnce() -> T) -> T {
        timed(&mut self.timings.storage, f)
    }

    /// Runs `f`, a kernel batch run outside this write, counted in its compute time.
    pub fn timed_compute<T>(&mut self, f: impl FnOnce() -> T) -> T {
        timed(&mut self.timings.compute, f)
    }

    /// What the backend must compute for new blocks of this write.
    pub fn steps(&self) -> BatchSteps {
        BatchSteps {
            counts: self.mode.index,
            levels: u32::from(self.writer.downres()),
            encode: true,
            ..BatchSteps::default()
        }
    }

    /// Adds a batch of new blocks at `coords` whose voxels are `voxels`, one block after
    /// another; `given` holds the client's blocks when it sent labels.Blocks.
    pub fn add(
        &mut self,
        coords: &[BlockCoord],
        voxels: &[u64],
        given: Option<Vec<Given>>,
    ) -> Result<()> {
        let mut steps = self.steps();
        steps.encode = given.is_none();
        let shape = self.labels.block_shape();
        let compute = self.labels.compute.clone();
        let out: BatchOutput = timed(&mut self.timings.compute, || {
            compute.run_batch(BatchInput::Voxels(voxels), shape, &steps)
        })?;
        let (blocks, gzipped) = match given {
            Some(g) => g.into_iter().map(|g| (g.raw, g.gzipped)).unzip(),
            None => (out.blocks, vec![None; coords.len()]),
        };
        let prev = if self.mode.index || self.events.is_some() {
            let stored = timed(&mut self.timings.storage, || {
                self.labels.blocks.get_many(self.mode.scale, coords)
            })?;
            stored
                .par_iter()
                .map(|o| o.as_deref().map(deserialize).transpose())
                .collect::<Result<_>>()?
        } else {
            Vec::new()
        };
        let computed = Computed {
            blocks,
            counts: out.counts,
            half: out.levels.into_iter().next().unwrap_or_default(),
        };
        self.add_computed(coords, computed, gzipped, prev)
    }

    /// Adds blocks renamed in place; only for a write that builds no pyramid itself.
    pub fn add_renamed(&mut self, r: Renamed) -> Result<()> {
        if self.writer.downres() {
            return Err(Error::Internal(
                "renamed blocks have no half-size voxels for the pyramid".into(),
            ));
        }
        self.renamed += r.coords.len();
        let computed = Computed {
            blocks: r.blocks,
            counts: r.counts,
            half: Vec::new(),
        };
        let gzipped = vec![None; r.coords.len()];
        self.add_computed(&r.coords, computed, gzipped, r.prev)
    }

    /// Adds a batch of new blocks already computed. `gzipped` holds, per block, the gzip
    /// stream a client sent it in (stored as sent when blocks are stored gzipped); `prev` the
    /// labels.Block bytes of the blocks there before (needed for the index and sync events,
    /// else empty).
    pub fn add_computed(
        &mut self,
        coords: &[BlockCoord],
        computed: Computed,
        gzipped: Vec<Option<Vec<u8>>>,
        prev: Vec<Option<Vec<u8>>>,
    ) -> Result<()> {
        let stored_as = self.labels.blocks.stored;
        let Computed {
            blocks,
            counts,
            half,
        } = computed;
        let t = &mut self.timings;
        let old_raw = prev;
        if self.mode.index {
            timed(&mut t.index, || -> Result<()> {
                for ((c, old), new) in coords.iter().zip(&old_raw).zip(&counts) {
                    let old_labels = match old {
                        Some(b) => store::table_labels(b)?,
                        None => Vec::new(),
                    };
                    let (before, after) = (&self.before, &self.after);
                    self.index.add_block(
                        pack_block(*c),
                        &old_labels,
                        new,
                        |sv| before.body(sv),
                        |sv| after.get(&sv).copied().unwrap_or_else(|| before.body(sv)),
                    );
                    if let Some(&top) = new.labels.last() {
                        self.max_label = self.max_label.max(top);
                    }
                }
                Ok(())
            })?;
        }
        if let Some(events) = &mut self.events {
            for ((c, old), new) in coords.iter().zip(&old_raw).zip(&blocks) {
                events.push(BlockChange {
                    coord: *c,
                    prev: old.as_deref().map(store::table_labels).transpose()?,
                    labels: store::table_labels(new)?,
                });
            }
        }
        let values: Vec<Vec<u8>> = timed(&mut t.storage, || {
            blocks
                .into_par_iter()
                .zip(gzipped)
                .map(|(raw, gz)| match (gz, stored_as) {
                    (Some(gz), Stored::Gzip(_)) => Ok(wrap_gzip(&gz)),
                    _ => stored_as.serialize(&raw),
                })
                .collect::<Result<_>>()
        })?;
        self.writer.put_stored(coords, values);
        if self.writer.downres() {
            let writer = &mut self.writer;
            timed(&mut t.pyramid, || writer.add_half(coords, &half));
        }
        if self.mode.track {
            let b = self.labels.cfg.block_size;
            for c in coords {
                self.extents = Some(extents::union(self.extents, extents::of_block(*c, b)));
            }
        }
        self.blocks += coords.len();
        Ok(())
    }

    /// Finishes the pyramid, indices, max label and extents, and commits everything as one
    /// mutation; then the sync events go out.
    pub fn commit(mut self) -> Result<()> {
        let blocks = timed(&mut self.timings.pyramid, || self.writer.finish())?;
        self.change.batch.append(blocks);
        if self.mode.index {
            self.finish_index()?;
        }
        // Allocations read and raise the max label too; hold theirs until the batch commits.
        let st = super::state::state(self.change.ctx());
        let _alloc = st.alloc.lock();
        if self.mode.index && self.max_label > 0 {
            raise_max_label(&mut self.change.batch, &self.labels, self.max_label)?;
        }
        if let Some(b) = self.extents {
            let blocks = &self.labels.blocks;
            extents::widen(&mut self.change.batch, &blocks.store, &blocks.view, b)?;
        }
        if let Some(blocks) = self.events.take() {
            let (ingest, mutate): (Vec<BlockChange>, Vec<BlockChange>) =
                blocks.into_iter().partition(|b| b.prev.is_none());
            for (name, blocks) in [(BLOCK_INGEST, ingest), (BLOCK_MUTATE, mutate)] {
                if !blocks.is_empty() {
                    self.change.event(name, Delta::Blocks(blocks));
                }
            }
        }
        let mutation_id = self.change.mutation_id();
        let instance = self.change.ctx().instance.name.clone();
        let change = self.change;
        timed(&mut self.timings.storage, || change.commit())?;
        let t = &self.timings;
        tracing::info!(
            instance = %instance,
            blocks = self.blocks,
            renamed = self.renamed,
            scale = self.mode.scale,
            mutation_id,
            compute_ms = t.compute.as_millis() as u64,
            index_ms = t.index.as_millis() as u64,
            pyramid_ms = t.pyramid.as_millis() as u64,
            storage_ms = t.storage.as_millis() as u64,
            total_ms = self.started.elapsed().as_millis() as u64,
            "labelmap ingest"
        );
        Ok(())
    }

    fn finish_index(&mut self) -> Result<()> {
        let mut bodies = std::mem::take(&mut self.index.bodies);
        if let Some(only) = &self.only {
            bodies.retain(|b, _| only.contains(b));
        }
        let (labels, change) = (&self.labels, &mut self.change);
        timed(&mut self.timings.index, || {
            put_index_update(labels, change, bodies)
        })
    }
}

/// Applies an index update (`IndexUpdate::bodies`) to the stored indices of its bodies in
/// `change`'s batch, stamping each with the mutation; an index left without blocks is
/// deleted.
pub fn put_index_update(
    labels: &Labels,
    change: &mut Mutation<'_>,
    bodies: HashMap<u64, std::collections::BTreeMap<u64, Vec<(u64, u32)>>>,
) -> Result<()> {
    let ctx = change.ctx();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let user = ctx.user.clone().unwrap_or_default();
    let app = ctx.app.clone().unwrap_or_default();
    let mutation_id = change.mutation_id();
    let updated: Vec<(u64, Option<Vec<u8>>)> = bodies
        .into_par_iter()
        .map(|(body, blocks)| {
            let mut index = labels.index(body)?.unwrap_or_default();
            IndexUpdate::apply(&mut index, &blocks);
            if index.blocks.is_empty() {
                return Ok((body, None));
            }
            index.label = body;
            index.last_mutid = mutation_id;
            index.last_mod_time = now.clone();
            index.last_mod_user = user.clone();
            index.last_mod_app = app.clone();
            Ok((body, Some(encode_index(&index))))
        })
        .collect::<Result<_>>()?;
    let batch = &mut change.batch;
    for (body, value) in updated {
        match value {
            Some(v) => put_into(batch, &labels.blocks.view, &index_key(body), &v),
            None => delete_into(batch, &labels.blocks.view, &index_key(body)),
        }
    }
    Ok(())
}

/// This version's max label: the largest over it and its ancestors, so a child never reports
/// less than its parent and a merge reports the larger of its parents'.
pub fn max_label(labels: &Labels) -> Result<Option<u64>> {
    Ok(labels
        .ancestry_values(&[CLASS_MAX_LABEL])?
        .iter()
        .map(|(_, v)| store::u64_value(v))
        .max())
}

/// Adds to `batch` a raise of this version's max label to `label`, when that is higher (the
/// max label never falls).
pub fn raise_max_label(
    batch: &mut tessera_storage::WriteBatch,
    labels: &Labels,
    label: u64,
) -> Result<()> {
    if label > max_label(labels)?.unwrap_or(0) {
        put_into(
            batch,
            &labels.blocks.view,
            &[CLASS_MAX_LABEL],
            &label.to_le_bytes(),
        );
    }
    Ok(())
}

/// Rejects a batch listing one block twice: its index update would count the first copy.
pub fn check_unique(coords: &[BlockCoord]) -> Result<()> {
    let mut seen = HashMap::with_capacity(coords.len());
    for c in coords {
        if seen.insert(*c, ()).is_some() {
            return Err(Error::bad(format!(
                "block {c:?} appears twice in one request"
            )));
        }
    }
    Ok(())
}

//! The write path shared by `POST raw`, `POST blocks` and `POST ingest-supervoxels`: new
//! blocks in; stored blocks, label indices, max label, extents and the pyramid out, all in
//! one storage batch that commits before the request returns (spec §4.4; DVID updates the
//! index asynchronously, Tessera before replying — see docs/compatibility.md).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rayon::prelude::*;
use tessera_storage::WriteBatch;
use tessera_storage::versioned::{delete_into, put_into};

use super::geom::{BlockCoord, pack_block};
use super::index::IndexUpdate;
use super::mapping::Mapping;
use super::pyramid::Level;
use super::store::{
    self, CLASS_EXTENTS, CLASS_MAX_LABEL, Labels, Stored, block_key, deserialize, encode_index,
    index_key,
};
use crate::instance::DataCtx;
use crate::sync::{BLOCK_INGEST, BLOCK_MUTATE, BlockChange, Delta, SyncEvent};
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
    codec: Duration,
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

pub struct Write<'a> {
    ctx: &'a DataCtx,
    labels: Labels,
    mode: Mode,
    mutation_id: u64,
    batch: WriteBatch,
    index: IndexUpdate,
    pyramid: Level,
    extents: Option<([i64; 3], [i64; 3])>,
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
    timings: Timings,
    started: Instant,
}

impl<'a> Write<'a> {
    pub fn new(
        ctx: &'a DataCtx,
        labels: Labels,
        mode: Mode,
        mutation_id: u64,
        mapping: Arc<Mapping>,
    ) -> Write<'a> {
        let publisher = &ctx.instance.data_uuid;
        let bus = ctx.engine.sync_bus();
        let subscribed = bus.has_subscribers(publisher, BLOCK_INGEST)
            || bus.has_subscribers(publisher, BLOCK_MUTATE);
        let block = labels.block_shape();
        Write {
            ctx,
            labels,
            mode,
            mutation_id,
            batch: WriteBatch::new(),
            index: IndexUpdate::default(),
            pyramid: Level::new(block),
            extents: None,
            max_label: 0,
            events: (mode.track && subscribed).then(Vec::new),
            before: mapping,
            after: HashMap::new(),
            only: None,
            blocks: 0,
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

    /// The batch the write commits, for a mutation's other records.
    pub fn batch(&mut self) -> &mut WriteBatch {
        &mut self.batch
    }

    /// Adds a batch of new blocks at `coords` whose voxels are `voxels`, one block after
    /// another; `given` holds the client's blocks when it sent labels.Blocks.
    pub fn add(
        &mut self,
        coords: &[BlockCoord],
        voxels: &[u64],
        given: Option<Vec<Given>>,
    ) -> Result<()> {
        let shape = self.labels.block_shape();
        let stored_as = self.labels.stored;
        let t = &mut self.timings;
        let compute = self.labels.compute.clone();
        // The stored values, and the labels.Block bytes sync events carry.
        let keep_raw = self.events.is_some();
        let (values, raw): (Vec<Vec<u8>>, Vec<Option<Vec<u8>>>) =
            timed(&mut t.codec, || -> Result<_> {
                let given = match given {
                    Some(g) => g,
                    None => compute
                        .block_encode(voxels, shape)?
                        .into_iter()
                        .map(|raw| Given { raw, gzipped: None })
                        .collect(),
                };
                Ok(given
                    .into_par_iter()
                    .map(|g| {
                        let value = match (&g.gzipped, stored_as) {
                            (Some(gz), Stored::Gzip(_)) => store::wrap_gzip(gz),
                            _ => stored_as.serialize(&g.raw),
                        };
                        (value, keep_raw.then_some(g.raw))
                    })
                    .unzip())
            })?;
        if self.mode.index || self.events.is_some() {
            let old: Vec<Option<Vec<u8>>> = timed(&mut t.storage, || {
                coords
                    .par_iter()
                    .map(|c| self.labels.stored_block(self.mode.scale, *c))
                    .collect::<Result<_>>()
            })?;
            let old_raw: Vec<Option<Vec<u8>>> = timed(&mut t.codec, || {
                old.par_iter()
                    .map(|o| o.as_deref().map(deserialize).transpose())
                    .collect::<Result<_>>()
            })?;
            if self.mode.index {
                let counts = timed(&mut t.index, || compute.label_counts(voxels, shape))?;
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
                for ((c, old), new) in coords.iter().zip(old_raw).zip(raw) {
                    events.push(BlockChange {
                        coord: *c,
                        prev: old.map(Bytes::from),
                        block: Bytes::from(new.unwrap_or_default()),
                    });
                }
            }
        }
        if self.mode.downres {
            let labels = &self.labels;
            let pyramid = &mut self.pyramid;
            timed(&mut t.pyramid, || {
                pyramid.add_children(labels, coords, voxels)
            })?;
        }
        for (c, v) in coords.iter().zip(values) {
            put_into(
                &mut self.batch,
                &self.labels.view,
                &block_key(self.mode.scale, *c),
                &v,
            );
        }
        if self.mode.track {
            let b = self.labels.cfg.block_size;
            for c in coords {
                let lo: [i64; 3] = std::array::from_fn(|a| c[a] as i64 * b[a] as i64);
                let hi: [i64; 3] = std::array::from_fn(|a| lo[a] + b[a] as i64 - 1);
                self.extents = Some(match self.extents {
                    None => (lo, hi),
                    Some((l, h)) => (
                        std::array::from_fn(|a| l[a].min(lo[a])),
                        std::array::from_fn(|a| h[a].max(hi[a])),
                    ),
                });
            }
        }
        self.blocks += coords.len();
        Ok(())
    }

    /// Finishes the pyramid, indices, max label and extents, and commits everything in one
    /// batch; then publishes the sync events.
    pub fn commit(mut self) -> Result<()> {
        if self.mode.downres {
            self.finish_pyramid()?;
        }
        if self.mode.index {
            self.finish_index()?;
        }
        // Allocations read and raise the max label too; hold theirs until the batch commits.
        let st = super::state::state(self.ctx);
        let _alloc = st.alloc.lock();
        if self.mode.index && self.max_label > 0 {
            raise_max_label(&mut self.batch, &self.labels, self.max_label)?;
        }
        if let Some((lo, hi)) = self.extents {
            let (l0, h0) = extents(&self.labels)?.unwrap_or((lo, hi));
            let lo: [i64; 3] = std::array::from_fn(|a| lo[a].min(l0[a]));
            let hi: [i64; 3] = std::array::from_fn(|a| hi[a].max(h0[a]));
            let mut v = Vec::with_capacity(48);
            for x in lo.iter().chain(&hi) {
                v.extend_from_slice(&x.to_le_bytes());
            }
            put_into(&mut self.batch, &self.labels.view, &[CLASS_EXTENTS], &v);
        }
        let batch = std::mem::take(&mut self.batch);
        timed(&mut self.timings.storage, || self.labels.store.write(batch))?;
        let t = &self.timings;
        tracing::info!(
            instance = %self.ctx.instance.name,
            blocks = self.blocks,
            scale = self.mode.scale,
            mutation_id = self.mutation_id,
            codec_ms = t.codec.as_millis() as u64,
            index_ms = t.index.as_millis() as u64,
            pyramid_ms = t.pyramid.as_millis() as u64,
            storage_ms = t.storage.as_millis() as u64,
            total_ms = self.started.elapsed().as_millis() as u64,
            "labelmap ingest"
        );
        if let Some(blocks) = self.events.take() {
            self.publish(blocks);
        }
        Ok(())
    }

    fn publish(&self, blocks: Vec<BlockChange>) {
        let (ingest, mutate): (Vec<BlockChange>, Vec<BlockChange>) =
            blocks.into_iter().partition(|b| b.prev.is_none());
        for (name, blocks) in [(BLOCK_INGEST, ingest), (BLOCK_MUTATE, mutate)] {
            if !blocks.is_empty() {
                self.ctx.engine.sync_bus().publish(SyncEvent {
                    name,
                    publisher: self.ctx.instance.data_uuid.clone(),
                    version: self.labels.view.version,
                    mutation_id: self.mutation_id,
                    delta: Delta::Blocks(blocks),
                });
            }
        }
    }

    fn finish_pyramid(&mut self) -> Result<()> {
        let shape = self.labels.block_shape();
        let mut level = std::mem::replace(&mut self.pyramid, Level::new(shape));
        for scale in 1..=self.labels.cfg.max_downres_level {
            if level.is_empty() {
                break;
            }
            let labels = &self.labels;
            let t = &mut self.timings;
            let (coords, voxels) = timed(&mut t.pyramid, || level.finish(labels, scale))?;
            let encoded = timed(&mut t.codec, || -> Result<Vec<Vec<u8>>> {
                let blocks = labels.compute.block_encode(&voxels, shape)?;
                Ok(blocks
                    .par_iter()
                    .map(|b| labels.stored.serialize(b))
                    .collect())
            })?;
            for (c, v) in coords.iter().zip(encoded) {
                put_into(&mut self.batch, &labels.view, &block_key(scale, *c), &v);
            }
            let mut next = Level::new(shape);
            if scale < labels.cfg.max_downres_level {
                timed(&mut t.pyramid, || {
                    next.add_children(labels, &coords, &voxels)
                })?;
            }
            level = next;
        }
        Ok(())
    }

    fn finish_index(&mut self) -> Result<()> {
        let labels = &self.labels;
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let user = self.ctx.user.clone().unwrap_or_default();
        let app = self.ctx.app.clone().unwrap_or_default();
        let mutation_id = self.mutation_id;
        let mut bodies = std::mem::take(&mut self.index.bodies);
        if let Some(only) = &self.only {
            bodies.retain(|b, _| only.contains(b));
        }
        let updated: Vec<(u64, Option<Vec<u8>>)> = timed(&mut self.timings.index, || {
            bodies
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
                .collect::<Result<_>>()
        })?;
        for (body, value) in updated {
            match value {
                Some(v) => put_into(&mut self.batch, &labels.view, &index_key(body), &v),
                None => delete_into(&mut self.batch, &labels.view, &index_key(body)),
            }
        }
        Ok(())
    }
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
pub fn raise_max_label(batch: &mut WriteBatch, labels: &Labels, label: u64) -> Result<()> {
    if label > max_label(labels)?.unwrap_or(0) {
        put_into(
            batch,
            &labels.view,
            &[CLASS_MAX_LABEL],
            &label.to_le_bytes(),
        );
    }
    Ok(())
}

/// Voxel bounds of everything written at this version and its ancestors: (min, max), inclusive.
pub fn extents(labels: &Labels) -> Result<Option<([i64; 3], [i64; 3])>> {
    let mut out: Option<([i64; 3], [i64; 3])> = None;
    for (_, v) in labels.ancestry_values(&[CLASS_EXTENTS])? {
        if v.len() != 48 {
            return Err(Error::Internal("stored extents are malformed".into()));
        }
        let n: Vec<i64> = v
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        let (lo, hi) = ([n[0], n[1], n[2]], [n[3], n[4], n[5]]);
        out = Some(match out {
            None => (lo, hi),
            Some((l, h)) => (
                std::array::from_fn(|a| l[a].min(lo[a])),
                std::array::from_fn(|a| h[a].max(hi[a])),
            ),
        });
    }
    Ok(out)
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

//! Proofreading mutations (spec §4.4 "Mutations", §5.7, §7.2): merge, renumber and cleave
//! change only the mapping and the label index; split and split-supervoxel give supervoxels
//! new ids, renaming the label tables of the blocks they only relabel (`Whole`) and rewriting
//! the blocks their runs cut with the `split_apply` and `relabel` kernels; those blocks'
//! pyramid levels are rebuilt after the answer (`super::pyramid`). Each commits as one storage
//! batch with its mutation record, then updates the cached mapping and publishes its sync
//! event.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use rayon::prelude::*;
use serde_json::{Value, json};
use tessera_storage::WriteBatch;
use tessera_storage::versioned::{delete_into, put_into};

use super::index::{LabelIndex, SvCount};
use super::ingest::{Computed, Mode, Renamed, Write};
use super::labels::reserve;
use super::mapping::{put_changes, put_sv_split};
use super::state::state;
use super::store::{Labels, encode_index, index_key};
use crate::block::Blocks;
use crate::block::geom::{BlockCoord, pack_block, unpack_block, zyx};
use crate::block::stored::deserialize;
use crate::compute::{BatchInput, BlockCounts, LabelTable, Run, codec, merge_runs};
use crate::datatype::DataCtx;
use crate::datatype::parse_label;
use crate::datatype::{DataRequest, DataResponse, Mutation};
use crate::mutation::log as mutlog;
use crate::sync::{CLEAVE_LABEL, DOWNRES, Delta, MERGE_BLOCK, SPLIT_LABEL};
use crate::{Error, Result};

pub(crate) fn json_list(body: &[u8], what: &str) -> Result<Vec<u64>> {
    serde_json::from_slice(body)
        .map_err(|e| Error::bad(format!("{what} body must be a JSON list of labels: {e}")))
}

pub(crate) fn must_index(labels: &Labels, label: u64, role: &str) -> Result<LabelIndex> {
    labels
        .index(label)?
        .ok_or_else(|| Error::bad(format!("{role} label {label} has no voxels")))
}

/// Where an edit's time went, logged as one `labelmap edit` line when it is done, as writes log
/// `labelmap ingest`: milliseconds per phase, in order.
struct Laps {
    last: Instant,
    started: Instant,
    phases: Vec<(&'static str, f64)>,
}

impl Laps {
    fn start() -> Laps {
        let now = Instant::now();
        Laps {
            last: now,
            started: now,
            phases: Vec::new(),
        }
    }

    /// Ends the phase `name`, begun at the previous lap.
    fn lap(&mut self, name: &'static str) {
        let now = Instant::now();
        self.phases
            .push((name, (now - self.last).as_secs_f64() * 1e3));
        self.last = now;
    }

    fn log(self, ctx: &DataCtx, action: &str, mutation_id: u64) {
        let phases: Vec<String> = self
            .phases
            .iter()
            .map(|(name, ms)| format!("{name}={ms:.1}"))
            .collect();
        tracing::info!(
            instance = %ctx.instance.name,
            action,
            mutation_id,
            ms = %phases.join(" "),
            total_ms = format!("{:.1}", self.started.elapsed().as_secs_f64() * 1e3),
            "labelmap edit"
        );
    }
}

/// Stamps an index with the mutation that last changed it.
fn stamp(index: &mut LabelIndex, ctx: &DataCtx, label: u64, mutid: u64) {
    index.label = label;
    index.last_mutid = mutid;
    index.last_mod_time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    index.last_mod_user = ctx.user.clone().unwrap_or_default();
    index.last_mod_app = ctx.app.clone().unwrap_or_default();
}

fn put_index(batch: &mut WriteBatch, labels: &Labels, index: &LabelIndex) {
    if index.blocks.is_empty() {
        delete_into(batch, &labels.blocks.view, &index_key(index.label));
    } else {
        put_into(
            batch,
            &labels.blocks.view,
            &index_key(index.label),
            &encode_index(index),
        );
    }
}

/// The `*-complete` record of spec §7.2.
pub(crate) fn record(ctx: &DataCtx, action: &str, mutid: u64, fields: Value) -> Value {
    let mut r = json!({
        "Action": action,
        "MutationID": mutid,
        "UUID": ctx.uuid,
        "Timestamp": mutlog::timestamp(),
    });
    if let (Some(obj), Value::Object(extra)) = (r.as_object_mut(), fields) {
        obj.extend(extra);
    }
    r
}

/// Commits a mutation with the mapping changes it makes; the cached mapping follows before
/// subscribers hear of it.
fn commit(labels: &Labels, mut m: Mutation<'_>, changes: &HashMap<u64, u64>) -> Result<()> {
    put_changes(&mut m.batch, labels, changes);
    follow_mapping(&mut m, labels, changes);
    m.commit()
}

/// Makes the cached mapping take `changes` once `m` commits, before its subscribers wake
/// (they read bodies through it).
pub(crate) fn follow_mapping(m: &mut Mutation<'_>, labels: &Labels, changes: &HashMap<u64, u64>) {
    let st = state(m.ctx());
    let (labels, changes) = (labels.clone(), changes.clone());
    m.on_commit(move || st.mapping_changed(&labels, &changes));
}

fn sorted_blocks(index: &LabelIndex) -> Vec<[i32; 3]> {
    let mut b: Vec<BlockCoord> = index.blocks.keys().map(|p| unpack_block(*p)).collect();
    b.sort_unstable_by_key(zyx);
    b
}

/// Moves every supervoxel of `from` into `into`, recording the mapping changes.
fn absorb(into: &mut LabelIndex, from: LabelIndex, target: u64, changes: &mut HashMap<u64, u64>) {
    for (block, counts) in from.blocks {
        let entry = into.blocks.entry(block).or_default();
        for (sv, n) in counts.counts {
            entry.counts.insert(sv, n);
            changes.insert(sv, target);
        }
    }
}

/// A merge body `[target, a, b, …]`: the list, the target and the merged labels (sorted,
/// deduplicated).
pub(crate) fn merge_list(req: &DataRequest) -> Result<(Vec<u64>, u64, Vec<u64>)> {
    let list = json_list(&req.body, "merge")?;
    if list.len() < 2 {
        return Err(Error::bad(
            "merge needs a target and at least one label to merge into it",
        ));
    }
    if list.contains(&0) {
        return Err(Error::bad("label 0 is the background and can't be merged"));
    }
    let target = list[0];
    let mut merged: Vec<u64> = list[1..].to_vec();
    merged.sort_unstable();
    merged.dedup();
    if merged.contains(&target) {
        return Err(Error::bad(format!(
            "label {target} can't be merged into itself"
        )));
    }
    Ok((list, target, merged))
}

/// `POST merge` `[target, a, b, …]` → `{"MutationID": n}`.
pub fn merge(ctx: &DataCtx, labels: &Labels, req: &DataRequest) -> Result<DataResponse> {
    // Malformed requests are refused before they take a mutation id; DVID's rule that a
    // failed mutation consumes one applies to well-formed requests that fail.
    let (list, target, merged) = merge_list(req)?;
    let mut laps = Laps::start();
    let mut m = ctx.mutation()?;
    let mutid = m.mutation_id();
    laps.lap("id");
    let st = state(ctx);
    let _writes = st.writes.read();
    let _bodies = st.bodies.lock(list.iter().copied());
    laps.lap("locks");
    let labels = &labels.clone().with_mapping(st.mapping(labels)?, false);
    let mut index = must_index(labels, target, "target")?;
    let mut others = Vec::with_capacity(merged.len());
    for &m in &merged {
        others.push(must_index(labels, m, "merged")?);
    }
    let mut changes = HashMap::new();
    for (label, other) in merged.iter().zip(others) {
        absorb(&mut index, other, target, &mut changes);
        delete_into(&mut m.batch, &labels.blocks.view, &index_key(*label));
    }
    stamp(&mut index, ctx, target, mutid);
    put_index(&mut m.batch, labels, &index);
    m.record(record(
        ctx,
        "merge-complete",
        mutid,
        json!({"Target": target, "Labels": merged}),
    ));
    let delta = Delta::Merge {
        target,
        merged: merged.clone(),
        blocks: sorted_blocks(&index),
    };
    m.event(MERGE_BLOCK, delta);
    laps.lap("index");
    commit(labels, m, &changes)?;
    laps.lap("commit");
    laps.log(ctx, "merge", mutid);
    Ok(DataResponse::bytes(
        "application/json",
        format!("{{\"MutationID\": {mutid}}}"),
    ))
}

/// `POST renumber` `[new1, old1, new2, old2, …]`: each old body takes the new label, which
/// must not exist (a merge into an empty label).
pub fn renumber(ctx: &DataCtx, labels: &Labels, req: &DataRequest) -> Result<DataResponse> {
    let list = json_list(&req.body, "renumber")?;
    if list.is_empty() || list.len() % 2 != 0 {
        return Err(Error::bad("renumber needs [new, old, new, old, …] pairs"));
    }
    if list.contains(&0) {
        return Err(Error::bad(
            "label 0 is the background and can't be renumbered",
        ));
    }
    let mut seen = HashSet::new();
    if !list.iter().all(|l| seen.insert(*l)) {
        return Err(Error::bad("renumber lists a label twice"));
    }
    let mut m = ctx.mutation()?;
    let mutid = m.mutation_id();
    let st = state(ctx);
    let _writes = st.writes.read();
    let _bodies = st.bodies.lock(list.iter().copied());
    let labels = &labels.clone().with_mapping(st.mapping(labels)?, false);
    let mut changes = HashMap::new();
    for pair in list.chunks_exact(2) {
        let (new, old) = (pair[0], pair[1]);
        if labels.index(new)?.is_some() {
            return Err(Error::bad(format!(
                "renumber: new label {new} already has voxels"
            )));
        }
        let from = must_index(labels, old, "renumbered")?;
        let mut index = LabelIndex::default();
        absorb(&mut index, from, new, &mut changes);
        stamp(&mut index, ctx, new, mutid);
        delete_into(&mut m.batch, &labels.blocks.view, &index_key(old));
        put_index(&mut m.batch, labels, &index);
        // One record per pair, as DVID logs each renumber.
        m.record(record(
            ctx,
            "renumber-complete",
            mutid,
            json!({"NewLabel": new, "OrigLabel": old}),
        ));
        // To subscribers a renumber is a merge into a label that had no voxels: what they
        // keep of the old label moves to the new one.
        let delta = Delta::Merge {
            target: new,
            merged: vec![old],
            blocks: sorted_blocks(&index),
        };
        m.event(MERGE_BLOCK, delta);
    }
    commit(labels, m, &changes)?;
    Ok(DataResponse::empty())
}

/// `POST cleave/<label>` `[sv, …]` → `{"CleavedLabel": n, "MutationID": m}`. The new label is
/// allocated before anything is checked, as DVID does.
pub fn cleave(ctx: &DataCtx, labels: &Labels, req: &DataRequest) -> Result<DataResponse> {
    let label = parse_label(req.one_segment("<label>")?)?;
    let svs = json_list(&req.body, "cleave")?;
    let mut laps = Laps::start();
    let mut m = ctx.mutation()?;
    let mutid = m.mutation_id();
    laps.lap("id");
    let st = state(ctx);
    let _writes = st.writes.read();
    let cleaved = reserve(ctx, labels, 1)?;
    laps.lap("allocate");
    let _bodies = st.bodies.lock([label, cleaved]);
    laps.lap("locks");
    let labels = &labels.clone().with_mapping(st.mapping(labels)?, false);
    let mut index = must_index(labels, label, "cleaved")?;
    let all: HashSet<u64> = index
        .blocks
        .values()
        .flat_map(|b| b.counts.keys().copied())
        .collect();
    let wanted: HashSet<u64> = svs.iter().copied().collect();
    if wanted.is_empty() {
        return Err(Error::bad("cleave needs at least one supervoxel"));
    }
    for sv in &wanted {
        if !all.contains(sv) {
            return Err(Error::bad(format!(
                "supervoxel {sv} is not part of body {label}"
            )));
        }
    }
    if all.iter().all(|sv| wanted.contains(sv)) {
        return Err(Error::bad(format!(
            "cleave would take every supervoxel of body {label}; nothing would remain"
        )));
    }
    let mut out = LabelIndex::default();
    let mut changes = HashMap::new();
    for (block, counts) in index.blocks.iter_mut() {
        let moving: Vec<(u64, u32)> = counts
            .counts
            .iter()
            .filter(|(sv, _)| wanted.contains(sv))
            .map(|(a, b)| (*a, *b))
            .collect();
        if moving.is_empty() {
            continue;
        }
        let entry = out.blocks.entry(*block).or_insert_with(SvCount::default);
        for (sv, n) in moving {
            counts.counts.remove(&sv);
            entry.counts.insert(sv, n);
            changes.insert(sv, cleaved);
        }
    }
    index.blocks.retain(|_, c| !c.counts.is_empty());
    let (cleaved_size, remain_size) = (out.num_voxels(), index.num_voxels());
    stamp(&mut index, ctx, label, mutid);
    stamp(&mut out, ctx, cleaved, mutid);
    put_index(&mut m.batch, labels, &index);
    put_index(&mut m.batch, labels, &out);
    let mut list: Vec<u64> = wanted.into_iter().collect();
    list.sort_unstable();
    m.record(record(
        ctx,
        "cleave-complete",
        mutid,
        json!({"OrigLabel": label, "CleavedLabel": cleaved, "CleavedSupervoxels": list,
               "CleavedSize": cleaved_size, "RemainSize": remain_size}),
    ));
    let delta = Delta::Cleave {
        target: label,
        cleaved_label: cleaved,
        supervoxels: list,
    };
    m.event(CLEAVE_LABEL, delta);
    laps.lap("index");
    commit(labels, m, &changes)?;
    laps.lap("commit");
    laps.log(ctx, "cleave", mutid);
    Ok(DataResponse::bytes(
        "application/json",
        format!("{{\"CleavedLabel\": {cleaved}, \"MutationID\": {mutid}}}"),
    ))
}

/// Runs lie within ±(2^30 - 1) along x: far beyond any stored voxel (block coordinates are
/// 20-bit), and close enough that two merged runs never span more than an i32 can hold.
const MAX_RUN_X: i64 = (1 << 30) - 1;

/// A split body (spec §5.1 legacy RLE): byte 0 must be 0, bytes 1–7 are ignored, then the run
/// count and the runs. Runs are normalized (sorted, overlaps merged).
pub fn parse_rles(body: &[u8]) -> Result<Vec<Run>> {
    if body.len() < 12 {
        return Err(Error::bad(format!(
            "split body of {} bytes is shorter than the 12-byte RLE header",
            body.len()
        )));
    }
    if body[0] != 0 {
        return Err(Error::bad(format!(
            "split RLE payload descriptor is {}, only 0 (binary) is accepted",
            body[0]
        )));
    }
    let n = u32::from_le_bytes(body[8..12].try_into().expect("4 bytes")) as usize;
    if body.len() != 12 + 16 * n {
        return Err(Error::bad(format!(
            "split RLE says {n} runs ({} bytes) but the body holds {} bytes",
            12 + 16 * n,
            body.len()
        )));
    }
    let mut runs = Vec::with_capacity(n);
    for r in body[12..].chunks_exact(16) {
        let v = |i: usize| i32::from_le_bytes(r[4 * i..4 * i + 4].try_into().expect("4 bytes"));
        let (x, y, z, len) = (v(0), v(1), v(2), v(3));
        if len <= 0 || (x as i64) < -MAX_RUN_X || (x as i64 + len as i64) > MAX_RUN_X {
            return Err(Error::bad(format!(
                "split run at ({x}, {y}, {z}) has a bad length {len} or lies beyond ±{MAX_RUN_X} in x"
            )));
        }
        runs.push(Run::new(x, y, z, len));
    }
    let merged = merge_runs(runs);
    if merged.is_empty() {
        return Err(Error::bad("the split RLE holds no voxels"));
    }
    Ok(merged)
}

/// Checks a split's runs against what they split before any block is read: each run must lie
/// in the bounding box of the blocks holding `only` (every block of `index` when `None`) and
/// touch only such blocks, and together the runs may cover at most `most` voxels (all a valid
/// split can claim). The work a request causes is then bounded by the body's own size, not by
/// the run lengths it declares.
pub(crate) fn check_runs(
    runs: &[Run],
    index: &LabelIndex,
    only: Option<u64>,
    bs: [usize; 3],
    most: u64,
    whose: &str,
) -> Result<()> {
    let blocks: HashSet<u64> = index
        .blocks
        .iter()
        .filter(|(_, c)| only.is_none_or(|sv| c.counts.get(&sv).is_some_and(|n| *n > 0)))
        .map(|(p, _)| *p)
        .collect();
    let bs = bs.map(|b| b as i64);
    let (mut lo, mut hi) = ([i64::MAX; 3], [i64::MIN; 3]);
    for p in &blocks {
        let c = unpack_block(*p);
        for a in 0..3 {
            lo[a] = lo[a].min(c[a] as i64 * bs[a]);
            hi[a] = hi[a].max((c[a] as i64 + 1) * bs[a]);
        }
    }
    let name = |r: &Run| {
        format!(
            "split run at ({}, {}, {}) of length {}",
            r.x, r.y, r.z, r.len
        )
    };
    let mut total = 0u64;
    for r in runs {
        let (x0, x1, y, z) = (
            r.x as i64,
            r.x as i64 + r.len as i64,
            r.y as i64,
            r.z as i64,
        );
        if x0 < lo[0] || x1 > hi[0] || !(lo[1]..hi[1]).contains(&y) || !(lo[2]..hi[2]).contains(&z)
        {
            return Err(Error::bad(format!(
                "{} lies outside {whose}, whose blocks span voxels ({}, {}, {}) to ({}, {}, {})",
                name(r),
                lo[0],
                lo[1],
                lo[2],
                hi[0] - 1,
                hi[1] - 1,
                hi[2] - 1
            )));
        }
        total += r.len as u64;
        if total > most {
            return Err(Error::bad(format!(
                "the split runs cover more voxels than the {most} of {whose} (at {})",
                name(r)
            )));
        }
    }
    for r in runs {
        let (by, bz) = (
            (r.y as i64).div_euclid(bs[1]),
            (r.z as i64).div_euclid(bs[2]),
        );
        let x0 = (r.x as i64).div_euclid(bs[0]);
        let x1 = (r.x as i64 + r.len as i64 - 1).div_euclid(bs[0]);
        for bx in x0..=x1 {
            let c = [bx as i32, by as i32, bz as i32];
            if !blocks.contains(&pack_block(c)) {
                return Err(Error::bad(format!(
                    "{} crosses block {c:?}, which holds no voxels of {whose}",
                    name(r)
                )));
            }
        }
    }
    Ok(())
}

/// The runs inside block `c`, in the block's own coordinates shifted down `z_shift` planes
/// (its place in a batch stacked along z).
pub(crate) fn runs_in_block(
    runs: &[Run],
    c: BlockCoord,
    bs: [usize; 3],
    z_shift: i32,
    out: &mut Vec<Run>,
) {
    let o: [i64; 3] = std::array::from_fn(|a| c[a] as i64 * bs[a] as i64);
    for r in runs {
        let (y, z) = (r.y as i64 - o[1], r.z as i64 - o[2]);
        if y < 0 || y >= bs[1] as i64 || z < 0 || z >= bs[2] as i64 {
            continue;
        }
        let x0 = (r.x as i64 - o[0]).max(0);
        let x1 = (r.x as i64 + r.len as i64 - o[0]).min(bs[0] as i64);
        if x0 < x1 {
            out.push(Run::new(
                x0 as i32,
                y as i32,
                z as i32 + z_shift,
                (x1 - x0) as i32,
            ));
        }
    }
}

/// Blocks the runs touch, in (z, y, x) order.
pub(crate) fn blocks_of_runs(runs: &[Run], bs: [usize; 3]) -> Vec<BlockCoord> {
    let mut set = std::collections::BTreeSet::new();
    for r in runs {
        let (by, bz) = (
            (r.y as i64).div_euclid(bs[1] as i64),
            (r.z as i64).div_euclid(bs[2] as i64),
        );
        let x0 = (r.x as i64).div_euclid(bs[0] as i64);
        let x1 = (r.x as i64 + r.len as i64 - 1).div_euclid(bs[0] as i64);
        for bx in x0..=x1 {
            set.insert((bz as i32, by as i32, bx as i32));
        }
    }
    set.into_iter().map(|(z, y, x)| [x, y, z]).collect()
}

/// Voxels under a split's runs: per block (packed coordinate), per label.
pub(crate) struct UnderRuns(HashMap<u64, BTreeMap<u64, u64>>);

impl UnderRuns {
    /// Voxels under the runs per label, over all blocks.
    pub fn totals(&self) -> BTreeMap<u64, u64> {
        let mut out = BTreeMap::new();
        for (&label, &n) in self.0.values().flatten() {
            *out.entry(label).or_insert(0) += n;
        }
        out
    }

    /// Voxels of `label` under the runs in block `block` (packed).
    fn in_block(&self, block: u64, label: u64) -> u64 {
        self.0
            .get(&block)
            .and_then(|c| c.get(&label))
            .copied()
            .unwrap_or(0)
    }
}

/// Voxels under the runs, per block and label, checking each voxel with `ok` (which names the
/// offending voxel's problem when it returns an error).
pub(crate) fn count_under_runs(
    labels: &Labels,
    runs: &[Run],
    ok: &dyn Fn(u64) -> std::result::Result<(), String>,
) -> Result<UnderRuns> {
    let bs = labels.cfg.block_size;
    let bv = labels.cfg.block_voxels();
    let mut counts = HashMap::new();
    let (mut voxels, zeros) = (vec![0; bv], vec![0; bv]);
    let mut scratch = Scratch::default();
    let coords = blocks_of_runs(runs, bs);
    // A batch of blocks read in one storage call; the labels under the runs are read in place
    // (a 5 % split of a 10M-voxel body covers a small part of each block it touches).
    for batch in coords.chunks(labels.blocks_per_batch()) {
        let payloads: Vec<Option<Vec<u8>>> = labels
            .voxel_blocks()
            .get_many(0, batch)?
            .par_iter()
            .map(|s| s.as_deref().map(deserialize).transpose())
            .collect::<Result<_>>()?;
        for (c, payload) in batch.iter().zip(&payloads) {
            let under = match payload {
                None => Under::Decoded(&zeros),
                // A labelvol's raw uint64 blocks.
                Some(p) if labels.source.is_some() => {
                    labels.decode_blocks(&[p], &mut voxels)?;
                    Under::Decoded(&voxels)
                }
                Some(p) => Under::Encoded(labels.reader(p)?),
            };
            let block = counts.entry(pack_block(*c)).or_default();
            count_block(*c, &under, bs, runs, &mut scratch, ok, block)?;
        }
    }
    Ok(UnderRuns(counts))
}

/// One block's voxels as a split's check reads them.
enum Under<'a> {
    Decoded(&'a [u64]),
    Encoded(codec::VoxelReader<'a>),
}

/// What checking one block reuses from the last: its runs, and one run's labels.
#[derive(Default)]
struct Scratch {
    runs: Vec<Run>,
    row: Vec<u64>,
}

/// Counts the labels under the runs in block `c` into `counts`, checking each with `ok`.
fn count_block(
    c: BlockCoord,
    block: &Under,
    bs: [usize; 3],
    runs: &[Run],
    scratch: &mut Scratch,
    ok: &dyn Fn(u64) -> std::result::Result<(), String>,
    counts: &mut BTreeMap<u64, u64>,
) -> Result<()> {
    scratch.runs.clear();
    runs_in_block(runs, c, bs, 0, &mut scratch.runs);
    for r in &scratch.runs {
        let n = r.len as usize;
        let voxels = match block {
            Under::Decoded(block) => {
                let at = ((r.z as usize * bs[1]) + r.y as usize) * bs[0] + r.x as usize;
                &block[at..at + n]
            }
            Under::Encoded(reader) => {
                scratch.row.resize(n, 0);
                reader.row([r.x as usize, r.y as usize, r.z as usize], &mut scratch.row)?;
                &scratch.row[..]
            }
        };
        // A stretch of equal labels at a time: one check and one count each.
        let mut i = 0;
        while i < voxels.len() {
            let v = voxels[i];
            let n = voxels[i..].iter().take_while(|&&u| u == v).count();
            ok(v).map_err(|why| {
                Error::bad(format!(
                    "split voxel ({}, {}, {}) {why}",
                    c[0] as i64 * bs[0] as i64 + r.x as i64 + i as i64,
                    c[1] as i64 * bs[1] as i64 + r.y as i64,
                    c[2] as i64 * bs[2] as i64 + r.z as i64
                ))
            })?;
            *counts.entry(v).or_insert(0) += n as u64;
            i += n;
        }
    }
    Ok(())
}

/// What a split does: supervoxels renamed (old → (split id, remain id)), the mapping changes
/// that go with it, the bodies whose indices change, its record and its sync event.
struct Renaming {
    renamed: BTreeMap<u64, (u64, u64)>,
    changes: HashMap<u64, u64>,
    only: HashSet<u64>,
    record: Value,
    event: Option<(&'static str, Delta)>,
}

/// The blocks of `index` holding a renamed supervoxel, in (z, y, x) order.
fn blocks_to_rewrite(index: &LabelIndex, renamed: &BTreeMap<u64, (u64, u64)>) -> Vec<BlockCoord> {
    let mut coords: Vec<BlockCoord> = index
        .blocks
        .iter()
        .filter(|(_, c)| c.counts.keys().any(|sv| renamed.contains_key(sv)))
        .map(|(p, _)| unpack_block(*p))
        .collect();
    coords.sort_unstable_by_key(zyx);
    coords
}

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
fn whole_blocks(
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
/// Each batch of blocks is read in one storage call, once, and goes to the compute backend
/// once: decode → split → relabel → counts → first pyramid level → encode.
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
    let whole = if mode.downres { None } else { Some(&rw.whole) };
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
            if let Some(w) = whole.and_then(|w| w.get(&pack_block(*c))) {
                // None: the new table would list a label twice (a given id already there).
                if let Some(new) =
                    write.timed_compute(|| codec::rename_labels(&payload, &w.table))?
                {
                    renamed.coords.push(*c);
                    renamed.prev.push(Some(payload));
                    renamed.blocks.push(new);
                    renamed.counts.push(w.counts.clone());
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
            half: out.half,
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

/// Rewrites every block of `index` holding a renamed supervoxel: voxels under the runs take
/// its split id, the rest its remain id; then commits `m` with the mapping changes, split
/// history, record and event.
fn rewrite_blocks(
    labels: &Labels,
    m: Mutation<'_>,
    index: &LabelIndex,
    runs: &[Run],
    under: &UnderRuns,
    r: Renaming,
    downres: bool,
) -> Result<()> {
    let mutid = m.mutation_id();
    let renamed = &r.renamed;
    let coords = blocks_to_rewrite(index, renamed);
    let rw = Rewrite {
        whole: whole_blocks(index, renamed, under, &coords)?,
        coords,
        runs,
        split: Some(LabelTable::new(
            renamed.iter().map(|(sv, (s, _))| (*sv, *s)),
        )?),
        relabel: Some(LabelTable::new(
            renamed.iter().map(|(sv, (_, r))| (*sv, *r)),
        )?),
        after: r.changes.clone(),
        only: r.only,
        downres,
    };
    let (changes, record, event) = (&r.changes, r.record, r.event);
    rewrite(labels, m, rw, |change| {
        put_changes(&mut change.batch, labels, changes);
        follow_mapping(change, labels, changes);
        for (sv, (split, remain)) in renamed {
            put_sv_split(&mut change.batch, labels, mutid, *sv, *remain, *split);
        }
        change.record(record);
        if let Some((name, delta)) = event {
            change.event(name, delta);
        }
    })
}

/// The lock key of block `c` at `scale`. Distinct blocks may share a key; that only makes
/// them wait for each other.
pub(super) fn block_lock_key(scale: u8, c: BlockCoord) -> u64 {
    pack_block(c).rotate_left(5 * scale as u32) ^ scale as u64
}

/// `POST split/<label>` with an RLE body: the voxels split off into a new body. Every
/// supervoxel they touch gets two new ids (split part, remainder), allocated after the new
/// body's label, in supervoxel order; the old supervoxel is retired (maps to 0).
pub fn split(ctx: &DataCtx, labels: &Labels, req: &DataRequest) -> Result<DataResponse> {
    if !ctx.services.allow_labelmap_split {
        return Err(Error::bad(
            "POST split is turned off on this server ([server] allow_labelmap_split = false)",
        ));
    }
    let label = parse_label(req.one_segment("<label>")?)?;
    let runs = parse_rles(&req.body)?;
    let mut laps = Laps::start();
    let m = ctx.mutation()?;
    let mutid = m.mutation_id();
    laps.lap("id");
    let st = state(ctx);
    let _writes = st.writes.read();
    let _body = st.bodies.lock([label]);
    laps.lap("locks");
    let labels = &labels.clone().with_mapping(st.mapping(labels)?, false);
    let index = must_index(labels, label, "split")?;
    laps.lap("index");
    let whose = format!("body {label}");
    check_runs(
        &runs,
        &index,
        None,
        labels.cfg.block_size,
        index.num_voxels(),
        &whose,
    )?;
    laps.lap("runs");
    let runs_cover = count_under_runs(labels, &runs, &|v| {
        if v != 0 && labels.body(v) == label {
            Ok(())
        } else {
            Err(format!(
                "has label {} (body {}), not body {label}",
                v,
                labels.body(v)
            ))
        }
    })?;
    let under = runs_cover.totals();
    let split_voxels: u64 = under.values().sum();
    if split_voxels >= index.num_voxels() {
        return Err(Error::bad(format!(
            "the split covers all of body {label}; it must leave part of the body"
        )));
    }
    laps.lap("check");
    let start = reserve(ctx, labels, 1 + 2 * under.len() as u64)?;
    let new_body = start;
    let _new = st.bodies.lock([new_body]);
    laps.lap("allocate");
    let mut renamed = BTreeMap::new();
    let mut changes = HashMap::new();
    let mut svsplits = serde_json::Map::new();
    for (i, sv) in under.keys().enumerate() {
        let (s, r) = (start + 1 + 2 * i as u64, start + 2 + 2 * i as u64);
        renamed.insert(*sv, (s, r));
        changes.insert(*sv, 0);
        changes.insert(s, new_body);
        changes.insert(r, label);
        svsplits.insert(sv.to_string(), json!({"Split": s, "Remain": r}));
    }
    let rec = record(
        ctx,
        "split-complete",
        mutid,
        json!({"Target": label, "NewLabel": new_body, "SVSplits": svsplits, "SplitVoxels": split_voxels}),
    );
    let delta = Delta::Split {
        target: label,
        new_label: new_body,
        blocks: blocks_to_rewrite(&index, &renamed),
        voxels: split_voxels,
    };
    let renaming = Renaming {
        renamed,
        changes: changes.clone(),
        only: HashSet::from([label, new_body]),
        record: rec,
        event: Some((SPLIT_LABEL, delta)),
    };
    rewrite_blocks(labels, m, &index, &runs, &runs_cover, renaming, true)?;
    laps.lap("rewrite");
    laps.log(ctx, "split", mutid);
    Ok(DataResponse::bytes(
        "application/json",
        format!("{{\"label\": {new_body}, \"MutationID\": {mutid}}}"),
    ))
}

pub(crate) fn id_param(req: &DataRequest, name: &str) -> Result<Option<u64>> {
    match req.query.get(name) {
        None => Ok(None),
        Some(v) => match parse_label(v)? {
            u64::MAX => Err(Error::bad(format!(
                "{name}={v} is reserved (u64::MAX) and can't be a supervoxel id"
            ))),
            id => Ok(Some(id)),
        },
    }
}

/// `POST split-supervoxel/<sv>[?split=&remain=&downres=]`: the RLE's voxels, strictly inside
/// the supervoxel, become a new supervoxel and the rest another; both stay in its body.
pub fn split_supervoxel(ctx: &DataCtx, labels: &Labels, req: &DataRequest) -> Result<DataResponse> {
    let sv = parse_label(req.one_segment("<supervoxel>")?)?;
    let runs = parse_rles(&req.body)?;
    let (given_split, given_remain) = (id_param(req, "split")?, id_param(req, "remain")?);
    let downres = req.query.flag_or("downres", true)?;
    let m = ctx.mutation()?;
    let mutid = m.mutation_id();
    let st = state(ctx);
    let _writes = st.writes.read();
    // The body can change until it is locked: lock, then check it is still the body.
    let (body, _held, labels) = loop {
        let body = st.mapping(labels)?.body(sv);
        if body == 0 {
            return Err(Error::bad(format!(
                "supervoxel {sv} was split and no longer exists"
            )));
        }
        let held = st.bodies.lock([body]);
        let now = labels.clone().with_mapping(st.mapping(labels)?, false);
        if now.body(sv) == body {
            break (body, held, now);
        }
    };
    let labels = &labels;
    let index = must_index(labels, body, "supervoxel's body")?;
    let sv_voxels: u64 = index.supervoxel_sizes().get(&sv).copied().unwrap_or(0);
    if sv_voxels == 0 {
        return Err(Error::bad(format!("supervoxel {sv} has no voxels")));
    }
    let bs = labels.cfg.block_size;
    check_runs(
        &runs,
        &index,
        Some(sv),
        bs,
        sv_voxels,
        &format!("supervoxel {sv}"),
    )?;
    let runs_cover = count_under_runs(labels, &runs, &|v| {
        if v == sv {
            Ok(())
        } else {
            Err(format!("has supervoxel {v}, not {sv}"))
        }
    })?;
    let split_voxels = runs_cover.totals().get(&sv).copied().unwrap_or(0);
    if split_voxels >= sv_voxels {
        return Err(Error::bad(format!(
            "the split covers all of supervoxel {sv}; it must leave part of it"
        )));
    }
    let needed = u64::from(given_split.is_none()) + u64::from(given_remain.is_none());
    let start = if needed > 0 {
        reserve(ctx, labels, needed)?
    } else {
        0
    };
    let split_id = given_split.unwrap_or(start);
    let remain_id = given_remain.unwrap_or(if given_split.is_none() {
        start + 1
    } else {
        start
    });
    if split_id == remain_id || split_id == sv || remain_id == sv {
        return Err(Error::bad(
            "split and remain must be two new supervoxel ids",
        ));
    }
    let renamed = BTreeMap::from([(sv, (split_id, remain_id))]);
    let changes = HashMap::from([(sv, 0), (split_id, body), (remain_id, body)]);
    let rec = record(
        ctx,
        "split-supervoxel-complete",
        mutid,
        json!({"Supervoxel": sv, "Body": body, "SplitSupervoxel": split_id,
               "RemainSupervoxel": remain_id, "SplitSize": split_voxels,
               "RemainSize": sv_voxels - split_voxels}),
    );
    let renaming = Renaming {
        renamed,
        changes: changes.clone(),
        only: HashSet::from([body]),
        record: rec,
        event: None,
    };
    rewrite_blocks(labels, m, &index, &runs, &runs_cover, renaming, downres)?;
    Ok(DataResponse::bytes(
        "application/json",
        format!(
            "{{\"SplitSupervoxel\": {split_id}, \"RemainSupervoxel\": {remain_id}, \"MutationID\": {mutid}}}"
        ),
    ))
}

// ------------------------------------------------------------------ without a mapping
//
// labelarray (`Config::no_mapping`): labels are what the blocks hold, so a merge or split
// rewrites the voxels of the labels it changes through `rewrite`, and the indices follow
// through the write path; no mapping key is ever written.

/// Sorted (z, y, x) block coordinates of packed keys.
fn sorted_coords(packed: impl IntoIterator<Item = u64>) -> Vec<BlockCoord> {
    let set: HashSet<u64> = packed.into_iter().collect();
    let mut b: Vec<BlockCoord> = set.into_iter().map(unpack_block).collect();
    b.sort_unstable_by_key(zyx);
    b
}

/// `POST merge` `[target, a, b, …]` without a mapping: every block of a merged label is
/// rewritten with its voxels relabelled to the target.
pub fn relabel_merge(ctx: &DataCtx, labels: &Labels, req: &DataRequest) -> Result<DataResponse> {
    let (list, target, merged) = merge_list(req)?;
    let m = ctx.mutation()?;
    let mutid = m.mutation_id();
    let st = state(ctx);
    let _writes = st.writes.read();
    let _bodies = st.bodies.lock(list.iter().copied());
    let index = must_index(labels, target, "target")?;
    let mut others = Vec::with_capacity(merged.len());
    for &l in &merged {
        others.push(must_index(labels, l, "merged")?);
    }
    let coords = sorted_coords(others.iter().flat_map(|i| i.blocks.keys().copied()));
    let after_blocks = sorted_coords(
        index
            .blocks
            .keys()
            .chain(others.iter().flat_map(|i| i.blocks.keys()))
            .copied(),
    );
    let rw = Rewrite {
        coords,
        runs: &[],
        split: None,
        relabel: Some(LabelTable::new(merged.iter().map(|l| (*l, target)))?),
        after: HashMap::new(),
        only: list.iter().copied().collect(),
        downres: true,
        whole: HashMap::new(),
    };
    rewrite(labels, m, rw, |change| {
        change.record(record(
            ctx,
            "merge-complete",
            mutid,
            json!({"Target": target, "Labels": merged}),
        ));
        let delta = Delta::Merge {
            target,
            merged: merged.clone(),
            blocks: after_blocks,
        };
        change.event(MERGE_BLOCK, delta);
    })?;
    Ok(DataResponse::bytes(
        "application/json",
        format!("{{\"MutationID\": {mutid}}}"),
    ))
}

/// Block runs (a coarse RLE body) as the blocks they cover, in (z, y, x) order.
/// At most `most` blocks may be listed.
pub(crate) fn blocks_of_block_runs(runs: &[Run], most: usize) -> Result<Vec<BlockCoord>> {
    let listed: u64 = runs.iter().map(|r| r.len as u64).sum();
    if listed > most as u64 {
        return Err(Error::bad(format!(
            "the coarse split lists {listed} blocks, more than the {most} the label touches"
        )));
    }
    let mut set = std::collections::BTreeSet::new();
    for r in runs {
        for x in r.x..r.x + r.len {
            set.insert((r.z, r.y, x));
        }
    }
    Ok(set.into_iter().map(|(z, y, x)| [x, y, z]).collect())
}

/// What a split of `label` (its `index`) by `runs` rewrites, checked: the blocks and the
/// voxels that move. Voxel runs (`coarse` false) must cover only voxels of the label; block
/// runs only blocks holding it.
pub(crate) fn split_blocks(
    labels: &Labels,
    index: &LabelIndex,
    label: u64,
    runs: &[Run],
    coarse: bool,
) -> Result<(Vec<BlockCoord>, u64)> {
    let whose = format!("label {label}");
    if coarse {
        let coords = blocks_of_block_runs(runs, index.blocks.len())?;
        let mut voxels = 0u64;
        for c in &coords {
            let n = index
                .blocks
                .get(&pack_block(*c))
                .and_then(|b| b.counts.get(&label))
                .copied()
                .ok_or_else(|| Error::bad(format!("block {c:?} holds no voxels of {whose}")))?;
            voxels += n as u64;
        }
        return Ok((coords, voxels));
    }
    let bs = labels.cfg.block_size;
    check_runs(runs, index, None, bs, index.num_voxels(), &whose)?;
    let under = count_under_runs(labels, runs, &|v| {
        if v == label {
            Ok(())
        } else {
            Err(format!("has label {v}, not {label}"))
        }
    })?;
    Ok((blocks_of_runs(runs, bs), under.totals().values().sum()))
}

/// `POST split/<label>[?splitlabel=X]` (voxel RLE) and `POST split-coarse/<label>` (block
/// RLE) without a mapping → `{"label": new, "MutationID": n}`. The voxels under the runs
/// (every voxel of the label in the listed blocks, for split-coarse) take the new label: the
/// `splitlabel` given, else a newly allocated one.
pub fn relabel_split(
    ctx: &DataCtx,
    labels: &Labels,
    req: &DataRequest,
    coarse: bool,
) -> Result<DataResponse> {
    let label = parse_label(req.one_segment("<label>")?)?;
    let runs = parse_rles(&req.body)?;
    let given = id_param(req, "splitlabel")?;
    let m = ctx.mutation()?;
    let mutid = m.mutation_id();
    if given == Some(label) {
        return Err(Error::bad(format!(
            "splitlabel {label} is the label being split"
        )));
    }
    let st = state(ctx);
    let _writes = st.writes.read();
    let _body = st.bodies.lock([label]);
    let index = must_index(labels, label, "split")?;
    let (coords, split_voxels) = split_blocks(labels, &index, label, &runs, coarse)?;
    let new_label = match given {
        Some(l) => l,
        None => reserve(ctx, labels, 1)?,
    };
    let _new = st.bodies.lock([new_label]);
    let table = LabelTable::new([(label, new_label)])?;
    let rw = Rewrite {
        coords: coords.clone(),
        runs: &runs,
        split: (!coarse).then(|| table.clone()),
        relabel: coarse.then_some(table),
        after: HashMap::new(),
        only: HashSet::from([label, new_label]),
        downres: true,
        whole: HashMap::new(),
    };
    rewrite(labels, m, rw, |change| {
        change.record(record(
            ctx,
            "split-complete",
            mutid,
            json!({"Target": label, "NewLabel": new_label, "SplitVoxels": split_voxels}),
        ));
        let delta = Delta::Split {
            target: label,
            new_label,
            blocks: coords,
            voxels: split_voxels,
        };
        change.event(SPLIT_LABEL, delta);
    })?;
    Ok(DataResponse::bytes(
        "application/json",
        format!("{{\"label\": {new_label}, \"MutationID\": {mutid}}}"),
    ))
}

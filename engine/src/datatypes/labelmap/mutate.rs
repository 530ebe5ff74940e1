//! Proofreading mutations (spec §4.4 "Mutations", §5.7, §7.2): merge, renumber and cleave
//! change only the mapping and the label index; split and split-supervoxel give supervoxels
//! new ids and rewrite their blocks (`super::rewrite`: label tables renamed where a block is
//! only relabelled, the `split_apply` and `relabel` kernels where the runs cut it); those
//! blocks' pyramid levels are rebuilt after the answer (`super::pyramid`). Each commits as one
//! storage batch with its mutation record, then updates the cached mapping and publishes its
//! sync event. The runs themselves are `super::runs`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use serde_json::{Value, json};
use tessera_storage::WriteBatch;
use tessera_storage::versioned::{delete_into, put_into};

use super::index::{LabelIndex, SvCount};
use super::labels::reserve;
use super::mapping::{put_changes, put_sv_split};
use super::rewrite::{Rewrite, rewrite, whole_blocks};
use super::runs::{
    UnderRuns, blocks_of_block_runs, blocks_of_runs, check_runs, count_under_runs, parse_rles,
};
use super::state::state;
use super::store::{Labels, encode_index, index_key};
use crate::block::geom::{BlockCoord, pack_block, unpack_block, zyx};
use crate::compute::{LabelTable, Run};
use crate::datatype::DataCtx;
use crate::datatype::parse_label;
use crate::datatype::{DataRequest, DataResponse, Mutation};
use crate::mutation::log as mutlog;
use crate::sync::{CLEAVE_LABEL, Delta, MERGE_BLOCK, SPLIT_LABEL};
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

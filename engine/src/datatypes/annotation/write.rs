//! The endpoints that change elements: `POST elements`, `DELETE element`, `POST move`,
//! `POST blocks`, `POST labels` and `POST reload`. Each holds the instance's write lock from
//! its first read to its commit, and commits records and index shards in one batch with the
//! `ANNOTATION_MOD_ELEMENTS` event for labelsz.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde_json::{Value, json};
use tessera_storage::versioned::delete_into;

use super::element::{Element, Relationship, parse_elements, parse_pos};
use super::handle::{Annotation, writes};
use super::store::{
    BlockCoord, CLASS_BLOCK, CLASS_LABEL, CLASS_TAG, Editor, Entry, block_from_bytes, read_blocks,
    scan_prefix,
};
use crate::datatype::{DataRequest, DataResponse, Mutation};
use crate::sync::{ANNOTATION_MOD_ELEMENTS, Delta};
use crate::{Error, Result};

/// Commits an edit: records, shards, the labels event and a mutation-log record.
fn commit(mut m: Mutation<'_>, ed: Editor<'_>, record: Option<Value>) -> Result<Vec<u64>> {
    let labels = ed.finish(&mut m.batch)?;
    publish(&mut m, &labels);
    if let Some(r) = record {
        m.record(r);
    }
    m.commit()?;
    Ok(labels)
}

/// Tells labelsz which labels' points changed.
pub fn publish(m: &mut Mutation<'_>, labels: &[u64]) {
    if !labels.is_empty() && m.wants(ANNOTATION_MOD_ELEMENTS) {
        m.event(ANNOTATION_MOD_ELEMENTS, Delta::Labels(labels.to_vec()));
    }
}

/// The synced body of each position (0 when unsynced); a 400 for points outside the synced
/// labelmap's volume.
fn labels_at(ann: &Annotation, positions: &[[i32; 3]]) -> Result<Vec<u64>> {
    let Some(lm) = ann.labelmap()? else {
        return Ok(vec![0; positions.len()]);
    };
    if let Some((lo, hi)) = lm.extents()? {
        for p in positions {
            if (0..3).any(|a| i64::from(p[a]) < lo[a] || i64::from(p[a]) > hi[a]) {
                return Err(Error::bad(format!(
                    "element at {p:?} is outside the volume of labelmap {:?} ({lo:?} to {hi:?})",
                    lm.name()
                )));
            }
        }
    }
    lm.bodies_at(positions)
}

/// What one commit of a bulk edit holds: at most this many blocks, and about this many
/// stored elements (more when one block alone holds more). A request spread wider commits in
/// several batches, so the server's memory is bounded by this and not by the request or the
/// instance; the request is validated whole before the first commit, and a crash between
/// commits leaves a prefix of it stored, which the client (never acknowledged) posts again.
const BLOCKS_PER_COMMIT: usize = 1024;
const ELEMENTS_PER_COMMIT: usize = 100_000;
/// Blocks read at once while filling a commit.
const BLOCKS_PER_READ: usize = 8;

/// Checks every relationship points at an element posted with it or already stored (the
/// stored ones read a batch of blocks at a time).
fn check_partners(ann: &Annotation, elements: &[Element]) -> Result<()> {
    let posted: HashSet<[i32; 3]> = elements.iter().map(|e| e.pos).collect();
    let mut wanted: BTreeMap<BlockCoord, Vec<(&Element, &Relationship)>> = BTreeMap::new();
    for e in elements {
        for r in e.rels.iter().filter(|r| !posted.contains(&r.to)) {
            wanted.entry(ann.block_of(r.to)).or_default().push((e, r));
        }
    }
    let blocks: Vec<BlockCoord> = wanted.keys().copied().collect();
    for chunk in blocks.chunks(BLOCKS_PER_COMMIT) {
        for (b, stored) in chunk.iter().zip(read_blocks(ann.ctx(), chunk)?) {
            for (e, r) in &wanted[b] {
                if !stored.iter().any(|s| s.point.pos == r.to) {
                    return Err(Error::bad(format!(
                        "element at {:?}: relationship {:?} to {:?}, where no element is stored or posted",
                        e.pos, r.rel, r.to
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Stores `entries` block by block (emptying each block first when `replace`), committing
/// within the bounds above; the mutation-log `record` goes with the last commit.
fn store_by_block(
    ann: &Annotation,
    mut entries: BTreeMap<BlockCoord, Vec<Entry>>,
    replace: bool,
    record: Value,
) -> Result<()> {
    let blocks: Vec<BlockCoord> = entries.keys().copied().collect();
    let mut ed = ann.editor();
    let mut held = (0usize, 0usize); // blocks, elements
    for (n, group) in blocks.chunks(BLOCKS_PER_READ).enumerate() {
        ed.load(group.iter().copied())?;
        for b in group {
            if replace {
                ed.block_mut(*b).clear();
            }
            for e in entries.remove(b).unwrap_or_default() {
                ed.put(e);
            }
            held = (held.0 + 1, held.1 + ed.block(*b).len());
        }
        let last = (n + 1) * BLOCKS_PER_READ >= blocks.len();
        if last || held.0 >= BLOCKS_PER_COMMIT || held.1 >= ELEMENTS_PER_COMMIT {
            let full = std::mem::replace(&mut ed, ann.editor());
            commit(ann.ctx().write(), full, last.then(|| record.clone()))?;
            held = (0, 0);
        }
    }
    Ok(())
}

/// Stores `elements` (replacing any at the same positions) with their bodies, or with
/// `label` when given; checks relationships when `partners`.
fn upsert(
    ann: &Annotation,
    elements: &[Element],
    label: Option<u64>,
    partners: bool,
    action: &str,
) -> Result<()> {
    let writes = writes(ann.ctx());
    let _w = writes.lock();
    if partners {
        check_partners(ann, elements)?;
    }
    let positions: Vec<[i32; 3]> = elements.iter().map(|e| e.pos).collect();
    let labels = match label {
        Some(l) => vec![l; elements.len()],
        None => labels_at(ann, &positions)?,
    };
    let mut by_block: BTreeMap<BlockCoord, Vec<Entry>> = BTreeMap::new();
    for (e, l) in elements.iter().zip(labels) {
        by_block
            .entry(ann.block_of(e.pos))
            .or_default()
            .push(Entry::new(e, l));
    }
    let record = json!({"Action": action, "Elements": elements.len()});
    store_by_block(ann, by_block, false, record)
}

/// `POST elements`: a JSON array of elements.
pub fn post_elements(ann: &Annotation, req: &DataRequest) -> Result<DataResponse> {
    let elements = parse_elements(&req.body)?;
    upsert(ann, &elements, None, true, "element-post")?;
    Ok(DataResponse::empty())
}

/// `POST labels`: `{"<label>": "<JSON array of elements>", …}`: the elements are stored as
/// belonging to those bodies (until a label edit moves them).
pub fn post_labels(ann: &Annotation, req: &DataRequest) -> Result<DataResponse> {
    let body: BTreeMap<String, String> = serde_json::from_slice(&req.body).map_err(|e| {
        Error::bad(format!(
            "body must be a JSON object of label -> JSON array string of elements: {e}"
        ))
    })?;
    let mut by_label = Vec::new();
    for (k, v) in &body {
        let label: u64 = k
            .parse()
            .map_err(|_| Error::bad(format!("{k:?} is not a label (a uint64)")))?;
        let elements =
            parse_elements(v.as_bytes()).map_err(|e| Error::bad(format!("label {label}: {e}")))?;
        by_label.push((label, elements));
    }
    for (label, elements) in &by_label {
        upsert(ann, elements, Some(*label), false, "labels-post")?;
    }
    Ok(DataResponse::empty())
}

/// `POST blocks`: `{"x,y,z": [elements…], …}` replaces those blocks' elements. Labels and
/// tags are indexed as by `POST elements`; relationships are not checked (bulk ingest may post
/// partners in later blocks).
pub fn post_blocks(ann: &Annotation, req: &DataRequest) -> Result<DataResponse> {
    let body: BTreeMap<String, Value> = serde_json::from_slice(&req.body).map_err(|e| {
        Error::bad(format!(
            "body must be a JSON object of \"x,y,z\" block -> array of elements: {e}"
        ))
    })?;
    let mut blocks = Vec::with_capacity(body.len());
    for (k, v) in body {
        let c: Vec<i32> = k
            .split(',')
            .map(|s| s.trim().parse())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| Error::bad(format!("block key {k:?} must be \"x,y,z\" integers")))?;
        let c: BlockCoord = c
            .try_into()
            .map_err(|_| Error::bad(format!("block key {k:?} must be \"x,y,z\" integers")))?;
        let elements = parse_elements(&serde_json::to_vec(&v)?)
            .map_err(|e| Error::bad(format!("block {k}: {e}")))?;
        if let Some(e) = elements.iter().find(|e| ann.block_of(e.pos) != c) {
            return Err(Error::bad(format!(
                "block {k}: element at {:?} lies in block {:?}",
                e.pos,
                ann.block_of(e.pos)
            )));
        }
        blocks.push((c, elements));
    }
    let writes = writes(ann.ctx());
    let _w = writes.lock();
    let positions: Vec<[i32; 3]> = blocks
        .iter()
        .flat_map(|(_, els)| els.iter().map(|e| e.pos))
        .collect();
    let mut labels = labels_at(ann, &positions)?.into_iter();
    let mut by_block = BTreeMap::new();
    let mut n = 0;
    for (c, elements) in blocks {
        n += elements.len();
        let entries: Vec<Entry> = elements
            .iter()
            .map(|e| Entry::new(e, labels.next().expect("a label per element")))
            .collect();
        by_block.insert(c, entries);
    }
    store_by_block(
        ann,
        by_block,
        true,
        json!({"Action": "blocks-post", "Elements": n}),
    )?;
    Ok(DataResponse::empty())
}

/// Rewrites, in the partners of the element at `pos`, relationships to it: dropped when
/// `to` is `None`, else pointed at `to`.
fn fix_partners(
    ed: &mut Editor<'_>,
    element: &Element,
    pos: [i32; 3],
    to: Option<[i32; 3]>,
) -> Result<()> {
    let partners: BTreeSet<[i32; 3]> = element.rels.iter().map(|r| r.to).collect();
    ed.load(partners.iter().map(|p| ed.block_of(*p)).collect::<Vec<_>>())?;
    for p in partners {
        let Some(entry) = ed.get(p) else { continue };
        let mut partner = entry.element()?;
        let label = entry.label;
        let before = partner.rels.len();
        match to {
            None => partner.rels.retain(|r| r.to != pos),
            Some(to) => partner
                .rels
                .iter_mut()
                .filter(|r| r.to == pos)
                .for_each(|r| r.to = to),
        }
        if to.is_some() || partner.rels.len() != before {
            ed.put(Entry::new(&partner, label));
        }
    }
    Ok(())
}

/// `DELETE element/<x_y_z>`: the element and its partners' relationships to it.
pub fn delete_element(ann: &Annotation, req: &DataRequest) -> Result<DataResponse> {
    let pos = parse_pos(req.one_segment("<x_y_z>")?)?;
    let ctx = ann.ctx();
    let writes = writes(ctx);
    let _w = writes.lock();
    let mut ed = ann.editor();
    ed.load([ann.block_of(pos)])?;
    let entry = ed
        .remove(pos)
        .ok_or_else(|| Error::bad(format!("no element at {pos:?} to delete")))?;
    fix_partners(&mut ed, &entry.element()?, pos, None)?;
    commit(
        ctx.write(),
        ed,
        Some(json!({"Action": "element-delete", "Point": pos})),
    )?;
    Ok(DataResponse::empty())
}

/// `POST move/<from x_y_z>/<to x_y_z>`.
pub fn move_element(ann: &Annotation, req: &DataRequest) -> Result<DataResponse> {
    let [from, to] = req.path.as_slice() else {
        return Err(Error::bad(
            "move needs two points: move/<from x_y_z>/<to x_y_z>",
        ));
    };
    let (from, to) = (parse_pos(from)?, parse_pos(to)?);
    let ctx = ann.ctx();
    let writes = writes(ctx);
    let _w = writes.lock();
    let mut ed = ann.editor();
    ed.load([ann.block_of(from), ann.block_of(to)])?;
    if from != to && ed.get(to).is_some() {
        return Err(Error::bad(format!(
            "cannot move {from:?} to {to:?}: an element is there already"
        )));
    }
    let label = labels_at(ann, &[to])?[0];
    let entry = ed
        .remove(from)
        .ok_or_else(|| Error::bad(format!("no element at {from:?} to move")))?;
    let mut element = entry.element()?;
    element.pos = to;
    ed.put(Entry::new(&element, label));
    fix_partners(&mut ed, &element, from, Some(to))?;
    commit(
        ctx.write(),
        ed,
        Some(json!({"Action": "element-move", "From": from, "To": to})),
    )?;
    Ok(DataResponse::empty())
}

/// Blocks re-indexed per committed batch of a reload.
const RELOAD_BLOCKS: usize = 1024;

/// `POST reload`: rebuilds the label and tag indices from the element records, reading every
/// element's body from the synced labelmap. Answers what it indexed.
pub fn reload(ann: &Annotation) -> Result<DataResponse> {
    let ctx = ann.ctx();
    let writes = writes(ctx);
    let _w = writes.lock();
    // Drop every index shard first: a shard no record explains would otherwise survive.
    let mut dropped = BTreeSet::new();
    for class in [CLASS_LABEL, CLASS_TAG] {
        let mut keys = Vec::new();
        scan_prefix(ctx, &[class], &mut |k, _| {
            if class == CLASS_LABEL {
                dropped.insert(u64::from_be_bytes(k[1..9].try_into().expect("8 bytes")));
            }
            keys.push(k.to_vec());
            Ok(true)
        })?;
        for chunk in keys.chunks(16_384) {
            let mut m = ctx.write();
            for k in chunk {
                delete_into(&mut m.batch, &ctx.view, k);
            }
            m.commit()?;
        }
    }
    let mut blocks = Vec::new();
    scan_prefix(ctx, &[CLASS_BLOCK], &mut |k, _| {
        blocks.push(block_from_bytes(&k[1..])?);
        Ok(true)
    })?;
    let (mut elements, mut labels) = (0usize, BTreeSet::new());
    for chunk in blocks.chunks(RELOAD_BLOCKS) {
        let mut ed = ann.editor().fresh();
        ed.load(chunk.iter().copied())?;
        let entries: Vec<Entry> = chunk.iter().flat_map(|b| ed.block(*b).to_vec()).collect();
        let positions: Vec<[i32; 3]> = entries.iter().map(|e| e.point.pos).collect();
        let bodies = match ann.labelmap()? {
            Some(lm) => lm.bodies_at(&positions)?,
            None => vec![0; positions.len()],
        };
        for (mut e, l) in entries.into_iter().zip(bodies) {
            e.label = l;
            ed.put(e);
        }
        elements += positions.len();
        let mut m = ctx.write();
        let changed = ed.finish(&mut m.batch)?;
        labels.extend(changed.iter().copied());
        let mut all: Vec<u64> = changed;
        all.extend(std::mem::take(&mut dropped));
        all.sort_unstable();
        all.dedup();
        publish(&mut m, &all);
        m.commit()?;
    }
    if !dropped.is_empty() {
        let mut m = ctx.write();
        publish(&mut m, &dropped.into_iter().collect::<Vec<_>>());
        m.commit()?;
    }
    let mut rec = ctx.write();
    rec.record(json!({"Action": "reload", "Elements": elements}));
    rec.commit()?;
    Ok(DataResponse::json(&json!({
        "Blocks": blocks.len(),
        "Elements": elements,
        "Labels": labels.len(),
    })))
}

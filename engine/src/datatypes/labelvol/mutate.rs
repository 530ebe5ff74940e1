//! labelvol mutations: the labelblk's voxels are rewritten through its handle (whose write
//! publishes `BLOCK_MUTATE` as any write does), then the labelvol indexes the rewritten blocks
//! itself, so the reply comes after the index is current; the sync event that follows finds
//! nothing left to change. The checks and allocations are labelarray's (labelmap's
//! `merge_list`, `split_blocks`, `allocate`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::json;

use super::sync::{commit, reindex};
use crate::block::geom::{BlockCoord, VoxelBox, parse_point, parse_size, unpack_block, zyx};
use crate::block::records::MAX_LISTED;
use crate::compute::LabelTable;
use crate::datatype::parse_label;
use crate::datatype::{DataCtx, DataRequest, DataResponse};
use crate::datatypes::labelblk::Labelblk;
use crate::datatypes::labelmap::ingest::put_index_update;
use crate::datatypes::labelmap::labels::reserve;
use crate::datatypes::labelmap::mutate::{id_param, merge_list, must_index, record, split_blocks};
use crate::datatypes::labelmap::runs::{blocks_of_block_runs, parse_rles};
use crate::datatypes::labelmap::state::state;
use crate::datatypes::labelmap::store::Labels;
use crate::sync::BlockChange;
use crate::{Error, Result};

/// `POST merge` `[target, a, b, …]` → `{"MutationID": n}`: every voxel of a, b, … in the
/// labelblk becomes `target`.
pub fn merge(
    ctx: &DataCtx,
    labels: &Labels,
    blk: &Labelblk,
    req: &DataRequest,
) -> Result<DataResponse> {
    let mut m = ctx.mutation()?;
    let mutid = m.mutation_id();
    let (_list, target, merged) = merge_list(req)?;
    let st = state(ctx);
    let _writes = st.writes.write();
    must_index(labels, target, "target")?;
    let mut blocks = BTreeSet::new();
    for &l in &merged {
        let index = must_index(labels, l, "merged")?;
        blocks.extend(index.blocks.keys().map(|p| zyx(&unpack_block(*p))));
    }
    let coords: Vec<BlockCoord> = blocks.into_iter().map(|(z, y, x)| [x, y, z]).collect();
    let table = LabelTable::new(merged.iter().map(|l| (*l, target)))?;
    let changes = blk.rewrite(&coords, &[], None, Some(&table))?;
    let max = reindex(labels, &mut m, &changes)?;
    m.record(record(
        ctx,
        "merge-complete",
        mutid,
        json!({"Target": target, "Labels": merged}),
    ));
    commit(labels, m, max)?;
    Ok(DataResponse::bytes(
        "application/json",
        format!("{{\"MutationID\": {mutid}}}"),
    ))
}

/// `POST split/<label>[?splitlabel=X]` (voxel RLE) and `POST split-coarse/<label>` (block
/// RLE) → `{"label": new, "MutationID": n}`.
pub fn split(
    ctx: &DataCtx,
    labels: &Labels,
    blk: &Labelblk,
    req: &DataRequest,
    coarse: bool,
) -> Result<DataResponse> {
    let mut m = ctx.mutation()?;
    let mutid = m.mutation_id();
    let label = parse_label(req.one_segment("<label>")?)?;
    let runs = parse_rles(&req.body)?;
    let given = id_param(req, "splitlabel")?;
    if given == Some(label) {
        return Err(Error::bad(format!(
            "splitlabel {label} is the label being split"
        )));
    }
    let st = state(ctx);
    let _writes = st.writes.write();
    let index = must_index(labels, label, "split")?;
    let (coords, split_voxels) = split_blocks(labels, &index, label, &runs, coarse)?;
    let new_label = match given {
        Some(l) => l,
        None => reserve(ctx, labels, 1)?,
    };
    let table = LabelTable::new([(label, new_label)])?;
    let changes = if coarse {
        blk.rewrite(&coords, &[], None, Some(&table))?
    } else {
        blk.rewrite(&coords, &runs, Some(&table), None)?
    };
    let max = reindex(labels, &mut m, &changes)?;
    m.record(record(
        ctx,
        "split-complete",
        mutid,
        json!({"Target": label, "NewLabel": new_label, "SplitVoxels": split_voxels}),
    ));
    commit(labels, m, max.max(new_label))?;
    Ok(DataResponse::bytes(
        "application/json",
        format!("{{\"label\": {new_label}, \"MutationID\": {mutid}}}"),
    ))
}

/// `POST resync/<label>` with a block RLE body: the index of `label` (and of every label the
/// blocks hold now) recounted in the listed blocks from the labelblk's voxels — DVID's repair
/// after an interrupted mutation.
pub fn resync(ctx: &DataCtx, labels: &Labels, req: &DataRequest) -> Result<DataResponse> {
    let label = parse_label(req.one_segment("<label>")?)?;
    let runs = parse_rles(&req.body)?;
    let coords = blocks_of_block_runs(&runs, MAX_LISTED)?;
    let changes: Vec<BlockChange> = coords
        .into_iter()
        .map(|c| BlockChange {
            coord: c,
            prev: Some(vec![label]),
            labels: Vec::new(),
        })
        .collect();
    let st = state(ctx);
    let _writes = st.writes.write();
    let mut m = ctx.write();
    let max = reindex(labels, &mut m, &changes)?;
    commit(labels, m, max)?;
    Ok(DataResponse::empty())
}

/// `DELETE area/<label>/<size>/<offset>`: drops `label`'s index entries for the blocks the box
/// touches, leaving the labelblk as it is (DVID: "does not honor syncs and is intended purely
/// for low-level mods").
pub fn delete_area(ctx: &DataCtx, labels: &Labels, req: &DataRequest) -> Result<DataResponse> {
    let [label, size, offset] = req.path.as_slice() else {
        return Err(Error::bad(
            "expected area/<label>/<size>/<offset> (size and offset x_y_z)",
        ));
    };
    let label = parse_label(label)?;
    let size = parse_size(size, 3, "size")?;
    let bx = VoxelBox::new(parse_point(offset, "offset")?, [size[0], size[1], size[2]])?;
    let (lo, hi) = bx.block_range(labels.cfg.block_size);
    let st = state(ctx);
    let _writes = st.writes.write();
    let Some(index) = labels.index(label)? else {
        return Ok(DataResponse::empty());
    };
    let gone: BTreeMap<u64, Vec<(u64, u32)>> = index
        .blocks
        .keys()
        .filter(|p| {
            let c = unpack_block(**p);
            (0..3).all(|a| lo[a] <= c[a] && c[a] <= hi[a])
        })
        .map(|p| (*p, Vec::new()))
        .collect();
    if gone.is_empty() {
        return Ok(DataResponse::empty());
    }
    let mut m = ctx.write();
    put_index_update(labels, &mut m, HashMap::from([(label, gone)]))?;
    m.commit()?;
    Ok(DataResponse::empty())
}

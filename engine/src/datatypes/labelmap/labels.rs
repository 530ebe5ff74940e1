//! Label endpoints that read or write the label index and the label counters: sizes,
//! supervoxels, index and indices, listings, lastmod, maxlabel and nextlabel.

use bytes::Bytes;
use prost::Message;
use rayon::prelude::*;
use tessera_storage::versioned::{delete_into, put_into};
use tessera_storage::{Durability, VersionId};

use super::index::{LabelIndex, LabelIndices};
use super::ingest::{max_label, raise_max_label};
use super::no_voxels as not_found;
use super::state::state;
use super::store::{
    self, CLASS_CEILING, CLASS_INDEX, CLASS_MAX_LABEL, CLASS_NEXT_LABEL, Labels, encode_index,
    index_key, index_key_label,
};
use crate::block::geom::unpack_block;
use crate::datatype::DataCtx;
use crate::datatype::parse_label;
use crate::datatype::{DataRequest, DataResponse, Method};
use crate::{Error, Result};

/// Largest label `POST maxlabel` accepts (spec §4.4).
const MAX_SETTABLE_LABEL: u64 = 1 << 48;
/// Most labels `GET indices` takes.
const MAX_INDICES: usize = 50_000;
/// Most labels `listlabels` lists.
const MAX_LIST: u64 = 10_000_000;
/// Labels per streamed chunk of a listing.
const LIST_CHUNK: usize = 65_536;

pub fn handle(ctx: &DataCtx, labels: &Labels, req: &DataRequest) -> Result<DataResponse> {
    match (req.method, req.keyword.as_str()) {
        (Method::Get, "size") => size(labels, req),
        (Method::Get, "sizes") => sizes(labels, req),
        (Method::Get, "sparsevol-size") => sparsevol_size(labels, req),
        (Method::Get, "supervoxels") => supervoxels(labels, req),
        (Method::Get, "supervoxel-sizes") => supervoxel_sizes(labels, req),
        (Method::Get, "existing-labels") => existing_labels(labels),
        (Method::Get, "listlabels") => listlabels(labels, req),
        (Method::Get, "index") => get_index(labels, req),
        (Method::Post, "index") => post_index(ctx, labels, req),
        (Method::Get, "indices") => get_indices(labels, req),
        (Method::Post, "indices") => post_indices(ctx, labels, req),
        (Method::Get, "indices-compressed") => indices_compressed(labels, req),
        (Method::Get, "lastmod") => lastmod(labels, req),
        (Method::Get, "maxlabel") => get_maxlabel(labels),
        (Method::Post, "maxlabel") => post_maxlabel(ctx, labels, req),
        (Method::Get, "nextlabel") => Ok(DataResponse::bytes(
            "application/json",
            // Saturating: blocks may hold u64::MAX, which then can't be allocated past.
            format!(
                "{{\"nextlabel\": {}}}",
                allocation_base(labels)?.saturating_add(1)
            ),
        )),
        (Method::Post, "nextlabel") => post_nextlabel(ctx, labels, req),
        (Method::Post, "set-nextlabel") => set_nextlabel(ctx, labels, req),
        (m, kw) => Err(Error::bad(format!(
            "{} {kw} is not supported by labelmap",
            m.as_str()
        ))),
    }
}

fn json_labels(body: &[u8]) -> Result<Vec<u64>> {
    serde_json::from_slice(body)
        .map_err(|e| Error::bad(format!("body must be a JSON list of labels: {e}")))
}

/// The index holding `label`: its own, or with `supervoxels=true` its body's. Bodies are the
/// supervoxels themselves until proofreading maps them.
pub fn index_for(labels: &Labels, label: u64, supervoxels: bool) -> Result<Option<LabelIndex>> {
    let body = if supervoxels {
        labels.body(label)
    } else {
        label
    };
    if body == 0 {
        return Ok(None);
    }
    labels.index(body)
}

/// Voxels of `label`, or of the supervoxel `label` with `supervoxels=true`.
fn voxels_of(labels: &Labels, label: u64, supervoxels: bool) -> Result<u64> {
    Ok(match index_for(labels, label, supervoxels)? {
        None => 0,
        Some(i) if supervoxels => i.supervoxel_sizes().get(&label).copied().unwrap_or(0),
        Some(i) => i.num_voxels(),
    })
}

fn size(labels: &Labels, req: &DataRequest) -> Result<DataResponse> {
    let label = parse_label(req.one_segment("<label>")?)?;
    match voxels_of(labels, label, req.query.flag("supervoxels")?)? {
        0 => Err(not_found(label)),
        n => Ok(DataResponse::bytes(
            "application/json",
            format!("{{\"voxels\": {n}}}"),
        )),
    }
}

fn sizes(labels: &Labels, req: &DataRequest) -> Result<DataResponse> {
    req.check_hash()?;
    let list = json_labels(&req.body)?;
    let sv = req.query.flag("supervoxels")?;
    let out: Vec<u64> = list
        .par_iter()
        .map(|&l| {
            if l == 0 {
                Ok(0)
            } else {
                voxels_of(labels, l, sv)
            }
        })
        .collect::<Result<_>>()?;
    Ok(DataResponse::json(&serde_json::json!(out)))
}

fn sparsevol_size(labels: &Labels, req: &DataRequest) -> Result<DataResponse> {
    let label = parse_label(req.one_segment("<label>")?)?;
    let supervoxels = req.query.flag("supervoxels")?;
    let index = index_for(labels, label, supervoxels)?.ok_or_else(|| not_found(label))?;
    let svs = [label];
    let only = supervoxels.then_some(&svs[..]);
    let blocks = index.blocks_with(only);
    if blocks.is_empty() {
        return Err(not_found(label));
    }
    let voxels: u64 = match only {
        Some(_) => index.supervoxel_sizes().get(&label).copied().unwrap_or(0),
        None => index.num_voxels(),
    };
    let bs = labels.cfg.block_size.map(|b| b as i64);
    let (mut lo, mut hi) = ([i64::MAX; 3], [i64::MIN; 3]);
    for p in &blocks {
        let c = unpack_block(*p);
        for a in 0..3 {
            lo[a] = lo[a].min(c[a] as i64 * bs[a]);
            hi[a] = hi[a].max((c[a] as i64 + 1) * bs[a] - 1);
        }
    }
    Ok(DataResponse::bytes(
        "application/json",
        format!(
            "{{\"voxels\": {voxels}, \"numblocks\": {}, \"minvoxel\": [{}, {}, {}], \"maxvoxel\": [{}, {}, {}]}}",
            blocks.len(),
            lo[0],
            lo[1],
            lo[2],
            hi[0],
            hi[1],
            hi[2]
        ),
    ))
}

/// The supervoxels of `body` at the labels' version, ascending; `None` when no body has that
/// label (what `GET supervoxels/<body>` answers, also for instances synced to this one).
pub(super) fn body_supervoxels(labels: &Labels, body: u64) -> Result<Option<Vec<u64>>> {
    Ok(index_for(labels, body, false)?.map(|i| i.supervoxel_sizes().into_keys().collect()))
}

fn supervoxels(labels: &Labels, req: &DataRequest) -> Result<DataResponse> {
    let label = parse_label(req.one_segment("<label>")?)?;
    let svs = body_supervoxels(labels, label)?.ok_or_else(|| not_found(label))?;
    Ok(DataResponse::json(&serde_json::json!(svs)))
}

fn supervoxel_sizes(labels: &Labels, req: &DataRequest) -> Result<DataResponse> {
    let label = parse_label(req.one_segment("<label>")?)?;
    let index = index_for(labels, label, false)?.ok_or_else(|| not_found(label))?;
    let (svs, sizes): (Vec<u64>, Vec<u64>) = index.supervoxel_sizes().into_iter().unzip();
    Ok(DataResponse::bytes(
        "application/json",
        format!(
            "{{\n  \"supervoxels\": {},\n  \"sizes\": {}\n}}",
            serde_json::json!(svs),
            serde_json::json!(sizes)
        ),
    ))
}

/// Indexed labels from `start` on, at most `limit` of them, with their index values.
fn scan_labels(labels: &Labels, start: u64, limit: usize, sizes: bool) -> Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    let last = [CLASS_INDEX, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
    labels.scan(&index_key(start), &last, &mut |k, v| {
        let n = if sizes {
            store::decode_index(v)?.num_voxels()
        } else {
            0
        };
        out.push((index_key_label(k)?, n));
        Ok(out.len() < limit)
    })?;
    Ok(out)
}

/// Chunks of labels from `start` on, up to `limit` in all; `encode` turns a chunk into bytes.
struct Listing<F> {
    labels: Labels,
    next: Option<u64>,
    left: u64,
    sizes: bool,
    first: bool,
    encode: F,
}

impl<F: FnMut(&[(u64, u64)], bool) -> Vec<u8>> Iterator for Listing<F> {
    type Item = Result<Bytes>;
    fn next(&mut self) -> Option<Result<Bytes>> {
        let start = self.next?;
        let take = (self.left as usize).min(LIST_CHUNK);
        if take == 0 {
            self.next = None;
            return None;
        }
        match scan_labels(&self.labels, start, take, self.sizes) {
            Err(e) => {
                self.next = None;
                Some(Err(e))
            }
            Ok(chunk) => {
                self.left -= chunk.len() as u64;
                self.next = match chunk.last() {
                    Some((l, _)) if chunk.len() == take => l.checked_add(1),
                    _ => None,
                };
                let bytes = (self.encode)(&chunk, self.first);
                self.first = false;
                Some(Ok(Bytes::from(bytes)))
            }
        }
    }
}

fn existing_labels(labels: &Labels) -> Result<DataResponse> {
    let list = Listing {
        labels: labels.clone(),
        next: Some(1),
        left: u64::MAX,
        sizes: false,
        first: true,
        encode: |chunk: &[(u64, u64)], first: bool| {
            let mut s = String::new();
            for (i, (l, _)) in chunk.iter().enumerate() {
                if !(first && i == 0) {
                    s.push(',');
                }
                s.push_str(&l.to_string());
            }
            s.into_bytes()
        },
    };
    let it = std::iter::once(Ok(Bytes::from_static(b"[")))
        .chain(list)
        .chain(std::iter::once(Ok(Bytes::from_static(b"]"))));
    Ok(DataResponse::stream("application/json", it))
}

fn listlabels(labels: &Labels, req: &DataRequest) -> Result<DataResponse> {
    let num = |name: &str, default: u64| -> Result<u64> {
        match req.query.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| Error::bad(format!("{name}={v:?} must be a non-negative integer"))),
        }
    };
    let start = num("start", 0)?.max(1);
    let number = num("number", MAX_LIST)?;
    if number > MAX_LIST {
        return Err(Error::bad(format!(
            "number={number} is above the limit of {MAX_LIST}"
        )));
    }
    let sizes = req.query.flag("sizes")?;
    let list = Listing {
        labels: labels.clone(),
        next: Some(start),
        left: number,
        sizes,
        first: true,
        encode: move |chunk: &[(u64, u64)], _| {
            let mut out = Vec::with_capacity(chunk.len() * 16);
            for (l, n) in chunk {
                out.extend_from_slice(&l.to_le_bytes());
                if sizes {
                    out.extend_from_slice(&n.to_le_bytes());
                }
            }
            out
        },
    };
    // A failure mid-stream ends the body with four zero u64s (spec §4.4).
    let it = list.map(|r| r.or_else(|_| Ok(Bytes::from_static(&[0u8; 32]))));
    Ok(DataResponse::stream("application/octet-stream", it))
}

fn get_index(labels: &Labels, req: &DataRequest) -> Result<DataResponse> {
    let label = parse_label(req.one_segment("<label>")?)?;
    if req.query.get("mutid").is_some() {
        return Err(Error::bad(
            "mutid= is not supported: Tessera keeps no per-mutation index cache",
        ));
    }
    let index = labels.index(label)?.ok_or_else(|| not_found(label))?;
    if req.query.flag("metadata-only")? {
        return Ok(DataResponse::json(&serde_json::json!({
            "num_voxels": index.num_voxels(),
            "last_mutid": index.last_mutid,
            "last_mod_time": index.last_mod_time,
            "last_mod_user": index.last_mod_user,
            "last_mod_app": index.last_mod_app,
        })));
    }
    Ok(DataResponse::octets(index.encode_to_vec()))
}

fn decode_proto<M: Message + Default>(body: &[u8], what: &str) -> Result<M> {
    M::decode(body).map_err(|e| Error::bad(format!("body is not a {what} protobuf: {e}")))
}

/// Stores or (when it has no blocks) deletes each index; labels must be non-zero.
fn store_indices(ctx: &DataCtx, labels: &Labels, indices: Vec<LabelIndex>) -> Result<()> {
    let mut m = ctx.write();
    for index in &indices {
        if index.label == 0 {
            return Err(Error::bad("a label index names label 0"));
        }
        let key = index_key(index.label);
        if index.blocks.is_empty() {
            delete_into(&mut m.batch, &labels.blocks.view, &key);
        } else {
            put_into(
                &mut m.batch,
                &labels.blocks.view,
                &key,
                &encode_index(index),
            );
        }
    }
    let st = state(ctx);
    let _writes = st.writes.write();
    m.commit()?;
    Ok(())
}

fn post_index(ctx: &DataCtx, labels: &Labels, req: &DataRequest) -> Result<DataResponse> {
    let label = parse_label(req.one_segment("<label>")?)?;
    let index: LabelIndex = decode_proto(&req.body, "LabelIndex")?;
    if index.label != label {
        return Err(Error::bad(format!(
            "the posted index is for label {}, not {label}",
            index.label
        )));
    }
    store_indices(ctx, labels, vec![index])?;
    Ok(DataResponse::empty())
}

fn post_indices(ctx: &DataCtx, labels: &Labels, req: &DataRequest) -> Result<DataResponse> {
    let all: LabelIndices = decode_proto(&req.body, "LabelIndices")?;
    store_indices(ctx, labels, all.indices)?;
    Ok(DataResponse::empty())
}

fn requested_labels(req: &DataRequest) -> Result<Vec<u64>> {
    let list = json_labels(&req.body)?;
    if list.len() > MAX_INDICES {
        return Err(Error::bad(format!(
            "at most {MAX_INDICES} labels per request"
        )));
    }
    if list.contains(&0) {
        return Err(Error::bad("label 0 is the background and has no index"));
    }
    Ok(list)
}

fn get_indices(labels: &Labels, req: &DataRequest) -> Result<DataResponse> {
    let list = requested_labels(req)?;
    let indices = list
        .par_iter()
        .map(|&l| {
            Ok(labels.index(l)?.unwrap_or(LabelIndex {
                label: l,
                ..Default::default()
            }))
        })
        .collect::<Result<_>>()?;
    Ok(DataResponse::octets(
        LabelIndices { indices }.encode_to_vec(),
    ))
}

/// Each label's index as stored (DVID's LZ4 serialization), length-prefixed.
fn indices_compressed(labels: &Labels, req: &DataRequest) -> Result<DataResponse> {
    let list = requested_labels(req)?;
    let found: Vec<Option<Vec<u8>>> = list
        .par_iter()
        .map(|&l| {
            Ok(labels
                .blocks
                .store
                .get(&labels.blocks.view, &index_key(l))?)
        })
        .collect::<Result<_>>()?;
    let mut out = Vec::new();
    for (l, v) in list.iter().zip(found) {
        let v = v.unwrap_or_default();
        out.extend_from_slice(&(v.len() as u64).to_le_bytes());
        out.extend_from_slice(&l.to_le_bytes());
        out.extend_from_slice(&v);
    }
    Ok(DataResponse::octets(out))
}

fn lastmod(labels: &Labels, req: &DataRequest) -> Result<DataResponse> {
    let label = parse_label(req.one_segment("<label>")?)?;
    let i = labels.index(label)?.ok_or_else(|| not_found(label))?;
    let s = |v: &str| serde_json::Value::from(v).to_string();
    Ok(DataResponse::bytes(
        "application/json",
        format!(
            "{{\"mutation id\": {}, \"last mod user\": {}, \"last mod app\": {}, \"last mod time\": {} }}",
            i.last_mutid,
            s(&i.last_mod_user),
            s(&i.last_mod_app),
            s(&i.last_mod_time)
        ),
    ))
}

fn get_maxlabel(labels: &Labels) -> Result<DataResponse> {
    let m =
        max_label(labels)?.ok_or_else(|| Error::bad("No maximum label found for this version"))?;
    Ok(DataResponse::bytes(
        "application/json",
        format!("{{\"maxlabel\": {m}}}"),
    ))
}

/// Every version's own max label.
pub fn version_max_labels(labels: &Labels) -> Result<Vec<(VersionId, u64)>> {
    Ok(labels
        .all_values(&[CLASS_MAX_LABEL])?
        .iter()
        .map(|(v, b)| (*v, store::u64_value(b)))
        .collect())
}

/// The largest max label of any version of the repo.
pub fn max_repo_label(labels: &Labels) -> Result<u64> {
    Ok(version_max_labels(labels)?
        .into_iter()
        .map(|(_, m)| m)
        .max()
        .unwrap_or(0))
}

fn repo_wide(labels: &Labels, class: u8) -> Result<u64> {
    Ok(labels
        .blocks
        .store
        .get(&labels.repo_view(), &[class])?
        .map_or(0, |v| store::u64_value(&v)))
}

/// The NextLabel setting (0: allocate from the repo's max label).
pub fn next_label_setting(labels: &Labels) -> Result<u64> {
    repo_wide(labels, CLASS_NEXT_LABEL)
}

/// The label new allocations count up from.
fn allocation_base(labels: &Labels) -> Result<u64> {
    match next_label_setting(labels)? {
        0 => max_repo_label(labels),
        n => Ok(n),
    }
}

fn post_maxlabel(ctx: &DataCtx, labels: &Labels, req: &DataRequest) -> Result<DataResponse> {
    let n: u64 = req
        .one_segment("<label>")?
        .parse()
        .map_err(|_| Error::bad("maxlabel must be a positive integer"))?;
    if n == 0 || n > MAX_SETTABLE_LABEL {
        return Err(Error::bad(format!("maxlabel {n} must be from 1 to 2^48")));
    }
    let st = state(ctx);
    let _alloc = st.alloc.lock();
    let mut m = ctx.write();
    raise_max_label(&mut m.batch, labels, n)?;
    m.commit()?;
    Ok(DataResponse::empty())
}

/// `POST nextlabel/<count>`: reserves `count` new labels.
fn post_nextlabel(ctx: &DataCtx, labels: &Labels, req: &DataRequest) -> Result<DataResponse> {
    let count: u64 = req
        .one_segment("<count>")?
        .parse()
        .ok()
        .filter(|c| (1..=MAX_SETTABLE_LABEL).contains(c))
        .ok_or_else(|| Error::bad("nextlabel/<count> needs a count from 1 to 2^48"))?;
    let start = allocate(ctx, labels, count)?;
    Ok(DataResponse::bytes(
        "application/json",
        format!("{{\"start\": {start}, \"end\": {}}}", start + count - 1),
    ))
}

/// Reserves `count` new labels and returns the first (spec §4.4 "New label allocation"): from
/// NextLabel + 1 when set, else from the repo's max label + 1; the version's max label rises to
/// the last. Committed at once and synced, as `POST nextlabel` hands the labels to a client.
pub fn allocate(ctx: &DataCtx, labels: &Labels, count: u64) -> Result<u64> {
    allocate_with(ctx, labels, count, Durability::Synced)
}

/// `allocate` for a mutation that commits the labels itself. Committed at once, so a mutation
/// that fails afterwards still consumed them, but not synced on its own: the mutation's synced
/// commit makes it durable (one disk sync per edit, not two). A crash before that loses only
/// labels no committed data uses.
pub fn reserve(ctx: &DataCtx, labels: &Labels, count: u64) -> Result<u64> {
    allocate_with(ctx, labels, count, Durability::Lazy)
}

fn allocate_with(
    ctx: &DataCtx,
    labels: &Labels,
    count: u64,
    durability: Durability,
) -> Result<u64> {
    let st = state(ctx);
    let _alloc = st.alloc.lock();
    let next = next_label_setting(labels)?;
    let base = allocation_base(labels)?;
    // Labels stay below u64::MAX, DVID's range sentinel, so neither sum below can wrap.
    if count == 0 || count >= u64::MAX - base {
        return Err(Error::bad(format!(
            "allocating {count} new labels would overflow the uint64 label space (next label {base})"
        )));
    }
    let start = base + 1;
    let end = base + count;
    let ceiling = repo_wide(labels, CLASS_CEILING)?;
    if ceiling != 0 && end > ceiling {
        return Err(Error::bad(format!(
            "allocating {count} labels from {start} would pass the ceiling {ceiling}"
        )));
    }
    let mut m = ctx.write();
    m.batch.durability = durability;
    if next != 0 {
        put_into(
            &mut m.batch,
            &labels.repo_view(),
            &[CLASS_NEXT_LABEL],
            &end.to_le_bytes(),
        );
    }
    raise_max_label(&mut m.batch, labels, end)?;
    m.commit()?;
    Ok(start)
}

fn set_nextlabel(ctx: &DataCtx, labels: &Labels, req: &DataRequest) -> Result<DataResponse> {
    let label: u64 = req
        .one_segment("<label>")?
        .parse()
        .map_err(|_| Error::bad("set-nextlabel/<label> needs a non-negative integer"))?;
    if label == 0 {
        return Err(Error::bad(
            "label 0 is protected background value and cannot be used as next label",
        ));
    }
    if label == u64::MAX {
        return Err(Error::bad(format!(
            "next label start {label} is reserved and would overflow uint64 label space"
        )));
    }
    let ceiling = match req.query.get("ceiling") {
        None => None,
        Some(c) => Some(
            c.parse::<u64>()
                .map_err(|_| Error::bad("ceiling must be a non-negative integer"))?,
        ),
    };
    if let Some(c) = ceiling
        && c != 0
        && c <= label
    {
        return Err(Error::bad(format!(
            "ceiling {c} must be above the next label {label}"
        )));
    }
    let st = state(ctx);
    let _alloc = st.alloc.lock();
    let mut m = ctx.write();
    let view = labels.repo_view();
    put_into(
        &mut m.batch,
        &view,
        &[CLASS_NEXT_LABEL],
        &label.to_le_bytes(),
    );
    if let Some(c) = ceiling {
        put_into(&mut m.batch, &view, &[CLASS_CEILING], &c.to_le_bytes());
    }
    m.commit()?;
    Ok(DataResponse::empty())
}

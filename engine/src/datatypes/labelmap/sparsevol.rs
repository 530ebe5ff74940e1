//! Sparse volumes (spec §5.1): a body's voxels as runs along x, as a block mask, or as the
//! coarse list of its blocks, found through the label index.

use std::collections::BTreeSet;

use super::index::LabelIndex;
use super::store::{self, Labels, index_key, index_key_label};
use super::{no_voxels as not_found, scale};
use crate::block::geom::{BlockCoord, parse_point, unpack_block, zyx};
use crate::compute::{Run, merge_runs};
use crate::datatype::parse_label;
use crate::datatype::{DataRequest, DataResponse, Query};
use crate::{Error, Result};

/// Blocks decoded at once while finding runs.
const BATCH_BLOCKS: usize = 64;

/// Voxel bounds from `minx … maxz` (inclusive; absent sides are open).
#[derive(Debug, Clone, Copy)]
struct Bounds {
    min: [i64; 3],
    max: [i64; 3],
}

impl Bounds {
    const OPEN: Bounds = Bounds {
        min: [i64::MIN; 3],
        max: [i64::MAX; 3],
    };

    fn parse(q: &Query) -> Result<Bounds> {
        let mut b = Bounds::OPEN;
        for (a, axis) in ["x", "y", "z"].iter().enumerate() {
            for (lo, slot) in [(true, "min"), (false, "max")] {
                let name = format!("{slot}{axis}");
                if let Some(v) = q.get(&name) {
                    let n: i32 = v
                        .parse()
                        .map_err(|_| Error::bad(format!("{name}={v:?} must be an integer")))?;
                    if lo {
                        b.min[a] = n as i64;
                    } else {
                        b.max[a] = n as i64;
                    }
                }
            }
        }
        Ok(b)
    }

    fn touches_block(&self, c: BlockCoord, bs: [usize; 3]) -> bool {
        (0..3).all(|a| {
            let lo = c[a] as i64 * bs[a] as i64;
            let hi = lo + bs[a] as i64 - 1;
            hi >= self.min[a] && lo <= self.max[a]
        })
    }

    fn clip(&self, r: Run) -> Option<Run> {
        let (y, z) = (r.y as i64, r.z as i64);
        if y < self.min[1] || y > self.max[1] || z < self.min[2] || z > self.max[2] {
            return None;
        }
        let x0 = (r.x as i64).max(self.min[0]);
        let x1 = (r.x as i64 + r.len as i64 - 1).min(self.max[0]);
        (x0 <= x1).then(|| Run::new(x0 as i32, r.y, r.z, (x1 - x0 + 1) as i32))
    }
}

/// Which voxels of a body a request wants.
struct Wanted {
    /// Supervoxels whose voxels belong to the result, sorted.
    svs: Vec<u64>,
    /// Blocks at the requested scale that may hold them, in (z, y, x) order.
    blocks: Vec<BlockCoord>,
}

impl Wanted {
    fn contains(&self, v: u64) -> bool {
        v != 0 && self.svs.binary_search(&v).is_ok()
    }
}

/// The body's (or with `supervoxels`, the supervoxel's) blocks at `scale` that meet `bounds`;
/// `None` when the label has no index or no block meets the bounds.
fn wanted(
    labels: &Labels,
    label: u64,
    supervoxels: bool,
    scale: u8,
    bounds: &Bounds,
) -> Result<Option<Wanted>> {
    let Some(index) = super::labels::index_for(labels, label, supervoxels)? else {
        return Ok(None);
    };
    let svs: Vec<u64> = if supervoxels {
        vec![label]
    } else {
        index.supervoxel_sizes().into_keys().collect()
    };
    let only = supervoxels.then_some(svs.as_slice());
    let bs = labels.cfg.block_size;
    let blocks: BTreeSet<(i32, i32, i32)> = index
        .blocks_with(only)
        .into_iter()
        .map(|p| unpack_block(p).map(|v| v >> scale))
        .filter(|c| bounds.touches_block(*c, bs))
        .map(|c| zyx(&c))
        .collect();
    if blocks.is_empty() {
        return Ok(None);
    }
    Ok(Some(Wanted {
        svs,
        blocks: blocks.into_iter().map(|(z, y, x)| [x, y, z]).collect(),
    }))
}

/// Decodes the wanted blocks batch by batch, handing each with its coordinate to `visit`.
fn each_block(
    labels: &Labels,
    scale: u8,
    w: &Wanted,
    visit: &mut dyn FnMut(BlockCoord, &[u64]),
) -> Result<()> {
    let bv = labels.cfg.block_voxels();
    let mut buf = Vec::new();
    for batch in w.blocks.chunks(BATCH_BLOCKS) {
        let (coords, stored): (Vec<BlockCoord>, Vec<Vec<u8>>) = batch
            .iter()
            .zip(labels.voxel_blocks().get_many(scale, batch)?)
            .filter_map(|(c, s)| s.map(|s| (*c, s)))
            .unzip();
        buf.resize(coords.len() * bv, 0);
        labels.decode_stored(&stored, &mut buf)?;
        for (c, block) in coords.iter().zip(buf.chunks(bv)) {
            visit(*c, block);
        }
    }
    Ok(())
}

/// Runs of wanted voxels, sorted by (z, y, x), runs touching across block faces joined.
fn runs(labels: &Labels, scale: u8, w: &Wanted, bounds: &Bounds) -> Result<Vec<Run>> {
    let bs = labels.cfg.block_size;
    let mut out = Vec::new();
    each_block(labels, scale, w, &mut |c, block| {
        let o: [i32; 3] = std::array::from_fn(|a| c[a] * bs[a] as i32);
        for z in 0..bs[2] {
            for y in 0..bs[1] {
                let row = &block[(z * bs[1] + y) * bs[0]..][..bs[0]];
                let mut x = 0;
                while x < bs[0] {
                    if !w.contains(row[x]) {
                        x += 1;
                        continue;
                    }
                    let start = x;
                    while x < bs[0] && w.contains(row[x]) {
                        x += 1;
                    }
                    let r = Run::new(
                        o[0] + start as i32,
                        o[1] + y as i32,
                        o[2] + z as i32,
                        (x - start) as i32,
                    );
                    if let Some(r) = bounds.clip(r) {
                        out.push(r);
                    }
                }
            }
        }
    })?;
    Ok(merge_runs(out))
}

/// The legacy RLE encoding: 12-byte header, then `x y z length` per run.
fn encode_rles(runs: &[Run], header: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + 16 * runs.len());
    if header {
        out.extend_from_slice(&[0, 3, 0, 0]);
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(runs.len() as u32).to_le_bytes());
    }
    for r in runs {
        for v in [r.x, r.y, r.z, r.len] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

/// The "blocks" format: per block a flag and, when mixed, per 8³ sub-block a flag and a
/// 512-bit mask (bit i of byte j is voxel 8j + i, x fastest).
fn encode_blocks(
    labels: &Labels,
    scale: u8,
    label: u64,
    w: &Wanted,
    bounds: &Bounds,
) -> Result<Vec<u8>> {
    let bs = labels.cfg.block_size;
    let g = bs.map(|b| b / 8);
    let mut out = Vec::new();
    for v in g {
        out.extend_from_slice(&(v as u32).to_le_bytes());
    }
    out.extend_from_slice(&label.to_le_bytes());
    each_block(labels, scale, w, &mut |c, block| {
        let o: [i64; 3] = std::array::from_fn(|a| c[a] as i64 * bs[a] as i64);
        let inside = |x: usize, y: usize, z: usize| {
            let p = [o[0] + x as i64, o[1] + y as i64, o[2] + z as i64];
            w.contains(block[(z * bs[1] + y) * bs[0] + x])
                && (0..3).all(|a| p[a] >= bounds.min[a] && p[a] <= bounds.max[a])
        };
        for v in c.iter().zip(&bs).map(|(c, b)| *c * *b as i32) {
            out.extend_from_slice(&v.to_le_bytes());
        }
        let flag_at = out.len();
        out.push(2);
        let mut all = (true, true);
        for sz in 0..g[2] {
            for sy in 0..g[1] {
                for sx in 0..g[0] {
                    let mut mask = [0u8; 64];
                    let mut n = 0;
                    for z in 0..8 {
                        for y in 0..8 {
                            for x in 0..8 {
                                if inside(sx * 8 + x, sy * 8 + y, sz * 8 + z) {
                                    let i = z * 64 + y * 8 + x;
                                    mask[i / 8] |= 1 << (i % 8);
                                    n += 1;
                                }
                            }
                        }
                    }
                    all.0 &= n == 0;
                    all.1 &= n == 512;
                    match n {
                        0 => out.push(0),
                        512 => out.push(1),
                        _ => {
                            out.push(2);
                            out.extend_from_slice(&mask);
                        }
                    }
                }
            }
        }
        if all.0 || all.1 {
            out.truncate(flag_at);
            out.push(if all.1 { 1 } else { 0 });
        }
    })?;
    Ok(out)
}

fn compress(body: Vec<u8>, q: &Query) -> Result<Vec<u8>> {
    match q.get("compression") {
        None | Some("") => Ok(body),
        Some("lz4") => Ok(lz4_flex::block::compress(&body)),
        Some("gzip") => Ok(crate::block::stored::gzip(&body, 6)),
        Some(other) => Err(Error::bad(format!(
            "sparsevol compression {other:?}: use lz4 or gzip"
        ))),
    }
}

fn sparsevol_of(labels: &Labels, label: u64, req: &DataRequest) -> Result<DataResponse> {
    let q = &req.query;
    let scale = scale(&labels.cfg, q)?;
    let bounds = Bounds::parse(q)?;
    let exact = q.get("exact").is_none_or(|v| v != "false");
    let w = wanted(labels, label, q.flag("supervoxels")?, scale, &bounds)?
        .ok_or_else(|| not_found(label))?;
    // Without exact clipping, whole blocks meeting the bounds are returned.
    let clip = if exact { bounds } else { Bounds::OPEN };
    let body = match q.get("format").unwrap_or("rles") {
        "rles" => encode_rles(&runs(labels, scale, &w, &clip)?, true),
        "srles" => encode_rles(&runs(labels, scale, &w, &clip)?, false),
        "blocks" => encode_blocks(labels, scale, label, &w, &clip)?,
        other => {
            return Err(Error::bad(format!(
                "sparsevol format {other:?}: use rles, srles or blocks"
            )));
        }
    };
    Ok(DataResponse::octets(compress(body, q)?))
}

pub fn get(labels: &Labels, req: &DataRequest) -> Result<DataResponse> {
    let label = parse_label(req.one_segment("<label>")?)?;
    sparsevol_of(labels, label, req)
}

/// `HEAD sparsevol/<label>`: 200 when the label has voxels (within the bounds), else 204.
pub fn head(labels: &Labels, req: &DataRequest) -> Result<DataResponse> {
    let label = parse_label(req.one_segment("<label>")?)?;
    let bounds = Bounds::parse(&req.query)?;
    let found = wanted(labels, label, req.query.flag("supervoxels")?, 0, &bounds)?;
    Ok(DataResponse::empty().with_status(if found.is_some() { 200 } else { 204 }))
}

pub fn by_point(labels: &Labels, req: &DataRequest) -> Result<DataResponse> {
    let p = parse_point(req.one_segment("<x_y_z>")?, "point")?;
    let label = labels.voxels_at(0, &[p])?[0];
    if label == 0 {
        return Err(Error::bad(format!(
            "the voxel at {p:?} is background (label 0)"
        )));
    }
    sparsevol_of(labels, label, req)
}

/// Block-coordinate runs along x of an index's blocks, sorted by (z, y, x).
fn coarse_runs(
    index: &LabelIndex,
    only: Option<&[u64]>,
    bounds: &Bounds,
    bs: [usize; 3],
) -> Vec<Run> {
    let blocks = index
        .blocks_with(only)
        .into_iter()
        .map(unpack_block)
        .filter(|c| bounds.touches_block(*c, bs))
        .map(|c| Run::new(c[0], c[1], c[2], 1))
        .collect();
    merge_runs(blocks)
}

pub fn coarse(labels: &Labels, req: &DataRequest) -> Result<DataResponse> {
    let label = parse_label(req.one_segment("<label>")?)?;
    let supervoxels = req.query.flag("supervoxels")?;
    let index =
        super::labels::index_for(labels, label, supervoxels)?.ok_or_else(|| not_found(label))?;
    let svs = [label];
    let only = supervoxels.then_some(&svs[..]);
    let runs = coarse_runs(
        &index,
        only,
        &Bounds::parse(&req.query)?,
        labels.cfg.block_size,
    );
    if runs.is_empty() {
        return Err(not_found(label));
    }
    Ok(DataResponse::octets(encode_rles(&runs, true)))
}

/// `GET sparsevols-coarse/<begin>/<end>`: for each indexed label in the range, `u64 label,
/// i32 runs`, then the runs.
pub fn coarse_range(labels: &Labels, req: &DataRequest) -> Result<DataResponse> {
    let [beg, end] = req.path.as_slice() else {
        return Err(Error::bad(
            "expected sparsevols-coarse/<begin label>/<end label>",
        ));
    };
    let (beg, end) = (parse_label(beg)?, parse_label(end)?);
    if end < beg {
        return Err(Error::bad(format!(
            "end label {end} is below begin label {beg}"
        )));
    }
    let bs = labels.cfg.block_size;
    let mut out = Vec::new();
    labels.scan(&index_key(beg), &index_key(end), &mut |k, v| {
        let (l, index) = (index_key_label(k)?, store::decode_index(v)?);
        let runs = coarse_runs(&index, None, &Bounds::OPEN, bs);
        out.extend_from_slice(&l.to_le_bytes());
        out.extend_from_slice(&(runs.len() as i32).to_le_bytes());
        out.extend_from_slice(&encode_rles(&runs, false));
        Ok(true)
    })?;
    Ok(DataResponse::octets(out))
}

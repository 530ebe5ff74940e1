//! Voxel endpoints: `raw` and `isotropic` (3-D volumes and 2-D PNG slices), `label`, `labels`,
//! and the block-aligned `POST raw`.

use std::io::{Read, Write as _};

use bytes::Bytes;
use rayon::prelude::*;

use super::ingest::{Mode, Write};
use super::state::state;
use super::store::Labels;
use super::{cseg, scale};
use crate::block::geom::{BlockCoord, VoxelBox, parse_point, parse_size};
use crate::datatype::DataCtx;
use crate::datatype::{DataRequest, DataResponse};
use crate::{Error, Result};

/// Output produced per streamed chunk of a 3-D read, so a read of any size holds a bounded
/// amount in memory.
const CHUNK_BYTES: usize = 64 << 20;

/// Largest response that has to be built whole (lz4, compressed_segmentation, PNG).
const MAX_WHOLE_BYTES: usize = 1 << 30;

/// Which axes a request's `<dims>` names.
enum Dims {
    Volume,
    /// A 2-D slice over two of the axes (x=0, y=1, z=2).
    Slice(usize, usize),
}

fn parse_dims(s: &str) -> Result<Dims> {
    match s {
        "0_1_2" => Ok(Dims::Volume),
        "0_1" | "xy" => Ok(Dims::Slice(0, 1)),
        "0_2" | "xz" => Ok(Dims::Slice(0, 2)),
        "1_2" | "yz" => Ok(Dims::Slice(1, 2)),
        _ => Err(Error::bad(format!(
            "dims {s:?} must be 0_1_2 (a volume) or 0_1, 0_2, 1_2 (xy, xz, yz slices)"
        ))),
    }
}

/// `<dims>/<size>/<offset>` → the box and its dims.
fn parse_geometry(path: &[String]) -> Result<(Dims, VoxelBox)> {
    if path.len() < 3 {
        return Err(Error::bad(
            "expected <dims>/<size>/<offset>, e.g. 0_1_2/64_64_64/0_0_0",
        ));
    }
    let dims = parse_dims(&path[0])?;
    let offset = parse_point(&path[2], "offset")?;
    let size = match dims {
        Dims::Volume => {
            let s = parse_size(&path[1], 3, "size")?;
            [s[0], s[1], s[2]]
        }
        Dims::Slice(a, b) => {
            let s = parse_size(&path[1], 2, "size")?;
            let mut size = [1; 3];
            size[a] = s[0];
            size[b] = s[1];
            size
        }
    };
    Ok((dims, VoxelBox::new(offset, size)?))
}

/// Fills `out` with the voxels of `bx` whose z lies in `z0..z1` (x fastest, then y, then z),
/// reading the blocks at `scale`; absent blocks read as 0.
fn fill_planes(
    labels: &Labels,
    scale: u8,
    bx: &VoxelBox,
    z0: i64,
    z1: i64,
    out: &mut [u64],
) -> Result<()> {
    out.fill(0);
    let bs = labels.cfg.block_size;
    let block_voxels = labels.cfg.block_voxels();
    let sub = VoxelBox::new(
        [bx.min[0], bx.min[1], z0],
        [bx.size[0], bx.size[1], (z1 - z0) as usize],
    )?;
    let (lo, hi) = sub.block_range(bs);
    let per_batch = labels.blocks_per_batch();
    let mut decoded = Vec::new();
    for bz in lo[2]..=hi[2] {
        for by in lo[1]..=hi[1] {
            let mut coords: Vec<BlockCoord> = Vec::new();
            let mut values: Vec<Vec<u8>> = Vec::new();
            labels
                .blocks
                .row(scale, bz, by, lo[0], hi[0], &mut |c, v| {
                    coords.push(c);
                    values.push(v.to_vec());
                    Ok(())
                })?;
            for (cs, vs) in coords.chunks(per_batch).zip(values.chunks(per_batch)) {
                decoded.resize(cs.len() * block_voxels, 0);
                labels.decode_mapped(vs, &mut decoded)?;
                for (c, block) in cs.iter().zip(decoded.chunks(block_voxels)) {
                    copy_block(block, *c, bs, &sub, out);
                }
            }
        }
    }
    Ok(())
}

/// Copies the part of one decoded block that lies inside `bx` into `out` (laid out as `bx`).
fn copy_block(block: &[u64], c: BlockCoord, bs: [usize; 3], bx: &VoxelBox, out: &mut [u64]) {
    let origin: [i64; 3] = std::array::from_fn(|a| c[a] as i64 * bs[a] as i64);
    let end = bx.end();
    let lo: [i64; 3] = std::array::from_fn(|a| origin[a].max(bx.min[a]));
    let hi: [i64; 3] = std::array::from_fn(|a| (origin[a] + bs[a] as i64).min(end[a]));
    if (0..3).any(|a| lo[a] >= hi[a]) {
        return;
    }
    let n = (hi[0] - lo[0]) as usize;
    for z in lo[2]..hi[2] {
        for y in lo[1]..hi[1] {
            let src = (((z - origin[2]) as usize * bs[1] + (y - origin[1]) as usize) * bs[0])
                + (lo[0] - origin[0]) as usize;
            let dst = (((z - bx.min[2]) as usize * bx.size[1] + (y - bx.min[1]) as usize)
                * bx.size[0])
                + (lo[0] - bx.min[0]) as usize;
            out[dst..dst + n].copy_from_slice(&block[src..src + n]);
        }
    }
}

/// The whole box in memory, for responses that must be built whole.
pub fn read_box(labels: &Labels, scale: u8, bx: &VoxelBox) -> Result<Vec<u64>> {
    if bx.voxels().saturating_mul(8) > MAX_WHOLE_BYTES {
        return Err(Error::bad(format!(
            "a {:?} box is too large for this response format (at most {MAX_WHOLE_BYTES} bytes); \
             request it uncompressed, which streams, or in smaller pieces",
            bx.size
        )));
    }
    let mut out = vec![0u64; bx.voxels()];
    fill_planes(labels, scale, bx, bx.min[2], bx.end()[2], &mut out)?;
    Ok(out)
}

fn le_bytes(v: &[u64]) -> Vec<u8> {
    // Labels are little-endian on the wire, as in memory on every target we build for.
    bytemuck::cast_slice(v).to_vec()
}

/// The planes of a 3-D read, chunk by chunk.
struct Planes {
    labels: Labels,
    scale: u8,
    bx: VoxelBox,
    z: i64,
}

impl Iterator for Planes {
    type Item = Result<Bytes>;
    fn next(&mut self) -> Option<Result<Bytes>> {
        let end = self.bx.end()[2];
        if self.z >= end {
            return None;
        }
        let plane = self.bx.size[0] * self.bx.size[1];
        let bz = self.labels.cfg.block_size[2] as i64;
        let fits = (CHUNK_BYTES / (plane * 8)).max(1) as i64;
        let next_block = (self.z.div_euclid(bz) + 1) * bz;
        let z1 = (self.z + fits).min(next_block).min(end);
        let mut out = vec![0u64; plane * (z1 - self.z) as usize];
        let r = fill_planes(&self.labels, self.scale, &self.bx, self.z, z1, &mut out);
        self.z = if r.is_ok() { z1 } else { end };
        Some(r.map(|()| Bytes::from(le_bytes(&out))))
    }
}

/// Gzips a stream of chunks as it goes.
struct Gzipped<I> {
    inner: I,
    enc: Option<flate2::write::GzEncoder<Vec<u8>>>,
}

impl<I: Iterator<Item = Result<Bytes>>> Iterator for Gzipped<I> {
    type Item = Result<Bytes>;
    fn next(&mut self) -> Option<Result<Bytes>> {
        let enc = self.enc.as_mut()?;
        match self.inner.next() {
            Some(Ok(chunk)) => {
                enc.write_all(&chunk).expect("writing to a Vec");
                Some(Ok(Bytes::from(std::mem::take(enc.get_mut()))))
            }
            Some(Err(e)) => {
                self.enc = None;
                Some(Err(e))
            }
            None => {
                let enc = self.enc.take()?;
                Some(Ok(Bytes::from(enc.finish().expect("writing to a Vec"))))
            }
        }
    }
}

pub fn get(labels: &Labels, req: &DataRequest) -> Result<DataResponse> {
    let (dims, bx) = parse_geometry(&req.path)?;
    let scale = scale(&labels.cfg, &req.query)?;
    let compression = req.query.get("compression").unwrap_or("");
    match dims {
        Dims::Volume => {
            if req.path.len() > 3 {
                return Err(Error::bad("a 3-D read takes no format segment"));
            }
            if req.keyword == "isotropic" && !isotropic_voxels(labels) {
                return Err(Error::bad(
                    "isotropic 3-D reads are only served when the voxels are isotropic",
                ));
            }
            let planes = Planes {
                labels: labels.clone(),
                scale,
                bx,
                z: bx.min[2],
            };
            match compression {
                "" => Ok(DataResponse::stream("application/octet-stream", planes)),
                "gzip" => Ok(DataResponse::stream(
                    "application/octet-stream",
                    Gzipped {
                        inner: planes,
                        enc: Some(flate2::write::GzEncoder::new(
                            Vec::new(),
                            flate2::Compression::fast(),
                        )),
                    },
                )),
                "lz4" => {
                    let v = read_box(labels, scale, &bx)?;
                    Ok(DataResponse::octets(lz4_flex::block::compress(&le_bytes(
                        &v,
                    ))))
                }
                "google" | "googlegzip" => {
                    let v = read_box(labels, scale, &bx)?;
                    let enc = cseg::try_encode(&v, bx.size).ok_or_else(|| {
                        Error::bad("this box holds too many labels for compressed_segmentation; request smaller pieces")
                    })?;
                    if compression == "google" {
                        Ok(DataResponse::octets(enc))
                    } else {
                        Ok(DataResponse::octets(crate::block::stored::gzip(&enc, 6))
                            .with_header("Content-Encoding", "gzip"))
                    }
                }
                other => Err(Error::bad(format!(
                    "compression {other:?} is not offered for raw label reads: use lz4, gzip, google or googlegzip"
                ))),
            }
        }
        Dims::Slice(a, b) => {
            let format = req.path.get(3).map(String::as_str).unwrap_or("png");
            if format != "png" {
                return Err(Error::bad(format!(
                    "label slices are served as png only, not {format:?}"
                )));
            }
            let (w, h) = (bx.size[a], bx.size[b]);
            let pixels = if req.keyword == "isotropic" {
                isotropic_slice(labels, scale, &bx, a, b)?
            } else {
                read_box(labels, scale, &bx)?
            };
            Ok(DataResponse::bytes("image/png", png_labels(&pixels, w, h)?))
        }
    }
}

fn isotropic_voxels(labels: &Labels) -> bool {
    let r = labels.cfg.voxel_size;
    r[0] == r[1] && r[1] == r[2]
}

/// A slice resampled to square pixels: pixel i along an axis whose voxels are k times the
/// finest of the two axes samples voxel floor(i / k) from the offset (nearest neighbour).
fn isotropic_slice(
    labels: &Labels,
    scale: u8,
    bx: &VoxelBox,
    a: usize,
    b: usize,
) -> Result<Vec<u64>> {
    let r = labels.cfg.voxel_size;
    let fine = r[a].min(r[b]);
    let src_len = |axis: usize| ((bx.size[axis] as f64 * fine / r[axis]).ceil() as usize).max(1);
    let mut src_size = bx.size;
    src_size[a] = src_len(a);
    src_size[b] = src_len(b);
    let src_box = VoxelBox::new(bx.min, src_size)?;
    let src = read_box(labels, scale, &src_box)?;
    let (w, h) = (bx.size[a], bx.size[b]);
    let sample =
        |i: usize, axis: usize| ((i as f64 * fine / r[axis]) as usize).min(src_size[axis] - 1);
    let mut out = Vec::with_capacity(w * h);
    for j in 0..h {
        for i in 0..w {
            out.push(src[sample(j, b) * src_size[a] + sample(i, a)]);
        }
    }
    Ok(out)
}

/// DVID's label slice PNG: 16-bit RGBA, so each pixel's 8 bytes are the label's little-endian
/// bytes, in order.
fn png_labels(pixels: &[u64], w: usize, h: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let (w32, h32) = (u32::try_from(w), u32::try_from(h));
    let (Ok(w32), Ok(h32)) = (w32, h32) else {
        return Err(Error::bad("slice is too large for a PNG"));
    };
    let mut enc = png::Encoder::new(&mut out, w32, h32);
    enc.set_color(png::ColorType::Rgba);
    enc.set_depth(png::BitDepth::Sixteen);
    let mut writer = enc
        .write_header()
        .map_err(|e| Error::Internal(format!("png: {e}")))?;
    writer
        .write_image_data(&le_bytes(pixels))
        .map_err(|e| Error::Internal(format!("png: {e}")))?;
    writer
        .finish()
        .map_err(|e| Error::Internal(format!("png: {e}")))?;
    Ok(out)
}

/// `POST raw/0_1_2/<size>/<offset>`: a block-aligned supervoxel volume. The body is read one
/// layer of blocks (a z-slab) at a time while the previous slab is processed, so the volume
/// is never held whole and receiving overlaps computing.
pub fn post(ctx: &DataCtx, labels: Labels, req: &DataRequest) -> Result<DataResponse> {
    let (dims, bx) = parse_geometry(&req.path)?;
    if req.keyword != "raw" || !matches!(dims, Dims::Volume) {
        return Err(Error::bad(
            "only 3-D raw volumes (raw/0_1_2/...) can be posted",
        ));
    }
    if req.query.get("scale").is_some_and(|s| s != "0") {
        return Err(Error::bad(
            "POST raw writes scale 0; lower scales are computed from it",
        ));
    }
    let bs = labels.cfg.block_size;
    if !bx.is_block_aligned(bs) {
        return Err(Error::bad(format!(
            "POST raw must be block aligned: offset {:?} and size {:?} must be multiples of the block size {bs:?}",
            bx.min, bx.size
        )));
    }
    bx.check_storable(bs)?;
    let want = bx.voxels() * 8;
    let wrong_length = |got: String| {
        Error::bad(format!(
            "body holds {got} bytes but a {:?} volume of uint64 labels is {want} bytes",
            bx.size
        ))
    };
    let decompressed: Option<Vec<u8>> = match req.query.get("compression") {
        None | Some("") => None,
        Some(c @ ("lz4" | "gzip")) => {
            let mut packed = Vec::new();
            req.body_reader()
                .read_to_end(&mut packed)
                .map_err(body_error)?;
            let out = if c == "lz4" {
                lz4_flex::block::decompress(&packed, want).map_err(|e| {
                    Error::bad(format!("body is not an LZ4 block of {want} bytes: {e}"))
                })?
            } else {
                crate::block::stored::gunzip(&packed, want).map_err(|e| {
                    Error::bad(format!("body is not gzip of at most {want} bytes: {e}"))
                })?
            };
            Some(out)
        }
        Some(other) => {
            return Err(Error::bad(format!(
                "POST raw compression {other:?}: use lz4 or gzip"
            )));
        }
    };
    let mut body: Box<dyn Read + Send + '_> = match &decompressed {
        Some(v) => Box::new(&v[..]),
        None => {
            if let Some(n) = req
                .header("content-length")
                .and_then(|v| v.parse::<usize>().ok())
                && n != want
            {
                return Err(wrong_length(n.to_string()));
            }
            req.body_reader()
        }
    };
    let change = ctx.mutation()?;
    let st = state(ctx);
    let _writes = st.writes.write();
    let mapping = labels.mapping.clone();
    let mode = Mode {
        scale: 0,
        index: labels.cfg.indexed_labels,
        track: true,
        downres: labels.cfg.max_downres_level > 0,
    };
    let block_voxels = labels.cfg.block_voxels();
    let per_batch = labels.blocks_per_batch();
    let (lo, hi) = bx.block_range(bs);
    let slab_bytes = bx.size[0] * bx.size[1] * bs[2] * 8;
    let layers = (hi[2] - lo[2] + 1) as usize;
    let mut write = Write::new(labels, mode, change, mapping);
    let mut buf = vec![0u64; per_batch.min(bx.voxels() / block_voxels) * block_voxels];
    std::thread::scope(|s| -> Result<()> {
        // Two slab buffers travel between the reader and this thread.
        let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<std::io::Result<Vec<u8>>>(1);
        let (free_tx, free_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(2);
        free_tx.send(Vec::new()).expect("fresh channel");
        free_tx.send(Vec::new()).expect("fresh channel");
        s.spawn(move || {
            for _ in 0..layers {
                let Ok(mut slab) = free_rx.recv() else { return };
                slab.resize(slab_bytes, 0);
                let r = body.read_exact(&mut slab).map(|()| slab);
                let failed = r.is_err();
                if full_tx.send(r).is_err() || failed {
                    return;
                }
            }
            let mut extra = [0u8; 1];
            let r = match body.read(&mut extra) {
                Ok(0) => Ok(Vec::new()),
                Ok(_) => Err(std::io::Error::from(std::io::ErrorKind::InvalidData)),
                Err(e) => Err(e),
            };
            let _ = full_tx.send(r);
        });
        for bz in lo[2]..=hi[2] {
            let slab = full_rx
                .recv()
                .map_err(|_| Error::Internal("body reader stopped".into()))?
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::UnexpectedEof => wrong_length("fewer".into()),
                    _ => body_error(e),
                })?;
            let slab_box = VoxelBox {
                min: [bx.min[0], bx.min[1], bz as i64 * bs[2] as i64],
                size: [bx.size[0], bx.size[1], bs[2]],
            };
            let coords: Vec<BlockCoord> = (lo[1]..=hi[1])
                .flat_map(|y| (lo[0]..=hi[0]).map(move |x| [x, y, bz]))
                .collect();
            for batch in coords.chunks(per_batch) {
                let voxels = &mut buf[..batch.len() * block_voxels];
                voxels
                    .par_chunks_mut(block_voxels)
                    .zip(batch)
                    .for_each(|(dst, c)| gather_block(&slab, &slab_box, bs, *c, dst));
                write.add(batch, voxels, None)?;
            }
            // The reader may have stopped after an error; the next recv reports it.
            let _ = free_tx.send(slab);
        }
        match full_rx.recv() {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                Err(wrong_length("more".into()))
            }
            Ok(Err(e)) => Err(body_error(e)),
            Err(_) => Err(Error::Internal("body reader stopped".into())),
        }
    })?;
    write.commit()?;
    Ok(DataResponse::empty())
}

/// A failure reading the request body: over the size limit, or the client's fault.
fn body_error(e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::FileTooLarge => Error::PayloadTooLarge(e.to_string()),
        _ => Error::bad(format!("reading the request body: {e}")),
    }
}

/// Copies block `c` out of a raw little-endian volume laid out as `bx`.
fn gather_block(body: &[u8], bx: &VoxelBox, bs: [usize; 3], c: BlockCoord, dst: &mut [u64]) {
    let local: [usize; 3] =
        std::array::from_fn(|a| (c[a] as i64 * bs[a] as i64 - bx.min[a]) as usize);
    for z in 0..bs[2] {
        for y in 0..bs[1] {
            let src = (((local[2] + z) * bx.size[1] + local[1] + y) * bx.size[0] + local[0]) * 8;
            let row = &body[src..src + bs[0] * 8];
            let out = &mut dst[(z * bs[1] + y) * bs[0]..][..bs[0]];
            for (o, b) in out.iter_mut().zip(row.chunks_exact(8)) {
                *o = u64::from_le_bytes(b.try_into().expect("8 bytes"));
            }
        }
    }
}

/// The label at one point, reading (and decoding) its block.
pub(super) fn label_at(
    labels: &Labels,
    scale: u8,
    p: [i64; 3],
    cache: &mut Option<(BlockCoord, Vec<u64>)>,
) -> Result<u64> {
    let bs = labels.cfg.block_size;
    let c: BlockCoord = std::array::from_fn(|a| p[a].div_euclid(bs[a] as i64) as i32);
    if cache.as_ref().is_none_or(|(cc, _)| *cc != c) {
        let block = match labels.blocks.get(scale, c)? {
            None => Vec::new(),
            Some(s) => {
                let mut out = vec![0u64; labels.cfg.block_voxels()];
                labels.decode_mapped(&[s], &mut out)?;
                out
            }
        };
        *cache = Some((c, block));
    }
    let block = &cache.as_ref().expect("just filled").1;
    if block.is_empty() {
        return Ok(0);
    }
    let l: [usize; 3] = std::array::from_fn(|a| p[a].rem_euclid(bs[a] as i64) as usize);
    Ok(block[(l[2] * bs[1] + l[1]) * bs[0] + l[0]])
}

/// `GET label/<x_y_z>` → `{"Label": n}`.
pub fn label(labels: &Labels, req: &DataRequest) -> Result<DataResponse> {
    let p = parse_point(super::one_segment(req, "<x_y_z>")?, "point")?;
    let scale = scale(&labels.cfg, &req.query)?;
    let l = label_at(labels, scale, p, &mut None)?;
    Ok(DataResponse::bytes(
        "application/json",
        format!("{{\"Label\": {l}}}"),
    ))
}

/// `GET labels` with a JSON body `[[x,y,z],…]` → `[n,…]`.
pub fn labels(labels: &Labels, req: &DataRequest) -> Result<DataResponse> {
    req.check_hash()?;
    let points: Vec<[i64; 3]> = serde_json::from_slice::<Vec<[i32; 3]>>(&req.body)
        .map_err(|e| {
            Error::bad(format!(
                "labels body must be a JSON list of [x,y,z] points: {e}"
            ))
        })?
        .into_iter()
        .map(|p| p.map(i64::from))
        .collect();
    let scale = scale(&labels.cfg, &req.query)?;
    let bs = labels.cfg.block_size;
    // Visit points block by block so each block is decoded once.
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by_key(|&i| {
        let p = points[i];
        (0..3)
            .rev()
            .map(|a| p[a].div_euclid(bs[a] as i64))
            .collect::<Vec<_>>()
    });
    let mut out = vec![0u64; points.len()];
    let mut cache = None;
    for i in order {
        out[i] = label_at(labels, scale, points[i], &mut cache)?;
    }
    Ok(DataResponse::json(&serde_json::json!(out)))
}

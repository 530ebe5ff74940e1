//! Voxel endpoints: `raw` and `isotropic` (3-D volumes and 2-D PNG slices), `label`, `labels`,
//! and the block-aligned `POST raw`.

use std::sync::Arc;

use rayon::prelude::*;

use super::ingest::{Mode, Write};
use super::scale;
use super::state::state;
use super::store::Labels;
use crate::block::cseg;
use crate::block::geom::{BlockCoord, VoxelBox, parse_point};
use crate::block::volume::{
    Dims, Fill, Isotropic, Planes, bytes_wide, check_whole, copy_block, gather_block,
    parse_geometry, posted_volume, read_slabs,
};
use crate::datatype::DataCtx;
use crate::datatype::{DataRequest, DataResponse};
use crate::datatypes::roi::Roi;
use crate::{Error, Result};

/// Fills `out` with the voxels of `sub` (x fastest, then y, then z), reading the blocks at
/// `scale`; absent blocks read as 0.
fn fill_box(labels: &Labels, scale: u8, sub: &VoxelBox, out: &mut [u64]) -> Result<()> {
    out.fill(0);
    let bs = labels.cfg.block_size;
    let block_voxels = labels.cfg.block_voxels();
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
                    copy_block(block, *c, bs, sub, out);
                }
            }
        }
    }
    Ok(())
}

/// The whole box in memory, for responses that must be built whole.
pub fn read_box(labels: &Labels, scale: u8, bx: &VoxelBox) -> Result<Vec<u64>> {
    check_whole(bx, 8)?;
    let mut out = vec![0u64; bx.voxels()];
    fill_box(labels, scale, bx, &mut out)?;
    Ok(out)
}

fn le_bytes(v: &[u64]) -> Vec<u8> {
    // Labels are little-endian on the wire, as in memory on every target we build for.
    bytemuck::cast_slice(v).to_vec()
}

/// A 3-D read as a stream of little-endian labels.
fn planes(labels: &Labels, scale: u8, bx: VoxelBox, mask: Option<Roi>) -> Planes {
    let owned = labels.clone();
    let fill: Fill = Arc::new(move |sub, out| {
        let mut v = vec![0u64; sub.voxels()];
        fill_box(&owned, scale, sub, &mut v)?;
        if let Some(roi) = &mask {
            roi.outside_runs(sub, |a, n| v[a..a + n].fill(0));
        }
        out.copy_from_slice(bytemuck::cast_slice(&v));
        Ok(())
    });
    Planes::new(fill, bx, 8, labels.cfg.block_size[2])
}

/// `read_box`, with the voxels outside `mask` zeroed.
fn masked_box(labels: &Labels, scale: u8, bx: &VoxelBox, mask: Option<&Roi>) -> Result<Vec<u64>> {
    let mut v = read_box(labels, scale, bx)?;
    if let Some(roi) = mask {
        roi.outside_runs(bx, |a, n| v[a..a + n].fill(0));
    }
    Ok(v)
}

pub fn get(labels: &Labels, req: &DataRequest) -> Result<DataResponse> {
    get_masked(labels, req, None)
}

/// `GET raw|isotropic`, with voxels outside `mask` (`roi=`) reading 0; `roi=` only at scale 0.
pub fn get_masked(labels: &Labels, req: &DataRequest, mask: Option<&Roi>) -> Result<DataResponse> {
    let (dims, bx) = parse_geometry(&req.path)?;
    let scale = scale(&labels.cfg, &req.query)?;
    if mask.is_some() && scale != 0 {
        return Err(Error::bad(
            "roi= masks scale 0 only: the ROI's blocks are in scale-0 voxels",
        ));
    }
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
            let planes = planes(labels, scale, bx, mask.cloned());
            match compression {
                "" => Ok(DataResponse::stream("application/octet-stream", planes)),
                "gzip" => Ok(DataResponse::stream(
                    "application/octet-stream",
                    planes.gzipped(),
                )),
                "lz4" => {
                    let v = masked_box(labels, scale, &bx, mask)?;
                    Ok(DataResponse::octets(lz4_flex::block::compress(&le_bytes(
                        &v,
                    ))))
                }
                "google" | "googlegzip" => {
                    let v = masked_box(labels, scale, &bx, mask)?;
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
                isotropic_slice(labels, scale, &bx, a, b, mask)?
            } else {
                masked_box(labels, scale, &bx, mask)?
            };
            Ok(DataResponse::bytes("image/png", png_labels(&pixels, w, h)?))
        }
    }
}

fn isotropic_voxels(labels: &Labels) -> bool {
    let r = labels.cfg.voxel_size;
    r[0] == r[1] && r[1] == r[2]
}

/// A slice resampled to square pixels (`volume::Isotropic`).
fn isotropic_slice(
    labels: &Labels,
    scale: u8,
    bx: &VoxelBox,
    a: usize,
    b: usize,
    mask: Option<&Roi>,
) -> Result<Vec<u64>> {
    let iso = Isotropic::new(bx, labels.cfg.voxel_size, a, b)?;
    let src = masked_box(labels, scale, &iso.source, mask)?;
    Ok(iso.indices().map(|i| src[i]).collect())
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
    let what = "uint64 labels";
    let content_length = req
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok());
    let body = posted_volume(
        req.query.get("compression"),
        req.body_reader(),
        content_length,
        &bx,
        8,
        what,
    )?;
    let change = ctx.mutation()?;
    let st = state(ctx);
    // This write rebuilds or writes coarse blocks itself, from the stored ones: let edits
    // answered before it finish theirs first (not under the lock, which a rebuild takes).
    super::pyramid::settle(ctx)?;
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
    let mut buf = vec![0u64; per_batch.min(bx.voxels() / block_voxels) * block_voxels];
    let mut write = Write::new(labels, mode, change, mapping);
    read_slabs(body, &bx, bs, 8, what, &mut |slab_box, slab| {
        let (lo, hi) = slab_box.block_range(bs);
        let coords: Vec<BlockCoord> = (lo[1]..=hi[1])
            .flat_map(|y| (lo[0]..=hi[0]).map(move |x| [x, y, lo[2]]))
            .collect();
        let (bytes_box, bytes_bs) = bytes_wide(slab_box, bs, 8);
        for batch in coords.chunks(per_batch) {
            let voxels = &mut buf[..batch.len() * block_voxels];
            voxels
                .par_chunks_mut(block_voxels)
                .zip(batch)
                .for_each_init(
                    || vec![0u8; block_voxels * 8],
                    |bytes, (dst, c)| {
                        gather_block(slab, &bytes_box, bytes_bs, *c, bytes);
                        for (o, b) in dst.iter_mut().zip(bytes.chunks_exact(8)) {
                            *o = u64::from_le_bytes(b.try_into().expect("8 bytes"));
                        }
                    },
                );
            write.add(batch, voxels, None)?;
        }
        Ok(())
    })?;
    write.commit()?;
    Ok(DataResponse::empty())
}

/// `GET label/<x_y_z>` → `{"Label": n}`.
pub fn label(labels: &Labels, req: &DataRequest) -> Result<DataResponse> {
    let p = parse_point(req.one_segment("<x_y_z>")?, "point")?;
    let scale = scale(&labels.cfg, &req.query)?;
    let l = labels.voxels_at(scale, &[p])?[0];
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
    let out = labels.voxels_at(scale, &points)?;
    Ok(DataResponse::json(&serde_json::json!(out)))
}

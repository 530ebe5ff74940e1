//! `raw` and `isotropic`: 3-D volumes (streamed, or gzip/lz4) and 2-D images (png, jpg),
//! and the block-aligned `POST raw`, received one layer of blocks at a time.

use std::sync::Arc;

use rayon::prelude::*;

use super::config::Kind;
use super::image::{Image, Write};
use crate::block::geom::{BlockCoord, VoxelBox};
use crate::block::jpeg;
use crate::block::volume::{
    Dims, Fill, Isotropic, Planes, bytes_wide, gather_block, parse_geometry, posted_volume,
    read_slabs,
};
use crate::datatype::{DataCtx, DataRequest, DataResponse};
use crate::datatypes::roi::Roi;
use crate::{Error, Result};

pub fn get(image: &Image, req: &DataRequest) -> Result<DataResponse> {
    let (dims, bx) = parse_geometry(&req.path)?;
    let format = req.path.get(3).map(String::as_str);
    match dims {
        Dims::Volume => {
            if req.keyword == "isotropic" && !isotropic_voxels(image) {
                return Err(Error::bad(
                    "isotropic 3-D reads are only served when the voxels are isotropic",
                ));
            }
            match format {
                // libdvid and dvision append "/nD"; neuroglancer asks for "/jpeg".
                None | Some("nD" | "nd") => volume(image, bx, req.query.get("compression")),
                Some(f) if is_jpeg(f) => {
                    // A volume as one JPEG: x wide, y·z tall, as neuroglancer decodes it.
                    let voxels = image.read(&bx)?;
                    let q = quality(f, req)?;
                    let img = image_bytes(image.cfg.kind, &voxels, bx.size[0], Format::Jpeg(q))?;
                    Ok(DataResponse::bytes("image/jpeg", img))
                }
                Some(other) => Err(Error::bad(format!(
                    "a 3-D read takes no format segment or jpeg, not {other:?}"
                ))),
            }
        }
        Dims::Slice(a, b) => {
            let f = format.unwrap_or("png");
            let fmt = if f == "png" {
                Format::Png
            } else if is_jpeg(f) {
                Format::Jpeg(quality(f, req)?)
            } else {
                return Err(Error::bad(format!(
                    "image format {f:?} is not offered: use png or jpg (jpg:QUALITY or ?quality=)"
                )));
            };
            let bpv = image.bpv();
            let pixels = if req.keyword == "isotropic" {
                let iso = Isotropic::new(&bx, image.cfg.voxel_size, a, b)?;
                let src = image.read(&iso.source)?;
                let mut out = Vec::with_capacity(bx.size[a] * bx.size[b] * bpv);
                for i in iso.indices() {
                    out.extend_from_slice(&src[i * bpv..(i + 1) * bpv]);
                }
                out
            } else {
                image.read(&bx)?
            };
            let content = match fmt {
                Format::Png => "image/png",
                Format::Jpeg(_) => "image/jpeg",
            };
            Ok(DataResponse::bytes(
                content,
                image_bytes(image.cfg.kind, &pixels, bx.size[a], fmt)?,
            ))
        }
    }
}

pub(crate) fn is_jpeg(f: &str) -> bool {
    let name = f.split_once(':').map_or(f, |(n, _)| n);
    matches!(name, "jpg" | "jpeg")
}

/// JPEG quality from `jpg:Q` or `?quality=Q` (1–100; DVID's default 80).
pub(crate) fn quality(format: &str, req: &DataRequest) -> Result<u8> {
    let given = format
        .split_once(':')
        .map(|(_, q)| q)
        .or(req.query.get("quality"));
    match given {
        None => Ok(jpeg::DEFAULT_QUALITY),
        Some(q) => q
            .parse::<u8>()
            .ok()
            .filter(|q| (1..=100).contains(q))
            .ok_or_else(|| {
                Error::bad(format!(
                    "JPEG quality {q:?} must be an integer from 1 to 100"
                ))
            }),
    }
}

fn isotropic_voxels(image: &Image) -> bool {
    let r = image.cfg.voxel_size;
    r[0] == r[1] && r[1] == r[2]
}

/// A 3-D read: streamed uncompressed or gzipped, or lz4 whole.
fn volume(image: &Image, bx: VoxelBox, compression: Option<&str>) -> Result<DataResponse> {
    let owned = image.clone();
    let fill: Fill = Arc::new(move |sub, out| owned.fill(sub, out));
    let planes = Planes::new(fill, bx, image.bpv(), image.cfg.block_size[2]);
    match compression.unwrap_or("") {
        "" => Ok(DataResponse::stream("application/octet-stream", planes)),
        "gzip" => Ok(DataResponse::stream(
            "application/octet-stream",
            planes.gzipped(),
        )),
        "lz4" => Ok(DataResponse::octets(lz4_flex::block::compress(
            &image.read(&bx)?,
        ))),
        other => Err(Error::bad(format!(
            "compression {other:?} is not offered for raw reads: use lz4 or gzip"
        ))),
    }
}

#[derive(Clone, Copy)]
pub(crate) enum Format {
    Png,
    Jpeg(u8),
}

/// A `width`-wide 2-D image of voxel bytes. PNG: uint8 gray, uint16 16-bit gray, rgba8
/// color; uint32 and float32 as 8-bit RGBA and uint64 as 16-bit RGBA holding each voxel's
/// little-endian bytes, as DVID encodes labels. JPEG: uint8 and rgba8 only.
pub(crate) fn image_bytes(
    kind: Kind,
    voxels: &[u8],
    width: usize,
    format: Format,
) -> Result<Vec<u8>> {
    let height = voxels.len() / (width * kind.bytes_per_voxel());
    match format {
        Format::Jpeg(q) => {
            if !kind.jpeg_ok() {
                return Err(Error::bad(format!(
                    "{} images can't be JPEG, which would destroy their values: use png",
                    kind.type_name()
                )));
            }
            jpeg::encode(voxels, width, kind == Kind::Rgba8, q)
        }
        Format::Png => {
            let (w, h) = (u32::try_from(width), u32::try_from(height));
            let (Ok(w), Ok(h)) = (w, h) else {
                return Err(Error::bad("the image is too large for a PNG"));
            };
            let (color, depth) = match kind {
                Kind::Uint8 => (png::ColorType::Grayscale, png::BitDepth::Eight),
                Kind::Uint16 => (png::ColorType::Grayscale, png::BitDepth::Sixteen),
                Kind::Uint32 | Kind::Float32 | Kind::Rgba8 => {
                    (png::ColorType::Rgba, png::BitDepth::Eight)
                }
                Kind::Uint64 => (png::ColorType::Rgba, png::BitDepth::Sixteen),
            };
            // PNG's 16-bit samples are big-endian: a uint16 voxel is swapped so it reads
            // back as its value; uint64 keeps its little-endian bytes, as DVID's labels do.
            let data: Vec<u8> = if kind == Kind::Uint16 {
                voxels.chunks_exact(2).flat_map(|c| [c[1], c[0]]).collect()
            } else {
                voxels.to_vec()
            };
            let mut out = Vec::new();
            let png_err = |e: png::EncodingError| Error::Internal(format!("png: {e}"));
            let mut enc = png::Encoder::new(&mut out, w, h);
            enc.set_color(color);
            enc.set_depth(depth);
            let mut writer = enc.write_header().map_err(png_err)?;
            writer.write_image_data(&data).map_err(png_err)?;
            writer.finish().map_err(png_err)?;
            Ok(out)
        }
    }
}

/// `POST raw/0_1_2/<size>/<offset>`: a block-aligned volume, written one layer of blocks at
/// a time as it arrives; nothing is stored unless the whole body is right.
pub fn post(ctx: &DataCtx, image: &Image, req: &DataRequest) -> Result<DataResponse> {
    post_masked(ctx, image, req, None)
}

/// `POST raw?roi=<name>`: only the voxels inside the ROI are written. Blocks wholly outside
/// are skipped; blocks partly inside keep their stored voxels outside the ROI.
pub fn post_in_roi(
    ctx: &DataCtx,
    image: &Image,
    req: &DataRequest,
    roi: &Roi,
) -> Result<DataResponse> {
    post_masked(ctx, image, req, Some(roi))
}

fn post_masked(
    ctx: &DataCtx,
    image: &Image,
    req: &DataRequest,
    roi: Option<&Roi>,
) -> Result<DataResponse> {
    let (dims, bx) = parse_geometry(&req.path)?;
    if req.keyword != "raw" || dims != Dims::Volume {
        return Err(Error::bad(
            "only 3-D raw volumes (raw/0_1_2/...) can be posted",
        ));
    }
    let bs = image.cfg.block_size;
    if !bx.is_block_aligned(bs) {
        return Err(Error::bad(format!(
            "POST raw must be block aligned: offset {:?} and size {:?} must be multiples of the block size {bs:?}",
            bx.min, bx.size
        )));
    }
    bx.check_storable(bs)?;
    let bpv = image.bpv();
    let what = format!("{} voxels", image.cfg.kind.type_name());
    let content_length = req
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok());
    let body = posted_volume(
        req.query.get("compression"),
        req.body_reader(),
        content_length,
        &bx,
        bpv,
        &what,
    )?;
    let mut write = Write::new(image, ctx.write());
    let block_bytes = image.cfg.block_bytes();
    read_slabs(body, &bx, bs, bpv, &what, &mut |slab_box, slab| {
        let (lo, hi) = slab_box.block_range(bs);
        let coords: Vec<BlockCoord> = (lo[1]..=hi[1])
            .flat_map(|y| (lo[0]..=hi[0]).map(move |x| [x, y, lo[2]]))
            .collect();
        let (wide, wide_bs) = bytes_wide(slab_box, bs, bpv);
        let mut voxels = vec![0u8; coords.len() * block_bytes];
        voxels
            .par_chunks_mut(block_bytes)
            .zip(&coords)
            .for_each(|(dst, c)| gather_block(slab, &wide, wide_bs, *c, dst));
        match roi {
            None => write.add(&coords, &voxels),
            Some(roi) => {
                let (kept, kept_voxels) = keep_inside(image, roi, &coords, voxels)?;
                if kept.is_empty() {
                    return Ok(());
                }
                write.add(&kept, &kept_voxels)
            }
        }
    })?;
    write.commit()?;
    Ok(DataResponse::empty())
}

/// The blocks of `coords` (voxels in `voxels`, one block after another) with some voxel
/// inside `roi`, their outside voxels replaced by what is stored.
fn keep_inside(
    image: &Image,
    roi: &Roi,
    coords: &[BlockCoord],
    voxels: Vec<u8>,
) -> Result<(Vec<BlockCoord>, Vec<u8>)> {
    let bs = image.cfg.block_size;
    let bpv = image.bpv();
    let block_bytes = image.cfg.block_bytes();
    let mut kept = Vec::new();
    let mut out = Vec::new();
    for (c, block) in coords.iter().zip(voxels.chunks(block_bytes)) {
        let block_box = VoxelBox::new(std::array::from_fn(|a| i64::from(c[a]) * bs[a] as i64), bs)?;
        let mut runs = Vec::new();
        roi.outside_runs(&block_box, |a, n| runs.push((a, n)));
        let outside: usize = runs.iter().map(|r| r.1).sum();
        if outside == block_box.voxels() {
            continue;
        }
        let start = out.len();
        out.extend_from_slice(block);
        if outside > 0 {
            let stored = image.read(&block_box)?;
            let dst = &mut out[start..];
            for (a, n) in runs {
                dst[a * bpv..(a + n) * bpv].copy_from_slice(&stored[a * bpv..(a + n) * bpv]);
            }
        }
        kept.push(*c);
    }
    Ok((kept, out))
}

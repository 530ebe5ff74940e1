//! `tile` and `tilekey`: a tile is what a client posted for it, else generated from the source
//! (see [`super::fresh`]) and cached, else — for an instance without a source — blank or a
//! placeholder.
//!
//! A tile at scale s in plane (a, b) with coordinate t spans `TileSize·2^s` voxels along a and
//! b from `t·TileSize·2^s`, at voxel `t[c]` across the plane (DVID's tile extents). Generated
//! from the source, each pixel is the mean of its 2^s×2^s window in that plane (rounded half
//! up, unwritten voxels counting as zeros); read from a level instance `<source>_s`, it is
//! that level's voxel at the same place (its plane `t[c] >> s`: the level's own 2×2×2 means).

use std::io::Cursor;

use serde_json::json;
use tessera_storage::versioned::put_into;

use super::config::{Config, Format, JPEG_QUALITY};
use super::fresh::{self, cache_view};
use super::keys::{TileReq, hex};
use super::meta::{self, Metadata};
use crate::block::geom::VoxelBox;
use crate::block::jpeg;
use crate::datatype::{DataCtx, DataRequest, DataResponse};
use crate::datatypes::imageblk::Grayscale;
use crate::{Error, Result};

/// Largest in-plane area (voxels) a tile is averaged from at scale 0 of the source: past it,
/// a scale needs its level instance.
pub const MAX_AVERAGED_AREA: u64 = 1 << 26;

/// Gray pixels of a tile, row by row.
pub struct Pixels {
    pub w: usize,
    pub h: usize,
    pub data: Vec<u8>,
}

/// Stored form of an lz4 tile: `w u32 LE ‖ h u32 LE ‖ lz4 block with its size prepended`.
fn lz4_pack(p: &Pixels) -> Vec<u8> {
    let mut out = Vec::with_capacity(p.data.len() / 2 + 16);
    out.extend_from_slice(&(p.w as u32).to_le_bytes());
    out.extend_from_slice(&(p.h as u32).to_le_bytes());
    out.extend_from_slice(&lz4_flex::block::compress_prepend_size(&p.data));
    out
}

fn lz4_unpack(v: &[u8]) -> Result<Pixels> {
    let bad = || Error::Internal("a stored lz4 tile is malformed".into());
    if v.len() < 8 {
        return Err(bad());
    }
    let w = u32::from_le_bytes(v[0..4].try_into().expect("4 bytes")) as usize;
    let h = u32::from_le_bytes(v[4..8].try_into().expect("4 bytes")) as usize;
    let data = lz4_flex::block::decompress_size_prepended(&v[8..]).map_err(|_| bad())?;
    if data.len() != w * h {
        return Err(bad());
    }
    Ok(Pixels { w, h, data })
}

/// Decodes an 8-bit gray PNG.
pub fn decode_png(bytes: &[u8]) -> Result<Pixels> {
    let bad = |e: String| Error::bad(format!("the tile is not a decodable PNG: {e}"));
    let mut r = png::Decoder::new(Cursor::new(bytes))
        .read_info()
        .map_err(|e| bad(e.to_string()))?;
    let mut buf = vec![
        0u8;
        r.output_buffer_size()
            .ok_or_else(|| bad("too large".into()))?
    ];
    let info = r.next_frame(&mut buf).map_err(|e| bad(e.to_string()))?;
    if info.color_type != png::ColorType::Grayscale || info.bit_depth != png::BitDepth::Eight {
        return Err(Error::bad(format!(
            "tiles are 8-bit grayscale; the PNG is {:?} with {:?} bits",
            info.color_type, info.bit_depth
        )));
    }
    let (w, h) = (info.width as usize, info.height as usize);
    buf.truncate(w * h);
    Ok(Pixels { w, h, data: buf })
}

/// Decodes a JPEG to gray.
pub fn decode_jpeg(bytes: &[u8]) -> Result<Pixels> {
    let (w, h, data) = jpeg::decode_gray_image(bytes, None)
        .map_err(|e| Error::bad(format!("the tile is not a decodable JPEG: {e}")))?;
    Ok(Pixels { w, h, data })
}

/// The pixels of a tile in its stored form.
pub fn decode_stored(format: Format, bytes: &[u8]) -> Result<Pixels> {
    match format {
        Format::Png => decode_png(bytes),
        Format::Jpg => decode_jpeg(bytes),
        Format::Lz4 => lz4_unpack(bytes),
    }
}

/// Pixels in the instance's stored form.
fn encode_stored(format: Format, p: &Pixels) -> Result<Vec<u8>> {
    match format {
        Format::Png => Grayscale::png(&p.data, p.w),
        Format::Jpg => jpeg::encode(&p.data, p.w, false, JPEG_QUALITY),
        Format::Lz4 => Ok(lz4_pack(p)),
    }
}

/// A stored tile as served: PNG and JPEG as stored, lz4 encoded as PNG now.
fn serve_stored(format: Format, stored: Vec<u8>) -> Result<DataResponse> {
    let body = match format {
        Format::Png | Format::Jpg => stored,
        Format::Lz4 => {
            let p = lz4_unpack(&stored)?;
            Grayscale::png(&p.data, p.w)?
        }
    };
    Ok(DataResponse::bytes(format.content_type(), body))
}

/// A gray checkerboard, eight squares across the tile's shorter side: a placeholder for a
/// missing tile.
pub fn placeholder(w: usize, h: usize) -> Pixels {
    let side = (w.min(h) / 8).max(1);
    let data = (0..h)
        .flat_map(|y| {
            (0..w).map(move |x| {
                if (x / side + y / side).is_multiple_of(2) {
                    96
                } else {
                    160
                }
            })
        })
        .collect();
    Pixels { w, h, data }
}

/// The posted tile visible at this version, in stored form.
pub fn posted(ctx: &DataCtx, t: &TileReq) -> Result<Option<Vec<u8>>> {
    Ok(ctx.store.get(&ctx.view, &t.tkey())?)
}

/// The voxel box a tile covers in the instance it is read from: the source at scale 0
/// (`factor` 2^s per pixel), or a level instance (`factor` 1, the plane `t[c] >> s`).
fn tile_box(t: &TileReq, w: usize, h: usize, from_level: bool) -> Result<VoxelBox> {
    let (a, b, c) = (t.plane.a, t.plane.b, t.plane.c());
    let factor: i64 = if from_level { 1 } else { 1i64 << t.scale };
    let span = [w as i64 * factor, h as i64 * factor];
    let mut min = [0i64; 3];
    let mut size = [1usize; 3];
    min[a] = t.coord[a] as i64 * span[0];
    min[b] = t.coord[b] as i64 * span[1];
    min[c] = if from_level {
        (t.coord[c] as i64) >> t.scale
    } else {
        t.coord[c] as i64
    };
    size[a] = span[0] as usize;
    size[b] = span[1] as usize;
    let fits = |v: i64| (i32::MIN as i64..=i32::MAX as i64).contains(&v);
    if (0..3).any(|i| !fits(min[i]) || !fits(min[i] + size[i] as i64 - 1)) {
        return Err(Error::bad(format!(
            "tile {:?} at scale {} lies outside the 32-bit voxel space",
            t.coord, t.scale
        )));
    }
    VoxelBox::new(min, size)
}

/// A tile's pixels read from `publisher` (a level instance when `from_level`).
fn generate(
    publisher: &Grayscale,
    from_level: bool,
    t: &TileReq,
    w: usize,
    h: usize,
) -> Result<Pixels> {
    let bx = tile_box(t, w, h, from_level)?;
    if from_level || t.scale == 0 {
        // A box one voxel thick across the plane reads row by row, a fastest.
        let data = publisher.read(&bx)?;
        return Ok(Pixels { w, h, data });
    }
    let area = bx.voxels() as u64;
    if area > MAX_AVERAGED_AREA {
        return Err(Error::bad(format!(
            "a {w}×{h} tile at scale {} spans {area} voxels of {:?}, past the {MAX_AVERAGED_AREA} a tile is averaged from: create the level instance \"{}_{}\" (a uint8blk synced down the pyramid) to serve it",
            t.scale,
            publisher.name(),
            publisher.name(),
            t.scale
        )));
    }
    let voxels = publisher.read(&bx)?;
    let s = t.scale;
    let wide = w << s;
    let mut sums = vec![0u64; w * h];
    for (j, row) in voxels.chunks_exact(wide).enumerate() {
        let out = &mut sums[(j >> s) * w..][..w];
        for (i, v) in row.iter().enumerate() {
            out[i >> s] += *v as u64;
        }
    }
    let n = 1u64 << (2 * s);
    let data = sums.into_iter().map(|v| ((v + n / 2) / n) as u8).collect();
    Ok(Pixels { w, h, data })
}

/// What a cached tile was made from; a cached tile is used only when all of it matches.
fn recipe(publisher: &Grayscale, from_level: bool, stamp: u64, w: usize, h: usize) -> String {
    let how = if from_level { "level" } else { "mean" };
    format!("{}:{stamp}:{how}:{w}x{h}", publisher.data_uuid())
}

/// A cached tile: `recipe length u16 LE ‖ recipe ‖ blank u8 ‖ stored tile`.
fn cache_value(recipe: &str, blank: bool, stored: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(recipe.len() + 3 + stored.len());
    v.extend_from_slice(&(recipe.len() as u16).to_le_bytes());
    v.extend_from_slice(recipe.as_bytes());
    v.push(blank as u8);
    v.extend_from_slice(stored);
    v
}

/// (blank, stored tile) of a cached tile made by `recipe`.
fn cache_hit(value: &[u8], recipe: &str) -> Option<(bool, Vec<u8>)> {
    let n = u16::from_le_bytes(value.get(0..2)?.try_into().ok()?) as usize;
    if value.get(2..2 + n)? != recipe.as_bytes() {
        return None;
    }
    let blank = *value.get(2 + n)? != 0;
    Some((blank, value[3 + n..].to_vec()))
}

/// A generated tile, from the cache when it is still good: (blank, stored tile).
fn generated(
    ctx: &DataCtx,
    cfg: &Config,
    src: &Grayscale,
    t: &TileReq,
    w: usize,
    h: usize,
) -> Result<(bool, Vec<u8>)> {
    let level = fresh::level(ctx, src, t.scale);
    let (publisher, from_level) = match &level {
        Some(l) => (l, true),
        None => (src, false),
    };
    let fresh = fresh::check(ctx, publisher)?;
    let recipe = recipe(publisher, from_level, fresh.stamp, w, h);
    let key = t.cache_key();
    let view = cache_view(ctx);
    if fresh.cacheable
        && let Some(hit) = ctx
            .store
            .get(&view, &key)?
            .and_then(|v| cache_hit(&v, &recipe))
    {
        tracing::debug!(instance = %ctx.instance.name, tile = ?t, "tile from the cache");
        return Ok(hit);
    }
    tracing::debug!(instance = %ctx.instance.name, tile = ?t, cacheable = fresh.cacheable, "tile generated");
    let pixels = generate(publisher, from_level, t, w, h)?;
    let blank = pixels.data.iter().all(|v| *v == 0);
    let stored = encode_stored(cfg.format, &pixels)?;
    if fresh.cacheable {
        let mut change = ctx.write();
        put_into(
            &mut change.batch,
            &view,
            &key,
            &cache_value(&recipe, blank, &stored),
        );
        change.commit()?;
    }
    Ok((blank, stored))
}

/// `GET tile/<plane>/<scale>/<x_y_z>[?noblanks=true]`.
pub fn get(ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
    let cfg = Config::from_json(&ctx.instance.config)?;
    let t = TileReq::parse("tile", &req.path)?;
    let src = fresh::source(ctx)?;
    let meta = meta::required(ctx, src.as_ref())?;
    let (w, h) = meta.tile_dims(t.plane, t.scale)?;
    if let Some(stored) = posted(ctx, &t)? {
        return serve_stored(cfg.format, stored);
    }
    let noblanks = req.query.flag("noblanks")?;
    let no_content = || {
        Error::not_found(format!(
            "tile {:?} at scale {} is blank (noblanks=true)",
            t.coord, t.scale
        ))
    };
    let Some(src) = src else {
        if noblanks {
            return Err(no_content());
        }
        let p = if cfg.placeholder {
            placeholder(w, h)
        } else {
            Pixels {
                w,
                h,
                data: vec![0; w * h],
            }
        };
        return serve_stored(cfg.format, encode_stored(cfg.format, &p)?);
    };
    let (blank, stored) = generated(ctx, &cfg, &src, &t, w, h)?;
    if blank && noblanks {
        return Err(no_content());
    }
    serve_stored(cfg.format, stored)
}

/// `POST tile/<plane>/<scale>/<x_y_z>`: a tile in the instance's format (PNG for png and lz4
/// instances, JPEG for jpg), 8-bit gray and of the level's tile size when there are levels.
pub fn post(ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
    let cfg = Config::from_json(&ctx.instance.config)?;
    let t = TileReq::parse("tile", &req.path)?;
    let src = fresh::source(ctx)?;
    let meta: Option<Metadata> = meta::current(ctx, src.as_ref())?;
    let dims = meta
        .as_ref()
        .map(|m| m.tile_dims(t.plane, t.scale))
        .transpose()?;
    let pixels = match cfg.format {
        Format::Png | Format::Lz4 => decode_png(&req.body)?,
        Format::Jpg => decode_jpeg(&req.body)?,
    };
    if let Some((w, h)) = dims.filter(|d| *d != (pixels.w, pixels.h)) {
        return Err(Error::bad(format!(
            "the tile is {}×{} pixels; {} tiles at scale {} are {w}×{h}",
            pixels.w,
            pixels.h,
            plane_name(&t),
            t.scale
        )));
    }
    let stored = match cfg.format {
        Format::Png | Format::Jpg => req.body.to_vec(),
        Format::Lz4 => lz4_pack(&pixels),
    };
    let mut change = ctx.write();
    put_into(&mut change.batch, &ctx.view, &t.tkey(), &stored);
    change.commit()?;
    Ok(DataResponse::empty())
}

fn plane_name(t: &TileReq) -> &'static str {
    match (t.plane.a, t.plane.b) {
        (0, 1) => "xy",
        (0, 2) => "xz",
        _ => "yz",
    }
}

/// `GET tilekey/<plane>/<scale>/<x_y_z>`: the hex of the tile's key inside the instance's key
/// space, before the version.
pub fn tilekey(req: &DataRequest) -> Result<DataResponse> {
    let t = TileReq::parse("tilekey", &req.path)?;
    Ok(DataResponse::json(&json!({ "key": hex(&t.tkey()) })))
}

/// The pixels of the posted tile `t`, when there is one.
pub fn posted_pixels(ctx: &DataCtx, format: Format, t: &TileReq) -> Result<Option<Pixels>> {
    posted(ctx, t)?
        .map(|v| {
            decode_stored(format, &v).map_err(|e| Error::Internal(format!("posted tile: {e}")))
        })
        .transpose()
}

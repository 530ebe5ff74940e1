//! `raw` and `isotropic`: a 2-D image of any size at scale 0, stitched from the tiles — the
//! source's voxels (what its scale-0 tiles hold), with every posted tile it crosses laid over
//! them; without a source, posted tiles over blank, or over placeholders with `Placeholder`.
//! `isotropic` resamples to square pixels by the voxel size (the source's, else level 0's
//! resolution), nearest neighbour, as uint8blk's `isotropic` does.

use super::config::Config;
use super::fresh;
use super::keys::{Plane, TileReq};
use super::meta;
use super::tiles::{Pixels, placeholder, posted_pixels};
use crate::block::geom::VoxelBox;
use crate::block::volume::{Dims, Isotropic, check_whole, parse_geometry};
use crate::datatype::{DataCtx, DataRequest, DataResponse};
use crate::datatypes::imageblk::Grayscale;
use crate::{Error, Result};

/// Most tiles one image is stitched from.
const MAX_TILES_CROSSED: i64 = 1 << 16;

pub fn get(ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
    let cfg = Config::from_json(&ctx.instance.config)?;
    let (dims, bx) = parse_geometry(&req.path)?;
    let Dims::Slice(a, b) = dims else {
        return Err(Error::bad(format!(
            "imagetile {} returns 2-D images only: use xy, xz or yz (0_1, 0_2, 1_2)",
            req.keyword
        )));
    };
    if req.path.len() > 4 {
        return Err(Error::bad(format!(
            "expected {}/<plane>/<size>/<offset>[/<format>]",
            req.keyword
        )));
    }
    let format = req.path.get(3).map(String::as_str);
    let src = fresh::source(ctx)?;
    let meta = meta::required(ctx, src.as_ref())?;
    let plane = Plane { a, b };
    let (tw, th) = meta.tile_dims(plane, 0)?;
    let iso = if req.keyword == "isotropic" {
        let vs = src
            .as_ref()
            .map(Grayscale::voxel_size)
            .unwrap_or(meta.levels[0].resolution);
        Some(Isotropic::new(&bx, vs, a, b)?)
    } else {
        None
    };
    let read = iso.as_ref().map_or(bx, |i| i.source);
    check_whole(&read, 1)?;
    let (w, h) = (read.size[a], read.size[b]);
    let mut pixels = match &src {
        Some(g) => g.read(&read)?,
        None => vec![0u8; w * h],
    };
    // Lay every posted tile (or placeholder) the image crosses over it.
    let (tw64, th64) = (tw as i64, th as i64);
    let c = plane.c();
    let (tx0, tx1) = (
        read.min[a].div_euclid(tw64),
        (read.min[a] + w as i64 - 1).div_euclid(tw64),
    );
    let (ty0, ty1) = (
        read.min[b].div_euclid(th64),
        (read.min[b] + h as i64 - 1).div_euclid(th64),
    );
    let crossed = (tx1 - tx0 + 1) * (ty1 - ty0 + 1);
    if crossed > MAX_TILES_CROSSED {
        return Err(Error::bad(format!(
            "the image crosses {crossed} tiles of {tw}×{th}; at most {MAX_TILES_CROSSED} are stitched"
        )));
    }
    for ty in ty0..=ty1 {
        for tx in tx0..=tx1 {
            let mut coord = [0i32; 3];
            coord[a] = tx as i32;
            coord[b] = ty as i32;
            coord[c] = read.min[c] as i32;
            let t = TileReq {
                plane,
                scale: 0,
                coord,
            };
            let tile = match posted_pixels(ctx, cfg.format, &t)? {
                Some(p) => p,
                None if src.is_none() && cfg.placeholder => placeholder(tw, th),
                None => continue,
            };
            paste(&tile, [tx * tw64, ty * th64], &read, a, b, &mut pixels);
        }
    }
    let (width, out) = match &iso {
        Some(i) => (bx.size[a], i.indices().map(|k| pixels[k]).collect()),
        None => (w, pixels),
    };
    let (content, body) = Grayscale::encode_2d(&out, width, format, req)?;
    Ok(DataResponse::bytes(content, body))
}

/// Copies the part of `tile` (its top left at `origin` in plane coordinates) inside `read`
/// into `out`, laid out as `read` (a fastest).
fn paste(tile: &Pixels, origin: [i64; 2], read: &VoxelBox, a: usize, b: usize, out: &mut [u8]) {
    let (w, h) = (read.size[a] as i64, read.size[b] as i64);
    let (x0, y0) = (read.min[a], read.min[b]);
    let lo = [origin[0].max(x0), origin[1].max(y0)];
    let hi = [
        (origin[0] + tile.w as i64).min(x0 + w),
        (origin[1] + tile.h as i64).min(y0 + h),
    ];
    if lo[0] >= hi[0] || lo[1] >= hi[1] {
        return;
    }
    let n = (hi[0] - lo[0]) as usize;
    for y in lo[1]..hi[1] {
        let src = ((y - origin[1]) as usize) * tile.w + (lo[0] - origin[0]) as usize;
        let dst = ((y - y0) * w + (lo[0] - x0)) as usize;
        out[dst..dst + n].copy_from_slice(&tile.data[src..src + n]);
    }
}

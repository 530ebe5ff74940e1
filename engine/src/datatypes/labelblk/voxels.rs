//! Label reads a uint64 image doesn't have: `raw` 3-D as neuroglancer's compressed
//! segmentation (`compression=google|googlegzip`), `pseudocolor` slices, `label`, `labels`.
//! Everything else of `raw`/`isotropic` is the image type's.

use crate::block::cseg;
use crate::block::geom::{BlockCoord, parse_point};
use crate::block::volume::{Dims, parse_geometry};
use crate::datatype::{DataRequest, DataResponse, pseudocolor};
use crate::datatypes::imageblk::image::Image;
use crate::datatypes::imageblk::voxels as image_voxels;
use crate::{Error, Result};

/// Little-endian uint64 voxel bytes → labels.
pub fn as_labels(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks_exact(8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        .collect()
}

/// `GET raw|isotropic/...`: the image type's, but for 3-D reads with
/// `compression=google|googlegzip` (what neuroglancer asks a labelblk for, without `scale`).
pub fn get(image: &Image, req: &DataRequest) -> Result<DataResponse> {
    let compression = req.query.get("compression").unwrap_or("");
    if !matches!(compression, "google" | "googlegzip") {
        return image_voxels::get(image, req);
    }
    let (dims, bx) = parse_geometry(&req.path)?;
    if dims != Dims::Volume || req.path.len() > 3 {
        return Err(Error::bad(format!(
            "compression={compression} is for 3-D reads (raw/0_1_2/<size>/<offset>)"
        )));
    }
    let labels = as_labels(&image.read(&bx)?);
    let enc = cseg::try_encode(&labels, bx.size).ok_or_else(|| {
        Error::bad(
            "this box holds too many labels for compressed_segmentation; request smaller pieces",
        )
    })?;
    Ok(if compression == "google" {
        DataResponse::octets(enc)
    } else {
        DataResponse::octets(crate::block::stored::gzip(&enc, 6))
            .with_header("Content-Encoding", "gzip")
    })
}

/// `GET pseudocolor/<dims>/<size>/<offset>[/png]`: a 2-D slice, each label hashed to a
/// colour, as an 8-bit RGBA PNG.
pub fn pseudocolor(image: &Image, req: &DataRequest) -> Result<DataResponse> {
    let (bx, a, b) = pseudocolor::slice(req)?;
    let labels = as_labels(&image.read(&bx)?);
    pseudocolor::png(&labels, bx.size[a], bx.size[b])
}

/// The label at `p`, decoding its block once per run of points in one block.
fn label_at(image: &Image, p: [i64; 3], cache: &mut Option<(BlockCoord, Vec<u64>)>) -> Result<u64> {
    let bs = image.cfg.block_size;
    let c: BlockCoord = std::array::from_fn(|a| p[a].div_euclid(bs[a] as i64) as i32);
    if cache.as_ref().is_none_or(|(cc, _)| *cc != c) {
        crate::block::geom::check_block_coord(c)?;
        let block = match image.blocks.get(0, c)? {
            Some(s) => as_labels(&image.decode(&s)?),
            None => Vec::new(),
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
pub fn label(image: &Image, req: &DataRequest) -> Result<DataResponse> {
    let [point] = req.path.as_slice() else {
        return Err(Error::bad("label needs one path segment: <x_y_z>"));
    };
    let p = parse_point(point, "point")?;
    let l = label_at(image, p, &mut None)?;
    Ok(DataResponse::bytes(
        "application/json",
        format!("{{\"Label\": {l}}}"),
    ))
}

/// `GET labels` with a JSON body `[[x,y,z],…]` → `[n,…]`.
pub fn labels(image: &Image, req: &DataRequest) -> Result<DataResponse> {
    req.check_hash()?;
    let points: Vec<[i32; 3]> = serde_json::from_slice(&req.body).map_err(|e| {
        Error::bad(format!(
            "labels body must be a JSON list of [x,y,z] points: {e}"
        ))
    })?;
    let bs = image.cfg.block_size;
    let block = |p: &[i32; 3]| -> (i64, i64, i64) {
        let b = |a: usize| i64::from(p[a]).div_euclid(bs[a] as i64);
        (b(2), b(1), b(0))
    };
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by_key(|&i| block(&points[i]));
    let mut out = vec![0u64; points.len()];
    let mut cache = None;
    for i in order {
        out[i] = label_at(image, points[i].map(i64::from), &mut cache)?;
    }
    Ok(DataResponse::json(&serde_json::json!(out)))
}

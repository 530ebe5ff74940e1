//! Block endpoints: `subvolblocks` and `specificblocks` (spec §5.3 records), and
//! `blocks/<x_y_z>/<spanX>` (uncompressed blocks along x), GET and POST.

use rayon::prelude::*;

use super::image::{Image, Write};
use crate::block::geom::{BlockCoord, parse_point};
use crate::block::records;
use crate::block::stored::jpeg_payload;
use crate::datatype::{DataCtx, DataRequest, DataResponse};
use crate::{Error, Result};

/// Most blocks one `blocks/…/<spanX>` request may name.
const MAX_SPAN: usize = 1 << 16;

/// What a record's payload holds.
#[derive(Clone, Copy, PartialEq)]
enum Payload {
    /// The stored JPEG itself, as neuroglancer decodes it.
    Jpeg,
    Uncompressed,
    Lz4,
    Gzip,
}

/// `compression=`: JPEG (only from JPEG storage, the default there), uncompressed (the
/// default otherwise), lz4 or gzip of the voxels.
fn payload(image: &Image, req: &DataRequest) -> Result<Payload> {
    let jpeg_stored = image.blocks.stored.is_jpeg();
    match req.query.get("compression") {
        None | Some("") if jpeg_stored => Ok(Payload::Jpeg),
        None | Some("") => Ok(Payload::Uncompressed),
        Some("jpeg") if jpeg_stored => Ok(Payload::Jpeg),
        Some("jpeg") => Err(Error::bad(
            "compression=jpeg needs blocks stored as JPEG; this instance's are not",
        )),
        Some("uncompressed" | "raw") => Ok(Payload::Uncompressed),
        Some("lz4") => Ok(Payload::Lz4),
        Some("gzip") => Ok(Payload::Gzip),
        Some(other) => Err(Error::bad(format!(
            "compression {other:?} is not a block format: use jpeg, uncompressed, lz4 or gzip"
        ))),
    }
}

/// The records of stored blocks, built in parallel.
fn records_of(image: &Image, blocks: &[(BlockCoord, Vec<u8>)], p: Payload) -> Result<Vec<u8>> {
    let parts: Vec<Vec<u8>> = blocks
        .par_iter()
        .map(|(c, stored)| {
            let body = match p {
                Payload::Jpeg => jpeg_payload(stored)
                    .ok_or_else(|| Error::Internal(format!("block {c:?} is not stored as JPEG")))?
                    .to_vec(),
                Payload::Uncompressed => image.decode(stored)?,
                Payload::Lz4 => lz4_flex::block::compress(&image.decode(stored)?),
                Payload::Gzip => crate::block::stored::gzip(&image.decode(stored)?, 1),
            };
            let mut rec = Vec::with_capacity(16 + body.len());
            records::put(&mut rec, *c, &body);
            Ok(rec)
        })
        .collect::<Result<_>>()?;
    Ok(parts.concat())
}

/// `GET subvolblocks/<size>/<offset>`: the stored blocks of a block-aligned box, in (z, y, x)
/// order, one (z, y) row of blocks per streamed chunk.
pub fn subvolblocks(image: &Image, req: &DataRequest) -> Result<DataResponse> {
    let bs = image.cfg.block_size;
    let bx = records::aligned_box(&req.path, bs, "subvolblocks")?;
    let p = payload(image, req)?;
    let (lo, hi) = bx.block_range(bs);
    let image = image.clone();
    let rows = (lo[2]..=hi[2]).flat_map(move |z| (lo[1]..=hi[1]).map(move |y| (z, y)));
    let it = rows.map(move |(z, y)| {
        let mut blocks = Vec::new();
        image.blocks.row(0, z, y, lo[0], hi[0], &mut |c, v| {
            blocks.push((c, v.to_vec()));
            Ok(())
        })?;
        Ok(bytes::Bytes::from(records_of(&image, &blocks, p)?))
    });
    Ok(DataResponse::stream("application/octet-stream", it))
}

/// `GET specificblocks?blocks=x,y,z,…`: the listed blocks that exist, in the order listed,
/// read in one storage call.
pub fn specific(image: &Image, req: &DataRequest) -> Result<DataResponse> {
    let list = req
        .query
        .get("blocks")
        .ok_or_else(|| Error::bad("specificblocks needs blocks=x,y,z,... (block coordinates)"))?;
    let coords = records::parse_list(list)?;
    let p = payload(image, req)?;
    let found = image.blocks.get_many(0, &coords)?;
    let blocks: Vec<(BlockCoord, Vec<u8>)> = coords
        .into_iter()
        .zip(found)
        .filter_map(|(c, v)| v.map(|v| (c, v)))
        .collect();
    Ok(DataResponse::octets(records_of(image, &blocks, p)?))
}

/// `blocks/<x_y_z>/<spanX>` → the `spanX` block coordinates from `x_y_z` along x.
fn span(req: &DataRequest) -> Result<Vec<BlockCoord>> {
    let [start, n] = req.path.as_slice() else {
        return Err(Error::bad(
            "expected blocks/<x_y_z>/<spanX>: a block coordinate and how many blocks along x",
        ));
    };
    let c = parse_point(start, "block coordinate")?;
    let n: usize = n
        .parse()
        .ok()
        .filter(|n| (1..=MAX_SPAN).contains(n))
        .ok_or_else(|| {
            Error::bad(format!(
                "spanX {n:?} must be an integer from 1 to {MAX_SPAN}"
            ))
        })?;
    let coords: Vec<BlockCoord> = (0..n as i64)
        .map(|i| [(c[0] + i) as i32, c[1] as i32, c[2] as i32])
        .collect();
    for b in [coords[0], coords[n - 1]] {
        crate::block::geom::check_block_coord(b)?;
    }
    if c[0] + n as i64 - 1 > i32::MAX as i64 {
        return Err(Error::bad(
            "the span runs past the largest block coordinate",
        ));
    }
    Ok(coords)
}

/// `GET blocks/<x_y_z>/<spanX>`: the blocks' voxels, uncompressed, one block after another;
/// unwritten blocks are zeros.
pub fn get(image: &Image, req: &DataRequest) -> Result<DataResponse> {
    let coords = span(req)?;
    let n = image.cfg.block_bytes();
    if coords.len() * n > crate::block::volume::MAX_WHOLE_BYTES {
        return Err(Error::bad(format!(
            "{} blocks are more than one response may hold; ask for fewer",
            coords.len()
        )));
    }
    let found = image.blocks.get_many(0, &coords)?;
    let parts: Vec<Vec<u8>> = found
        .par_iter()
        .map(|v| match v {
            Some(v) => image.decode(v),
            None => Ok(vec![0u8; n]),
        })
        .collect::<Result<_>>()?;
    Ok(DataResponse::octets(parts.concat()))
}

/// `POST blocks/<x_y_z>/<spanX>`: `spanX` uncompressed blocks, replacing what was there.
pub fn post(ctx: &DataCtx, image: &Image, req: &DataRequest) -> Result<DataResponse> {
    let coords = span(req)?;
    let n = image.cfg.block_bytes();
    if req.body.len() != coords.len() * n {
        return Err(Error::bad(format!(
            "body holds {} bytes but {} blocks of {} voxels are {} bytes",
            req.body.len(),
            coords.len(),
            image.cfg.kind.type_name(),
            coords.len() * n
        )));
    }
    let mut write = Write::new(image, ctx.write());
    write.add(&coords, &req.body)?;
    write.commit()?;
    Ok(DataResponse::empty())
}

//! `blocks/<size>/<offset>`: block records (spec §5.3) of raw uint64 blocks. GET is the image
//! type's `subvolblocks` with labelblk's default payload, LZ4; POST takes the same records.

use rayon::prelude::*;

use crate::block::geom::{BlockCoord, check_block_coord};
use crate::block::records;
use crate::datatype::{DataCtx, DataRequest, DataResponse};
use crate::datatypes::imageblk::blocks as image_blocks;
use crate::datatypes::imageblk::image::{Image, Write};
use crate::{Error, Result};

/// `GET blocks/<size>/<offset>[?compression=lz4|uncompressed|gzip]`: the stored blocks of a
/// block-aligned box, LZ4 by default as DVID sends them.
pub fn get(image: &Image, req: &DataRequest) -> Result<DataResponse> {
    let mut req = req.clone();
    req.query
        .0
        .entry("compression".into())
        .or_insert_with(|| "lz4".into());
    image_blocks::subvolblocks(image, &req)
}

/// `POST blocks[?compression=lz4|uncompressed|gzip]`: records whose payloads are whole blocks
/// of uint64 labels in that coding (LZ4 by default, as GET sends them). Every record is
/// checked before anything is stored.
pub fn post(ctx: &DataCtx, image: &Image, req: &DataRequest) -> Result<DataResponse> {
    let n = image.cfg.block_bytes();
    let coding = req.query.get("compression").unwrap_or("lz4");
    if !matches!(coding, "lz4" | "uncompressed" | "gzip") {
        return Err(Error::bad(format!(
            "compression {coding:?} is not a block coding: use lz4, uncompressed or gzip"
        )));
    }
    let recs = records::parse(&req.body)?;
    let mut seen = std::collections::HashSet::new();
    for (c, _) in &recs {
        check_block_coord(*c)?;
        if !seen.insert(*c) {
            return Err(Error::bad(format!(
                "block {c:?} appears twice in one request"
            )));
        }
    }
    let blocks: Vec<Vec<u8>> = recs
        .par_iter()
        .map(|(c, p)| {
            let raw = match coding {
                "lz4" => lz4_flex::block::decompress(p, n)
                    .map_err(|e| Error::bad(format!("block {c:?}: not an LZ4 block: {e}")))?,
                "gzip" => crate::block::stored::gunzip(p, n)
                    .map_err(|e| Error::bad(format!("block {c:?}: not gzip: {e}")))?,
                _ => p.to_vec(),
            };
            if raw.len() != n {
                return Err(Error::bad(format!(
                    "block {c:?} holds {} bytes; a {} block of uint64 labels is {n}",
                    raw.len(),
                    image.blocks.shape
                )));
            }
            Ok(raw)
        })
        .collect::<Result<_>>()?;
    let coords: Vec<BlockCoord> = recs.iter().map(|r| r.0).collect();
    let mut write = Write::new(image, ctx.write());
    write.add(&coords, &blocks.concat())?;
    write.commit()?;
    Ok(DataResponse::empty())
}

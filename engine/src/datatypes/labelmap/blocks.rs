//! Block endpoints (spec §5.3 records: `i32 bx, by, bz, nbytes` then the payload): `GET
//! blocks`, `GET specificblocks`, `POST blocks`, `POST ingest-supervoxels`.

use bytes::Bytes;
use rayon::prelude::*;

use super::ingest::{Given, Mode, Write, check_unique};
use super::scale;
use super::state::state;
use super::store::{self, Labels};
use crate::block::geom::BlockCoord;
use crate::block::records;
use crate::block::stored::deserialize;
use crate::datatype::DataCtx;
use crate::datatype::{DataRequest, DataResponse};
use crate::{Error, Result};

/// A block payload format of `compression=`.
#[derive(Clone, Copy)]
enum Payload {
    /// gzip of the labels.Block (spec §5.2).
    Blocks,
    Uncompressed,
    Lz4,
    Gzip,
}

fn parse_payload(q: Option<&str>, default: Payload) -> Result<Payload> {
    match q {
        None => Ok(default),
        Some("blocks") => Ok(Payload::Blocks),
        Some("uncompressed") => Ok(Payload::Uncompressed),
        Some("lz4") => Ok(Payload::Lz4),
        Some("gzip") => Ok(Payload::Gzip),
        Some(other) => Err(Error::bad(format!(
            "compression {other:?} is not a block format: use blocks, uncompressed, lz4 or gzip"
        ))),
    }
}

/// One stored block as a record's payload.
fn transcode(labels: &Labels, stored: &[u8], payload: Payload) -> Result<Vec<u8>> {
    if let Payload::Blocks = payload {
        // Most blocks hold no merged supervoxel: they go out as stored, with only their label
        // table inflated to tell.
        if !labels.map_reads || !store::table_is_mapped(stored, &labels.mapping)? {
            return crate::block::stored::gzip_payload(stored);
        }
        let mut block = deserialize(stored)?;
        store::map_table(&mut block, &labels.mapping)?;
        return Ok(crate::block::stored::gzip(&block, 1));
    }
    let mut voxels = vec![0u64; labels.cfg.block_voxels()];
    labels.decode_mapped(&[stored.to_vec()], &mut voxels)?;
    let raw: &[u8] = bytemuck::cast_slice(&voxels);
    Ok(match payload {
        Payload::Uncompressed => raw.to_vec(),
        Payload::Lz4 => lz4_flex::block::compress(raw),
        _ => crate::block::stored::gzip(raw, 1),
    })
}

fn records(labels: &Labels, blocks: Vec<(BlockCoord, Vec<u8>)>, payload: Payload) -> Result<Bytes> {
    let parts: Vec<Vec<u8>> = blocks
        .par_iter()
        .map(|(c, stored)| {
            let p = transcode(labels, stored, payload)?;
            let mut rec = Vec::with_capacity(16 + p.len());
            records::put(&mut rec, *c, &p);
            Ok(rec)
        })
        .collect::<Result<_>>()?;
    Ok(Bytes::from(parts.concat()))
}

/// `GET blocks/<size>/<offset>`: every stored block of a block-aligned box, one (z, y) row of
/// blocks per streamed chunk.
pub fn get(labels: Labels, req: &DataRequest) -> Result<DataResponse> {
    let bs = labels.cfg.block_size;
    let bx = records::aligned_box(&req.path, bs, "blocks")?;
    let scale = scale(&labels.cfg, &req.query)?;
    let payload = parse_payload(req.query.get("compression"), Payload::Lz4)?;
    let (lo, hi) = bx.block_range(bs);
    let rows = (lo[2]..=hi[2]).flat_map(move |z| (lo[1]..=hi[1]).map(move |y| (z, y)));
    let it = rows.map(move |(z, y)| {
        let mut blocks = Vec::new();
        labels.blocks.row(scale, z, y, lo[0], hi[0], &mut |c, v| {
            blocks.push((c, v.to_vec()));
            Ok(())
        })?;
        records(&labels, blocks, payload)
    });
    Ok(DataResponse::stream("application/octet-stream", it))
}

/// `GET specificblocks?blocks=x,y,z,…`: the listed blocks that exist, in the order listed.
pub fn specific(labels: Labels, req: &DataRequest) -> Result<DataResponse> {
    let list = req
        .query
        .get("blocks")
        .ok_or_else(|| Error::bad("specificblocks needs blocks=x,y,z,... (block coordinates)"))?;
    let coords = records::parse_list(list)?;
    let scale = scale(&labels.cfg, &req.query)?;
    let payload = parse_payload(req.query.get("compression"), Payload::Blocks)?;
    let found: Vec<Option<Vec<u8>>> = coords
        .par_iter()
        .map(|c| labels.blocks.get(scale, *c))
        .collect::<Result<_>>()?;
    let blocks: Vec<(BlockCoord, Vec<u8>)> = coords
        .into_iter()
        .zip(found)
        .filter_map(|(c, v)| v.map(|v| (c, v)))
        .collect();
    Ok(DataResponse::octets(records(&labels, blocks, payload)?))
}

/// `POST blocks` and `POST ingest-supervoxels`: records whose payloads are gzip(labels.Block).
/// Every record is checked (and decoded) before anything is stored.
pub fn post(
    ctx: &DataCtx,
    labels: Labels,
    req: &DataRequest,
    supervoxels_only: bool,
) -> Result<DataResponse> {
    let scale = scale(&labels.cfg, &req.query)?;
    // DVID takes only its own block format here; anything else would be stored as if it were.
    match req.query.get("compression") {
        None | Some("" | "blocks") => {}
        Some(other) => {
            return Err(Error::bad(format!(
                "compression {other:?} is not accepted: posted blocks must be \"blocks\" (the default, gzip of labels.Block)"
            )));
        }
    }
    let downres = req.query.flag("downres")?;
    if downres && (supervoxels_only || scale != 0) {
        return Err(Error::bad(
            "downres=true applies only to POST blocks at scale 0",
        ));
    }
    let records = records::parse(&req.body)?;
    let coords: Vec<BlockCoord> = records.iter().map(|r| r.0).collect();
    check_unique(&coords)?;
    let mode = if supervoxels_only {
        Mode {
            scale,
            index: false,
            track: false,
            downres: false,
        }
    } else {
        Mode {
            scale,
            index: scale == 0 && labels.cfg.indexed_labels && !req.query.flag("noindexing")?,
            track: scale == 0,
            downres: downres && labels.cfg.max_downres_level > 0,
        }
    };
    let block_voxels = labels.cfg.block_voxels();
    // A labels.Block can't be larger than a table entry and an index per voxel plus packing.
    let limit = block_voxels * 16 + (1 << 20);
    let change = ctx.mutation()?;
    let st = state(ctx);
    // This write rebuilds or writes coarse blocks itself, from the stored ones: let edits
    // answered before it finish theirs first (not under the lock, which a rebuild takes).
    super::pyramid::settle(ctx)?;
    let _writes = st.writes.write();
    let mapping = labels.mapping.clone();
    let per_batch = labels.blocks_per_batch();
    let mut buf = vec![0u64; per_batch.min(records.len()) * block_voxels];
    let mut write = Write::new(labels.clone(), mode, change, mapping);
    for batch in records.chunks(per_batch) {
        let given: Vec<Given> = batch
            .par_iter()
            .map(|(c, gz)| {
                let raw = crate::block::stored::gunzip(gz, limit).map_err(|e| {
                    Error::bad(format!(
                        "block {c:?}: payload is not a gzipped label block: {e}"
                    ))
                })?;
                Ok(Given {
                    raw,
                    gzipped: Some(gz.to_vec()),
                })
            })
            .collect::<Result<_>>()?;
        let voxels = &mut buf[..batch.len() * block_voxels];
        let refs: Vec<&[u8]> = given.iter().map(|g| g.raw.as_slice()).collect();
        labels.decode_blocks(&refs, voxels).map_err(|e| {
            Error::bad(format!(
                "a posted block is not a valid {} label block: {e}",
                labels.block_shape()
            ))
        })?;
        let cs: Vec<BlockCoord> = batch.iter().map(|r| r.0).collect();
        write.add(&cs, voxels, Some(given))?;
    }
    write.commit()?;
    Ok(DataResponse::empty())
}

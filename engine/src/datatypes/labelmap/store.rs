//! How a labelmap keeps its data in the versioned store: keys, the DVID serialization of
//! stored values, and [`Labels`], the instance's data at one version.
//!
//! TKeys (class bytes as DVID's, spec §2.1; Tessera's versioned layer needs no 0x01 marker):
//! * block: `186 ‖ scale ‖ z ‖ y ‖ x`, each coordinate u32 BE with the sign bit flipped, so key
//!   order is (scale, z, y, x) order and one (z, y) row of blocks is one key range;
//! * label index: `187 ‖ label u64 BE`;
//! * per-version max label: `237`; extents: `236` (both read over every ancestor);
//! * next label and its ceiling: `239`, `241`, repo-wide, stored at version 0, which no node
//!   has.

use std::io::{Read, Write};
use std::sync::Arc;

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use tessera_storage::{VersionId, VersionedStore, View};

use super::config::Config;
use super::geom::BlockCoord;
use super::index::LabelIndex;
use super::mapping::Mapping;
use crate::compute::{Compute, Shape, codec};
use crate::instance::DataCtx;
use crate::{Error, Result};

pub const CLASS_BLOCK: u8 = 186;
pub const CLASS_INDEX: u8 = 187;
pub const CLASS_EXTENTS: u8 = 236;
pub const CLASS_MAX_LABEL: u8 = 237;
pub const CLASS_NEXT_LABEL: u8 = 239;
pub const CLASS_CEILING: u8 = 241;

/// The version repo-wide values live at.
pub const REPO_WIDE: VersionId = 0;

fn flip(v: i32) -> [u8; 4] {
    ((v as u32) ^ 0x8000_0000).to_be_bytes()
}

fn unflip(b: &[u8]) -> i32 {
    (u32::from_be_bytes(b.try_into().expect("4 bytes")) ^ 0x8000_0000) as i32
}

pub fn block_key(scale: u8, c: BlockCoord) -> [u8; 14] {
    let mut k = [0u8; 14];
    k[0] = CLASS_BLOCK;
    k[1] = scale;
    k[2..6].copy_from_slice(&flip(c[2]));
    k[6..10].copy_from_slice(&flip(c[1]));
    k[10..14].copy_from_slice(&flip(c[0]));
    k
}

pub fn block_key_coord(k: &[u8]) -> Result<BlockCoord> {
    if k.len() != 14 || k[0] != CLASS_BLOCK {
        return Err(Error::Internal("malformed labelmap block key".into()));
    }
    Ok([unflip(&k[10..14]), unflip(&k[6..10]), unflip(&k[2..6])])
}

pub fn index_key(label: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = CLASS_INDEX;
    k[1..].copy_from_slice(&label.to_be_bytes());
    k
}

pub fn index_key_label(k: &[u8]) -> Result<u64> {
    match k.split_first() {
        Some((&CLASS_INDEX, rest)) if rest.len() == 8 => {
            Ok(u64::from_be_bytes(rest.try_into().expect("8 bytes")))
        }
        _ => Err(Error::Internal("malformed label index key".into())),
    }
}

/// How stored values are compressed: DVID serialization (spec §2.2), first byte
/// `compression << 5`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    None,
    Gzip(u32),
    Lz4,
}

const FORMAT_NONE: u8 = 0x00;
const FORMAT_GZIP: u8 = 0x40;
const FORMAT_LZ4: u8 = 0x80;

impl Stored {
    /// From the instance's normalized compression setting; labelmap defaults to gzip.
    pub fn from_setting(s: &str) -> Result<Stored> {
        match s.split_once(':') {
            None if s == "gzip" => Ok(Stored::Gzip(6)),
            Some(("gzip", level)) => Ok(Stored::Gzip(level.parse().unwrap_or(6))),
            None if s == "lz4" => Ok(Stored::Lz4),
            None if s == "none" => Ok(Stored::None),
            _ => Err(Error::bad(format!(
                "labelmap blocks can be stored with gzip, gzip:N, lz4 or none, not {s:?}"
            ))),
        }
    }

    pub fn serialize(self, data: &[u8]) -> Vec<u8> {
        match self {
            Stored::None => {
                let mut out = Vec::with_capacity(data.len() + 1);
                out.push(FORMAT_NONE);
                out.extend_from_slice(data);
                out
            }
            Stored::Gzip(level) => {
                let mut out = vec![FORMAT_GZIP];
                out.extend_from_slice(&gzip(data, level));
                out
            }
            Stored::Lz4 => lz4_serialize(data),
        }
    }
}

/// A gzip stream as a stored value, passed through as it came.
pub fn wrap_gzip(gz: &[u8]) -> Vec<u8> {
    [&[FORMAT_GZIP][..], gz].concat()
}

/// A stored value as the DVID LZ4 serialization: `0x80 ‖ u32 LE length ‖ LZ4 block`.
pub fn lz4_serialize(data: &[u8]) -> Vec<u8> {
    let mut out = vec![FORMAT_LZ4];
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&lz4_flex::block::compress(data));
    out
}

/// The bytes inside a stored value.
pub fn deserialize(stored: &[u8]) -> Result<Vec<u8>> {
    let corrupt = |what: &str| Error::Internal(format!("stored value: {what}"));
    match stored.split_first() {
        None => Ok(Vec::new()),
        Some((&FORMAT_NONE, rest)) => Ok(rest.to_vec()),
        Some((&FORMAT_GZIP, rest)) => gunzip(rest, usize::MAX).map_err(|_| corrupt("bad gzip")),
        Some((&FORMAT_LZ4, rest)) if rest.len() >= 4 => {
            let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
            lz4_flex::block::decompress(&rest[4..], len).map_err(|_| corrupt("bad lz4"))
        }
        Some((b, _)) => Err(corrupt(&format!("unknown format byte {b:#04x}"))),
    }
}

/// gzip(labels.Block) of a stored block, as `compression=blocks` serves it: the stored bytes
/// themselves when they are gzip.
pub fn gzip_payload(stored: &[u8]) -> Result<Vec<u8>> {
    match stored.split_first() {
        Some((&FORMAT_GZIP, rest)) => Ok(rest.to_vec()),
        _ => Ok(gzip(&deserialize(stored)?, 6)),
    }
}

pub fn gzip(data: &[u8], level: u32) -> Vec<u8> {
    let mut enc = GzEncoder::new(
        Vec::with_capacity(data.len() / 4 + 64),
        Compression::new(level),
    );
    enc.write_all(data).expect("writing to a Vec");
    enc.finish().expect("writing to a Vec")
}

/// Inflates a gzip stream, refusing to produce more than `limit` bytes.
pub fn gunzip(data: &[u8], limit: usize) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len() * 4);
    let read = GzDecoder::new(data)
        .take(limit.saturating_add(1) as u64)
        .read_to_end(&mut out)?;
    if read > limit {
        return Err(std::io::Error::other("inflated data is too large"));
    }
    Ok(out)
}

/// A scan visitor: sees each key and value, returns whether to go on.
pub type KeyVisitor<'a> = dyn FnMut(&[u8], &[u8]) -> Result<bool> + 'a;

/// A labelmap's data at one version, owned so streaming responses can carry it.
#[derive(Clone)]
pub struct Labels {
    pub store: VersionedStore,
    pub view: View,
    pub cfg: Arc<Config>,
    pub stored: Stored,
    pub compute: Arc<dyn Compute>,
    /// The version's supervoxel → body mapping (empty until `with_mapping`).
    pub mapping: Arc<Mapping>,
    /// Whether reads map supervoxels to bodies (`decode_mapped`); false for
    /// `supervoxels=true`.
    pub map_reads: bool,
}

impl Labels {
    pub fn new(ctx: &DataCtx) -> Result<Labels> {
        Ok(Labels {
            store: ctx.store.clone(),
            view: ctx.view.clone(),
            cfg: Arc::new(Config::from_json(&ctx.instance.config)?),
            stored: Stored::from_setting(&ctx.instance.compression)?,
            compute: ctx.engine.compute().clone(),
            mapping: Arc::default(),
            map_reads: false,
        })
    }

    /// These labels with the version's mapping, applied to reads unless `supervoxels`.
    pub fn with_mapping(mut self, mapping: Arc<Mapping>, supervoxels: bool) -> Labels {
        self.mapping = mapping;
        self.map_reads = !supervoxels;
        self
    }

    /// The body a supervoxel belongs to at this version (0: retired).
    pub fn body(&self, sv: u64) -> u64 {
        self.mapping.body(sv)
    }

    pub fn block_shape(&self) -> Shape {
        self.cfg.block_shape()
    }

    /// The stored (serialized) block at `c`, if any.
    pub fn stored_block(&self, scale: u8, c: BlockCoord) -> Result<Option<Vec<u8>>> {
        Ok(self.store.get(&self.view, &block_key(scale, c))?)
    }

    /// Visits the keys in `[lo, hi]` visible at this version, in key order, until the
    /// visitor returns false; a visitor error ends the scan and is returned.
    pub fn scan(&self, lo: &[u8], hi: &[u8], visit: &mut KeyVisitor<'_>) -> Result<()> {
        let mut err = None;
        self.store
            .range(&self.view, lo, Some(hi), &mut |k, v| match visit(k, v) {
                Ok(more) => Ok(more),
                Err(e) => {
                    err = Some(e);
                    Ok(false)
                }
            })?;
        err.map_or(Ok(()), Err)
    }

    /// Visits the stored blocks of the row (z, y) with x in `x0..=x1`, in x order.
    pub fn row(
        &self,
        scale: u8,
        z: i32,
        y: i32,
        x0: i32,
        x1: i32,
        visit: &mut dyn FnMut(BlockCoord, &[u8]) -> Result<()>,
    ) -> Result<()> {
        let (lo, hi) = (block_key(scale, [x0, y, z]), block_key(scale, [x1, y, z]));
        self.scan(&lo, &hi, &mut |k, v| {
            visit(block_key_coord(k)?, v)?;
            Ok(true)
        })
    }

    /// How many blocks batch work decodes or gathers at once: 128 MiB of voxels.
    pub fn blocks_per_batch(&self) -> usize {
        ((128 << 20) / (self.cfg.block_voxels() * 8)).max(1)
    }

    /// Decodes serialized blocks into `out` (block after block); checks each is this
    /// instance's block size.
    pub fn decode_stored(&self, stored: &[Vec<u8>], out: &mut [u64]) -> Result<()> {
        self.decode_serialized(stored, out).map(|_| ())
    }

    /// `decode_stored`, returning the labels.Block bytes it decoded.
    fn decode_serialized(&self, stored: &[Vec<u8>], out: &mut [u64]) -> Result<Vec<Vec<u8>>> {
        use rayon::prelude::*;
        let raw: Vec<Vec<u8>> = stored
            .par_iter()
            .map(|s| deserialize(s))
            .collect::<Result<_>>()?;
        let refs: Vec<&[u8]> = raw.iter().map(Vec::as_slice).collect();
        self.decode_blocks(&refs, out)?;
        Ok(raw)
    }

    /// `decode_stored`, then each supervoxel mapped to its body when reads are mapped.
    pub fn decode_mapped(&self, stored: &[Vec<u8>], out: &mut [u64]) -> Result<()> {
        if !self.map_reads {
            return self.decode_stored(stored, out);
        }
        let raw = self.decode_serialized(stored, out)?;
        let mut present = Vec::new();
        for b in &raw {
            present.extend(table_labels(b)?);
        }
        present.sort_unstable();
        present.dedup();
        if let Some(table) = self.mapping.table_for(&present) {
            self.compute.relabel(out, &table)?;
        }
        Ok(())
    }

    /// Decodes labels.Block byte strings into `out`, checking their size.
    pub fn decode_blocks(&self, blocks: &[&[u8]], out: &mut [u64]) -> Result<()> {
        if blocks.is_empty() {
            return Ok(());
        }
        let shape = codec::batch_shape(blocks)?;
        if shape != self.block_shape() {
            return Err(Error::bad(format!(
                "a {shape} label block does not match this instance's block size {}",
                self.block_shape()
            )));
        }
        self.compute.block_decode_into(blocks, out)?;
        Ok(())
    }

    pub fn index(&self, label: u64) -> Result<Option<LabelIndex>> {
        match self.store.get(&self.view, &index_key(label))? {
            None => Ok(None),
            Some(v) => decode_index(&v).map(Some),
        }
    }

    /// The values of a key over this version and its ancestors (repo-wide ones included).
    pub fn ancestry_values(&self, tkey: &[u8]) -> Result<Vec<(VersionId, Vec<u8>)>> {
        let dag = &self.view.dag;
        let v = self.view.version;
        Ok(self
            .store
            .entries(self.view.instance, tkey)?
            .into_iter()
            .filter(|(ver, _)| *ver == v || *ver == REPO_WIDE || dag.is_ancestor(*ver, v))
            .filter_map(|(ver, val)| val.map(|b| (ver, b)))
            .collect())
    }

    /// Every version's value of a key, whatever the version's place in the DAG.
    pub fn all_values(&self, tkey: &[u8]) -> Result<Vec<(VersionId, Vec<u8>)>> {
        Ok(self
            .store
            .entries(self.view.instance, tkey)?
            .into_iter()
            .filter_map(|(ver, val)| val.map(|b| (ver, b)))
            .collect())
    }

    /// The view repo-wide values are written and read at.
    pub fn repo_view(&self) -> View {
        View {
            version: REPO_WIDE,
            ..self.view.clone()
        }
    }
}

/// The label table of a labels.Block, sorted and deduplicated: every supervoxel it can hold.
pub fn table_labels(block: &[u8]) -> Result<Vec<u64>> {
    let h = codec::header(block)?;
    let mut out: Vec<u64> = (0..h.n)
        .map(|i| {
            let at = h.table_at + 8 * i;
            u64::from_le_bytes(block[at..at + 8].try_into().expect("8 bytes"))
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Maps a labels.Block's label table in place (the table may then hold duplicates, which the
/// format allows); returns whether any label changed.
pub fn map_table(block: &mut [u8], mapping: &Mapping) -> Result<bool> {
    let h = codec::header(block)?;
    let mut changed = false;
    for i in 0..h.n {
        let at = h.table_at + 8 * i;
        let l = u64::from_le_bytes(block[at..at + 8].try_into().expect("8 bytes"));
        let body = mapping.body(l);
        if body != l {
            block[at..at + 8].copy_from_slice(&body.to_le_bytes());
            changed = true;
        }
    }
    Ok(changed)
}

pub fn decode_index(stored: &[u8]) -> Result<LabelIndex> {
    use prost::Message;
    LabelIndex::decode(deserialize(stored)?.as_slice())
        .map_err(|e| Error::Internal(format!("stored label index: {e}")))
}

pub fn encode_index(index: &LabelIndex) -> Vec<u8> {
    use prost::Message;
    lz4_serialize(&index.encode_to_vec())
}

pub fn u64_value(v: &[u8]) -> u64 {
    v.try_into().map(u64::from_le_bytes).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_keys_sort_in_zyx_order_and_round_trip() {
        let coords = [
            [5, -1, -1],
            [-3, 0, -1],
            [0, 0, 0],
            [1, 0, 0],
            [-9, 1, 0],
            [0, 0, 2],
        ];
        let keys: Vec<[u8; 14]> = coords.iter().map(|c| block_key(0, *c)).collect();
        for w in keys.windows(2) {
            assert!(w[0] < w[1]);
        }
        for (c, k) in coords.iter().zip(&keys) {
            assert_eq!(block_key_coord(k).unwrap(), *c);
        }
        assert!(block_key(0, [9, 9, 9]) < block_key(1, [-9, -9, -9]));
    }

    #[test]
    fn serializations_round_trip() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        for s in [Stored::None, Stored::Gzip(6), Stored::Lz4] {
            assert_eq!(deserialize(&s.serialize(&data)).unwrap(), data);
        }
        assert_eq!(Stored::Gzip(1).serialize(&data)[0], 0x40);
        assert!(deserialize(&[0x40, 1, 2, 3]).is_err());
        assert!(gunzip(&gzip(&data, 1), 100).is_err());
    }
}

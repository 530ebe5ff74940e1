//! How a labelmap keeps its data in the versioned store: its keys besides the blocks (which
//! the block layer keys), and [`Labels`], the instance's data at one version.
//!
//! TKeys (class bytes as DVID's, spec §2.1; Tessera's versioned layer needs no 0x01 marker):
//! * block: `crate::block::keys`;
//! * label index: `187 ‖ label u64 BE`;
//! * per-version max label: `237`; extents: `236` (both read over every ancestor);
//! * next label and its ceiling: `239`, `241`, repo-wide, stored at version 0, which no node
//!   has.

use std::collections::BTreeMap;
use std::sync::Arc;

use tessera_storage::{VersionId, View};

use super::config::Config;
use super::index::LabelIndex;
use super::mapping::Mapping;
use crate::block::geom::BlockCoord;
use crate::block::read::{KeyVisitor, scan_visible};
use crate::block::stored::{Stored, deserialize, lz4_serialize};
use crate::block::{Blocks, Voxel};
use crate::compute::{Compute, Shape, codec};
use crate::datatype::DataCtx;
use crate::{Error, Result};

pub const CLASS_INDEX: u8 = 187;
pub const CLASS_MAX_LABEL: u8 = 237;
pub const CLASS_NEXT_LABEL: u8 = 239;
pub const CLASS_CEILING: u8 = 241;

/// The version repo-wide values live at.
pub const REPO_WIDE: VersionId = 0;

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

/// A labelmap's data at one version, owned so streaming responses can carry it.
#[derive(Clone)]
pub struct Labels {
    /// The blocks, and through them the store and version everything else is read at.
    pub blocks: Blocks,
    pub cfg: Arc<Config>,
    pub compute: Arc<dyn Compute>,
    /// The version's supervoxel → body mapping (empty until `with_mapping`).
    pub mapping: Arc<Mapping>,
    /// Whether reads map supervoxels to bodies (`decode_mapped`); false for
    /// `supervoxels=true`.
    pub map_reads: bool,
    /// Where the voxels are when they are not this instance's own blocks: a labelvol's index
    /// over the raw uint64 blocks of the labelblk it syncs to (`with_source`). Index and
    /// counter keys stay in `blocks`' instance.
    pub source: Option<Blocks>,
}

impl Labels {
    pub fn new(ctx: &DataCtx) -> Result<Labels> {
        let cfg = Config::from_json(&ctx.instance.config)?;
        Ok(Labels {
            blocks: Blocks::of(
                ctx,
                cfg.block_shape(),
                Stored::from_setting(&ctx.instance.compression, cfg.block_shape())?,
            ),
            cfg: Arc::new(cfg),
            compute: ctx.services.compute.clone(),
            mapping: Arc::default(),
            map_reads: false,
            source: None,
        })
    }

    /// The labels of the instance of `ctx` configured as `cfg` (a labelvol's), whose voxels are
    /// the raw uint64 blocks `source` (its labelblk's) rather than blocks of its own.
    pub fn with_source(ctx: &DataCtx, cfg: Config, source: Blocks) -> Labels {
        Labels {
            blocks: Blocks::of(ctx, source.shape, source.stored),
            cfg: Arc::new(cfg),
            compute: ctx.services.compute.clone(),
            mapping: Arc::default(),
            map_reads: false,
            source: Some(source),
        }
    }

    /// The blocks voxels are read from: the source's when there is one, else the instance's.
    pub fn voxel_blocks(&self) -> &Blocks {
        self.source.as_ref().unwrap_or(&self.blocks)
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
        self.blocks.shape
    }

    /// Visits the keys in `[lo, hi]` visible at this version, in key order, until the
    /// visitor returns false; a visitor error ends the scan and is returned.
    pub fn scan(&self, lo: &[u8], hi: &[u8], visit: &mut KeyVisitor<'_>) -> Result<()> {
        scan_visible(&self.blocks.store, &self.blocks.view, lo, hi, visit)
    }

    /// How many blocks batch work decodes or gathers at once.
    pub fn blocks_per_batch(&self) -> usize {
        self.blocks.per_batch::<u64>()
    }

    /// Decodes serialized blocks into `out` (block after block); checks each is this
    /// instance's block size.
    pub fn decode_stored<S: AsRef<[u8]> + Sync>(
        &self,
        stored: &[S],
        out: &mut [u64],
    ) -> Result<()> {
        self.decode_serialized(stored, out).map(|_| ())
    }

    /// One serialized block as a mask: 1 where `keep` holds for the voxel's label. Decoded
    /// on the CPU straight from the block's label table, without 64-bit labels; checks the
    /// block is this instance's block size.
    pub fn mask_stored(&self, stored: &[u8], keep: impl Fn(u64) -> bool) -> Result<Vec<u8>> {
        let payload = deserialize(stored)?;
        let n = self.cfg.block_voxels();
        let mut out = vec![0u8; n];
        if self.source.is_some() {
            for (m, l) in out.iter_mut().zip(self.raw_labels(&payload)?) {
                *m = u8::from(keep(l));
            }
            return Ok(out);
        }
        let shape = codec::decode_mask_into(&payload, &mut out, keep)?;
        if shape != self.block_shape() {
            return Err(Error::Internal(format!(
                "a stored block is {shape}, not the instance's {}",
                self.block_shape()
            )));
        }
        Ok(out)
    }

    /// `decode_stored`, returning the labels.Block bytes it decoded.
    fn decode_serialized<S: AsRef<[u8]> + Sync>(
        &self,
        stored: &[S],
        out: &mut [u64],
    ) -> Result<Vec<Vec<u8>>> {
        let raw = Blocks::payloads(stored)?;
        let refs: Vec<&[u8]> = raw.iter().map(Vec::as_slice).collect();
        self.decode_blocks(&refs, out)?;
        Ok(raw)
    }

    /// A reader of single voxels and rows of a stored labels.Block (`payload`, deserialized),
    /// checked to have the instance's block shape.
    pub fn reader<'a>(&self, payload: &'a [u8]) -> Result<codec::VoxelReader<'a>> {
        let r = codec::VoxelReader::new(payload)?;
        if r.shape() != self.block_shape() {
            return Err(Error::Internal(format!(
                "a stored block is {}, not the instance's {}",
                r.shape(),
                self.block_shape()
            )));
        }
        Ok(r)
    }

    /// The label at each point (voxel coordinates) at `scale`, mapped when reads are mapped;
    /// 0 where no block is stored. Reads the voxels in place, each block fetched once: a
    /// few points per block (annotation elements, `GET labels`) don't pay a block decode.
    pub fn voxels_at(&self, scale: u8, points: &[[i64; 3]]) -> Result<Vec<u64>> {
        let bs = self.cfg.block_size;
        let mut by_block: BTreeMap<BlockCoord, Vec<usize>> = BTreeMap::new();
        for (i, p) in points.iter().enumerate() {
            let c = std::array::from_fn(|a| p[a].div_euclid(bs[a] as i64) as i32);
            by_block.entry(c).or_default().push(i);
        }
        let mut out = vec![0u64; points.len()];
        let coords: Vec<BlockCoord> = by_block.keys().copied().collect();
        for chunk in coords.chunks(self.blocks_per_batch()) {
            let stored = self.voxel_blocks().get_many(scale, chunk)?;
            for (c, s) in chunk.iter().zip(stored) {
                let Some(s) = s else { continue };
                let payload = deserialize(&s)?;
                let local = |i: usize| -> [usize; 3] {
                    std::array::from_fn(|a| points[i][a].rem_euclid(bs[a] as i64) as usize)
                };
                if self.source.is_some() {
                    // Raw little-endian uint64 blocks.
                    if payload.len() != self.cfg.block_voxels() * 8 {
                        return Err(Error::Internal(format!(
                            "a stored block of {} bytes is not a {} block of uint64 labels",
                            payload.len(),
                            self.block_shape()
                        )));
                    }
                    for &i in &by_block[c] {
                        let l = local(i);
                        let at = 8 * ((l[2] * bs[1] + l[1]) * bs[0] + l[0]);
                        out[i] = u64::from_le_bytes(payload[at..at + 8].try_into().expect("8"));
                    }
                } else {
                    let r = self.reader(&payload)?;
                    for &i in &by_block[c] {
                        out[i] = r.get(local(i))?;
                    }
                }
            }
        }
        if self.map_reads {
            for l in &mut out {
                *l = self.mapping.body(*l);
            }
        }
        Ok(out)
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

    /// Decodes labels.Block byte strings into `out`, checking their size (with a `source`:
    /// raw little-endian uint64 blocks).
    pub fn decode_blocks(&self, blocks: &[&[u8]], out: &mut [u64]) -> Result<()> {
        if self.source.is_none() {
            return u64::decode(self.compute.as_ref(), blocks, self.block_shape(), out);
        }
        let n = self.cfg.block_voxels();
        for (b, o) in blocks.iter().zip(out.chunks_exact_mut(n)) {
            for (v, l) in o.iter_mut().zip(self.raw_labels(b)?) {
                *v = l;
            }
        }
        Ok(())
    }

    /// The labels of a source's raw block (uint64 little-endian), checked to be one block.
    fn raw_labels<'a>(&self, b: &'a [u8]) -> Result<impl Iterator<Item = u64> + 'a> {
        if b.len() != self.cfg.block_voxels() * 8 {
            return Err(Error::Internal(format!(
                "a stored block of {} bytes is not a {} block of uint64 labels",
                b.len(),
                self.block_shape()
            )));
        }
        Ok(b.chunks_exact(8)
            .map(|le| u64::from_le_bytes(le.try_into().expect("8 bytes"))))
    }

    pub fn index(&self, label: u64) -> Result<Option<LabelIndex>> {
        match self
            .blocks
            .store
            .get(&self.blocks.view, &index_key(label))?
        {
            None => Ok(None),
            Some(v) => decode_index(&v).map(Some),
        }
    }

    /// The values of a key over this version and its ancestors (repo-wide ones included).
    pub fn ancestry_values(&self, tkey: &[u8]) -> Result<Vec<(VersionId, Vec<u8>)>> {
        let dag = &self.blocks.view.dag;
        let v = self.blocks.view.version;
        Ok(self
            .blocks
            .store
            .entries(self.blocks.view.instance, tkey)?
            .into_iter()
            .filter(|(ver, _)| *ver == v || *ver == REPO_WIDE || dag.is_ancestor(*ver, v))
            .filter_map(|(ver, val)| val.map(|b| (ver, b)))
            .collect())
    }

    /// Every version's value of a key, whatever the version's place in the DAG.
    pub fn all_values(&self, tkey: &[u8]) -> Result<Vec<(VersionId, Vec<u8>)>> {
        Ok(self
            .blocks
            .store
            .entries(self.blocks.view.instance, tkey)?
            .into_iter()
            .filter_map(|(ver, val)| val.map(|b| (ver, b)))
            .collect())
    }

    /// The view repo-wide values are written and read at.
    pub fn repo_view(&self) -> View {
        View {
            version: REPO_WIDE,
            ..self.blocks.view.clone()
        }
    }
}

/// The label table of a labels.Block, sorted and deduplicated: every supervoxel it can hold.
pub fn table_labels(block: &[u8]) -> Result<Vec<u64>> {
    // The whole block is checked, not only its head: a corrupt block is not read from.
    codec::header(block)?;
    let mut out: Vec<u64> = codec::head_labels(block)?.collect();
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Whether `mapping` changes any label in the table of a stored labels.Block, reading only
/// the block's head (header and table) when it is stored gzipped.
pub fn table_is_mapped(stored: &[u8], mapping: &Mapping) -> Result<bool> {
    use crate::block::stored::head;
    let len = codec::head_len(&head(stored, codec::HEADER_BYTES)?)?;
    Ok(codec::head_labels(&head(stored, len)?)?.any(|l| mapping.body(l) != l))
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

//! [`Image`]: an image instance's data at one version, over the block layer — reading any
//! box as little-endian voxel bytes, and writing whole blocks through the one block writer
//! with the extents and the `BLOCK_INGEST` event around them.

use std::sync::Arc;

use rayon::prelude::*;

use super::config::Config;
use crate::block::geom::{BlockCoord, VoxelBox};
use crate::block::volume::{bytes_wide, copy_block};
use crate::block::{Blocks, Stored, Writer, extents};
use crate::compute::Compute;
use crate::datatype::{DataCtx, Mutation};
use crate::sync::{BLOCK_INGEST, BLOCK_MUTATE, BlockChange, Delta};
use crate::{Error, Result};

/// How many blocks a read decodes at once.
const READ_BATCH_BYTES: usize = 64 << 20;

#[derive(Clone)]
pub struct Image {
    pub blocks: Blocks,
    pub cfg: Arc<Config>,
    pub compute: Arc<dyn Compute>,
    /// `roi=` on reads: voxels outside read as 0, or divided by 2^attenuation (uint8).
    pub mask: Option<(crate::datatypes::roi::Roi, u8)>,
}

impl Image {
    pub fn new(ctx: &DataCtx) -> Result<Image> {
        let cfg = Config::from_json(&ctx.instance.config)?;
        Ok(Image {
            blocks: Blocks::of(
                ctx,
                cfg.block_shape(),
                Stored::from_setting(&ctx.instance.compression, cfg.block_shape())?,
            ),
            cfg: Arc::new(cfg),
            compute: ctx.services.compute.clone(),
            mask: None,
        })
    }

    pub fn bpv(&self) -> usize {
        self.cfg.kind.bytes_per_voxel()
    }

    /// A stored block's voxel bytes, checked against the block size.
    pub fn decode(&self, stored: &[u8]) -> Result<Vec<u8>> {
        let raw = crate::block::stored::deserialize(stored)?;
        if raw.len() != self.cfg.block_bytes() {
            return Err(Error::Internal(format!(
                "a stored block holds {} bytes where a {} block of {} is {}",
                raw.len(),
                self.blocks.shape,
                self.cfg.kind.type_name(),
                self.cfg.block_bytes()
            )));
        }
        Ok(raw)
    }

    /// A stored block's voxel bytes, decoded into `out` (one block's bytes).
    pub fn decode_into(&self, stored: &[u8], out: &mut [u8]) -> Result<()> {
        crate::block::stored::deserialize_into(stored, out)
    }

    /// Fills `out` with the voxel bytes of `bx` at `scale` (x fastest); unwritten space reads
    /// as zeros. Blocks are read a row at a time and decoded in parallel.
    pub fn fill(&self, bx: &VoxelBox, out: &mut [u8]) -> Result<()> {
        out.fill(0);
        let bs = self.cfg.block_size;
        let (wide, wide_bs) = bytes_wide(bx, bs, self.bpv());
        let (lo, hi) = bx.block_range(bs);
        let per_batch = (READ_BATCH_BYTES / self.cfg.block_bytes()).max(1);
        for bz in lo[2]..=hi[2] {
            for by in lo[1]..=hi[1] {
                let mut row: Vec<(BlockCoord, Vec<u8>)> = Vec::new();
                self.blocks.row(0, bz, by, lo[0], hi[0], &mut |c, v| {
                    row.push((c, v.to_vec()));
                    Ok(())
                })?;
                for batch in row.chunks(per_batch) {
                    let decoded: Vec<Vec<u8>> = batch
                        .par_iter()
                        .map(|(_, v)| self.decode(v))
                        .collect::<Result<_>>()?;
                    for ((c, _), block) in batch.iter().zip(&decoded) {
                        copy_block(block, *c, wide_bs, &wide, out);
                    }
                }
            }
        }
        if let Some((roi, attenuation)) = &self.mask {
            let bpv = self.bpv();
            roi.outside_runs(bx, |a, n| {
                let run = &mut out[a * bpv..(a + n) * bpv];
                if *attenuation == 0 {
                    run.fill(0);
                } else {
                    run.iter_mut().for_each(|v| *v >>= attenuation);
                }
            });
        }
        Ok(())
    }

    /// The voxel bytes of `bx`, whole.
    pub fn read(&self, bx: &VoxelBox) -> Result<Vec<u8>> {
        crate::block::volume::check_whole(bx, self.bpv())?;
        let mut out = vec![0u8; bx.voxels() * self.bpv()];
        self.fill(bx, &mut out)?;
        Ok(out)
    }
}

/// Held from reading a version's extents to committing their widening.
static EXTENTS: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

/// One write of whole blocks: stored through the block writer, the extents widened and one
/// `BLOCK_INGEST` event naming the blocks, committed as one mutation. For labels
/// (`Config::labels`) the events are label blocks' instead: `BLOCK_INGEST` for new blocks and
/// `BLOCK_MUTATE` for replaced ones, with the labels each held before and holds now.
pub struct Write<'a> {
    image: Image,
    writer: Writer<u8>,
    change: Mutation<'a>,
    coords: Vec<BlockCoord>,
    /// Label blocks' changes, when labels and someone subscribes.
    label_changes: Option<Vec<BlockChange>>,
}

/// The sorted distinct labels of uint64 voxel bytes.
pub fn label_set(voxels: &[u8]) -> Vec<u64> {
    let mut v: Vec<u64> = voxels
        .chunks_exact(8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

impl<'a> Write<'a> {
    pub fn new(image: &Image, change: Mutation<'a>) -> Write<'a> {
        let label_changes = (image.cfg.labels
            && (change.wants(BLOCK_INGEST) || change.wants(BLOCK_MUTATE)))
        .then(Vec::new);
        Write {
            writer: Writer::new(image.blocks.clone(), image.compute.clone(), 0, 0),
            image: image.clone(),
            change,
            coords: Vec::new(),
            label_changes,
        }
    }

    /// The label sets of new blocks and of the blocks they replace.
    fn note_labels(&mut self, coords: &[BlockCoord], voxels: &[u8]) -> Result<()> {
        let Some(changes) = &mut self.label_changes else {
            return Ok(());
        };
        let n = self.image.cfg.block_bytes();
        let prev = self.image.blocks.get_many(0, coords)?;
        let image = &self.image;
        let found: Vec<BlockChange> = coords
            .par_iter()
            .zip(voxels.par_chunks_exact(n))
            .zip(prev.par_iter())
            .map(|((c, v), p)| {
                Ok(BlockChange {
                    coord: *c,
                    prev: match p {
                        Some(s) => Some(label_set(&image.decode(s)?)),
                        None => None,
                    },
                    labels: label_set(v),
                })
            })
            .collect::<Result<_>>()?;
        changes.extend(found);
        Ok(())
    }

    /// Adds blocks given as their voxel bytes, one block after another.
    pub fn add(&mut self, coords: &[BlockCoord], voxels: &[u8]) -> Result<()> {
        let n = self.image.cfg.block_bytes();
        if voxels.len() != coords.len() * n {
            return Err(Error::Internal(
                "block bytes don't match their coordinates".into(),
            ));
        }
        self.note_labels(coords, voxels)?;
        let stored = self.image.blocks.stored;
        let values = voxels
            .par_chunks_exact(n)
            .map(|b| stored.serialize(b))
            .collect::<Result<Vec<_>>>()?;
        self.writer.put_stored(coords, values);
        self.coords.extend_from_slice(coords);
        Ok(())
    }

    /// Adds blocks already in their stored form (JPEG passed through as posted).
    pub fn add_stored(&mut self, coords: &[BlockCoord], values: Vec<Vec<u8>>) {
        self.writer.put_stored(coords, values);
        self.coords.extend_from_slice(coords);
    }

    pub fn commit(mut self) -> Result<()> {
        if self.coords.is_empty() {
            return Ok(());
        }
        let batch = self.writer.finish()?;
        self.change.batch.append(batch);
        let bs = self.image.cfg.block_size;
        let written = self
            .coords
            .iter()
            .fold(None, |acc, c| {
                Some(extents::union(acc, extents::of_block(*c, bs)))
            })
            .expect("blocks were written");
        let b = &self.image.blocks;
        // Widening the extents reads them and writes the union: two writes committing at once
        // would each drop the other's part. Commits are short beside the work before them.
        let _extents = EXTENTS.lock();
        extents::widen(&mut self.change.batch, &b.store, &b.view, written)?;
        if self.image.cfg.labels {
            let (ingest, mutate): (Vec<BlockChange>, Vec<BlockChange>) = self
                .label_changes
                .take()
                .unwrap_or_default()
                .into_iter()
                .partition(|b| b.prev.is_none());
            for (name, blocks) in [(BLOCK_INGEST, ingest), (BLOCK_MUTATE, mutate)] {
                if !blocks.is_empty() {
                    self.change.event(name, Delta::Blocks(blocks));
                }
            }
            return self.change.commit();
        }
        self.coords.sort_unstable_by_key(crate::block::geom::zyx);
        self.coords.dedup();
        self.change
            .event(BLOCK_INGEST, Delta::Image(std::mem::take(&mut self.coords)));
        self.change.commit()
    }
}

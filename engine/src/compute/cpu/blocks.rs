//! Per-block kernels over batches of blocks: label counts and the block codec.

use rayon::prelude::*;
use rustc_hash::FxHashMap;

use super::codec::{self, Encoder};
use super::{BlockCounts, Result, Shape};

/// Counts one block's labels, hashing once per run of equal labels.
pub fn counts(block: &[u64]) -> BlockCounts {
    let mut map: FxHashMap<u64, u32> = FxHashMap::default();
    let mut run = (block[0], 0u32);
    for &l in block {
        if l == run.0 {
            run.1 += 1;
        } else {
            *map.entry(run.0).or_default() += run.1;
            run = (l, 1);
        }
    }
    *map.entry(run.0).or_default() += run.1;
    let mut pairs: Vec<(u64, u32)> = map.into_iter().collect();
    pairs.sort_unstable();
    BlockCounts {
        labels: pairs.iter().map(|p| p.0).collect(),
        counts: pairs.iter().map(|p| p.1).collect(),
    }
}

pub fn label_counts(blocks: &[u64], block: Shape) -> Vec<BlockCounts> {
    blocks.par_chunks(block.voxels()).map(counts).collect()
}

pub fn block_decode_into(blocks: &[&[u8]], out: &mut [u64]) -> Result<Shape> {
    let shape = codec::batch_shape(blocks)?;
    codec::check_out_len(shape, blocks.len(), out.len())?;
    out.par_chunks_mut(shape.voxels())
        .zip(blocks)
        .try_for_each(|(o, b)| codec::decode_into(b, o).map(|_| ()))?;
    Ok(shape)
}

pub fn block_encode(labels: &[u64], block: Shape) -> Result<Vec<Vec<u8>>> {
    labels
        .par_chunks(block.voxels())
        .map_init(Encoder::default, |encoder, b| {
            let mut out = Vec::new();
            encoder.encode_into(b, block, &mut out)?;
            Ok(out)
        })
        .collect()
}

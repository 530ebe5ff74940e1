//! The rayon backend: one twin per shader, same name and buffer layout.
//!
//! `relabel` holds `relabel` and `split_apply` (through the hash in `lookup`), `pyramid` the
//! tiled 2×2×2 downsampling shared by `mode` (u64 labels) and `mean` (u8 images), `blocks` the
//! per-block kernels and the batch codec, `batch` the whole per-block sequence of `run_batch`.

mod alloc;
mod batch;
mod blocks;
mod lookup;
mod mean;
mod mode;
mod pyramid;
mod relabel;
mod surface;
#[cfg(test)]
mod test_data;

use super::{
    Backend, BatchInput, BatchOutput, BatchSteps, BlockCounts, Cells, Compute, LabelSurface,
    LabelTable, Result, Run, Shape,
};
use super::{check_levels, codec, normalize_runs};

pub struct CpuCompute {}

impl CpuCompute {
    /// Uses rayon's global pool.
    pub fn new() -> CpuCompute {
        CpuCompute {}
    }
}

impl Default for CpuCompute {
    fn default() -> CpuCompute {
        CpuCompute::new()
    }
}

impl Compute for CpuCompute {
    fn backend(&self) -> Backend {
        Backend::Cpu
    }

    fn adapter(&self) -> String {
        format!("rayon, {} threads", rayon::current_num_threads())
    }

    fn relabel(&self, labels: &mut [u64], table: &LabelTable) -> Result<()> {
        relabel::relabel(labels, table);
        Ok(())
    }

    fn split_apply(
        &self,
        labels: &mut [u64],
        shape: Shape,
        runs: &[Run],
        table: &LabelTable,
    ) -> Result<u64> {
        shape.check_len(labels.len(), "split")?;
        if relabel::is_normalized(runs, shape) {
            Ok(relabel::split_apply(labels, shape, runs, table))
        } else {
            let runs = normalize_runs(runs, shape);
            Ok(relabel::split_apply(labels, shape, &runs, table))
        }
    }

    fn downsample_mode(&self, src: &[u64], shape: Shape) -> Result<Vec<u64>> {
        shape.check_len(src.len(), "downsample mode")?;
        Ok(pyramid::downsample(src, shape))
    }

    fn pyramid_mode(&self, src: &[u64], shape: Shape, levels: u32) -> Result<Vec<Vec<u64>>> {
        shape.check_len(src.len(), "pyramid mode")?;
        check_levels(levels)?;
        Ok(pyramid::pyramid(src, shape, levels))
    }

    fn downsample_mean(&self, src: &[u8], shape: Shape) -> Result<Vec<u8>> {
        shape.check_len(src.len(), "downsample mean")?;
        Ok(pyramid::downsample(src, shape))
    }

    fn pyramid_mean(&self, src: &[u8], shape: Shape, levels: u32) -> Result<Vec<Vec<u8>>> {
        shape.check_len(src.len(), "pyramid mean")?;
        check_levels(levels)?;
        Ok(pyramid::pyramid(src, shape, levels))
    }

    fn label_counts(&self, blocks: &[u64], block: Shape) -> Result<Vec<BlockCounts>> {
        block.check_batch(blocks.len(), "label counts")?;
        Ok(blocks::label_counts(blocks, block))
    }

    fn block_decode_into(&self, blocks: &[&[u8]], out: &mut [u64]) -> Result<Shape> {
        blocks::block_decode_into(blocks, out)
    }

    fn surface(&self, labels: &[u64], item: Shape, cells: Cells) -> Result<Vec<Vec<LabelSurface>>> {
        item.check_batch(labels.len(), "surface")?;
        cells.check(item)?;
        let items = labels.len() / item.voxels();
        Ok(surface::surface(labels, item, items, cells))
    }

    fn block_encode(&self, labels: &[u64], block: Shape) -> Result<Vec<Vec<u8>>> {
        codec::check_block_shape(block)?;
        block.check_batch(labels.len(), "block encode")?;
        blocks::block_encode(labels, block)
    }

    fn run_batch(
        &self,
        input: BatchInput<'_>,
        block: Shape,
        steps: &BatchSteps,
    ) -> Result<BatchOutput> {
        batch::run(input, block, steps)
    }
}

//! `Metered`: a `Compute` that times every kernel call of the backend it wraps into the
//! histogram `tessera_kernel_seconds{kernel, backend}` (through the `metrics` facade, a no-op
//! until the server installs a recorder). The engine wraps its backend once when it opens, so
//! every kernel call made through the engine's compute is timed exactly once.

use std::sync::Arc;
use std::time::Instant;

use super::{
    Backend, BatchInput, BatchOutput, BatchSteps, BlockCounts, Cells, Compute, LabelSurface,
    LabelTable, Result, Run, Shape, Transfers,
};

pub const KERNEL_SECONDS: &str = "tessera_kernel_seconds";

pub struct Metered {
    inner: Arc<dyn Compute>,
    /// The inner backend's name, read once: the label of every sample.
    backend: &'static str,
}

impl Metered {
    pub fn new(inner: Arc<dyn Compute>) -> Metered {
        let backend = inner.backend().name();
        Metered { inner, backend }
    }

    fn time<T>(&self, kernel: &'static str, f: impl FnOnce(&dyn Compute) -> T) -> T {
        let start = Instant::now();
        let out = f(self.inner.as_ref());
        metrics::histogram!(KERNEL_SECONDS, "kernel" => kernel, "backend" => self.backend)
            .record(start.elapsed().as_secs_f64());
        out
    }
}

impl Compute for Metered {
    fn backend(&self) -> Backend {
        self.inner.backend()
    }

    fn adapter(&self) -> String {
        self.inner.adapter()
    }

    fn relabel(&self, labels: &mut [u64], table: &LabelTable) -> Result<()> {
        self.time("relabel", |c| c.relabel(labels, table))
    }

    fn split_apply(
        &self,
        labels: &mut [u64],
        shape: Shape,
        runs: &[Run],
        table: &LabelTable,
    ) -> Result<u64> {
        self.time("split_apply", |c| c.split_apply(labels, shape, runs, table))
    }

    fn downsample_mode(&self, src: &[u64], shape: Shape) -> Result<Vec<u64>> {
        self.time("downsample_mode", |c| c.downsample_mode(src, shape))
    }

    fn pyramid_mode(&self, src: &[u64], shape: Shape, levels: u32) -> Result<Vec<Vec<u64>>> {
        self.time("pyramid_mode", |c| c.pyramid_mode(src, shape, levels))
    }

    fn downsample_mean(&self, src: &[u8], shape: Shape) -> Result<Vec<u8>> {
        self.time("downsample_mean", |c| c.downsample_mean(src, shape))
    }

    fn pyramid_mean(&self, src: &[u8], shape: Shape, levels: u32) -> Result<Vec<Vec<u8>>> {
        self.time("pyramid_mean", |c| c.pyramid_mean(src, shape, levels))
    }

    fn label_counts(&self, blocks: &[u64], block: Shape) -> Result<Vec<BlockCounts>> {
        self.time("label_counts", |c| c.label_counts(blocks, block))
    }

    fn block_decode_into(&self, blocks: &[&[u8]], out: &mut [u64]) -> Result<Shape> {
        self.time("block_decode_into", |c| c.block_decode_into(blocks, out))
    }

    // Overridden so the inner backend's own `block_decode` runs (its default calls the inner
    // `block_decode_into`, not ours): one sample per call, allocation included.
    fn block_decode(&self, blocks: &[&[u8]]) -> Result<(Shape, Vec<u64>)> {
        self.time("block_decode", |c| c.block_decode(blocks))
    }

    fn surface(&self, labels: &[u64], item: Shape, cells: Cells) -> Result<Vec<Vec<LabelSurface>>> {
        self.time("surface", |c| c.surface(labels, item, cells))
    }

    fn block_encode(&self, labels: &[u64], block: Shape) -> Result<Vec<Vec<u8>>> {
        self.time("block_encode", |c| c.block_encode(labels, block))
    }

    fn run_batch(
        &self,
        input: BatchInput<'_>,
        block: Shape,
        steps: &BatchSteps,
    ) -> Result<BatchOutput> {
        self.time("run_batch", |c| c.run_batch(input, block, steps))
    }

    fn transfers(&self) -> Transfers {
        self.inner.transfers()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compute::cpu::CpuCompute;
    use crate::test_metrics::capture;

    #[test]
    fn gives_the_inner_results_and_times_each_call_once() {
        let inner: Arc<dyn Compute> = Arc::new(CpuCompute::new());
        let metered = Metered::new(inner.clone());
        assert_eq!(metered.backend(), Backend::Cpu);
        assert_eq!(metered.adapter(), inner.adapter());
        let shape = Shape::new(6, 4, 2);
        let src: Vec<u64> = (0..shape.voxels() as u64).map(|i| i % 5).collect();
        let (got, samples) = capture(|| metered.downsample_mode(&src, shape).unwrap());
        assert_eq!(got, inner.downsample_mode(&src, shape).unwrap());
        assert_eq!(samples.len(), 1);
        assert_eq!(
            samples[0].0,
            "tessera_kernel_seconds{kernel=downsample_mode,backend=cpu}"
        );

        let block: Vec<u64> = (0..512).map(|i| i / 100).collect();
        let encoded = inner.block_encode(&block, Shape::new(8, 8, 8)).unwrap();
        let blocks: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
        let (got, samples) = capture(|| metered.block_decode(&blocks).unwrap());
        assert_eq!(got, inner.block_decode(&blocks).unwrap());
        let names: Vec<&str> = samples.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(
            names,
            ["tessera_kernel_seconds{kernel=block_decode,backend=cpu}"]
        );
    }
}

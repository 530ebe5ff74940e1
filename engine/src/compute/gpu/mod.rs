//! The wgpu backend: every kernel is the WGSL twin in `shaders/` of the CPU kernel of the same
//! name.
//!
//! Labels travel as `vec2<u32>` (lo, hi), so no adapter feature is needed. Inputs larger than
//! one storage binding (`Gpu::max_binding`, 128 MiB on lavapipe) are cut into independent
//! pieces: z-slabs for volumes, groups of blocks for batches. Shapes so large that not even one
//! piece fits (a single plane beyond the binding size) are computed by `reference` instead.
//!
//! Each kernel module exposes `record`, which records its dispatches into a given encoder on
//! given buffer ranges; the single-kernel methods upload, record and read back around it, and
//! `batch` chains the records of a whole `run_batch` on device-resident buffers.

mod bandwidth;
mod batch;
mod counts;
mod decode;
mod device;
mod downsample;
mod encode;
mod labels;
mod surface;
mod timer;

pub use bandwidth::Bandwidth;

use super::{
    Backend, BatchInput, BatchOutput, BatchSteps, BlockCounts, Cells, Compute, LabelSurface,
    LabelTable, Result, Run, Shape, Transfers, check_levels,
};
use device::Gpu;

/// Every kernel source starts with the shared helpers.
const COMMON: &str = include_str!("../../../../shaders/common.wgsl");
/// The relabel table's bindings and lookup, for the kernels that take one.
const TABLE: &str = include_str!("../../../../shaders/label_table.wgsl");

/// The compiled kernels, built once in `GpuCompute::new`.
struct Pipelines {
    relabel: wgpu::ComputePipeline,
    split_apply: wgpu::ComputePipeline,
    mode: wgpu::ComputePipeline,
    mean: wgpu::ComputePipeline,
    count_insert: wgpu::ComputePipeline,
    count_compact: wgpu::ComputePipeline,
    decode: wgpu::ComputePipeline,
    encode_locals: wgpu::ComputePipeline,
    encode_pack: wgpu::ComputePipeline,
    surface: surface::Kernels,
    copy: wgpu::ComputePipeline,
}

impl Pipelines {
    fn build(gpu: &Gpu) -> Pipelines {
        let source = |name: &str, body: &str| (name.to_string(), format!("{COMMON}\n{body}"));
        // The two table kernels share the table's bindings and lookup.
        let with_table = |body: &str| format!("{TABLE}\n{body}");
        let relabel = source(
            "relabel",
            &with_table(include_str!("../../../../shaders/relabel.wgsl")),
        );
        let split = source(
            "split_apply",
            &with_table(include_str!("../../../../shaders/split_apply.wgsl")),
        );
        let mode = source(
            "downsample_mode",
            include_str!("../../../../shaders/downsample_mode.wgsl"),
        );
        let mean = source(
            "downsample_mean",
            include_str!("../../../../shaders/downsample_mean.wgsl"),
        );
        let counts = source(
            "label_counts",
            include_str!("../../../../shaders/label_counts.wgsl"),
        );
        let decode = source(
            "block_decode",
            include_str!("../../../../shaders/block_decode.wgsl"),
        );
        let encode = source(
            "block_encode",
            include_str!("../../../../shaders/block_encode.wgsl"),
        );
        let surface = source("surface", include_str!("../../../../shaders/surface.wgsl"));
        let copy = source("copy", include_str!("../../../../shaders/copy.wgsl"));
        let make = |(name, src): &(String, String), entry: &str| gpu.pipeline(name, src, entry);
        Pipelines {
            relabel: make(&relabel, "main"),
            split_apply: make(&split, "main"),
            mode: make(&mode, "main"),
            mean: make(&mean, "main"),
            count_insert: make(&counts, "insert"),
            count_compact: make(&counts, "compact"),
            decode: make(&decode, "main"),
            encode_locals: make(&encode, "locals"),
            encode_pack: make(&encode, "pack"),
            surface: surface::Kernels::build(gpu, &surface.1),
            copy: make(&copy, "main"),
        }
    }
}

pub struct GpuCompute {
    gpu: Gpu,
    pipes: Pipelines,
}

impl GpuCompute {
    /// Opens a hardware adapter, or a software one (lavapipe) when `allow_software`, and
    /// compiles every kernel.
    pub fn new(allow_software: bool) -> Result<GpuCompute> {
        GpuCompute::open(allow_software, false)
    }

    /// `new`, with every compute pass timed on the device when the adapter has timestamp
    /// queries (`device_time`). For benchmarks: it assumes one call at a time.
    pub fn new_timed(allow_software: bool) -> Result<GpuCompute> {
        GpuCompute::open(allow_software, true)
    }

    fn open(allow_software: bool, timed: bool) -> Result<GpuCompute> {
        let gpu = Gpu::open(allow_software, timed)?;
        let pipes = Pipelines::build(&gpu);
        tracing::info!("compute: wgpu backend on {}", gpu.describe());
        Ok(GpuCompute { gpu, pipes })
    }

    /// Seconds the device spent in compute passes since the last call, and how many passes
    /// ran untimed (a submission of more than 2,048); `None` when not timed.
    pub fn device_time(&self) -> Option<(f64, u64)> {
        let (ns, untimed) = self.gpu.timer.as_ref()?.take();
        Some((ns as f64 * 1e-9, untimed))
    }

    /// The copy bandwidth a compute pass reaches: `bytes` (capped at one binding) copied
    /// buffer to buffer, median of `repeats`.
    pub fn copy_bandwidth(&self, bytes: u64, repeats: usize) -> Result<Bandwidth> {
        bandwidth::copy(&self.gpu, &self.pipes.copy, bytes, repeats.max(1))
    }

    /// Lowers the largest buffer a kernel binds, so that tests and benchmarks can exercise
    /// the chunked paths (and the host fallback for planes beyond one binding) on small data.
    pub fn limit_binding(&mut self, bytes: u64) {
        self.gpu.max_binding = self.gpu.max_binding.min(bytes.max(256)) & !255;
    }

    /// The largest buffer a kernel binds, in bytes: it decides how batches are chunked.
    pub fn max_binding(&self) -> u64 {
        self.gpu.max_binding
    }
}

impl Compute for GpuCompute {
    fn backend(&self) -> Backend {
        Backend::Gpu
    }

    fn adapter(&self) -> String {
        self.gpu.describe()
    }

    fn relabel(&self, labels: &mut [u64], table: &LabelTable) -> Result<()> {
        labels::relabel(&self.gpu, &self.pipes.relabel, labels, table)
    }

    fn split_apply(
        &self,
        labels: &mut [u64],
        shape: Shape,
        runs: &[Run],
        table: &LabelTable,
    ) -> Result<u64> {
        shape.check_len(labels.len(), "split")?;
        labels::split_apply(
            &self.gpu,
            &self.pipes.split_apply,
            labels,
            shape,
            runs,
            table,
        )
    }

    fn downsample_mode(&self, src: &[u64], shape: Shape) -> Result<Vec<u64>> {
        Ok(self.pyramid_mode(src, shape, 1)?.swap_remove(0))
    }

    fn pyramid_mode(&self, src: &[u64], shape: Shape, levels: u32) -> Result<Vec<Vec<u64>>> {
        shape.check_len(src.len(), "downsample")?;
        check_levels(levels)?;
        downsample::pyramid_mode(&self.gpu, &self.pipes.mode, src, shape, levels)
    }

    fn downsample_mean(&self, src: &[u8], shape: Shape) -> Result<Vec<u8>> {
        Ok(self.pyramid_mean(src, shape, 1)?.swap_remove(0))
    }

    fn pyramid_mean(&self, src: &[u8], shape: Shape, levels: u32) -> Result<Vec<Vec<u8>>> {
        shape.check_len(src.len(), "downsample")?;
        check_levels(levels)?;
        downsample::pyramid_mean(&self.gpu, &self.pipes.mean, src, shape, levels)
    }

    fn label_counts(&self, blocks: &[u64], block: Shape) -> Result<Vec<BlockCounts>> {
        counts::label_counts(
            &self.gpu,
            [&self.pipes.count_insert, &self.pipes.count_compact],
            blocks,
            block,
        )
    }

    fn block_decode_into(&self, blocks: &[&[u8]], out: &mut [u64]) -> Result<Shape> {
        decode::block_decode_into(&self.gpu, &self.pipes.decode, blocks, out)
    }

    fn block_encode(&self, labels: &[u64], block: Shape) -> Result<Vec<Vec<u8>>> {
        encode::block_encode(
            &self.gpu,
            [&self.pipes.encode_locals, &self.pipes.encode_pack],
            labels,
            block,
        )
    }

    fn surface(&self, labels: &[u64], item: Shape, cells: Cells) -> Result<Vec<Vec<LabelSurface>>> {
        item.check_batch(labels.len(), "surface")?;
        cells.check(item)?;
        surface::surface(&self.gpu, &self.pipes.surface, labels, item, cells)
    }

    fn run_batch(
        &self,
        input: BatchInput<'_>,
        block: Shape,
        steps: &BatchSteps,
    ) -> Result<BatchOutput> {
        let kernels = batch::Kernels {
            decode: &self.pipes.decode,
            split: &self.pipes.split_apply,
            relabel: &self.pipes.relabel,
            counts: [&self.pipes.count_insert, &self.pipes.count_compact],
            mode: &self.pipes.mode,
            encode: [&self.pipes.encode_locals, &self.pipes.encode_pack],
            surface: &self.pipes.surface,
        };
        batch::run(&self.gpu, &kernels, input, block, steps)
    }

    fn transfers(&self) -> Transfers {
        self.gpu.transfers()
    }
}

//! Label and image kernels over block batches, on two backends that give the same bytes.
//!
//! `cpu` runs each kernel with rayon; `gpu` runs the WGSL twin of the same name from `shaders/`.
//! `reference` holds plain scalar versions that both are tested against. `codec` is DVID's
//! compressed label block (spec §5.2); the CPU codec is the reference for the device one.
//!
//! Volumes are C-order (z, y, x) arrays, x fastest, labels u64 (`vec2<u32>` lo, hi on the
//! device). A batch of 64³ blocks stacked along z is itself a volume, so one kernel serves
//! whole volumes and block batches alike: a 2×2×2 window never straddles two blocks.
//!
//! `Metered` wraps either backend to time every kernel call (the engine's compute is one).
//!
//! `run_batch` runs a labelmap's per-block sequence in one call (`batch`), so that the GPU keeps
//! the voxels on the device between kernels; `transfers` counts what crossed the bus.
//!
//! This module depends on nothing else in the engine, so it can be built and tested alone.

pub mod batch;
pub mod codec;
pub mod cpu;
pub mod gpu;
mod layout;
pub mod metered;
pub mod reference;
mod select;
pub mod surface;
mod types;

pub use batch::{BatchInput, BatchOutput, BatchSteps, Transfers};
pub use layout::to_blocks;
pub use metered::Metered;
pub use select::{Selection, allow_software, select};
pub use surface::{Cells, LabelSurface};
use types::check_levels;
pub use types::{BlockCounts, ComputeError, LabelTable, Run, Shape, merge_runs, normalize_runs};

pub type Result<T> = std::result::Result<T, ComputeError>;

/// Which backend a `Compute` runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Cpu,
    Gpu,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Gpu => "gpu",
        }
    }
}

/// The kernels. Every method validates its inputs and answers `ComputeError::BadInput` before
/// touching any output; both backends return identical results for identical inputs.
pub trait Compute: Send + Sync {
    fn backend(&self) -> Backend;

    /// Human-readable device: `"rayon, 2 threads"` or `"NVIDIA H100 (Vulkan)"`.
    fn adapter(&self) -> String;

    /// Map every label through `table`; labels not in the table are unchanged.
    fn relabel(&self, labels: &mut [u64], table: &LabelTable) -> Result<()>;

    /// For every voxel inside the mask (runs in the volume's own voxel coordinates, already
    /// shifted by the caller; parts outside `shape` are ignored) whose label is a key of
    /// `table`, write the mapped label. Returns the number of voxels written.
    /// Runs are normalized first (`normalize_runs`: sorted, clipped, overlaps merged) unless
    /// they already are, so a voxel listed twice is written once.
    fn split_apply(
        &self,
        labels: &mut [u64],
        shape: Shape,
        runs: &[Run],
        table: &LabelTable,
    ) -> Result<u64>;

    /// One 2×2×2 level: each output voxel is the most frequent non-zero label among its eight
    /// children, ties to the smallest label, all-zero → 0. Odd sizes are padded with 0, which
    /// never votes, so the output shape is `shape.half()`.
    fn downsample_mode(&self, src: &[u64], shape: Shape) -> Result<Vec<u64>>;

    /// `levels` successive `downsample_mode` levels (`out[0]` is level 1). Equal to applying
    /// `downsample_mode` repeatedly, but computed in one pass over the input.
    fn pyramid_mode(&self, src: &[u64], shape: Shape, levels: u32) -> Result<Vec<Vec<u64>>>;

    /// One 2×2×2 level of uint8 mean: the mean of the children that exist (odd edges have
    /// fewer than eight), rounded half up: `(sum + n/2) / n`.
    fn downsample_mean(&self, src: &[u8], shape: Shape) -> Result<Vec<u8>>;

    /// `levels` successive `downsample_mean` levels (each level from the previous one).
    fn pyramid_mean(&self, src: &[u8], shape: Shape, levels: u32) -> Result<Vec<Vec<u8>>>;

    /// Voxels per label for each block of a batch of blocks of shape `block`, stored one after
    /// another. Each result is sorted by label; label 0 is counted like any other.
    fn label_counts(&self, blocks: &[u64], block: Shape) -> Result<Vec<BlockCounts>>;

    /// Decode compressed blocks that all have the same dimensions into `out`: block after
    /// block, each in (z, y, x) order; `out` holds exactly that many voxels. Every header is
    /// checked before anything is written, but a bad packed index is found while decoding, so
    /// after an error `out`'s contents are unspecified. Returns the block shape.
    fn block_decode_into(&self, blocks: &[&[u8]], out: &mut [u64]) -> Result<Shape>;

    /// `block_decode_into` a new array. Callers that decode batch after batch should reuse
    /// one buffer instead: faulting in fresh memory costs about as much as decoding into it.
    fn block_decode(&self, blocks: &[&[u8]]) -> Result<(Shape, Vec<u64>)> {
        let first = blocks
            .first()
            .ok_or_else(|| ComputeError::BadInput("no label blocks to decode".into()))?;
        let shape = codec::header(first)?.shape();
        let len = shape
            .voxels()
            .checked_mul(blocks.len())
            .ok_or_else(|| ComputeError::BadInput("too many label blocks".into()))?;
        let mut out = vec![0u64; len];
        let shape = self.block_decode_into(blocks, &mut out)?;
        Ok((shape, out))
    }

    /// The closed surface of every non-zero label in each item of a batch of volumes of shape
    /// `item` stored one after another, over the cells `cells` (see `surface`; voxels outside
    /// an item read as 0). Per item, one mesh per label in ascending label order, vertices and
    /// triangles in the canonical order both backends share.
    fn surface(&self, labels: &[u64], item: Shape, cells: Cells) -> Result<Vec<Vec<LabelSurface>>>;

    /// Encode a batch of blocks of shape `block` (each dimension a multiple of 8) in the
    /// canonical form described in `codec`.
    fn block_encode(&self, labels: &[u64], block: Shape) -> Result<Vec<Vec<u8>>>;

    /// The whole per-block sequence in one call: decode (when the input is encoded) → split →
    /// relabel → counts → downsample → encode, each step optional (`BatchSteps`). The result
    /// equals `batch::step_by_step`, the individual kernels called one after another; the GPU
    /// keeps the voxels on the device between steps. Validates everything (shapes, every
    /// block's header, step preconditions) before running anything.
    fn run_batch(
        &self,
        input: BatchInput<'_>,
        block: Shape,
        steps: &BatchSteps,
    ) -> Result<BatchOutput>;

    /// Host↔device traffic since the backend was made (CPU: always zero).
    fn transfers(&self) -> Transfers {
        Transfers::default()
    }
}

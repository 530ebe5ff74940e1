//! Batches: one call that runs a labelmap's whole per-block sequence (decode → split →
//! relabel → counts → mode pyramid → surface → encode) so that a device backend keeps the
//! voxels resident between kernels and moves only compressed bytes, counts, the pyramid's
//! levels and indexed meshes over the bus (architecture principle 4).
//!
//! `check` is the validation both backends run before touching anything; `step_by_step` is
//! the meaning of a batch: the individual `Compute` kernels called one after another.

use super::{
    BlockCounts, Cells, Compute, ComputeError, LabelSurface, LabelTable, Result, Run, Shape, codec,
};

/// What a batch starts from.
#[derive(Debug, Clone, Copy)]
pub enum BatchInput<'a> {
    /// DVID compressed label blocks (labels.Block bytes, not gzipped), all of shape `block`.
    Encoded(&'a [&'a [u8]]),
    /// Voxels, block after block (each block (z,y,x) C-order, x fastest), a whole number of
    /// blocks.
    Voxels(&'a [u64]),
}

/// The kernels a batch runs, in this fixed order: decode (when the input is Encoded) → split →
/// relabel → counts → mode pyramid → surface → encode. Each is optional.
#[derive(Debug, Clone, Default)]
pub struct BatchSteps {
    /// split_apply over the batch seen as one volume stacked along z (block i holds z in
    /// [i*block.z, (i+1)*block.z)); runs are in that stacked volume's coordinates.
    pub split: Option<(Vec<Run>, LabelTable)>,
    pub relabel: Option<LabelTable>,
    /// label_counts per block.
    pub counts: bool,
    /// downsample_mode levels of the stacked batch, 0 for none: level 1 holds each block's
    /// half-size block, level k the half of level k − 1. Block sides are multiples of
    /// 2^levels, so no window of any level straddles two blocks.
    pub levels: u32,
    /// surface of every block as an item, over these cells of each (`Cells::all(block)`
    /// closes each block's labels at its faces).
    pub surface: Option<Cells>,
    /// block_encode of every block (canonical codec form).
    pub encode: bool,
    /// also hand back the final scale-0 voxels (costs a full-size download; off for split).
    pub voxels: bool,
}

/// What a batch hands back; fields of steps not asked for stay empty.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchOutput {
    /// When `encode`: one canonical block per input block.
    pub blocks: Vec<Vec<u8>>,
    /// When `counts`: one per block, sorted by label.
    pub counts: Vec<BlockCounts>,
    /// When `levels` > 0: the stacked volume of each level (`levels[0]` is level 1; at level k
    /// block i holds z in [i·block.z/2^k, (i+1)·block.z/2^k)).
    pub levels: Vec<Vec<u64>>,
    /// When `surface`: per block, one mesh per label in ascending label order.
    pub surfaces: Vec<Vec<LabelSurface>>,
    /// When `voxels`: the final scale-0 voxels, block after block.
    pub voxels: Vec<u64>,
    /// Voxels split_apply wrote (0 without split).
    pub written: u64,
}

/// Host↔device traffic since the backend was made (CPU: always zero). An upload is one buffer
/// created with host data or one `queue.write_buffer`; a download is one staging buffer mapped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Transfers {
    pub uploads: u64,
    pub downloads: u64,
    pub upload_bytes: u64,
    pub download_bytes: u64,
}

impl Transfers {
    /// The traffic between two readings (`self` the later one).
    pub fn since(self, earlier: Transfers) -> Transfers {
        Transfers {
            uploads: self.uploads - earlier.uploads,
            downloads: self.downloads - earlier.downloads,
            upload_bytes: self.upload_bytes - earlier.upload_bytes,
            download_bytes: self.download_bytes - earlier.download_bytes,
        }
    }
}

fn bad(msg: String) -> ComputeError {
    ComputeError::BadInput(msg)
}

/// Checks a batch's shape and steps before anything runs, and returns its number of blocks.
/// Encoded input is checked only for its count here: each backend walks every header (which
/// it needs anyway) before decoding, and then calls `check_decoded_shape`.
pub fn check(input: BatchInput<'_>, block: Shape, steps: &BatchSteps) -> Result<usize> {
    block.check_len(block.voxels(), "batch")?;
    if steps.encode {
        codec::check_block_shape(block)?;
    }
    if let Some(cells) = steps.surface {
        cells.check(block)?;
    }
    if steps.levels >= usize::BITS {
        return Err(bad(format!("batch: {} levels is too many", steps.levels)));
    }
    let unit = 1usize << steps.levels;
    let whole = |d: usize| d.is_multiple_of(unit);
    if !(whole(block.x) && whole(block.y) && whole(block.z)) {
        return Err(bad(format!(
            "batch: {} levels need block sides that are multiples of {unit}, not {block}",
            steps.levels
        )));
    }
    match input {
        BatchInput::Encoded(blocks) => {
            if blocks.is_empty() {
                return Err(bad("batch: no label blocks".into()));
            }
            Ok(blocks.len())
        }
        BatchInput::Voxels(voxels) => {
            block.check_batch(voxels.len(), "batch")?;
            Ok(voxels.len() / block.voxels())
        }
    }
}

/// Encoded blocks must have the batch's block shape.
pub fn check_decoded_shape(found: Shape, block: Shape) -> Result<()> {
    if found != block {
        return Err(bad(format!(
            "batch: label blocks of shape {found} in a batch of {block} blocks"
        )));
    }
    Ok(())
}

/// The stacked volume of `blocks` blocks.
pub fn stacked(block: Shape, blocks: usize) -> Shape {
    Shape::new(block.x, block.y, block.z * blocks)
}

/// The meaning of a batch: `compute`'s individual kernels, one call per step.
pub fn step_by_step(
    compute: &dyn Compute,
    input: BatchInput<'_>,
    block: Shape,
    steps: &BatchSteps,
) -> Result<BatchOutput> {
    let n = check(input, block, steps)?;
    let mut voxels = match input {
        BatchInput::Encoded(blocks) => {
            let (shape, voxels) = compute.block_decode(blocks)?;
            check_decoded_shape(shape, block)?;
            voxels
        }
        BatchInput::Voxels(v) => v.to_vec(),
    };
    let volume = stacked(block, n);
    let mut out = BatchOutput::default();
    if let Some((runs, table)) = &steps.split {
        out.written = compute.split_apply(&mut voxels, volume, runs, table)?;
    }
    if let Some(table) = &steps.relabel {
        compute.relabel(&mut voxels, table)?;
    }
    if steps.counts {
        out.counts = compute.label_counts(&voxels, block)?;
    }
    if steps.levels > 0 {
        out.levels = compute.pyramid_mode(&voxels, volume, steps.levels)?;
    }
    if let Some(cells) = steps.surface {
        out.surfaces = compute.surface(&voxels, block, cells)?;
    }
    if steps.encode {
        out.blocks = compute.block_encode(&voxels, block)?;
    }
    if steps.voxels {
        out.voxels = voxels;
    }
    Ok(out)
}

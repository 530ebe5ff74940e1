//! Placeholder until the device-resident batch lands: the step-by-step sequence.

use super::{BlockCounts, Compute, LabelTable, Result, Run, Shape};

pub enum BatchInput<'a> {
    Encoded(&'a [&'a [u8]]),
    Voxels(&'a [u64]),
}

#[derive(Debug, Clone, Default)]
pub struct BatchSteps {
    pub split: Option<(Vec<Run>, LabelTable)>,
    pub relabel: Option<LabelTable>,
    pub counts: bool,
    pub downsample: bool,
    pub encode: bool,
    pub voxels: bool,
}

#[derive(Debug, Default)]
pub struct BatchOutput {
    pub blocks: Vec<Vec<u8>>,
    pub counts: Vec<BlockCounts>,
    pub half: Vec<u64>,
    pub voxels: Vec<u64>,
    pub written: u64,
}

pub fn run_steps(
    c: &dyn Compute,
    input: BatchInput<'_>,
    block: Shape,
    steps: &BatchSteps,
) -> Result<BatchOutput> {
    let mut voxels = match input {
        BatchInput::Encoded(b) => c.block_decode(b)?.1,
        BatchInput::Voxels(v) => v.to_vec(),
    };
    let n = voxels.len() / block.voxels();
    let stacked = Shape::new(block.x, block.y, block.z * n);
    let mut out = BatchOutput::default();
    if let Some((runs, table)) = &steps.split {
        out.written = c.split_apply(&mut voxels, stacked, runs, table)?;
    }
    if let Some(t) = &steps.relabel {
        c.relabel(&mut voxels, t)?;
    }
    if steps.counts {
        out.counts = c.label_counts(&voxels, block)?;
    }
    if steps.downsample {
        out.half = c.downsample_mode(&voxels, stacked)?;
    }
    if steps.encode {
        out.blocks = c.block_encode(&voxels, block)?;
    }
    if steps.voxels {
        out.voxels = voxels;
    }
    Ok(out)
}

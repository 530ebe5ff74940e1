//! The batch twin: every block goes through the whole sequence (decode → split → relabel →
//! counts → mode pyramid → surface → encode) on one rayon task while it is in cache, instead of
//! the batch going through each kernel in turn. Blocks are independent for every step: split
//! runs are normalized once over the stacked volume and each block applies its own planes'
//! runs, block sides are multiples of 2^levels, so each block's levels depend on that block
//! alone, and each block is its own item for the surface.
//!
//! One allocation for the voxels when they are handed back (that same buffer); otherwise a
//! block-sized buffer per task, reused (none when the input is voxels that nothing rewrites).
//! One allocation per level.

use rayon::prelude::*;

use super::codec::{self, Encoder};
use super::lookup::Lookup;
use super::{alloc, blocks, pyramid, relabel, surface};
use crate::compute::batch::{self, BatchInput, BatchOutput, BatchSteps};
use crate::compute::{BlockCounts, LabelSurface, Result, Run, Shape, normalize_runs};

/// One block's share of the output: voxels split wrote, and what `Finished` holds.
type Part = (u64, Finished);

/// A final block's counts, meshes and encoding, as asked for.
type Finished = (
    Option<BlockCounts>,
    Option<Vec<LabelSurface>>,
    Option<Vec<u8>>,
);

/// The steps that rewrite voxels, with their lookups built once.
struct Rewrite {
    split: Option<(Vec<Run>, Lookup)>,
    relabel: Option<Lookup>,
}

impl Rewrite {
    fn new(steps: &BatchSteps, volume: Shape) -> Rewrite {
        let split = steps.split.as_ref().and_then(|(runs, table)| {
            let runs = if relabel::is_normalized(runs, volume) {
                runs.clone()
            } else {
                normalize_runs(runs, volume)
            };
            (!table.is_empty() && !runs.is_empty()).then(|| (runs, Lookup::new(table)))
        });
        let relabel = steps
            .relabel
            .as_ref()
            .filter(|t| !t.is_empty())
            .map(Lookup::new);
        Rewrite { split, relabel }
    }

    /// Split and relabel block `i` (whose voxels are `vox`); returns the voxels split wrote.
    fn apply(&self, i: usize, vox: &mut [u64], block: Shape) -> u64 {
        let mut written = 0;
        if let Some((runs, lookup)) = &self.split {
            let z0 = i * block.z;
            let at = runs.partition_point(|r| (r.z as usize) < z0);
            let to = runs.partition_point(|r| (r.z as usize) < z0 + block.z);
            if at < to {
                written = relabel::split_apply_with(vox, block, z0, &runs[at..to], lookup);
            }
        }
        if let Some(lookup) = &self.relabel {
            relabel::relabel_with(vox, lookup);
        }
        written
    }
}

/// Counts, levels, meshes and encoding of one final block; `levels` are its share of each
/// level.
fn finish(
    vox: &[u64],
    levels: Vec<&mut [u64]>,
    block: Shape,
    steps: &BatchSteps,
    encoder: &mut Encoder,
) -> Result<Finished> {
    let (mut src, mut shape) = (vox, block);
    for level in levels {
        pyramid::downsample_into(src, shape, level);
        src = level;
        shape = shape.half();
    }
    let meshes = (steps.surface).map(|cells| surface::surface(vox, block, 1, cells).remove(0));
    if !steps.encode {
        return Ok((steps.counts.then(|| blocks::counts(vox)), meshes, None));
    }
    let mut out = Vec::new();
    let counts = match steps.counts {
        true => Some(encoder.encode_counting(vox, block, &mut out)?),
        false => {
            encoder.encode_into(vox, block, &mut out)?;
            None
        }
    };
    Ok((counts, meshes, Some(out)))
}

pub fn run(input: BatchInput<'_>, block: Shape, steps: &BatchSteps) -> Result<BatchOutput> {
    let n = batch::check(input, block, steps)?;
    if let BatchInput::Encoded(blocks) = input {
        // Every header, before anything is decoded.
        batch::check_decoded_shape(codec::batch_shape(blocks)?, block)?;
    }
    let v = block.voxels();
    let volume = batch::stacked(block, n);
    let rewrite = Rewrite::new(steps, volume);
    let rewrites = rewrite.split.is_some() || rewrite.relabel.is_some();

    let mut levels: Vec<Vec<u64>> = Vec::new();
    let mut shape = volume;
    for _ in 0..steps.levels {
        shape = shape.half();
        levels.push(alloc::zeroed(shape.voxels()));
    }
    // Block i's share of every level.
    let mut shares: Vec<Vec<&mut [u64]>> = (0..n).map(|_| Vec::new()).collect();
    for level in &mut levels {
        let share = level.len() / n;
        for (mine, part) in shares.iter_mut().zip(level.chunks_mut(share)) {
            mine.push(part);
        }
    }

    let (owned, parts): (Option<Vec<u64>>, Vec<Result<Part>>) = match input {
        BatchInput::Voxels(src) if !rewrites => {
            let parts = src
                .par_chunks(v)
                .zip(shares)
                .map_init(Encoder::default, |encoder, (vox, mine)| {
                    Ok((0, finish(vox, mine, block, steps, encoder)?))
                })
                .collect();
            (None, parts)
        }
        _ if !steps.voxels => {
            // Nothing hands the voxels back: each task rewrites its blocks in a buffer of its
            // own, reused block after block, instead of a fresh batch-sized one.
            let parts = (0..n)
                .into_par_iter()
                .zip(shares)
                .map_init(
                    || (Encoder::default(), vec![0u64; v]),
                    |(encoder, vox), (i, mine)| {
                        match input {
                            BatchInput::Encoded(blocks) => {
                                codec::decode_into(blocks[i], vox)?;
                            }
                            BatchInput::Voxels(src) => {
                                vox.copy_from_slice(&src[i * v..(i + 1) * v])
                            }
                        }
                        let written = rewrite.apply(i, vox, block);
                        Ok((written, finish(vox, mine, block, steps, encoder)?))
                    },
                )
                .collect();
            (None, parts)
        }
        _ => {
            let mut voxels = match input {
                BatchInput::Voxels(src) => src.to_vec(),
                BatchInput::Encoded(_) => alloc::zeroed(n * v),
            };
            let parts = voxels
                .par_chunks_mut(v)
                .zip(shares)
                .enumerate()
                .map_init(Encoder::default, |encoder, (i, (vox, mine))| {
                    if let BatchInput::Encoded(blocks) = input {
                        codec::decode_into(blocks[i], vox)?;
                    }
                    let written = rewrite.apply(i, vox, block);
                    Ok((written, finish(vox, mine, block, steps, encoder)?))
                })
                .collect();
            (Some(voxels), parts)
        }
    };

    let mut out = BatchOutput {
        levels,
        ..BatchOutput::default()
    };
    for part in parts {
        let (written, (counts, meshes, encoded)) = part?;
        out.written += written;
        out.counts.extend(counts);
        out.surfaces.extend(meshes);
        out.blocks.extend(encoded);
    }
    if steps.voxels {
        out.voxels = match (owned, input) {
            (Some(v), _) => v,
            (None, BatchInput::Voxels(src)) => src.to_vec(),
            (None, BatchInput::Encoded(_)) => unreachable!("encoded input is always decoded"),
        };
    }
    Ok(out)
}

//! The batch twin: every block goes through the whole sequence (decode → split → relabel →
//! counts → downsample → encode) on one rayon task while it is in cache, instead of the batch
//! going through each kernel in turn. Blocks are independent for every step: split runs are
//! normalized once over the stacked volume and each block applies its own planes' runs, and
//! block sides are even, so each block's half-size block depends on that block alone.
//!
//! One allocation for the voxels when they are handed back (that same buffer); otherwise a
//! block-sized buffer per task, reused (none when the input is voxels that nothing rewrites).
//! One allocation for the half-size volume.

use rayon::prelude::*;

use super::codec::{self, Encoder};
use super::lookup::Lookup;
use super::{alloc, blocks, pyramid, relabel};
use crate::compute::batch::{self, BatchInput, BatchOutput, BatchSteps};
use crate::compute::{BlockCounts, Result, Run, Shape, normalize_runs};

/// One block's share of the output.
type Part = (u64, Option<BlockCounts>, Option<Vec<u8>>);

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

/// Counts, half-size block and encoding of one final block.
fn finish(
    vox: &[u64],
    half: Option<&mut [u64]>,
    block: Shape,
    steps: &BatchSteps,
    encoder: &mut Encoder,
) -> Result<(Option<BlockCounts>, Option<Vec<u8>>)> {
    if let Some(half) = half {
        pyramid::downsample_into(vox, block, half);
    }
    if !steps.encode {
        return Ok((steps.counts.then(|| blocks::counts(vox)), None));
    }
    let mut out = Vec::new();
    let counts = match steps.counts {
        true => Some(encoder.encode_counting(vox, block, &mut out)?),
        false => {
            encoder.encode_into(vox, block, &mut out)?;
            None
        }
    };
    Ok((counts, Some(out)))
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

    let mut half = if steps.downsample {
        alloc::zeroed(volume.half().voxels())
    } else {
        Vec::new()
    };
    let halves: Vec<Option<&mut [u64]>> = if steps.downsample {
        half.chunks_mut(block.half().voxels()).map(Some).collect()
    } else {
        (0..n).map(|_| None).collect()
    };

    let (owned, parts): (Option<Vec<u64>>, Vec<Result<Part>>) = match input {
        BatchInput::Voxels(src) if !rewrites => {
            let parts = src
                .par_chunks(v)
                .zip(halves)
                .map_init(Encoder::default, |encoder, (vox, half)| {
                    let (c, e) = finish(vox, half, block, steps, encoder)?;
                    Ok((0, c, e))
                })
                .collect();
            (None, parts)
        }
        _ if !steps.voxels => {
            // Nothing hands the voxels back: each task rewrites its blocks in a buffer of its
            // own, reused block after block, instead of a fresh batch-sized one.
            let parts = (0..n)
                .into_par_iter()
                .zip(halves)
                .map_init(
                    || (Encoder::default(), vec![0u64; v]),
                    |(encoder, vox), (i, half)| {
                        match input {
                            BatchInput::Encoded(blocks) => {
                                codec::decode_into(blocks[i], vox)?;
                            }
                            BatchInput::Voxels(src) => {
                                vox.copy_from_slice(&src[i * v..(i + 1) * v])
                            }
                        }
                        let written = rewrite.apply(i, vox, block);
                        let (c, e) = finish(vox, half, block, steps, encoder)?;
                        Ok((written, c, e))
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
                .zip(halves)
                .enumerate()
                .map_init(Encoder::default, |encoder, (i, (vox, half))| {
                    if let BatchInput::Encoded(blocks) = input {
                        codec::decode_into(blocks[i], vox)?;
                    }
                    let written = rewrite.apply(i, vox, block);
                    let (c, e) = finish(vox, half, block, steps, encoder)?;
                    Ok((written, c, e))
                })
                .collect();
            (Some(voxels), parts)
        }
    };

    let mut out = BatchOutput {
        half,
        ..BatchOutput::default()
    };
    for part in parts {
        let (written, counts, encoded) = part?;
        out.written += written;
        out.counts.extend(counts);
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

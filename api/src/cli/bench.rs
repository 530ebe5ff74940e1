//! `tessera bench kernels`: per-kernel medians and throughput on one backend, on a given
//! volume or a synthetic one. `benches/peers/compare.py` runs it beside the peer libraries.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::bail;
use rayon::prelude::*;
use tessera_engine::compute::{
    self, Cells, Compute, LabelTable, Run, Shape, normalize_runs, to_blocks,
};
use tessera_engine::mesh::Mesh;

use super::npy::{self, Volume};

pub struct BenchArgs {
    pub input: Option<PathBuf>,
    pub gray: Option<PathBuf>,
    pub compute: String,
    pub repeats: usize,
    pub json: bool,
    /// Only these kernels (all when empty).
    pub only: Vec<String>,
}

pub(super) const BLOCK: usize = 64;

/// A segmentation-like volume: jittered cells about 24 voxels across with zero borders, so
/// runs, ties and boundaries look like real data rather than noise.
pub fn synthetic_labels(shape: Shape) -> Vec<u64> {
    let mut out = Vec::with_capacity(shape.voxels());
    for z in 0..shape.z {
        for y in 0..shape.y {
            let jitter = (y * 7 + z * 3) % 9;
            for x in 0..shape.x {
                let (cx, cy, cz) = ((x + jitter) / 24, (y + z % 5) / 24, z / 24);
                let border = (x + jitter) % 24 == 0;
                out.push(if border {
                    0
                } else {
                    1 + (cz * 1000 + cy) as u64 * 1000 + cx as u64
                });
            }
        }
    }
    out
}

/// Smooth grayscale with texture.
pub fn synthetic_gray(shape: Shape) -> Vec<u8> {
    let mut out = Vec::with_capacity(shape.voxels());
    for z in 0..shape.z {
        for y in 0..shape.y {
            for x in 0..shape.x {
                out.push(((x * 3 + y * 5 + z * 7) % 200 + (x ^ y ^ z) % 50) as u8);
            }
        }
    }
    out
}

struct Timing {
    kernel: &'static str,
    voxels: usize,
    seconds: Vec<f64>,
}

impl Timing {
    fn median(&self) -> f64 {
        median(self.seconds.clone())
    }
}

pub(super) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The edits the benches time: the 1000 smallest non-zero labels → 1 (relabel) and the
/// largest → a new id (split).
pub(super) fn edit_tables(labels: &[u64]) -> anyhow::Result<(LabelTable, LabelTable)> {
    let mut distinct: Vec<u64> = labels.iter().copied().filter(|&l| l != 0).collect();
    distinct.sort_unstable();
    distinct.dedup();
    let relabel = LabelTable::new(distinct.iter().take(1000).map(|&l| (l, 1)))?;
    let split = LabelTable::new(distinct.last().map(|&l| (l, u64::MAX - 1)))?;
    Ok((relabel, split))
}

/// Every other row of `shape`, as normalized runs: the split mask of the benches.
pub(super) fn every_other_row(shape: Shape) -> Vec<Run> {
    let rows: Vec<Run> = (0..shape.z)
        .flat_map(|z| (0..shape.y).step_by(2).map(move |y| (y, z)))
        .map(|(y, z)| Run::new(0, y as i32, z as i32, shape.x as i32))
        .collect();
    normalize_runs(&rows, shape)
}

/// Times `run` `repeats` times after one warm-up; `prepare` builds each run's input outside
/// the timed region.
fn time<P, R>(
    repeats: usize,
    mut prepare: impl FnMut() -> P,
    mut run: impl FnMut(P) -> compute::Result<R>,
) -> anyhow::Result<Vec<f64>> {
    run(prepare())?;
    let mut seconds = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let input = prepare();
        let t = Instant::now();
        let out = run(input)?;
        seconds.push(t.elapsed().as_secs_f64());
        drop(out);
    }
    Ok(seconds)
}

fn labels_input(args: &BenchArgs) -> anyhow::Result<(Shape, Vec<u64>)> {
    load_labels(args.input.as_deref(), Shape::cube(256))
}

/// Labels from a `.npy` (uint64 or uint32), or a synthetic volume of `default` shape.
pub(super) fn load_labels(
    input: Option<&Path>,
    default: Shape,
) -> anyhow::Result<(Shape, Vec<u64>)> {
    match input {
        None => Ok((default, synthetic_labels(default))),
        Some(p) => match npy::read(p)? {
            Volume::U64(s, v) => Ok((s, v)),
            Volume::U32(s, v) => Ok((s, v.into_iter().map(u64::from).collect())),
            v => bail!(
                "--input must hold uint64 or uint32 labels, not {}",
                v.dtype()
            ),
        },
    }
}

fn gray_input(args: &BenchArgs, shape: Shape) -> anyhow::Result<(Shape, Vec<u8>)> {
    match &args.gray {
        None => Ok((shape, synthetic_gray(shape))),
        Some(p) => match npy::read(p)? {
            Volume::U8(s, v) => Ok((s, v)),
            v => bail!("--gray must hold uint8, not {}", v.dtype()),
        },
    }
}

/// The kernels `bench_all` times, in order.
const KERNELS: [&str; 11] = [
    "relabel_1000_to_1",
    "split_apply",
    "downsample_mode",
    "pyramid_mode_5",
    "surface",
    "downsample_mean",
    "pyramid_mean_5",
    "label_counts",
    "block_encode",
    "block_decode",
    "block_decode_fresh",
];

fn bench_all(compute: &dyn Compute, args: &BenchArgs) -> anyhow::Result<Vec<Timing>> {
    if let Some(k) = args.only.iter().find(|k| !KERNELS.contains(&k.as_str())) {
        bail!(
            "--only: no kernel {k:?}; the kernels are {}",
            KERNELS.join(", ")
        );
    }
    let want = |k: &str| args.only.is_empty() || args.only.iter().any(|o| o == k);
    let (shape, labels) = labels_input(args)?;
    let n = args.repeats.max(1);
    let mut out = Vec::new();
    let voxels = shape.voxels();
    let mut timed = |kernel: &'static str, voxels: usize, seconds: Vec<f64>| {
        out.push(Timing {
            kernel,
            voxels,
            seconds,
        })
    };

    // relabel in place on a fresh copy each run; split on every other row.
    if want("relabel_1000_to_1") || want("split_apply") {
        let (table, split) = edit_tables(&labels)?;
        if want("relabel_1000_to_1") {
            let s = time(
                n,
                || labels.clone(),
                |mut v| compute.relabel(&mut v, &table),
            )?;
            timed("relabel_1000_to_1", voxels, s);
        }
        if want("split_apply") {
            let runs = every_other_row(shape);
            let s = time(
                n,
                || labels.clone(),
                |mut v| compute.split_apply(&mut v, shape, &runs, &split),
            )?;
            timed("split_apply", voxels, s);
        }
    }
    if want("downsample_mode") {
        let s = time(n, || (), |_| compute.downsample_mode(&labels, shape))?;
        timed("downsample_mode", voxels, s);
    }
    if want("pyramid_mode_5") {
        let s = time(n, || (), |_| compute.pyramid_mode(&labels, shape, 5))?;
        timed("pyramid_mode_5", voxels, s);
    }
    if want("surface") {
        // Every label's closed mesh, through to physical units (what a client gets, short of
        // a file format), as zmesh's marching cubes plus per-label extraction.
        let s = time(
            n,
            || (),
            |_| {
                let mut items = compute.surface(&labels, shape, Cells::all(shape))?;
                let meshes: Vec<Mesh> = items
                    .pop()
                    .unwrap_or_default()
                    .into_par_iter()
                    .map(|s| Mesh::from_piece(s, [0; 3], [1.0; 3]))
                    .collect();
                Ok(meshes)
            },
        )?;
        timed("surface", voxels, s);
    }

    if want("downsample_mean") || want("pyramid_mean_5") {
        let (gshape, gray) = gray_input(args, shape)?;
        if want("downsample_mean") {
            let s = time(n, || (), |_| compute.downsample_mean(&gray, gshape))?;
            timed("downsample_mean", gshape.voxels(), s);
        }
        if want("pyramid_mean_5") {
            let s = time(n, || (), |_| compute.pyramid_mean(&gray, gshape, 5))?;
            timed("pyramid_mean_5", gshape.voxels(), s);
        }
    }

    if !KERNELS[7..].iter().any(|k| want(k)) {
        return Ok(out);
    }
    let blocks = block_batch(&labels, shape)?;
    let block = Shape::cube(BLOCK);
    if want("label_counts") {
        let s = time(n, || (), |_| compute.label_counts(&blocks, block))?;
        timed("label_counts", blocks.len(), s);
    }
    if want("block_encode") {
        let s = time(n, || (), |_| compute.block_encode(&blocks, block))?;
        timed("block_encode", blocks.len(), s);
    }
    if want("block_decode") || want("block_decode_fresh") {
        let encoded = compute.block_encode(&blocks, block)?;
        let refs: Vec<&[u8]> = encoded.iter().map(|b| b.as_slice()).collect();
        // Decoding into one reused buffer is how a server decodes batch after batch; a fresh
        // buffer per call adds the cost of faulting its pages in, shown separately.
        if want("block_decode") {
            let mut buffer = vec![0u64; blocks.len()];
            let s = time(n, || (), |_| compute.block_decode_into(&refs, &mut buffer))?;
            timed("block_decode", blocks.len(), s);
        }
        if want("block_decode_fresh") {
            let s = time(n, || (), |_| compute.block_decode(&refs))?;
            timed("block_decode_fresh", blocks.len(), s);
        }
    }
    Ok(out)
}

/// The volume cropped to whole 64³ blocks, as a batch of blocks stacked along z: what the
/// block kernels take.
pub(super) fn block_batch(labels: &[u64], shape: Shape) -> anyhow::Result<Vec<u64>> {
    let bshape = Shape::new(
        shape.x / BLOCK * BLOCK,
        shape.y / BLOCK * BLOCK,
        shape.z / BLOCK * BLOCK,
    );
    if bshape.voxels() == 0 {
        bail!("block kernels need a volume at least 64 voxels on every side, not {shape}");
    }
    let cropped: Vec<u64> = (0..bshape.z)
        .flat_map(|z| (0..bshape.y).map(move |y| (z, y)))
        .flat_map(|(z, y)| {
            let at = (z * shape.y + y) * shape.x;
            labels[at..at + bshape.x].iter().copied()
        })
        .collect();
    Ok(to_blocks(&cropped, bshape, Shape::cube(BLOCK))?)
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let compute = super::open_compute(&args.compute)?;
    let timings = bench_all(compute.as_ref(), &args)?;
    let (backend, adapter) = (compute.backend().name(), compute.adapter());
    if !args.json {
        println!(
            "backend {backend}, adapter {adapter}, median of {} runs",
            args.repeats.max(1)
        );
        println!(
            "{:<20} {:>12} {:>10} {:>10}",
            "kernel", "voxels", "median s", "Gvox/s"
        );
    }
    for t in &timings {
        let median = t.median();
        let rate = t.voxels as f64 / median / 1e9;
        if args.json {
            let line = serde_json::json!({
                "kernel": t.kernel, "backend": backend, "adapter": adapter,
                "voxels": t.voxels, "median_s": median, "gvox_s": rate, "seconds": t.seconds,
            });
            println!("{line}");
        } else {
            println!(
                "{:<20} {:>12} {:>10.4} {:>10.2}",
                t.kernel, t.voxels, median, rate
            );
        }
    }
    Ok(())
}

//! `tessera pyramid`: a multiscale pyramid of a numpy volume, for users who build scales offline.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tessera_engine::compute::Shape;

use super::npy::{self, Volume};

pub struct PyramidArgs {
    pub input: PathBuf,
    pub levels: u32,
    pub out_dir: PathBuf,
    pub kind: Option<String>,
    pub compute: String,
}

pub const MAX_LEVELS: u32 = 16;

/// Voxels per slab: enough for every core to have work, few enough for a smooth progress bar.
const SLAB_VOXELS: usize = 1 << 25;

/// z-planes per slab: a multiple of 2^levels, so that slabs downsample independently and
/// their outputs stack into exactly the whole volume's levels.
fn slab_planes(levels: u32, plane: usize) -> usize {
    let step = 1usize << levels;
    (SLAB_VOXELS / plane).next_multiple_of(step).max(step)
}

fn progress(total: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {percent:>3}% {binary_bytes_per_sec} eta {eta}")
            .expect("a valid template"),
    );
    bar
}

/// Runs `slab_levels` slab by slab and stacks each level's slabs.
fn build<T: Copy>(
    data: &[T],
    shape: Shape,
    levels: u32,
    elem_bytes: u64,
    mut slab_levels: impl FnMut(&[T], Shape) -> anyhow::Result<Vec<Vec<T>>>,
) -> anyhow::Result<Vec<Vec<T>>> {
    let plane = shape.x * shape.y;
    let planes = slab_planes(levels, plane);
    let mut level_shape = shape;
    let mut out: Vec<Vec<T>> = (0..levels)
        .map(|_| {
            level_shape = level_shape.half();
            Vec::with_capacity(level_shape.voxels())
        })
        .collect();
    let bar = progress(data.len() as u64 * elem_bytes);
    for z0 in (0..shape.z).step_by(planes) {
        let nz = planes.min(shape.z - z0);
        let slab = &data[z0 * plane..(z0 + nz) * plane];
        let results = slab_levels(slab, Shape::new(shape.x, shape.y, nz))?;
        for (acc, level) in out.iter_mut().zip(results) {
            acc.extend_from_slice(&level);
        }
        bar.inc(slab.len() as u64 * elem_bytes);
    }
    bar.finish_and_clear();
    Ok(out)
}

/// Writes `DIR/s1.npy … sN.npy`; returns the seconds it took.
fn write_levels<T: npy::Element>(
    dir: &std::path::Path,
    shape: Shape,
    levels: &[Vec<T>],
) -> anyhow::Result<f64> {
    let t = Instant::now();
    let mut s = shape;
    for (i, level) in levels.iter().enumerate() {
        s = s.half();
        npy::write(&dir.join(format!("s{}.npy", i + 1)), s, level)?;
    }
    Ok(t.elapsed().as_secs_f64())
}

pub fn run(args: PyramidArgs) -> anyhow::Result<()> {
    if args.levels == 0 || args.levels > MAX_LEVELS {
        bail!(
            "--levels must be between 1 and {MAX_LEVELS}, not {}",
            args.levels
        );
    }
    let compute = super::open_compute(&args.compute)?;
    let t_read = Instant::now();
    let volume = npy::read(&args.input)?;
    let read_s = t_read.elapsed().as_secs_f64();
    let shape = volume.shape();
    let kind = match (args.kind.as_deref(), &volume) {
        (None, Volume::U8(..)) => "gray",
        (None, _) => "labels",
        (Some("labels"), Volume::U8(..)) => bail!("--kind labels needs a uint64 or uint32 array"),
        (Some("labels"), _) => "labels",
        (Some("gray"), Volume::U8(..)) => "gray",
        (Some("gray"), v) => bail!("--kind gray needs a uint8 array, not {}", v.dtype()),
        (Some(k), _) => bail!("--kind must be labels or gray, not {k:?}"),
    };
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("creating {}", args.out_dir.display()))?;

    let levels = args.levels;
    let t_compute = Instant::now();
    let dir = &args.out_dir;
    // (seconds computing, seconds writing)
    let (compute_s, write_s) = match (&volume, kind) {
        (Volume::U64(s, data), "labels") => {
            let out = build(data, *s, levels, 8, |slab, ss| {
                Ok(compute.pyramid_mode(slab, ss, levels)?)
            })?;
            (
                t_compute.elapsed().as_secs_f64(),
                write_levels(dir, *s, &out)?,
            )
        }
        (Volume::U32(s, data), "labels") => {
            let out = build(data, *s, levels, 4, |slab, ss| {
                let wide: Vec<u64> = slab.iter().map(|&v| v as u64).collect();
                let levels = compute.pyramid_mode(&wide, ss, levels)?;
                // Every output label is one of the input's, so it fits back in 32 bits.
                Ok(levels
                    .into_iter()
                    .map(|l| l.into_iter().map(|v| v as u32).collect())
                    .collect())
            })?;
            (
                t_compute.elapsed().as_secs_f64(),
                write_levels(dir, *s, &out)?,
            )
        }
        (Volume::U8(s, data), "gray") => {
            let out = build(data, *s, levels, 1, |slab, ss| {
                Ok(compute.pyramid_mean(slab, ss, levels)?)
            })?;
            (
                t_compute.elapsed().as_secs_f64(),
                write_levels(dir, *s, &out)?,
            )
        }
        (v, k) => bail!("--kind {k} does not take a {} array", v.dtype()),
    };
    let voxels = shape.voxels() as f64;
    let peak = peak_rss_bytes().map_or(String::new(), |b| {
        format!(", peak RSS {:.2} GiB", b as f64 / (1u64 << 30) as f64)
    });
    println!(
        "pyramid: {} {} {kind}, {levels} levels, {} voxels, {compute_s:.3} s, {:.2} Gvox/s, backend {}, adapter {} (read {read_s:.2} s, write {write_s:.2} s{peak})",
        shape,
        volume.dtype(),
        shape.voxels(),
        voxels / compute_s / 1e9,
        compute.backend().name(),
        compute.adapter(),
    );
    Ok(())
}

/// This process's peak resident memory (Linux `VmHWM`), if the system reports it.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

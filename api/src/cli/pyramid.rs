//! `tessera pyramid`: a multiscale pyramid of a numpy volume, for users who build scales offline.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use tessera_engine::compute::Shape;

use super::npy::{self, View};
use super::shard::{self, Shard};

pub struct PyramidArgs {
    pub input: PathBuf,
    pub levels: u32,
    pub out_dir: PathBuf,
    pub kind: Option<String>,
    pub compute: String,
    pub shard: Shard,
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

/// Seconds spent in each part of a job.
struct Phases {
    /// Running the kernels.
    compute_s: f64,
    /// Writing, on the writer thread, mostly while the next slab computes.
    write_s: f64,
    /// From the last slab computed to the last file written and named.
    tail_s: f64,
    /// Input voxels this process downsampled (its shard's).
    voxels: usize,
}

/// Runs `slab_levels` slab by slab over this shard's z-planes; a writer thread puts each
/// slab's levels into `DIR/s1.npy … sN.npy` (under `.partial` names until every shard's part
/// is written) while the next slab computes, so no level is ever held whole.
fn build<T: npy::Element + Send + Sync>(
    data: &[T],
    shape: Shape,
    levels: u32,
    planes: usize,
    dir: &Path,
    shard: Shard,
    mut slab_levels: impl FnMut(&[T], Shape) -> anyhow::Result<Vec<Vec<T>>>,
) -> anyhow::Result<Phases> {
    let plane = shape.x * shape.y;
    // Shards split the volume at multiples of 2^levels planes, as slabs do, so their parts of
    // every level meet exactly.
    let step = 1usize << levels;
    let part = shard.range(shape.z.div_ceil(step));
    let (z_lo, z_hi) = (part.start * step, (part.end * step).min(shape.z));
    let mut s = shape;
    let outputs: Vec<(PathBuf, PathBuf, Shape)> = (1..=levels)
        .map(|i| {
            s = s.half();
            let path = dir.join(format!("s{i}.npy"));
            (path.with_extension("npy.partial"), path, s)
        })
        .collect();
    // A worker of a sharded job rerun after the outputs were named writes into them in place
    // (the same bytes again), and has nothing to mark; otherwise every part goes to the
    // `.partial` files.
    let in_place = shard.count > 1
        && outputs
            .iter()
            .all(|(_, path, s)| npy::PlaneFile::<T>::holds(path, *s));
    let files = outputs
        .iter()
        .map(|(partial, path, s)| {
            npy::PlaneFile::<T>::open(if in_place { path } else { partial }, *s)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let elem_bytes = std::mem::size_of::<T>() as u64;
    let bar = progress(((z_hi - z_lo) * plane) as u64 * elem_bytes);
    // One slab queued while the writer writes another: the kernels never wait on the disk
    // unless it is slower than they are, and at most three slabs' levels are held at once.
    let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, Vec<Vec<T>>)>(1);
    let phases: anyhow::Result<Phases> = std::thread::scope(|scope| {
        let files = &files;
        let writer = scope.spawn(move || -> anyhow::Result<f64> {
            let mut busy = Duration::ZERO;
            for (z0, slab) in rx {
                let t = Instant::now();
                for (k, (file, level)) in files.iter().zip(&slab).enumerate() {
                    file.write_planes(z0 >> (k + 1), level)?;
                }
                busy += t.elapsed();
            }
            for file in files {
                file.sync()?;
            }
            Ok(busy.as_secs_f64())
        });
        let mut computing = Duration::ZERO;
        let computed = (|| -> anyhow::Result<()> {
            for z0 in (z_lo..z_hi).step_by(planes) {
                let nz = planes.min(z_hi - z0);
                let slab = &data[z0 * plane..(z0 + nz) * plane];
                let t = Instant::now();
                let out = slab_levels(slab, Shape::new(shape.x, shape.y, nz))?;
                computing += t.elapsed();
                if tx.send((z0, out)).is_err() {
                    // The writer stopped on an error, reported below.
                    break;
                }
                bar.inc(slab.len() as u64 * elem_bytes);
            }
            Ok(())
        })();
        drop(tx);
        let t_tail = Instant::now();
        let written = writer.join().expect("the writer thread panicked");
        bar.finish_and_clear();
        computed?;
        Ok(Phases {
            compute_s: computing.as_secs_f64(),
            write_s: written?,
            tail_s: t_tail.elapsed().as_secs_f64(),
            voxels: (z_hi - z_lo) * plane,
        })
    });
    drop(files);
    if phases.is_err() && shard.count == 1 {
        // A failed single job leaves no partial arrays; a shard's are shared, and kept for the
        // rerun.
        for (partial, _, _) in &outputs {
            let _ = std::fs::remove_file(partial);
        }
    }
    let phases = phases?;
    if in_place {
        return Ok(phases);
    }
    shard::finish(dir, "pyramid", shard, || {
        for (partial, path, _) in &outputs {
            shard::publish_file(partial, path)?;
        }
        Ok(())
    })?;
    Ok(phases)
}

pub fn run(args: PyramidArgs) -> anyhow::Result<()> {
    let t_job = Instant::now();
    if args.levels == 0 || args.levels > MAX_LEVELS {
        bail!(
            "--levels must be between 1 and {MAX_LEVELS}, not {}",
            args.levels
        );
    }
    let compute = super::open_compute(&args.compute)?;
    let t_read = Instant::now();
    let volume = npy::open(&args.input)?;
    let read_s = t_read.elapsed().as_secs_f64();
    let shape = volume.shape();
    let view = volume.view();
    let kind = match (args.kind.as_deref(), view) {
        (None, View::U8(..)) => "gray",
        (None, _) => "labels",
        (Some("labels"), View::U8(..)) => bail!("--kind labels needs a uint64 or uint32 array"),
        (Some("labels"), _) => "labels",
        (Some("gray"), View::U8(..)) => "gray",
        (Some("gray"), v) => bail!("--kind gray needs a uint8 array, not {}", v.dtype()),
        (Some(k), _) => bail!("--kind must be labels or gray, not {k:?}"),
    };
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("creating {}", args.out_dir.display()))?;

    let levels = args.levels;
    let dir = &args.out_dir;
    let planes = slab_planes(levels, shape.x * shape.y);
    let phases = match (view, kind) {
        (View::U64(data), "labels") => {
            build(data, shape, levels, planes, dir, args.shard, |slab, ss| {
                Ok(compute.pyramid_mode(slab, ss, levels)?)
            })?
        }
        (View::U32(data), "labels") => {
            build(data, shape, levels, planes, dir, args.shard, |slab, ss| {
                let wide: Vec<u64> = slab.par_iter().map(|&v| u64::from(v)).collect();
                let levels = compute.pyramid_mode(&wide, ss, levels)?;
                // Every output label is one of the input's, so it fits back in 32 bits.
                Ok(levels
                    .into_iter()
                    .map(|l| l.into_par_iter().map(|v| v as u32).collect())
                    .collect())
            })?
        }
        (View::U8(data), "gray") => {
            build(data, shape, levels, planes, dir, args.shard, |slab, ss| {
                Ok(compute.pyramid_mean(slab, ss, levels)?)
            })?
        }
        (v, k) => bail!("--kind {k} does not take a {} array", v.dtype()),
    };
    let Phases {
        compute_s,
        write_s,
        tail_s,
        voxels,
    } = phases;
    let peak = peak_rss_bytes().map_or(String::new(), |b| {
        format!(", peak RSS {:.2} GiB", b as f64 / (1u64 << 30) as f64)
    });
    let part = if args.shard == Shard::WHOLE {
        String::new()
    } else {
        format!(" shard {}/{}", args.shard.index, args.shard.count)
    };
    println!(
        "pyramid{part}: {} {} {kind}, {levels} levels, {} voxels, {compute_s:.3} s, {:.2} Gvox/s, backend {}, adapter {} (read {read_s:.2} s, {}; write {write_s:.2} s on a writer thread, the last {tail_s:.2} s after compute; whole job {:.2} s{peak})",
        shape,
        view.dtype(),
        voxels,
        voxels as f64 / compute_s / 1e9,
        compute.backend().name(),
        compute.adapter(),
        if volume.is_mapped() {
            "mapped"
        } else {
            "read into memory"
        },
        t_job.elapsed().as_secs_f64(),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Files of a pyramid built in slabs of `planes` z-planes by the workers `shards` of
    /// `count`, in that order.
    fn sharded_files(
        data: &[u64],
        shape: Shape,
        levels: u32,
        planes: usize,
        count: usize,
        shards: &[usize],
    ) -> Vec<Vec<u8>> {
        let compute = super::super::open_compute("cpu").unwrap();
        let dir = tempfile::tempdir().unwrap();
        for &index in shards {
            let shard = Shard { index, count };
            build(
                data,
                shape,
                levels,
                planes,
                dir.path(),
                shard,
                |slab, ss| Ok(compute.pyramid_mode(slab, ss, levels)?),
            )
            .unwrap();
        }
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        let want: Vec<String> = (1..=levels).map(|i| format!("s{i}.npy")).collect();
        assert_eq!(names, want, "exactly the levels, no partial files or marks");
        names
            .iter()
            .map(|n| std::fs::read(dir.path().join(n)).unwrap())
            .collect()
    }

    fn pyramid_files(data: &[u64], shape: Shape, levels: u32, planes: usize) -> Vec<Vec<u8>> {
        sharded_files(data, shape, levels, planes, 1, &[0])
    }

    #[test]
    fn slabs_stream_out_the_same_files_as_one_slab() {
        // An odd last slab and odd x, y: every level's slabs must stack exactly.
        let shape = Shape::new(13, 10, 45);
        let mut s = 99u64;
        let data: Vec<u64> = (0..shape.voxels())
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                if i % 7 == 0 {
                    0
                } else {
                    s % 5 + (i as u64 / 400)
                }
            })
            .collect();
        let levels = 3;
        let whole = pyramid_files(&data, shape, levels, shape.z);
        for planes in [8, 16, 40] {
            assert!(
                pyramid_files(&data, shape, levels, planes) == whole,
                "slabs of {planes} planes"
            );
        }
        // Workers in any order, one of them rerun after the outputs were named, and more
        // workers than slabs: the same bytes.
        for (count, order) in [
            (4, vec![2, 0, 3, 1, 2]),
            (3, vec![0, 1, 2]),
            (7, vec![6, 5, 4, 3, 2, 1, 0]),
        ] {
            assert!(
                sharded_files(&data, shape, levels, 8, count, &order) == whole,
                "{count} workers in order {order:?}"
            );
        }
    }
}

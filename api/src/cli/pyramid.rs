//! `tessera pyramid`: a multiscale pyramid of a numpy volume, for users who build scales offline.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use tessera_engine::compute::Shape;

use super::npy::{self, View};
use super::out::Out;
use super::shard::{self, Shard};
use super::zarr_out::ZarrLevels;

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
pub(super) fn slab_planes(levels: u32, plane: usize) -> usize {
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
pub(super) struct Phases {
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
/// slab's levels into the output (`DIR/s1.npy … sN.npy`, or zarr arrays in an object store) while the next slab computes, so no level is ever held
/// whole. Files get `.partial` names until every shard's part is written; zarr arrays get
/// their metadata then.
pub(super) fn build<T: npy::Element + Send + Sync>(
    data: &[T],
    shape: Shape,
    levels: u32,
    planes: usize,
    out: &Out,
    shard: Shard,
    slab_levels: impl FnMut(&[T], Shape) -> anyhow::Result<Vec<Vec<T>>>,
) -> anyhow::Result<Phases> {
    match out {
        Out::Dir(dir) => build_files(data, shape, levels, planes, dir, shard, slab_levels),
        Out::Objects(url) => {
            let zarr = ZarrLevels::open::<T>(url, shape, levels, planes)?;
            // Shards split at slab boundaries: each chunk is one slab's, so one worker's.
            let (z_lo, z_hi) = shard_planes(shape, planes, shard);
            let phases = run_slabs(
                data,
                shape,
                planes,
                (z_lo, z_hi),
                slab_levels,
                |z0, slab| zarr.write_slab(z0, slab),
            )?;
            zarr.finish(shard)?;
            Ok(phases)
        }
    }
}

/// The input planes of `shard`'s part, in whole units of `unit` planes.
fn shard_planes(shape: Shape, unit: usize, shard: Shard) -> (usize, usize) {
    let part = shard.range(shape.z.div_ceil(unit));
    (part.start * unit, (part.end * unit).min(shape.z))
}

fn build_files<T: npy::Element + Send + Sync>(
    data: &[T],
    shape: Shape,
    levels: u32,
    planes: usize,
    dir: &Path,
    shard: Shard,
    slab_levels: impl FnMut(&[T], Shape) -> anyhow::Result<Vec<Vec<T>>>,
) -> anyhow::Result<Phases> {
    // Shards split the volume at multiples of 2^levels planes, as slabs do, so their parts of
    // every level meet exactly.
    let (z_lo, z_hi) = shard_planes(shape, 1usize << levels, shard);
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
    let phases = run_slabs(
        data,
        shape,
        planes,
        (z_lo, z_hi),
        slab_levels,
        |z0, slab| {
            for (k, (file, level)) in files.iter().zip(slab).enumerate() {
                file.write_planes(z0 >> (k + 1), level)?;
            }
            Ok(())
        },
    )
    .and_then(|p| {
        // A worker's mark tells the others its part is in, so its part must survive a crash
        // of its machine first. A single job's outputs are as durable as any program's
        // (np.save's, tensorstore's): named only when whole, flushed by the OS; a sync here
        // cost half of a 5-level pyramid's wall time, waiting on the disk.
        if shard.count > 1 {
            for file in &files {
                file.sync()?;
            }
        }
        Ok(p)
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

/// Computes the slabs of input planes `z_lo..z_hi`, `planes` at a time, while a writer
/// thread hands each slab's levels to `write`.
fn run_slabs<T: npy::Element + Send + Sync>(
    data: &[T],
    shape: Shape,
    planes: usize,
    (z_lo, z_hi): (usize, usize),
    mut slab_levels: impl FnMut(&[T], Shape) -> anyhow::Result<Vec<Vec<T>>>,
    write: impl Fn(usize, &[Vec<T>]) -> anyhow::Result<()> + Send + Sync,
) -> anyhow::Result<Phases> {
    let plane = shape.x * shape.y;
    let elem_bytes = std::mem::size_of::<T>() as u64;
    let bar = progress(((z_hi - z_lo) * plane) as u64 * elem_bytes);
    // One slab queued while the writer writes another: the kernels never wait on the output
    // unless it is slower than they are, and at most three slabs' levels are held at once.
    let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, Vec<Vec<T>>)>(1);
    std::thread::scope(|scope| {
        let write = &write;
        let writer = scope.spawn(move || -> anyhow::Result<f64> {
            let mut busy = Duration::ZERO;
            for (z0, slab) in rx {
                let t = Instant::now();
                write(z0, &slab)?;
                busy += t.elapsed();
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
    })
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
    let out = Out::parse(&args.out_dir.to_string_lossy());
    if let Out::Dir(dir) = &out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }

    let levels = args.levels;
    let planes = slab_planes(levels, shape.x * shape.y);
    let phases = match (view, kind) {
        (View::U64(data), "labels") => {
            build(data, shape, levels, planes, &out, args.shard, |slab, ss| {
                Ok(compute.pyramid_mode(slab, ss, levels)?)
            })?
        }
        (View::U32(data), "labels") => {
            build(data, shape, levels, planes, &out, args.shard, |slab, ss| {
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
            build(data, shape, levels, planes, &out, args.shard, |slab, ss| {
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
                &Out::Dir(dir.path().to_path_buf()),
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

    /// Labels with an odd last slab and odd x, y: every level's slabs must stack exactly.
    fn fixture(shape: Shape) -> Vec<u64> {
        let mut s = 99u64;
        (0..shape.voxels())
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
            .collect()
    }

    /// Level `k`'s voxels, read back from the zarr arrays under `dir` chunk by chunk.
    fn zarr_level(dir: &Path, k: u32) -> Vec<u64> {
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(format!("s{k}/.zarray"))).unwrap())
                .unwrap();
        let dims = |key: &str| -> Vec<usize> {
            meta[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect()
        };
        let (shape, chunk) = (dims("shape"), dims("chunks"));
        assert_eq!(
            (meta["dtype"].as_str(), meta["compressor"].is_null()),
            (Some("<u8"), true)
        );
        let mut out = vec![u64::MAX; shape.iter().product()];
        let n: [usize; 3] = std::array::from_fn(|a| shape[a].div_ceil(chunk[a]));
        for (zi, yi, xi) in
            (0..n[0]).flat_map(|z| (0..n[1]).flat_map(move |y| (0..n[2]).map(move |x| (z, y, x))))
        {
            let bytes = std::fs::read(dir.join(format!("s{k}/{zi}.{yi}.{xi}"))).unwrap();
            let c: &[u64] = bytemuck::cast_slice(&bytes);
            assert_eq!(
                c.len(),
                chunk.iter().product::<usize>(),
                "whole chunks, padded"
            );
            for z in 0..chunk[0] {
                for y in 0..chunk[1] {
                    for x in 0..chunk[2] {
                        let (gz, gy, gx) =
                            (zi * chunk[0] + z, yi * chunk[1] + y, xi * chunk[2] + x);
                        if gz < shape[0] && gy < shape[1] && gx < shape[2] {
                            out[(gz * shape[1] + gy) * shape[2] + gx] =
                                c[(z * chunk[1] + y) * chunk[2] + x];
                        }
                    }
                }
            }
        }
        out
    }

    #[test]
    fn zarr_levels_in_an_object_store_hold_the_files_voxels_whatever_the_workers() {
        let shape = Shape::new(70, 130, 45);
        let data = fixture(shape);
        let (levels, planes) = (2, 8);
        let files = pyramid_files(&data, shape, levels, planes);
        let compute = super::super::open_compute("cpu").unwrap();
        for (count, order) in [
            (1, vec![0]),
            (4, vec![3, 1, 0, 2]),
            (9, vec![8, 0, 1, 2, 3, 4, 5, 6, 7, 0]),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let out = Out::Objects(format!("file://{}", dir.path().display()));
            for (n, &index) in order.iter().enumerate() {
                // Until the last worker's part is in, no level is readable.
                assert_eq!(
                    dir.path().join("s1/.zarray").exists(),
                    n >= count,
                    "{count} workers, after {n}"
                );
                build(
                    &data,
                    shape,
                    levels,
                    planes,
                    &out,
                    Shard { index, count },
                    |slab, ss| Ok(compute.pyramid_mode(slab, ss, levels)?),
                )
                .unwrap();
            }
            for k in 1..=levels {
                let npy = &files[k as usize - 1];
                let level = zarr_level(dir.path(), k);
                let want: &[u64] = bytemuck::cast_slice(&npy[npy.len() - level.len() * 8..]);
                assert!(
                    level == want,
                    "level {k}, {count} workers in order {order:?}"
                );
            }
            let left: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| n.starts_with(".pyramid"))
                .collect();
            assert!(left.is_empty(), "marks left: {left:?}");
        }
    }

    #[test]
    fn slabs_stream_out_the_same_files_as_one_slab() {
        let shape = Shape::new(13, 10, 45);
        let data = fixture(shape);
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

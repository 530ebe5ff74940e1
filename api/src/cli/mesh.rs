//! `tessera mesh`: closed surfaces of every label of a numpy volume, one file per label.

use std::borrow::Cow;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Instant;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use tessera_engine::compute::Cells;
use tessera_engine::mesh::format::{self, Format};
use tessera_engine::mesh::{Mesh, Surface};

use super::npy::{self, View};
use super::out::Out;
use super::shard::Shard;

pub struct MeshArgs {
    pub input: PathBuf,
    pub out_dir: PathBuf,
    pub format: String,
    pub compute: String,
    pub voxel_size: String,
    pub shard: Shard,
}

/// The labels of worker `shard` (label mod N = I), others set to background. A label's surface
/// depends only on which voxels are that label, so it is the same as meshed among all labels.
fn keep_shard(labels: &[u64], shard: Shard) -> Vec<u64> {
    let (i, n) = (shard.index as u64, shard.count as u64);
    labels
        .par_iter()
        .map(|&l| if l % n == i { l } else { 0 })
        .collect()
}

/// "x,y,z": three positive, finite sizes.
fn parse_voxel_size(s: &str) -> anyhow::Result<[f64; 3]> {
    let parts: Vec<&str> = s.split(',').collect();
    if parts.len() != 3 {
        bail!("--voxel-size {s:?} must be three sizes x,y,z");
    }
    let mut out = [0.0; 3];
    for (o, p) in out.iter_mut().zip(&parts) {
        let v: f64 = p
            .trim()
            .parse()
            .with_context(|| format!("--voxel-size {s:?}: {p:?} is not a number"))?;
        if !(v.is_finite() && v > 0.0) {
            bail!("--voxel-size {s:?}: every size must be positive and finite");
        }
        *o = v;
    }
    Ok(out)
}

/// What `--format` asks for: one file per label, or a neuroglancer precomputed mesh directory.
#[derive(Clone, Copy)]
enum Output {
    File(Format),
    /// `info`, `<id>:0` manifests and `<id>:0:0` fragments.
    Legacy,
    /// `info`, `<id>.index` and `<id>` (Draco fragments), levels of detail from 2×2×2 mode
    /// downsampling.
    Multires,
}

/// Levels of detail of the multi-resolution output, the full resolution included.
const LODS: u32 = 3;
/// Quantization bits of the multi-resolution fragments (neuroglancer reads 10 or 16).
const QUANTIZATION_BITS: u32 = 16;

fn output(format: &str) -> anyhow::Result<Output> {
    Ok(match format.to_ascii_lowercase().as_str() {
        "precomputed" => Output::Multires,
        "precomputed-legacy" => Output::Legacy,
        _ => Output::File(Format::from_str(format).map_err(|e| {
            anyhow::anyhow!("--format: {e}, or \"precomputed\" / \"precomputed-legacy\"")
        })?),
    })
}

pub fn run(args: MeshArgs) -> anyhow::Result<()> {
    let out = output(&args.format)?;
    let voxel = parse_voxel_size(&args.voxel_size)?;
    let compute = super::open_compute(&args.compute)?;
    let t_read = Instant::now();
    let volume = npy::open(&args.input)?;
    let shape = volume.shape();
    // The kernels take u64 labels: a mapped uint64 file is used in place, narrower ones widen.
    let labels: Cow<[u64]> = match volume.view() {
        View::U64(v) => Cow::Borrowed(v),
        View::U32(v) => Cow::Owned(v.par_iter().map(|&l| u64::from(l)).collect()),
        View::U16(v) => Cow::Owned(v.par_iter().map(|&l| u64::from(l)).collect()),
        View::U8(v) => Cow::Owned(v.par_iter().map(|&l| u64::from(l)).collect()),
    };
    let read_s = t_read.elapsed().as_secs_f64();
    let files = Out::parse(&args.out_dir.to_string_lossy()).files()?;

    let spinner = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    spinner
        .set_style(ProgressStyle::with_template("{spinner} meshing {elapsed}").expect("template"));
    spinner.enable_steady_tick(std::time::Duration::from_millis(200));
    let t_mesh = Instant::now();
    let mine: Cow<[u64]> = if args.shard == Shard::WHOLE {
        Cow::Borrowed(&labels)
    } else {
        Cow::Owned(keep_shard(&labels, args.shard))
    };
    let mut surfaces = compute.surface(&mine, shape, Cells::all(shape))?;
    drop(mine);
    let surfaces = surfaces.pop().unwrap_or_default();
    // Coarser levels for the multi-resolution output: the same labels, 2^k times coarser.
    let mut coarse: Vec<std::collections::HashMap<u64, Surface>> = Vec::new();
    if let Output::Multires = out {
        // From all labels, as the whole job does: a coarse voxel's mode depends on its
        // neighbours of every shard.
        let levels = compute.pyramid_mode(&labels, shape, LODS - 1)?;
        let mut s = shape;
        for level in &levels {
            s = s.half();
            let level = if args.shard == Shard::WHOLE {
                Cow::Borrowed(level)
            } else {
                Cow::Owned(keep_shard(level, args.shard))
            };
            let items = compute.surface(&level, s, Cells::all(s))?;
            coarse.push(
                items
                    .into_iter()
                    .flatten()
                    .map(|m| (m.label, Surface::from_piece([0; 3], &m)))
                    .collect(),
            );
        }
    }
    let mesh_s = t_mesh.elapsed().as_secs_f64();
    spinner.finish_and_clear();
    drop(labels);
    let mapped = volume.is_mapped();
    drop(volume);

    let count = surfaces.len();
    let triangles: usize = surfaces.iter().map(|s| s.triangles.len()).sum();
    let vertices: usize = surfaces.iter().map(|s| s.vertices.len()).sum();
    let t_write = Instant::now();
    let bar =
        ProgressBar::with_draw_target(Some(surfaces.len() as u64), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} labels written, eta {eta}")
            .expect("template"),
    );
    let write = |name: String, bytes: Vec<u8>| files.write(name, bytes);
    match out {
        Output::Legacy => write("info".into(), format::precomputed_legacy_info())?,
        Output::Multires => {
            let identity = [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0];
            let info = format::precomputed_multires_info(QUANTIZATION_BITS, identity);
            write("info".into(), info)?;
        }
        Output::File(_) => {}
    }
    surfaces
        .into_par_iter()
        .try_for_each(|s| -> anyhow::Result<()> {
            let label = s.label;
            let mesh = Mesh::from_piece(s, [0; 3], voxel);
            match out {
                Output::File(f) => {
                    write(
                        format!("{}.{}", label, f.extension()),
                        format::encode(&mesh, f),
                    )?;
                }
                Output::Legacy => {
                    for (name, bytes) in format::precomputed_legacy_files(label, &mesh) {
                        write(name, bytes)?;
                    }
                }
                Output::Multires => {
                    let mut lods = vec![mesh];
                    for (k, level) in coarse.iter().enumerate() {
                        // A label that vanished at a coarse level keeps its finer levels only.
                        let Some(c) = level.get(&label) else { break };
                        lods.push(c.to_mesh(voxel.map(|v| v * f64::from(2u32 << k))));
                    }
                    // Chunks of 64 voxels of the full resolution, anchored at the origin.
                    let chunk = voxel.map(|v| (64.0 * v) as f32);
                    let (index, data) =
                        format::precomputed_multires(&lods, chunk, [0.0; 3], QUANTIZATION_BITS);
                    write(format!("{}.index", label), index)?;
                    write(label.to_string(), data)?;
                }
            }
            bar.inc(1);
            Ok(())
        })?;
    files.finish()?;
    bar.finish_and_clear();
    let write_s = t_write.elapsed().as_secs_f64();
    println!(
        "meshed {} labels: {triangles} triangles, {vertices} vertices in {:.3} s ({:.1} Mvox/s; read {read_s:.3} s {}, mesh {mesh_s:.3} s, write {write_s:.3} s), {} {}, backend {}, adapter {}",
        count,
        mesh_s + write_s,
        shape.voxels() as f64 / mesh_s / 1e6,
        if mapped { "mapped" } else { "into memory" },
        shape,
        args.format,
        compute.backend().name(),
        compute.adapter(),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voxel_sizes_are_three_positive_numbers() {
        assert_eq!(parse_voxel_size("8,8,40").unwrap(), [8.0, 8.0, 40.0]);
        for bad in [
            "", "1,2", "1,2,3,4", "0,1,1", "a,b,c", "-1,1,1", "inf,1,1", "NaN,1,1",
        ] {
            assert!(parse_voxel_size(bad).is_err(), "{bad:?}");
        }
    }
}

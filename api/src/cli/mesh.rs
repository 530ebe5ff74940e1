//! `tessera mesh`: closed surfaces of every label of a numpy volume, one file per label.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use tessera_engine::compute::{Cells, Compute, LabelSurface, Shape};
use tessera_engine::mesh::format::{self, Format};
use tessera_engine::mesh::{Mesh, Surface};

use super::npy::{self, View};
use super::out::Out;
use super::pyramid;
use super::shard::Shard;

pub struct MeshArgs {
    pub input: PathBuf,
    pub out_dir: PathBuf,
    pub format: String,
    pub compute: String,
    pub voxel_size: String,
    pub shard: Shard,
}

/// Voxels meshed at once (2 GiB of u64 labels): volumes larger than that, or than memory, are
/// meshed slab by slab. Smaller ones are one slab, which needs no joining.
const SLAB_VOXELS: usize = 1 << 28;

/// Planes `z0..z1` of `view`'s labels as u64, with the labels of other workers than `shard`
/// (label mod N ≠ I) set to background. A label's surface depends only on which voxels are
/// that label, so it is the same as meshed among all labels.
fn slab_labels<'a>(
    view: &View<'a>,
    plane: usize,
    (z0, z1): (usize, usize),
    shard: Shard,
) -> Cow<'a, [u64]> {
    let r = z0 * plane..z1 * plane;
    let (i, n) = (shard.index as u64, shard.count as u64);
    let keep = |l: u64| if l % n == i { l } else { 0 };
    match view {
        // Mapped uint64 labels of a whole job are meshed in place.
        View::U64(v) if shard == Shard::WHOLE => Cow::Borrowed(&v[r]),
        View::U64(v) => Cow::Owned(v[r].par_iter().map(|&l| keep(l)).collect()),
        View::U32(v) => Cow::Owned(v[r].par_iter().map(|&l| keep(u64::from(l))).collect()),
        View::U16(v) => Cow::Owned(v[r].par_iter().map(|&l| keep(u64::from(l))).collect()),
        View::U8(v) => Cow::Owned(v[r].par_iter().map(|&l| keep(u64::from(l))).collect()),
    }
}

/// Every label's closed surface, meshed `planes` z-planes at a time. Each slab carries the
/// next slab's first plane, and the slabs' cells tile the volume's (the first also takes the
/// rim below, the last the rim above), so the pieces join into the whole volume's surfaces.
fn surfaces_by_slab(
    compute: &dyn Compute,
    view: &View,
    shape: Shape,
    shard: Shard,
    planes: usize,
) -> anyhow::Result<HashMap<u64, Joined>> {
    let plane = shape.x * shape.y;
    let mut joined: HashMap<u64, Joined> = HashMap::new();
    for z0 in (0..shape.z).step_by(planes.max(1)) {
        let z1 = (z0 + planes).min(shape.z);
        let top = (z1 + 1).min(shape.z);
        let labels = slab_labels(view, plane, (z0, top), shard);
        let cells = Cells {
            lo: [-1, -1, if z0 == 0 { -1 } else { 0 }],
            hi: [shape.x as i32, shape.y as i32, (z1 - z0) as i32],
        };
        let item = Shape::new(shape.x, shape.y, top - z0);
        let pieces = compute.surface(&labels, item, cells)?.into_iter().flatten();
        drop(labels);
        // Each label joins its own piece: in parallel, labels taken out and put back.
        let work: Vec<(LabelSurface, Joined)> = pieces
            .map(|s| {
                let j = joined.remove(&s.label).unwrap_or_default();
                (s, j)
            })
            .collect();
        let done: Vec<(u64, Joined)> = work
            .into_par_iter()
            .map(|(s, mut j)| {
                let label = s.label;
                j.add(z0 as i64, z1 as i64, s);
                (label, j)
            })
            .collect();
        joined.extend(done);
    }
    Ok(joined)
}

/// A label's surface joined slab by slab. A label met in one slab keeps the kernel's piece as
/// it is (a volume of one slab needs no joining at all); for the others only vertices near a
/// seam can be shared with the slab before, so only those are looked up (hashing every vertex
/// costs more than the meshing; the labelmap's `Surface::join` of blocks does the same).
#[derive(Default)]
struct Joined {
    /// The piece of the one slab met so far: (its first plane, its end plane, the piece).
    first: Option<(i64, i64, LabelSurface)>,
    surface: Surface,
    /// Vertices near the last slab's top, by position (half-voxel units).
    seam: HashMap<[i64; 3], u32>,
}

impl Joined {
    /// Adds the piece of the slab of planes `z0..z1` (its item's origin at plane `z0`).
    fn add(&mut self, z0: i64, z1: i64, piece: LabelSurface) {
        if self.first.is_none() && self.surface.vertices.is_empty() {
            self.first = Some((z0, z1, piece));
            return;
        }
        if let Some((a0, a1, first)) = self.first.take() {
            self.join(a0, a1, &first);
        }
        self.join(z0, z1, &piece);
    }

    fn join(&mut self, z0: i64, z1: i64, piece: &LabelSurface) {
        // The slabs' cells meet on plane z1's voxel centres (h = 2·z1 + 1): a band of a few
        // half-planes around each seam holds every shared vertex.
        let (shared_below, shared_above) = (2 * z0 + 2, 2 * z1 - 2);
        let mut seam = HashMap::new();
        let out = &mut self.surface;
        let ids: Vec<u32> = piece
            .vertices
            .iter()
            .map(|v| {
                let h = [v[0] as i64, v[1] as i64, 2 * z0 + v[2] as i64];
                let shared = match h[2] <= shared_below {
                    true => self.seam.get(&h).copied(),
                    false => None,
                };
                let id = shared.unwrap_or_else(|| {
                    out.vertices.push(h);
                    out.vertices.len() as u32 - 1
                });
                if h[2] >= shared_above {
                    seam.insert(h, id);
                }
                id
            })
            .collect();
        out.triangles
            .extend(piece.triangles.iter().map(|t| t.map(|i| ids[i as usize])));
        self.seam = seam;
    }

    /// (triangles, vertices).
    fn counts(&self) -> (usize, usize) {
        match &self.first {
            Some((_, _, p)) => (p.triangles.len(), p.vertices.len()),
            None => (self.surface.triangles.len(), self.surface.vertices.len()),
        }
    }

    fn into_mesh(self, voxel: [f64; 3]) -> Mesh {
        match self.first {
            Some((z0, _, p)) => Mesh::from_piece(p, [0, 0, z0], voxel),
            None => self.surface.into_mesh(voxel),
        }
    }

    fn to_mesh(&self, voxel: [f64; 3]) -> Mesh {
        match &self.first {
            Some((z0, _, p)) => Mesh::from_piece(p.clone(), [0, 0, *z0], voxel),
            None => self.surface.to_mesh(voxel),
        }
    }
}

/// Planes per meshing slab for a volume of `shape` (pyramid slabs are `pyramid::slab_planes`).
fn mesh_slab_planes(shape: Shape) -> usize {
    (SLAB_VOXELS / (shape.x * shape.y).max(1)).max(1)
}

/// Writes `levels` 2×2×2 mode levels of `view` into `dir` (`s1.npy` …), slab by slab, for the
/// coarse levels of detail; they are meshed from there, memory-mapped.
fn mode_levels(
    compute: &dyn Compute,
    view: &View,
    shape: Shape,
    levels: u32,
    dir: &Path,
) -> anyhow::Result<()> {
    let planes = pyramid::slab_planes(levels, shape.x * shape.y);
    let out = Out::Dir(dir.to_path_buf());
    macro_rules! narrow {
        ($data:expr, $t:ty) => {
            pyramid::build(
                $data,
                shape,
                levels,
                planes,
                &out,
                Shard::WHOLE,
                |slab, ss| {
                    let wide: Vec<u64> = slab.par_iter().map(|&v| u64::from(v)).collect();
                    // Every output label is one of the input's, so it fits back.
                    Ok(compute
                        .pyramid_mode(&wide, ss, levels)?
                        .into_iter()
                        .map(|l| l.into_par_iter().map(|v| v as $t).collect())
                        .collect())
                },
            )
        };
    }
    match view {
        View::U64(d) => pyramid::build(d, shape, levels, planes, &out, Shard::WHOLE, |slab, ss| {
            Ok(compute.pyramid_mode(slab, ss, levels)?)
        }),
        View::U32(d) => narrow!(d, u32),
        View::U16(d) => narrow!(d, u16),
        View::U8(d) => narrow!(d, u8),
    }?;
    Ok(())
}

/// A scratch directory removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
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
    let view = volume.view();
    let read_s = t_read.elapsed().as_secs_f64();
    let files = Out::parse(&args.out_dir.to_string_lossy()).files()?;

    let spinner = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    spinner
        .set_style(ProgressStyle::with_template("{spinner} meshing {elapsed}").expect("template"));
    spinner.enable_steady_tick(std::time::Duration::from_millis(200));
    let t_mesh = Instant::now();
    let compute = compute.as_ref();
    let surfaces = surfaces_by_slab(compute, &view, shape, args.shard, mesh_slab_planes(shape))?;
    // Coarser levels for the multi-resolution output: the same labels, 2^k times coarser,
    // downsampled from all labels (a coarse voxel's mode depends on its neighbours of every
    // shard) into scratch files, then meshed from them as the full resolution is.
    let mut coarse: Vec<HashMap<u64, Joined>> = Vec::new();
    if let Output::Multires = out {
        let scratch = Scratch(std::env::temp_dir().join(format!(
            "tessera-mesh-{}-{}",
            std::process::id(),
            args.shard.index
        )));
        std::fs::create_dir_all(&scratch.0)
            .with_context(|| format!("creating {}", scratch.0.display()))?;
        mode_levels(compute, &view, shape, LODS - 1, &scratch.0)?;
        for k in 1..LODS {
            let level = npy::open(&scratch.0.join(format!("s{k}.npy")))?;
            let s = level.shape();
            coarse.push(surfaces_by_slab(
                compute,
                &level.view(),
                s,
                args.shard,
                mesh_slab_planes(s),
            )?);
        }
    }
    let mesh_s = t_mesh.elapsed().as_secs_f64();
    spinner.finish_and_clear();
    let mapped = volume.is_mapped();
    drop(volume);

    let count = surfaces.len();
    let triangles: usize = surfaces.values().map(|s| s.counts().0).sum();
    let vertices: usize = surfaces.values().map(|s| s.counts().1).sum();
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
        .try_for_each(|(label, s)| -> anyhow::Result<()> {
            let mesh = s.into_mesh(voxel);
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

    /// Each label's triangles as corner coordinates, each starting at its smallest corner (the
    /// winding kept), sorted: the geometry, whatever the vertex numbering.
    fn geometry(surfaces: &HashMap<u64, Joined>) -> Vec<(u64, Vec<[[i64; 3]; 3]>)> {
        let mut out: Vec<_> = surfaces
            .iter()
            .map(|(label, j)| {
                let s = match &j.first {
                    Some((z0, _, p)) => &Surface::from_piece([0, 0, *z0], p),
                    None => &j.surface,
                };
                let mut tris: Vec<[[i64; 3]; 3]> = s
                    .triangles
                    .iter()
                    .map(|t| {
                        let c = t.map(|i| s.vertices[i as usize]);
                        let first = (0..3).min_by_key(|&k| c[k]).unwrap();
                        std::array::from_fn(|k| c[(first + k) % 3])
                    })
                    .collect();
                tris.sort();
                (*label, tris)
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn slabs_join_into_the_whole_volumes_surfaces() {
        let compute = super::super::open_compute("cpu").unwrap();
        let shape = Shape::new(17, 11, 13);
        let labels: Vec<u64> = (0..shape.voxels())
            .map(|i| {
                let (z, y, x) = (i / (17 * 11), i / 17 % 11, i % 17);
                ((z / 4) * 7 + (y / 5) * 3 + (x * x + z) / 30) as u64 % 6
            })
            .collect();
        let view = View::U64(&labels);
        let whole =
            geometry(&surfaces_by_slab(compute.as_ref(), &view, shape, Shard::WHOLE, 13).unwrap());
        assert!(whole.len() >= 5);
        for planes in [1, 2, 5, 12] {
            let slabs =
                surfaces_by_slab(compute.as_ref(), &view, shape, Shard::WHOLE, planes).unwrap();
            assert!(geometry(&slabs) == whole, "slabs of {planes} planes");
            // Seam vertices are shared, not repeated.
            for j in slabs.values().filter(|j| j.first.is_none()) {
                let mut v = j.surface.vertices.clone();
                v.sort();
                v.dedup();
                assert_eq!(
                    v.len(),
                    j.surface.vertices.len(),
                    "slabs of {planes} planes"
                );
            }
        }
        // A worker's part holds exactly its labels, meshed as among all labels.
        let part = Shard { index: 1, count: 3 };
        let mine = geometry(&surfaces_by_slab(compute.as_ref(), &view, shape, part, 4).unwrap());
        let want: Vec<_> = whole.iter().filter(|(l, _)| l % 3 == 1).cloned().collect();
        assert!(mine == want);
    }

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

//! The `surface` kernel: both backends against `reference`, and every mesh checked for what
//! the kernel promises: closed, edge-manifold, outward, non-degenerate, and enclosing the
//! label's voxels to within half its exposed faces.

mod common;

use std::collections::HashMap;
use std::sync::OnceLock;

use common::{boxes, noise};
use tessera_engine::compute::cpu::CpuCompute;
use tessera_engine::compute::gpu::GpuCompute;
use tessera_engine::compute::reference;
use tessera_engine::compute::{Cells, Compute, LabelSurface, Shape};

fn gpu() -> &'static GpuCompute {
    static GPU: OnceLock<GpuCompute> = OnceLock::new();
    GPU.get_or_init(|| match GpuCompute::new(true) {
        Ok(g) => g,
        Err(e) => panic!("no GPU adapter (CI installs mesa-vulkan-drivers for lavapipe): {e}"),
    })
}

/// A device with 256 KiB bindings, so that volumes are cut into pieces of a few strips.
fn small_gpu() -> &'static GpuCompute {
    static GPU: OnceLock<GpuCompute> = OnceLock::new();
    GPU.get_or_init(|| {
        let mut g = GpuCompute::new(true).expect("GPU adapter");
        g.limit_binding(256 * 1024);
        g
    })
}

/// Volumes with every hard case: single voxels, diagonal-only contacts, cavities, labels on
/// the edges, the largest labels, and odd shapes.
fn volumes() -> Vec<(Shape, Vec<u64>)> {
    let mut out = Vec::new();
    for (i, shape) in [
        Shape::new(1, 1, 1),
        Shape::new(2, 3, 4),
        Shape::new(7, 5, 3),
        Shape::new(16, 16, 16),
        Shape::new(33, 17, 9),
        Shape::new(40, 37, 70),
    ]
    .into_iter()
    .enumerate()
    {
        let seed = i as u64;
        out.push((shape, noise(shape, &[0, 7], seed)));
        out.push((shape, noise(shape, &[0, 1, 2, u64::MAX], seed + 10)));
        out.push((shape, boxes(shape, &[0, 5, 9, 1 << 40], 12, seed + 20)));
        out.push((shape, vec![3; shape.voxels()]));
    }
    // A hollow cube: a cavity whose surface faces inward.
    let s = Shape::cube(8);
    let hollow = (0..s.voxels())
        .map(|i| {
            let p = [i % 8, i / 8 % 8, i / 64];
            let inner = p.iter().all(|&c| (2..6).contains(&c));
            if inner { 0 } else { 4 }
        })
        .collect();
    out.push((s, hollow));
    out
}

/// Checks one label's mesh against its voxels; returns the enclosed volume.
fn check_mesh(m: &LabelSurface, vol: &[u64], shape: Shape, cells: Cells) -> f64 {
    let label = m.label;
    assert!(label != 0, "a mesh for the background");
    assert!(!m.triangles.is_empty(), "label {label}: an empty mesh");
    // Each directed edge once, and its reverse once: closed, manifold, consistently wound.
    let mut directed: HashMap<(u32, u32), u32> = HashMap::new();
    for t in &m.triangles {
        assert!(
            t[0] != t[1] && t[1] != t[2] && t[0] != t[2],
            "label {label}: {t:?} repeats a vertex"
        );
        let p = t.map(|i| m.vertices[i as usize].map(|c| c as f64));
        let n = cross(sub(p[1], p[0]), sub(p[2], p[0]));
        assert!(dot(n, n) > 0.0, "label {label}: degenerate {t:?}");
        for k in 0..3 {
            *directed.entry((t[k], t[(k + 1) % 3])).or_default() += 1;
        }
    }
    for (&(a, b), &n) in &directed {
        assert_eq!(n, 1, "label {label}: edge {a}->{b} used {n} times");
        assert_eq!(
            directed.get(&(b, a)),
            Some(&1),
            "label {label}: edge {a}->{b} has no opposite (open or misoriented)"
        );
    }
    // Every vertex used, each on the half-voxel grid, on an edge between voxel centers.
    let mut used = vec![false; m.vertices.len()];
    m.triangles
        .iter()
        .flatten()
        .for_each(|&i| used[i as usize] = true);
    assert!(used.iter().all(|&u| u), "label {label}: unused vertices");
    for v in &m.vertices {
        let odd = v.iter().filter(|&&c| c % 2 == 1).count();
        assert_eq!(odd, 2, "label {label}: {v:?} is not an edge midpoint");
    }
    // Signed volume in voxel units (vertices are in half voxels).
    let volume: f64 = m
        .triangles
        .iter()
        .map(|t| {
            let p = t.map(|i| m.vertices[i as usize].map(|c| c as f64 / 2.0));
            dot(p[0], cross(p[1], p[2])) / 6.0
        })
        .sum();
    let (n, f) = voxels_and_faces(vol, shape, cells, label);
    assert!(
        (volume - n as f64).abs() <= f as f64 / 2.0 + 1e-9,
        "label {label}: volume {volume} for {n} voxels with {f} exposed faces"
    );
    volume
}

/// The label's voxels inside the meshed cells' reach, and their faces not shared with another
/// voxel of the label.
fn voxels_and_faces(vol: &[u64], shape: Shape, cells: Cells, label: u64) -> (u64, u64) {
    let dims = [shape.x as i32, shape.y as i32, shape.z as i32];
    let at = |p: [i32; 3]| -> u64 {
        let inside = (0..3).all(|a| p[a] >= 0 && p[a] < dims[a]);
        let reached = (0..3).all(|a| p[a] >= cells.lo[a] && p[a] <= cells.hi[a]);
        if inside && reached {
            vol[((p[2] * dims[1] + p[1]) * dims[0] + p[0]) as usize]
        } else {
            0
        }
    };
    let (mut n, mut f) = (0, 0);
    for z in 0..dims[2] {
        for y in 0..dims[1] {
            for x in 0..dims[0] {
                if at([x, y, z]) != label {
                    continue;
                }
                n += 1;
                for a in 0..3 {
                    for d in [-1, 1] {
                        let mut q = [x, y, z];
                        q[a] += d;
                        f += u64::from(at(q) != label);
                    }
                }
            }
        }
    }
    (n, f)
}

fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    std::array::from_fn(|i| a[i] - b[i])
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    (0..3).map(|i| a[i] * b[i]).sum()
}

fn labels_of(vol: &[u64]) -> Vec<u64> {
    let mut l: Vec<u64> = vol.iter().copied().filter(|&v| v != 0).collect();
    l.sort_unstable();
    l.dedup();
    l
}

#[test]
fn cpu_matches_reference_and_meshes_are_valid() {
    let cpu = CpuCompute::new();
    for (shape, vol) in volumes() {
        let cells = Cells::all(shape);
        let want = reference::surface(&vol, shape, 1, cells);
        let got = cpu.surface(&vol, shape, cells).unwrap();
        assert_eq!(got, want, "{shape}");
        let meshes = &got[0];
        assert_eq!(
            meshes.iter().map(|m| m.label).collect::<Vec<_>>(),
            labels_of(&vol),
            "{shape}: one mesh per label"
        );
        for m in meshes {
            check_mesh(m, &vol, shape, cells);
        }
    }
}

#[test]
fn single_voxel_is_an_octahedron_and_a_full_volume_a_box() {
    let cpu = CpuCompute::new();
    let got = cpu
        .surface(&[9], Shape::cube(1), Cells::all(Shape::cube(1)))
        .unwrap();
    let m = &got[0][0];
    assert_eq!((m.vertices.len(), m.triangles.len()), (6, 8));
    let mut v = m.vertices.clone();
    v.sort();
    assert_eq!(
        v,
        [
            [0, 1, 1],
            [1, 0, 1],
            [1, 1, 0],
            [1, 1, 2],
            [1, 2, 1],
            [2, 1, 1]
        ]
    );
}

#[test]
fn strips_join_into_one_sweep() {
    // Tall enough in y for five strips; the reference is one sweep.
    let shape = Shape::new(23, 150, 19);
    let vol = boxes(shape, &[0, 1, 2, 3], 40, 77);
    let cells = Cells::all(shape);
    let want = reference::surface(&vol, shape, 1, cells);
    // One core sweeps the five strips as one run; two and three cores make runs of two strips
    // and one (chained strips and joined runs together); seven, a run per strip.
    for n in [1, 2, 3, 7] {
        let threads = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .unwrap();
        let got = threads.install(|| CpuCompute::new().surface(&vol, shape, cells).unwrap());
        assert!(got == want, "{n} threads");
    }
}

#[test]
fn batches_with_interior_cells_match_reference() {
    // Items that carry a one-voxel halo on their high sides, as block batches do.
    let item = Shape::new(9, 10, 11);
    let vol = noise(Shape::new(9, 10, 11 * 5), &[0, 4, 4, 6], 5);
    let cells = Cells::interior(item);
    let got = CpuCompute::new().surface(&vol, item, cells).unwrap();
    assert_eq!(got.len(), 5);
    assert_eq!(got, reference::surface(&vol, item, 5, cells));
}

#[test]
fn bad_cells_and_lengths_are_bad_input() {
    let cpu = CpuCompute::new();
    let s = Shape::cube(4);
    let vol = vec![1; 64];
    let far = Cells {
        lo: [-2, 0, 0],
        hi: [4, 4, 4],
    };
    assert!(cpu.surface(&vol, s, far).is_err());
    let past = Cells {
        lo: [0, 0, 0],
        hi: [5, 4, 4],
    };
    assert!(cpu.surface(&vol, s, past).is_err());
    assert!(cpu.surface(&vol[..60], s, Cells::all(s)).is_err());
    assert!(gpu().surface(&vol, s, past).is_err());
}

#[test]
fn gpu_matches_cpu() {
    let cpu = CpuCompute::new();
    for (shape, vol) in volumes() {
        let cells = Cells::all(shape);
        let want = cpu.surface(&vol, shape, cells).unwrap();
        assert_eq!(gpu().surface(&vol, shape, cells).unwrap(), want, "{shape}");
        assert_eq!(
            small_gpu().surface(&vol, shape, cells).unwrap(),
            want,
            "{shape}, small bindings"
        );
    }
    // Tall in y: the small device takes it in pieces of a few strips.
    let tall = Shape::new(16, 200, 16);
    let vol = boxes(tall, &[0, 2, 3, 1 << 50], 30, 9);
    let cells = Cells::all(tall);
    let want = cpu.surface(&vol, tall, cells).unwrap();
    assert_eq!(want, reference::surface(&vol, tall, 1, cells));
    assert_eq!(small_gpu().surface(&vol, tall, cells).unwrap(), want);
    let item = Shape::new(17, 9, 12);
    let vol = boxes(Shape::new(17, 9, 12 * 6), &[0, 2, 3, 1 << 50], 30, 8);
    let cells = Cells::interior(item);
    let want = cpu.surface(&vol, item, cells).unwrap();
    assert_eq!(gpu().surface(&vol, item, cells).unwrap(), want);
    assert_eq!(small_gpu().surface(&vol, item, cells).unwrap(), want);
}

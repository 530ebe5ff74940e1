//! Decimation that keeps a mesh closed, manifold and on the half-voxel grid: edges collapse
//! into one of their own endpoints, shortest first, only where the surface around the removed
//! vertex is flat enough, no triangle turns over, and the link condition holds (the two
//! endpoints share exactly the two neighbours across the edge), which is what keeps a closed
//! 2-manifold one after the collapse.
//!
//! Deterministic: candidates are ordered by (length, endpoints), so the same surface always
//! decimates to the same mesh, whichever backend produced it.

use std::collections::{BTreeSet, HashSet};

use super::Surface;

/// The flatness a collapse needs: every triangle around the removed vertex has a normal within
/// about 25° of the others, so marching-cubes staircases smooth out but corners stay.
const MIN_COS: f64 = 0.9;

/// Collapses edges until at most `keep` of the triangles remain (0 < keep ≤ 1) or no edge
/// may collapse. Returns the decimated surface; unused vertices are dropped, the survivors
/// keep their order.
pub fn decimate(s: &Surface, keep: f64) -> Surface {
    let target = ((s.triangles.len() as f64) * keep.clamp(0.0, 1.0)).ceil() as usize;
    let mut tris: Vec<Option<[u32; 3]>> = s.triangles.iter().copied().map(Some).collect();
    let mut alive = s.triangles.len();
    let mut around: Vec<Vec<u32>> = vec![Vec::new(); s.vertices.len()];
    for (t, tri) in s.triangles.iter().enumerate() {
        for &v in tri {
            around[v as usize].push(t as u32);
        }
    }
    let pos: Vec<[f64; 3]> = s.vertices.iter().map(|v| v.map(|c| c as f64)).collect();
    loop {
        if alive <= target {
            break;
        }
        let mut edges = BTreeSet::new();
        for tri in tris.iter().flatten() {
            for k in 0..3 {
                let (a, b) = (tri[k], tri[(k + 1) % 3]);
                let len = dist2(pos[a as usize], pos[b as usize]);
                edges.insert((len, a.min(b), a.max(b)));
            }
        }
        // One collapse per neighbourhood a round, so every check sees a settled mesh.
        let mut touched: HashSet<u32> = HashSet::new();
        let mut collapsed = 0;
        for &(_, a, b) in &edges {
            if alive <= target {
                break;
            }
            if touched.contains(&a) || touched.contains(&b) {
                continue;
            }
            // Remove whichever endpoint may go; `a` first for determinism.
            for (from, to) in [(a, b), (b, a)] {
                if can_collapse(&tris, &around, &pos, from, to) {
                    let ring: Vec<u32> = around[from as usize]
                        .iter()
                        .flat_map(|&t| tris[t as usize].expect("live triangle"))
                        .collect();
                    alive -= collapse(&mut tris, &mut around, from, to);
                    touched.extend(ring);
                    collapsed += 1;
                    break;
                }
            }
        }
        if collapsed == 0 {
            break;
        }
    }
    compact(s, &tris)
}

fn dist2(a: [f64; 3], b: [f64; 3]) -> u64 {
    (0..3).map(|i| (a[i] - b[i]).powi(2)).sum::<f64>() as u64
}

fn normal(p: [[f64; 3]; 3]) -> [f64; 3] {
    let u: [f64; 3] = std::array::from_fn(|i| p[1][i] - p[0][i]);
    let v: [f64; 3] = std::array::from_fn(|i| p[2][i] - p[0][i]);
    [
        u[1] * v[2] - u[2] * v[1],
        u[2] * v[0] - u[0] * v[2],
        u[0] * v[1] - u[1] * v[0],
    ]
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    (0..3).map(|i| a[i] * b[i]).sum()
}

fn unit(n: [f64; 3]) -> Option<[f64; 3]> {
    let l = dot(n, n).sqrt();
    (l > 0.0).then(|| n.map(|c| c / l))
}

fn neighbours(tris: &[Option<[u32; 3]>], around: &[Vec<u32>], v: u32) -> BTreeSet<u32> {
    around[v as usize]
        .iter()
        .flat_map(|&t| tris[t as usize].expect("live triangle"))
        .filter(|&w| w != v)
        .collect()
}

fn can_collapse(
    tris: &[Option<[u32; 3]>],
    around: &[Vec<u32>],
    pos: &[[f64; 3]],
    from: u32,
    to: u32,
) -> bool {
    let nf = neighbours(tris, around, from);
    let nt = neighbours(tris, around, to);
    // A vertex of degree 3 belongs to a tetrahedron-like cap that a collapse would flatten.
    if nf.len() <= 3 || nt.len() <= 3 {
        return false;
    }
    let shared = around[from as usize]
        .iter()
        .filter(|&&t| tris[t as usize].expect("live").contains(&to))
        .count();
    if shared != 2 || nf.intersection(&nt).count() != 2 {
        return false;
    }
    let normals: Vec<[f64; 3]> = around[from as usize]
        .iter()
        .filter_map(|&t| {
            unit(normal(
                tris[t as usize].expect("live").map(|v| pos[v as usize]),
            ))
        })
        .collect();
    for (i, a) in normals.iter().enumerate() {
        if normals[i + 1..].iter().any(|b| dot(*a, *b) < MIN_COS) {
            return false;
        }
    }
    // No surviving triangle may turn over or vanish.
    around[from as usize].iter().all(|&t| {
        let tri = tris[t as usize].expect("live");
        if tri.contains(&to) {
            return true;
        }
        let before = normal(tri.map(|v| pos[v as usize]));
        let after = normal(tri.map(|v| pos[if v == from { to } else { v } as usize]));
        match (unit(before), unit(after)) {
            (Some(b), Some(a)) => dot(a, b) > 0.0,
            _ => false,
        }
    })
}

/// Moves `from` onto `to`; returns the triangles removed (the two across the edge).
fn collapse(tris: &mut [Option<[u32; 3]>], around: &mut [Vec<u32>], from: u32, to: u32) -> usize {
    let mut removed = 0;
    let ring = std::mem::take(&mut around[from as usize]);
    for t in ring {
        let tri = tris[t as usize].expect("live triangle");
        if tri.contains(&to) {
            tris[t as usize] = None;
            removed += 1;
            for v in tri {
                if v != from {
                    around[v as usize].retain(|&x| x != t);
                }
            }
        } else {
            tris[t as usize] = Some(tri.map(|v| if v == from { to } else { v }));
            around[to as usize].push(t);
        }
    }
    removed
}

fn compact(s: &Surface, tris: &[Option<[u32; 3]>]) -> Surface {
    let mut used = vec![false; s.vertices.len()];
    for tri in tris.iter().flatten() {
        for &v in tri {
            used[v as usize] = true;
        }
    }
    let mut new_id = vec![u32::MAX; s.vertices.len()];
    let mut out = Surface::default();
    for (i, v) in s.vertices.iter().enumerate() {
        if used[i] {
            new_id[i] = out.vertices.len() as u32;
            out.vertices.push(*v);
        }
    }
    out.triangles = tris
        .iter()
        .flatten()
        .map(|t| t.map(|v| new_id[v as usize]))
        .collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compute::cpu::CpuCompute;
    use crate::compute::{Cells, Compute, Shape};
    use std::collections::HashMap;

    fn surface_of(vol: &[u64], shape: Shape) -> Surface {
        let s = CpuCompute::new()
            .surface(vol, shape, Cells::all(shape))
            .unwrap();
        Surface::from_piece([0; 3], &s[0][0])
    }

    /// Closed, manifold, consistently wound; returns the volume (voxel units).
    fn check(s: &Surface) -> f64 {
        let mut directed: HashMap<(u32, u32), u32> = HashMap::new();
        for t in &s.triangles {
            assert!(t[0] != t[1] && t[1] != t[2] && t[0] != t[2]);
            for k in 0..3 {
                *directed.entry((t[k], t[(k + 1) % 3])).or_default() += 1;
            }
        }
        for (&(a, b), &n) in &directed {
            assert_eq!(n, 1, "edge {a}->{b} used {n} times");
            assert_eq!(directed.get(&(b, a)), Some(&1), "edge {a}->{b} is open");
        }
        s.triangles
            .iter()
            .map(|t| {
                let p = t.map(|i| s.vertices[i as usize].map(|c| c as f64 / 2.0));
                dot(p[0], normal([[0.0; 3], p[1], p[2]])) / 6.0
            })
            .sum()
    }

    #[test]
    fn a_box_decimates_closed_and_keeps_its_volume() {
        let shape = Shape::new(20, 14, 9);
        let vol = vec![1u64; shape.voxels()];
        let s = surface_of(&vol, shape);
        let v0 = check(&s);
        let d = decimate(&s, 0.2);
        assert!(
            d.triangles.len() < s.triangles.len() / 3,
            "{}",
            d.triangles.len()
        );
        let v1 = check(&d);
        assert!((v1 - v0).abs() / v0 < 0.1, "{v0} -> {v1}");
        assert_eq!(decimate(&s, 0.2), d, "deterministic");
    }

    #[test]
    fn random_shapes_stay_closed_manifolds() {
        let shape = Shape::cube(12);
        let mut rng = crate::compute::reference::Rng(3);
        for _ in 0..5 {
            let vol: Vec<u64> = (0..shape.voxels())
                .map(|i| {
                    let p = [i % 12, i / 12 % 12, i / 144];
                    let inside = p.iter().all(|&c| (2..10).contains(&c));
                    u64::from(inside || rng.below(5) == 0)
                })
                .collect();
            let s = CpuCompute::new()
                .surface(&vol, shape, Cells::all(shape))
                .unwrap();
            for m in &s[0] {
                let d = decimate(&Surface::from_piece([0; 3], m), 0.3);
                check(&d);
            }
        }
    }
}

//! Triangle meshes of labels: the `surface` kernel's output turned into physical units, the
//! file formats clients read, and the meshes a labelmap serves and keeps current.

pub mod decimate;
pub mod format;

/// A closed triangle mesh in physical units. Triangles wind counter-clockwise seen from
/// outside (right-hand normals point out of the label).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mesh {
    pub vertices: Vec<[f32; 3]>,
    pub triangles: Vec<[u32; 3]>,
}

use rustc_hash::FxHashMap;

use crate::compute::LabelSurface;

impl Mesh {
    /// One kernel output in physical units, taking its triangles over: `origin` is its item's
    /// origin in voxels, `voxel` the size of one voxel of the meshed scale.
    pub fn from_piece(s: LabelSurface, origin: [i64; 3], voxel: [f64; 3]) -> Mesh {
        // Into the vertices' own allocation (same size and alignment): a job's meshes are
        // gigabytes, and fresh pages cost more than the arithmetic.
        let vertices = s
            .vertices
            .into_iter()
            .map(|v| {
                std::array::from_fn(|a| {
                    ((2 * origin[a] + v[a] as i64) as f64 * 0.5 * voxel[a]) as f32
                })
            })
            .collect();
        Mesh {
            vertices,
            triangles: s.triangles,
        }
    }
}

/// One label's surface joined from the pieces it was meshed in, in half-voxel units of global
/// voxel coordinates (voxel `i` spans `[i, i+1)`; `h = 2·x`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Surface {
    pub vertices: Vec<[i64; 3]>,
    pub triangles: Vec<[u32; 3]>,
}

impl Surface {
    /// One piece meshed with its item's origin at `origin` (voxels).
    pub fn from_piece(origin: [i64; 3], s: &LabelSurface) -> Surface {
        Surface {
            vertices: s
                .vertices
                .iter()
                .map(|v| std::array::from_fn(|a| 2 * origin[a] + v[a] as i64))
                .collect(),
            triangles: s.triangles.clone(),
        }
    }

    /// Joins pieces in the order given: a vertex on a seam between pieces is the same vertex
    /// in both, numbered at its first use, so the result depends only on the pieces' order.
    ///
    /// The pieces tile space in boxes of `size` cells, each meshed from its box of voxels plus
    /// a one-voxel rim on its high sides (`Cells::interior`), so only a vertex on a plane of
    /// voxel centres at a box's face can be shared; the others, most of them, are pushed with
    /// no lookup.
    pub fn join(size: [usize; 3], pieces: &[([i64; 3], &LabelSurface)]) -> Surface {
        // Allocated once: growing by doubling would copy a large body's 100 MB arrays again
        // and again. Shared vertices make the vertex count an upper bound (its tail of pages
        // is never touched).
        let (vertices, triangles) = pieces.iter().fold((0, 0), |(v, t), (_, s)| {
            (v + s.vertices.len(), t + s.triangles.len())
        });
        let mut out = Surface {
            vertices: Vec::with_capacity(vertices),
            triangles: Vec::with_capacity(triangles),
        };
        let mut seams: FxHashMap<[i64; 3], u32> = FxHashMap::default();
        let high = size.map(|n| 2 * n as u32 + 1);
        let mut ids = Vec::new();
        for &(origin, s) in pieces {
            ids.clear();
            ids.extend(s.vertices.iter().map(|v| {
                let h = std::array::from_fn(|a| 2 * origin[a] + v[a] as i64);
                let mut push = || {
                    out.vertices.push(h);
                    out.vertices.len() as u32 - 1
                };
                if (0..3).any(|a| v[a] == 1 || v[a] == high[a]) {
                    *seams.entry(h).or_insert_with(push)
                } else {
                    push()
                }
            }));
            out.triangles
                .extend(s.triangles.iter().map(|t| t.map(|i| ids[i as usize])));
        }
        out
    }

    /// In physical units, taking the triangles over.
    pub fn into_mesh(self, voxel: [f64; 3]) -> Mesh {
        Mesh {
            vertices: Self::physical(&self.vertices, voxel),
            triangles: self.triangles,
        }
    }

    fn physical(vertices: &[[i64; 3]], voxel: [f64; 3]) -> Vec<[f32; 3]> {
        vertices
            .iter()
            .map(|h| std::array::from_fn(|a| (h[a] as f64 * 0.5 * voxel[a]) as f32))
            .collect()
    }

    /// In physical units: `voxel` is the size of one voxel of the meshed scale.
    pub fn to_mesh(&self, voxel: [f64; 3]) -> Mesh {
        Mesh {
            vertices: Self::physical(&self.vertices, voxel),
            triangles: self.triangles.clone(),
        }
    }
}

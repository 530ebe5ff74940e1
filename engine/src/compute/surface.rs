//! What the `surface` kernel computes, shared by both backends: the cell box it meshes, the
//! marching-cubes case table, and the canonical assembly of triangles into indexed meshes.
//!
//! The surface of a label is marching cubes on its binary mask, with every vertex at the
//! midpoint of a lattice edge between two voxel centers. Coordinates are in half-voxel units
//! (`h = 2·x`, voxel `i` spans `[i, i+1)`, so a voxel center is odd), which makes every
//! vertex an integer and the output exact.
//!
//! Why this variant (docs/compute.md has the longer argument):
//! * **Closed and manifold by construction.** A face whose in-corners sit on a diagonal is cut
//!   so that they stay apart, always, so the two cells sharing a face draw the same segments
//!   there and every mesh edge lies in exactly two triangles. Polygons are triangulated
//!   without diagonals along a cell face, so no edge is ever shared across cells by accident.
//! * **No degenerate triangles.** The twelve edge midpoints of a cell lie on one sphere, so no
//!   three are collinear.
//! * **Outward orientation** is decided once per case from which side of each edge is inside.
//!
//! Canonical order, the same on every backend: strips of `STRIP` cell rows (y) one after
//! another, the cells of a strip in (z, y, x) order, each label's triangles of a cell in table
//! order, and each label's vertices in order of first use. (Strips keep the CPU sweep's slot
//! planes in cache; the device enumerates cells the same way.)

use std::collections::HashMap;
use std::sync::OnceLock;

/// Cell rows per strip of the canonical order (shaders/surface.wgsl has the same constant).
pub const STRIP: usize = 32;

/// One label's closed surface: vertices in half-voxel units of the item's voxel coordinates,
/// triangles counter-clockwise seen from outside (right-hand normals point out of the label).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSurface {
    pub label: u64,
    pub vertices: Vec<[u32; 3]>,
    pub triangles: Vec<[u32; 3]>,
}

/// The cells a `surface` call meshes, named by their minimum corner, in the item's voxel
/// coordinates (x, y, z); `lo` may be -1 and `hi` at most the item's size. Voxels outside the
/// item read as 0 (background), so `Cells::all` closes every label at the item's edges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cells {
    pub lo: [i32; 3],
    pub hi: [i32; 3],
}

impl Cells {
    /// Every cell that touches the item: the whole volume's closed surfaces.
    pub fn all(item: super::Shape) -> Cells {
        Cells {
            lo: [-1; 3],
            hi: [item.x as i32, item.y as i32, item.z as i32],
        }
    }

    /// The cells whose minimum corner lies in the item but not on its last plane of any axis:
    /// for items that carry a one-voxel halo on their high sides.
    pub fn interior(item: super::Shape) -> Cells {
        Cells {
            lo: [0; 3],
            hi: [item.x as i32 - 1, item.y as i32 - 1, item.z as i32 - 1],
        }
    }

    pub fn size(&self) -> [usize; 3] {
        std::array::from_fn(|a| (self.hi[a] - self.lo[a]).max(0) as usize)
    }

    pub fn count(&self) -> usize {
        self.size().iter().product()
    }

    pub(crate) fn check(&self, item: super::Shape) -> super::Result<()> {
        let dims = [item.x, item.y, item.z];
        for (a, &d) in dims.iter().enumerate() {
            if self.lo[a] < -1 || self.hi[a] > d as i32 || self.lo[a] > self.hi[a] {
                return Err(super::ComputeError::BadInput(format!(
                    "surface: cells {:?}..{:?} reach outside the item {item} and its one-voxel rim",
                    self.lo, self.hi
                )));
            }
        }
        // Half-voxel coordinates of the rim's far side must fit the device's 16-bit fields,
        // and a strip's record of its last row (four slots per x, z position) the CPU twin's
        // 31-bit references.
        let xz = (dims[0] + 2) * (dims[2] + 2);
        if dims.iter().any(|&d| d >= 1 << 15) || 4 * xz >= 1 << 31 {
            return Err(super::ComputeError::BadInput(format!(
                "surface: item {item} is too large (at most 32767 voxels along an axis, and \
                 fewer than 2^29 in an x-z plane)"
            )));
        }
        Ok(())
    }
}

/// Corner `c` of a cell is at offset (c & 1, c >> 1 & 1, c >> 2 & 1) from its minimum corner.
pub const fn corner(c: usize) -> [usize; 3] {
    [c & 1, (c >> 1) & 1, (c >> 2) & 1]
}

/// Edge `e` runs along axis `e / 4` from corner `EDGES[e][0]` to `EDGES[e][1]`.
pub const EDGES: [[usize; 2]; 12] = {
    let mut edges = [[0; 2]; 12];
    let mut e = 0;
    while e < 12 {
        let axis = e / 4;
        let k = e % 4;
        // The other two axes, in increasing order, take the bits of k.
        let (u, v) = match axis {
            0 => (1, 2),
            1 => (0, 2),
            _ => (0, 1),
        };
        let a = ((k & 1) << u) | ((k >> 1) << v);
        edges[e] = [a, a | (1 << axis)];
        e += 1;
    }
    edges
};

/// The half-voxel offset of edge `e`'s midpoint from the center of the cell's minimum corner.
pub fn edge_offset(e: usize) -> [u32; 3] {
    let [a, _] = EDGES[e];
    let c = corner(a);
    std::array::from_fn(|i| 2 * c[i] as u32 + u32::from(i == e / 4))
}

/// The marching-cubes cases: for each 8-bit mask of in-corners, its triangles as triples of
/// edge numbers.
pub struct Table {
    /// `start[m]..start[m + 1]` index `triangles` for mask `m`.
    pub start: [u16; 257],
    pub triangles: Vec<[u8; 3]>,
}

/// The table, built on first use.
pub fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(build_table)
}

fn build_table() -> Table {
    let mut start = [0u16; 257];
    let mut triangles = Vec::new();
    for (mask, s) in start.iter_mut().take(256).enumerate() {
        *s = triangles.len() as u16;
        for lp in loops(mask as u8) {
            triangles.extend(triangulate(&lp).into_iter().map(|t| t.map(|e| e as u8)));
        }
    }
    start[256] = triangles.len() as u16;
    Table { start, triangles }
}

fn inside(mask: u8, c: usize) -> bool {
    mask >> c & 1 == 1
}

fn crosses(mask: u8, e: usize) -> bool {
    inside(mask, EDGES[e][0]) != inside(mask, EDGES[e][1])
}

fn edge_between(a: usize, b: usize) -> usize {
    (0..12)
        .find(|&e| EDGES[e] == [a.min(b), a.max(b)])
        .expect("adjacent corners share an edge")
}

/// The six faces, each as its four corners in cyclic order.
fn faces() -> [[usize; 4]; 6] {
    let mut out = [[0; 4]; 6];
    for axis in 0..3 {
        let (u, v) = [(1, 2), (0, 2), (0, 1)][axis];
        for side in 0..2 {
            let base = side << axis;
            out[axis * 2 + side] = [base, base | 1 << u, base | 1 << u | 1 << v, base | 1 << v];
        }
    }
    out
}

/// The closed polygons of a case, each a cycle of crossed edges, oriented outward. On each
/// face the crossings are joined so that in-corners on a diagonal stay apart.
fn loops(mask: u8) -> Vec<Vec<usize>> {
    // Each crossed edge lies on two faces and gets one segment on each: two neighbours.
    let mut next: [Vec<usize>; 12] = Default::default();
    for f in faces() {
        let cut: Vec<usize> = (0..4)
            .map(|i| edge_between(f[i], f[(i + 1) % 4]))
            .filter(|&e| crosses(mask, e))
            .collect();
        match cut.len() {
            0 => {}
            2 => {
                next[cut[0]].push(cut[1]);
                next[cut[1]].push(cut[0]);
            }
            _ => {
                // Two in-corners on a diagonal: cut each off on its own.
                for i in 0..4 {
                    if inside(mask, f[i]) {
                        let a = edge_between(f[(i + 3) % 4], f[i]);
                        let b = edge_between(f[i], f[(i + 1) % 4]);
                        next[a].push(b);
                        next[b].push(a);
                    }
                }
            }
        }
    }
    let mut seen = [false; 12];
    let mut out = Vec::new();
    for first in 0..12 {
        if seen[first] || next[first].is_empty() {
            continue;
        }
        let mut lp = vec![first];
        seen[first] = true;
        let mut prev = first;
        let mut cur = next[first][0];
        while cur != first {
            lp.push(cur);
            seen[cur] = true;
            let n = &next[cur];
            let step = if n[0] == prev { n[1] } else { n[0] };
            prev = cur;
            cur = step;
        }
        if !faces_outward(mask, &lp) {
            lp.reverse();
        }
        out.push(lp);
    }
    out
}

fn position(e: usize) -> [f64; 3] {
    edge_offset(e).map(f64::from)
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

/// Whether the polygon's (Newell) normal points from the in-corners to the out-corners.
fn faces_outward(mask: u8, lp: &[usize]) -> bool {
    let mut normal = [0.0; 3];
    for i in 0..lp.len() {
        let c = cross(position(lp[i]), position(lp[(i + 1) % lp.len()]));
        normal = std::array::from_fn(|k| normal[k] + c[k]);
    }
    let outward: f64 = lp
        .iter()
        .map(|&e| {
            let dir = if inside(mask, EDGES[e][0]) { 1.0 } else { -1.0 };
            dir * normal[e / 4]
        })
        .sum();
    assert!(outward != 0.0, "case {mask:#010b}: a flat-on polygon");
    outward > 0.0
}

/// The faces (as indices into `faces()`) edge `e` lies on.
fn edge_faces(e: usize) -> [usize; 2] {
    let [a, b] = EDGES[e];
    let mut out = [0; 2];
    let mut n = 0;
    for (i, f) in faces().iter().enumerate() {
        if f.contains(&a) && f.contains(&b) {
            out[n] = i;
            n += 1;
        }
    }
    out
}

/// A diagonal between the midpoints of two edges on a common face would lie in that face,
/// where the neighbouring cell may draw the same segment.
fn diagonal_allowed(a: usize, b: usize) -> bool {
    let fa = edge_faces(a);
    edge_faces(b).iter().all(|f| !fa.contains(f))
}

/// Triangles of a polygon with no diagonal along a cell face: the first fan that qualifies,
/// else any triangulation (found by search; polygons have at most twelve corners).
fn triangulate(lp: &[usize]) -> Vec<[usize; 3]> {
    let n = lp.len();
    for s in 0..n {
        let fan_ok = (2..n - 1).all(|k| diagonal_allowed(lp[s], lp[(s + k) % n]));
        if fan_ok {
            return (1..n - 1)
                .map(|k| [lp[s], lp[(s + k) % n], lp[(s + k + 1) % n]])
                .collect();
        }
    }
    let mut out = Vec::new();
    assert!(search(lp, &mut out), "no face-free triangulation of {lp:?}");
    out
}

/// Ear-by-ear search: cut triangle (p0, pk, p_{n-1}) and recurse on both sides.
fn search(lp: &[usize], out: &mut Vec<[usize; 3]>) -> bool {
    let n = lp.len();
    if n < 3 {
        return true;
    }
    if n == 3 {
        out.push([lp[0], lp[1], lp[2]]);
        return true;
    }
    for k in 1..n - 1 {
        let left_ok = k == 1 || diagonal_allowed(lp[0], lp[k]);
        let right_ok = k == n - 2 || diagonal_allowed(lp[k], lp[n - 1]);
        if !(left_ok && right_ok) {
            continue;
        }
        let mark = out.len();
        out.push([lp[0], lp[k], lp[n - 1]]);
        if search(&lp[..=k], out) && search(&lp[k..], out) {
            return true;
        }
        out.truncate(mark);
    }
    false
}

/// One triangle as a kernel emits it, in canonical order: its label and its corners'
/// half-voxel coordinates.
pub type RawTriangle = (u64, [[u32; 3]; 3]);

/// Indexes triangles that arrive in canonical order into one mesh per label (ascending
/// label), each vertex numbered at its first use.
#[derive(Default)]
pub struct Assembler {
    by_label: HashMap<u64, (HashMap<[u32; 3], u32>, LabelSurface)>,
}

impl Assembler {
    pub fn push(&mut self, label: u64, corners: [[u32; 3]; 3]) {
        let (index, mesh) = self.by_label.entry(label).or_insert_with(|| {
            (
                HashMap::new(),
                LabelSurface {
                    label,
                    ..Default::default()
                },
            )
        });
        let tri = corners.map(|p| {
            *index.entry(p).or_insert_with(|| {
                mesh.vertices.push(p);
                mesh.vertices.len() as u32 - 1
            })
        });
        mesh.triangles.push(tri);
    }

    pub fn finish(self) -> Vec<LabelSurface> {
        let mut out: Vec<LabelSurface> = self.by_label.into_values().map(|(_, m)| m).collect();
        out.sort_unstable_by_key(|m| m.label);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
        std::array::from_fn(|i| a[i] - b[i])
    }

    fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
        (0..3).map(|i| a[i] * b[i]).sum()
    }

    #[test]
    fn edges_join_adjacent_corners_along_their_axis() {
        for (e, [a, b]) in EDGES.iter().enumerate() {
            assert_eq!(b - a, 1 << (e / 4), "edge {e}");
            assert_eq!(a & (1 << (e / 4)), 0);
        }
        assert_eq!(edge_offset(0), [1, 0, 0]);
        assert_eq!(edge_offset(11), [2, 2, 1]);
    }

    #[test]
    fn every_case_is_closed_oriented_and_uses_each_crossing_once() {
        let t = table();
        assert_eq!(t.start[0], t.start[1]);
        assert_eq!(t.start[256] as usize, t.triangles.len());
        for mask in 0..=255u8 {
            let tris =
                &t.triangles[t.start[mask as usize] as usize..t.start[mask as usize + 1] as usize];
            let used: std::collections::BTreeSet<u8> = tris.iter().flatten().copied().collect();
            let crossed: std::collections::BTreeSet<u8> =
                (0..12u8).filter(|&e| crosses(mask, e as usize)).collect();
            assert_eq!(used, crossed, "case {mask:#010b}");
            for tri in tris {
                // Each triangle's normal points from the in-side to the out-side of its edges.
                let p = tri.map(|e| position(e as usize));
                let n = cross(sub(p[1], p[0]), sub(p[2], p[0]));
                assert!(dot(n, n) > 0.0, "case {mask:#010b}: degenerate {tri:?}");
                let out: f64 = tri
                    .iter()
                    .map(|&e| {
                        let [a, _] = EDGES[e as usize];
                        let dir = if inside(mask, a) { 1.0 } else { -1.0 };
                        dir * n[e as usize / 4]
                    })
                    .sum();
                assert!(out > 0.0, "case {mask:#010b}: {tri:?} faces inward");
            }
        }
    }
}

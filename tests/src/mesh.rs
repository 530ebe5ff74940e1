//! Test-side mesh formats and checks for labelmap surface extraction (`GET mesh/<label>`,
//! `<seg>_meshes` keys, `tessera mesh`), written from the specification, independently of the
//! engine:
//!
//! * [`Mesh`] with [`decode_ngmesh`], [`decode_obj`], [`decode_ply`] ([`decode_as`] by format name)
//!   and the matching encoders (for the checkers' own tests and the Python reader check);
//! * structural checks: [`check_no_degenerate`], [`check_closed_manifold`], [`signed_volume`],
//!   [`components`];
//! * the voxel-side quantities: [`exposed_faces`], [`voxel_count`], [`label_voxels`];
//! * [`check_label_mesh`]: everything the spec says a label's mesh is, against the label's voxels
//!   (closed, edge-manifold, non-degenerate, every vertex the centre of an exposed voxel face and
//!   every exposed face one vertex, every closed sheet oriented outward from the label, and
//!   `|V − N| ≤ F/2` in voxel units);
//! * [`reference_mesh`]: a small marching-cubes reference for binary masks (the dual of the
//!   voxel boundary, vertices at exposed face centres) that the checks are tested on;
//! * [`canonical_triangles`]: an order-free form for comparing meshes across formats;
//! * [`trimesh_check`], [`assert_trimesh_agrees`]: the independent Python reader
//!   (`tests/python/check_mesh.py`, needs `bash scripts/pyenv.sh`).
//!
//! Positions are physical: voxel `i` along an axis spans `[i, i+1) · voxel` where `voxel` is
//! `VoxelSize · 2^scale` of that axis; the checks take the voxel coordinates of a [`Volume`] at
//! the mesh's scale and that per-axis physical size.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::labels::{Coord, Volume};

/// A triangle mesh as the formats carry it: float32 positions and u32 vertex indices.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Mesh {
    pub vertices: Vec<[f32; 3]>,
    pub triangles: Vec<[u32; 3]>,
}

// ------------------------------------------------------------------ decoders and encoders

fn check_indices(m: &Mesh) -> Result<(), String> {
    let n = m.vertices.len();
    for (t, tri) in m.triangles.iter().enumerate() {
        for &i in tri {
            if i as usize >= n {
                return Err(format!(
                    "triangle {t} {tri:?} uses vertex {i}, but there are only {n} vertices"
                ));
            }
        }
    }
    Ok(())
}

/// Neuroglancer legacy mesh: u32le vertex count, f32le xyz per vertex, u32le triangle indices
/// (3 per triangle) to the end.
pub fn decode_ngmesh(b: &[u8]) -> Result<Mesh, String> {
    if b.len() < 4 {
        return Err(format!("ngmesh of {} bytes has no vertex count", b.len()));
    }
    let n = u32::from_le_bytes(b[..4].try_into().expect("4")) as usize;
    let end = 4 + 12 * n;
    if b.len() < end {
        return Err(format!(
            "ngmesh says {n} vertices ({end} bytes with the count) but has {} bytes",
            b.len()
        ));
    }
    if !(b.len() - end).is_multiple_of(12) {
        return Err(format!(
            "ngmesh: {} bytes after the {n} vertices are not whole triangles (12 bytes each)",
            b.len() - end
        ));
    }
    let f = |at: usize| f32::from_le_bytes(b[at..at + 4].try_into().expect("4"));
    let u = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().expect("4"));
    let vertices = (0..n)
        .map(|i| [f(4 + 12 * i), f(8 + 12 * i), f(12 + 12 * i)])
        .collect();
    let triangles = (0..(b.len() - end) / 12)
        .map(|t| {
            let at = end + 12 * t;
            [u(at), u(at + 4), u(at + 8)]
        })
        .collect();
    let m = Mesh {
        vertices,
        triangles,
    };
    check_indices(&m).map_err(|e| format!("ngmesh: {e}"))?;
    Ok(m)
}

/// Wavefront OBJ with `v x y z` and `f a b c` lines (1-based indices; `a/t/n` forms are read
/// by their first field). Comments, blank lines and `o`/`g`/`s`/`vn`/`vt` lines are skipped;
/// faces must be triangles; any other statement is an error.
pub fn decode_obj(b: &[u8]) -> Result<Mesh, String> {
    let text = std::str::from_utf8(b).map_err(|e| format!("OBJ is not UTF-8: {e}"))?;
    let mut m = Mesh::default();
    for (no, line) in text.lines().enumerate() {
        let line = line.trim();
        let mut parts = line.split_whitespace();
        let Some(kind) = parts.next() else { continue };
        let rest: Vec<&str> = parts.collect();
        match kind {
            k if k.starts_with('#') => {}
            "o" | "g" | "s" | "vn" | "vt" => {}
            "v" => {
                if rest.len() != 3 {
                    return Err(format!("OBJ line {}: want `v x y z`: {line:?}", no + 1));
                }
                let mut p = [0f32; 3];
                for (a, s) in rest.iter().enumerate() {
                    p[a] = s
                        .parse()
                        .map_err(|e| format!("OBJ line {}: {s:?}: {e}", no + 1))?;
                }
                m.vertices.push(p);
            }
            "f" => {
                if rest.len() != 3 {
                    return Err(format!(
                        "OBJ line {}: faces must be triangles: {line:?}",
                        no + 1
                    ));
                }
                let mut t = [0u32; 3];
                for (a, s) in rest.iter().enumerate() {
                    let first = s.split('/').next().unwrap_or("");
                    let i: i64 = first
                        .parse()
                        .map_err(|e| format!("OBJ line {}: index {s:?}: {e}", no + 1))?;
                    if i < 1 {
                        return Err(format!(
                            "OBJ line {}: index {i} is not 1-based positive: {line:?}",
                            no + 1
                        ));
                    }
                    t[a] = u32::try_from(i - 1)
                        .map_err(|_| format!("OBJ line {}: index {i} too large", no + 1))?;
                }
                m.triangles.push(t);
            }
            other => {
                return Err(format!(
                    "OBJ line {}: unexpected statement {other:?}: {line:?}",
                    no + 1
                ));
            }
        }
    }
    check_indices(&m).map_err(|e| format!("OBJ: {e}"))?;
    Ok(m)
}

/// Binary little-endian PLY: `element vertex N` with `property float x|y|z` (in that order),
/// `element face M` with `property list uchar uint vertex_indices`, every face a triangle, and
/// nothing after the last face. `comment`/`obj_info` lines are allowed.
pub fn decode_ply(b: &[u8]) -> Result<Mesh, String> {
    const END: &[u8] = b"end_header\n";
    let hend = b
        .windows(END.len())
        .position(|w| w == END)
        .ok_or("PLY: no `end_header` line")?
        + END.len();
    let header =
        std::str::from_utf8(&b[..hend]).map_err(|e| format!("PLY header is not text: {e}"))?;
    let lines: Vec<&str> = header
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.starts_with("comment") && !l.starts_with("obj_info"))
        .collect();
    let want_start = ["ply", "format binary_little_endian 1.0"];
    if lines.len() < 2 || lines[..2] != want_start {
        return Err(format!(
            "PLY must start with {want_start:?}, header is {header:?}"
        ));
    }
    let mut nv = None;
    let mut nf = None;
    let mut i = 2;
    let count = |l: &str, elem: &str| -> Option<usize> {
        l.strip_prefix(&format!("element {elem} "))
            .and_then(|n| n.trim().parse().ok())
    };
    while i < lines.len() {
        let l = lines[i];
        if let Some(n) = count(l, "vertex") {
            if nv.is_some() || nf.is_some() {
                return Err(format!(
                    "PLY: vertex element repeated or after faces: {header:?}"
                ));
            }
            let props: Vec<&str> = lines[i + 1..].iter().take(3).copied().collect();
            let float = |p: &str, axis: &str| {
                p == format!("property float {axis}") || p == format!("property float32 {axis}")
            };
            if props.len() != 3
                || !float(props[0], "x")
                || !float(props[1], "y")
                || !float(props[2], "z")
            {
                return Err(format!(
                    "PLY: vertex element must have exactly `property float x|y|z`: {header:?}"
                ));
            }
            nv = Some(n);
            i += 4;
        } else if let Some(n) = count(l, "face") {
            if nv.is_none() || nf.is_some() {
                return Err(format!(
                    "PLY: face element before vertices or repeated: {header:?}"
                ));
            }
            let p = lines.get(i + 1).copied().unwrap_or("");
            let ok = [
                "property list uchar uint vertex_indices",
                "property list uint8 uint32 vertex_indices",
                "property list uchar uint32 vertex_indices",
                "property list uint8 uint vertex_indices",
            ]
            .contains(&p);
            if !ok {
                return Err(format!(
                    "PLY: face element must be `property list uchar uint vertex_indices`, got {p:?}"
                ));
            }
            nf = Some(n);
            i += 2;
        } else if l == "end_header" {
            i += 1;
            if i != lines.len() {
                return Err("PLY: lines after end_header".into());
            }
        } else {
            return Err(format!("PLY: unexpected header line {l:?} in {header:?}"));
        }
    }
    let (nv, nf) = match (nv, nf) {
        (Some(v), Some(f)) => (v, f),
        _ => return Err(format!("PLY: need vertex and face elements: {header:?}")),
    };
    let body = &b[hend..];
    let want = 12 * nv + 13 * nf;
    if body.len() != want {
        return Err(format!(
            "PLY: {nv} vertices and {nf} triangles need {want} data bytes, got {}",
            body.len()
        ));
    }
    let f = |at: usize| f32::from_le_bytes(body[at..at + 4].try_into().expect("4"));
    let u = |at: usize| u32::from_le_bytes(body[at..at + 4].try_into().expect("4"));
    let vertices = (0..nv)
        .map(|i| [f(12 * i), f(12 * i + 4), f(12 * i + 8)])
        .collect();
    let mut triangles = Vec::with_capacity(nf);
    for t in 0..nf {
        let at = 12 * nv + 13 * t;
        if body[at] != 3 {
            return Err(format!("PLY: face {t} has {} vertices, want 3", body[at]));
        }
        triangles.push([u(at + 1), u(at + 5), u(at + 9)]);
    }
    let m = Mesh {
        vertices,
        triangles,
    };
    check_indices(&m).map_err(|e| format!("PLY: {e}"))?;
    Ok(m)
}

/// Decodes by format name: `ngmesh`, `obj` or `ply`.
pub fn decode_as(format: &str, b: &[u8]) -> Result<Mesh, String> {
    match format {
        "ngmesh" => decode_ngmesh(b),
        "obj" => decode_obj(b),
        "ply" => decode_ply(b),
        other => Err(format!("unknown mesh format {other:?}")),
    }
}

pub fn encode_ngmesh(m: &Mesh) -> Vec<u8> {
    let mut out = (m.vertices.len() as u32).to_le_bytes().to_vec();
    for v in &m.vertices {
        for c in v {
            out.extend_from_slice(&c.to_le_bytes());
        }
    }
    for t in &m.triangles {
        for i in t {
            out.extend_from_slice(&i.to_le_bytes());
        }
    }
    out
}

pub fn encode_obj(m: &Mesh) -> Vec<u8> {
    let mut s = String::from("# test mesh\n");
    for v in &m.vertices {
        writeln!(s, "v {} {} {}", v[0], v[1], v[2]).expect("write");
    }
    for t in &m.triangles {
        writeln!(s, "f {} {} {}", t[0] + 1, t[1] + 1, t[2] + 1).expect("write");
    }
    s.into_bytes()
}

pub fn encode_ply(m: &Mesh) -> Vec<u8> {
    let mut out = format!(
        "ply\nformat binary_little_endian 1.0\nelement vertex {}\nproperty float x\n\
         property float y\nproperty float z\nelement face {}\n\
         property list uchar uint vertex_indices\nend_header\n",
        m.vertices.len(),
        m.triangles.len()
    )
    .into_bytes();
    for v in &m.vertices {
        for c in v {
            out.extend_from_slice(&c.to_le_bytes());
        }
    }
    for t in &m.triangles {
        out.push(3);
        for i in t {
            out.extend_from_slice(&i.to_le_bytes());
        }
    }
    out
}

/// Encodes by format name: `ngmesh`, `obj` or `ply`.
pub fn encode_as(format: &str, m: &Mesh) -> Vec<u8> {
    match format {
        "ngmesh" => encode_ngmesh(m),
        "obj" => encode_obj(m),
        "ply" => encode_ply(m),
        other => panic!("unknown mesh format {other:?}"),
    }
}

// ------------------------------------------------------------------ structural checks

fn pos(m: &Mesh, i: u32) -> [f64; 3] {
    let v = m.vertices[i as usize];
    [f64::from(v[0]), f64::from(v[1]), f64::from(v[2])]
}

fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

/// No triangle repeats a vertex index or has zero area.
pub fn check_no_degenerate(m: &Mesh) -> Result<(), String> {
    check_indices(m)?;
    for (t, &[a, b, c]) in m.triangles.iter().enumerate() {
        if a == b || b == c || a == c {
            return Err(format!("triangle {t} [{a}, {b}, {c}] repeats a vertex"));
        }
        let n = cross(sub(pos(m, b), pos(m, a)), sub(pos(m, c), pos(m, a)));
        if dot(n, n) == 0.0 {
            return Err(format!(
                "triangle {t} [{a}, {b}, {c}] has zero area: {:?} {:?} {:?}",
                m.vertices[a as usize], m.vertices[b as usize], m.vertices[c as usize]
            ));
        }
    }
    Ok(())
}

/// Closed and edge-manifold with consistent winding: every directed edge `a→b` of a triangle
/// occurs exactly once, and its reverse `b→a` exactly once too (so every undirected edge is in
/// exactly two triangles, wound oppositely). Also rejects a triangle given twice in any order.
pub fn check_closed_manifold(m: &Mesh) -> Result<(), String> {
    check_indices(m)?;
    let mut directed: HashMap<(u32, u32), usize> = HashMap::new();
    let mut seen: HashMap<[u32; 3], usize> = HashMap::new();
    for (t, &tri) in m.triangles.iter().enumerate() {
        let mut key = tri;
        key.sort_unstable();
        if let Some(prev) = seen.insert(key, t) {
            return Err(format!(
                "triangles {prev} and {t} use the same vertices {tri:?}"
            ));
        }
        for k in 0..3 {
            let e = (tri[k], tri[(k + 1) % 3]);
            if let Some(prev) = directed.insert(e, t) {
                return Err(format!(
                    "directed edge {}→{} is in triangles {prev} and {t} (inconsistent winding \
                     or an edge in more than two triangles)",
                    e.0, e.1
                ));
            }
        }
    }
    for (&(a, b), &t) in &directed {
        if !directed.contains_key(&(b, a)) {
            let undirected = m
                .triangles
                .iter()
                .filter(|tri| tri.contains(&a) && tri.contains(&b))
                .count();
            return Err(format!(
                "edge {a}–{b} of triangle {t} {:?} is in {undirected} triangle(s) without its \
                 reverse {b}→{a}: the surface is open there or wound inconsistently \
                 (positions {:?} {:?})",
                m.triangles[t], m.vertices[a as usize], m.vertices[b as usize]
            ));
        }
    }
    Ok(())
}

/// Signed enclosed volume (divergence theorem): positive when triangles wind counter-clockwise
/// seen from outside. Physical units.
pub fn signed_volume(m: &Mesh) -> f64 {
    triangles_volume(m, 0..m.triangles.len())
}

fn triangles_volume(m: &Mesh, ts: impl IntoIterator<Item = usize>) -> f64 {
    ts.into_iter()
        .map(|t| {
            let [a, b, c] = m.triangles[t];
            dot(pos(m, a), cross(pos(m, b), pos(m, c))) / 6.0
        })
        .sum()
}

/// Edge-connected components: lists of triangle indices (sharing an edge joins two triangles).
pub fn components(m: &Mesh) -> Vec<Vec<usize>> {
    let n = m.triangles.len();
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(p: &mut [usize], mut i: usize) -> usize {
        while p[i] != i {
            p[i] = p[p[i]];
            i = p[i];
        }
        i
    }
    let mut first: HashMap<(u32, u32), usize> = HashMap::new();
    for (t, tri) in m.triangles.iter().enumerate() {
        for k in 0..3 {
            let (a, b) = (tri[k], tri[(k + 1) % 3]);
            let e = (a.min(b), a.max(b));
            match first.get(&e) {
                Some(&o) => {
                    let (ra, rb) = (find(&mut parent, o), find(&mut parent, t));
                    parent[ra] = rb;
                }
                None => {
                    first.insert(e, t);
                }
            }
        }
    }
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for t in 0..n {
        let r = find(&mut parent, t);
        groups.entry(r).or_default().push(t);
    }
    groups.into_values().collect()
}

// ------------------------------------------------------------------ the voxel side

const DIRS: [Coord; 6] = [
    [1, 0, 0],
    [-1, 0, 0],
    [0, 1, 0],
    [0, -1, 0],
    [0, 0, 1],
    [0, 0, -1],
];

fn add(p: Coord, d: Coord) -> Coord {
    [p[0] + d[0], p[1] + d[1], p[2] + d[2]]
}

/// The voxels of `label` in `vol` (absolute coordinates, storage order).
pub fn label_voxels(vol: &Volume, label: u64) -> Vec<Coord> {
    vol.voxels()
        .filter(|&(_, l)| l == label)
        .map(|(p, _)| p)
        .collect()
}

/// Every non-zero label's voxels, in one pass.
pub fn voxels_by_label(vol: &Volume) -> BTreeMap<u64, Vec<Coord>> {
    let mut m: BTreeMap<u64, Vec<Coord>> = BTreeMap::new();
    for (p, l) in vol.voxels() {
        if l != 0 {
            m.entry(l).or_default().push(p);
        }
    }
    m
}

/// Voxels of `label` in `vol`.
pub fn voxel_count(vol: &Volume, label: u64) -> u64 {
    vol.data.iter().filter(|&&l| l == label).count() as u64
}

/// Faces between a voxel of `label` and a voxel not of `label`; outside `vol` counts as not
/// `label` (a label touching the volume's edge is closed there).
pub fn exposed_faces(vol: &Volume, label: u64) -> u64 {
    exposed_faces_of(vol, label, &label_voxels(vol, label))
}

fn exposed_faces_of(vol: &Volume, label: u64, voxels: &[Coord]) -> u64 {
    voxels
        .iter()
        .map(|&p| {
            DIRS.iter()
                .filter(|&&d| vol.get(add(p, d)) != label)
                .count() as u64
        })
        .sum()
}

/// What a label mesh check measured.
#[derive(Debug, Clone, PartialEq)]
pub struct MeshReport {
    /// Voxels of the label.
    pub voxels: u64,
    /// Exposed voxel faces of the label.
    pub faces: u64,
    /// Enclosed volume in voxel units.
    pub volume: f64,
    pub vertices: usize,
    pub triangles: usize,
    /// Edge-connected closed sheets (outer surfaces and cavity linings).
    pub components: usize,
}

/// An exposed face: the axis it is perpendicular to and the voxel on its upper side
/// (`[x, y, z]` with the face at plane `axis = upper[axis]`).
type FaceKey = (usize, Coord);

/// Maps a vertex position (voxel units, already divided by the voxel size) to the exposed face
/// whose centre it must be: exactly one coordinate an integer (the face plane), the other two
/// half-integers (voxel centres).
fn face_of(u: [f64; 3]) -> Result<FaceKey, String> {
    let mut twice = [0i64; 3];
    for a in 0..3 {
        let t = 2.0 * u[a];
        let r = t.round();
        if (t - r).abs() > 1e-3 {
            return Err(format!(
                "coordinate {a} is {} voxels, not a multiple of half a voxel",
                u[a]
            ));
        }
        twice[a] = r as i64;
    }
    let even: Vec<usize> = (0..3).filter(|&a| twice[a].rem_euclid(2) == 0).collect();
    if even.len() != 1 {
        return Err(format!(
            "at {u:?} voxels: a vertex between two voxel centres has exactly one coordinate on a \
             voxel boundary (integer) and two at voxel centres (+0.5); this one has {}",
            even.len()
        ));
    }
    let axis = even[0];
    // an even doubled coordinate is a plane, an odd one the centre of voxel (t - 1) / 2
    let upper = [0, 1, 2].map(|a| {
        if a == axis {
            (twice[a] / 2) as i32
        } else {
            ((twice[a] - 1) / 2) as i32
        }
    });
    Ok((axis, upper))
}

fn lower_of((axis, upper): FaceKey) -> Coord {
    let mut l = upper;
    l[axis] -= 1;
    l
}

/// Checks `mesh` as the mesh of `label` in `vol` (the volume at the mesh's scale, absolute voxel
/// coordinates of that scale; outside `vol` is not the label), with `voxel` the physical size of
/// one voxel per axis (`VoxelSize · 2^scale`):
///
/// 1. no degenerate triangle; closed and edge-manifold with consistent winding;
/// 2. every vertex is the centre of a distinct exposed face of the label (the midpoint between
///    a label voxel's centre and a non-label voxel's centre), and every exposed face has one;
/// 3. every closed sheet winds outward from the label: a sheet's signed volume is positive iff
///    it bounds label voxels from outside (decided by ray parity along x from one of its
///    x-faces); overall volume > 0;
/// 4. in voxel units `|V − N| ≤ F/2` (N voxels, F exposed faces).
pub fn check_label_mesh(
    mesh: &Mesh,
    vol: &Volume,
    label: u64,
    voxel: [f64; 3],
) -> Result<MeshReport, String> {
    check_label_mesh_voxels(mesh, vol, label, &label_voxels(vol, label), voxel)
}

/// [`check_label_mesh`] with the label's voxels given (see [`voxels_by_label`]).
pub fn check_label_mesh_voxels(
    mesh: &Mesh,
    vol: &Volume,
    label: u64,
    voxels: &[Coord],
    voxel: [f64; 3],
) -> Result<MeshReport, String> {
    let n = voxels.len() as u64;
    if n == 0 {
        return Err(format!(
            "label {label} has no voxels in the reference volume"
        ));
    }
    if mesh.triangles.is_empty() {
        return Err(format!(
            "the mesh of label {label} ({n} voxels) has no triangles"
        ));
    }
    check_no_degenerate(mesh)?;
    check_closed_manifold(mesh)?;
    let mut used = vec![false; mesh.vertices.len()];
    for t in &mesh.triangles {
        for &i in t {
            used[i as usize] = true;
        }
    }
    if let Some(i) = used.iter().position(|u| !u) {
        return Err(format!(
            "vertex {i} at {:?} is in no triangle ({} of {} vertices unused)",
            mesh.vertices[i],
            used.iter().filter(|u| !**u).count(),
            used.len()
        ));
    }
    let inside = |p: Coord| vol.get(p) == label;

    // 2. vertices ↔ exposed faces
    let mut faces: HashMap<FaceKey, u32> = HashMap::with_capacity(mesh.vertices.len());
    let mut keys = Vec::with_capacity(mesh.vertices.len());
    for (i, v) in mesh.vertices.iter().enumerate() {
        let u = [
            f64::from(v[0]) / voxel[0],
            f64::from(v[1]) / voxel[1],
            f64::from(v[2]) / voxel[2],
        ];
        let key = face_of(u).map_err(|e| format!("vertex {i} at {v:?}: {e}"))?;
        let (a_in, b_in) = (inside(lower_of(key)), inside(key.1));
        if a_in == b_in {
            return Err(format!(
                "vertex {i} at {v:?} (voxel units {u:?}) lies between voxels {:?} and {:?}, \
                 which are {} of label {label}: not on the label's surface",
                lower_of(key),
                key.1,
                if a_in { "both" } else { "neither" }
            ));
        }
        if let Some(j) = faces.insert(key, i as u32) {
            return Err(format!(
                "vertices {j} and {i} are both at {v:?}: one exposed face, two vertices"
            ));
        }
        keys.push(key);
    }
    let f = exposed_faces_of(vol, label, voxels);
    if faces.len() as u64 != f {
        // find one exposed face without a vertex for the message
        let mut missing = None;
        'outer: for &p in voxels {
            for (axis, d) in DIRS.iter().enumerate() {
                let q = add(p, *d);
                if inside(q) {
                    continue;
                }
                let key = if axis % 2 == 0 {
                    (axis / 2, q)
                } else {
                    (axis / 2, p)
                };
                if !faces.contains_key(&key) {
                    missing = Some((p, *d));
                    break 'outer;
                }
            }
        }
        return Err(format!(
            "label {label} has {f} exposed voxel faces but the mesh has {} vertices on them; \
             e.g. no vertex on the face of voxel {:?} towards {:?}",
            faces.len(),
            missing.map(|m| m.0),
            missing.map(|m| m.1)
        ));
    }

    // 3. orientation per sheet
    let comps = components(mesh);
    let cell = voxel[0] * voxel[1] * voxel[2];
    // x-face vertices per (y, z) line: sorted plane positions
    let mut lines: HashMap<(i32, i32), Vec<i32>> = HashMap::new();
    for k in &keys {
        if k.0 == 0 {
            lines.entry((k.1[1], k.1[2])).or_default().push(k.1[0]);
        }
    }
    for (ci, comp) in comps.iter().enumerate() {
        let vol_c = triangles_volume(mesh, comp.iter().copied()) / cell;
        let verts: BTreeSet<u32> = comp.iter().flat_map(|&t| mesh.triangles[t]).collect();
        let Some(&vx) = verts.iter().find(|&&v| keys[v as usize].0 == 0) else {
            return Err(format!(
                "sheet {ci} ({} triangles) has no vertex on an x-face: a closed surface around \
                 voxels always has one",
                comp.len()
            ));
        };
        let key = keys[vx as usize];
        // crossings of this sheet left of the vertex along its (y, z) line
        let left = lines[&(key.1[1], key.1[2])]
            .iter()
            .filter(|&&x| x < key.1[0])
            .filter(|&&x| verts.contains(&faces[&(0, [x, key.1[1], key.1[2]])]))
            .count();
        let left_enclosed = left % 2 == 1;
        let label_left = inside(lower_of(key));
        // the sheet bounds the label from outside iff the label side is the enclosed side
        let outer = label_left == left_enclosed;
        if outer != (vol_c > 0.0) {
            return Err(format!(
                "sheet {ci} ({} triangles) is wound the wrong way: its signed volume is \
                 {vol_c:.3} voxels, but at its vertex {vx} {:?} the label is on the {} side, so \
                 it must be {}",
                comp.len(),
                mesh.vertices[vx as usize],
                if label_left { "-x" } else { "+x" },
                if outer {
                    "positive (an outer surface)"
                } else {
                    "negative (a cavity lining)"
                }
            ));
        }
    }
    let v = signed_volume(mesh) / cell;
    if v <= 0.0 {
        return Err(format!(
            "signed volume {v} voxels is not positive: triangles must wind counter-clockwise \
             seen from outside"
        ));
    }
    if (v - n as f64).abs() > f as f64 / 2.0 {
        return Err(format!(
            "enclosed volume {v:.3} voxels is too far from the {n} voxels of label {label}: \
             |V − N| = {:.3} > F/2 = {} (F = {f} exposed faces)",
            (v - n as f64).abs(),
            f as f64 / 2.0
        ));
    }
    Ok(MeshReport {
        voxels: n,
        faces: f,
        volume: v,
        vertices: mesh.vertices.len(),
        triangles: mesh.triangles.len(),
        components: comps.len(),
    })
}

/// [`check_label_mesh`] that panics with `what` and the failure.
#[track_caller]
pub fn assert_label_mesh(
    what: &str,
    mesh: &Mesh,
    vol: &Volume,
    label: u64,
    voxel: [f64; 3],
) -> MeshReport {
    check_label_mesh(mesh, vol, label, voxel)
        .unwrap_or_else(|e| panic!("{what}: mesh of label {label} is wrong: {e}"))
}

/// An order-free form of a mesh for comparing encodings of one surface: each triangle as its
/// three positions in half-`quantum` units, rotated to start at the smallest (winding kept),
/// sorted.
pub fn canonical_triangles(m: &Mesh, quantum: [f64; 3]) -> Vec<[[i64; 3]; 3]> {
    let q = |i: u32| {
        let v = m.vertices[i as usize];
        [0, 1, 2].map(|a| (2.0 * f64::from(v[a]) / quantum[a]).round() as i64)
    };
    let mut out: Vec<[[i64; 3]; 3]> = m
        .triangles
        .iter()
        .map(|t| {
            let p = [q(t[0]), q(t[1]), q(t[2])];
            let k = (0..3).min_by_key(|&k| p[k]).expect("3");
            [p[k], p[(k + 1) % 3], p[(k + 2) % 3]]
        })
        .collect();
    out.sort_unstable();
    out
}

// ------------------------------------------------------------------ the reference mesher

/// Marching cubes on the binary mask of `label` with vertices at the midpoints between voxel
/// centres (the exposed face centres), built as the dual of the voxel boundary: around every
/// voxel corner, the exposed faces meeting there form cycles (faces linked across the edges they
/// share; where four exposed faces meet at an edge, the faces of the same label voxel are
/// linked, keeping diagonal voxels apart), each cycle one polygon wound counter-clockwise seen
/// from outside, fan-triangulated. Positions are voxel coordinates times `voxel`.
pub fn reference_mesh(vol: &Volume, label: u64, voxel: [f64; 3]) -> Mesh {
    let inside = |p: Coord| vol.get(p) == label;
    let mut corners: BTreeSet<Coord> = BTreeSet::new();
    for p in label_voxels(vol, label) {
        for d in 0..8 {
            corners.insert([p[0] + (d & 1), p[1] + ((d >> 1) & 1), p[2] + ((d >> 2) & 1)]);
        }
    }
    let mut index: HashMap<FaceKey, u32> = HashMap::new();
    let mut mesh = Mesh::default();
    let mut vertex = |key: FaceKey, mesh: &mut Mesh| -> u32 {
        *index.entry(key).or_insert_with(|| {
            let (axis, up) = key;
            let mut p = [0f32; 3];
            for a in 0..3 {
                let u = if a == axis {
                    f64::from(up[a])
                } else {
                    f64::from(up[a]) + 0.5
                };
                p[a] = (u * voxel[a]) as f32;
            }
            mesh.vertices.push(p);
            (mesh.vertices.len() - 1) as u32
        })
    };
    for c in corners {
        // the 8 voxels around corner c: d in {0,1}^3 → voxel c + d - 1
        let vox = |d: [i32; 3]| [c[0] + d[0] - 1, c[1] + d[1] - 1, c[2] + d[2] - 1];
        // incident faces: (axis a, offsets of the other two axes) → key, exposed?
        // a face is identified locally by (a, d) with d[a] = 0 (the lower voxel's offset).
        let mut exposed: Vec<([i32; 3], usize)> = Vec::new(); // (lower offset, axis)
        for a in 0..3 {
            for q in 0..4 {
                let (b, e) = ((a + 1) % 3, (a + 2) % 3);
                let mut d = [0; 3];
                d[b] = q & 1;
                d[e] = q >> 1;
                let mut d2 = d;
                d2[a] = 1;
                if inside(vox(d)) != inside(vox(d2)) {
                    exposed.push((d, a));
                }
            }
        }
        if exposed.is_empty() {
            continue;
        }
        let local = |d: [i32; 3], a: usize| exposed.iter().position(|&f| f == (d, a));
        // links across the six half-edges from c: segment along axis s on side t
        let mut links: Vec<Vec<usize>> = vec![Vec::new(); exposed.len()];
        for s in 0..3 {
            for t in 0..2 {
                let (u, w) = ((s + 1) % 3, (s + 2) % 3);
                // the 4 voxels around the segment, in cyclic order
                let ring: [[i32; 3]; 4] = [[0, 0], [1, 0], [1, 1], [0, 1]].map(|[du, dw]| {
                    let mut d = [0; 3];
                    d[s] = t;
                    d[u] = du;
                    d[w] = dw;
                    d
                });
                // face between ring[k] and ring[k+1]
                let face_between = |k: usize| {
                    let (p, q) = (ring[k], ring[(k + 1) % 4]);
                    let a = (0..3).find(|&a| p[a] != q[a]).expect("differ");
                    let mut lo = p;
                    lo[a] = 0;
                    (lo, a)
                };
                let ex: Vec<usize> = (0..4)
                    .filter(|&k| inside(vox(ring[k])) != inside(vox(ring[(k + 1) % 4])))
                    .collect();
                let mut pair = |k1: usize, k2: usize| {
                    let (d1, a1) = face_between(k1);
                    let (d2, a2) = face_between(k2);
                    let i = local(d1, a1).expect("exposed");
                    let j = local(d2, a2).expect("exposed");
                    links[i].push(j);
                    links[j].push(i);
                };
                match ex.len() {
                    0 => {}
                    2 => pair(ex[0], ex[1]),
                    4 => {
                        // pair the two faces of each label voxel on the ring
                        for (k, &d) in ring.iter().enumerate() {
                            if inside(vox(d)) {
                                pair((k + 3) % 4, k);
                            }
                        }
                    }
                    n => unreachable!("{n} exposed faces around an edge"),
                }
            }
        }
        assert!(
            links.iter().all(|l| l.len() == 2),
            "reference: corner {c:?} has a face without two links"
        );
        // walk the cycles
        let mut used = vec![false; exposed.len()];
        for start in 0..exposed.len() {
            if used[start] {
                continue;
            }
            let mut cycle = vec![start];
            used[start] = true;
            let mut prev = start;
            let mut cur = links[start][0];
            while cur != start {
                used[cur] = true;
                cycle.push(cur);
                let next = if links[cur][0] == prev {
                    links[cur][1]
                } else {
                    links[cur][0]
                };
                prev = cur;
                cur = next;
            }
            let keys: Vec<FaceKey> = cycle
                .iter()
                .map(|&i| {
                    let (d, a) = exposed[i];
                    let mut up = vox(d);
                    up[a] += 1;
                    (a, up)
                })
                .collect();
            // outward normal sum vs. the polygon's (Newell) normal
            let mut want = [0f64; 3];
            for &(a, up) in &keys {
                let mut lo = up;
                lo[a] -= 1;
                want[a] += if inside(lo) { 1.0 } else { -1.0 };
            }
            let ids: Vec<u32> = keys.iter().map(|&k| vertex(k, &mut mesh)).collect();
            let mut newell = [0f64; 3];
            for k in 0..ids.len() {
                let p = pos(&mesh, ids[k]);
                let q = pos(&mesh, ids[(k + 1) % ids.len()]);
                newell = [
                    newell[0] + (p[1] - q[1]) * (p[2] + q[2]),
                    newell[1] + (p[2] - q[2]) * (p[0] + q[0]),
                    newell[2] + (p[0] - q[0]) * (p[1] + q[1]),
                ];
            }
            let mut ids = ids;
            assert!(
                dot(newell, want) != 0.0,
                "reference: flat polygon at corner {c:?}"
            );
            if dot(newell, want) < 0.0 {
                ids.reverse();
            }
            for k in 1..ids.len() - 1 {
                mesh.triangles.push([ids[0], ids[k], ids[k + 1]]);
            }
        }
    }
    mesh
}

// ------------------------------------------------------------------ fixtures and requests

/// The voxel size of [`mesh_settings`]: anisotropic, so that a swapped axis shows.
pub const VOXEL_SIZE: [f64; 3] = [4.0, 6.0, 40.0];

/// [`standard_settings`](crate::labels::standard_settings) (64³ blocks, indexed) with
/// `VoxelSize` "4,6,40" ([`VOXEL_SIZE`]) and `MaxDownresLevel` = `max_downres`.
pub fn mesh_settings(max_downres: u32) -> Value {
    let mut s = crate::labels::standard_settings(max_downres);
    s["VoxelSize"] = Value::String("4,6,40".into());
    s
}

/// Physical size of one voxel at `scale`: `voxel_size · 2^scale`.
pub fn at_scale(voxel_size: [f64; 3], scale: u32) -> [f64; 3] {
    voxel_size.map(|v| v * f64::from(1u32 << scale))
}

fn in_box(p: Coord, lo: Coord, hi: Coord) -> bool {
    (0..3).all(|a| p[a] >= lo[a] && p[a] < hi[a])
}

fn d2(p: Coord, c: Coord) -> i32 {
    (0..3).map(|a| (p[a] - c[a]) * (p[a] - c[a])).sum()
}

/// A 128³ volume (2×2×2 blocks of 64³) of shapes for meshing:
/// * 1: a hollow ball (radius 22, cavity radius 9) centred on the block corner (64,64,64), so it
///   straddles the x, y and z block faces; 2: a ball of radius 4 inside the cavity (no contact);
/// * 3: a solid ball of radius 10 at (64,64,110) (x and y faces); 4: the box
///   [60,70)×[10,20)×[58,70) (x and z faces);
/// * 5: a 1-voxel line along x at y = z = 5, from x = 0 to 127 (both volume edges);
/// * 6: a 1-voxel sheet at y = 63 (next to the y block face), x < 40, z ≥ 90 (x and z edges);
/// * 7, 8, 9: boxes touching only along an edge (7–8) or at a corner (8–9); 7 on the z = 0
///   edge, 9 on the x and y edges;
/// * 10: 24 voxels in a body-diagonal staircase (corner contacts only); 11: 20 voxels in an
///   edge-diagonal staircase (edge contacts only);
/// * 12, 13, 14: seeded per-voxel noise (~60 % fill) in [40,90)×[96,128)×[40,90) (x, z faces,
///   the y = 127 edge; cavities, thin parts and diagonal contacts of every kind);
/// * 15: a torus (genus 1) around the z axis at (100,30,30), radii 12 and 4;
/// * 4294967301 (> 2^32): the box [0,8)×[0,8)×[120,128) in a corner of the volume.
pub fn mesh_fixture() -> Volume {
    Volume::from_fn([0; 3], [128; 3], |x, y, z| {
        let p = [x, y, z];
        let r2 = d2(p, [64, 64, 64]);
        if r2 < 4 * 4 {
            return 2;
        }
        if (9 * 9..22 * 22).contains(&r2) {
            return 1;
        }
        if d2(p, [64, 64, 110]) < 10 * 10 {
            return 3;
        }
        if in_box(p, [60, 10, 58], [70, 20, 70]) {
            return 4;
        }
        if y == 5 && z == 5 {
            return 5;
        }
        if y == 63 && x < 40 && z >= 90 {
            return 6;
        }
        if in_box(p, [100, 100, 0], [110, 110, 10]) {
            return 7;
        }
        if in_box(p, [110, 110, 0], [120, 120, 10]) {
            return 8;
        }
        if in_box(p, [120, 120, 10], [128, 128, 20]) {
            return 9;
        }
        if (0..24).any(|i| p == [2 + i, 90 + i, 30 + i]) {
            return 10;
        }
        if (0..20).any(|i| p == [20 + i, 100 + i, 70]) {
            return 11;
        }
        if in_box(p, [40, 96, 40], [90, 128, 90]) {
            return [0, 12, 13, 14, 12, 0, 13, 14]
                [(crate::labels::hash3(x, y, z, 42) % 8) as usize];
        }
        let (dx, dy) = (f64::from(x - 100), f64::from(y - 30));
        let ring = (dx * dx + dy * dy).sqrt() - 12.0;
        if ring * ring + f64::from((z - 30) * (z - 30)) < 16.0 {
            return 15;
        }
        if in_box(p, [0, 0, 120], [8, 8, 128]) {
            return 4_294_967_301;
        }
        0
    })
}

/// A 192×128×128 volume (3×2×2 blocks) of labels that run through many blocks:
/// * 20: an 8-voxel-thick tube along x (y, z in [36,44)) through x = 64 and 128, turning at
///   x ≈ 175 along y through y = 64, then along z through z = 64;
/// * 21: a 1-voxel line along x at y = 63, z = 64 from x = 0 to 191, between blocks in y and z;
/// * 22: the 2×2 column x in [127,129), y in [63,65) through every z (x face at 128, y face at
///   64, z face at 64, both z edges);
/// * 23: a 1-voxel-thick plane z = 64 over x in [70, 180), y in [80, 128) (y = 127 edge).
pub fn block_crossing_fixture() -> Volume {
    Volume::from_fn([0; 3], [192, 128, 128], |x, y, z| {
        let p = [x, y, z];
        if in_box(p, [10, 36, 36], [180, 44, 44])
            || in_box(p, [170, 36, 36], [180, 100, 44])
            || in_box(p, [170, 90, 5], [180, 100, 125])
        {
            20
        } else if y == 63 && z == 64 {
            21
        } else if in_box(p, [127, 63, 0], [129, 65, 128]) {
            22
        } else if z == 64 && in_box(p, [70, 80, 0], [180, 128, 128]) {
            23
        } else {
            0
        }
    })
}

/// The format a mesh query asks for (`format=`; default ngmesh).
pub fn format_of(query: &str) -> &str {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("format="))
        .unwrap_or("ngmesh")
}

/// The content type the spec gives each format.
pub fn content_type(format: &str) -> &'static str {
    match format {
        "obj" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

impl crate::labels::Seg<'_> {
    /// `GET mesh/<label>[?query]`.
    pub fn mesh(&self, label: impl std::fmt::Display, query: &str) -> crate::Response {
        self.get(&crate::labels::with_query(&format!("mesh/{label}"), query))
    }

    /// A mesh request that must succeed: checks the status and the content type of the
    /// requested format, decodes the body; returns (bytes, mesh).
    #[track_caller]
    pub fn mesh_ok(&self, label: u64, query: &str) -> (Vec<u8>, Mesh) {
        let r = self.mesh(label, query).expect(200);
        let format = format_of(query);
        let ct = r.header("content-type").unwrap_or_default();
        assert_eq!(
            ct.to_ascii_lowercase().replace("; ", ";"),
            content_type(format).replace("; ", ";"),
            "{}: content type of {format}",
            r.what
        );
        let m = decode_as(format, &r.body).unwrap_or_else(|e| panic!("{}: {e}", r.what));
        (r.body, m)
    }

    /// [`Seg::mesh_ok`] and [`check_label_mesh_voxels`] of the result against `vol` (the
    /// volume at the requested scale, mapped or supervoxel as requested); `voxel` is the
    /// physical voxel size at that scale.
    #[track_caller]
    pub fn mesh_checked(
        &self,
        label: u64,
        query: &str,
        vol: &Volume,
        voxels: &[Coord],
        voxel: [f64; 3],
    ) -> (Vec<u8>, Mesh, MeshReport) {
        let (bytes, m) = self.mesh_ok(label, query);
        let r = check_label_mesh_voxels(&m, vol, label, voxels, voxel).unwrap_or_else(|e| {
            panic!(
                "GET {}: the mesh of {label} is wrong: {e}",
                self.path(&crate::labels::with_query(&format!("mesh/{label}"), query))
            )
        });
        (bytes, m, r)
    }
}

// ------------------------------------------------------------------ the command line

/// Writes a version-1.0 .npy file of a C-order array of shape `(z, y, x)` = `shape_zyx` with
/// dtype `descr` (`<u8`, `<u4`, `|u1`, `<f4`, …) and raw little-endian `data`.
pub fn write_npy(path: &Path, descr: &str, shape_zyx: [usize; 3], data: &[u8]) {
    let mut header = format!(
        "{{'descr': '{descr}', 'fortran_order': False, 'shape': ({}, {}, {}), }}",
        shape_zyx[0], shape_zyx[1], shape_zyx[2]
    );
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    std::fs::write(path, out).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// Writes `vol` (origin ignored: array index = voxel coordinate) as a (z, y, x) .npy of
/// `dtype` `u8`, `u32` or `u64`; panics when a label does not fit.
pub fn write_volume_npy(path: &Path, vol: &Volume, dtype: &str) {
    let mut data = Vec::with_capacity(vol.len() * 8);
    let descr = match dtype {
        "u8" => "|u1",
        "u32" => "<u4",
        "u64" => "<u8",
        other => panic!("no dtype {other}"),
    };
    for &l in &vol.data {
        match dtype {
            "u8" => data.push(u8::try_from(l).expect("label fits u8")),
            "u32" => data.extend_from_slice(&u32::try_from(l).expect("fits u32").to_le_bytes()),
            _ => data.extend_from_slice(&l.to_le_bytes()),
        }
    }
    write_npy(path, descr, [vol.size[2], vol.size[1], vol.size[0]], &data);
}

/// Runs the `tessera` binary with these arguments and extra environment variables.
pub fn run_tessera(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(crate::binary_path());
    cmd.args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("running tessera")
}

/// The mesh files `tessera mesh` wrote into `dir`: label → bytes, for files named
/// `<label>.<format>`; panics on any other entry.
#[track_caller]
pub fn mesh_files(dir: &Path, format: &str) -> BTreeMap<u64, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let e = e.expect("dir entry");
        let name = e.file_name().to_string_lossy().into_owned();
        let label: u64 = name
            .strip_suffix(&format!(".{format}"))
            .and_then(|l| l.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "{}: unexpected file {name:?} (want <label>.{format})",
                    dir.display()
                )
            });
        out.insert(label, std::fs::read(e.path()).expect("read mesh file"));
    }
    out
}

// ------------------------------------------------------------------ the Python reader

/// The interpreter for the Python checks: `$TESSERA_PYTHON`, else
/// `~/.cache/tessera/pyenv/bin/python` (made by `bash scripts/pyenv.sh`).
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("TESSERA_PYTHON") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").expect("HOME is not set (or set TESSERA_PYTHON)");
    PathBuf::from(home).join(".cache/tessera/pyenv/bin/python")
}

/// What `check_mesh.py` reported for one file.
#[derive(Debug, Clone, PartialEq)]
pub struct TrimeshReport {
    pub file: String,
    pub vertices: u64,
    pub faces: u64,
    pub watertight: bool,
    pub winding_consistent: bool,
    pub volume: f64,
}

/// Runs `tests/python/check_mesh.py` (trimesh) on the files (format from the extension:
/// `.obj`, `.ply`, else ngmesh). Panics — never skips — when the interpreter or trimesh is
/// missing, or when a file cannot be read.
#[track_caller]
pub fn trimesh_check(paths: &[PathBuf]) -> Vec<TrimeshReport> {
    let py = python();
    assert!(
        py.is_file(),
        "the mesh checks need Python with numpy and trimesh, but {} does not exist. Create it \
         with `bash scripts/pyenv.sh` (or point TESSERA_PYTHON at such an interpreter).",
        py.display()
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/check_mesh.py");
    let out = Command::new(&py)
        .arg(&script)
        .args(paths)
        .output()
        .unwrap_or_else(|e| panic!("running {} {}: {e}", py.display(), script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("ModuleNotFoundError") {
        panic!(
            "{} lacks numpy or trimesh; run `bash scripts/pyenv.sh`:\n{stderr}",
            py.display()
        );
    }
    assert!(
        out.status.success(),
        "check_mesh.py failed ({}):\n{stdout}{stderr}",
        out.status
    );
    let reports: Vec<TrimeshReport> = stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("check_mesh.py printed a non-JSON line {l:?}: {e}"));
            TrimeshReport {
                file: v["file"].as_str().unwrap_or_default().to_string(),
                vertices: v["vertices"].as_u64().expect("vertices"),
                faces: v["faces"].as_u64().expect("faces"),
                watertight: v["watertight"].as_bool().expect("watertight"),
                winding_consistent: v["winding_consistent"]
                    .as_bool()
                    .expect("winding_consistent"),
                volume: v["volume"].as_f64().expect("volume"),
            }
        })
        .collect();
    assert_eq!(
        reports.len(),
        paths.len(),
        "check_mesh.py reported {} files for {} paths:\n{stdout}{stderr}",
        reports.len(),
        paths.len()
    );
    reports
}

/// Writes each `(file name, bytes, decoded mesh)` into `dir`, runs trimesh on all of them at
/// once and asserts each loads watertight and winding-consistent, with the decoded triangle
/// count and a volume equal to [`signed_volume`] of the decoded mesh (relative 1e-6).
#[track_caller]
pub fn assert_trimesh_agrees(dir: &Path, files: &[(String, Vec<u8>, Mesh)]) {
    let paths: Vec<PathBuf> = files
        .iter()
        .map(|(name, bytes, _)| {
            let p = dir.join(name);
            std::fs::write(&p, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", p.display()));
            p
        })
        .collect();
    let reports = trimesh_check(&paths);
    for ((name, _, mesh), r) in files.iter().zip(&reports) {
        assert!(
            r.watertight && r.winding_consistent,
            "trimesh reads {name} as watertight={} winding_consistent={}: {r:?}",
            r.watertight,
            r.winding_consistent
        );
        assert_eq!(
            r.faces,
            mesh.triangles.len() as u64,
            "trimesh reads {name} with another triangle count"
        );
        let want = signed_volume(mesh);
        assert!(
            (r.volume - want).abs() <= 1e-6 * want.abs().max(1.0),
            "trimesh volume of {name} is {}, the decoded mesh encloses {want}",
            r.volume
        );
    }
}

// ------------------------------------------------------------------ kept meshes

/// Waits (up to `wait_s` seconds) for the server's sync subscribers to have applied every
/// acknowledged write (`GET /api/server/sync?wait=`); Err with the status when they have not.
pub fn sync_caught_up(srv: &crate::Server, wait_s: u32) -> Result<(), String> {
    let r = srv.get(&format!("/api/server/sync?wait={wait_s}"));
    if r.status != 200 {
        return Err(format!("{}: status {}: {}", r.what, r.status, r.text()));
    }
    let v = r.json();
    if v["CaughtUp"] == Value::Bool(true) {
        Ok(())
    } else {
        Err(format!(
            "sync subscribers not caught up after {wait_s} s: {v}"
        ))
    }
}

/// For a labelmap kept with `"KeepMeshes": "true"`, once caught up: `<name>_meshes` holds for
/// a `.ngmesh` key for exactly the bodies of `all`, and for each body of `compared` exactly the
/// bytes of `GET mesh/<body>?format=ngmesh` at `seg`'s version. Returns what differs.
pub fn kept_mesh_diffs(
    seg: &crate::labels::Seg,
    all: &BTreeSet<u64>,
    compared: &BTreeSet<u64>,
) -> Vec<String> {
    let inst = format!("{}_meshes", seg.name);
    let mut out = Vec::new();
    let r = seg.srv.get(&format!("/api/node/{}/{inst}/keys", seg.uuid));
    if r.status != 200 {
        return vec![format!("{}: status {}", r.what, r.status)];
    }
    let keys: Vec<String> = serde_json::from_value(r.json()).unwrap_or_default();
    let got: BTreeSet<String> = keys
        .into_iter()
        .filter(|k| k.ends_with(".ngmesh"))
        .collect();
    let want: BTreeSet<String> = all.iter().map(|b| format!("{b}.ngmesh")).collect();
    if got != want {
        out.push(format!(
            "{inst} at {}: missing {:?}, unexpected {:?}",
            seg.uuid,
            want.difference(&got).take(10).collect::<Vec<_>>(),
            got.difference(&want).take(10).collect::<Vec<_>>()
        ));
    }
    for b in compared {
        let fresh = seg.mesh(b, "format=ngmesh");
        if fresh.status != 200 {
            out.push(format!("{}: status {}", fresh.what, fresh.status));
            continue;
        }
        let kept = seg
            .srv
            .get(&format!("/api/node/{}/{inst}/key/{b}.ngmesh", seg.uuid));
        if kept.status == 200 && kept.body != fresh.body {
            out.push(format!(
                "{inst}/{b}.ngmesh at {} holds {} bytes that are not GET mesh/{b} ({} bytes)",
                seg.uuid,
                kept.body.len(),
                fresh.body.len()
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The octahedron of one voxel at `p` (voxel size 1): vertices at the 6 face centres.
    fn octahedron(p: Coord) -> Mesh {
        let c = [p[0] as f32 + 0.5, p[1] as f32 + 0.5, p[2] as f32 + 0.5];
        let mut vertices = Vec::new();
        for a in 0..3 {
            for s in [-0.5f32, 0.5] {
                let mut v = c;
                v[a] += s;
                vertices.push(v);
            }
        }
        // vertices: 0 -x, 1 +x, 2 -y, 3 +y, 4 -z, 5 +z
        let mut triangles = Vec::new();
        for x in [0u32, 1] {
            for y in [2u32, 3] {
                for z in [4u32, 5] {
                    // (x, y, z) is counter-clockwise from outside when the octant's sign
                    // parity is even
                    let neg = (x == 0) as u32 + (y == 2) as u32 + (z == 4) as u32;
                    if neg.is_multiple_of(2) {
                        triangles.push([x, y, z]);
                    } else {
                        triangles.push([x, z, y]);
                    }
                }
            }
        }
        Mesh {
            vertices,
            triangles,
        }
    }

    fn single(p: Coord) -> Volume {
        let mut v = Volume::zeros([4, 4, 4]);
        v.set(p, 1);
        v
    }

    /// A solid box of `label` `[lo, hi)` in a volume of size `size`.
    fn boxed(size: [usize; 3], boxes: &[(u64, Coord, Coord)]) -> Volume {
        Volume::from_fn([0; 3], size, |x, y, z| {
            let mut l = 0;
            for &(label, lo, hi) in boxes {
                if (lo[0]..hi[0]).contains(&x)
                    && (lo[1]..hi[1]).contains(&y)
                    && (lo[2]..hi[2]).contains(&z)
                {
                    l = label;
                }
            }
            l
        })
    }

    const ONE: [f64; 3] = [1.0; 3];

    /// Drops unused vertices, renumbering the rest.
    fn compact(m: &Mesh) -> Mesh {
        let mut map: HashMap<u32, u32> = HashMap::new();
        let mut out = Mesh::default();
        for t in &m.triangles {
            let t2 = t.map(|i| {
                *map.entry(i).or_insert_with(|| {
                    out.vertices.push(m.vertices[i as usize]);
                    (out.vertices.len() - 1) as u32
                })
            });
            out.triangles.push(t2);
        }
        out
    }

    #[test]
    fn octahedron_is_the_single_voxel_mesh() {
        let m = octahedron([1, 2, 1]);
        let vol = single([1, 2, 1]);
        let r = check_label_mesh(&m, &vol, 1, ONE).unwrap();
        assert_eq!((r.voxels, r.faces, r.vertices, r.triangles), (1, 6, 6, 8));
        assert!((r.volume - 1.0 / 6.0).abs() < 1e-9, "{}", r.volume);
        assert_eq!(exposed_faces(&vol, 1), 6);
        assert_eq!(voxel_count(&vol, 1), 1);
        // the reference mesher makes the same surface
        let reference = reference_mesh(&vol, 1, ONE);
        assert_eq!(
            canonical_triangles(&reference, ONE),
            canonical_triangles(&m, ONE)
        );
    }

    #[test]
    fn formats_roundtrip() {
        let m = reference_mesh(
            &boxed([6, 6, 6], &[(3, [1, 1, 1], [4, 5, 3])]),
            3,
            [4.0, 6.0, 40.0],
        );
        for f in ["ngmesh", "obj", "ply"] {
            assert_eq!(decode_as(f, &encode_as(f, &m)).unwrap(), m, "{f}");
        }
        let ng = encode_ngmesh(&m);
        assert_eq!(&ng[..4], &(m.vertices.len() as u32).to_le_bytes());
        assert_eq!(ng.len(), 4 + 12 * m.vertices.len() + 12 * m.triangles.len());
        assert!(decode_as("stl", &ng).is_err());
    }

    #[test]
    fn decoders_reject_malformed_input() {
        let m = octahedron([0, 0, 0]);
        let ng = encode_ngmesh(&m);
        assert!(decode_ngmesh(&ng[..3]).is_err(), "no count");
        assert!(
            decode_ngmesh(&ng[..ng.len() - 4]).is_err(),
            "partial triangle"
        );
        assert!(
            decode_ngmesh(&ng[..4 + 12 * 5]).is_err(),
            "truncated vertices"
        );
        let mut bad = ng.clone();
        let at = 4 + 12 * 6;
        bad[at..at + 4].copy_from_slice(&6u32.to_le_bytes());
        assert!(decode_ngmesh(&bad).unwrap_err().contains("only 6 vertices"));

        assert!(
            decode_obj(b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 0 1 2\n").is_err(),
            "0-based"
        );
        assert!(
            decode_obj(b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 4\n").is_err(),
            "range"
        );
        assert!(decode_obj(b"v 0 0 0\nv 1 0 0\nv 0 1 0\nv 1 1 0\nf 1 2 3 4\n").is_err());
        assert!(decode_obj(b"v 0 0\n").is_err());
        assert!(decode_obj(b"usemtl x\n").is_err());
        let ok = decode_obj(b"# c\no a\nv 0 0 0\nv 1 0 0\nv 0 1 0\n\nf 1//1 2//1 3//1\n").unwrap();
        assert_eq!(ok.triangles, vec![[0, 1, 2]]);

        let ply = encode_ply(&m);
        assert!(decode_ply(&ply[..ply.len() - 1]).is_err(), "short");
        let mut long = ply.clone();
        long.push(0);
        assert!(decode_ply(&long).is_err(), "trailing byte");
        let ascii = String::from_utf8_lossy(&ply).replace("binary_little_endian", "ascii");
        assert!(decode_ply(ascii.as_bytes()).is_err());
        let dbl = String::from_utf8_lossy(&ply).replace("property float x", "property double x");
        assert!(decode_ply(dbl.as_bytes()).is_err());
        let mut quad = ply.clone();
        let hend = quad.windows(11).position(|w| w == b"end_header\n").unwrap() + 11;
        quad[hend + 12 * 6] = 4;
        assert!(decode_ply(&quad).unwrap_err().contains("4 vertices"));
    }

    #[test]
    fn checkers_fail_on_broken_meshes() {
        let vol = boxed([5, 5, 5], &[(1, [1, 1, 1], [4, 3, 4])]);
        let good = reference_mesh(&vol, 1, ONE);
        let r = check_label_mesh(&good, &vol, 1, ONE).unwrap();
        assert_eq!((r.voxels, r.faces, r.components), (18, 42, 1));
        assert!(r.volume > 0.0 && (r.volume - 18.0).abs() <= 21.0);
        assert_eq!(r.vertices, 42, "one vertex per exposed face");

        // one flipped triangle
        let mut m = good.clone();
        m.triangles[3].swap(1, 2);
        let e = check_closed_manifold(&m).unwrap_err();
        assert!(e.contains("directed edge") || e.contains("reverse"), "{e}");
        assert!(check_label_mesh(&m, &vol, 1, ONE).is_err());

        // one missing triangle
        let mut m = good.clone();
        m.triangles.remove(5);
        assert!(
            check_closed_manifold(&m)
                .unwrap_err()
                .contains("without its reverse")
        );

        // one duplicated triangle (same winding, then rotated, then reversed)
        let mut m = good.clone();
        m.triangles.push(good.triangles[7]);
        assert!(check_closed_manifold(&m).is_err());
        let mut m = good.clone();
        let [a, b, c] = good.triangles[7];
        m.triangles.push([b, c, a]);
        assert!(
            check_closed_manifold(&m)
                .unwrap_err()
                .contains("same vertices")
        );
        let mut m = good.clone();
        m.triangles.push([a, c, b]);
        assert!(check_closed_manifold(&m).is_err());

        // every triangle flipped: still a closed manifold, but inside out
        let mut m = good.clone();
        for t in &mut m.triangles {
            t.swap(1, 2);
        }
        check_closed_manifold(&m).unwrap();
        assert!(signed_volume(&m) < 0.0);
        let e = check_label_mesh(&m, &vol, 1, ONE).unwrap_err();
        assert!(e.contains("wound"), "{e}");

        // degenerate triangles
        let mut m = good.clone();
        m.triangles[0][1] = m.triangles[0][0];
        assert!(check_no_degenerate(&m).unwrap_err().contains("repeats"));
        let mut m = octahedron([0, 0, 0]);
        m.vertices[5] = [0.75, 0.75, 0.5]; // on the segment from +x (1) to +y (3)
        assert!(check_no_degenerate(&m).unwrap_err().contains("zero area"));

        // a vertex moved off its face centre, onto a voxel centre, or to a non-label face
        let mut m = good.clone();
        m.vertices[0][0] += 0.25;
        assert!(
            check_label_mesh(&m, &vol, 1, ONE)
                .unwrap_err()
                .contains("half a voxel")
        );
        let mut m = good.clone();
        m.vertices[0] = [1.5, 1.5, 1.5];
        assert!(check_label_mesh(&m, &vol, 1, ONE).is_err());
        let mut m = good.clone();
        let i = m.vertices.iter().position(|v| v[0] == 1.0).unwrap();
        m.vertices[i][0] = 2.0; // between two label voxels
        assert!(
            check_label_mesh(&m, &vol, 1, ONE)
                .unwrap_err()
                .contains("both")
        );

        // wrong voxel size (axis order) or wrong label voxels
        let e = check_label_mesh(&good, &vol, 1, [1.0, 2.0, 1.0]).unwrap_err();
        assert!(e.contains("vertex"), "{e}");
        let mut other = vol.clone();
        other.set([3, 2, 3], 0);
        assert!(check_label_mesh(&good, &other, 1, ONE).is_err());
        let mut bigger = vol.clone();
        bigger.set([0, 0, 0], 1);
        let e = check_label_mesh(&good, &bigger, 1, ONE).unwrap_err();
        assert!(e.contains("exposed voxel faces"), "{e}");

        // a triangle soup (no shared vertices) is not closed
        let mut soup = Mesh::default();
        for t in &good.triangles {
            let base = soup.vertices.len() as u32;
            for &i in t {
                soup.vertices.push(good.vertices[i as usize]);
            }
            soup.triangles.push([base, base + 1, base + 2]);
        }
        assert!(check_closed_manifold(&soup).is_err());

        // per-block meshes closed at a block face: closed and manifold, but seamed
        let two = boxed([4, 2, 2], &[(1, [0, 0, 0], [4, 2, 2])]);
        let halves = [
            boxed([4, 2, 2], &[(1, [0, 0, 0], [2, 2, 2])]),
            boxed([4, 2, 2], &[(1, [2, 0, 0], [4, 2, 2])]),
        ];
        let mut seamed = Mesh::default();
        for h in &halves {
            let part = reference_mesh(h, 1, ONE);
            let base = seamed.vertices.len() as u32;
            seamed.vertices.extend(&part.vertices);
            seamed
                .triangles
                .extend(part.triangles.iter().map(|t| t.map(|i| i + base)));
        }
        check_closed_manifold(&seamed).unwrap();
        let e = check_label_mesh(&seamed, &two, 1, ONE).unwrap_err();
        assert!(e.contains("both"), "{e}");
        assert_eq!(
            check_label_mesh(&reference_mesh(&two, 1, ONE), &two, 1, ONE)
                .unwrap()
                .components,
            1
        );
    }

    #[test]
    fn cavities_and_separate_pieces_are_oriented_per_sheet() {
        // a 7³ shell with a 3³ cavity holding another label's voxel, plus a separate box
        let vol = boxed(
            [12, 9, 9],
            &[
                (1, [1, 1, 1], [8, 8, 8]),
                (0, [3, 3, 3], [6, 6, 6]),
                (2, [4, 4, 4], [5, 5, 5]),
                (1, [9, 2, 2], [11, 4, 5]),
            ],
        );
        let m = reference_mesh(&vol, 1, ONE);
        let r = check_label_mesh(&m, &vol, 1, ONE).unwrap();
        assert_eq!(
            r.components, 3,
            "outer surface, cavity lining, separate box"
        );
        assert_eq!(r.voxels, 343 - 27 + 12);
        // flipping only the cavity lining keeps a positive total but is wrong
        let comps = components(&m);
        let cavity = comps
            .iter()
            .find(|c| triangles_volume(&m, c.iter().copied()) < 0.0)
            .expect("the cavity lining has negative volume");
        let mut flipped = m.clone();
        for &t in cavity {
            flipped.triangles[t].swap(1, 2);
        }
        check_closed_manifold(&flipped).unwrap();
        assert!(signed_volume(&flipped) > 0.0);
        let e = check_label_mesh(&flipped, &vol, 1, ONE).unwrap_err();
        assert!(e.contains("cavity"), "{e}");
        // flipping the separate box only
        let small = comps.iter().min_by_key(|c| c.len()).expect("components");
        let mut flipped = m.clone();
        for &t in small {
            flipped.triangles[t].swap(1, 2);
        }
        assert!(signed_volume(&flipped) > 0.0);
        assert!(check_label_mesh(&flipped, &vol, 1, ONE).is_err());
        // a missing component (the separate box dropped)
        let keep: Vec<[u32; 3]> = m
            .triangles
            .iter()
            .enumerate()
            .filter(|(t, _)| !small.contains(t))
            .map(|(_, t)| *t)
            .collect();
        let dropped = Mesh {
            vertices: m.vertices.clone(),
            triangles: keep,
        };
        let e = check_label_mesh(&dropped, &vol, 1, ONE).unwrap_err();
        assert!(e.contains("in no triangle"), "{e}");
        // ... and with its vertices dropped too
        let e = check_label_mesh(&compact(&dropped), &vol, 1, ONE).unwrap_err();
        assert!(e.contains("exposed voxel faces"), "{e}");
        // the enclosed label in the cavity
        let r2 = check_label_mesh(&reference_mesh(&vol, 2, ONE), &vol, 2, ONE).unwrap();
        assert_eq!((r2.voxels, r2.faces, r2.components), (1, 6, 1));
    }

    #[test]
    fn reference_meshes_of_random_volumes_pass_the_checks() {
        // noise with diagonal-only contacts, thin structures, labels at every edge of the volume
        for seed in 0..6u64 {
            let size = [9 + seed as usize, 8, 7];
            let vol = crate::labels::noise_fixture(size, seed, &[0, 0, 1, 2, 2, 3]);
            let by = voxels_by_label(&vol);
            for (&label, voxels) in &by {
                let scale = [2.0, 3.0, 5.0];
                let m = reference_mesh(&vol, label, scale);
                let r = check_label_mesh_voxels(&m, &vol, label, voxels, scale)
                    .unwrap_or_else(|e| panic!("seed {seed} label {label}: {e}"));
                assert_eq!(r.voxels, voxel_count(&vol, label));
                assert_eq!(r.faces, exposed_faces(&vol, label));
                assert_eq!(r.vertices as u64, r.faces);
            }
        }
    }

    #[test]
    fn exposed_faces_count_the_volume_edge() {
        let vol = Volume::filled([3, 2, 1], 5);
        assert_eq!(exposed_faces(&vol, 5), 2 * (6 + 3 + 2));
        assert_eq!(voxel_count(&vol, 5), 6);
        let vol = boxed(
            [3, 3, 3],
            &[(1, [0, 0, 0], [3, 3, 3]), (2, [1, 1, 1], [2, 2, 2])],
        );
        assert_eq!(exposed_faces(&vol, 1), 54 + 6);
        assert_eq!(exposed_faces(&vol, 2), 6);
        // diagonal neighbours do not hide faces
        let mut vol = Volume::zeros([2, 2, 2]);
        vol.set([0, 0, 0], 1);
        vol.set([1, 1, 0], 1);
        vol.set([1, 1, 1], 2);
        assert_eq!(exposed_faces(&vol, 1), 12);
        assert_eq!(exposed_faces(&vol, 2), 6);
    }

    #[test]
    fn face_lookup_handles_negative_coordinates() {
        assert_eq!(face_of([-1.0, -0.5, 0.5]).unwrap(), (0, [-1, -1, 0]));
        assert_eq!(face_of([2.5, 3.0, -2.5]).unwrap(), (1, [2, 3, -3]));
        assert!(face_of([0.5, 0.5, 0.5]).is_err());
        assert!(face_of([1.0, 1.0, 0.5]).is_err());
        // a negative-origin volume
        let mut vol = Volume::zeros([3, 3, 3]);
        vol.origin = [-2, -1, -3];
        vol.set([-1, 0, -2], 4);
        let m = reference_mesh(&vol, 4, ONE);
        check_label_mesh(&m, &vol, 4, ONE).unwrap();
    }

    #[test]
    fn canonical_form_ignores_order_not_winding() {
        let m = octahedron([0, 0, 0]);
        let mut p = m.clone();
        p.triangles.reverse();
        for t in &mut p.triangles {
            t.rotate_left(1);
        }
        assert_eq!(canonical_triangles(&p, ONE), canonical_triangles(&m, ONE));
        // renumbered vertices
        let mut q = Mesh {
            vertices: m.vertices.iter().rev().copied().collect(),
            triangles: m.triangles.iter().map(|t| t.map(|i| 5 - i)).collect(),
        };
        assert_eq!(canonical_triangles(&q, ONE), canonical_triangles(&m, ONE));
        q.triangles[0].swap(1, 2);
        assert_ne!(canonical_triangles(&q, ONE), canonical_triangles(&m, ONE));
    }

    #[test]
    fn fixtures_are_as_documented_and_mesh_with_the_reference() {
        let vol = mesh_fixture();
        let by = voxels_by_label(&vol);
        let want: Vec<u64> = (1..=15).chain([4_294_967_301]).collect();
        assert_eq!(by.keys().copied().collect::<Vec<_>>(), want);
        assert_eq!(by[&10].len(), 24);
        assert_eq!(by[&11].len(), 20);
        assert_eq!(by[&5].len(), 128);
        let mut sheets = BTreeMap::new();
        for (&l, voxels) in by.iter().filter(|(l, _)| !(12..=14).contains(*l)) {
            let m = reference_mesh(&vol, l, VOXEL_SIZE);
            let r = check_label_mesh_voxels(&m, &vol, l, voxels, VOXEL_SIZE)
                .unwrap_or_else(|e| panic!("label {l}: {e}"));
            sheets.insert(l, r.components);
        }
        for (l, n) in [
            (1, 2),
            (2, 1),
            (3, 1),
            (4, 1),
            (5, 1),
            (6, 1),
            (7, 1),
            (15, 1),
        ] {
            assert_eq!(sheets[&l], n, "sheets of label {l}");
        }
        assert_eq!(
            sheets[&10], 24,
            "corner contacts keep voxels apart in the reference"
        );
        // blocks: label 1 in all 8, the tube and the line in many
        assert_eq!(
            vol.block_counts([64; 3])[&1].len(),
            8,
            "label 1 straddles every block face"
        );
        let b = block_crossing_fixture();
        let by = voxels_by_label(&b);
        assert_eq!(by.keys().copied().collect::<Vec<_>>(), vec![20, 21, 22, 23]);
        let bc = b.block_counts([64; 3]);
        assert_eq!(bc[&20].len(), 5, "{:?}", bc[&20]);
        assert_eq!(
            bc[&21].len(),
            3,
            "a line along x, next to the y and z block faces"
        );
        assert_eq!(bc[&22].len(), 8);
        for (&l, voxels) in &by {
            let m = reference_mesh(&b, l, [1.0; 3]);
            let r = check_label_mesh_voxels(&m, &b, l, voxels, [1.0; 3])
                .unwrap_or_else(|e| panic!("label {l}: {e}"));
            assert_eq!(r.components, 1, "label {l} is one surface");
        }
    }
}

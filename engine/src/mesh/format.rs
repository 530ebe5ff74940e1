//! Mesh file encoders: the bytes that viewers and analysis tools read for a [`Mesh`].
//!
//! * [`encode`] writes one file per mesh in a [`Format`] (ngmesh, OBJ, PLY).
//! * [`precomputed_legacy_files`] / [`precomputed_legacy_info`] write neuroglancer's
//!   "precomputed" legacy single-resolution mesh layout.
//! * [`precomputed_multires`] / [`precomputed_multires_info`] write neuroglancer's
//!   "precomputed" multi-resolution layout (`neuroglancer_multilod_draco`), including a small
//!   Draco encoder for the fragments.
//!
//! Everything here is pure (no I/O) and no input makes it panic: NaN vertices, triangle indices
//! past the vertex list, empty meshes and nonsensical grid parameters all produce some
//! well-formed output (documented per function) instead.

use std::collections::HashMap;
use std::fmt::{self, Write as _};
use std::str::FromStr;

use super::Mesh;

/// A single-file mesh encoding, chosen by the client (e.g. a `?format=` query parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// neuroglancer's legacy single-resolution mesh binary: `u32le` vertex count, `f32le`
    /// x,y,z per vertex, then `u32le` vertex indices, three per triangle, to the end of the
    /// file. Read by neuroglancer's DVID data source and by dvidtools, which fetch
    /// `<seg>_meshes/key/<id>.ngmesh`; it is also the precomputed legacy fragment layout.
    Ngmesh,
    /// Wavefront OBJ text (`v x y z`, then 1-based `f a b c`). Read by practically every 3D
    /// tool: Blender, MeshLab, trimesh, navis, ParaView.
    Obj,
    /// Stanford PLY, `binary_little_endian 1.0`, float x/y/z vertices and
    /// `list uchar uint vertex_indices` faces. Read by MeshLab, trimesh, Open3D, VTK/ParaView.
    Ply,
}

impl Format {
    /// The file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Ngmesh => "ngmesh",
            Format::Obj => "obj",
            Format::Ply => "ply",
        }
    }

    /// The HTTP `Content-Type` to serve the encoded bytes with.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Ngmesh | Format::Ply => "application/octet-stream",
            Format::Obj => "text/plain; charset=utf-8",
        }
    }
}

impl FromStr for Format {
    type Err = String;

    /// Parses `ngmesh`, `obj` or `ply`, ignoring ASCII case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Format::Ngmesh, Format::Obj, Format::Ply]
            .into_iter()
            .find(|f| f.extension().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!(
                    "unknown mesh format {s:?}; accepted formats are \"ngmesh\", \"obj\", \"ply\""
                )
            })
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.extension())
    }
}

/// Encodes `mesh` as one file in `format`. Triangle indices are written as given, even if they
/// point past the vertex list; counts past `u32::MAX` (which these formats cannot express) are
/// written as `u32::MAX`.
pub fn encode(mesh: &Mesh, format: Format) -> Vec<u8> {
    match format {
        Format::Ngmesh => ngmesh_bytes(mesh),
        Format::Obj => obj_bytes(mesh),
        Format::Ply => ply_bytes(mesh),
    }
}

fn count_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_f32(out: &mut Vec<u8>, v: f32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn ngmesh_bytes(mesh: &Mesh) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 12 * (mesh.vertices.len() + mesh.triangles.len()));
    put_u32(&mut out, count_u32(mesh.vertices.len()));
    if cfg!(target_endian = "little") {
        out.extend_from_slice(bytemuck::cast_slice(&mesh.vertices));
        out.extend_from_slice(bytemuck::cast_slice(&mesh.triangles));
        return out;
    }
    for &c in mesh.vertices.iter().flatten() {
        put_f32(&mut out, c);
    }
    for &i in mesh.triangles.iter().flatten() {
        put_u32(&mut out, i);
    }
    out
}

fn obj_bytes(mesh: &Mesh) -> Vec<u8> {
    let mut s = String::with_capacity(40 * (mesh.vertices.len() + mesh.triangles.len()) + 64);
    // Writing to a String cannot fail, so the fmt::Results below carry no information.
    let _ = writeln!(
        s,
        "# tessera mesh: {} vertices, {} triangles",
        mesh.vertices.len(),
        mesh.triangles.len()
    );
    // `{}` on f32 is the shortest text that parses back to the same f32.
    for [x, y, z] in &mesh.vertices {
        let _ = writeln!(s, "v {x} {y} {z}");
    }
    // OBJ indices are 1-based; widen first so u32::MAX cannot overflow.
    for t in &mesh.triangles {
        let [a, b, c] = t.map(|i| u64::from(i) + 1);
        let _ = writeln!(s, "f {a} {b} {c}");
    }
    s.into_bytes()
}

fn ply_bytes(mesh: &Mesh) -> Vec<u8> {
    let header = format!(
        "ply\nformat binary_little_endian 1.0\ncomment written by tessera\n\
         element vertex {}\nproperty float x\nproperty float y\nproperty float z\n\
         element face {}\nproperty list uchar uint vertex_indices\nend_header\n",
        count_u32(mesh.vertices.len()),
        count_u32(mesh.triangles.len()),
    );
    let mut out =
        Vec::with_capacity(header.len() + 12 * mesh.vertices.len() + 13 * mesh.triangles.len());
    out.extend_from_slice(header.as_bytes());
    for &c in mesh.vertices.iter().flatten() {
        put_f32(&mut out, c);
    }
    for t in &mesh.triangles {
        out.push(3);
        for &i in t {
            put_u32(&mut out, i);
        }
    }
    out
}

/// The `info` file of a neuroglancer precomputed legacy mesh directory.
pub fn precomputed_legacy_info() -> Vec<u8> {
    br#"{"@type":"neuroglancer_legacy_mesh"}"#.to_vec()
}

/// The files neuroglancer's precomputed legacy (single-resolution) format reads for segment
/// `id`, as `(name relative to the mesh directory, contents)`: the manifest `<id>:0`, a JSON
/// `{"fragments": ["<id>:0:0"]}`, and that one fragment, whose bytes are the
/// [`Format::Ngmesh`] layout. An empty mesh still gets its (zero-vertex) fragment, so callers
/// always store the same two files.
pub fn precomputed_legacy_files(id: u64, mesh: &Mesh) -> Vec<(String, Vec<u8>)> {
    let fragment = format!("{id}:0:0");
    // The name is digits and colons only, so it needs no JSON escaping.
    let manifest = format!(r#"{{"fragments":["{fragment}"]}}"#);
    vec![
        (format!("{id}:0"), manifest.into_bytes()),
        (fragment, ngmesh_bytes(mesh)),
    ]
}

/// The `info` file of a neuroglancer precomputed multi-resolution mesh directory
/// (`neuroglancer_multilod_draco`). `transform` is the row-major 3x4 matrix from the stored
/// model space (the [`Mesh`] units) to neuroglancer's model space; use the identity
/// `[1,0,0,0, 0,1,0,0, 0,0,1,0]` for meshes already in physical units. The `lod_scales` that
/// [`precomputed_multires`] writes are already in mesh units, so `lod_scale_multiplier` is 1.
/// neuroglancer accepts only 10 or 16 quantization bits; other values are clamped to
/// Draco's 1..=30 exactly as [`precomputed_multires`] does, and non-finite transform entries
/// become JSON `null`.
pub fn precomputed_multires_info(quantization_bits: u32, transform: [f32; 12]) -> Vec<u8> {
    let info = serde_json::json!({
        "@type": "neuroglancer_multilod_draco",
        "vertex_quantization_bits": draco_bits(quantization_bits),
        "transform": transform,
        "lod_scale_multiplier": 1.0,
    });
    serde_json::to_vec(&info).unwrap_or_default()
}

/// Draco quantizes to 1..=30 bits.
fn draco_bits(bits: u32) -> u32 {
    bits.clamp(1, 30)
}

/// One segment's files in neuroglancer's precomputed multi-resolution format: the manifest
/// (`<id>.index`) and the fragment data file (`<id>`, which the server must serve with HTTP
/// `Range` support).
///
/// `lods[0]` is the full-resolution mesh and `lods[k]` a coarser one; level `k` is cut into a
/// grid of cells of `chunk_shape * 2^k` anchored at `grid_origin`, and each non-empty cell
/// becomes one Draco-encoded fragment, listed in Z-curve order as the spec requires.
///
/// Triangles that cross a cell boundary are clipped along it (the pieces go to their cells),
/// because neuroglancer stores each fragment vertex as an integer in `[0, 2^bits)` relative
/// to its cell and so cannot place a vertex outside the cell. For `k > 0` the clipping also
/// runs along the cell mid-planes: the spec requires those fragments to be split by a 2x2x2
/// grid so neuroglancer can draw just the octants that finer levels do not cover. Clipping
/// keeps winding and surface, so a closed input stays closed up to quantization.
///
/// The manifest's `lod_scales` are `2^k` times the mean edge length of `lods[0]` (the
/// resolution neuroglancer compares with its pixel size), `vertex_offsets` are zero.
/// Degenerate inputs: an empty `lods` is treated as one empty level; a non-positive or
/// non-finite `chunk_shape`/`grid_origin` gives levels without fragments; triangles with
/// out-of-range indices or non-finite vertices are skipped, and so is geometry below
/// `grid_origin` (place the origin at or below the mesh's lower corner).
pub fn precomputed_multires(
    lods: &[Mesh],
    chunk_shape: [f32; 3],
    grid_origin: [f32; 3],
    quantization_bits: u32,
) -> (Vec<u8>, Vec<u8>) {
    let bits = draco_bits(quantization_bits);
    let fallback = [Mesh::default()];
    let lods = if lods.is_empty() { &fallback[..] } else { lods };
    let grid_ok = chunk_shape.iter().all(|&c| c.is_finite() && c > 0.0)
        && grid_origin.iter().all(|o| o.is_finite());
    let base_scale = mean_edge_length(&lods[0]);

    let mut data = Vec::new();
    let mut lod_scales = Vec::with_capacity(lods.len());
    // Per level: (cell position, encoded size) in Z-curve order.
    let mut levels: Vec<Vec<([u32; 3], u32)>> = Vec::with_capacity(lods.len());
    for (k, mesh) in lods.iter().enumerate() {
        let factor = 2f64.powi(i32::try_from(k).unwrap_or(i32::MAX));
        lod_scales.push((base_scale * factor) as f32);
        let mut entries = Vec::new();
        if grid_ok {
            let cell = chunk_shape.map(|c| f64::from(c) * factor);
            // Level 0 is clipped at its cells, coarser levels also at the cell mid-planes.
            let split = if k == 0 { cell } else { cell.map(|c| c / 2.0) };
            let grid = Grid {
                origin: grid_origin.map(f64::from),
                cell,
                split,
            };
            if cell.iter().all(|c| c.is_finite()) {
                for (pos, bytes) in lod_fragments(mesh, &grid, bits) {
                    entries.push((pos, count_u32(bytes.len())));
                    data.extend_from_slice(&bytes);
                }
            }
        }
        levels.push(entries);
    }

    let mut manifest = Vec::new();
    for &c in chunk_shape.iter().chain(&grid_origin) {
        put_f32(&mut manifest, c);
    }
    put_u32(&mut manifest, count_u32(lods.len()));
    for &s in &lod_scales {
        put_f32(&mut manifest, s);
    }
    for _ in 0..3 * lods.len() {
        put_f32(&mut manifest, 0.0); // vertex_offsets
    }
    for entries in &levels {
        put_u32(&mut manifest, count_u32(entries.len()));
    }
    for entries in &levels {
        // Positions are a C-order [3, n] array: all x, then all y, then all z.
        for axis in 0..3 {
            for (pos, _) in entries {
                put_u32(&mut manifest, pos[axis]);
            }
        }
        for &(_, size) in entries {
            put_u32(&mut manifest, size);
        }
    }
    (manifest, data)
}

/// The chunk grid of one level of detail, in f64 so clipping and quantization add no error
/// beyond the final quantization itself.
struct Grid {
    origin: [f64; 3],
    /// Size of this level's cells (one fragment each).
    cell: [f64; 3],
    /// Spacing of the planes triangles are clipped along (`cell`, or `cell / 2`).
    split: [f64; 3],
}

type Point = [f64; 3];

fn mean_edge_length(mesh: &Mesh) -> f64 {
    let (mut sum, mut n) = (0.0, 0u64);
    for t in &mesh.triangles {
        if let Some(p) = triangle_points(mesh, t) {
            for i in 0..3 {
                let (a, b) = (p[i], p[(i + 1) % 3]);
                sum +=
                    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2) + (a[2] - b[2]).powi(2)).sqrt();
                n += 1;
            }
        }
    }
    let mean = sum / n as f64;
    if n > 0 && mean.is_finite() && mean > 0.0 {
        mean
    } else {
        1.0
    }
}

/// The corners of a triangle, or `None` if an index is out of range or a coordinate is not
/// finite.
fn triangle_points(mesh: &Mesh, t: &[u32; 3]) -> Option<[Point; 3]> {
    let mut out = [[0.0; 3]; 3];
    for (o, &i) in out.iter_mut().zip(t) {
        let v = mesh.vertices.get(usize::try_from(i).ok()?)?;
        if !v.iter().all(|c| c.is_finite()) {
            return None;
        }
        *o = v.map(f64::from);
    }
    Some(out)
}

/// The vertices and triangles of one cell, vertices shared between its triangles.
#[derive(Default)]
struct Fragment {
    points: Vec<Point>,
    index: HashMap<[u64; 3], u32>,
    faces: Vec<[u32; 3]>,
}

impl Fragment {
    fn vertex(&mut self, p: Point) -> u32 {
        // `+ 0.0` folds -0.0 into 0.0 so equal positions share one key.
        let key = p.map(|c| (c + 0.0).to_bits());
        let points = &mut self.points;
        *self.index.entry(key).or_insert_with(|| {
            points.push(p);
            count_u32(points.len() - 1)
        })
    }

    /// Adds a convex polygon as a triangle fan, which keeps its winding.
    fn add_polygon(&mut self, poly: &[Point]) {
        let ids: Vec<u32> = poly.iter().map(|&p| self.vertex(p)).collect();
        for i in 1..ids.len().saturating_sub(1) {
            let face = [ids[0], ids[i], ids[i + 1]];
            if face[0] != face[1] && face[1] != face[2] && face[0] != face[2] {
                self.faces.push(face);
            }
        }
    }
}

/// Clips `mesh` into `grid`'s cells and Draco-encodes each non-empty cell, in Z-curve order.
fn lod_fragments(mesh: &Mesh, grid: &Grid, bits: u32) -> Vec<([u32; 3], Vec<u8>)> {
    let mut cells: HashMap<[u32; 3], Fragment> = HashMap::new();
    for t in &mesh.triangles {
        let Some(tri) = triangle_points(mesh, t) else {
            continue;
        };
        for piece in split_by_grid(&tri, grid) {
            if let Some(cell) = cell_of(&piece, grid) {
                cells.entry(cell).or_default().add_polygon(&piece);
            }
        }
    }
    let mut cells: Vec<([u32; 3], Fragment)> = cells
        .into_iter()
        .filter(|(_, f)| !f.faces.is_empty())
        .collect();
    cells.sort_by_key(|&(pos, _)| morton(pos));
    cells
        .into_iter()
        .map(|(pos, frag)| {
            let lower: Point =
                std::array::from_fn(|a| grid.origin[a] + f64::from(pos[a]) * grid.cell[a]);
            let quantized: Vec<[u32; 3]> = frag
                .points
                .iter()
                .map(|p| quantize(p, &lower, &grid.cell, bits))
                .collect();
            let range = grid.cell.iter().copied().fold(0.0, f64::max) as f32;
            let bytes = draco_mesh(
                &quantized,
                &frag.faces,
                bits,
                lower.map(|c| c as f32),
                range,
            );
            (pos, bytes)
        })
        .collect()
}

/// A vertex as neuroglancer wants it: `x / (2^bits - 1)` is its fraction of the cell.
fn quantize(p: &Point, lower: &Point, cell: &Point, bits: u32) -> [u32; 3] {
    let max = ((1u64 << bits) - 1) as f64;
    std::array::from_fn(|a| {
        let mut t = (p[a] - lower[a]) / cell[a];
        // Snap clipped vertices that f64 left a hair off a cell face or mid-plane, so they
        // land exactly on it: neuroglancer sorts lod > 0 triangles into octants by comparing
        // with the mid-plane value 2^(bits-1), which 0.5 rounds to.
        for snap in [0.0, 0.5, 1.0] {
            if (t - snap).abs() < 1e-9 {
                t = snap;
            }
        }
        (t * max).round().clamp(0.0, max) as u32
    })
}

/// The cell containing a clipped piece (by its centroid, which is strictly inside the cell for
/// a non-degenerate piece), or `None` below the origin or past `u32` cell coordinates.
fn cell_of(piece: &[Point], grid: &Grid) -> Option<[u32; 3]> {
    let n = piece.len() as f64;
    let mut cell = [0u32; 3];
    for (a, c) in cell.iter_mut().enumerate() {
        let centroid = piece.iter().map(|p| p[a]).sum::<f64>() / n;
        let i = ((centroid - grid.origin[a]) / grid.cell[a]).floor();
        if !(0.0..=f64::from(u32::MAX)).contains(&i) {
            return None;
        }
        *c = i as u32;
    }
    Some(cell)
}

/// Cuts a triangle along every `grid.split` plane it crosses; each piece is a convex polygon
/// inside one split cell, wound like the triangle.
fn split_by_grid(tri: &[Point; 3], grid: &Grid) -> Vec<Vec<Point>> {
    let mut pieces = vec![tri.to_vec()];
    for axis in 0..3 {
        let mut next = Vec::with_capacity(pieces.len());
        for piece in pieces {
            split_along_axis(piece, axis, grid.origin[axis], grid.split[axis], &mut next);
        }
        pieces = next;
    }
    pieces
}

/// Beyond this many planes per axis a triangle is left whole (its vertices are then clamped
/// into its cell): bounded work for absurd inputs, never reached by voxel-scale meshes.
const MAX_SPLITS: f64 = 4096.0;

fn split_along_axis(
    mut poly: Vec<Point>,
    axis: usize,
    origin: f64,
    step: f64,
    out: &mut Vec<Vec<Point>>,
) {
    let (lo, hi) = poly
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(p[axis]), hi.max(p[axis]))
        });
    // Planes origin + i * step with lo < plane < hi, walked upwards, peeling pieces off.
    let first = ((lo - origin) / step).floor() + 1.0;
    let last = ((hi - origin) / step).ceil() - 1.0;
    if !(first <= last && last - first < MAX_SPLITS) {
        out.push(poly);
        return;
    }
    let mut i = first;
    while i <= last {
        let (below, above) = clip(&poly, axis, origin + i * step);
        if below.len() >= 3 {
            out.push(below);
        }
        poly = above;
        if poly.len() < 3 {
            return;
        }
        i += 1.0;
    }
    out.push(poly);
}

/// Splits a convex polygon by the plane `p[axis] == at` into its parts below and above.
/// A polygon touching the plane from one side stays whole on that side.
fn clip(poly: &[Point], axis: usize, at: f64) -> (Vec<Point>, Vec<Point>) {
    let d: Vec<f64> = poly.iter().map(|p| p[axis] - at).collect();
    if d.iter().all(|&x| x <= 0.0) {
        return (poly.to_vec(), Vec::new());
    }
    if d.iter().all(|&x| x >= 0.0) {
        return (Vec::new(), poly.to_vec());
    }
    let (mut below, mut above) = (Vec::new(), Vec::new());
    for i in 0..poly.len() {
        let j = (i + 1) % poly.len();
        if d[i] <= 0.0 {
            below.push(poly[i]);
        }
        if d[i] >= 0.0 {
            above.push(poly[i]);
        }
        if (d[i] < 0.0 && d[j] > 0.0) || (d[i] > 0.0 && d[j] < 0.0) {
            let x = crossing(poly[i], poly[j], axis, at);
            below.push(x);
            above.push(x);
        }
    }
    (below, above)
}

/// Where segment a-b meets the plane. Endpoints are put in a fixed order first so the
/// neighbouring triangle, which walks the shared edge the other way, gets the same bits and
/// the clipped surface has no cracks.
fn crossing(a: Point, b: Point, axis: usize, at: f64) -> Point {
    let (p, q) = if a.partial_cmp(&b) == Some(std::cmp::Ordering::Less) {
        (a, b)
    } else {
        (b, a)
    };
    let t = (at - p[axis]) / (q[axis] - p[axis]);
    let mut r: Point = std::array::from_fn(|k| p[k] + t * (q[k] - p[k]));
    r[axis] = at;
    r
}

/// Z-curve (Morton) code with x in the lowest bit, matching neuroglancer's octree child order.
fn morton(pos: [u32; 3]) -> u128 {
    let mut code = 0u128;
    for bit in 0..32 {
        for (axis, &c) in pos.iter().enumerate() {
            code |= u128::from((c >> bit) & 1) << (3 * bit + axis);
        }
    }
    code
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    // Draco's varint is LEB128: 7 bits per byte, low bits first, high bit = more follows.
    while v >= 0x80 {
        out.push((v & 0x7f) as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A Draco bitstream (version 2.2) holding one triangle mesh with an already-quantized
/// POSITION attribute, in the simplest layout every Draco decoder reads: sequential
/// connectivity with uncompressed indices and raw (unpredicted, unentropy-coded) values.
///
/// The attribute is declared float32 with a quantization transform of `bits`, origin `min`
/// and `range`, so a plain Draco decoder dequantizes to `min + q * range / (2^bits - 1)`;
/// neuroglancer skips that transform and reads `q` itself.
fn draco_mesh(
    positions: &[[u32; 3]],
    faces: &[[u32; 3]],
    bits: u32,
    min: [f32; 3],
    range: f32,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + 12 * positions.len() + 12 * faces.len());
    out.extend_from_slice(b"DRACO");
    out.extend_from_slice(&[2, 2]); // bitstream version 2.2
    out.push(1); // encoder type: triangular mesh
    out.push(0); // encoder method: sequential
    out.extend_from_slice(&0u16.to_le_bytes()); // flags: no metadata

    // Connectivity.
    put_varint(&mut out, faces.len() as u64);
    put_varint(&mut out, positions.len() as u64);
    out.push(1); // SEQUENTIAL_UNCOMPRESSED_INDICES
    let n = positions.len();
    for &i in faces.iter().flatten() {
        // The decoder picks the index width from the point count the same way.
        if n < 1 << 8 {
            out.push(i as u8);
        } else if n < 1 << 16 {
            out.extend_from_slice(&(i as u16).to_le_bytes());
        } else if n < 1 << 21 {
            put_varint(&mut out, u64::from(i));
        } else {
            put_u32(&mut out, i);
        }
    }

    // Attributes: one sequential attributes decoder holding one attribute.
    out.push(1); // number of attribute decoders
    put_varint(&mut out, 1); // attributes in it
    out.extend_from_slice(&[0, 9, 3, 0]); // POSITION, DT_FLOAT32, 3 components, not normalized
    put_varint(&mut out, 0); // unique id
    out.push(2); // SEQUENTIAL_ATTRIBUTE_ENCODER_QUANTIZATION
    out.push(0xfe); // prediction scheme: PREDICTION_NONE (-2)
    out.push(0); // values not entropy-coded
    out.push(4); // bytes per value
    for &q in positions.iter().flatten() {
        // Values are stored zigzag-signed; ours are non-negative, so that is a doubling.
        put_u32(&mut out, q << 1);
    }
    // Quantization transform parameters.
    for c in min {
        put_f32(&mut out, c);
    }
    put_f32(&mut out, range);
    out.push(bits as u8);
    out
}

#[cfg(test)]
mod tests {
    //! Every binary layout is read back by a small parser written here from the format's
    //! documentation, not by reusing the encoder's helpers.

    use super::*;

    fn tetrahedron() -> Mesh {
        Mesh {
            vertices: vec![
                [0.0, 0.0, 0.0],
                [1.0, 0.0, 0.0],
                [0.0, 1.0, 0.0],
                [0.0, 0.0, 1.0],
            ],
            triangles: vec![[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]],
        }
    }

    /// Side-`side` cube at `lo`, 12 outward counter-clockwise triangles.
    fn cube(lo: [f32; 3], side: f32) -> Mesh {
        let vertices = (0..8u32)
            .map(|i| std::array::from_fn(|a| lo[a] + side * ((i >> a) & 1) as f32))
            .collect();
        let triangles = vec![
            [0, 2, 1],
            [1, 2, 3],
            [4, 5, 6],
            [5, 7, 6],
            [0, 1, 4],
            [1, 5, 4],
            [2, 6, 3],
            [3, 6, 7],
            [0, 4, 2],
            [2, 4, 6],
            [1, 3, 5],
            [3, 7, 5],
        ];
        Mesh {
            vertices,
            triangles,
        }
    }

    fn samples() -> Vec<Mesh> {
        vec![tetrahedron(), cube([1.5, -2.0, 0.1], 3.0), Mesh::default()]
    }

    struct Reader<'a>(&'a [u8]);

    impl Reader<'_> {
        fn bytes(&mut self, n: usize) -> &[u8] {
            let (head, rest) = self.0.split_at(n);
            self.0 = rest;
            head
        }
        fn u8(&mut self) -> u8 {
            self.bytes(1)[0]
        }
        fn u16(&mut self) -> u16 {
            u16::from_le_bytes(self.bytes(2).try_into().unwrap())
        }
        fn u32(&mut self) -> u32 {
            u32::from_le_bytes(self.bytes(4).try_into().unwrap())
        }
        fn f32(&mut self) -> f32 {
            f32::from_le_bytes(self.bytes(4).try_into().unwrap())
        }
        fn varint(&mut self) -> u64 {
            let (mut v, mut shift) = (0u64, 0);
            loop {
                let b = self.u8();
                v |= u64::from(b & 0x7f) << shift;
                if b & 0x80 == 0 {
                    return v;
                }
                shift += 7;
            }
        }
    }

    fn parse_ngmesh(b: &[u8]) -> Mesh {
        let mut r = Reader(b);
        let n = r.u32() as usize;
        let vertices = (0..n).map(|_| [r.f32(), r.f32(), r.f32()]).collect();
        assert_eq!(r.0.len() % 12, 0, "index bytes must be whole triangles");
        let triangles = (0..r.0.len() / 12)
            .map(|_| [r.u32(), r.u32(), r.u32()])
            .collect();
        Mesh {
            vertices,
            triangles,
        }
    }

    fn parse_obj(text: &str) -> Mesh {
        let mut m = Mesh::default();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            match words.next() {
                Some("v") => m.vertices.push(std::array::from_fn(|_| {
                    words.next().unwrap().parse().unwrap()
                })),
                Some("f") => m.triangles.push(std::array::from_fn(|_| {
                    words.next().unwrap().parse::<u32>().unwrap() - 1
                })),
                Some(w) => assert!(w.starts_with('#'), "unexpected OBJ line {line:?}"),
                None => {}
            }
        }
        m
    }

    fn parse_ply(b: &[u8]) -> Mesh {
        let end = b.windows(11).position(|w| w == b"end_header\n").unwrap() + 11;
        let header = std::str::from_utf8(&b[..end]).unwrap();
        let lines: Vec<&str> = header
            .lines()
            .filter(|l| !l.starts_with("comment"))
            .collect();
        let count = |prefix: &str| -> usize {
            lines
                .iter()
                .find_map(|l| l.strip_prefix(prefix))
                .unwrap()
                .parse()
                .unwrap()
        };
        let (nv, nf) = (count("element vertex "), count("element face "));
        assert_eq!(lines[0], "ply");
        assert_eq!(lines[1], "format binary_little_endian 1.0");
        assert_eq!(
            &lines[3..6],
            ["property float x", "property float y", "property float z"]
        );
        assert_eq!(lines[7], "property list uchar uint vertex_indices");
        let mut r = Reader(&b[end..]);
        let vertices = (0..nv).map(|_| [r.f32(), r.f32(), r.f32()]).collect();
        let triangles = (0..nf)
            .map(|_| {
                assert_eq!(r.u8(), 3);
                [r.u32(), r.u32(), r.u32()]
            })
            .collect();
        assert!(r.0.is_empty(), "trailing PLY bytes");
        Mesh {
            vertices,
            triangles,
        }
    }

    #[test]
    fn format_names() {
        for (s, f) in [
            ("ngmesh", Format::Ngmesh),
            ("OBJ", Format::Obj),
            ("Ply", Format::Ply),
        ] {
            assert_eq!(s.parse::<Format>(), Ok(f));
        }
        let err = "stl".parse::<Format>().unwrap_err();
        assert!(
            err.contains("\"stl\"")
                && err.contains("ngmesh")
                && err.contains("obj")
                && err.contains("ply")
        );
        assert!("".parse::<Format>().is_err());
        assert_eq!(Format::Ngmesh.extension(), "ngmesh");
        assert_eq!(Format::Obj.extension(), "obj");
        assert_eq!(Format::Ply.extension(), "ply");
        assert_eq!(Format::Ngmesh.content_type(), "application/octet-stream");
        assert_eq!(Format::Ply.content_type(), "application/octet-stream");
        assert_eq!(Format::Obj.content_type(), "text/plain; charset=utf-8");
    }

    #[test]
    fn single_file_formats_round_trip() {
        for mesh in samples() {
            assert_eq!(parse_ngmesh(&encode(&mesh, Format::Ngmesh)), mesh);
            assert_eq!(
                parse_obj(std::str::from_utf8(&encode(&mesh, Format::Obj)).unwrap()),
                mesh
            );
            assert_eq!(parse_ply(&encode(&mesh, Format::Ply)), mesh);
        }
        // Exact ngmesh bytes for the empty mesh: just a zero count.
        assert_eq!(encode(&Mesh::default(), Format::Ngmesh), vec![0, 0, 0, 0]);
    }

    #[test]
    fn obj_floats_round_trip_exactly() {
        let mesh = Mesh {
            vertices: vec![[0.1, 1e-7, -3.4028235e38], [16777217.0, 1.0 / 3.0, 7.0]],
            triangles: vec![],
        };
        assert_eq!(
            parse_obj(std::str::from_utf8(&encode(&mesh, Format::Obj)).unwrap()),
            mesh
        );
    }

    #[test]
    fn garbage_meshes_do_not_panic() {
        let bad = Mesh {
            vertices: vec![[f32::NAN, f32::INFINITY, 0.0], [1.0, 2.0, 3.0]],
            triangles: vec![[0, 1, 7], [u32::MAX, 0, 1], [0, 1, 1]],
        };
        for f in [Format::Ngmesh, Format::Obj, Format::Ply] {
            assert!(!encode(&bad, f).is_empty());
        }
        let _ = precomputed_legacy_files(u64::MAX, &bad);
        for (chunk, origin) in [
            ([1.0; 3], [0.0; 3]),
            ([0.0; 3], [0.0; 3]),
            ([f32::NAN; 3], [0.0; 3]),
            ([1.0; 3], [f32::INFINITY; 3]),
            ([f32::MAX; 3], [0.0; 3]),
            ([1e-30; 3], [0.0; 3]),
        ] {
            for bits in [0, 10, 16, 31, u32::MAX] {
                let (index, _) =
                    precomputed_multires(&[bad.clone(), cube([0.0; 3], 1e6)], chunk, origin, bits);
                assert_eq!(parse_manifest(&index).levels.len(), 2);
            }
        }
        let (index, data) = precomputed_multires(&[], [1.0; 3], [0.0; 3], 10);
        assert_eq!(parse_manifest(&index).levels.len(), 1);
        assert!(data.is_empty());
    }

    #[test]
    fn precomputed_legacy() {
        let info: serde_json::Value = serde_json::from_slice(&precomputed_legacy_info()).unwrap();
        assert_eq!(
            info,
            serde_json::json!({"@type": "neuroglancer_legacy_mesh"})
        );
        for mesh in samples() {
            let files = precomputed_legacy_files(1234567890123, &mesh);
            assert_eq!(files.len(), 2);
            assert_eq!(files[0].0, "1234567890123:0");
            let manifest: serde_json::Value = serde_json::from_slice(&files[0].1).unwrap();
            let names = manifest["fragments"].as_array().unwrap();
            assert_eq!(names.len(), 1);
            assert_eq!(names[0].as_str(), Some(files[1].0.as_str()));
            assert_eq!(parse_ngmesh(&files[1].1), mesh);
        }
    }

    #[test]
    fn multires_info() {
        let t = [2.0, 0.0, 0.0, 5.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 3.0, 0.0];
        let info: serde_json::Value =
            serde_json::from_slice(&precomputed_multires_info(10, t)).unwrap();
        assert_eq!(info["@type"], "neuroglancer_multilod_draco");
        assert_eq!(info["vertex_quantization_bits"], 10);
        assert_eq!(info["lod_scale_multiplier"], 1.0);
        let got: Vec<f64> = info["transform"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(got, t.map(f64::from));
    }

    struct Manifest {
        chunk: [f32; 3],
        origin: [f32; 3],
        scales: Vec<f32>,
        /// Per level: (position, fragment size).
        levels: Vec<Vec<([u32; 3], u32)>>,
    }

    /// The manifest layout from neuroglancer's precomputed `meshes.md`.
    fn parse_manifest(b: &[u8]) -> Manifest {
        let mut r = Reader(b);
        let chunk = [r.f32(), r.f32(), r.f32()];
        let origin = [r.f32(), r.f32(), r.f32()];
        let n = r.u32() as usize;
        let scales: Vec<f32> = (0..n).map(|_| r.f32()).collect();
        for _ in 0..3 * n {
            assert_eq!(r.f32(), 0.0, "vertex offsets");
        }
        let counts: Vec<usize> = (0..n).map(|_| r.u32() as usize).collect();
        let levels = counts
            .iter()
            .map(|&c| {
                let coords: Vec<u32> = (0..3 * c).map(|_| r.u32()).collect();
                (0..c)
                    .map(|i| ([coords[i], coords[c + i], coords[2 * c + i]], r.u32()))
                    .collect()
            })
            .collect();
        assert!(r.0.is_empty(), "trailing manifest bytes");
        Manifest {
            chunk,
            origin,
            scales,
            levels,
        }
    }

    /// What a Draco fragment holds: quantized positions, faces, and the quantization header.
    struct DracoMesh {
        q: Vec<[u32; 3]>,
        faces: Vec<[u32; 3]>,
        min: [f32; 3],
        range: f32,
        bits: u8,
    }

    /// Reads the subset of the Draco 2.2 bitstream spec that a sequential mesh with one
    /// uncompressed, unpredicted, quantized attribute uses, checking each fixed field.
    fn parse_draco(b: &[u8]) -> DracoMesh {
        let mut r = Reader(b);
        assert_eq!(r.bytes(5), b"DRACO");
        assert_eq!(r.bytes(4), [2, 2, 1, 0], "version 2.2, mesh, sequential");
        assert_eq!(r.u16(), 0, "flags");
        let nf = r.varint() as usize;
        let np = r.varint() as usize;
        assert_eq!(r.u8(), 1, "uncompressed indices");
        let index = |r: &mut Reader| match np {
            n if n < 256 => u32::from(r.u8()),
            n if n < 65536 => u32::from(r.u16()),
            n if n < 1 << 21 => r.varint() as u32,
            _ => r.u32(),
        };
        let faces = (0..nf)
            .map(|_| [index(&mut r), index(&mut r), index(&mut r)])
            .collect();
        assert_eq!(r.u8(), 1, "attribute decoders");
        assert_eq!(r.varint(), 1, "attributes");
        assert_eq!(r.bytes(4), [0, 9, 3, 0], "POSITION float32 x3");
        assert_eq!(r.varint(), 0, "unique id");
        assert_eq!(r.u8(), 2, "quantization decoder");
        assert_eq!(r.u8() as i8, -2, "no prediction");
        assert_eq!(r.u8(), 0, "raw values");
        assert_eq!(r.u8(), 4, "value width");
        let value = |r: &mut Reader| {
            let s = r.u32();
            assert_eq!(s & 1, 0, "zigzag sign bit: values are non-negative");
            s >> 1
        };
        let q = (0..np)
            .map(|_| [value(&mut r), value(&mut r), value(&mut r)])
            .collect();
        let min = [r.f32(), r.f32(), r.f32()];
        let range = r.f32();
        let bits = r.u8();
        assert!(r.0.is_empty(), "trailing Draco bytes");
        DracoMesh {
            q,
            faces,
            min,
            range,
            bits,
        }
    }

    /// Decodes every fragment the way neuroglancer does (quantized integers relative to the
    /// fragment's cell) and returns, per level, the triangles in model coordinates.
    fn decode_multires(
        index: &[u8],
        data: &[u8],
        bits: u32,
    ) -> (Manifest, Vec<Vec<[[f64; 3]; 3]>>) {
        let m = parse_manifest(index);
        let max = f64::from((1u32 << bits) - 1);
        let mut at = 0;
        let mut out = Vec::new();
        for (k, level) in m.levels.iter().enumerate() {
            let codes: Vec<u128> = level.iter().map(|&(p, _)| morton(p)).collect();
            assert!(
                codes.windows(2).all(|w| w[0] < w[1]),
                "fragments not in Z-curve order"
            );
            let mut tris = Vec::new();
            for &(pos, size) in level {
                let d = parse_draco(&data[at..at + size as usize]);
                at += size as usize;
                assert_eq!(u32::from(d.bits), bits);
                let cell: [f64; 3] =
                    std::array::from_fn(|a| f64::from(m.chunk[a]) * f64::from(1u32 << k));
                let lower: [f64; 3] =
                    std::array::from_fn(|a| f64::from(m.origin[a]) + f64::from(pos[a]) * cell[a]);
                for (min, lower) in d.min.iter().zip(&lower) {
                    assert!((f64::from(*min) - lower).abs() < 1e-4);
                }
                assert_eq!(f64::from(d.range), cell.iter().copied().fold(0.0, f64::max));
                assert!(d.q.iter().flatten().all(|&q| f64::from(q) <= max));
                let half = 1u32 << (bits - 1);
                for f in &d.faces {
                    let corners = f.map(|i| d.q[i as usize]);
                    if k > 0 {
                        // neuroglancer's octant test: each axis entirely on one side (the
                        // mid-plane value itself counts for both).
                        for a in 0..3 {
                            assert!(
                                corners.iter().all(|c| c[a] <= half)
                                    || corners.iter().all(|c| c[a] >= half)
                            );
                        }
                    }
                    tris.push(corners.map(|c| {
                        std::array::from_fn(|a| lower[a] + cell[a] * f64::from(c[a]) / max)
                    }));
                }
            }
            out.push(tris);
        }
        assert_eq!(
            at,
            data.len(),
            "data file is the concatenation of the fragments"
        );
        (m, out)
    }

    fn area_and_volume(tris: &[[[f64; 3]; 3]]) -> (f64, f64) {
        let (mut area, mut vol) = (0.0, 0.0);
        for [a, b, c] in tris {
            let u = [b[0] - a[0], b[1] - a[1], b[2] - a[2]];
            let v = [c[0] - a[0], c[1] - a[1], c[2] - a[2]];
            let n = [
                u[1] * v[2] - u[2] * v[1],
                u[2] * v[0] - u[0] * v[2],
                u[0] * v[1] - u[1] * v[0],
            ];
            area += (n[0] * n[0] + n[1] * n[1] + n[2] * n[2]).sqrt() / 2.0;
            vol += (a[0] * (b[1] * c[2] - b[2] * c[1]) - a[1] * (b[0] * c[2] - b[2] * c[0])
                + a[2] * (b[0] * c[1] - b[1] * c[0]))
                / 6.0;
        }
        (area, vol)
    }

    fn mesh_triangles(m: &Mesh) -> Vec<[[f64; 3]; 3]> {
        m.triangles
            .iter()
            .map(|t| t.map(|i| m.vertices[i as usize].map(f64::from)))
            .collect()
    }

    #[test]
    fn multires_single_cell_keeps_the_mesh() {
        // The cube fits in one 8-unit cell: one fragment holding the same triangles.
        let c = cube([1.0, 2.0, 3.0], 2.0);
        let (index, data) = precomputed_multires(std::slice::from_ref(&c), [8.0; 3], [0.0; 3], 16);
        let (m, levels) = decode_multires(&index, &data, 16);
        assert_eq!(m.levels, vec![vec![([0, 0, 0], data.len() as u32)]]);
        assert_eq!(m.scales.len(), 1);
        // Mean edge length: each triangle has two sides and one face diagonal.
        assert!((m.scales[0] - (4.0 + 8f32.sqrt()) / 3.0).abs() < 1e-5);
        let want = mesh_triangles(&c);
        assert_eq!(levels[0].len(), want.len());
        for (got, want) in levels[0].iter().zip(&want) {
            for (g, w) in got.iter().flatten().zip(want.iter().flatten()) {
                assert!((g - w).abs() <= 8.0 / 65535.0 / 2.0 + 1e-9);
            }
        }
    }

    #[test]
    fn multires_clipping_keeps_surface_and_volume() {
        // Tetrahedron and cube spread over many cells of a non-cubic grid, as three levels.
        let mut tet = tetrahedron();
        tet.vertices
            .iter_mut()
            .flatten()
            .for_each(|c| *c = *c * 4.0 + 1.0);
        let lods = [cube([0.3, 0.7, 1.1], 5.0), cube([0.3, 0.7, 1.1], 5.0), tet];
        for bits in [10, 16] {
            let (index, data) =
                precomputed_multires(&lods, [1.0, 1.5, 0.75], [0.0, 0.25, 0.5], bits);
            let (m, levels) = decode_multires(&index, &data, bits);
            assert_eq!(m.chunk, [1.0, 1.5, 0.75]);
            assert_eq!(m.origin, [0.0, 0.25, 0.5]);
            assert!(m.scales.windows(2).all(|w| w[0] < w[1]));
            assert!(
                m.levels[0].len() > 20,
                "the cube's surface spans many cells"
            );
            for (lod, tris) in lods.iter().zip(&levels) {
                let (a0, v0) = area_and_volume(&mesh_triangles(lod));
                let (a1, v1) = area_and_volume(tris);
                let tol = if bits == 10 { 2e-3 } else { 1e-4 };
                assert!((a1 - a0).abs() / a0 < tol, "area {a1} vs {a0}");
                assert!((v1 - v0).abs() / v0 < tol, "volume {v1} vs {v0}");
            }
        }
    }

    #[test]
    fn draco_index_widths() {
        // 1, 100 and 25_000 separate triangles in one cell: u8, u16 and varint indices.
        for n in [1u32, 100, 25_000] {
            let vertices = (0..3 * n)
                .map(|i| {
                    [
                        (i % 997) as f32 / 997.0,
                        (i / 997) as f32 / 100.0,
                        (i % 3) as f32 / 3.0,
                    ]
                })
                .collect();
            let triangles = (0..n).map(|t| [3 * t, 3 * t + 1, 3 * t + 2]).collect();
            let mesh = Mesh {
                vertices,
                triangles,
            };
            let (index, data) =
                precomputed_multires(std::slice::from_ref(&mesh), [1.0; 3], [0.0; 3], 16);
            let (m, levels) = decode_multires(&index, &data, 16);
            assert_eq!(m.levels[0].len(), 1);
            let d = parse_draco(&data);
            assert_eq!((d.q.len(), d.faces.len()), (3 * n as usize, n as usize));
            for (got, want) in levels[0].iter().zip(mesh_triangles(&mesh)) {
                for (g, w) in got.iter().flatten().zip(want.iter().flatten()) {
                    assert!((g - w).abs() <= 1.0 / 65535.0 / 2.0 + 1e-7);
                }
            }
        }
    }

    #[test]
    fn multires_empty_levels() {
        let (index, data) =
            precomputed_multires(&[Mesh::default(), Mesh::default()], [1.0; 3], [0.0; 3], 10);
        let m = parse_manifest(&index);
        assert_eq!(m.levels, vec![vec![], vec![]]);
        assert!(data.is_empty());
    }

    #[test]
    fn morton_order_matches_neuroglancer() {
        // x is the lowest bit, then y, then z.
        let order: Vec<[u32; 3]> = (0..8).map(|i| [i & 1, (i >> 1) & 1, i >> 2]).collect();
        assert!(order.windows(2).all(|w| morton(w[0]) < morton(w[1])));
        assert!(morton([1, 1, 1]) < morton([2, 0, 0]));
        assert_eq!(morton([u32::MAX; 3]), (1u128 << 96) - 1);
    }
}

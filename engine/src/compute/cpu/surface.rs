//! `surface` on the CPU: sweeps over the cells in canonical order that index vertices as they
//! go, with no hashing.
//!
//! A lattice edge's vertex belongs to at most two meshes: the label of its low end and that
//! of its high end ("sides"). The first cell in sweep order that contains the edge numbers it
//! in its label's mesh and leaves the number in a slot; later cells read the slot. That cell
//! is known from the edge's position in it, so slots never need clearing: two planes of slots
//! for x- and y-edges (the cells' bottom and top planes) and one for z-edges roll along z.
//!
//! The canonical order sweeps strips of `STRIP` cell rows one after another, each in (z, y, x)
//! order, so a strip's slot planes stay in the core's cache. Runs of consecutive strips go in
//! parallel, one sweep each: within a run a strip takes the x- and z-edge vertices of its first
//! row from the record the strip before left of its last row; the first strip of a run leaves
//! them as references into the previous run's record, resolved when the runs' meshes are
//! joined in order. The result is exactly a single sweep's. A run per core, not per strip,
//! because joining copies every piece but the first run's (on one core, nothing).

use rayon::prelude::*;
use rustc_hash::FxHashMap;

use crate::compute::Shape;
use crate::compute::surface::{Cells, EDGES, LabelSurface, STRIP, table};

/// A vertex number that refers to the strip before: `EXTERNAL | (face slot << 1 | side)`.
const EXTERNAL: u32 = 1 << 31;

pub fn surface(labels: &[u64], item: Shape, items: usize, cells: Cells) -> Vec<Vec<LabelSurface>> {
    let threads = rayon::current_num_threads();
    let one = |i: usize| {
        item_surface(
            &labels[i * item.voxels()..(i + 1) * item.voxels()],
            item,
            cells,
        )
    };
    if items >= threads {
        (0..items).into_par_iter().map(one).collect()
    } else {
        (0..items).map(one).collect()
    }
}

fn item_surface(vol: &[u64], item: Shape, cells: Cells) -> Vec<LabelSurface> {
    if cells.count() == 0 {
        return Vec::new();
    }
    let starts: Vec<i32> = (cells.lo[1]..cells.hi[1]).step_by(STRIP).collect();
    // Two runs per core when there are several: a run's work depends on how much surface its
    // rows hold, and a spare run lets a core that finished early take some of it.
    let threads = rayon::current_num_threads();
    let runs = if threads == 1 { 1 } else { 2 * threads };
    let parts: Vec<Strip> = starts
        .par_chunks(starts.len().div_ceil(runs))
        .map(|run| {
            let strip = |y0: i32| (y0, (y0 + STRIP as i32).min(cells.hi[1]));
            let mut s = Sweep::new(vol, item, cells, strip(run[0]));
            for (k, &y0) in run.iter().enumerate() {
                if k > 0 {
                    s.next_strip(strip(y0));
                }
                for z in cells.lo[2]..cells.hi[2] {
                    s.plane(z);
                }
            }
            s.finish()
        })
        .collect();
    join(parts)
}

/// Whether the four rows of a cell row hold one label over the voxels `xs`, so that its cells
/// there have nothing to mesh: most rows of a body's mask, outside it or inside. Rows of dense
/// labels differ at their ends, which is looked at first.
fn uniform(r: [&[u64]; 4], xs: std::ops::RangeInclusive<usize>) -> bool {
    let (a, b) = (*xs.start(), *xs.end());
    let label = r[0][a];
    if r.iter().any(|row| row[a] != label || row[b] != label) {
        return false;
    }
    // Without early exits inside a chunk, so that the comparisons vectorize.
    r.iter().all(|row| {
        row[xs.clone()]
            .chunks(32)
            .all(|c| c.iter().fold(0, |m, &v| m | (v ^ label)) == 0)
    })
}

/// The cells `x0 .. x0 + n` (n ≤ 64) of a cell row whose eight corners are not all one label,
/// as bits from bit 0; the rows hold the voxel `x0 + n` too.
fn mixed_cells(r: [&[u64]; 4], x0: usize, n: usize) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { avx2::mixed_cells(r, x0, n) };
    }
    mixed_cells_scalar(r, x0, n)
}

/// `mixed_cells` without SIMD.
fn mixed_cells_scalar(r: [&[u64]; 4], x0: usize, n: usize) -> u64 {
    assert!(n <= 64 && r.iter().all(|row| row.len() > x0 + n));
    (0..n).fold(0, |bits, k| {
        let x = x0 + k;
        let a = r[0][x];
        let differ = r
            .iter()
            .fold(0, |d, row| d | (row[x] ^ a) | (row[x + 1] ^ a));
        bits | u64::from(differ != 0) << k
    })
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// `super::mixed_cells` with AVX2, four cells a vector; the caller checks the CPU has it.
    #[target_feature(enable = "avx2")]
    pub(super) fn mixed_cells(r: [&[u64]; 4], x0: usize, n: usize) -> u64 {
        assert!(n <= 64 && r.iter().all(|row| row.len() > x0 + n));
        let whole = n / 4 * 4;
        let mut bits = 0u64;
        for k in (0..whole).step_by(4) {
            let x = x0 + k;
            // SAFETY: x + 4 ≤ x0 + n < the rows' length (asserted), so both loads are inside.
            let ld =
                |row: &[u64], at: usize| unsafe { _mm256_loadu_si256(row.as_ptr().add(at).cast()) };
            let a = ld(r[0], x);
            let mut same = _mm256_cmpeq_epi64(ld(r[0], x + 1), a);
            for row in &r[1..] {
                let both = _mm256_and_si256(
                    _mm256_cmpeq_epi64(ld(row, x), a),
                    _mm256_cmpeq_epi64(ld(row, x + 1), a),
                );
                same = _mm256_and_si256(same, both);
            }
            let same = _mm256_movemask_pd(_mm256_castsi256_pd(same)) as u64;
            bits |= (!same & 0xf) << k;
        }
        if whole < n {
            bits |= super::mixed_cells_scalar(r, x0 + whole, n - whole) << whole;
        }
        bits
    }
}

/// One run of strips' meshes, before joining.
struct Strip {
    meshes: Vec<LabelSurface>,
    by_label: FxHashMap<u64, usize>,
    /// Vertex numbers of the x- and z-edges on the row after the run's last cell row, every
    /// plane: `face[((z - lo.z)·w + px)·2 + (0 for x, 1 for z)]`.
    face: Vec<[u32; 2]>,
}

/// Joins runs in order into one mesh per label, resolving references to the run before.
fn join(mut parts: Vec<Strip>) -> Vec<LabelSurface> {
    if parts.len() == 1 {
        let mut meshes = parts.pop().expect("one strip").meshes;
        meshes.sort_unstable_by_key(|m| m.label);
        return meshes;
    }
    let mut labels: Vec<u64> = parts
        .iter()
        .flat_map(|p| p.by_label.keys().copied())
        .collect();
    labels.sort_unstable();
    labels.dedup();
    // Each label's pieces move out of their strips; the first becomes the joined mesh, so a
    // label in one strip is not copied at all.
    let mut pieces: Vec<Vec<Option<LabelSurface>>> = parts
        .iter_mut()
        .map(|p| {
            std::mem::take(&mut p.meshes)
                .into_iter()
                .map(Some)
                .collect()
        })
        .collect();
    let per_label: Vec<Vec<(usize, LabelSurface)>> = labels
        .iter()
        .map(|label| {
            parts
                .iter()
                .enumerate()
                .filter_map(|(k, p)| {
                    let m = *p.by_label.get(label)?;
                    Some((k, pieces[k][m].take().expect("each piece joins once")))
                })
                .collect()
        })
        .collect();
    drop(pieces);
    let parts = &parts;
    per_label
        .into_par_iter()
        .map(|strips| {
            let mut strips = strips.into_iter();
            let (_, mut out) = strips.next().expect("a label has a strip");
            // One allocation for the joined mesh, not a doubling per piece.
            let (v, t) = strips.as_slice().iter().fold((0, 0), |(v, t), (_, p)| {
                (v + p.vertices.len(), t + p.triangles.len())
            });
            out.vertices.reserve_exact(v);
            out.triangles.reserve_exact(t);
            // Where each strip's piece starts in the joined mesh (the first at 0).
            let mut base_of = vec![0u32; parts.len()];
            for (k, piece) in strips {
                // A reference to the strip before names a vertex this label has there, so the
                // label has a piece in strip k - 1 whenever one is resolved.
                let below = base_of[k - 1];
                let base = out.vertices.len() as u32;
                base_of[k] = base;
                out.vertices.extend_from_slice(&piece.vertices);
                let face = &parts[k - 1].face;
                let resolve = |v: u32| {
                    if v & EXTERNAL == 0 {
                        base + v
                    } else {
                        let r = (v & !EXTERNAL) as usize;
                        below + face[r >> 1][r & 1]
                    }
                };
                out.triangles
                    .extend(piece.triangles.iter().map(|t| t.map(resolve)));
            }
            out
        })
        .collect()
}

/// Per edge: its axis, its low corner's offset, and the other axes along which the edge is at
/// the cell's low side (the cell owns such an edge only at the box's low boundary there).
#[derive(Clone, Copy)]
struct EdgeInfo {
    axis: usize,
    off: [usize; 3],
    low_sides: u8,
    /// Half-voxel offset of the midpoint from the cell's minimum-corner center.
    h: [u32; 3],
    /// Its slot's offset from the cell's own (for the sweep's slot plane width).
    slot_offset: usize,
}

fn edge_info(w: usize) -> [EdgeInfo; 12] {
    std::array::from_fn(|e| {
        let axis = e / 4;
        let [a, _] = EDGES[e];
        let off = crate::compute::surface::corner(a);
        let low_sides = (0..3)
            .filter(|&t| t != axis && off[t] == 0)
            .fold(0u8, |m, t| m | 1 << t);
        EdgeInfo {
            axis,
            off,
            low_sides,
            h: crate::compute::surface::edge_offset(e),
            slot_offset: off[1] * w + off[0],
        }
    })
}

struct Sweep<'a> {
    vol: &'a [u64],
    dims: [usize; 3],
    cells: Cells,
    /// This strip's cell rows; a later strip's x- and z-edges on row `y0` belong to the strip
    /// before.
    y0: i32,
    y1: i32,
    /// Whether the strip before was this sweep's, its record in `above`: references to it
    /// resolve at once.
    chained: bool,
    zeros: Vec<u64>,
    /// Slot plane width (voxel positions lo..=hi in x) and height (rows y0..=y1).
    w: usize,
    h: usize,
    /// The record of row `y1` the next strip resolves its references in (`Strip::face`), and
    /// the strip before's when it was this sweep's.
    face: Vec<[u32; 2]>,
    above: Vec<[u32; 2]>,
    /// x/y-edge slots of the cells' bottom (`xy[0]`) and top (`xy[1]`) voxel planes, indexed
    /// `(py·w + px)·2 + axis`; z-edge slots of the current cell plane, indexed `py·w + px`.
    xy: [Vec<[u32; 2]>; 2],
    zs: Vec<[u32; 2]>,
    info: [EdgeInfo; 12],
    meshes: Vec<LabelSurface>,
    by_label: FxHashMap<u64, usize>,
    /// The last two labels looked up, and their meshes: boundary cells mostly hold the same
    /// two labels as their neighbours.
    last: [(u64, usize); 2],
    spare: Spare,
}

impl<'a> Sweep<'a> {
    fn new(vol: &'a [u64], item: Shape, cells: Cells, (y0, y1): (i32, i32)) -> Sweep<'a> {
        let size = cells.size();
        let w = size[0] + 1;
        let h = (y1 - y0) as usize + 1;
        let plane = w * h;
        Sweep {
            vol,
            dims: [item.x, item.y, item.z],
            cells,
            y0,
            y1,
            chained: false,
            zeros: vec![0; item.x],
            w,
            h,
            face: vec![[0; 2]; 2 * w * (size[2] + 1)],
            above: Vec::new(),
            xy: [vec![[0; 2]; 2 * plane], vec![[0; 2]; 2 * plane]],
            zs: vec![[0; 2]; plane],
            info: edge_info(w),
            meshes: Vec::new(),
            by_label: FxHashMap::default(),
            last: [(0, usize::MAX); 2],
            spare: Spare::default(),
        }
    }

    /// Goes on to the strip of rows `y0..y1` right after this one. Slots need no clearing
    /// here either: every slot a strip reads, it numbered first.
    fn next_strip(&mut self, (y0, y1): (i32, i32)) {
        debug_assert_eq!(y0, self.y1);
        std::mem::swap(&mut self.face, &mut self.above);
        self.face.resize(self.above.len(), [0; 2]);
        (self.y0, self.y1, self.h) = (y0, y1, (y1 - y0) as usize + 1);
        self.chained = true;
    }

    fn finish(self) -> Strip {
        Strip {
            meshes: self.meshes,
            by_label: self.by_label,
            face: self.face,
        }
    }

    /// The voxel row at (y, z), zeros outside the item.
    fn row(&self, y: i32, z: i32) -> &'a [u64] {
        let [nx, ny, nz] = self.dims;
        if y < 0 || z < 0 || y as usize >= ny || z as usize >= nz {
            return &[];
        }
        let start = (z as usize * ny + y as usize) * nx;
        &self.vol[start..start + nx]
    }

    fn plane(&mut self, z: i32) {
        let [lo, hi] = [self.cells.lo, self.cells.hi];
        let nx = self.dims[0] as i32;
        for y in self.y0..self.y1 {
            let rows = [
                self.row(y, z),
                self.row(y + 1, z),
                self.row(y, z + 1),
                self.row(y + 1, z + 1),
            ];
            let zeros = std::mem::take(&mut self.zeros);
            let r = rows.map(|r| if r.is_empty() { &zeros[..] } else { r });
            // Cells with both x corners inside the item take the fast path.
            let xa = lo[0].max(0);
            let xb = hi[0].min(nx - 1);
            for x in lo[0]..xa.min(hi[0]) {
                self.edge_cell([x, y, z], &r);
            }
            let (r00, r10, r01, r11) = (r[0], r[1], r[2], r[3]);
            let mut fast = xa as usize..xb.max(xa) as usize;
            if !fast.is_empty() && uniform(r, fast.start..=fast.end) {
                fast = 0..0;
            }
            // Cells whose corners are all one label have nothing to mesh; which ones differ is
            // found 64 at a time, and only those are looked at.
            let mut x0 = fast.start;
            while x0 < fast.end {
                let n = (fast.end - x0).min(64);
                let mut mixed = mixed_cells(r, x0, n);
                while mixed != 0 {
                    let x = x0 + mixed.trailing_zeros() as usize;
                    mixed &= mixed - 1;
                    let l = [
                        r00[x],
                        r00[x + 1],
                        r10[x],
                        r10[x + 1],
                        r01[x],
                        r01[x + 1],
                        r11[x],
                        r11[x + 1],
                    ];
                    self.cell([x as i32, y, z], l);
                }
                x0 += n;
            }
            for x in xb.max(xa).max(lo[0])..hi[0] {
                self.edge_cell([x, y, z], &r);
            }
            self.zeros = zeros;
        }
        // Record row y1 for the next strip: x-edges on both planes (the bottom's are final
        // once this plane is done, the top's too), z-edges of this cell plane.
        let (w, last) = (self.w, (self.h - 1) * self.w);
        let at = |z: i32| (z - lo[2]) as usize * w;
        for px in 0..w {
            self.face[(at(z) + px) * 2] = self.xy[0][(last + px) * 2];
            self.face[(at(z) + px) * 2 + 1] = self.zs[last + px];
            self.face[(at(z + 1) + px) * 2] = self.xy[1][(last + px) * 2];
        }
        // The top plane's x/y slots are the next cell plane's bottom ones.
        self.xy.swap(0, 1);
    }

    /// A cell with an x corner outside the item.
    fn edge_cell(&mut self, q: [i32; 3], r: &[&[u64]; 4]) {
        let nx = self.dims[0] as i32;
        let at = |row: &[u64], x: i32| {
            if x < 0 || x >= nx { 0 } else { row[x as usize] }
        };
        let x = q[0];
        let l = [
            at(r[0], x),
            at(r[0], x + 1),
            at(r[1], x),
            at(r[1], x + 1),
            at(r[2], x),
            at(r[2], x + 1),
            at(r[3], x),
            at(r[3], x + 1),
        ];
        if l.iter().all(|&v| v == l[0]) {
            return;
        }
        self.cell(q, l);
    }

    fn mesh(&mut self, label: u64) -> usize {
        // Label 0 is never looked up, so the initial entries never match.
        if self.last[0].0 == label {
            return self.last[0].1;
        }
        if self.last[1].0 == label {
            self.last.swap(0, 1);
            return self.last[0].1;
        }
        let next = self.meshes.len();
        let m = *self.by_label.entry(label).or_insert(next);
        if m == next {
            self.meshes.push(LabelSurface {
                label,
                ..Default::default()
            });
        }
        self.last = [(label, m), self.last[0]];
        m
    }

    /// A cell whose corners are not all one label: each non-zero label's triangles.
    fn cell(&mut self, q: [i32; 3], l: [u64; 8]) {
        // Corners not yet given to a label; each round takes the lowest one's label and every
        // corner that shares it (compares without branches: cells mix labels unpredictably).
        let mut left = u8::MAX;
        while left != 0 {
            let label = l[left.trailing_zeros() as usize];
            let mask = l
                .iter()
                .enumerate()
                .fold(0u8, |m, (k, &v)| m | u8::from(v == label) << k);
            left &= !mask;
            if label != 0 {
                self.emit(q, label, mask);
            }
        }
    }

    fn emit(&mut self, q: [i32; 3], label: u64, mask: u8) {
        let case = &cases()[mask as usize];
        let m = self.mesh(label);
        let lo = self.cells.lo;
        let at_low = (0..3).fold(0u8, |b, a| b | u8::from(q[a] == lo[a]) << a);
        // The x- and z-edges on a later strip's first row belong to the strip before.
        let external = q[1] == self.y0 && self.y0 != lo[1];
        let w = self.w;
        let base = (q[1] - self.y0) as usize * w + (q[0] - lo[0]) as usize;
        let center = q.map(|c| 2 * c + 1);
        let Sweep {
            xy,
            zs,
            info,
            meshes,
            chained,
            above,
            spare,
            ..
        } = self;
        let [bottom, top] = xy;
        let (chained, above) = (*chained, &*above);
        let mesh = &mut meshes[m];
        spare.make_room(&mut mesh.vertices, 12);
        spare.make_room(&mut mesh.triangles, MAX_TRIANGLES);
        // Each crossed edge once, in the order the triangles first use it (the canonical
        // vertex order): number it when this cell owns it, else read the number its owner left.
        let mut ids = [0u32; 12];
        for (id, &(e, side)) in ids.iter_mut().zip(&case.edges[..case.len as usize]) {
            let info = &info[e as usize];
            let side = side as usize;
            if external && info.off[1] == 0 && info.axis != 1 {
                let z = (q[2] - lo[2]) as usize + info.off[2];
                let px = (q[0] - lo[0]) as usize + info.off[0];
                let f = (z * w + px) * 2 + usize::from(info.axis == 2);
                *id = match chained {
                    true => above[f][side],
                    false => EXTERNAL | (f << 1 | side) as u32,
                };
                continue;
            }
            let at = base + info.slot_offset;
            let slot: &mut [u32; 2] = match (info.axis, info.off[2]) {
                (2, _) => &mut zs[at],
                (a, 0) => &mut bottom[at * 2 + a],
                (a, _) => &mut top[at * 2 + a],
            };
            if info.low_sides & !at_low == 0 {
                slot[side] = mesh.vertices.len() as u32;
                // Never negative: a crossed edge has an end inside the item.
                mesh.vertices.push(std::array::from_fn(|a| {
                    (center[a] + info.h[a] as i32) as u32
                }));
            }
            *id = slot[side];
        }
        mesh.triangles
            .extend(case.triangles().iter().map(|t| t.map(|k| ids[k as usize])));
    }
}

/// Buffers a sweep's meshes grew out of, by power-of-two capacity, for the next mesh that
/// grows to that size. One call over a large volume makes gigabytes of meshes: a freed buffer
/// handed back to the allocator came back as fresh pages, and faulting those in took about a
/// fifth of the sweep.
#[derive(Default)]
struct Spare {
    by_class: Vec<Vec<Vec<[u32; 3]>>>,
}

impl Spare {
    /// Capacity for `more` elements after `v`'s, doubling it, in a spare buffer if one fits.
    #[inline]
    fn make_room(&mut self, v: &mut Vec<[u32; 3]>, more: usize) {
        if v.len() + more <= v.capacity() {
            return;
        }
        self.grow(v, more);
    }

    #[cold]
    fn grow(&mut self, v: &mut Vec<[u32; 3]>, more: usize) {
        let need = (v.len() + more)
            .max(2 * v.capacity())
            .max(64)
            .next_power_of_two();
        let class = need.trailing_zeros() as usize;
        if self.by_class.len() <= class {
            self.by_class.resize_with(class + 1, Vec::new);
        }
        let mut next = self.by_class[class]
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(need));
        next.extend_from_slice(v);
        let mut old = std::mem::replace(v, next);
        if old.capacity().is_power_of_two() && old.capacity() >= 64 {
            old.clear();
            self.by_class[old.capacity().trailing_zeros() as usize].push(old);
        }
    }
}

/// A marching-cubes case as the sweep walks it: its crossed edges in order of first use, each
/// with the side of the edge the label is on (1 when the edge's low corner is outside), and
/// its triangles as indices into that list.
struct Case {
    len: u8,
    edges: [(u8, u8); 12],
    tris: u8,
    triangles: [[u8; 3]; MAX_TRIANGLES],
}

const MAX_TRIANGLES: usize = 12;

impl Case {
    fn triangles(&self) -> &[[u8; 3]] {
        &self.triangles[..self.tris as usize]
    }
}

fn cases() -> &'static [Case; 256] {
    static CASES: std::sync::OnceLock<Box<[Case; 256]>> = std::sync::OnceLock::new();
    CASES.get_or_init(|| {
        let t = table();
        Box::new(std::array::from_fn(|mask| {
            let mut case = Case {
                len: 0,
                edges: [(0, 0); 12],
                tris: 0,
                triangles: [[0; 3]; MAX_TRIANGLES],
            };
            let range = t.start[mask] as usize..t.start[mask + 1] as usize;
            for tri in &t.triangles[range] {
                let local = tri.map(|e| {
                    let known = case.edges[..case.len as usize]
                        .iter()
                        .position(|&(k, _)| k == e);
                    known.unwrap_or_else(|| {
                        let low = EDGES[e as usize][0];
                        let side = u8::from(mask >> low & 1 == 0);
                        case.edges[case.len as usize] = (e, side);
                        case.len += 1;
                        case.len as usize - 1
                    }) as u8
                });
                case.triangles[case.tris as usize] = local;
                case.tris += 1;
            }
            case
        }))
    })
}

#[cfg(test)]
mod tests {
    use crate::compute::reference::Rng;

    /// Both row scans against the definition, on rows of runs over labels that differ only
    /// in their high or low halves, at every start and count up to 64.
    #[test]
    fn mixed_cells_match_the_definition() {
        const PALETTE: [u64; 4] = [0, 1, (1 << 32) | 1, u64::MAX];
        let mut rng = Rng(5);
        let rows: Vec<Vec<u64>> = (0..4)
            .map(|_| {
                let mut label = 0;
                (0..80)
                    .map(|_| {
                        if rng.below(6) == 0 {
                            label = PALETTE[rng.below(PALETTE.len())];
                        }
                        label
                    })
                    .collect()
            })
            .collect();
        let r = [&rows[0][..], &rows[1][..], &rows[2][..], &rows[3][..]];
        for x0 in 0..16 {
            for n in 0..=64 {
                let want = (0..n).fold(0u64, |bits, k| {
                    let x = x0 + k;
                    let mut corners = r.iter().flat_map(|row| [row[x], row[x + 1]]);
                    let one = corners.all(|v| v == r[0][x]);
                    bits | u64::from(!one) << k
                });
                assert_eq!(super::mixed_cells_scalar(r, x0, n), want, "scalar {x0} {n}");
                #[cfg(target_arch = "x86_64")]
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU supports AVX2, checked just above.
                    let got = unsafe { super::avx2::mixed_cells(r, x0, n) };
                    assert_eq!(got, want, "avx2 {x0} {n}");
                }
            }
        }
    }
}

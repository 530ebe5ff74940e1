//! `surface` on the device (shaders/surface.wgsl): count, scan and emit over pieces of the
//! batch that fit the bindings.
//!
//! Pieces of whole items are numbered on the device: each cell writes the vertices it owns
//! and its triangles as vertex slots, and the host only maps slots to per-label numbers,
//! record by record (`Indexer`). A run of `run_batch` meshes its resident blocks this way.
//! Strips of an item too large for one binding come back as raw triangles, indexed on the host
//! by the `Assembler` the reference uses: a vertex on a strip's first row belongs to a cell of
//! the strip before, which the device no longer holds.

use std::collections::HashMap;

use super::device::{Gpu, Range, WORKGROUP, to_u32s};
use crate::compute::surface::{Assembler, Cells, EDGES, LabelSurface, STRIP, table};
use crate::compute::{ComputeError, Result, Shape, reference};

/// The entry points of surface.wgsl and the case table they read.
pub struct Kernels {
    count: wgpu::ComputePipeline,
    count_indexed: wgpu::ComputePipeline,
    scan_blocks: wgpu::ComputePipeline,
    scan_sums: wgpu::ComputePipeline,
    scan_add: wgpu::ComputePipeline,
    emit: wgpu::ComputePipeline,
    emit_indexed: wgpu::ComputePipeline,
    /// 257 case starts, each triangle's edges (4 bits each), then `ranks()`.
    cases: wgpu::Buffer,
    /// Where `ranks()` starts in `cases`.
    ranks_at: u32,
}

/// Rank meaning "not a vertex this cell numbers".
const NOT_OWNED: u32 = 15;

/// For each position of a cell against the box's low sides (bit a set where the cell is the
/// box's first along axis a) and each case: the rank of every edge among the vertices the
/// cell owns, in order of first use in the case's triangles (`NOT_OWNED` where the edge is
/// not crossed or another cell owns it), 4 bits each, and which edges it owns (their count is
/// the cell's vertex count). Two words per entry: edges 0–7, then edges 8–11 | owned edges (a
/// bit each) << 16.
///
/// A cell owns an edge's vertex when it is the first cell in canonical order holding the
/// edge: on each of the edge's other two axes, the edge lies on the cell's high side or the
/// cell on the box's low side (lower on any axis is never later in the order).
fn ranks() -> Vec<u32> {
    let t = table();
    let mut out = Vec::with_capacity(8 * 256 * 2);
    for low in 0..8usize {
        let owned = |e: usize| {
            let [a, _] = EDGES[e];
            (0..3)
                .filter(|&b| b != e / 4)
                .all(|b| a >> b & 1 == 1 || low >> b & 1 == 1)
        };
        for m in 0..256usize {
            let mut rank = [NOT_OWNED; 12];
            let (mut n, mut mine) = (0, 0u32);
            let tris = &t.triangles[t.start[m] as usize..t.start[m + 1] as usize];
            for &e in tris.iter().flatten() {
                let e = e as usize;
                if owned(e) && rank[e] == NOT_OWNED {
                    rank[e] = n;
                    n += 1;
                    mine |= 1 << e;
                }
            }
            let word = |es: std::ops::Range<usize>| {
                es.enumerate()
                    .fold(0u32, |w, (i, e)| w | rank[e] << (4 * i))
            };
            out.push(word(0..8));
            out.push(word(8..12) | mine << 16);
        }
    }
    out
}

impl Kernels {
    pub fn build(gpu: &Gpu, source: &str) -> Kernels {
        let make = |entry: &str| gpu.pipeline("surface", source, entry);
        let t = table();
        let mut cases: Vec<u32> = t.start.iter().map(|&s| s as u32).collect();
        cases.extend(
            t.triangles
                .iter()
                .map(|e| e[0] as u32 | (e[1] as u32) << 4 | (e[2] as u32) << 8),
        );
        let ranks_at = cases.len() as u32;
        cases.extend(ranks());
        Kernels {
            count: make("count"),
            count_indexed: make("count_indexed"),
            scan_blocks: make("scan_blocks"),
            scan_sums: make("scan_sums"),
            scan_add: make("scan_add"),
            emit: make("emit"),
            emit_indexed: make("emit_indexed"),
            cases: gpu.storage(bytemuck::cast_slice(&cases)),
            ranks_at,
        }
    }
}

/// Cells per scan block (shaders/surface.wgsl).
const BLOCK: u64 = 256;
/// Bytes per raw triangle: label, then three (xy, z) corners.
const RAW_BYTES: u64 = 32;
/// Bytes per indexed triangle, vertex and record.
const TRI_BYTES: u64 = 12;
const VERT_BYTES: u64 = 8;
const RECORD_BYTES: u64 = 12;
/// Items a piece holds at most: a record names its item in 16 bits.
pub const MAX_ITEMS: usize = 1 << 16;

/// The cells one set of dispatches meshes: all cells of `items` whole items, or the cell rows
/// `y` (whole strips of the canonical order) of one item; the device holds the voxel rows
/// `rows` of every plane.
struct Piece {
    item: Shape,
    cells: Cells,
    items: usize,
    y: std::ops::Range<i32>,
    rows: std::ops::Range<i32>,
}

/// A piece whose cells are counted and scanned on the device; `reads` are what the host needs
/// back before emitting.
pub struct Counted<'a> {
    words: [u32; 20],
    labels: Range<'a>,
    cells: u64,
    blocks: u64,
    items: usize,
    /// Triangles per cell (then, when indexed, owned vertices and records), made global.
    offsets: Vec<wgpu::Buffer>,
    /// Each array's block starts and total.
    sums: Vec<wgpu::Buffer>,
    /// When indexed: where each cell's far-edge vertices lie among its own.
    far: Option<wgpu::Buffer>,
}

impl Counted<'_> {
    pub fn reads(&self) -> Vec<Range<'_>> {
        (self.sums.iter())
            .map(|s| Range::prefix(s, (self.blocks + 1) * 4))
            .collect()
    }
}

/// Records the counts and scans of a piece whose voxels `labels` holds (every plane's rows
/// `piece.rows`, item after item).
fn count<'a>(
    gpu: &Gpu,
    k: &Kernels,
    enc: &mut wgpu::CommandEncoder,
    labels: Range<'a>,
    piece: &Piece,
    indexed: bool,
) -> Counted<'a> {
    let (item, cells) = (piece.item, piece.cells);
    let [nx, _, nz] = cells.size();
    let ny = (piece.y.end - piece.y.start) as usize;
    let rows = &piece.rows;
    let n_cells = (piece.items * nx * ny * nz) as u64;
    let blocks = n_cells.div_ceil(BLOCK);
    let words = [
        item.x as u32,
        item.y as u32,
        item.z as u32,
        (rows.end - rows.start).max(0) as u32,
        cells.lo[0] as u32,
        piece.y.start as u32,
        cells.lo[2] as u32,
        rows.start as u32,
        nx as u32,
        ny as u32,
        nz as u32,
        n_cells as u32,
        0,
        0,
        n_cells as u32,
        blocks as u32,
        0,
        0,
        k.ranks_at,
        0,
    ];
    let arrays = if indexed { 3 } else { 1 };
    let offsets: Vec<wgpu::Buffer> = (0..arrays).map(|_| gpu.zeroed(n_cells * 4)).collect();
    let sums: Vec<wgpu::Buffer> = (0..arrays).map(|_| gpu.zeroed((blocks + 1) * 4)).collect();
    let far = indexed.then(|| gpu.zeroed(n_cells * 4));
    let params = gpu.params(&words);
    let p = Range::whole(&params);
    let mut bind = vec![
        (0, p),
        (1, labels),
        (2, Range::whole(&k.cases)),
        (4, Range::whole(&offsets[0])),
    ];
    let pipeline = match indexed {
        true => {
            bind.push((7, Range::whole(&offsets[1])));
            bind.push((8, Range::whole(&offsets[2])));
            bind.push((11, Range::whole(far.as_ref().unwrap())));
            &k.count_indexed
        }
        false => &k.count,
    };
    gpu.dispatch_ranges(enc, pipeline, &bind, n_cells, WORKGROUP);
    // Each entry point's layout holds only the bindings it uses.
    for (o, s) in offsets.iter().zip(&sums) {
        let scan = [(0, &params), (4, o), (5, s)];
        gpu.dispatch(enc, &k.scan_blocks, &scan, blocks, 1);
        gpu.dispatch(enc, &k.scan_sums, &[(0, &params), (5, s)], 1, 1);
        gpu.dispatch(enc, &k.scan_add, &scan, n_cells, WORKGROUP);
    }
    Counted {
        words,
        labels,
        cells: n_cells,
        blocks,
        items: piece.items,
        offsets,
        sums,
        far,
    }
}

/// Block ranges `[b, e)` of a counted piece whose outputs each fit one binding, given the
/// block starts of each array and the bytes per unit of each.
fn emit_ranges(gpu: &Gpu, starts: &[Vec<u32>], unit: &[u64], blocks: u64) -> Vec<(u64, u64)> {
    let bytes =
        |a: usize, b: u64, e: u64| (starts[a][e as usize] - starts[a][b as usize]) as u64 * unit[a];
    let fits = |b: u64, e: u64| (0..starts.len()).all(|a| bytes(a, b, e) <= gpu.max_binding);
    let mut out = Vec::new();
    let mut b = 0u64;
    while b < blocks {
        // One block always goes alone: at most 256 cells of a dozen triangles each.
        let mut e = b + 1;
        while e < blocks && fits(b, e + 1) {
            e += 1;
        }
        out.push((b, e));
        b = e;
    }
    out
}

/// The surfaces of a counted piece of whole items, numbered on the device; `sums` holds the
/// bytes of `counted.reads()`, one after another.
pub fn emit_indexed(
    gpu: &Gpu,
    k: &Kernels,
    counted: &Counted,
    sums: &[u8],
) -> Result<Vec<Vec<LabelSurface>>> {
    let n = (counted.blocks + 1) as usize;
    let starts: Vec<Vec<u32>> = to_u32s(sums).chunks(n).map(<[u32]>::to_vec).collect();
    let vertices = starts[1][counted.blocks as usize];
    let mut ix = Indexer::new(counted.items, vertices as usize);
    let units = [TRI_BYTES, VERT_BYTES, RECORD_BYTES];
    for (b, e) in emit_ranges(gpu, &starts, &units, counted.blocks) {
        let first = |a: usize| starts[a][b as usize];
        let end = |a: usize| starts[a][e as usize];
        let len = |a: usize| (end(a) - first(a)) as u64;
        if len(2) == 0 {
            continue;
        }
        let (c0, c1) = (b * BLOCK, (e * BLOCK).min(counted.cells));
        let mut words = counted.words;
        words[12] = c0 as u32;
        words[13] = first(0);
        words[14] = (c1 - c0) as u32;
        words[16] = first(1);
        words[17] = first(2);
        let params = gpu.params(&words);
        let far = counted.far.as_ref().expect("an indexed piece");
        let out: Vec<wgpu::Buffer> = (0..3).map(|a| gpu.zeroed(len(a) * units[a])).collect();
        let mut enc = gpu.encoder();
        let bind = [
            (0, Range::whole(&params)),
            (1, counted.labels),
            (2, Range::whole(&k.cases)),
            (4, Range::whole(&counted.offsets[0])),
            (7, Range::whole(&counted.offsets[1])),
            (8, Range::whole(&counted.offsets[2])),
            (6, Range::whole(&out[0])),
            (9, Range::whole(&out[1])),
            (10, Range::whole(&out[2])),
            (11, Range::whole(far)),
        ];
        gpu.dispatch_ranges(&mut enc, &k.emit_indexed, &bind, c1 - c0, WORKGROUP);
        let reads: Vec<Range> = (0..3)
            .map(|a| Range::prefix(&out[a], len(a) * units[a]))
            .collect();
        let (got, at) = gpu.download(enc, &reads)?;
        let part = |a: usize| to_u32s(&got[at[a]..at[a] + (len(a) * units[a]) as usize]);
        ix.add(&part(2), &part(1), &part(0), first(1))?;
    }
    Ok(ix.finish())
}

/// Per-label meshes from the device's records, vertices and slot triangles.
struct Indexer {
    items: Vec<(HashMap<u64, usize>, Vec<LabelSurface>)>,
    /// A vertex slot's number in its label's mesh.
    local: Vec<u32>,
}

impl Indexer {
    fn new(items: usize, vertices: usize) -> Indexer {
        Indexer {
            items: (0..items).map(|_| Default::default()).collect(),
            local: vec![0; vertices],
        }
    }

    /// One emitted range: records (3 words), vertices (2) and triangles (3) whose first
    /// vertex slot is `v0`.
    fn add(&mut self, records: &[u32], verts: &[u32], tris: &[u32], v0: u32) -> Result<()> {
        let broken = |what: &str| ComputeError::Device(format!("surface: {what}"));
        let (mut v, mut t) = (0usize, 0usize);
        for w in records.chunks_exact(3) {
            let label = w[0] as u64 | (w[1] as u64) << 32;
            let (item, n_verts, n_tris) = (w[2] >> 16, (w[2] >> 8) & 0xff, w[2] & 0xff);
            let (index, meshes) = (self.items.get_mut(item as usize))
                .ok_or_else(|| broken("a record names no item of the piece"))?;
            let at = *index.entry(label).or_insert_with(|| {
                meshes.push(LabelSurface {
                    label,
                    ..Default::default()
                });
                meshes.len() - 1
            });
            let mesh = &mut meshes[at];
            let vs = verts
                .get(2 * v..2 * (v + n_verts as usize))
                .ok_or_else(|| broken("records name more vertices than came back"))?;
            for (k, p) in vs.chunks_exact(2).enumerate() {
                self.local[v0 as usize + v + k] = mesh.vertices.len() as u32;
                mesh.vertices.push([p[0] & 0xffff, p[0] >> 16, p[1]]);
            }
            v += n_verts as usize;
            let ts = tris
                .get(3 * t..3 * (t + n_tris as usize))
                .ok_or_else(|| broken("records name more triangles than came back"))?;
            for slots in ts.chunks_exact(3) {
                let mut tri = [0; 3];
                for (n, &slot) in tri.iter_mut().zip(slots) {
                    *n = *(self.local.get(slot as usize))
                        .ok_or_else(|| broken("a triangle names no vertex"))?;
                }
                mesh.triangles.push(tri);
            }
            t += n_tris as usize;
        }
        if 2 * v != verts.len() || 3 * t != tris.len() {
            return Err(broken("records and emitted vertices or triangles disagree"));
        }
        Ok(())
    }

    fn finish(self) -> Vec<Vec<LabelSurface>> {
        self.items
            .into_iter()
            .map(|(_, mut meshes)| {
                meshes.sort_unstable_by_key(|m| m.label);
                meshes
            })
            .collect()
    }
}

/// What counting `cells` whole items' cells takes: its largest binding (a word per cell, in
/// each of its arrays) and the bytes `Counted::reads` bring back (each of the three arrays'
/// block starts and total).
pub fn count_sizes(cells: u64) -> (u64, u64) {
    (cells * 4, 3 * (cells.div_ceil(BLOCK) + 1) * 4)
}

/// Records the counts of `items` whole items resident in `labels` on the device, for
/// `emit_indexed` after the caller's download of `reads()`.
pub fn count_items<'a>(
    gpu: &Gpu,
    k: &Kernels,
    enc: &mut wgpu::CommandEncoder,
    labels: Range<'a>,
    item: Shape,
    items: usize,
    cells: Cells,
) -> Counted<'a> {
    let piece = Piece {
        item,
        cells,
        items,
        y: cells.lo[1]..cells.hi[1],
        rows: 0..item.y as i32,
    };
    count(gpu, k, enc, labels, &piece, true)
}

pub fn surface(
    gpu: &Gpu,
    k: &Kernels,
    labels: &[u64],
    item: Shape,
    cells: Cells,
) -> Result<Vec<Vec<LabelSurface>>> {
    let items = labels.len() / item.voxels();
    let per_item_cells = cells.count() as u64;
    if per_item_cells == 0 {
        return Ok(vec![Vec::new(); items]);
    }
    let fit_items = (gpu.max_binding / (item.voxels() as u64 * 8))
        .min(gpu.max_binding / count_sizes(per_item_cells).0)
        .min(MAX_ITEMS as u64) as usize;
    if fit_items >= 1 {
        let mut out = Vec::with_capacity(items);
        for start in (0..items).step_by(fit_items) {
            let end = (start + fit_items).min(items);
            let v = item.voxels();
            let vox = gpu.storage(bytemuck::cast_slice(&labels[start * v..end * v]));
            let mut enc = gpu.encoder();
            let counted = count_items(
                gpu,
                k,
                &mut enc,
                Range::whole(&vox),
                item,
                end - start,
                cells,
            );
            let (sums, _) = gpu.download(enc, &counted.reads())?;
            out.extend(emit_indexed(gpu, k, &counted, &sums)?);
        }
        return Ok(out);
    }
    // Whole strips of one item: their cell rows plus the voxel row after them, every plane.
    let [nx, _, nz] = cells.size();
    let row_bytes = (item.x * item.z * 8) as u64;
    let rows = (gpu.max_binding / row_bytes)
        .saturating_sub(1)
        .min(gpu.max_binding / (nx * nz * 4) as u64) as usize;
    let strips = (rows / STRIP) as i32;
    if strips < 1 {
        // Not even one strip fits a binding.
        return Ok(reference::surface(labels, item, items, cells));
    }
    let mut out = Vec::with_capacity(items);
    for i in 0..items {
        let vol = &labels[i * item.voxels()..(i + 1) * item.voxels()];
        let mut assembler = Assembler::default();
        let mut y = cells.lo[1];
        while y < cells.hi[1] {
            let end = (y + strips * STRIP as i32).min(cells.hi[1]);
            // The strip's cell rows and the voxel row after them, clipped to the item.
            let rows = y.max(0)..(end + 1).min(item.y as i32);
            let piece = Piece {
                item,
                cells,
                items: 1,
                y: y..end,
                rows,
            };
            strip(gpu, k, vol, &piece, &mut assembler)?;
            y = end;
        }
        out.push(assembler.finish());
    }
    Ok(out)
}

/// One strip piece of one item's `vol`, its raw triangles pushed into `assembler`.
fn strip(
    gpu: &Gpu,
    k: &Kernels,
    vol: &[u64],
    piece: &Piece,
    assembler: &mut Assembler,
) -> Result<()> {
    let (item, rows) = (piece.item, &piece.rows);
    let (row0, n_rows) = (rows.start as usize, (rows.end - rows.start).max(0) as usize);
    let mut data = Vec::with_capacity(item.z * n_rows * item.x);
    for z in 0..item.z {
        let start = (z * item.y + row0) * item.x;
        data.extend_from_slice(&vol[start..start + n_rows * item.x]);
    }
    if data.is_empty() {
        data.push(0);
    }
    let vox = gpu.storage(bytemuck::cast_slice(&data));
    drop(data);
    let mut enc = gpu.encoder();
    let counted = count(gpu, k, &mut enc, Range::whole(&vox), piece, false);
    let (sums, _) = gpu.download(enc, &counted.reads())?;
    let starts = vec![to_u32s(&sums)];
    for (b, e) in emit_ranges(gpu, &starts, &[RAW_BYTES], counted.blocks) {
        let first = starts[0][b as usize];
        let total = (starts[0][e as usize] - first) as u64;
        if total == 0 {
            continue;
        }
        let (c0, c1) = (b * BLOCK, (e * BLOCK).min(counted.cells));
        let mut words = counted.words;
        words[12] = c0 as u32;
        words[13] = first;
        words[14] = (c1 - c0) as u32;
        let params = gpu.params(&words);
        let tris = gpu.zeroed(total * RAW_BYTES);
        let mut enc = gpu.encoder();
        let bind = [
            (0, &params),
            (1, &vox),
            (2, &k.cases),
            (4, &counted.offsets[0]),
            (6, &tris),
        ];
        gpu.dispatch(&mut enc, &k.emit, &bind, c1 - c0, WORKGROUP);
        let bytes = gpu.read(enc, &[(&tris, total * RAW_BYTES)])?.swap_remove(0);
        for r in to_u32s(&bytes).chunks_exact(8) {
            let corner = |j: usize| [r[2 + 2 * j] & 0xffff, r[2 + 2 * j] >> 16, r[3 + 2 * j]];
            let label = r[0] as u64 | (r[1] as u64) << 32;
            assembler.push(label, [corner(0), corner(1), corner(2)]);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cell on every low side of the box owns every vertex of its case, one inside it those
    /// on its three far edges (3, 7, 11), each numbered 0.. in order of first use.
    #[test]
    fn ranks_number_the_owned_crossed_edges_in_order_of_first_use() {
        let (r, t) = (ranks(), table());
        let far = 1 << 3 | 1 << 7 | 1 << 11;
        for m in 0..256 {
            let tris = &t.triangles[t.start[m] as usize..t.start[m + 1] as usize];
            let crossed = tris.iter().flatten().fold(0u32, |b, &e| b | 1 << e);
            for (low, owned) in [(7, crossed), (0, crossed & far)] {
                let w = [r[(low * 256 + m) * 2], r[(low * 256 + m) * 2 + 1]];
                assert_eq!(w[1] >> 16, owned, "case {m}, low sides {low}");
                let rank = |e: usize| match e < 8 {
                    true => w[0] >> (4 * e) & 15,
                    false => w[1] >> (4 * (e - 8)) & 15,
                };
                let mut next = 0;
                for &e in tris.iter().flatten() {
                    let e = e as usize;
                    if owned >> e & 1 == 0 {
                        assert_eq!(rank(e), NOT_OWNED, "case {m}, edge {e}");
                    } else if rank(e) == next {
                        next += 1;
                    } else {
                        assert!(rank(e) < next, "case {m}, edge {e}: numbered out of order");
                    }
                }
                assert_eq!(next, owned.count_ones(), "case {m}");
            }
        }
    }
}

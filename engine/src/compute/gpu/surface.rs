//! `surface` on the device: count, scan and emit (shaders/surface.wgsl) over pieces of the
//! batch that fit the bindings, triangles read back in cell order and indexed on the host by
//! the same `Assembler` the reference uses.

use super::device::{Gpu, WORKGROUP, to_u32s};
use crate::compute::surface::{Assembler, Cells, LabelSurface, STRIP, table};
use crate::compute::{Result, Shape, reference};

/// The four entry points of surface.wgsl.
pub struct Kernels<'a> {
    pub count: &'a wgpu::ComputePipeline,
    pub scan_blocks: &'a wgpu::ComputePipeline,
    pub scan_sums: &'a wgpu::ComputePipeline,
    pub emit: &'a wgpu::ComputePipeline,
}

const BLOCK: u64 = 256;
/// Bytes per emitted triangle: label, then three (xy, z) corners.
const TRIANGLE_BYTES: u64 = 32;

/// A piece of work: items `items` (all their cells), or the cell rows `y` (whole strips of
/// the canonical order) of one item.
struct Piece {
    items: std::ops::Range<usize>,
    y: std::ops::Range<i32>,
}

pub fn surface(
    gpu: &Gpu,
    k: &Kernels,
    labels: &[u64],
    item: Shape,
    cells: Cells,
) -> Result<Vec<Vec<LabelSurface>>> {
    let items = labels.len() / item.voxels();
    let [nx, ny, nz] = cells.size();
    let per_item_cells = (nx * ny * nz) as u64;
    let mut out: Vec<Assembler> = (0..items).map(|_| Assembler::default()).collect();
    if per_item_cells == 0 {
        return Ok(out.into_iter().map(Assembler::finish).collect());
    }
    let row_bytes = (item.x * item.z * 8) as u64;
    // At most 2^16 items a piece: a triangle names its item in 16 bits.
    let fit_items = (gpu.max_binding / (item.voxels() as u64 * 8))
        .min(gpu.max_binding / (per_item_cells * 4))
        .min(1 << 16) as usize;
    let mut pieces = Vec::new();
    if fit_items >= 1 {
        for start in (0..items).step_by(fit_items) {
            pieces.push(Piece {
                items: start..(start + fit_items).min(items),
                y: cells.lo[1]..cells.hi[1],
            });
        }
    } else {
        // Whole strips of one item: their cell rows plus the voxel row after them, every plane.
        let rows = (gpu.max_binding / row_bytes)
            .saturating_sub(1)
            .min(gpu.max_binding / (nx * nz * 4) as u64) as usize;
        let strips = (rows / STRIP) as i32;
        if strips < 1 {
            // Not even one strip fits a binding.
            return Ok(reference::surface(labels, item, items, cells));
        }
        for i in 0..items {
            let mut y = cells.lo[1];
            while y < cells.hi[1] {
                let end = (y + strips * STRIP as i32).min(cells.hi[1]);
                pieces.push(Piece {
                    items: i..i + 1,
                    y: y..end,
                });
                y = end;
            }
        }
    }
    let t = table();
    let starts: Vec<u32> = t.start.iter().map(|&s| s as u32).collect();
    let tris: Vec<u32> = t
        .triangles
        .iter()
        .map(|e| e[0] as u32 | (e[1] as u32) << 4 | (e[2] as u32) << 8)
        .collect();
    let case_start = gpu.storage(bytemuck::cast_slice(&starts));
    let case_tris = gpu.storage(bytemuck::cast_slice(&tris));
    for piece in pieces {
        run_piece(
            gpu,
            k,
            labels,
            item,
            cells,
            &piece,
            [&case_start, &case_tris],
            |i, tri| out[i].push(tri.0, tri.1),
        )?;
    }
    Ok(out.into_iter().map(Assembler::finish).collect())
}

#[allow(clippy::too_many_arguments)]
fn run_piece(
    gpu: &Gpu,
    k: &Kernels,
    labels: &[u64],
    item: Shape,
    cells: Cells,
    piece: &Piece,
    [case_start, case_tris]: [&wgpu::Buffer; 2],
    mut push: impl FnMut(usize, (u64, [[u32; 3]; 3])),
) -> Result<()> {
    let [nx, _, nz] = cells.size();
    let ny = (piece.y.end - piece.y.start) as usize;
    // The voxel rows the piece's cells read, clipped to the item, from every plane.
    let row0 = piece.y.start.max(0);
    let row1 = (piece.y.end + 1).min(item.y as i32);
    let rows = (row1 - row0).max(0) as usize;
    let mut data = Vec::with_capacity(piece.items.len() * item.z * rows * item.x);
    for i in piece.items.clone() {
        for z in 0..item.z {
            let start = i * item.voxels() + (z * item.y + row0 as usize) * item.x;
            data.extend_from_slice(&labels[start..start + rows * item.x]);
        }
    }
    if data.is_empty() {
        data.push(0);
    }
    let n_cells = (piece.items.len() * nx * ny * nz) as u64;
    let blocks = n_cells.div_ceil(BLOCK);
    let mut words = [
        item.x as u32,
        item.y as u32,
        item.z as u32,
        rows as u32,
        cells.lo[0] as u32,
        piece.y.start as u32,
        cells.lo[2] as u32,
        row0 as u32,
        nx as u32,
        ny as u32,
        nz as u32,
        n_cells as u32,
        0,
        0,
        n_cells as u32,
        blocks as u32,
    ];
    let vox = gpu.storage(bytemuck::cast_slice(&data));
    let offsets = gpu.zeroed(n_cells * 4);
    let sums = gpu.zeroed((blocks + 1) * 4);
    let params = gpu.params(&words);
    // Each entry point's layout holds only the bindings it uses.
    let mut enc = gpu.encoder();
    let count = [(0, &params), (1, &vox), (2, case_start), (4, &offsets)];
    gpu.dispatch(&mut enc, k.count, &count, n_cells, WORKGROUP);
    let scan = [(0, &params), (4, &offsets), (5, &sums)];
    gpu.dispatch(&mut enc, k.scan_blocks, &scan, blocks, 1);
    gpu.dispatch(&mut enc, k.scan_sums, &[(0, &params), (5, &sums)], 1, 1);
    let block_starts = to_u32s(&gpu.read(enc, &[(&sums, (blocks + 1) * 4)])?[0]);
    // Emit block ranges whose triangles fit one binding.
    let cap = (gpu.max_binding / TRIANGLE_BYTES).max(BLOCK * 12);
    let mut b = 0u64;
    while b < blocks {
        let first = block_starts[b as usize] as u64;
        let mut e = b + 1;
        while e < blocks && (block_starts[e as usize + 1] as u64 - first) <= cap {
            e += 1;
        }
        let total = block_starts[e as usize] as u64 - first;
        let c0 = b * BLOCK;
        let c1 = (e * BLOCK).min(n_cells);
        b = e;
        if total == 0 {
            continue;
        }
        words[12] = c0 as u32;
        words[13] = first as u32;
        words[14] = (c1 - c0) as u32;
        let params = gpu.params(&words);
        let tris = gpu.zeroed(total * TRIANGLE_BYTES);
        let mut enc = gpu.encoder();
        let emit = [
            (0, &params),
            (1, &vox),
            (2, case_start),
            (3, case_tris),
            (4, &offsets),
            (5, &sums),
            (6, &tris),
        ];
        gpu.dispatch(&mut enc, k.emit, &emit, c1 - c0, WORKGROUP);
        let bytes = gpu
            .read(enc, &[(&tris, total * TRIANGLE_BYTES)])?
            .swap_remove(0);
        for r in to_u32s(&bytes).chunks_exact(8) {
            let corner = |j: usize| {
                [
                    r[2 + 2 * j] & 0xffff,
                    r[2 + 2 * j] >> 16,
                    r[3 + 2 * j] & 0xffff,
                ]
            };
            let label = r[0] as u64 | (r[1] as u64) << 32;
            let item_i = piece.items.start + (r[3] >> 16) as usize;
            push(item_i, (label, [corner(0), corner(1), corner(2)]));
        }
    }
    Ok(())
}

//! Label rewrites: `relabel` (every voxel) and `split_apply` (voxels under a run mask).

use super::device::{Gpu, Range, WORKGROUP, to_u64s};
use crate::compute::{LabelTable, Result, Run, Shape, normalize_runs, reference};

/// Table buffers (sorted keys, values), shared by every chunk of one call.
fn table_buffers(gpu: &Gpu, table: &LabelTable) -> (wgpu::Buffer, wgpu::Buffer) {
    (
        gpu.storage(bytemuck::cast_slice(table.from())),
        gpu.storage(bytemuck::cast_slice(table.to())),
    )
}

pub fn table_fits(gpu: &Gpu, table: &LabelTable) -> bool {
    (table.len() as u64) * 8 <= gpu.max_binding
}

/// Records `relabel` of the `n` labels of `labels` through the table `keys` → `values` of
/// `table_len` entries (`params`: `[n, table_len]`).
pub fn record_relabel(
    gpu: &Gpu,
    enc: &mut wgpu::CommandEncoder,
    pipe: &wgpu::ComputePipeline,
    [params, labels, keys, values]: [Range; 4],
    n: usize,
) {
    let bindings = [(0, params), (1, labels), (2, keys), (3, values)];
    gpu.dispatch_ranges(enc, pipe, &bindings, n as u64, WORKGROUP);
}

/// The split kernel's parameters: `runs` runs, a table of `table_len` entries, a volume of
/// width and height `shape.x`, `shape.y` whose planes from `z0` on are bound as the labels.
pub fn split_params(runs: usize, table_len: usize, shape: Shape, z0: usize) -> [u32; 5] {
    [
        runs as u32,
        table_len as u32,
        shape.x as u32,
        shape.y as u32,
        z0 as u32,
    ]
}

/// Records `split_apply` of `runs` normalized runs (as `[x, y, z, len]` u32 quads) to the
/// labels; `written` (a zeroed u32) gains the voxels written.
pub fn record_split(
    gpu: &Gpu,
    enc: &mut wgpu::CommandEncoder,
    pipe: &wgpu::ComputePipeline,
    [params, labels, keys, values, run_quads, written]: [Range; 6],
    runs: usize,
) {
    let bindings = [
        (0, params),
        (1, labels),
        (2, keys),
        (3, values),
        (4, run_quads),
        (5, written),
    ];
    gpu.dispatch_ranges(enc, pipe, &bindings, runs as u64, WORKGROUP);
}

/// Runs as the split kernel reads them.
pub fn quads(runs: &[Run]) -> Vec<[u32; 4]> {
    runs.iter()
        .map(|r| [r.x as u32, r.y as u32, r.z as u32, r.len as u32])
        .collect()
}

pub fn relabel(
    gpu: &Gpu,
    pipe: &wgpu::ComputePipeline,
    labels: &mut [u64],
    table: &LabelTable,
) -> Result<()> {
    if table.is_empty() || labels.is_empty() {
        return Ok(());
    }
    if !table_fits(gpu, table) {
        reference::relabel(labels, table);
        return Ok(());
    }
    let (keys, values) = table_buffers(gpu, table);
    let chunk = (gpu.max_binding / 8) as usize;
    for part in labels.chunks_mut(chunk) {
        let buf = gpu.storage(bytemuck::cast_slice(part));
        let params = gpu.params(&[part.len() as u32, table.len() as u32]);
        let mut enc = gpu.encoder();
        let ranges = [&params, &buf, &keys, &values].map(Range::whole);
        record_relabel(gpu, &mut enc, pipe, ranges, part.len());
        let out = gpu.read(enc, &[(&buf, part.len() as u64 * 8)])?;
        part.copy_from_slice(&to_u64s(&out[0]));
    }
    Ok(())
}

/// Runs are normalized again here (it is idempotent and cheap), so the result never depends
/// on the caller's keeping the contract; then the volume is processed in z-slabs of at most
/// one binding, and only slabs that some run touches are uploaded.
pub fn split_apply(
    gpu: &Gpu,
    pipe: &wgpu::ComputePipeline,
    labels: &mut [u64],
    shape: Shape,
    runs: &[Run],
    table: &LabelTable,
) -> Result<u64> {
    let runs = normalize_runs(runs, shape);
    if table.is_empty() || runs.is_empty() {
        return Ok(0);
    }
    let plane = shape.x * shape.y;
    let slab = (gpu.max_binding as usize / 8 / plane).min(shape.z);
    if slab == 0 || !table_fits(gpu, table) {
        return Ok(reference::split_apply(labels, shape, &runs, table));
    }
    let (keys, values) = table_buffers(gpu, table);
    let max_runs = (gpu.max_binding / 16) as usize;
    let mut written = 0u64;
    let mut rest = runs.as_slice();
    while let Some(first) = rest.first() {
        let z0 = first.z as usize;
        let z1 = (z0 + slab).min(shape.z);
        let n = rest
            .iter()
            .take(max_runs)
            .take_while(|r| (r.z as usize) < z1)
            .count();
        let (these, later) = rest.split_at(n);
        rest = later;
        let quads = quads(these);
        let part = &mut labels[z0 * plane..z1 * plane];
        let buf = gpu.storage(bytemuck::cast_slice(part));
        let run_buf = gpu.storage(bytemuck::cast_slice(&quads));
        let count = gpu.zeroed(4);
        let params = gpu.params(&split_params(quads.len(), table.len(), shape, z0));
        let mut enc = gpu.encoder();
        let mut ranges = [&params, &buf, &keys, &values, &run_buf, &count].map(Range::whole);
        ranges[5] = Range::prefix(&count, 4);
        record_split(gpu, &mut enc, pipe, ranges, quads.len());
        let out = gpu.read(enc, &[(&buf, part.len() as u64 * 8), (&count, 4)])?;
        part.copy_from_slice(&to_u64s(&out[0]));
        written += u32::from_le_bytes(out[1][..4].try_into().unwrap()) as u64;
    }
    Ok(written)
}

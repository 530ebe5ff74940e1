//! Voxels per label per block: a device hash histogram per block, compacted on the device into
//! (label, count, block) entries; the host only sorts each block's few entries by label.

use super::device::{Gpu, Range, WORKGROUP, to_u32s, to_u64s};
use crate::compute::{BlockCounts, ComputeError, Result, Shape, reference};

/// log2 of the hash slots per block: a power of two at least twice the voxels, so probing
/// always ends.
pub fn slots_log2(block: Shape) -> u32 {
    (2 * block.voxels()).next_power_of_two().trailing_zeros()
}

/// The kernel's parameters for `blocks` blocks.
pub fn params(block: Shape, blocks: usize) -> [u32; 4] {
    let log2 = slots_log2(block);
    [
        (blocks * block.voxels()) as u32,
        block.voxels() as u32,
        log2,
        ((blocks as u64) << log2) as u32,
    ]
}

/// The buffers one count runs on.
pub struct Buffers<'a> {
    pub params: Range<'a>,
    pub labels: Range<'a>,
    /// Zeroed, 4 bytes a slot each.
    pub owner: Range<'a>,
    pub count: Range<'a>,
    /// 8 bytes an entry each; entries past their end are counted but dropped.
    pub entry_labels: Range<'a>,
    pub entry_meta: Range<'a>,
    /// Zeroed u32: the entries found.
    pub cursor: Range<'a>,
}

/// Records both passes for `blocks` blocks.
pub fn record(
    gpu: &Gpu,
    enc: &mut wgpu::CommandEncoder,
    [insert, compact]: [&wgpu::ComputePipeline; 2],
    b: &Buffers,
    block: Shape,
    blocks: usize,
) {
    let tables = [(0, b.params), (1, b.labels), (2, b.owner), (3, b.count)];
    let voxels = (blocks * block.voxels()) as u64;
    gpu.dispatch_ranges(enc, insert, &tables, voxels, WORKGROUP);
    let all = [
        tables.as_slice(),
        &[(4, b.entry_labels), (5, b.cursor), (6, b.entry_meta)],
    ]
    .concat();
    let slots = (blocks as u64) << slots_log2(block);
    gpu.dispatch_ranges(enc, compact, &all, slots, WORKGROUP);
}

/// Per-block counts from the first `used` entries (labels and meta as the device wrote them),
/// for `blocks` blocks; `room` is how many entries the arrays held.
pub fn collect(
    labels: &[u8],
    meta: &[u8],
    used: usize,
    room: usize,
    blocks: usize,
) -> Result<Vec<BlockCounts>> {
    if used > room {
        return Err(ComputeError::Device(format!(
            "label counts found {used} entries where at most {room} can exist"
        )));
    }
    let labels = to_u64s(&labels[..used * 8]);
    let meta = to_u32s(&meta[..used * 8]);
    let mut found: Vec<(u32, u64, u32)> = labels
        .iter()
        .zip(meta.chunks_exact(2))
        .map(|(&l, m)| (m[1], l, m[0]))
        .collect();
    found.sort_unstable();
    let mut per_block = vec![BlockCounts::default(); blocks];
    for (b, label, n) in found {
        per_block[b as usize].labels.push(label);
        per_block[b as usize].counts.push(n);
    }
    Ok(per_block)
}

pub fn label_counts(
    gpu: &Gpu,
    kernels: [&wgpu::ComputePipeline; 2],
    blocks: &[u64],
    block: Shape,
) -> Result<Vec<BlockCounts>> {
    block.check_batch(blocks.len(), "label counts")?;
    let v = block.voxels();
    let slot_bytes = 4u64 << slots_log2(block);
    // Per block: the labels and each entry array (8 B/voxel worst case), and the two tables.
    let per_block = (8 * v as u64).max(slot_bytes);
    let per_chunk = (gpu.max_binding / per_block) as usize;
    if per_chunk == 0 {
        return Ok(reference::label_counts(blocks, block));
    }
    let mut out = Vec::with_capacity(blocks.len() / v);
    for chunk in blocks.chunks(per_chunk * v) {
        let n_blocks = chunk.len() / v;
        let slots = (n_blocks as u64) << slots_log2(block);
        let labels = gpu.storage(bytemuck::cast_slice(chunk));
        let owner = gpu.zeroed(slots * 4);
        let count = gpu.zeroed(slots * 4);
        let entry_labels = gpu.zeroed(chunk.len() as u64 * 8);
        let entry_meta = gpu.zeroed(chunk.len() as u64 * 8);
        let cursor = gpu.zeroed(4);
        let params = gpu.params(&params(block, n_blocks));
        let buffers = Buffers {
            params: Range::whole(&params),
            labels: Range::whole(&labels),
            owner: Range::whole(&owner),
            count: Range::whole(&count),
            entry_labels: Range::whole(&entry_labels),
            entry_meta: Range::whole(&entry_meta),
            cursor: Range::prefix(&cursor, 4),
        };
        let mut enc = gpu.encoder();
        record(gpu, &mut enc, kernels, &buffers, block, n_blocks);
        let used = to_u32s(&gpu.read(enc, &[(&cursor, 4)])?[0])[0] as usize;
        // Only the used entries come back.
        let got = gpu.read(
            gpu.encoder(),
            &[
                (&entry_labels, used as u64 * 8),
                (&entry_meta, used as u64 * 8),
            ],
        )?;
        out.extend(collect(&got[0], &got[1], used, chunk.len(), n_blocks)?);
    }
    Ok(out)
}

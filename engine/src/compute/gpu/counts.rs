//! Voxels per label per block: a device hash histogram per block, compacted on the device into
//! (label, count, block) entries; the host only sorts each block's few entries by label.

use super::device::{Gpu, WORKGROUP, to_u32s};
use crate::compute::{BlockCounts, Result, Shape, reference};

pub fn label_counts(
    gpu: &Gpu,
    [insert, compact]: [&wgpu::ComputePipeline; 2],
    blocks: &[u64],
    block: Shape,
) -> Result<Vec<BlockCounts>> {
    block.check_batch(blocks.len(), "label counts")?;
    let v = block.voxels();
    // Slots per block: a power of two at least twice the voxels, so probing always ends.
    let slots_log2 = (2 * v).next_power_of_two().trailing_zeros();
    let slot_bytes = 4u64 << slots_log2;
    // Per block: the labels (8 B/voxel), worst-case entries (16 B/voxel), and the two tables.
    let per_block = (16 * v as u64).max(slot_bytes);
    let per_chunk = (gpu.max_binding / per_block) as usize;
    if per_chunk == 0 {
        return Ok(reference::label_counts(blocks, block));
    }
    let mut out = Vec::with_capacity(blocks.len() / v);
    for chunk in blocks.chunks(per_chunk * v) {
        let n_blocks = chunk.len() / v;
        let slots = (n_blocks as u64) << slots_log2;
        let labels = gpu.storage(bytemuck::cast_slice(chunk));
        let owner = gpu.zeroed(slots * 4);
        let count = gpu.zeroed(slots * 4);
        let entries = gpu.zeroed(chunk.len() as u64 * 16);
        let cursor = gpu.zeroed(4);
        let params = gpu.params(&[chunk.len() as u32, v as u32, slots_log2, slots as u32]);
        let mut enc = gpu.encoder();
        let tables = [(0, &params), (1, &labels), (2, &owner), (3, &count)];
        gpu.dispatch(&mut enc, insert, &tables, chunk.len() as u64, WORKGROUP);
        let all = [tables.as_slice(), &[(4, &entries), (5, &cursor)]].concat();
        gpu.dispatch(&mut enc, compact, &all, slots, WORKGROUP);
        let used = to_u32s(&gpu.read(enc, &[(&cursor, 4)])?[0])[0] as u64;
        // Only the used entries come back.
        let bytes = gpu
            .read(gpu.encoder(), &[(&entries, used * 16)])?
            .swap_remove(0);
        let mut found: Vec<(u32, u64, u32)> = to_u32s(&bytes)
            .chunks_exact(4)
            .map(|e| (e[3], e[0] as u64 | (e[1] as u64) << 32, e[2]))
            .collect();
        found.sort_unstable();
        let mut per_block = vec![BlockCounts::default(); n_blocks];
        for (b, label, n) in found {
            per_block[b as usize].labels.push(label);
            per_block[b as usize].counts.push(n);
        }
        out.extend(per_block);
    }
    Ok(out)
}

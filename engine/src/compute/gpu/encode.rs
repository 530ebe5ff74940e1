//! Canonical block encode. The per-voxel work (numbering each sub-block's labels in order of
//! first appearance, and bit-packing every voxel's local index) runs on the device; the host
//! merges the per-sub-block label lists into the block table (first appearance, so a serial
//! walk over sum(Ns) entries, not over voxels) and lays out the bytes.
//!
//! Every block shape the codec accepts (`codec::check_block_shape`) runs on the device: a
//! sub-block's packed values are 64·bits bytes, always whole words, and the host copies them
//! into place, so the output's word alignment never matters.

use std::collections::HashMap;

use super::device::{Gpu, Range, WORKGROUP, to_u32s, to_u64s};
use crate::compute::{Result, Shape, codec};

/// Words per sub-block in the fixed packed-value layout (9 bits × 512 values / 32).
pub const SLOT_WORDS: usize = 144;

/// The kernels' parameters for `n_sub` sub-blocks of blocks of `block`; `fixed` selects the
/// fixed layout (512 labels and `SLOT_WORDS` words a sub-block) over the `slots` binding.
pub fn params(block: Shape, n_sub: usize, fixed: bool) -> [u32; 8] {
    [
        n_sub as u32,
        block.x as u32,
        block.y as u32,
        block.z as u32,
        (block.x / 8) as u32,
        (block.y / 8) as u32,
        (block.voxels() / 512) as u32,
        fixed as u32,
    ]
}

/// The buffers one encode runs on.
pub struct Buffers<'a> {
    pub params: Range<'a>,
    pub labels: Range<'a>,
    /// Zeroed scratch, 4 bytes a voxel.
    pub index: Range<'a>,
    /// Each sub-block's label count, 4 bytes a sub-block.
    pub counts: Range<'a>,
    /// Each sub-block's labels, at its slot.
    pub lists: Range<'a>,
    /// Each sub-block's packed values, at its slot.
    pub packed: Range<'a>,
    /// (first label, capacity, first word, 0) per sub-block; any 16 bytes when `fixed`.
    pub slots: Range<'a>,
}

/// Records both passes over `n_sub` sub-blocks.
pub fn record(
    gpu: &Gpu,
    enc: &mut wgpu::CommandEncoder,
    [locals, pack]: [&wgpu::ComputePipeline; 2],
    b: &Buffers,
    n_sub: usize,
) {
    let first = [
        (0, b.params),
        (1, b.labels),
        (2, b.index),
        (3, b.counts),
        (4, b.lists),
        (6, b.slots),
    ];
    gpu.dispatch_ranges(enc, locals, &first, n_sub as u64, 1);
    let second = [
        (0, b.params),
        (2, b.index),
        (3, b.counts),
        (5, b.packed),
        (6, b.slots),
    ];
    let words = (n_sub * SLOT_WORDS) as u64;
    gpu.dispatch_ranges(enc, pack, &second, words, WORKGROUP);
}

/// Packed-value bytes of a sub-block with `n` labels.
pub fn packed_bytes(n: u32) -> usize {
    if n < 2 {
        0
    } else {
        64 * ((n - 1).ilog2() as usize + 1)
    }
}

pub fn block_encode(
    gpu: &Gpu,
    kernels: [&wgpu::ComputePipeline; 2],
    labels: &[u64],
    block: Shape,
) -> Result<Vec<Vec<u8>>> {
    codec::check_block_shape(block)?;
    block.check_batch(labels.len(), "block encode")?;
    let v = block.voxels();
    let dims = [block.x / 8, block.y / 8, block.z / 8];
    let nsb = v / 512;
    // Largest per-block buffers: the labels and the sub-block label lists, 8 B/voxel each.
    let per_chunk = (gpu.max_binding as usize / (8 * v)).max(1);
    if v * 8 > gpu.max_binding as usize {
        // Only with a binding limit below one block: encoded by the CPU codec.
        return labels.chunks(v).map(|b| codec::encode(b, block)).collect();
    }
    let mut out = Vec::with_capacity(labels.len() / v);
    for chunk in labels.chunks(per_chunk * v) {
        let n_sub = chunk.len() / 512;
        let input = gpu.storage(bytemuck::cast_slice(chunk));
        let index = gpu.zeroed(chunk.len() as u64 * 4);
        let counts = gpu.zeroed(n_sub as u64 * 4);
        let lists = gpu.zeroed(chunk.len() as u64 * 8);
        let packed = gpu.zeroed((n_sub * SLOT_WORDS * 4) as u64);
        let unused = gpu.zeroed(16);
        let params = gpu.params(&params(block, n_sub, true));
        let buffers = Buffers {
            params: Range::whole(&params),
            labels: Range::whole(&input),
            index: Range::whole(&index),
            counts: Range::whole(&counts),
            lists: Range::whole(&lists),
            packed: Range::whole(&packed),
            slots: Range::whole(&unused),
        };
        let mut enc = gpu.encoder();
        record(gpu, &mut enc, kernels, &buffers, n_sub);
        let got = gpu.read(
            enc,
            &[
                (&counts, n_sub as u64 * 4),
                (&lists, chunk.len() as u64 * 8),
                (&packed, (n_sub * SLOT_WORDS * 4) as u64),
            ],
        )?;
        let counts = to_u32s(&got[0]);
        let lists = to_u64s(&got[1]);
        let list_at: Vec<usize> = (0..nsb).map(|s| s * 512).collect();
        let pack_at: Vec<usize> = (0..nsb).map(|s| s * SLOT_WORDS * 4).collect();
        for b in 0..chunk.len() / v {
            let subs = b * nsb..(b + 1) * nsb;
            out.push(assemble(
                dims,
                &counts[subs.clone()],
                &lists[subs.start * 512..subs.end * 512],
                &list_at,
                &got[2][subs.start * SLOT_WORDS * 4..subs.end * SLOT_WORDS * 4],
                &pack_at,
            ));
        }
    }
    Ok(out)
}

/// One block's bytes from its sub-blocks' label counts, label lists (sub-block `s`'s labels
/// start at `lists[list_at[s]]`) and packed values (at `packed[pack_at[s]]`).
pub fn assemble(
    dims: [usize; 3],
    counts: &[u32],
    lists: &[u64],
    list_at: &[usize],
    packed: &[u8],
    pack_at: &[usize],
) -> Vec<u8> {
    let list = |s: usize| &lists[list_at[s]..list_at[s] + counts[s] as usize];
    let mut out = Vec::new();
    for g in dims {
        out.extend_from_slice(&(g as u32).to_le_bytes());
    }
    let first = lists[list_at[0]];
    if (0..counts.len()).all(|s| counts[s] == 1 && list(s)[0] == first) {
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&first.to_le_bytes());
        return out;
    }
    let mut table: Vec<u64> = Vec::new();
    let mut position: HashMap<u64, u32> = HashMap::new();
    let mut sb_idx: Vec<u32> = Vec::new();
    for s in 0..counts.len() {
        for &l in list(s) {
            let at = *position.entry(l).or_insert_with(|| {
                table.push(l);
                table.len() as u32 - 1
            });
            sb_idx.push(at);
        }
    }
    out.extend_from_slice(&(table.len() as u32).to_le_bytes());
    for l in &table {
        out.extend_from_slice(&l.to_le_bytes());
    }
    for &n in counts {
        out.extend_from_slice(&(n as u16).to_le_bytes());
    }
    for t in &sb_idx {
        out.extend_from_slice(&t.to_le_bytes());
    }
    for (s, &n) in counts.iter().enumerate() {
        let len = packed_bytes(n);
        out.extend_from_slice(&packed[pack_at[s]..pack_at[s] + len]);
    }
    out
}

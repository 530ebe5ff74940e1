//! Canonical block encode. The per-voxel work (numbering each sub-block's labels in order of
//! first appearance, and bit-packing every voxel's local index) runs on the device; the host
//! merges the per-sub-block label lists into the block table (first appearance, so a serial
//! walk over sum(Ns) entries, not over voxels) and lays out the bytes.
//!
//! Every block shape the codec accepts (`codec::check_block_shape`) runs on the device: a
//! sub-block's packed values are 64·bits bytes, always whole words, and the host copies them
//! into place, so the output's word alignment never matters.

use std::collections::HashMap;

use super::device::{Gpu, WORKGROUP, to_u32s, to_u64s};
use crate::compute::{Result, Shape, codec};

/// Words per sub-block in the device's packed-value buffer (9 bits × 512 values / 32).
const SLOT_WORDS: usize = 144;

pub fn block_encode(
    gpu: &Gpu,
    [locals, pack]: [&wgpu::ComputePipeline; 2],
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
        let params = gpu.params(&[
            n_sub as u32,
            block.x as u32,
            block.y as u32,
            block.z as u32,
            dims[0] as u32,
            dims[1] as u32,
            nsb as u32,
        ]);
        let mut enc = gpu.encoder();
        let first = [
            (0, &params),
            (1, &input),
            (2, &index),
            (3, &counts),
            (4, &lists),
        ];
        gpu.dispatch(&mut enc, locals, &first, n_sub as u64, 1);
        let second = [(0, &params), (2, &index), (3, &counts), (5, &packed)];
        gpu.dispatch(
            &mut enc,
            pack,
            &second,
            (n_sub * SLOT_WORDS) as u64,
            WORKGROUP,
        );
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
        for b in 0..chunk.len() / v {
            let subs = b * nsb..(b + 1) * nsb;
            out.push(assemble(
                dims,
                &counts[subs.clone()],
                &lists[subs.start * 512..subs.end * 512],
                &got[2][subs.start * SLOT_WORDS * 4..subs.end * SLOT_WORDS * 4],
            ));
        }
    }
    Ok(out)
}

/// One block's bytes from its sub-blocks' label counts, label lists (stride 512) and packed
/// values (stride `SLOT_WORDS` words).
fn assemble(dims: [usize; 3], counts: &[u32], lists: &[u64], packed: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for g in dims {
        out.extend_from_slice(&(g as u32).to_le_bytes());
    }
    let first = lists[0];
    if counts
        .iter()
        .zip(lists.chunks(512))
        .all(|(&n, l)| n == 1 && l[0] == first)
    {
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&first.to_le_bytes());
        return out;
    }
    let mut table: Vec<u64> = Vec::new();
    let mut position: HashMap<u64, u32> = HashMap::new();
    let mut sb_idx: Vec<u32> = Vec::new();
    for (&n, list) in counts.iter().zip(lists.chunks(512)) {
        for &l in &list[..n as usize] {
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
    for (&n, slot) in counts.iter().zip(packed.chunks(SLOT_WORDS * 4)) {
        if n >= 2 {
            let bits = (n - 1).ilog2() as usize + 1;
            out.extend_from_slice(&slot[..64 * bits]);
        }
    }
    out
}

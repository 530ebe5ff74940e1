//! Block decode: the host validates every block with the CPU codec's header walk (cheap, and
//! it rejects malformed blocks before the device sees them) and describes each sub-block by
//! offsets into the uploaded bytes; the device then decodes one voxel per invocation. The one
//! check left to the device is that each packed index is below its sub-block's `Ns`.

use super::device::{Gpu, Range, WORKGROUP, to_u32s};
use crate::compute::codec::{self, index_bits};
use crate::compute::{ComputeError, Result, Shape};

/// sbIdx offset of a solid block's sub-blocks: the shader reads labels[0].
const SOLID: u32 = u32::MAX;

fn bad(msg: impl Into<String>) -> ComputeError {
    ComputeError::BadInput(msg.into())
}

/// One validated block: its shape, the entries of its label table, and its sub-block
/// descriptors, byte offsets relative to the block's first byte: (Ns, sbIdx offset, values bit
/// offset, label table offset).
pub struct Walked {
    pub shape: Shape,
    pub labels: usize,
    pub subs: Vec<[u32; 4]>,
}

pub fn walk(b: &[u8]) -> Result<Walked> {
    let h = codec::header(b)?;
    let table = h.table_at as u32;
    if h.is_solid() {
        let subs = vec![[1, SOLID, 0, table]; h.sub_blocks()];
        return Ok(Walked {
            shape: h.shape(),
            labels: 1,
            subs,
        });
    }
    let mut subs = Vec::with_capacity(h.sub_blocks());
    let (mut idx, mut bit) = (h.idx_at, h.values_at * 8);
    for i in 0..h.sub_blocks() {
        let at = h.ns_at + 2 * i;
        let k = u16::from_le_bytes([b[at], b[at + 1]]) as usize;
        subs.push([k as u32, idx as u32, bit as u32, table]);
        idx += 4 * k;
        bit += 512 * index_bits(k);
    }
    Ok(Walked {
        shape: h.shape(),
        labels: h.n,
        subs,
    })
}

/// Appends block `b` (walked into `subs`) to a group's bytes and descriptors, the block
/// starting on a word boundary. Call `finish` once the group is complete.
pub fn append(data: &mut Vec<u8>, descriptors: &mut Vec<[u32; 4]>, b: &[u8], subs: &[[u32; 4]]) {
    let at = data.len() as u32;
    descriptors.extend(subs.iter().map(|&[k, idx, bit, labels]| {
        let idx = if idx == SOLID { SOLID } else { at + idx };
        [k, idx, at * 8 + bit, at + labels]
    }));
    data.extend_from_slice(b);
    data.resize(data.len().next_multiple_of(4), 0);
}

/// Room for the 3-byte read window past a group's last value.
pub fn finish(data: &mut Vec<u8>) {
    data.extend_from_slice(&[0; 8]);
}

/// The kernel's parameters for `voxels` voxels of blocks of `block`.
pub fn params(block: Shape, voxels: usize) -> [u32; 8] {
    let dims = [block.x / 8, block.y / 8, block.z / 8];
    [
        voxels as u32,
        block.x as u32,
        block.y as u32,
        block.z as u32,
        dims[0] as u32,
        dims[1] as u32,
        (dims[0] * dims[1] * dims[2]) as u32,
        0,
    ]
}

/// Records the decode of `voxels` voxels from `data`/`subs` into `out`; `bad` (a zeroed u32)
/// becomes non-zero when a packed index is past its sub-block's labels.
#[allow(clippy::too_many_arguments)]
pub fn record(
    gpu: &Gpu,
    enc: &mut wgpu::CommandEncoder,
    pipe: &wgpu::ComputePipeline,
    params: Range,
    data: Range,
    subs: Range,
    out: Range,
    bad: Range,
    voxels: usize,
) {
    let bindings = [(0, params), (1, data), (2, subs), (3, out), (4, bad)];
    gpu.dispatch_ranges(enc, pipe, &bindings, voxels as u64, WORKGROUP);
}

/// The error a raised `bad` flag stands for.
pub fn bad_index() -> ComputeError {
    bad("label block has an index past its sub-block's labels")
}

/// A group of blocks uploaded and decoded together.
#[derive(Default)]
struct Chunk {
    data: Vec<u8>,
    subs: Vec<[u32; 4]>,
    blocks: usize,
}

pub fn block_decode_into(
    gpu: &Gpu,
    pipe: &wgpu::ComputePipeline,
    blocks: &[&[u8]],
    out: &mut [u64],
) -> Result<Shape> {
    if blocks.is_empty() {
        return Err(bad("no label blocks to decode"));
    }
    // Validate everything before decoding anything.
    let mut walked = Vec::with_capacity(blocks.len());
    for b in blocks {
        walked.push(walk(b)?);
    }
    let shape = walked[0].shape;
    if walked.iter().any(|w| w.shape != shape) {
        return Err(bad("label blocks of different sizes in one batch"));
    }
    let v = shape.voxels();
    codec::check_out_len(shape, blocks.len(), out.len())?;
    // Room for the 3-byte read window past a block's last value.
    let max_data = gpu.max_binding as usize - 8;
    if v * 8 > gpu.max_binding as usize || blocks.iter().any(|b| b.len() > max_data) {
        return host_decode(blocks, shape, out);
    }
    let max_blocks = (gpu.max_binding as usize / (8 * v)).max(1);
    let mut chunks = vec![Chunk::default()];
    for (b, w) in blocks.iter().zip(walked) {
        let c = chunks.last_mut().unwrap();
        if c.blocks > 0 && (c.blocks == max_blocks || c.data.len() + b.len() > max_data) {
            chunks.push(Chunk::default());
        }
        let c = chunks.last_mut().unwrap();
        append(&mut c.data, &mut c.subs, b, &w.subs);
        c.blocks += 1;
    }
    let mut done = 0;
    for mut c in chunks {
        finish(&mut c.data);
        let voxels = c.blocks * v;
        let data = gpu.storage(&c.data);
        let subs = gpu.storage(bytemuck::cast_slice(&c.subs));
        let dst = gpu.zeroed(voxels as u64 * 8);
        let flag = gpu.zeroed(4);
        let params = gpu.params(&params(shape, voxels));
        let mut enc = gpu.encoder();
        record(
            gpu,
            &mut enc,
            pipe,
            Range::whole(&params),
            Range::whole(&data),
            Range::whole(&subs),
            Range::whole(&dst),
            Range::prefix(&flag, 4),
            voxels,
        );
        let got = gpu.read(enc, &[(&dst, voxels as u64 * 8), (&flag, 4)])?;
        if to_u32s(&got[1])[0] != 0 {
            return Err(bad_index());
        }
        for (o, c) in out[done..done + voxels]
            .iter_mut()
            .zip(got[0].chunks_exact(8))
        {
            *o = u64::from_le_bytes(c.try_into().unwrap());
        }
        done += voxels;
    }
    Ok(shape)
}

/// Blocks too large for one binding (only with a small binding limit): already validated,
/// decoded by the CPU codec.
fn host_decode(blocks: &[&[u8]], shape: Shape, out: &mut [u64]) -> Result<Shape> {
    for (b, part) in blocks.iter().zip(out.chunks_mut(shape.voxels())) {
        codec::decode_into(b, part)?;
    }
    Ok(shape)
}

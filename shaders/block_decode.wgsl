// Decodes a batch of compressed label blocks (spec §5.2), one invocation per output voxel.
// The host has already walked and checked every header and describes each sub-block with
// byte and bit offsets into `data` (the blocks, each starting on a word boundary), so a voxel
// needs no sums over preceding sub-blocks. Only the packed indices are left unchecked: one
// that is not below its sub-block's label count raises `bad`.

struct Params {
    // Voxels in the batch, block size in voxels, sub-blocks per x and y, sub-blocks per block.
    n: u32,
    bx: u32,
    by: u32,
    bz: u32,
    gx: u32,
    gy: u32,
    nsb: u32,
}

// The index byte offset of a solid block, whose single label is labels[0].
const SOLID: u32 = 0xffffffffu;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> data: array<u32>;
// Per sub-block: (label count Ns, byte offset of its sbIdx entries, bit offset of its packed
// values, byte offset of its block's label table).
@group(0) @binding(2) var<storage, read> subs: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read_write> out: array<vec2<u32>>;
@group(0) @binding(4) var<storage, read_write> bad: atomic<u32>;

fn byte_at(o: u32) -> u32 {
    return (data[o >> 2u] >> ((o & 3u) * 8u)) & 0xffu;
}

// A little-endian u32 at any byte offset (sbIdx entries and labels need not be word-aligned).
fn u32_at(o: u32) -> u32 {
    let shift = (o & 3u) * 8u;
    let lo = data[o >> 2u];
    if shift == 0u {
        return lo;
    }
    return (lo >> shift) | (data[(o >> 2u) + 1u] << (32u - shift));
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = item(gid, groups);
    if i >= p.n {
        return;
    }
    let block_voxels = p.bx * p.by * p.bz;
    let b = i / block_voxels;
    let r = i % block_voxels;
    let x = r % p.bx;
    let y = (r / p.bx) % p.by;
    let z = r / (p.bx * p.by);
    let d = subs[b * p.nsb + (z / 8u) * p.gx * p.gy + (y / 8u) * p.gx + x / 8u];
    if d.x == 0u {
        out[i] = vec2<u32>(0u, 0u);
        return;
    }
    var k = 0u;
    if d.x >= 2u {
        let bits = firstLeadingBit(d.x - 1u) + 1u;
        let pos = d.z + ((z % 8u) * 64u + (y % 8u) * 8u + x % 8u) * bits;
        // At most 16 bits starting anywhere in a byte: three bytes, big-endian, hold them.
        let at = pos >> 3u;
        let window = (byte_at(at) << 16u) | (byte_at(at + 1u) << 8u) | byte_at(at + 2u);
        k = (window >> (24u - (pos & 7u) - bits)) & ((1u << bits) - 1u);
        if k >= d.x {
            atomicMax(&bad, 1u);
            out[i] = vec2<u32>(0u, 0u);
            return;
        }
    }
    var t = 0u;
    if d.y != SOLID {
        t = u32_at(d.y + 4u * k);
    }
    out[i] = vec2<u32>(u32_at(d.w + 8u * t), u32_at(d.w + 8u * t + 4u));
}

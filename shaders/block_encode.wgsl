// The device half of the canonical block encoder (spec §5.2, `codec`).
//
// `locals`: one workgroup per 8×8×8 sub-block numbers the sub-block's labels in order of first
// appearance (z, y, x scan): it writes the local index of every voxel, the label count, and
// the labels in that order.
// `pack`: one invocation per output u32 word of a sub-block's packed values builds the word
// from the local indices, MSB-first, so no two invocations ever write the same word.
// Where each sub-block's labels and packed words go is its slot: with `fixed` set, a stride of
// 512 labels and 144 words (9 bits × 512 values), room for anything; otherwise `slots` gives
// (first label, label capacity, first word) per sub-block, a layout the host packed from known
// bounds on the labels (a batch). A sub-block with more labels than its capacity writes no
// labels past it and no packed words; the host sees its count and refuses the result.
// The host merges the per-sub-block label lists into the block table and assembles the bytes.

struct Params {
    // Sub-blocks in the batch, block size in voxels, sub-blocks per x and y, sub-blocks per block.
    n_sub: u32,
    bx: u32,
    by: u32,
    bz: u32,
    gx: u32,
    gy: u32,
    nsb: u32,
    fixed: u32,
}

const SLOT_WORDS: u32 = 144u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> labels: array<vec2<u32>>;
@group(0) @binding(2) var<storage, read_write> index: array<u32>;
@group(0) @binding(3) var<storage, read_write> counts: array<u32>;
@group(0) @binding(4) var<storage, read_write> locals_out: array<vec2<u32>>;
@group(0) @binding(5) var<storage, read_write> packed: array<u32>;
@group(0) @binding(6) var<storage, read> slots: array<vec4<u32>>;

// (first label, label capacity, first packed word) of sub-block `sb`.
fn slot(sb: u32) -> vec3<u32> {
    if p.fixed != 0u {
        return vec3<u32>(sb * 512u, 512u, sb * SLOT_WORDS);
    }
    return slots[sb].xyz;
}

var<workgroup> lab: array<vec2<u32>, 512>;
var<workgroup> first: array<u32, 512>;
var<workgroup> rank: array<u32, 512>;
var<workgroup> partial: array<u32, 64>;

// 64 invocations, 8 voxels each (voxels t*8 .. t*8+7 of the sub-block scan).
@compute @workgroup_size(64)
fn locals(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
          @builtin(local_invocation_index) t: u32) {
    let sb = wid.y * groups.x + wid.x;
    if sb >= p.n_sub {
        return;
    }
    let b = sb / p.nsb;
    let s = sb % p.nsb;
    let x0 = (s % p.gx) * 8u;
    let y0 = ((s / p.gx) % p.gy) * 8u;
    let z0 = (s / (p.gx * p.gy)) * 8u;
    let block = b * p.bx * p.by * p.bz;
    for (var k = 0u; k < 8u; k++) {
        let v = t * 8u + k;
        let z = z0 + v / 64u;
        let y = y0 + (v / 8u) % 8u;
        let x = x0 + v % 8u;
        lab[v] = labels[block + (z * p.by + y) * p.bx + x];
    }
    workgroupBarrier();

    // The first voxel with the same label; a voxel that is its own first is a new label.
    var fresh = 0u;
    for (var k = 0u; k < 8u; k++) {
        let v = t * 8u + k;
        var f = v;
        for (var j = 0u; j < v; j++) {
            if label_eq(lab[j], lab[v]) {
                f = j;
                break;
            }
        }
        first[v] = f;
        if f == v {
            fresh++;
        }
    }
    partial[t] = fresh;
    workgroupBarrier();

    // Exclusive prefix over the 64 partial counts: small enough to do serially.
    if t == 0u {
        var acc = 0u;
        for (var j = 0u; j < 64u; j++) {
            let c = partial[j];
            partial[j] = acc;
            acc += c;
        }
        counts[sb] = acc;
    }
    workgroupBarrier();

    let place = slot(sb);
    var r = partial[t];
    for (var k = 0u; k < 8u; k++) {
        let v = t * 8u + k;
        if first[v] == v {
            rank[v] = r;
            if r < place.y {
                locals_out[place.x + r] = lab[v];
            }
            r++;
        }
    }
    workgroupBarrier();

    for (var k = 0u; k < 8u; k++) {
        let v = t * 8u + k;
        index[sb * 512u + v] = rank[first[v]];
    }
}

fn byte_swap(x: u32) -> u32 {
    return (x << 24u) | ((x & 0xff00u) << 8u) | ((x >> 8u) & 0xff00u) | (x >> 24u);
}

@compute @workgroup_size(64)
fn pack(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = item(gid, groups);
    if i >= p.n_sub * SLOT_WORDS {
        return;
    }
    let sb = i / SLOT_WORDS;
    let j = i % SLOT_WORDS;
    let n = counts[sb];
    let place = slot(sb);
    if n < 2u || n > place.y {
        return;
    }
    let bits = firstLeadingBit(n - 1u) + 1u;
    // 512 values of `bits` bits are 16·bits words exactly: no padding inside a sub-block.
    if j >= 16u * bits {
        return;
    }
    // Stream bits [32j, 32j + 32) as a big-endian word: stream bit 32j is bit 31.
    let lo = 32u * j;
    var word = 0u;
    for (var v = lo / bits; v <= min((lo + 31u) / bits, 511u); v++) {
        let value = index[sb * 512u + v];
        let end = i32(v * bits + bits) - i32(lo);
        if end <= 32 {
            // Bits of a value that began in the previous word fall off the top.
            word |= value << u32(32 - end);
        } else {
            word |= value >> u32(end - 32);
        }
    }
    // Stored little-endian, the stream's first byte must be the word's low byte.
    packed[place.z + j] = byte_swap(word);
}

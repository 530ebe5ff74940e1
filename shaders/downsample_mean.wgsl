// One 2×2×2 level of uint8 mean. Voxels are packed four to a u32 (little-endian), and WGSL
// cannot store a byte, so one invocation computes the four output voxels of one output word.

struct Params {
    sx: u32,
    sy: u32,
    sz: u32,
    ox: u32,
    oy: u32,
    oz: u32,
    // Output voxels (not words).
    n: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;

fn voxel(i: u32) -> u32 {
    return (src[i >> 2u] >> ((i & 3u) * 8u)) & 0xffu;
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let w = item(gid, groups);
    if w * 4u >= p.n {
        return;
    }
    var word = 0u;
    for (var k = 0u; k < 4u; k++) {
        let i = w * 4u + k;
        if i >= p.n {
            break;
        }
        let x = i % p.ox;
        let y = (i / p.ox) % p.oy;
        let z = i / (p.ox * p.oy);
        var sum = 0u;
        var n = 0u;
        for (var zz = 2u * z; zz < min(2u * z + 2u, p.sz); zz++) {
            for (var yy = 2u * y; yy < min(2u * y + 2u, p.sy); yy++) {
                for (var xx = 2u * x; xx < min(2u * x + 2u, p.sx); xx++) {
                    sum += voxel((zz * p.sy + yy) * p.sx + xx);
                    n++;
                }
            }
        }
        word |= ((sum + n / 2u) / n) << (8u * k);
    }
    dst[w] = word;
}

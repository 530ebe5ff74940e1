// One 2×2×2 level of label mode: one invocation per output voxel. Children past an odd edge do
// not exist (padding is 0, and 0 never votes).

struct Params {
    // Source and output shapes (x, y, z) and the output voxel count.
    sx: u32,
    sy: u32,
    sz: u32,
    ox: u32,
    oy: u32,
    oz: u32,
    n: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<vec2<u32>>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec2<u32>>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = item(gid, groups);
    if i >= p.n {
        return;
    }
    let x = i % p.ox;
    let y = (i / p.ox) % p.oy;
    let z = i / (p.ox * p.oy);
    var c: array<vec2<u32>, 8>;
    var n = 0u;
    for (var zz = 2u * z; zz < min(2u * z + 2u, p.sz); zz++) {
        for (var yy = 2u * y; yy < min(2u * y + 2u, p.sy); yy++) {
            for (var xx = 2u * x; xx < min(2u * x + 2u, p.sx); xx++) {
                c[n] = src[(zz * p.sy + yy) * p.sx + xx];
                n++;
            }
        }
    }
    var best = vec2<u32>(0u, 0u);
    var best_n = 0u;
    for (var a = 0u; a < n; a++) {
        let l = c[a];
        if label_eq(l, vec2<u32>(0u, 0u)) {
            continue;
        }
        var k = 0u;
        for (var b = 0u; b < n; b++) {
            if label_eq(c[b], l) {
                k++;
            }
        }
        if k > best_n || (k == best_n && label_less(l, best)) {
            best = l;
            best_n = k;
        }
    }
    dst[i] = best;
}

// One invocation per run (normalized: no voxel is in two runs, so writes never race); the
// voxels written are summed per invocation and added to one counter.

struct Params {
    runs: u32,
    table_len: u32,
    // Volume width and height, and the first z of the slab held in `labels`.
    sx: u32,
    sy: u32,
    z0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> labels: array<vec2<u32>>;
// Bindings 2 and 3 (`keys`, `values`) and `find` come from label_table.wgsl.
// (x, y, z, length), clipped to the volume.
@group(0) @binding(4) var<storage, read> runs: array<vec4<u32>>;
@group(0) @binding(5) var<storage, read_write> written: atomic<u32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = item(gid, groups);
    if i >= p.runs {
        return;
    }
    let r = runs[i];
    let row = ((r.z - p.z0) * p.sy + r.y) * p.sx;
    var n = 0u;
    for (var x = r.x; x < r.x + r.w; x++) {
        let k = find(labels[row + x], p.table_len);
        if k < p.table_len {
            labels[row + x] = values[k];
            n++;
        }
    }
    if n > 0u {
        atomicAdd(&written, n);
    }
}

// Every label found in the sorted table `keys` becomes the matching entry of `values`.

struct Params {
    n: u32,
    table_len: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> labels: array<vec2<u32>>;
// Bindings 2 and 3 (`keys`, `values`) and `find` come from label_table.wgsl.

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = item(gid, groups);
    if i >= p.n {
        return;
    }
    let k = find(labels[i], p.table_len);
    if k < p.table_len {
        labels[i] = values[k];
    }
}

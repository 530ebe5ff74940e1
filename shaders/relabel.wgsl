// Every label found in the sorted table `keys` becomes the matching entry of `values`.

struct Params {
    n: u32,
    table_len: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> labels: array<vec2<u32>>;
@group(0) @binding(2) var<storage, read> keys: array<vec2<u32>>;
@group(0) @binding(3) var<storage, read> values: array<vec2<u32>>;

// Index of `l` in `keys`, or table_len when absent (lower bound, then an equality check).
fn find(l: vec2<u32>) -> u32 {
    var lo = 0u;
    var hi = p.table_len;
    while lo < hi {
        let mid = (lo + hi) / 2u;
        if label_less(keys[mid], l) {
            lo = mid + 1u;
        } else {
            hi = mid;
        }
    }
    if lo < p.table_len && label_eq(keys[lo], l) {
        return lo;
    }
    return p.table_len;
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = item(gid, groups);
    if i >= p.n {
        return;
    }
    let k = find(labels[i]);
    if k < p.table_len {
        labels[i] = values[k];
    }
}

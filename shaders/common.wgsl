// Prepended to every kernel: 64-bit labels are vec2<u32> (lo, hi), and large batches are
// dispatched as a 2-D grid of 64-invocation workgroups (one dimension is capped at 65,535).

const WG: u32 = 64u;

fn item(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return gid.y * groups.x * WG + gid.x;
}

// Labels order as u64: the high word first.
fn label_less(a: vec2<u32>, b: vec2<u32>) -> bool {
    return a.y < b.y || (a.y == b.y && a.x < b.x);
}

fn label_eq(a: vec2<u32>, b: vec2<u32>) -> bool {
    return all(a == b);
}

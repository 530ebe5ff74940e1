// Prepended to the kernels that map labels through a `LabelTable` (relabel, split_apply): the
// table's sorted keys and their targets at bindings 2 and 3, and the lookup both kernels use.

@group(0) @binding(2) var<storage, read> keys: array<vec2<u32>>;
@group(0) @binding(3) var<storage, read> values: array<vec2<u32>>;

// Index of `l` in the first `len` keys, or `len` when absent (lower bound, then an equality
// check).
fn find(l: vec2<u32>, len: u32) -> u32 {
    var lo = 0u;
    var hi = len;
    while lo < hi {
        let mid = (lo + hi) / 2u;
        if label_less(keys[mid], l) {
            lo = mid + 1u;
        } else {
            hi = mid;
        }
    }
    if lo < len && label_eq(keys[lo], l) {
        return lo;
    }
    return len;
}

// Voxels per label per block, in two passes over a batch of blocks.
//
// `insert`: one invocation per voxel adds 1 to its label's slot in its block's open-addressing
// hash table. A slot is claimed by writing the claiming voxel's index + 1 into `owner`; the
// slot's key is then that voxel's label, read from the (read-only) input, so the 64-bit key
// never has to be published atomically and no invocation waits for another.
// `compact`: one invocation per slot appends (label, count, block) of each used slot; an entry
// past the end of the entry arrays is counted by `cursor` but not written (the host sizes the
// arrays from a bound on the labels, and checks `cursor` against it).
// Tables have at least twice as many slots as the block has voxels, so probing ends.

struct Params {
    // Voxels in the batch, voxels per block, log2 of slots per block, slots in the batch.
    n: u32,
    block_voxels: u32,
    slots_log2: u32,
    slots: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> labels: array<vec2<u32>>;
@group(0) @binding(2) var<storage, read_write> owner: array<atomic<u32>>;
@group(0) @binding(3) var<storage, read_write> count: array<atomic<u32>>;
// Entry labels (lo, hi), and (count, block index in the batch) of the same entries: two
// arrays of 8 bytes an entry, so a batch's entries fit a binding as often as its voxels do.
@group(0) @binding(4) var<storage, read_write> entry_labels: array<vec2<u32>>;
@group(0) @binding(5) var<storage, read_write> cursor: atomic<u32>;
@group(0) @binding(6) var<storage, read_write> entry_meta: array<vec2<u32>>;

fn hash(l: vec2<u32>) -> u32 {
    var h = l.x ^ (l.y * 0x9e3779b9u);
    h ^= h >> 16u;
    h *= 0x85ebca6bu;
    h ^= h >> 13u;
    h *= 0xc2b2ae35u;
    h ^= h >> 16u;
    return h;
}

@compute @workgroup_size(64)
fn insert(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = item(gid, groups);
    if i >= p.n {
        return;
    }
    let l = labels[i];
    let mask = (1u << p.slots_log2) - 1u;
    let base = (i / p.block_voxels) << p.slots_log2;
    var h = hash(l) & mask;
    loop {
        let r = atomicCompareExchangeWeak(&owner[base + h], 0u, i + 1u);
        if r.exchanged || (r.old_value != 0u && label_eq(labels[r.old_value - 1u], l)) {
            atomicAdd(&count[base + h], 1u);
            return;
        }
        // A weak exchange may fail spuriously on an empty slot: try the same slot again.
        if r.old_value != 0u {
            h = (h + 1u) & mask;
        }
    }
}

@compute @workgroup_size(64)
fn compact(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let s = item(gid, groups);
    if s >= p.slots {
        return;
    }
    let o = atomicLoad(&owner[s]);
    if o == 0u {
        return;
    }
    let l = labels[o - 1u];
    let at = atomicAdd(&cursor, 1u);
    if at < arrayLength(&entry_labels) {
        entry_labels[at] = l;
        entry_meta[at] = vec2<u32>(atomicLoad(&count[s]), s >> p.slots_log2);
    }
}

// surface: marching-cubes triangles of every non-zero label, in canonical order (the twin of
// compute/cpu/surface.rs; compute/surface.rs explains the case table).
//
// Three steps over a piece of cells (one or more items, or whole strips of one item):
//   count  — triangles per cell;
//   scan_* — exclusive prefix sums of the counts, 256 cells a block;
//   emit   — each cell writes its triangles at its offset, so the output is in cell order.
// A triangle is 8 words: label lo, hi, then per corner (hx | hy << 16, hz) in half voxels;
// the first corner's hz word carries the item (within the piece) in its high 16 bits.

struct Params {
    // Item shape, and the voxel rows of each plane of each item held in `labels` (from `row0`).
    sx: u32,
    sy: u32,
    sz: u32,
    rows: u32,
    // The piece's cell box: first cell, size (whole strips of rows).
    lo_x: i32,
    lo_y: i32,
    lo_z: i32,
    row0: i32,
    nx: u32,
    ny: u32,
    nz: u32,
    cells: u32,
    // emit: the first cell of this dispatch, the offset its first triangle has, the cells.
    first: u32,
    out_base: u32,
    count: u32,
    blocks: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> labels: array<vec2<u32>>;
@group(0) @binding(2) var<storage, read> case_start: array<u32>;
@group(0) @binding(3) var<storage, read> case_tris: array<u32>;
@group(0) @binding(4) var<storage, read_write> offsets: array<u32>;
@group(0) @binding(5) var<storage, read_write> sums: array<u32>;
@group(0) @binding(6) var<storage, read_write> tris: array<u32>;

const BLOCK: u32 = 256u;

var<workgroup> shared_sums: array<u32, 64>;

fn voxel(item_i: u32, x: i32, y: i32, z: i32) -> vec2<u32> {
    if x < 0 || y < 0 || z < 0 || x >= i32(p.sx) || y >= i32(p.sy) || z >= i32(p.sz) {
        return vec2<u32>(0u, 0u);
    }
    let row = u32(y - p.row0);
    let at = ((item_i * p.sz + u32(z)) * p.rows + row) * p.sx + u32(x);
    return labels[at];
}

struct Cell {
    item_i: u32,
    q: vec3<i32>,
}

// Cells in canonical order: per item, strips of STRIP rows one after another, each strip's
// cells in (z, y, x) order (compute/surface.rs).
const STRIP: u32 = 32u;

fn cell_at(c: u32) -> Cell {
    let per_item = p.nx * p.ny * p.nz;
    let item_i = c / per_item;
    let r = c % per_item;
    // Every strip but the last is full, so the strip follows from the index alone.
    let strip = r / (STRIP * p.nx * p.nz);
    let rows = min(STRIP, p.ny - strip * STRIP);
    let s = r - strip * STRIP * p.nx * p.nz;
    let q = vec3<i32>(
        i32(s % p.nx) + p.lo_x,
        i32(strip * STRIP + (s / p.nx) % rows) + p.lo_y,
        i32(s / (p.nx * rows)) + p.lo_z,
    );
    return Cell(item_i, q);
}

fn corners(cell: Cell) -> array<vec2<u32>, 8> {
    var l: array<vec2<u32>, 8>;
    for (var c = 0u; c < 8u; c++) {
        let o = vec3<i32>(i32(c & 1u), i32((c >> 1u) & 1u), i32((c >> 2u) & 1u));
        let v = cell.q + o;
        l[c] = voxel(cell.item_i, v.x, v.y, v.z);
    }
    return l;
}

// Bit k set where corner k holds corner c's label.
fn mask_of(l: array<vec2<u32>, 8>, c: u32) -> u32 {
    var m = 0u;
    for (var k = c; k < 8u; k++) {
        if label_eq(l[k], l[c]) {
            m |= 1u << k;
        }
    }
    return m;
}

fn cell_triangles(l: array<vec2<u32>, 8>) -> u32 {
    var n = 0u;
    var done = 0u;
    for (var c = 0u; c < 8u; c++) {
        if ((done >> c) & 1u) == 1u {
            continue;
        }
        let m = mask_of(l, c);
        done |= m;
        if m != 255u && (l[c].x != 0u || l[c].y != 0u) {
            n += case_start[m + 1u] - case_start[m];
        }
    }
    return n;
}

@compute @workgroup_size(64)
fn count(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let c = item(gid, groups);
    if c >= p.cells {
        return;
    }
    offsets[c] = cell_triangles(corners(cell_at(c)));
}

// Hillis–Steele inclusive scan of one value per invocation of a 64-wide workgroup: returns
// this invocation's prefix; shared_sums[63] holds the total until the next call.
fn scan64(lane: u32, x: u32) -> u32 {
    shared_sums[lane] = x;
    workgroupBarrier();
    for (var d = 1u; d < 64u; d <<= 1u) {
        var add = 0u;
        if lane >= d {
            add = shared_sums[lane - d];
        }
        workgroupBarrier();
        shared_sums[lane] += add;
        workgroupBarrier();
    }
    return shared_sums[lane];
}

// Each workgroup scans one block of 256 counts in place (exclusive) and leaves the block's
// total in `sums`.
@compute @workgroup_size(64)
fn scan_blocks(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let block = wid.y * groups.x + wid.x;
    let base = block * BLOCK + lid.x * 4u;
    var v: array<u32, 4>;
    var total = 0u;
    for (var k = 0u; k < 4u; k++) {
        let i = base + k;
        var x = 0u;
        if block < p.blocks && i < p.cells {
            x = offsets[i];
        }
        v[k] = total;
        total += x;
    }
    let before = scan64(lid.x, total) - total;
    if block >= p.blocks {
        return;
    }
    for (var k = 0u; k < 4u; k++) {
        let i = base + k;
        if i < p.cells {
            offsets[i] = before + v[k];
        }
    }
    if lid.x == 63u {
        sums[block] = shared_sums[63];
    }
}

// One workgroup: exclusive scan of the block totals, the grand total after them.
@compute @workgroup_size(64)
fn scan_sums(@builtin(local_invocation_id) lid: vec3<u32>) {
    var carry = 0u;
    for (var start = 0u; start < p.blocks; start += 64u) {
        let i = start + lid.x;
        var x = 0u;
        if i < p.blocks {
            x = sums[i];
        }
        let inclusive = scan64(lid.x, x);
        if i < p.blocks {
            sums[i] = carry + inclusive - x;
        }
        carry += shared_sums[63];
        workgroupBarrier();
    }
    if lid.x == 0u {
        sums[p.blocks] = carry;
    }
}

fn edge_offset(e: u32) -> vec3<u32> {
    let axis = e / 4u;
    let k = e % 4u;
    var h = vec3<u32>(0u, 0u, 0u);
    var u = 1u;
    var v = 2u;
    if axis == 1u {
        u = 0u;
    } else if axis == 2u {
        u = 0u;
        v = 1u;
    }
    h[u] = 2u * (k & 1u);
    h[v] = 2u * (k >> 1u);
    h[axis] = 1u;
    return h;
}

@compute @workgroup_size(64)
fn emit(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = item(gid, groups);
    if i >= p.count {
        return;
    }
    let c = p.first + i;
    let cell = cell_at(c);
    let l = corners(cell);
    var at = offsets[c] + sums[c / BLOCK] - p.out_base;
    var done = 0u;
    for (var k = 0u; k < 8u; k++) {
        if ((done >> k) & 1u) == 1u {
            continue;
        }
        let m = mask_of(l, k);
        done |= m;
        if m == 255u || (l[k].x == 0u && l[k].y == 0u) {
            continue;
        }
        for (var t = case_start[m]; t < case_start[m + 1u]; t++) {
            let edges = case_tris[t];
            let w = at * 8u;
            tris[w] = l[k].x;
            tris[w + 1u] = l[k].y;
            for (var j = 0u; j < 3u; j++) {
                let h = vec3<u32>(2 * cell.q + 1) + edge_offset((edges >> (4u * j)) & 15u);
                tris[w + 2u + 2u * j] = h.x | (h.y << 16u);
                var z = h.z;
                if j == 0u {
                    z |= cell.item_i << 16u;
                }
                tris[w + 3u + 2u * j] = z;
            }
            at += 1u;
        }
    }
}

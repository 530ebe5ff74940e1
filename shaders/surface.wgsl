// surface: marching-cubes triangles of every non-zero label, in canonical order (the twin of
// compute/cpu/surface.rs; compute/surface.rs explains the case table and the order).
//
// Over a piece of cells (one or more whole items, or whole strips of one item):
//   count    — triangles per cell (count_indexed: also the vertices it owns and its records);
//   scan_*   — exclusive prefix sums of one array of counts, 256 cells a block, then
//              scan_add makes them global;
//   emit     — each cell writes its triangles at its offset, so the output is in cell order.
//
// Two outputs:
//   emit         — raw triangles, indexed on the host (strips of one item, whose vertices may
//                  belong to the strip before). A triangle is 8 words: label lo, hi, then per
//                  corner (hx | hy << 16, hz) in half voxels.
//   emit_indexed — vertices numbered on the device (whole items). A vertex belongs to the
//                  first cell in canonical order that holds its edge, which is the cell lowest
//                  on the edge's other two axes within the box: ownership is local. Each
//                  (cell, label) is a record, 3 words: label lo, hi, then item << 16 |
//                  vertices << 8 | triangles (a piece holds at most 2^16 items). Vertices
//                  (2 words: hx | hy << 16, hz) lie in record order, each record's own in order
//                  of first use; a triangle is the three slots of its corners, which name the
//                  owner's vertex: cells publish where their far-edge vertices lie (`far`),
//                  and an owner on the box's low sides is recomputed. The host maps slots to
//                  per-label numbers, record by record, with no lookups by position.

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
    // emit_indexed: the slots of this dispatch's first vertex and first record.
    v_base: u32,
    r_base: u32,
    // Where the ownership ranks start in `cases`.
    ranks_at: u32,
    pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> labels: array<vec2<u32>>;
// The case table: 257 starts, then each triangle's three edges (4 bits each).
@group(0) @binding(2) var<storage, read> cases: array<u32>;
@group(0) @binding(4) var<storage, read_write> offsets: array<u32>;
@group(0) @binding(5) var<storage, read_write> sums: array<u32>;
@group(0) @binding(6) var<storage, read_write> tris: array<u32>;
// count_indexed and emit_indexed: per cell, owned vertices and records (scanned like offsets).
@group(0) @binding(7) var<storage, read_write> voffsets: array<u32>;
@group(0) @binding(8) var<storage, read_write> roffsets: array<u32>;
@group(0) @binding(9) var<storage, read_write> verts: array<u32>;
@group(0) @binding(10) var<storage, read_write> records: array<u32>;
// Per cell, where its vertices on its three far edges (3, 7, 11: high on both other axes, so
// always its own) lie among its own: 5 bits for each edge's low-end label, then high-end
// label. Lets a cell find a neighbour's vertex without recomputing the neighbour.
@group(0) @binding(11) var<storage, read_write> far: array<u32>;

const BLOCK: u32 = 256u;

fn case_start(m: u32) -> u32 {
    return cases[m];
}

fn case_edges(t: u32) -> u32 {
    return cases[257u + t];
}

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

// Whether a label's mask m in a cell makes a record: some corner out, the label not 0.
fn meshed(m: u32, label: vec2<u32>) -> bool {
    return m != 255u && (label.x != 0u || label.y != 0u);
}

// The masks of the labels a cell meshes, in order of their first corner (0 after the last):
// its records, one per label, in canonical order.
fn cell_records(l: array<vec2<u32>, 8>) -> array<u32, 8> {
    var out: array<u32, 8>;
    var n = 0u;
    var done = 0u;
    for (var c = 0u; c < 8u; c++) {
        if ((done >> c) & 1u) == 1u {
            continue;
        }
        let m = mask_of(l, c);
        done |= m;
        if meshed(m, l[c]) {
            out[n] = m;
            n += 1u;
        }
    }
    return out;
}

fn cell_triangles(l: array<vec2<u32>, 8>) -> u32 {
    let masks = cell_records(l);
    var n = 0u;
    for (var rec = 0u; rec < 8u && masks[rec] != 0u; rec++) {
        let m = masks[rec];
        n += case_start(m + 1u) - case_start(m);
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

// Makes one scanned array global: each count's block start added to it.
@compute @workgroup_size(64)
fn scan_add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let c = item(gid, groups);
    if c >= p.cells {
        return;
    }
    offsets[c] += sums[c / BLOCK];
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
    var at = offsets[c] - p.out_base;
    let masks = cell_records(l);
    for (var rec = 0u; rec < 8u && masks[rec] != 0u; rec++) {
        let m = masks[rec];
        let k = firstTrailingBit(m);
        for (var t = case_start(m); t < case_start(m + 1u); t++) {
            let edges = case_edges(t);
            let w = at * 8u;
            tris[w] = l[k].x;
            tris[w + 1u] = l[k].y;
            for (var j = 0u; j < 3u; j++) {
                let h = vec3<u32>(2 * cell.q + 1) + edge_offset((edges >> (4u * j)) & 15u);
                tris[w + 2u + 2u * j] = h.x | (h.y << 16u);
                tris[w + 3u + 2u * j] = h.z;
            }
            at += 1u;
        }
    }
}

// --- Vertices numbered on the device (whole items) ---

// The corner edge e starts from (compute/surface.rs, EDGES).
fn edge_corner(e: u32) -> u32 {
    let k = e % 4u;
    switch e / 4u {
        case 0u: {
            return ((k & 1u) << 1u) | ((k >> 1u) << 2u);
        }
        case 1u: {
            return (k & 1u) | ((k >> 1u) << 2u);
        }
        default: {
            return (k & 1u) | ((k >> 1u) << 1u);
        }
    }
}

// Bit a set where cell q is the box's first along axis a.
fn low_sides(q: vec3<i32>) -> u32 {
    return select(0u, 1u, q.x == p.lo_x) | select(0u, 2u, q.y == p.lo_y) | select(0u, 4u, q.z == p.lo_z);
}

// The ranks of case m for a cell at `low` (gpu/surface.rs, `ranks`): two words.
fn ranks(low: u32, m: u32) -> vec2<u32> {
    let at = p.ranks_at + (low * 256u + m) * 2u;
    return vec2<u32>(cases[at], cases[at + 1u]);
}

// The rank of edge e among the vertices the cell owns (NOT_OWNED: another cell's).
fn rank(r: vec2<u32>, e: u32) -> u32 {
    if e < 8u {
        return (r.x >> (4u * e)) & 15u;
    }
    return (r.y >> (4u * (e - 8u))) & 15u;
}

// How many vertices the cell owns.
fn owned_count(r: vec2<u32>) -> u32 {
    return countOneBits(owned_edges(r));
}

// Bit e set where the cell owns edge e's vertex.
fn owned_edges(r: vec2<u32>) -> u32 {
    return r.y >> 16u;
}

// Where cell q of item item_i stands in canonical order (the inverse of cell_at).
fn index_of(item_i: u32, q: vec3<i32>) -> u32 {
    let x = u32(q.x - p.lo_x);
    let y = u32(q.y - p.lo_y);
    let z = u32(q.z - p.lo_z);
    let strip = y / STRIP;
    let rows = min(STRIP, p.ny - strip * STRIP);
    let s = (z * rows + (y - strip * STRIP)) * p.nx + x;
    return item_i * p.nx * p.ny * p.nz + strip * STRIP * p.nx * p.nz + s;
}

// The 5-bit field of `far` for the far edge along `axis`, on the side of the edge's low
// (side 0) or high (side 1) end.
fn far_field(axis: u32, side: u32) -> u32 {
    return 5u * (axis * 2u + side);
}

// The slot of the vertex of `label` (mask m in `cell`) on edge e of `cell`, which another
// cell owns: the one lower by one on each of the edge's other two axes where the edge lies on
// `cell`'s low side and `cell` is not the box's first (bits of `low`).
fn foreign_slot(cell: Cell, low: u32, label: vec2<u32>, m: u32, e: u32) -> u32 {
    let axis = e / 4u;
    // The edge's low end, as a corner of `cell` and of the owner.
    let a = edge_corner(e);
    let shift = ~a & ~low & ~(1u << axis) & 7u;
    let a2 = a | shift;
    let owner = Cell(cell.item_i, cell.q - vec3<i32>(vec3<u32>(shift, shift >> 1u, shift >> 2u) & vec3<u32>(1u)));
    let at = index_of(owner.item_i, owner.q);
    if (a2 | (1u << axis)) == 7u {
        // A far edge of the owner: its slot is in `far`.
        let side = 1u - ((m >> a) & 1u);
        return voffsets[at] + ((far[at] >> far_field(axis, side)) & 31u);
    }
    // The edge's number in the owner: its end's bits on the other two axes, in order.
    var u = 1u;
    var v = 2u;
    if axis == 1u {
        u = 0u;
    } else if axis == 2u {
        u = 0u;
        v = 1u;
    }
    let wanted = axis * 4u + ((a2 >> u) & 1u) + 2u * ((a2 >> v) & 1u);
    // The owner lies on the box's low side: recompute its records.
    let lo = corners(owner);
    let owner_low = low_sides(owner.q);
    var slot = voffsets[at];
    let masks = cell_records(lo);
    for (var rec = 0u; rec < 8u && masks[rec] != 0u; rec++) {
        let mo = masks[rec];
        let r = ranks(owner_low, mo);
        if label_eq(lo[firstTrailingBit(mo)], label) {
            return slot + rank(r, wanted);
        }
        slot += owned_count(r);
    }
    // Unreachable: the owner holds the edge, so the label crosses it there too.
    return 0xffffffffu;
}

@compute @workgroup_size(64)
fn count_indexed(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let c = item(gid, groups);
    if c >= p.cells {
        return;
    }
    let cell = cell_at(c);
    let l = corners(cell);
    let low = low_sides(cell.q);
    var n_tris = 0u;
    var n_verts = 0u;
    var n_records = 0u;
    var far_word = 0u;
    let masks = cell_records(l);
    for (var rec = 0u; rec < 8u && masks[rec] != 0u; rec++) {
        let m = masks[rec];
        let r = ranks(low, m);
        for (var axis = 0u; axis < 3u; axis++) {
            let e = axis * 4u + 3u;
            let n = rank(r, e);
            if n != NOT_OWNED {
                let side = 1u - ((m >> edge_corner(e)) & 1u);
                far_word |= (n_verts + n) << far_field(axis, side);
            }
        }
        n_tris += case_start(m + 1u) - case_start(m);
        n_verts += owned_count(r);
        n_records += 1u;
    }
    offsets[c] = n_tris;
    voffsets[c] = n_verts;
    roffsets[c] = n_records;
    far[c] = far_word;
}

@compute @workgroup_size(64)
fn emit_indexed(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = item(gid, groups);
    if i >= p.count {
        return;
    }
    let c = p.first + i;
    let cell = cell_at(c);
    let l = corners(cell);
    let low = low_sides(cell.q);
    var t = offsets[c];
    var v = voffsets[c];
    var r = roffsets[c];
    let masks = cell_records(l);
    for (var rec = 0u; rec < 8u && masks[rec] != 0u; rec++) {
        let m = masks[rec];
        let k = firstTrailingBit(m);
        let n_tris = case_start(m + 1u) - case_start(m);
        let r_words = ranks(low, m);
        let n_verts = owned_count(r_words);
        let w = (r - p.r_base) * 3u;
        records[w] = l[k].x;
        records[w + 1u] = l[k].y;
        records[w + 2u] = (cell.item_i << 16u) | (n_verts << 8u) | n_tris;
        r += 1u;
        // Every crossed edge's slot, once: the record's own vertices are written here, the
        // others' looked up at first use.
        var slots: array<u32, 12>;
        var known = owned_edges(r_words);
        for (var own = known; own != 0u; own &= own - 1u) {
            let e = firstTrailingBit(own);
            let n = rank(r_words, e);
            slots[e] = v + n;
            let h = vec3<u32>(2 * cell.q + 1) + edge_offset(e);
            let at = (v + n - p.v_base) * 2u;
            verts[at] = h.x | (h.y << 16u);
            verts[at + 1u] = h.z;
        }
        for (var s = case_start(m); s < case_start(m + 1u); s++) {
            let edges = case_edges(s);
            for (var j = 0u; j < 3u; j++) {
                let e = (edges >> (4u * j)) & 15u;
                if ((known >> e) & 1u) == 0u {
                    slots[e] = foreign_slot(cell, low, l[k], m, e);
                    known |= 1u << e;
                }
                tris[(t - p.out_base) * 3u + j] = slots[e];
            }
            t += 1u;
        }
        v += n_verts;
    }
}

const NOT_OWNED: u32 = 15u;

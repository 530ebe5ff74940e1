//! DVID's compressed label block (spec §5.2), the CPU codec every other path is checked against.
//!
//! Decoding accepts every block DVID's format allows: solid blocks (N = 1), duplicate and zero
//! entries in the label table, sub-blocks with 0 (all zero), 1 or up to 512 labels, any number
//! of sub-blocks per axis up to `MAX_SUBBLOCKS_PER_AXIS`. The byte length must be exact.
//!
//! Encoding writes one canonical form, which both backends reproduce byte for byte:
//! * a block whose voxels are all one label is solid: `gx gy gz 1 label` (24 bytes);
//! * otherwise the label table lists each distinct label once, in order of first appearance
//!   when sub-blocks are visited in (z, y, x) order and voxels inside each sub-block in
//!   (z, y, x) order; each sub-block's local labels are numbered in order of first appearance
//!   inside it (as DVID's encoder does) and its `sbIdx` entries point into that table.
//!
//! Inside a sub-block one row of 8 voxels always fills exactly `bits` bytes (8 values of `bits`
//! bits), so both directions work a row at a time on a big-endian integer of `bits` bytes.

use super::{BlockCounts, ComputeError, LabelTable, Result, Shape};

/// Largest number of 8³ sub-blocks along one axis (a 256-voxel edge) we accept, so that a
/// 16-byte header cannot ask for a huge allocation.
pub const MAX_SUBBLOCKS_PER_AXIS: usize = 32;

/// Most labels one sub-block can use: one per voxel.
const MAX_SUBBLOCK_LABELS: usize = 512;

/// Voxels in one 8×8×8 sub-block.
const SUB_VOXELS: usize = 512;

fn bad(msg: &str) -> ComputeError {
    ComputeError::BadInput(format!("label block: {msg}"))
}

fn read_u16(b: &[u8], at: usize) -> usize {
    u16::from_le_bytes([b[at], b[at + 1]]) as usize
}

fn read_u32(b: &[u8], at: usize) -> usize {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize
}

fn read_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Bits per packed index for a sub-block with `ns` labels: 0 for 0 or 1, else ceil(log2 ns).
pub const fn index_bits(ns: usize) -> usize {
    if ns <= 1 {
        0
    } else {
        (ns - 1).ilog2() as usize + 1
    }
}

/// The layout of a validated block: where each part starts (byte offsets into the block).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockHeader {
    /// Sub-blocks per axis.
    pub gx: usize,
    pub gy: usize,
    pub gz: usize,
    /// Entries in the label table.
    pub n: usize,
    /// Offset of `labels[N]` (u64 each).
    pub table_at: usize,
    /// Offset of `Ns[gx·gy·gz]` (u16 each); meaningful only when `n > 1`.
    pub ns_at: usize,
    /// Offset of `sbIdx[sum Ns]` (u32 each); meaningful only when `n > 1`.
    pub idx_at: usize,
    /// Offset of the packed values; meaningful only when `n > 1`.
    pub values_at: usize,
    /// Total length of the block in bytes.
    pub len: usize,
}

impl BlockHeader {
    /// Block size in voxels.
    pub fn shape(&self) -> Shape {
        Shape::new(self.gx * 8, self.gy * 8, self.gz * 8)
    }

    pub fn sub_blocks(&self) -> usize {
        self.gx * self.gy * self.gz
    }

    pub fn is_solid(&self) -> bool {
        self.n == 1
    }
}

/// Checks every block of a batch and that they share one shape, which it returns.
pub fn batch_shape(blocks: &[&[u8]]) -> Result<Shape> {
    let Some(first) = blocks.first() else {
        return Err(ComputeError::BadInput("no label blocks to decode".into()));
    };
    let shape = header(first)?.shape();
    for b in &blocks[1..] {
        let other = header(b)?.shape();
        if other != shape {
            return Err(ComputeError::BadInput(format!(
                "label blocks of shapes {shape} and {other} in one batch"
            )));
        }
    }
    Ok(shape)
}

/// A decode batch's output must hold exactly its blocks.
pub fn check_out_len(shape: Shape, blocks: usize, len: usize) -> Result<()> {
    if shape.voxels().checked_mul(blocks) != Some(len) {
        return Err(ComputeError::BadInput(format!(
            "{blocks} blocks of {shape} do not fill {len} voxels"
        )));
    }
    Ok(())
}

/// Bytes of a block's header, before its label table.
pub const HEADER_BYTES: usize = 16;

/// The length of a block's head, its header and label table, read from the header alone, so
/// that a stored block's table can be read without inflating the rest of it.
pub fn head_len(header: &[u8]) -> Result<usize> {
    if header.len() < HEADER_BYTES {
        return Err(bad("shorter than its 16-byte header"));
    }
    Ok(HEADER_BYTES + 8 * read_u32(header, 12))
}

/// The labels of a block's table, from its head (`head_len` bytes of it, or more).
pub fn head_labels(head: &[u8]) -> Result<impl Iterator<Item = u64> + '_> {
    let len = head_len(head)?;
    let table = head
        .get(HEADER_BYTES..len)
        .ok_or_else(|| bad("shorter than its label table"))?;
    Ok(table.chunks_exact(8).map(|b| read_u64(b, 0)))
}

/// Validates the whole structure of a block without decoding voxels: exact length, N ≥ 1,
/// sub-block counts within `MAX_SUBBLOCKS_PER_AXIS`, at most 512 labels per sub-block and
/// every `sbIdx` entry inside the label table. The one check left to decoding is that each
/// packed index is below its sub-block's `Ns`.
pub fn header(b: &[u8]) -> Result<BlockHeader> {
    if b.len() < 16 {
        return Err(bad("shorter than its 16-byte header"));
    }
    let (gx, gy, gz, n) = (
        read_u32(b, 0),
        read_u32(b, 4),
        read_u32(b, 8),
        read_u32(b, 12),
    );
    for g in [gx, gy, gz] {
        if g == 0 || g > MAX_SUBBLOCKS_PER_AXIS {
            return Err(bad(&format!(
                "{g} sub-blocks along an axis (1 to {MAX_SUBBLOCKS_PER_AXIS} allowed)"
            )));
        }
    }
    if n == 0 {
        return Err(bad("empty label table"));
    }
    let table_at = HEADER_BYTES;
    let ns_at = table_at + 8 * n;
    let mut h = BlockHeader {
        gx,
        gy,
        gz,
        n,
        table_at,
        ns_at,
        idx_at: ns_at,
        values_at: ns_at,
        len: b.len(),
    };
    if n == 1 {
        if b.len() != 24 {
            return Err(bad(&format!("solid block is {} bytes, not 24", b.len())));
        }
        return Ok(h);
    }
    h.idx_at = ns_at + 2 * h.sub_blocks();
    if b.len() < h.idx_at {
        return Err(bad("truncated in its label table or sub-block counts"));
    }
    let (mut indices, mut value_bytes) = (0usize, 0usize);
    for i in 0..h.sub_blocks() {
        let ns = read_u16(b, ns_at + 2 * i);
        if ns > MAX_SUBBLOCK_LABELS {
            return Err(bad(&format!(
                "a sub-block claims {ns} labels (at most 512)"
            )));
        }
        indices += ns;
        value_bytes += SUB_VOXELS * index_bits(ns) / 8;
    }
    h.values_at = h.idx_at + 4 * indices;
    let expected = h.values_at + value_bytes;
    if b.len() != expected {
        return Err(bad(&format!(
            "{} bytes where its header implies {expected}",
            b.len()
        )));
    }
    if (0..indices).any(|i| read_u32(b, h.idx_at + 4 * i) >= n) {
        return Err(bad("a sub-block index points past the label table"));
    }
    Ok(h)
}

/// Decodes one block into a new array; returns its shape.
pub fn decode(b: &[u8]) -> Result<(Shape, Vec<u64>)> {
    let h = header(b)?;
    let mut out = vec![0u64; h.shape().voxels()];
    decode_with(b, &h, &mut out, |l| l)?;
    Ok((h.shape(), out))
}

/// Decodes one block into `out`, which must hold exactly the block's voxels.
pub fn decode_into(b: &[u8], out: &mut [u64]) -> Result<Shape> {
    let h = header(b)?;
    h.shape().check_len(out.len(), "label block decode")?;
    decode_with(b, &h, out, |l| l)?;
    Ok(h.shape())
}

/// Decodes one block as a mask into `out` (exactly its voxels): 1 where `keep` holds for the
/// voxel's label. `keep` is asked once per label of each sub-block, never per voxel, and no
/// 64-bit label is written: a body's mask is an eighth of its decoded labels.
pub fn decode_mask_into(b: &[u8], out: &mut [u8], keep: impl Fn(u64) -> bool) -> Result<Shape> {
    let h = header(b)?;
    h.shape().check_len(out.len(), "label block mask decode")?;
    decode_with(b, &h, out, |l| u8::from(keep(l)))?;
    Ok(h.shape())
}

/// The block with every label of its table that `table` maps replaced by its target, or `None`
/// when the new table would list a label twice. No voxel is decoded: a relabelling that keeps
/// the table's labels distinct leaves the sub-blocks' indices and packed values as they were,
/// so a canonical block comes out as the canonical encoding of its relabelled voxels.
pub fn rename_labels(b: &[u8], table: &LabelTable) -> Result<Option<Vec<u8>>> {
    let h = header(b)?;
    let mut out = b.to_vec();
    let mut seen = Vec::with_capacity(h.n);
    for i in 0..h.n {
        let at = h.table_at + 8 * i;
        let label = read_u64(b, at);
        let new = table.get(label).unwrap_or(label);
        out[at..at + 8].copy_from_slice(&new.to_le_bytes());
        seen.push(new);
    }
    seen.sort_unstable();
    if seen.windows(2).any(|w| w[0] == w[1]) {
        return Ok(None);
    }
    Ok(Some(out))
}

/// Decodes a block already validated by `header` into `out` (exactly its voxels), each label
/// written as `map` gives it.
fn decode_with<T: Copy + Default>(
    b: &[u8],
    h: &BlockHeader,
    out: &mut [T],
    map: impl Fn(u64) -> T,
) -> Result<()> {
    if h.is_solid() {
        out.fill(map(read_u64(b, h.table_at)));
        return Ok(());
    }
    let shape = h.shape();
    let mut local = [T::default(); MAX_SUBBLOCK_LABELS];
    let (mut idx_at, mut values_at) = (h.idx_at, h.values_at);
    let mut sb = 0;
    for sz in 0..h.gz {
        for sy in 0..h.gy {
            for sx in 0..h.gx {
                let ns = read_u16(b, h.ns_at + 2 * sb);
                sb += 1;
                for (k, l) in local[..ns].iter_mut().enumerate() {
                    *l = map(read_u64(b, h.table_at + 8 * read_u32(b, idx_at + 4 * k)));
                }
                idx_at += 4 * ns;
                let origin = (sz * 8 * shape.y + sy * 8) * shape.x + sx * 8;
                let rows = SubBlockRows {
                    out: &mut *out,
                    origin,
                    row: shape.x,
                    plane: shape.x * shape.y,
                };
                let bits = index_bits(ns);
                let values = &b[values_at..values_at + 64 * bits];
                values_at += 64 * bits;
                let max_index = match bits {
                    0 => {
                        rows.fill(if ns == 0 { map(0) } else { local[0] });
                        0
                    }
                    1 => unpack::<1, _>(values, &local, rows),
                    2 => unpack::<2, _>(values, &local, rows),
                    3 => unpack::<3, _>(values, &local, rows),
                    4 => unpack::<4, _>(values, &local, rows),
                    5 => unpack::<5, _>(values, &local, rows),
                    6 => unpack::<6, _>(values, &local, rows),
                    7 => unpack::<7, _>(values, &local, rows),
                    8 => unpack::<8, _>(values, &local, rows),
                    _ => unpack::<9, _>(values, &local, rows),
                };
                if max_index >= ns.max(1) {
                    return Err(bad("a packed index is past its sub-block's labels"));
                }
            }
        }
    }
    Ok(())
}

/// Reads single voxels of a block without decoding it: looking up a few points (annotation
/// labels, `GET label`) in a 64³ block would otherwise fill 2 MiB per block.
pub struct VoxelReader<'a> {
    b: &'a [u8],
    h: BlockHeader,
    /// Per sub-block: (offset of its `sbIdx` entries, offset of its packed values, Ns).
    subs: Vec<(usize, usize, usize)>,
}

impl<'a> VoxelReader<'a> {
    /// Validates the block (as `header` does).
    pub fn new(b: &'a [u8]) -> Result<VoxelReader<'a>> {
        let h = header(b)?;
        let mut subs = Vec::new();
        if !h.is_solid() {
            subs.reserve(h.sub_blocks());
            let (mut idx_at, mut values_at) = (h.idx_at, h.values_at);
            for i in 0..h.sub_blocks() {
                let ns = read_u16(b, h.ns_at + 2 * i);
                subs.push((idx_at, values_at, ns));
                idx_at += 4 * ns;
                values_at += SUB_VOXELS * index_bits(ns) / 8;
            }
        }
        Ok(VoxelReader { b, h, subs })
    }

    pub fn shape(&self) -> Shape {
        self.h.shape()
    }

    /// The label at `p` (x, y, z within the block).
    pub fn get(&self, p: [usize; 3]) -> Result<u64> {
        let mut v = [0];
        self.row(p, &mut v)?;
        Ok(v[0])
    }

    /// The labels of the `out.len()` voxels from `p` on along x (all within the block): a
    /// split's check reads the voxels under its runs this way, not whole blocks.
    pub fn row(&self, p: [usize; 3], out: &mut [u64]) -> Result<()> {
        let shape = self.h.shape();
        if p[0] + out.len() > shape.x || p[1] >= shape.y || p[2] >= shape.z {
            return Err(bad(&format!(
                "voxels {p:?} + {} along x are outside a {shape} block",
                out.len()
            )));
        }
        let b = self.b;
        let table = self.h.table_at;
        if self.h.is_solid() {
            out.fill(read_u64(b, table));
            return Ok(());
        }
        // Within a sub-block, rows of 8 indices, z-major, each row W bytes big-endian.
        let row = (p[2] % 8) * 8 + p[1] % 8;
        let first = ((p[2] / 8) * self.h.gy + p[1] / 8) * self.h.gx;
        let mut x = p[0];
        let mut done = 0;
        while done < out.len() {
            let n = (8 - x % 8).min(out.len() - done);
            let (idx_at, values_at, ns) = self.subs[first + x / 8];
            let label = |k: usize| read_u64(b, table + 8 * read_u32(b, idx_at + 4 * k));
            let seg = &mut out[done..done + n];
            match index_bits(ns) {
                0 => seg.fill(if ns == 0 { 0 } else { label(0) }),
                w => {
                    let at = values_at + row * w;
                    let v = b[at..at + w]
                        .iter()
                        .fold(0u128, |v, &byte| (v << 8) | u128::from(byte));
                    for (j, o) in seg.iter_mut().enumerate() {
                        let k = (v >> (w * (7 - (x % 8 + j)))) as usize & ((1 << w) - 1);
                        if k >= ns {
                            return Err(bad("a packed index is past its sub-block's labels"));
                        }
                        *o = label(k);
                    }
                }
            }
            x += n;
            done += n;
        }
        Ok(())
    }
}

/// The 64 rows of 8 voxels of one sub-block inside a block array.
struct SubBlockRows<'a, T> {
    out: &'a mut [T],
    origin: usize,
    row: usize,
    plane: usize,
}

impl<T: Copy> SubBlockRows<'_, T> {
    /// Row `r` (0..64, z-major) of the sub-block.
    fn get(&mut self, r: usize) -> &mut [T] {
        let at = self.origin + (r / 8) * self.plane + (r % 8) * self.row;
        &mut self.out[at..at + 8]
    }

    fn fill(mut self, label: T) {
        for r in 0..64 {
            self.get(r).fill(label);
        }
    }
}

/// Reads `W` bytes as one big-endian integer (W ≤ 9 fits in a u128; ≤ 8 in its low u64).
#[inline(always)]
fn load_be<const W: usize>(bytes: &[u8]) -> u128 {
    let bytes: &[u8; W] = bytes.try_into().unwrap();
    if W <= 8 {
        let mut v = 0u64;
        for &b in bytes {
            v = (v << 8) | b as u64;
        }
        v as u128
    } else {
        let mut v = 0u128;
        for &b in bytes {
            v = (v << 8) | b as u128;
        }
        v
    }
}

/// Unpacks the 512 `W`-bit indices of one sub-block through `local`; returns the largest index
/// seen so the caller can reject indices past the sub-block's labels.
#[inline(always)]
fn unpack<const W: usize, T: Copy>(
    values: &[u8],
    local: &[T; 512],
    mut rows: SubBlockRows<T>,
) -> usize {
    let mask = (1usize << W) - 1;
    let mut max_index = 0;
    for (r, bytes) in values.chunks_exact(W).enumerate() {
        let v = load_be::<W>(bytes);
        let row = rows.get(r);
        for (j, out) in row.iter_mut().enumerate() {
            let k = if W <= 8 {
                ((v as u64) >> (W * (7 - j))) as usize & mask
            } else {
                (v >> (W * (7 - j))) as usize & mask
            };
            max_index = max_index.max(k);
            *out = local[k];
        }
    }
    max_index
}

/// Encodes one block (each dimension a multiple of 8, at most `MAX_SUBBLOCKS_PER_AXIS`
/// sub-blocks per axis) in the canonical form.
pub fn encode(labels: &[u64], shape: Shape) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    encode_into(labels, shape, &mut out)?;
    Ok(out)
}

/// `encode` into a reused buffer (cleared first).
pub fn encode_into(labels: &[u64], shape: Shape, out: &mut Vec<u8>) -> Result<()> {
    Encoder::default().encode_into(labels, shape, out)
}

/// Checks that `shape` can be a block: whole sub-blocks, at most 32 of them per axis.
pub fn check_block_shape(shape: Shape) -> Result<()> {
    let ok = |d: usize| d > 0 && d.is_multiple_of(8) && d / 8 <= MAX_SUBBLOCKS_PER_AXIS;
    if ok(shape.x) && ok(shape.y) && ok(shape.z) {
        Ok(())
    } else {
        Err(ComputeError::BadInput(format!(
            "block shape {shape} must be multiples of 8, at most {} per axis",
            8 * MAX_SUBBLOCKS_PER_AXIS
        )))
    }
}

/// Open-addressing map from label to a small number, cleared in O(1) by bumping a generation.
struct LabelMap {
    keys: Vec<u64>,
    values: Vec<u32>,
    stamps: Vec<u32>,
    generation: u32,
    len: usize,
}

impl LabelMap {
    fn with_capacity(slots: usize) -> LabelMap {
        LabelMap {
            keys: vec![0; slots],
            values: vec![0; slots],
            stamps: vec![0; slots],
            generation: 1,
            len: 0,
        }
    }

    fn clear(&mut self) {
        self.len = 0;
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.stamps.fill(0);
            self.generation = 1;
        }
    }

    #[inline]
    fn slot(&self, key: u64) -> usize {
        let h = key.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (h >> 32) as usize & (self.keys.len() - 1)
    }

    /// The value of `key`, inserting `next` (the value a new key gets) when absent. Returns
    /// the value and whether the key was new.
    #[inline]
    fn get_or_insert(&mut self, key: u64, next: u32) -> (u32, bool) {
        if 2 * (self.len + 1) > self.keys.len() {
            self.grow();
        }
        let mask = self.keys.len() - 1;
        let mut i = self.slot(key);
        loop {
            if self.stamps[i] != self.generation {
                self.stamps[i] = self.generation;
                self.keys[i] = key;
                self.values[i] = next;
                self.len += 1;
                return (next, true);
            }
            if self.keys[i] == key {
                return (self.values[i], false);
            }
            i = (i + 1) & mask;
        }
    }

    fn grow(&mut self) {
        let old: Vec<(u64, u32)> = (0..self.keys.len())
            .filter(|&i| self.stamps[i] == self.generation)
            .map(|i| (self.keys[i], self.values[i]))
            .collect();
        *self = LabelMap::with_capacity(2 * self.keys.len());
        for (k, v) in old {
            self.get_or_insert(k, v);
        }
    }
}

/// Reusable encoder state (hash tables and scratch), one per thread in batch encoding.
pub struct Encoder {
    table: LabelMap,
    local: LabelMap,
    labels: Vec<u64>,
    ns: Vec<u16>,
    indices: Vec<u32>,
    values: Vec<u8>,
    slab: Vec<u64>,
    /// Voxels per entry of `labels`, when the encoding also counts.
    tally: Option<Vec<u32>>,
}

impl Default for Encoder {
    fn default() -> Encoder {
        Encoder {
            table: LabelMap::with_capacity(256),
            local: LabelMap::with_capacity(2 * MAX_SUBBLOCK_LABELS),
            labels: Vec::new(),
            ns: Vec::new(),
            indices: Vec::new(),
            values: Vec::new(),
            slab: Vec::new(),
            tally: None,
        }
    }
}

impl Encoder {
    /// Encodes one block in the canonical form into `out` (cleared first).
    pub fn encode_into(&mut self, labels: &[u64], shape: Shape, out: &mut Vec<u8>) -> Result<()> {
        self.tally = None;
        self.encode(labels, shape, out)
    }

    /// Encodes like `encode_into` and counts the block's labels on the way: the encoding
    /// already numbers every voxel's label, so counting is a tally per number instead of a
    /// second pass that hashes.
    pub fn encode_counting(
        &mut self,
        labels: &[u64],
        shape: Shape,
        out: &mut Vec<u8>,
    ) -> Result<BlockCounts> {
        let mut tally = self.tally.take().unwrap_or_default();
        tally.clear();
        self.tally = Some(tally);
        self.encode(labels, shape, out)?;
        let tally = self.tally.as_ref().expect("counting");
        if tally.is_empty() {
            // One label throughout (`encode` took its shortcut).
            return Ok(BlockCounts {
                labels: vec![labels[0]],
                counts: vec![labels.len() as u32],
            });
        }
        let mut pairs: Vec<(u64, u32)> = self
            .labels
            .iter()
            .copied()
            .zip(tally.iter().copied())
            .collect();
        pairs.sort_unstable();
        Ok(BlockCounts {
            labels: pairs.iter().map(|p| p.0).collect(),
            counts: pairs.iter().map(|p| p.1).collect(),
        })
    }

    fn encode(&mut self, labels: &[u64], shape: Shape, out: &mut Vec<u8>) -> Result<()> {
        check_block_shape(shape)?;
        shape.check_len(labels.len(), "label block encode")?;
        out.clear();
        let (gx, gy, gz) = (shape.x / 8, shape.y / 8, shape.z / 8);
        for g in [gx, gy, gz] {
            out.extend_from_slice(&(g as u32).to_le_bytes());
        }
        let first = labels[0];
        if labels.iter().all(|&l| l == first) {
            out.extend_from_slice(&1u32.to_le_bytes());
            out.extend_from_slice(&first.to_le_bytes());
            return Ok(());
        }
        self.table.clear();
        self.labels.clear();
        self.ns.clear();
        self.indices.clear();
        self.values.clear();
        // Each 8-plane slab is first copied into sub-block order with sequential reads (which
        // the prefetcher follows), then encoded sub-block by sub-block from cache.
        let slab_voxels = gx * gy * SUB_VOXELS;
        let mut slab = std::mem::take(&mut self.slab);
        for sz in 0..gz {
            slab.clear();
            slab.resize(slab_voxels, 0);
            let planes = &labels[sz * slab_voxels..(sz + 1) * slab_voxels];
            for (r, row) in planes.chunks_exact(shape.x).enumerate() {
                let (z, y) = (r / shape.y, r % shape.y);
                for (sx, eight) in row.chunks_exact(8).enumerate() {
                    let at = ((y / 8) * gx + sx) * SUB_VOXELS + (z * 8 + y % 8) * 8;
                    slab[at..at + 8].copy_from_slice(eight);
                }
            }
            for sub in slab.as_chunks::<SUB_VOXELS>().0 {
                self.sub_block(sub);
            }
        }
        self.slab = slab;
        out.extend_from_slice(&(self.labels.len() as u32).to_le_bytes());
        for l in &self.labels {
            out.extend_from_slice(&l.to_le_bytes());
        }
        for ns in &self.ns {
            out.extend_from_slice(&ns.to_le_bytes());
        }
        for i in &self.indices {
            out.extend_from_slice(&i.to_le_bytes());
        }
        out.extend_from_slice(&self.values);
        Ok(())
    }

    /// The block-table index of `label`, adding it at the end when new.
    fn table_index(&mut self, label: u64) -> u32 {
        let (i, new) = self.table.get_or_insert(label, self.labels.len() as u32);
        if new {
            self.labels.push(label);
            if let Some(t) = &mut self.tally {
                t.push(0);
            }
        }
        i
    }

    /// Appends one sub-block's `Ns`, `sbIdx` entries and packed values.
    fn sub_block(&mut self, sub: &[u64; SUB_VOXELS]) {
        let first = sub[0];
        if sub.iter().all(|&l| l == first) {
            self.ns.push(1);
            let i = self.table_index(first);
            self.indices.push(i);
            if let Some(t) = &mut self.tally {
                t[i as usize] += SUB_VOXELS as u32;
            }
            return;
        }
        // Local numbering in order of first appearance, remembering the previous voxel's
        // label because neighbouring voxels usually agree.
        self.local.clear();
        self.local.get_or_insert(first, 0);
        let mut new_labels = [0u64; SUB_VOXELS];
        new_labels[0] = first;
        let mut local_labels = 1u32;
        let mut index = [0u16; SUB_VOXELS];
        // Voxels per local number, summed a run at a time (counting each voxel into memory
        // would chain every increment of a run on the one before).
        let mut local = [0u32; SUB_VOXELS];
        let (mut prev, mut prev_index, mut run) = (first, 0u16, 0u32);
        for (dst, &l) in index.iter_mut().zip(sub.iter()) {
            if l != prev {
                let (k, new) = self.local.get_or_insert(l, local_labels);
                if new {
                    new_labels[local_labels as usize] = l;
                    local_labels += 1;
                }
                local[prev_index as usize] += run;
                (prev, prev_index, run) = (l, k as u16, 0);
            }
            run += 1;
            *dst = prev_index;
        }
        local[prev_index as usize] += run;
        let ns = local_labels as usize;
        self.ns.push(ns as u16);
        let first_index = self.indices.len();
        for &l in &new_labels[..ns] {
            let i = self.table_index(l);
            self.indices.push(i);
        }
        if let Some(t) = &mut self.tally {
            for (&i, &n) in self.indices[first_index..].iter().zip(&local[..ns]) {
                t[i as usize] += n;
            }
        }
        match index_bits(ns) {
            1 => pack::<1>(&index, &mut self.values),
            2 => pack::<2>(&index, &mut self.values),
            3 => pack::<3>(&index, &mut self.values),
            4 => pack::<4>(&index, &mut self.values),
            5 => pack::<5>(&index, &mut self.values),
            6 => pack::<6>(&index, &mut self.values),
            7 => pack::<7>(&index, &mut self.values),
            8 => pack::<8>(&index, &mut self.values),
            _ => pack::<9>(&index, &mut self.values),
        }
    }
}

/// Packs 512 indices of `W` bits MSB-first, one row of 8 into exactly `W` bytes.
#[inline(always)]
fn pack<const W: usize>(index: &[u16; SUB_VOXELS], out: &mut Vec<u8>) {
    for row in index.chunks_exact(8) {
        let mut v = 0u128;
        for &k in row {
            v = (v << W) | k as u128;
        }
        out.extend_from_slice(&v.to_be_bytes()[16 - W..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_holds_the_header_and_the_label_table() {
        let labels: Vec<u64> = (0..512u64)
            .map(|i| [7, u64::MAX, 1 << 40][i as usize % 3])
            .collect();
        let block = encode(&labels, Shape::new(8, 8, 8)).unwrap();
        let h = header(&block).unwrap();
        let len = head_len(&block[..HEADER_BYTES]).unwrap();
        assert_eq!(len, h.ns_at);
        let mut table: Vec<u64> = head_labels(&block[..len]).unwrap().collect();
        table.sort_unstable();
        assert_eq!(table, [7, 1 << 40, u64::MAX]);
        assert!(head_len(&block[..HEADER_BYTES - 1]).is_err());
        assert!(head_labels(&block[..len - 1]).is_err());
    }

    #[test]
    fn a_mask_decode_is_the_decode_then_the_test() {
        let shape = Shape::new(16, 24, 8);
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        // From one label per block (solid) to 512 in a sub-block (9-bit indices).
        for distinct in [1u64, 2, 3, 5, 17, 300, 4000] {
            let labels: Vec<u64> = (0..shape.voxels())
                .map(|_| next() % distinct * 0x1_0000_0001)
                .collect();
            let block = encode(&labels, shape).unwrap();
            let keep = |l: u64| (l / 0x1_0000_0001) % 3 == 1;
            let mut mask = vec![7u8; shape.voxels()];
            assert_eq!(decode_mask_into(&block, &mut mask, keep).unwrap(), shape);
            let want: Vec<u8> = labels.iter().map(|&l| u8::from(keep(l))).collect();
            assert_eq!(mask, want, "{distinct} labels");
            assert!(decode_mask_into(&block, &mut mask[1..], keep).is_err());
        }
    }
}

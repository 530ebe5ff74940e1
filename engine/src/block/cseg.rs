//! Neuroglancer `compressed_segmentation` for uint64 labels, one channel: the encoder (8×8×8
//! encoding blocks) behind labelmap `raw/...?compression=google[gzip]` responses and the
//! precomputed view, and a decoder for chunks read from elsewhere (volumeproxy), which checks
//! every offset and width it is given.
//!
//! The output is byte-identical to the reference C++ encoder (PyPI `compressed_segmentation`):
//! per block the packed indices come first, then the lookup table unless an identical table was
//! already written, in which case the header points back at it; indices into a table sorted
//! ascending; out-of-volume voxels of edge blocks left at index 0, i.e. the block's smallest label.

use std::collections::HashMap;

const EDGE: usize = 8;
const BLOCK_VOXELS: usize = EDGE * EDGE * EDGE;
/// First-seen id of out-of-volume voxels; its rank is pinned to 0 (the block's smallest label),
/// which is what the reference writes there.
const PAD: u16 = BLOCK_VOXELS as u16;
/// Open-addressing set twice the largest possible distinct count keeps probes short.
const SLOTS: usize = 2 * BLOCK_VOXELS;
/// The header's table offset field is 24 bits wide.
const MAX_TABLE_OFFSET: usize = 1 << 24;

/// Encodes `vol` (x fastest, then y, then z; `size = [nx, ny, nz]`).
///
/// # Panics
/// If `vol.len()` is not `nx·ny·nz`, or if the volume is so large and varied that a lookup table
/// lands beyond the 24-bit offset the format can express (see [`try_encode`]).
pub fn encode(vol: &[u64], size: [usize; 3]) -> Vec<u8> {
    try_encode(vol, size).expect("compressed_segmentation table offset exceeds 24 bits")
}

/// Like [`encode`], but `None` when the format cannot address a lookup table. 64³ chunks are
/// always far below that limit; only requests of tens of millions of voxels can hit it.
pub fn try_encode(vol: &[u64], size: [usize; 3]) -> Option<Vec<u8>> {
    assert_eq!(
        vol.len(),
        size.iter().product::<usize>(),
        "volume length != nx·ny·nz"
    );
    let grid = size.map(|n| n.div_ceil(EDGE));
    let blocks = grid.iter().product::<usize>();
    // Offsets in the headers count u32 words from the channel start, which follows the
    // single channel-offset word.
    let mut out = Vec::with_capacity(4 + 8 * blocks + vol.len());
    out.extend_from_slice(&1u32.to_le_bytes());
    out.resize(4 + 8 * blocks, 0);
    let word = |out: &Vec<u8>| (out.len() - 4) / 4;

    let mut s = Scratch::new();
    // Keyed by a hash of the sorted table; hits are confirmed against the bytes already written,
    // so a collision only costs a duplicate table, never a wrong one.
    let mut tables: HashMap<u64, usize> = HashMap::new();
    let mut header = 4;
    for bz in 0..grid[2] {
        for by in 0..grid[1] {
            for bx in 0..grid[0] {
                let origin = [bx * EDGE, by * EDGE, bz * EDGE];
                let n = s.gather(vol, size, origin);
                let bits = match n {
                    1 => 0,
                    2 => 1,
                    3..=4 => 2,
                    5..=16 => 4,
                    17..=256 => 8,
                    _ => 16,
                };
                let values_at = word(&out);
                match bits {
                    0 => {}
                    1 => s.pack::<1>(&mut out),
                    2 => s.pack::<2>(&mut out),
                    4 => s.pack::<4>(&mut out),
                    8 => s.pack::<8>(&mut out),
                    _ => s.pack::<16>(&mut out),
                }
                let key = s.table_hash();
                let table_at = match tables.get(&key) {
                    Some(&at) if s.table_matches(&out[4 + 4 * at..]) => at,
                    _ => {
                        let at = word(&out);
                        for &(v, _) in &s.distinct {
                            out.extend_from_slice(&v.to_le_bytes());
                        }
                        tables.entry(key).or_insert(at);
                        at
                    }
                };
                if table_at >= MAX_TABLE_OFFSET {
                    return None;
                }
                let h0 = table_at as u32 | (bits << 24);
                out[header..header + 4].copy_from_slice(&h0.to_le_bytes());
                out[header + 4..header + 8].copy_from_slice(&(values_at as u32).to_le_bytes());
                header += 8;
            }
        }
    }
    Some(out)
}

#[derive(Clone, Copy, Default)]
struct Slot {
    key: u64,
    epoch: u32,
    id: u16,
}

/// Per-block working set, reused across blocks so the hot loop never allocates.
struct Scratch {
    slots: Vec<Slot>,
    /// Bumped per block so stale slots read as empty without clearing the set.
    epoch: u32,
    /// First-seen id of each voxel in block order (x fastest), `PAD` outside the volume.
    ids: [u16; BLOCK_VOXELS],
    /// (label, first-seen id), sorted by label once the block is scanned.
    distinct: Vec<(u64, u16)>,
    /// First-seen id → index into the sorted table.
    rank: [u32; BLOCK_VOXELS + 1],
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            slots: vec![Slot::default(); SLOTS],
            epoch: 0,
            ids: [PAD; BLOCK_VOXELS],
            distinct: Vec::with_capacity(BLOCK_VOXELS),
            rank: [0; BLOCK_VOXELS + 1],
        }
    }

    /// Scans the block at `origin`, leaving its sorted distinct labels and per-voxel ranks
    /// ready; returns the distinct count.
    fn gather(&mut self, vol: &[u64], size: [usize; 3], origin: [usize; 3]) -> usize {
        let ext: [usize; 3] = std::array::from_fn(|i| EDGE.min(size[i] - origin[i]));
        self.epoch += 1;
        self.distinct.clear();
        if ext != [EDGE; 3] {
            self.ids.fill(PAD);
        }
        let start = origin[0] + size[0] * (origin[1] + size[1] * origin[2]);
        // Labels come in long runs along x, so most voxels skip the hash probe.
        let mut prev = !vol[start];
        let mut prev_id = 0;
        for z in 0..ext[2] {
            for y in 0..ext[1] {
                let row = start + size[0] * (y + size[1] * z);
                let dst = &mut self.ids[EDGE * (y + EDGE * z)..][..ext[0]];
                for (id, &v) in dst.iter_mut().zip(&vol[row..row + ext[0]]) {
                    if v != prev {
                        prev = v;
                        prev_id = intern(&mut self.slots, self.epoch, &mut self.distinct, v);
                    }
                    *id = prev_id;
                }
            }
        }
        self.distinct.sort_unstable();
        for (rank, &(_, id)) in self.distinct.iter().enumerate() {
            self.rank[id as usize] = rank as u32;
        }
        self.rank[PAD as usize] = 0;
        self.distinct.len()
    }

    /// Packs ranks LSB-first into u32 words; `BITS` is a constant so the inner loop unrolls.
    fn pack<const BITS: usize>(&self, out: &mut Vec<u8>) {
        for chunk in self.ids.chunks_exact(32 / BITS) {
            let mut w = 0u32;
            for (k, &id) in chunk.iter().enumerate() {
                w |= self.rank[id as usize] << (k * BITS);
            }
            out.extend_from_slice(&w.to_le_bytes());
        }
    }

    fn table_hash(&self) -> u64 {
        let mut h = self.distinct.len() as u64;
        for &(v, _) in &self.distinct {
            h = (h.rotate_left(23) ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
        h
    }

    fn table_matches(&self, written: &[u8]) -> bool {
        written.len() >= 8 * self.distinct.len()
            && (self.distinct.iter())
                .zip(written.chunks_exact(8))
                .all(|(&(v, _), b)| b == v.to_le_bytes())
    }
}

fn intern(slots: &mut [Slot], epoch: u32, distinct: &mut Vec<(u64, u16)>, v: u64) -> u16 {
    let mut i = (v.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54) as usize;
    loop {
        let slot = &mut slots[i];
        if slot.epoch != epoch {
            let id = distinct.len() as u16;
            *slot = Slot { key: v, epoch, id };
            distinct.push((v, id));
            return id;
        }
        if slot.key == v {
            return slot.id;
        }
        i = (i + 1) & (SLOTS - 1);
    }
}

/// Decodes one channel of `size = [nx, ny, nz]` voxels (x fastest) encoded in blocks of
/// `block` voxels. Untrusted input: a header, offset or width that does not fit is an error.
pub fn decode(buf: &[u8], size: [usize; 3], block: [usize; 3]) -> Result<Vec<u64>, String> {
    if !buf.len().is_multiple_of(4) {
        return Err(format!("{} bytes: not whole 32-bit words", buf.len()));
    }
    if block.contains(&0) {
        return Err("an encoding block size of 0".into());
    }
    let w: Vec<u32> = buf
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect();
    let start = *w.first().ok_or("no channel offset")? as usize;
    let ch = w.get(start..).ok_or("the channel offset is past the end")?;
    let grid: [usize; 3] = std::array::from_fn(|a| size[a].div_ceil(block[a]));
    let blocks = grid.iter().product::<usize>();
    if ch.len() < 2 * blocks {
        return Err(format!(
            "{} words: too few for {blocks} block headers",
            ch.len()
        ));
    }
    let per_block = block.iter().product::<usize>();
    let mut out = vec![0u64; size.iter().product()];
    for b in 0..blocks {
        let (head, values) = (ch[2 * b], ch[2 * b + 1] as usize);
        let bits = (head >> 24) as usize;
        if ![0, 1, 2, 4, 8, 16, 32].contains(&bits) {
            return Err(format!("block {b}: {bits} bits per value"));
        }
        let table = (head & 0xff_ffff) as usize;
        let words = (per_block * bits).div_ceil(32);
        if bits > 0 && values.checked_add(words).is_none_or(|end| end > ch.len()) {
            return Err(format!("block {b}: its values run past the end"));
        }
        let origin = [
            b % grid[0] * block[0],
            b / grid[0] % grid[1] * block[1],
            b / (grid[0] * grid[1]) * block[2],
        ];
        for z in 0..block[2].min(size[2] - origin[2]) {
            for y in 0..block[1].min(size[1] - origin[1]) {
                for x in 0..block[0].min(size[0] - origin[0]) {
                    let p = x + block[0] * (y + block[1] * z);
                    let idx = match bits {
                        0 => 0,
                        _ => {
                            let word = ch[values + p * bits / 32];
                            ((u64::from(word) >> (p * bits % 32)) & ((1u64 << bits) - 1)) as usize
                        }
                    };
                    let at = table + 2 * idx;
                    let (lo, hi) = match (ch.get(at), ch.get(at + 1)) {
                        (Some(lo), Some(hi)) => (*lo, *hi),
                        _ => return Err(format!("block {b}: index {idx} past its table")),
                    };
                    let v = (origin[2] + z) * size[1] * size[0]
                        + (origin[1] + y) * size[0]
                        + origin[0]
                        + x;
                    out[v] = u64::from(lo) | u64::from(hi) << 32;
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compute::reference::Rng;

    /// Independent reader following neuroglancer's decoder, for in-volume voxels only.
    fn block_bits(buf: &[u8], b: usize) -> u8 {
        buf[4 + 8 * b + 3]
    }

    fn round_trip(vol: &[u64], size: [usize; 3]) -> Vec<u8> {
        let enc = encode(vol, size);
        assert_eq!(decode(&enc, size, [8; 3]).unwrap(), vol, "size {size:?}");
        enc
    }

    #[test]
    fn exact_layout_of_single_voxel() {
        let enc = encode(&[0x1_0000_0002], [1, 1, 1]);
        // channel offset, header (table at 2, 0 bits), values at 2 (none), table: lo, hi
        assert_eq!(enc, [1u32, 2, 2, 2, 1].map(u32::to_le_bytes).concat());
    }

    #[test]
    fn random_odd_sizes() {
        let mut rng = Rng(7);
        for size in [
            [1, 1, 1],
            [63, 65, 7],
            [9, 1, 17],
            [13, 5, 24],
            [64, 64, 64],
        ] {
            for palette in [1u64, 2, 3, 40, 1 << 20] {
                let n = size.iter().product();
                let vol: Vec<u64> = (0..n).map(|_| rng.next_u64() % palette).collect();
                round_trip(&vol, size);
            }
        }
    }

    #[test]
    fn solid_volume_shares_one_table() {
        let size = [20, 17, 9];
        let enc = round_trip(&vec![u64::MAX; 20 * 17 * 9], size);
        let blocks = 3 * 3 * 2;
        assert_eq!(enc.len(), 4 * (1 + 2 * blocks + 2));
        assert!((0..blocks).all(|b| block_bits(&enc, b) == 0));
    }

    #[test]
    fn bits_per_distinct_count() {
        let want_bits = [0, 1, 2, 4, 8, 16, 16];
        for (k, bits) in [1, 2, 3, 5, 17, 300, 512].into_iter().zip(want_bits) {
            let size = [16, 8, 24];
            let vol: Vec<u64> = (0..16 * 8 * 24)
                .map(|i: usize| {
                    let (x, y, z) = (i % 16, i / 16 % 8, i / 128);
                    let block = (x / 8 + 2 * (z / 8)) as u64;
                    let p = x % 8 + 8 * (y + 8 * (z % 8));
                    (block << 40) + (p * 7919 % k) as u64 * 1_000_003
                })
                .collect();
            let enc = round_trip(&vol, size);
            assert!((0..6).all(|b| block_bits(&enc, b) == bits), "k {k}");
        }
    }

    #[test]
    fn many_labels_and_high_bits() {
        // 73728 distinct labels overall; a block can hold at most 512 of them.
        let size = [48, 48, 32];
        let n = 48 * 48 * 32;
        let vol: Vec<u64> = (0..n as u64)
            .map(|i| (i * 0x1_0000_0001) ^ (1 << 63))
            .collect();
        let enc = round_trip(&vol, size);
        assert_eq!(block_bits(&enc, 0), 16);
        let mut rng = Rng(3);
        let labels = [0, 1, u64::MAX, 1 << 32, 0xFFFF_FFFF, 0xDEAD_BEEF_0001];
        let vol: Vec<u64> = (0..31 * 9 * 12)
            .map(|_| labels[rng.next_u64() as usize % 6])
            .collect();
        round_trip(&vol, [31, 9, 12]);
    }

    #[test]
    fn repeated_tables_are_reused() {
        let size = [32, 8, 8];
        let vol: Vec<u64> = (0..32 * 64).map(|i| [5, 9][i % 2]).collect();
        let enc = round_trip(&vol, size);
        let h0 = |b: usize| &enc[4 + 8 * b..4 + 8 * b + 4];
        assert!((1..4).all(|b| h0(b) == h0(0)));
    }

    #[test]
    fn decoding_refuses_what_does_not_fit() {
        let vol: Vec<u64> = (0..10 * 9 * 8).map(|i| i % 5).collect();
        let enc = encode(&vol, [10, 9, 8]);
        for cut in [0, 3, 4, 20, enc.len() - 4] {
            assert!(
                decode(&enc[..cut], [10, 9, 8], [8; 3]).is_err(),
                "cut at {cut}"
            );
        }
        let mut bad_bits = enc.clone();
        bad_bits[4 + 3] = 3;
        assert!(decode(&bad_bits, [10, 9, 8], [8; 3]).is_err());
        let mut bad_table = enc.clone();
        bad_table[4..7].copy_from_slice(&[0xff, 0xff, 0xff]);
        assert!(decode(&bad_table, [10, 9, 8], [8; 3]).is_err());
        assert!(decode(&enc, [10, 9, 8], [0, 8, 8]).is_err());
    }
}

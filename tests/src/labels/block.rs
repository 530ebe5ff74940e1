//! `labels.Block` (spec §5.2): DVID's compressed label block serialization.
//!
//! ```text
//! u32 gx, gy, gz        sub-blocks (8³ voxels each) per dimension
//! u32 N                 label table length (N ≥ 1)
//! u64 labels[N]
//! -- only if N > 1 --
//! u16 Ns[gx*gy*gz]      labels used by each sub-block (sub-blocks in z, y, x order)
//! u32 sbIdx[sum(Ns)]    per sub-block, Ns[i] indices into labels[]
//! values                per sub-block with Ns ≥ 2: 512 local indices of ceil(log2 Ns) bits,
//!                       MSB-first, voxels x fastest then y then z; zero-padded to a byte
//! ```

use std::collections::BTreeSet;

use super::volume::Volume;

const SB: usize = 8;
const SB_VOXELS: usize = SB * SB * SB;

/// Bits per voxel index for a sub-block using `n ≥ 2` labels: ceil(log2 n).
fn bits_for(n: usize) -> usize {
    debug_assert!(n >= 2);
    (usize::BITS - (n - 1).leading_zeros()) as usize
}

/// Sub-blocks per axis of a block volume; panics unless every size is a positive multiple of 8.
#[track_caller]
fn grid(v: &Volume) -> [usize; 3] {
    for s in v.size {
        assert!(
            s > 0 && s % SB == 0,
            "block size {:?} is not a multiple of 8",
            v.size
        );
    }
    [v.size[0] / SB, v.size[1] / SB, v.size[2] / SB]
}

/// The 512 voxel labels of sub-block `(sx, sy, sz)`, x fastest then y then z.
fn sub_block(v: &Volume, s: [usize; 3]) -> Vec<u64> {
    let mut out = Vec::with_capacity(SB_VOXELS);
    for z in 0..SB {
        for y in 0..SB {
            let row = ((s[2] * SB + z) * v.size[1] + s[1] * SB + y) * v.size[0] + s[0] * SB;
            out.extend_from_slice(&v.data[row..row + SB]);
        }
    }
    out
}

/// Sub-block coordinates in serialization order (z, then y, then x).
fn sub_blocks(g: [usize; 3]) -> impl Iterator<Item = [usize; 3]> {
    (0..g[2]).flat_map(move |z| (0..g[1]).flat_map(move |y| (0..g[0]).map(move |x| [x, y, z])))
}

fn header(out: &mut Vec<u8>, g: [usize; 3], table: &[u64]) {
    for d in g {
        out.extend_from_slice(&(d as u32).to_le_bytes());
    }
    out.extend_from_slice(&(table.len() as u32).to_le_bytes());
    for l in table {
        out.extend_from_slice(&l.to_le_bytes());
    }
}

/// Packs `values` (each < 2^bits) MSB-first and pads to a byte.
fn pack(out: &mut Vec<u8>, values: &[u32], bits: usize) {
    let mut acc: u64 = 0;
    let mut nacc = 0usize;
    for &v in values {
        acc = (acc << bits) | u64::from(v);
        nacc += bits;
        while nacc >= 8 {
            out.push((acc >> (nacc - 8)) as u8);
            nacc -= 8;
        }
        acc &= (1u64 << nacc) - 1;
    }
    if nacc > 0 {
        out.push((acc << (8 - nacc)) as u8);
    }
}

/// The block's distinct labels, ascending: the block table both encoders write.
fn sorted_labels(v: &Volume) -> Vec<u64> {
    let distinct: BTreeSet<u64> = v.data.iter().copied().collect();
    distinct.into_iter().collect()
}

/// Encodes a block the way DVID's encoder does: a solid block becomes the 24-byte form;
/// otherwise the block table holds the sorted distinct labels and each sub-block lists only
/// the labels it uses (in order of first appearance), with ceil(log2 Ns) bits per voxel.
pub fn encode_block(v: &Volume) -> Vec<u8> {
    let g = grid(v);
    let table = sorted_labels(v);
    let mut out = Vec::new();
    header(&mut out, g, &table);
    if table.len() == 1 {
        return out;
    }
    let mut ns = Vec::new();
    let mut idx = Vec::new();
    let mut values = Vec::new();
    for s in sub_blocks(g) {
        let vox = sub_block(v, s);
        let mut local: Vec<u64> = Vec::new();
        let mut codes = Vec::with_capacity(SB_VOXELS);
        for l in vox {
            let k = match local.iter().position(|&x| x == l) {
                Some(k) => k,
                None => {
                    local.push(l);
                    local.len() - 1
                }
            };
            codes.push(k as u32);
        }
        ns.push(local.len() as u16);
        for l in &local {
            idx.push(table.binary_search(l).expect("label in table") as u32);
        }
        if local.len() >= 2 {
            pack(&mut values, &codes, bits_for(local.len()));
        }
    }
    for n in ns {
        out.extend_from_slice(&n.to_le_bytes());
    }
    for i in idx {
        out.extend_from_slice(&i.to_le_bytes());
    }
    out.extend_from_slice(&values);
    out
}

/// Encodes a block with every sub-block listing the block's whole label table (Ns = N) and
/// ceil(log2 N) bits per voxel — another valid form a server must decode. Solid blocks use
/// the 24-byte form; blocks with more than 512 labels fall back to [`encode_block`].
pub fn encode_block_full_table(v: &Volume) -> Vec<u8> {
    let g = grid(v);
    let table = sorted_labels(v);
    if table.len() > 512 {
        return encode_block(v);
    }
    let mut out = Vec::new();
    header(&mut out, g, &table);
    let n = table.len();
    if n == 1 {
        return out;
    }
    let nsb = g[0] * g[1] * g[2];
    for _ in 0..nsb {
        out.extend_from_slice(&(n as u16).to_le_bytes());
    }
    for _ in 0..nsb {
        for i in 0..n {
            out.extend_from_slice(&(i as u32).to_le_bytes());
        }
    }
    let bits = bits_for(n);
    for s in sub_blocks(g) {
        let codes: Vec<u32> = sub_block(v, s)
            .iter()
            .map(|l| table.binary_search(l).expect("label in table") as u32)
            .collect();
        pack(&mut out, &codes, bits);
    }
    out
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize, what: &str) -> Result<&[u8], String> {
        if self.b.len() - self.pos < n {
            return Err(format!(
                "truncated at {what}: need {n} bytes at offset {}, have {}",
                self.pos,
                self.b.len() - self.pos
            ));
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u16(&mut self, what: &str) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.take(2, what)?.try_into().unwrap()))
    }
    fn u32(&mut self, what: &str) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().unwrap()))
    }
    fn u64(&mut self, what: &str) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().unwrap()))
    }
}

/// Decodes a `labels.Block` into a volume at the origin (size = 8·(gx, gy, gz)). Handles
/// solid blocks (N = 1), sub-blocks with Ns 0 (all 0) or 1, and any bit width. Rejects
/// truncation, out-of-range indices and trailing bytes.
pub fn decode_block(bytes: &[u8]) -> Result<Volume, String> {
    let mut r = Reader { b: bytes, pos: 0 };
    let mut g = [0usize; 3];
    for (i, d) in g.iter_mut().enumerate() {
        *d = r.u32(["gx", "gy", "gz"][i])? as usize;
        if *d == 0 || *d > 64 {
            return Err(format!("implausible sub-block grid dimension {d}"));
        }
    }
    let n = r.u32("N")? as usize;
    if n == 0 {
        return Err("label table length N = 0".into());
    }
    if n > (bytes.len() - r.pos) / 8 {
        return Err(format!("truncated label table: N = {n}"));
    }
    let table: Vec<u64> = (0..n).map(|_| r.u64("labels")).collect::<Result<_, _>>()?;
    let size = [g[0] * SB, g[1] * SB, g[2] * SB];
    if n == 1 {
        if r.pos != bytes.len() {
            return Err(format!(
                "solid block has {} trailing bytes",
                bytes.len() - r.pos
            ));
        }
        return Ok(Volume::filled(size, table[0]));
    }
    let nsb = g[0] * g[1] * g[2];
    let ns: Vec<usize> = (0..nsb)
        .map(|_| r.u16("Ns").map(usize::from))
        .collect::<Result<_, _>>()?;
    let total: usize = ns.iter().sum();
    let idx: Vec<usize> = (0..total)
        .map(|_| r.u32("sbIdx").map(|i| i as usize))
        .collect::<Result<_, _>>()?;
    if let Some(&bad) = idx.iter().find(|&&i| i >= n) {
        return Err(format!("sbIdx entry {bad} out of range (N = {n})"));
    }
    let mut vol = Volume::zeros(size);
    let mut base = 0usize;
    for (i, s) in sub_blocks(g).enumerate() {
        let k = ns[i];
        let local = &idx[base..base + k];
        base += k;
        let mut put = |j: usize, label: u64| {
            let (x, y, z) = (j % SB, (j / SB) % SB, j / (SB * SB));
            let p = ((s[2] * SB + z) * size[1] + s[1] * SB + y) * size[0] + s[0] * SB + x;
            vol.data[p] = label;
        };
        match k {
            0 => {}
            1 => (0..SB_VOXELS).for_each(|j| put(j, table[local[0]])),
            _ => {
                let bits = bits_for(k);
                let nbytes = (SB_VOXELS * bits).div_ceil(8);
                let vals = r.take(nbytes, "values")?;
                for j in 0..SB_VOXELS {
                    let mut code = 0usize;
                    for b in 0..bits {
                        let bit = j * bits + b;
                        code = (code << 1) | usize::from((vals[bit / 8] >> (7 - bit % 8)) & 1);
                    }
                    if code >= k {
                        return Err(format!("sub-block {i}: local index {code} ≥ Ns = {k}"));
                    }
                    put(j, table[local[code]]);
                }
            }
        }
    }
    if r.pos != bytes.len() {
        return Err(format!("{} trailing bytes", bytes.len() - r.pos));
    }
    Ok(vol)
}

#[cfg(test)]
mod tests {
    use super::super::volume::{hash3, noise_fixture};
    use super::*;

    fn roundtrip(v: &Volume) {
        for (name, enc) in [
            ("dvid", encode_block(v)),
            ("full", encode_block_full_table(v)),
        ] {
            let d = decode_block(&enc).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(&d, v, "{name} roundtrip");
        }
    }

    #[test]
    fn bits_per_label_count() {
        let want = [
            (2, 1),
            (3, 2),
            (4, 2),
            (5, 3),
            (8, 3),
            (9, 4),
            (256, 8),
            (257, 9),
        ];
        for (n, b) in want {
            assert_eq!(bits_for(n), b, "n = {n}");
        }
        assert_eq!(bits_for(512), 9);
    }

    #[test]
    fn solid_block_is_24_bytes() {
        let v = Volume::filled([64; 3], 0xDEAD_BEEF_0000_0001);
        let enc = encode_block(&v);
        assert_eq!(enc.len(), 24);
        assert_eq!(
            &enc[..16],
            &[8, 0, 0, 0, 8, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0]
        );
        assert_eq!(&enc[16..], &0xDEAD_BEEF_0000_0001u64.to_le_bytes());
        assert_eq!(encode_block_full_table(&v), enc);
        assert_eq!(decode_block(&enc).unwrap(), v);
    }

    #[test]
    fn two_label_block_layout_by_hand() {
        // 8³ block: voxel 0 is 5, the rest 9 → table [5, 9], Ns [2], sbIdx [0, 1],
        // 1 bit per voxel, first value MSB of the first byte.
        let mut v = Volume::filled([8; 3], 9);
        v.set([0, 0, 0], 5);
        let enc = encode_block_full_table(&v);
        let mut want = vec![1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0];
        want.extend_from_slice(&5u64.to_le_bytes());
        want.extend_from_slice(&9u64.to_le_bytes());
        want.extend_from_slice(&[2, 0]);
        want.extend_from_slice(&[0, 0, 0, 0, 1, 0, 0, 0]);
        want.push(0b0111_1111);
        want.extend_from_slice(&[0xFF; 63]);
        assert_eq!(enc, want);
        assert_eq!(decode_block(&want).unwrap(), v);
        // DVID-style encoding: local order of first appearance is [5, 9] too
        assert_eq!(encode_block(&v), want);
    }

    #[test]
    fn three_bit_values_straddle_bytes() {
        // 8³ block with 5 labels at voxels 0..4 then label 0: 3 bits each, MSB-first.
        let mut v = Volume::zeros([8; 3]);
        for (i, l) in [10u64, 20, 30, 40, 50].iter().enumerate() {
            v.set([i as i32 + 1, 0, 0], *l);
        }
        let enc = encode_block(&v);
        // local order of first appearance: 0, 10, 20, 30, 40, 50 → codes 0,1,2,3,4,5,0,0...
        let header_len = 16 + 6 * 8 + 2 + 6 * 4;
        let vals = &enc[header_len..];
        assert_eq!(vals.len(), 512 * 3 / 8);
        // 000 001 010 011 100 101 000 000 → 0000_0101 0011_1001 0100_0000
        assert_eq!(&vals[..3], &[0b0000_0101, 0b0011_1001, 0b0100_0000]);
        assert_eq!(decode_block(&enc).unwrap(), v);
    }

    #[test]
    fn roundtrips_for_many_label_counts() {
        for (i, n) in [2u64, 3, 4, 5, 17, 200, 256, 257, 300, 511, 512]
            .iter()
            .enumerate()
        {
            let alphabet: Vec<u64> = (0..*n).map(|k| k * 1_000_003 + 7).collect();
            let v = noise_fixture([16, 16, 16], i as u64, &alphabet);
            roundtrip(&v);
        }
        // many labels across a 64³ block (table > 512: full-table form falls back)
        let v = Volume::from_fn([0; 3], [64; 3], |x, y, z| hash3(x, y, z, 3) % 5000);
        roundtrip(&v);
        // non-cubic block, mixed solid and noisy sub-blocks
        let v = Volume::from_fn([0; 3], [32, 16, 48], |x, y, z| {
            if z < 8 {
                4
            } else if x < 8 {
                u64::MAX
            } else {
                hash3(x, y, z, 1) % 3
            }
        });
        roundtrip(&v);
    }

    #[test]
    fn decodes_ns_zero_and_one_and_duplicate_table_entries() {
        // 16x8x8 block: sub-block 0 has Ns = 0 (all 0), sub-block 1 has Ns = 1 → labels[2].
        let mut b = vec![];
        for d in [2u32, 1, 1, 3] {
            b.extend_from_slice(&d.to_le_bytes());
        }
        for l in [7u64, 7, 8] {
            b.extend_from_slice(&l.to_le_bytes());
        }
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&2u32.to_le_bytes());
        let v = decode_block(&b).unwrap();
        assert_eq!(v.size, [16, 8, 8]);
        assert_eq!(v.get([0, 0, 0]), 0);
        assert_eq!(v.get([7, 7, 7]), 0);
        assert_eq!(v.get([8, 0, 0]), 8);
        assert_eq!(v.get([15, 7, 7]), 8);
    }

    #[test]
    fn rejects_malformed_blocks() {
        let v = noise_fixture([16, 16, 16], 5, &[0, 1, 2, 3, 4, 5]);
        let enc = encode_block(&v);
        for cut in [0, 3, 15, 20, 16 + 8 * 6, enc.len() - 1] {
            assert!(decode_block(&enc[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = enc.clone();
        extra.push(0);
        assert!(decode_block(&extra).is_err(), "trailing byte");
        let mut zero_n = enc.clone();
        zero_n[12..16].copy_from_slice(&0u32.to_le_bytes());
        assert!(decode_block(&zero_n).is_err(), "N = 0");
        // a sub-block index pointing past the table
        let mut bad = encode_block_full_table(&v);
        let idx_at = 16 + 6 * 8 + 8 * 2;
        bad[idx_at..idx_at + 4].copy_from_slice(&6u32.to_le_bytes());
        assert!(decode_block(&bad).is_err(), "sbIdx out of range");
        // a 3-label sub-block (2 bits) holding local index 3
        let mut w = Volume::zeros([8; 3]);
        w.set([1, 0, 0], 1);
        w.set([2, 0, 0], 2);
        let mut e = encode_block(&w);
        let vals_at = 16 + 3 * 8 + 2 + 3 * 4;
        e[vals_at] = 0b1100_0000;
        assert!(decode_block(&e).is_err(), "local index ≥ Ns");
    }
}

//! The label mode of a 2×2×2 window: most frequent non-zero label, ties to the smallest.
//!
//! Most windows lie inside one segment, where all eight children agree (83 % of the windows
//! of the real pinky40 cutout; 14 % hold two labels, 3 % more). Where the CPU has AVX2, a row
//! is therefore reduced in blocks of 32 windows: one vector pass writes every window's first
//! child and marks the windows whose children differ, with no branch per window, and a second
//! pass computes the marked ones while their rows are still in L1, four windows at a time
//! across the lanes of a vector, with no branch either (deciding per window whether it holds
//! two labels or more cost more in mispredictions than counting all pairs of children).
//! The input rows two output rows on are prefetched into L2 block by block, which the
//! hardware prefetcher alone did not keep up with.
//! `mode_rows_scalar` is the portable twin; both give the reference's bytes.

use super::pyramid::Reduce;

#[cfg(test)]
mod tests;

impl Reduce for u64 {
    fn reduce_rows(rows: &[&[u64]], out: &mut [u64]) {
        if let [r0, r1, r2, r3] = rows {
            mode_rows(r0, r1, r2, r3, out);
        } else {
            // Edge rows: the missing ones are zero padding, which never votes.
            let zero = vec![0u64; rows[0].len()];
            let get = |i: usize| rows.get(i).copied().unwrap_or(&zero);
            mode_rows(get(0), get(1), get(2), get(3), out);
        }
    }
}

/// One output row from four input rows of length `w`; an odd last column is padded with 0.
fn mode_rows(r0: &[u64], r1: &[u64], r2: &[u64], r3: &[u64], out: &mut [u64]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        unsafe { avx2::mode_rows(r0, r1, r2, r3, out) };
        return;
    }
    mode_rows_scalar(r0, r1, r2, r3, out);
}

/// `mode_rows` without SIMD.
fn mode_rows_scalar(r0: &[u64], r1: &[u64], r2: &[u64], r3: &[u64], out: &mut [u64]) {
    let w = r0.len();
    let (p0, p1, p2, p3) = (pairs(r0), pairs(&r1[..w]), pairs(&r2[..w]), pairs(&r3[..w]));
    let columns = p0.iter().zip(p1).zip(p2).zip(p3);
    for (o, (((a, b), c), d)) in out.iter_mut().zip(columns) {
        *o = mode8([a[0], a[1], b[0], b[1], c[0], c[1], d[0], d[1]]);
    }
    if w % 2 == 1 {
        let x = w - 1;
        out[w / 2] = mode_of([r0[x], r1[x], r2[x], r3[x]]);
    }
}

/// The row's whole x-pairs.
fn pairs(row: &[u64]) -> &[[u64; 2]] {
    row.as_chunks::<2>().0
}

#[inline(always)]
fn mode8(c: [u64; 8]) -> u64 {
    let a = c[0];
    // Inside a segment all eight children agree: the common case, decided branch-free.
    let differ =
        (a ^ c[1]) | (a ^ c[2]) | (a ^ c[3]) | (a ^ c[4]) | (a ^ c[5]) | (a ^ c[6]) | (a ^ c[7]);
    if differ == 0 {
        return a;
    }
    // Along a boundary parallel to x the children often come in equal x-pairs: then the
    // mode of the four pairs is the mode of the eight.
    if c[0] == c[1] && c[2] == c[3] && c[4] == c[5] && c[6] == c[7] {
        return mode_of([c[0], c[2], c[4], c[6]]);
    }
    mode_of(c)
}

/// Most frequent non-zero value, ties to the smallest, none → 0. Each value is counted over
/// itself and the values after it, so its first occurrence sees its full count and later
/// occurrences (with smaller counts) never win.
#[inline(always)]
fn mode_of<const N: usize>(c: [u64; N]) -> u64 {
    let (mut best, mut best_n) = (0u64, 0u32);
    for i in 0..N {
        let v = c[i];
        let n: u32 = c[i..].iter().map(|&o| (o == v) as u32).sum();
        let better = v != 0 && (n > best_n || (n == best_n && v < best));
        best = if better { v } else { best };
        best_n = if better { n } else { best_n };
    }
    best
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::super::pyramid::prefetch_ahead;

    /// Windows per block: two bits of a u64 each.
    const BLOCK: usize = 32;

    /// `super::mode_rows` with AVX2; the caller checks that the CPU has it.
    #[target_feature(enable = "avx2")]
    pub(super) fn mode_rows(r0: &[u64], r1: &[u64], r2: &[u64], r3: &[u64], out: &mut [u64]) {
        let w = r0.len();
        let (r1, r2, r3) = (&r1[..w], &r2[..w], &r3[..w]);
        let rows = [r0, r1, r2, r3];
        let blocks = w / 2 / BLOCK;
        // Mixed windows wait here until four are known, then are reduced together.
        let mut pending = [0usize; 4];
        let mut n = 0;
        for b in 0..blocks {
            let x0 = 2 * BLOCK * b;
            let block = [
                &r0[x0..x0 + 2 * BLOCK],
                &r1[x0..x0 + 2 * BLOCK],
                &r2[x0..x0 + 2 * BLOCK],
                &r3[x0..x0 + 2 * BLOCK],
            ];
            prefetch_ahead(&rows, x0..x0 + 2 * BLOCK);
            let mut mixed = first_children(&block, &mut out[BLOCK * b..BLOCK * (b + 1)]);
            while mixed != 0 {
                pending[n] = BLOCK * b + mixed.trailing_zeros() as usize / 2;
                mixed &= mixed - 1;
                n += 1;
                if n == 4 {
                    mode4(&rows, pending, out);
                    n = 0;
                }
            }
        }
        if n > 0 {
            // Padded with the first: a window reduced twice is written twice, the same value.
            let first = pending[0];
            pending[n..].fill(first);
            mode4(&rows, pending, out);
        }
        // The windows after the last whole block, and an odd last column.
        let x0 = 2 * BLOCK * blocks;
        let tail = &mut out[BLOCK * blocks..];
        super::mode_rows_scalar(&r0[x0..], &r1[x0..], &r2[x0..], &r3[x0..], tail);
    }

    /// Writes each of the block's windows' first child to `out` and returns the windows whose
    /// children differ: bit 2i for window i.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn first_children(rows: &[&[u64]; 4], out: &mut [u64]) -> u64 {
        assert!(rows.iter().all(|r| r.len() == 2 * BLOCK) && out.len() == BLOCK);
        let mut mixed = 0u64;
        for g in 0..BLOCK / 4 {
            // Four windows: eight children per row, in two vectors of two windows each.
            let at = 8 * g;
            // SAFETY: each row holds 2 × BLOCK values (asserted), so at + 8 ≤ its length.
            let ld =
                |r: &[u64], k: usize| unsafe { _mm256_loadu_si256(r.as_ptr().add(at + k).cast()) };
            let lo = [
                ld(rows[0], 0),
                ld(rows[1], 0),
                ld(rows[2], 0),
                ld(rows[3], 0),
            ];
            let hi = [
                ld(rows[0], 4),
                ld(rows[1], 4),
                ld(rows[2], 4),
                ld(rows[3], 4),
            ];
            let same = agree(lo) | agree(hi) << 4;
            // Lane bits 11 mean the window agrees; any other value marks it mixed.
            let agreed = same & (same >> 1) & 0x55;
            mixed |= (!agreed & 0x55) << (8 * g);
            // [w0, w2, w1, w3] → [w0, w1, w2, w3]
            let firsts =
                _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_unpacklo_epi64(lo[0], hi[0]));
            // SAFETY: out holds BLOCK values (asserted), so 4g + 4 ≤ its length.
            unsafe { _mm256_storeu_si256(out.as_mut_ptr().add(4 * g).cast(), firsts) };
        }
        mixed
    }

    /// For two windows (lanes 0–1 and 2–3 of each row), the lanes whose four rows hold the
    /// window's first child.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn agree(v: [__m256i; 4]) -> u64 {
        // Each window's first child, in both of its lanes.
        let first = _mm256_shuffle_epi32::<0x44>(v[0]);
        let e01 = _mm256_and_si256(
            _mm256_cmpeq_epi64(v[0], first),
            _mm256_cmpeq_epi64(v[1], first),
        );
        let e23 = _mm256_and_si256(
            _mm256_cmpeq_epi64(v[2], first),
            _mm256_cmpeq_epi64(v[3], first),
        );
        _mm256_movemask_pd(_mm256_castsi256_pd(_mm256_and_si256(e01, e23))) as u64
    }

    /// The modes of four windows `at` (whole windows of `rows`), without a branch. Each of
    /// the eight children is a vector across the four windows, so that the 28 pairs of
    /// children are compared once for all four.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn mode4(rows: &[&[u64]; 4], at: [usize; 4], out: &mut [u64]) {
        let pair = |r: &[u64], i: usize| {
            let p = &r[2 * i..2 * i + 2];
            // SAFETY: p holds two u64, the 16 bytes read.
            unsafe { _mm_loadu_si128(p.as_ptr().cast()) }
        };
        // Lanes hold the windows in the order at[0], at[2], at[1], at[3].
        let mut c = [_mm256_setzero_si256(); 8];
        for (r, row) in rows.iter().enumerate() {
            let p = _mm256_set_m128i(pair(row, at[1]), pair(row, at[0]));
            let q = _mm256_set_m128i(pair(row, at[3]), pair(row, at[2]));
            c[2 * r] = _mm256_unpacklo_epi64(p, q);
            c[2 * r + 1] = _mm256_unpackhi_epi64(p, q);
        }
        // Each child counted over itself and the children after it (an all-ones mask is −1,
        // so equal ones are subtracted): a label's first child sees its full count, and its
        // later ones, with less, never win.
        let mut n = [_mm256_set1_epi64x(1); 8];
        for j in 0..8 {
            for k in j + 1..8 {
                n[j] = _mm256_sub_epi64(n[j], _mm256_cmpeq_epi64(c[j], c[k]));
            }
        }
        // Zero never votes: its count becomes 0, below every label's.
        let zero = _mm256_setzero_si256();
        let n: [__m256i; 8] =
            std::array::from_fn(|j| _mm256_andnot_si256(_mm256_cmpeq_epi64(c[j], zero), n[j]));
        // The largest count (at most 8, so a 32-bit maximum of the 64-bit lanes is theirs).
        let m = tree(n, |p, q| _mm256_max_epi32(p, q));
        // The smallest label holding it. Labels are compared as signed numbers with the sign
        // bit flipped, which orders them as unsigned; the others become the largest.
        let sign = _mm256_set1_epi64x(i64::MIN);
        let none = _mm256_set1_epi64x(i64::MAX);
        let held: [__m256i; 8] = std::array::from_fn(|j| {
            let label = _mm256_xor_si256(c[j], sign);
            _mm256_blendv_epi8(none, label, _mm256_cmpeq_epi64(n[j], m))
        });
        let least = tree(held, |p, q| {
            _mm256_blendv_epi8(p, q, _mm256_cmpgt_epi64(p, q))
        });
        // All children zero: every count is 0, and every child, 0, holds it.
        let mut modes = [0u64; 4];
        let v = _mm256_xor_si256(least, sign);
        // SAFETY: modes holds the vector's 32 bytes.
        unsafe { _mm256_storeu_si256(modes.as_mut_ptr().cast(), v) };
        out[at[0]] = modes[0];
        out[at[2]] = modes[1];
        out[at[1]] = modes[2];
        out[at[3]] = modes[3];
    }

    /// `f` folded over eight vectors as a tree (three steps deep, not seven).
    #[target_feature(enable = "avx2")]
    #[inline]
    fn tree(v: [__m256i; 8], f: impl Fn(__m256i, __m256i) -> __m256i) -> __m256i {
        let v: [__m256i; 4] = std::array::from_fn(|j| f(v[2 * j], v[2 * j + 1]));
        f(f(v[0], v[1]), f(v[2], v[3]))
    }
}

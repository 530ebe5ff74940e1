//! The label mode of a 2×2×2 window: most frequent non-zero label, ties to the smallest.
//!
//! Most windows lie inside one segment, where all eight children agree (83 % of the windows
//! of the real pinky40 cutout; 14 % hold two labels, 3 % more). Where the CPU has AVX2, a row
//! is therefore reduced in blocks of 32 windows: one vector pass writes every window's first
//! child and marks the windows whose children differ, with no branch per window, and a second
//! pass computes the marked ones while their rows are still in L1: those holding two labels
//! (most of them) by counting one label, the others by a branch-free count of all pairs.
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

    /// Windows per block: two marker bits each fill one u64.
    const BLOCK: usize = 32;

    /// `super::mode_rows` with AVX2; the caller checks that the CPU has it.
    #[target_feature(enable = "avx2")]
    pub(super) fn mode_rows(r0: &[u64], r1: &[u64], r2: &[u64], r3: &[u64], out: &mut [u64]) {
        let w = r0.len();
        let (r1, r2, r3) = (&r1[..w], &r2[..w], &r3[..w]);
        let blocks = w / 2 / BLOCK;
        for b in 0..blocks {
            let x0 = 2 * BLOCK * b;
            let rows = [
                &r0[x0..x0 + 2 * BLOCK],
                &r1[x0..x0 + 2 * BLOCK],
                &r2[x0..x0 + 2 * BLOCK],
                &r3[x0..x0 + 2 * BLOCK],
            ];
            let out = &mut out[BLOCK * b..BLOCK * (b + 1)];
            let mut mixed = first_children(&rows, out);
            while mixed != 0 {
                let i = mixed.trailing_zeros() as usize / 2;
                mixed &= !(3 << (2 * i));
                let (a, b) = children(&rows, i);
                out[i] = match two_labels(a, b) {
                    Some(m) => m,
                    None => mode_window(a, b),
                };
            }
        }
        // The windows after the last whole block, and an odd last column.
        let x0 = 2 * BLOCK * blocks;
        let tail = &mut out[BLOCK * blocks..];
        super::mode_rows_scalar(&r0[x0..], &r1[x0..], &r2[x0..], &r3[x0..], tail);
    }

    /// Writes each of the block's windows' first child to `out` and returns two bits per
    /// window (bits 2i and 2i + 1 for window i), not both set when its children differ.
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

    /// Window `i`'s eight children as two vectors: rows 0–1 and rows 2–3, child j of the
    /// window in lane j % 4.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn children(rows: &[&[u64]; 4], i: usize) -> (__m256i, __m256i) {
        let x = 2 * i;
        let pair = |r: &[u64]| {
            let p = &r[x..x + 2];
            // SAFETY: p holds two u64, the 16 bytes read.
            unsafe { _mm_loadu_si128(p.as_ptr().cast()) }
        };
        (
            _mm256_set_m128i(pair(rows[1]), pair(rows[0])),
            _mm256_set_m128i(pair(rows[3]), pair(rows[2])),
        )
    }

    /// The mode of a window whose children hold exactly two labels, `None` when they hold
    /// more. Most mixed windows lie on the boundary of two segments, and counting one label's
    /// children is cheaper than `mode_window`'s all-pairs count.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn two_labels(a: __m256i, b: __m256i) -> Option<u64> {
        let bits = |v: u64| {
            let v = _mm256_set1_epi64x(v as i64);
            let lo = _mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpeq_epi64(a, v)));
            let hi = _mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpeq_epi64(b, v)));
            (lo | hi << 4) as u32
        };
        let first = _mm256_extract_epi64::<0>(a) as u64;
        let with_first = bits(first);
        let other = match (!with_first & 0xff).trailing_zeros() {
            8 => return Some(first),
            j @ 0..4 => lane(a, j),
            j => lane(b, j - 4),
        };
        if with_first | bits(other) != 0xff {
            return None;
        }
        let n = with_first.count_ones();
        Some(match (first, other) {
            (0, o) => o,
            (f, 0) => f,
            (f, o) => match n.cmp(&4) {
                std::cmp::Ordering::Greater => f,
                std::cmp::Ordering::Less => o,
                std::cmp::Ordering::Equal => f.min(o),
            },
        })
    }

    /// Lane `j` (0–3) of `v`.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn lane(v: __m256i, j: u32) -> u64 {
        let mut out = [0u64; 4];
        // SAFETY: out holds the vector's 32 bytes.
        unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), v) };
        out[j as usize]
    }

    /// The mode of a window (its children as `children` gives them) without a branch: every
    /// child's count comes from comparing the eight children (two vectors, `a` rows 0–1 and
    /// `b` rows 2–3) with all rotations of both, then the largest count wins and the smallest
    /// label among the children holding it breaks a tie.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn mode_window(a: __m256i, b: __m256i) -> u64 {
        let rotations = |v: __m256i| {
            [
                _mm256_permute4x64_epi64::<0x39>(v),
                _mm256_permute4x64_epi64::<0x4e>(v),
                _mm256_permute4x64_epi64::<0x93>(v),
            ]
        };
        let (ra, rb) = (rotations(a), rotations(b));
        let eq = |p: __m256i, q: __m256i| _mm256_cmpeq_epi64(p, q);
        let add = |p: __m256i, q: __m256i| _mm256_add_epi64(p, q);
        // Counts as negative numbers: sums of all-ones masks, the child itself included.
        let own = _mm256_set1_epi64x(-1);
        let ab = eq(a, b);
        let count_a = add(
            add(add(eq(a, ra[0]), eq(a, ra[1])), add(eq(a, ra[2]), ab)),
            add(add(eq(a, rb[0]), eq(a, rb[1])), add(eq(a, rb[2]), own)),
        );
        let count_b = add(
            add(add(eq(b, rb[0]), eq(b, rb[1])), add(eq(b, rb[2]), ab)),
            add(add(eq(b, ra[0]), eq(b, ra[1])), add(eq(b, ra[2]), own)),
        );
        // Zero never votes: its count becomes 0, which no real count (≤ −1) equals.
        let zero = _mm256_setzero_si256();
        let count_a = _mm256_andnot_si256(eq(a, zero), count_a);
        let count_b = _mm256_andnot_si256(eq(b, zero), count_b);
        // The largest count is the smallest low 32-bit half (the high halves are 0 or −1,
        // never below a real count).
        let m = _mm256_min_epi32(count_a, count_b);
        let m = _mm256_min_epi32(m, _mm256_permute4x64_epi64::<0x4e>(m));
        let m = _mm256_min_epi32(m, _mm256_shuffle_epi32::<0x4e>(m));
        let m = _mm256_shuffle_epi32::<0x00>(m);
        // Each count's low half in both halves of its lane, to compare with m as 64 bits.
        let low = |c: __m256i| _mm256_shuffle_epi32::<0xa0>(c);
        let (won_a, won_b) = (eq(low(count_a), m), eq(low(count_b), m));
        // The smallest label holding that count: the others become u64::MAX, and an unsigned
        // minimum is a signed one with the sign bits flipped.
        let ones = _mm256_set1_epi64x(-1);
        let (a, b) = (
            _mm256_blendv_epi8(ones, a, won_a),
            _mm256_blendv_epi8(ones, b, won_b),
        );
        let sign = _mm256_set1_epi64x(i64::MIN);
        let umin = |p: __m256i, q: __m256i| {
            let gt = _mm256_cmpgt_epi64(_mm256_xor_si256(p, sign), _mm256_xor_si256(q, sign));
            _mm256_blendv_epi8(p, q, gt)
        };
        let v = umin(a, b);
        let v = umin(v, _mm256_permute4x64_epi64::<0x4e>(v));
        let v = umin(v, _mm256_shuffle_epi32::<0x4e>(v));
        let best = _mm256_extract_epi64::<0>(v) as u64;
        // All children zero: no count is non-zero and no label won.
        let counts = _mm256_or_si256(count_a, count_b);
        if _mm256_testz_si256(counts, counts) == 1 {
            0
        } else {
            best
        }
    }
}

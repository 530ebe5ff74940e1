//! The label mode of a 2×2×2 window: most frequent non-zero label, ties to the smallest.

use super::pyramid::Reduce;

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

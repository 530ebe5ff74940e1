//! The uint8 mean of a 2×2×2 window: `(sum + n/2) / n` over the `n` children that exist.
//!
//! Full windows are summed in u16 lanes: each pair of adjacent bytes is read as one
//! little-endian u16 `w`, whose bytes add up as `(w & 0xff) + (w >> 8)`, so the loop has no
//! shuffles and the compiler vectorizes it. An AVX2 build of the same loop is picked at run
//! time where the CPU has it (the binary itself stays portable).

use super::pyramid::{Reduce, prefetch_ahead};

impl Reduce for u8 {
    fn reduce_rows(rows: &[&[u8]], out: &mut [u8]) {
        let w = rows[0].len();
        let pairs = w / 2;
        if let [r0, r1, r2, r3] = rows {
            mean_rows4(r0, r1, r2, r3, &mut out[..pairs]);
        } else {
            for (i, o) in out[..pairs].iter_mut().enumerate() {
                let sum: u32 = rows
                    .iter()
                    .map(|r| r[2 * i] as u32 + r[2 * i + 1] as u32)
                    .sum();
                *o = round_mean(sum, 2 * rows.len() as u32);
            }
        }
        if w % 2 == 1 {
            let sum: u32 = rows.iter().map(|r| r[w - 1] as u32).sum();
            out[pairs] = round_mean(sum, rows.len() as u32);
        }
    }
}

fn round_mean(sum: u32, n: u32) -> u8 {
    ((sum + n / 2) / n) as u8
}

/// Full windows: `out.len()` pairs of columns of four rows.
fn mean_rows4(r0: &[u8], r1: &[u8], r2: &[u8], r3: &[u8], out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        unsafe { mean_rows4_avx2(r0, r1, r2, r3, out) };
        return;
    }
    mean_rows4_portable(r0, r1, r2, r3, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn mean_rows4_avx2(r0: &[u8], r1: &[u8], r2: &[u8], r3: &[u8], out: &mut [u8]) {
    // The rows two output rows on, whole: they are short.
    prefetch_ahead(&[r0, r1, r2, r3], 0..r0.len());
    mean_rows4_portable(r0, r1, r2, r3, out);
}

#[inline(always)]
fn mean_rows4_portable(r0: &[u8], r1: &[u8], r2: &[u8], r3: &[u8], out: &mut [u8]) {
    const LANES: usize = 32;
    let n = out.len();
    let (r0, r1, r2, r3) = (&r0[..2 * n], &r1[..2 * n], &r2[..2 * n], &r3[..2 * n]);
    let full = n / LANES * LANES;
    for (c, o) in out[..full].chunks_exact_mut(LANES).enumerate() {
        let at = 2 * LANES * c;
        let rows = [
            &r0[at..at + 2 * LANES],
            &r1[at..at + 2 * LANES],
            &r2[at..at + 2 * LANES],
            &r3[at..at + 2 * LANES],
        ];
        let mut sum = [0u16; LANES];
        for r in rows {
            for (s, b) in sum.iter_mut().zip(r.chunks_exact(2)) {
                let w = u16::from_le_bytes([b[0], b[1]]);
                *s += (w & 0xff) + (w >> 8);
            }
        }
        for (o, s) in o.iter_mut().zip(sum) {
            *o = ((s + 4) >> 3) as u8;
        }
    }
    for (i, o) in out.iter_mut().enumerate().skip(full) {
        let x = 2 * i;
        let sum = [r0, r1, r2, r3]
            .iter()
            .map(|r| r[x] as u32 + r[x + 1] as u32)
            .sum();
        *o = round_mean(sum, 8);
    }
}

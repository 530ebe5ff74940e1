//! The AVX2 and scalar row kernels against `reference::mode`, each called directly so that
//! both are checked whatever the CPU picks (the AVX2 one where the CPU has it).

use super::super::test_data::pinky40;
use crate::compute::Shape;
use crate::compute::reference::{self, Rng};

type RowFn = fn(&[u64], &[u64], &[u64], &[u64], &mut [u64]);

/// The row kernels this CPU can run, by name.
fn kernels() -> Vec<(&'static str, RowFn)> {
    let mut out: Vec<(&'static str, RowFn)> = vec![("scalar", super::mode_rows_scalar)];
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        out.push(("avx2", |r0, r1, r2, r3, o| unsafe {
            super::avx2::mode_rows(r0, r1, r2, r3, o)
        }));
    } else {
        eprintln!("this CPU has no AVX2: only the scalar kernel is checked");
    }
    out
}

/// One level through a row kernel, missing rows as zeros (as `reduce_rows` pads them).
fn downsample_with(f: RowFn, src: &[u64], shape: Shape) -> Vec<u64> {
    let half = shape.half();
    let zero = vec![0u64; shape.x];
    let row = |y: usize, z: usize| match y < shape.y && z < shape.z {
        true => &src[(z * shape.y + y) * shape.x..][..shape.x],
        false => &zero[..],
    };
    let mut out = vec![u64::MAX; half.voxels()];
    for z in 0..half.z {
        for y in 0..half.y {
            let o = &mut out[(z * half.y + y) * half.x..][..half.x];
            let (y0, z0) = (2 * y, 2 * z);
            f(
                row(y0, z0),
                row(y0 + 1, z0),
                row(y0, z0 + 1),
                row(y0 + 1, z0 + 1),
                o,
            );
        }
    }
    out
}

/// Every window of eight children over four labels (zero; 1 and 2³² + 1, equal in their low
/// halves; 2⁶³, negative as a signed number): all ties, zero counts and orders.
#[test]
fn every_window_over_four_labels() {
    const LABELS: [u64; 4] = [0, 1, (1 << 32) | 1, 1 << 63];
    let windows = 1usize << 16;
    let mut rows = vec![vec![0u64; 2 * windows]; 4];
    let mut want = Vec::with_capacity(windows);
    for k in 0..windows {
        let children: Vec<u64> = (0..8).map(|j| LABELS[(k >> (2 * j)) & 3]).collect();
        for (j, &c) in children.iter().enumerate() {
            rows[j / 2][2 * k + j % 2] = c;
        }
        want.push(reference::mode(&children));
    }
    for (name, f) in kernels() {
        let mut out = vec![u64::MAX; windows];
        f(&rows[0], &rows[1], &rows[2], &rows[3], &mut out);
        assert!(out == want, "{name}");
    }
}

/// Rows of every width from 1 to 200 (odd ones end in a one-column window), of noise and
/// of runs, over labels that stress the compares.
#[test]
fn random_rows_of_every_width() {
    const PALETTES: [&[u64]; 3] = [
        &[
            0,
            1,
            2,
            u64::MAX,
            (1 << 32) | 1,
            (1 << 33) | 1,
            u64::MAX - 1,
        ],
        &[0, 3],
        &[7, 1 << 40],
    ];
    let mut rng = Rng(7);
    for w in 1..=200 {
        for palette in PALETTES {
            for runs in [false, true] {
                let mut rows = vec![vec![0u64; w]; 4];
                for r in &mut rows {
                    let mut label = palette[0];
                    for v in r.iter_mut() {
                        if !runs || rng.below(12) == 0 {
                            label = palette[rng.below(palette.len())];
                        }
                        *v = label;
                    }
                }
                let want: Vec<u64> = (0..w.div_ceil(2))
                    .map(|i| {
                        let cols = 2 * i..(2 * i + 2).min(w);
                        let c: Vec<u64> = rows
                            .iter()
                            .flat_map(|r| &r[cols.clone()])
                            .copied()
                            .collect();
                        reference::mode(&c)
                    })
                    .collect();
                for (name, f) in kernels() {
                    let mut out = vec![u64::MAX; w.div_ceil(2)];
                    f(&rows[0], &rows[1], &rows[2], &rows[3], &mut out);
                    assert!(out == want, "{name}, width {w}, {palette:?}, runs {runs}");
                }
            }
        }
    }
}

/// Real segmentation, and an odd-sized corner of it (padding rows and columns).
#[test]
fn real_segmentation_matches_the_reference() {
    let (shape, labels) = pinky40("pinky40-192-192-192-128");
    let odd = Shape::new(125, 67, 33);
    let corner: Vec<u64> = (0..odd.z)
        .flat_map(|z| (0..odd.y).map(move |y| (z * shape.y + y) * shape.x))
        .flat_map(|at| labels[at..at + odd.x].iter().copied())
        .collect();
    for (shape, src) in [(shape, &labels), (odd, &corner)] {
        let want = reference::downsample_mode(src, shape);
        for (name, f) in kernels() {
            assert!(downsample_with(f, src, shape) == want, "{name} on {shape}");
        }
    }
}

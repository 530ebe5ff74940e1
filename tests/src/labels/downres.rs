//! Scalar reference of labelmap downres (spec §6.2).

use super::volume::Volume;

/// One level down: each output voxel takes the most frequent **non-zero** label among its
/// (up to) 8 children at `2p + {0,1}³`; ties go to the smallest label; all-zero → 0. Odd sizes
/// are padded: missing children are zeros, which never vote. The output has origin
/// `floor(origin / 2)` and size `ceil(size / 2)`; the input origin must be even.
pub fn downres(v: &Volume) -> Volume {
    assert!(
        v.origin.iter().all(|o| o % 2 == 0),
        "downres input origin {:?} must be even",
        v.origin
    );
    let origin = [v.origin[0] / 2, v.origin[1] / 2, v.origin[2] / 2];
    let size = [
        v.size[0].div_ceil(2),
        v.size[1].div_ceil(2),
        v.size[2].div_ceil(2),
    ];
    Volume::from_fn(origin, size, |x, y, z| {
        let mut votes: Vec<(u64, u32)> = Vec::with_capacity(8);
        for dz in 0..2 {
            for dy in 0..2 {
                for dx in 0..2 {
                    let l = v.get([2 * x + dx, 2 * y + dy, 2 * z + dz]);
                    if l == 0 {
                        continue;
                    }
                    match votes.iter_mut().find(|(k, _)| *k == l) {
                        Some(e) => e.1 += 1,
                        None => votes.push((l, 1)),
                    }
                }
            }
        }
        votes
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
            .map_or(0, |(l, _)| l)
    })
}

/// Levels 0..=levels: level 0 is `v`, level s = downres(level s−1).
pub fn pyramid(v: &Volume, levels: usize) -> Vec<Volume> {
    let mut out = vec![v.clone()];
    for _ in 0..levels {
        let next = downres(out.last().expect("level"));
        out.push(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::volume::{Volume, spec_cubes_fixture};
    use super::*;

    /// A 2×2×2 volume from 8 labels in x-fastest order.
    fn cell(l: [u64; 8]) -> Volume {
        Volume {
            origin: [0; 3],
            size: [2, 2, 2],
            data: l.to_vec(),
        }
    }

    fn one(l: [u64; 8]) -> u64 {
        let d = downres(&cell(l));
        assert_eq!(d.size, [1, 1, 1]);
        d.data[0]
    }

    #[test]
    fn majority_non_zero_ties_smallest() {
        assert_eq!(one([0; 8]), 0, "all zero");
        assert_eq!(one([0, 0, 0, 0, 0, 0, 0, 5]), 5, "zeros never vote");
        assert_eq!(one([0, 0, 0, 0, 0, 0, 9, 5]), 5, "1-1 tie → smallest");
        assert_eq!(one([9, 9, 5, 5, 0, 0, 0, 0]), 5, "2-2 tie → smallest");
        assert_eq!(one([9, 9, 9, 5, 5, 0, 0, 0]), 9, "majority wins");
        assert_eq!(one([3, 3, 3, 3, 7, 7, 7, 7]), 3);
        assert_eq!(one([7, 7, 7, 7, 3, 3, 3, 3]), 3, "position does not matter");
        assert_eq!(one([u64::MAX, u64::MAX, 1, 2, 3, 0, 0, 0]), u64::MAX);
        assert_eq!(one([4, 4, 4, 4, 4, 4, 4, 4]), 4);
    }

    #[test]
    fn odd_sizes_pad_with_non_voting_zeros() {
        // 3×1×1: [1, 2, 8] → [?, 8]: first cell {1,2} tie → 1; second {8, pad} → 8.
        let v = Volume {
            origin: [0; 3],
            size: [3, 1, 1],
            data: vec![1, 2, 8],
        };
        let d = downres(&v);
        assert_eq!(d.size, [2, 1, 1]);
        assert_eq!(d.data, vec![1, 8]);
        let v = Volume::filled([5, 3, 1], 6);
        let d = downres(&v);
        assert_eq!(d.size, [3, 2, 1]);
        assert!(d.data.iter().all(|&l| l == 6));
    }

    #[test]
    fn spec_cubes_halve() {
        // §6.2 example: cubes of 40 at offsets 40/80 become cubes of 20 at 20/40, then 10 at
        // 10/20.
        let p = pyramid(&spec_cubes_fixture(), 2);
        for (s, vol) in p.iter().enumerate() {
            let f = 1 << s;
            assert_eq!(vol.size, [128 / f; 3]);
            let cubes: [(u64, [i32; 3]); 5] = [
                (1, [40, 40, 40]),
                (2, [40, 40, 80]),
                (13, [80, 40, 40]),
                (209, [40, 80, 40]),
                (311, [80, 80, 40]),
            ];
            let want = Volume::from_fn([0; 3], vol.size, |x, y, z| {
                let e = 40 / f as i32;
                for (l, o) in cubes {
                    let o = o.map(|c| c / f as i32);
                    if (o[0]..o[0] + e).contains(&x)
                        && (o[1]..o[1] + e).contains(&y)
                        && (o[2]..o[2] + e).contains(&z)
                    {
                        return l;
                    }
                }
                0
            });
            assert!(*vol == want, "scale {s}");
        }
    }

    #[test]
    fn origin_is_halved() {
        let v = Volume::from_fn([64, -2, 0], [4, 2, 2], |x, _, _| x as u64);
        let d = downres(&v);
        assert_eq!(d.origin, [32, -1, 0]);
        assert_eq!(d.data, vec![64, 66]);
    }
}

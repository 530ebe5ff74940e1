//! The rayon backend and the block codec against the scalar reference.

mod common;

use common::{boxes, noise};
use proptest::prelude::*;
use tessera_engine::compute::cpu::CpuCompute;
use tessera_engine::compute::reference::Rng;
use tessera_engine::compute::{
    BlockCounts, Compute, ComputeError, LabelTable, Run, Shape, codec, normalize_runs, reference,
};

/// Labels that stress comparisons: zero, the extremes, and pairs equal in their low 32 bits.
const NASTY: [u64; 7] = [
    0,
    1,
    2,
    u64::MAX,
    (1 << 32) | 1,
    (1 << 33) | 1,
    u64::MAX - 1,
];

fn is_bad_input<T: std::fmt::Debug>(r: Result<T, ComputeError>) -> bool {
    matches!(r, Err(ComputeError::BadInput(_)))
}

const ODD_SHAPES: [Shape; 6] = [
    Shape::new(1, 1, 1),
    Shape::new(7, 5, 3),
    Shape::new(2, 1, 9),
    Shape::new(16, 16, 16),
    Shape::new(33, 17, 9),
    Shape::new(131, 70, 67),
];

fn test_volumes() -> Vec<(Shape, Vec<u64>)> {
    let mut out = Vec::new();
    for (i, &shape) in ODD_SHAPES.iter().enumerate() {
        let seed = i as u64;
        out.push((shape, boxes(shape, &[0, 5, 9, 1 << 40, u64::MAX], 12, seed)));
        if shape.voxels() < 100_000 {
            out.push((shape, noise(shape, &NASTY, seed)));
            out.push((shape, noise(shape, &[0, 3], seed + 100)));
        }
        out.push((shape, vec![0; shape.voxels()]));
    }
    out
}

#[test]
fn downsample_mode_matches_reference() {
    let cpu = CpuCompute::new();
    for (shape, v) in test_volumes() {
        assert_eq!(
            cpu.downsample_mode(&v, shape).unwrap(),
            reference::downsample_mode(&v, shape),
            "{shape}"
        );
    }
}

#[test]
fn mode_ties_go_to_the_smallest_nonzero_label() {
    let cpu = CpuCompute::new();
    let shape = Shape::cube(2);
    let cases: [([u64; 8], u64); 6] = [
        ([0, 0, 0, 0, 0, 0, 0, 0], 0),
        ([0, 0, 0, 0, 0, 0, 0, 7], 7),
        ([9, 9, 4, 4, 0, 0, 0, 0], 4),
        ([u64::MAX, u64::MAX, 1 << 32, 1 << 32, 1, 2, 3, 0], 1 << 32),
        ([(1 << 32) | 5, 5, (1 << 32) | 5, 5, 0, 0, 0, 0], 5),
        ([3, 3, 3, 0, 0, 0, 0, 0], 3),
    ];
    for (children, want) in cases {
        assert_eq!(
            cpu.downsample_mode(&children, shape).unwrap(),
            vec![want],
            "{children:?}"
        );
    }
}

#[test]
fn pyramid_mode_matches_repeated_downsampling() {
    let cpu = CpuCompute::new();
    for (shape, v) in test_volumes() {
        for levels in [1, 2, 7, 8] {
            let want = reference::pyramid(&v, shape, levels, reference::downsample_mode);
            assert_eq!(
                cpu.pyramid_mode(&v, shape, levels).unwrap(),
                want,
                "{shape} {levels}"
            );
        }
    }
}

fn gray(shape: Shape, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed);
    (0..shape.voxels()).map(|_| rng.next_u64() as u8).collect()
}

#[test]
fn mean_matches_reference() {
    let cpu = CpuCompute::new();
    let shapes = [
        Shape::new(1, 1, 1),
        Shape::new(7, 5, 3),
        Shape::new(130, 3, 129),
        Shape::new(200, 66, 5),
    ];
    for (i, &shape) in shapes.iter().enumerate() {
        for src in [
            gray(shape, i as u64),
            vec![255; shape.voxels()],
            vec![0; shape.voxels()],
        ] {
            let want = reference::downsample_mean(&src, shape);
            assert_eq!(cpu.downsample_mean(&src, shape).unwrap(), want, "{shape}");
            for levels in [1, 3, 8] {
                let want = reference::pyramid(&src, shape, levels, reference::downsample_mean);
                assert_eq!(
                    cpu.pyramid_mean(&src, shape, levels).unwrap(),
                    want,
                    "{shape} {levels}"
                );
            }
        }
    }
}

fn tables() -> Vec<LabelTable> {
    vec![
        LabelTable::default(),
        // Keys 0, 1, 2 are taken, so the hash's "empty" marker is 3: 3 must still map to itself.
        LabelTable::new([(0, 7), (1, 1), (2, u64::MAX)]).unwrap(),
        LabelTable::new([(u64::MAX, 0), ((1 << 32) | 1, 1), (5, 9), (9, 5)]).unwrap(),
        LabelTable::new((0..1000u64).map(|l| (l * 7919, 1))).unwrap(),
    ]
}

#[test]
fn relabel_matches_reference() {
    let cpu = CpuCompute::new();
    let shape = Shape::new(40, 30, 20);
    let mut palette: Vec<u64> = NASTY.to_vec();
    palette.extend([3, 5, 9, 7919, 7919 * 999, 7919 * 1000]);
    for table in tables() {
        for v in [noise(shape, &palette, 1), boxes(shape, &palette, 30, 2)] {
            let (mut got, mut want) = (v.clone(), v);
            cpu.relabel(&mut got, &table).unwrap();
            reference::relabel(&mut want, &table);
            assert_eq!(got, want);
        }
    }
}

#[test]
fn split_apply_matches_reference() {
    let cpu = CpuCompute::new();
    let shape = Shape::new(37, 21, 13);
    let mut rng = Rng(7);
    let palette = [0, 1, 2, 3, 5, 9, u64::MAX, (1 << 32) | 1];
    for table in tables() {
        let v = noise(shape, &palette, 3);
        let runs: Vec<Run> = (0..300)
            .map(|_| {
                let at = |n: usize, rng: &mut Rng| rng.below(n + 10) as i32 - 5;
                Run::new(
                    at(shape.x, &mut rng),
                    at(shape.y, &mut rng),
                    at(shape.z, &mut rng),
                    rng.below(40) as i32 - 3,
                )
            })
            .collect();
        let mut want = v.clone();
        let want_n = reference::split_apply(&mut want, shape, &runs, &table);
        for runs in [normalize_runs(&runs, shape), runs.clone()] {
            let mut got = v.clone();
            assert_eq!(
                cpu.split_apply(&mut got, shape, &runs, &table).unwrap(),
                want_n
            );
            assert_eq!(got, want);
        }
    }
}

#[test]
fn label_counts_match_reference() {
    let cpu = CpuCompute::new();
    let block = Shape::new(8, 16, 24);
    let v = boxes(Shape::new(8, 16, 24 * 5), &NASTY, 20, 4);
    assert_eq!(
        cpu.label_counts(&v, block).unwrap(),
        reference::label_counts(&v, block)
    );
    let solid = cpu.label_counts(&[7; 512], Shape::cube(8)).unwrap();
    assert_eq!(
        solid,
        vec![BlockCounts {
            labels: vec![7],
            counts: vec![512]
        }]
    );
}

#[test]
fn bad_inputs_are_rejected_before_writing() {
    let cpu = CpuCompute::new();
    let shape = Shape::new(4, 4, 4);
    let mut v = vec![1u64; 63];
    let table = LabelTable::new([(1, 2)]).unwrap();
    assert!(is_bad_input(cpu.downsample_mode(&v, shape)));
    assert!(is_bad_input(cpu.pyramid_mode(&v, shape, 2)));
    assert!(is_bad_input(cpu.pyramid_mode(&[1; 64], shape, 0)));
    assert!(is_bad_input(cpu.pyramid_mean(&[1; 64], shape, 0)));
    assert!(is_bad_input(cpu.downsample_mean(&[1; 63], shape)));
    assert!(is_bad_input(cpu.downsample_mode(&[], Shape::new(0, 4, 4))));
    assert!(is_bad_input(cpu.split_apply(
        &mut v,
        shape,
        &[Run::new(0, 0, 0, 4)],
        &table
    )));
    assert_eq!(v, vec![1u64; 63]);
    assert!(is_bad_input(cpu.label_counts(&[0; 100], Shape::cube(8))));
    assert!(is_bad_input(
        cpu.block_encode(&[0; 4 * 8 * 8], Shape::new(4, 8, 8))
    ));
    assert!(is_bad_input(cpu.block_encode(&[0; 600], Shape::cube(8))));
    assert!(is_bad_input(
        cpu.block_encode(&vec![0; 264 * 64], Shape::new(264, 8, 8))
    ));
    assert!(is_bad_input(cpu.block_decode(&[])));
    let a = codec::encode(&[1; 512], Shape::cube(8)).unwrap();
    let b = codec::encode(&[1; 1024], Shape::new(8, 8, 16)).unwrap();
    assert!(is_bad_input(cpu.block_decode(&[&a, &b])));
    assert!(cpu.adapter().starts_with("rayon"));
}

#[test]
fn codec_matches_reference_on_volumes() {
    let cpu = CpuCompute::new();
    let block = Shape::new(16, 8, 24);
    let mut batches = vec![
        boxes(Shape::new(16, 8, 24 * 4), &NASTY, 25, 5),
        noise(Shape::new(16, 8, 24), &NASTY, 6),
        vec![u64::MAX; block.voxels()],
    ];
    // 512 distinct labels in one sub-block (9-bit indices), in a scrambled order.
    let mut rng = Rng(8);
    let mut distinct: Vec<u64> = (0..block.voxels() as u64)
        .map(|i| i * 0x1_0000_0001)
        .collect();
    for i in (1..distinct.len()).rev() {
        distinct.swap(i, rng.below(i + 1));
    }
    batches.push(distinct);
    for v in batches {
        let encoded = cpu.block_encode(&v, block).unwrap();
        for (b, blk) in encoded.iter().zip(v.chunks(block.voxels())) {
            assert_eq!(b, &reference::block_encode(blk, block));
            assert_eq!(b, &codec::encode(blk, block).unwrap());
        }
        let refs: Vec<&[u8]> = encoded.iter().map(|b| b.as_slice()).collect();
        assert_eq!(cpu.block_decode(&refs).unwrap(), (block, v.clone()));
        assert_eq!(
            codec::decode(&encoded[0]).unwrap(),
            (block, v[..block.voxels()].to_vec())
        );
    }
    assert_eq!(codec::encode(&[42; 512], Shape::cube(8)).unwrap().len(), 24);
}

/// A DVID block that is valid but not canonical: duplicate and zero table entries, sub-blocks
/// with 0, 1 or many labels, indices in any order.
fn hand_built(seed: u64, g: (usize, usize, usize)) -> Vec<u8> {
    let mut rng = Rng(seed);
    let n = 2 + rng.below(20);
    let mut b = Vec::new();
    for v in [g.0 as u32, g.1 as u32, g.2 as u32, n as u32] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    for _ in 0..n {
        b.extend_from_slice(&NASTY[rng.below(NASTY.len())].to_le_bytes());
    }
    let ns: Vec<usize> = (0..g.0 * g.1 * g.2)
        .map(|_| match rng.below(6) {
            0 => 0,
            1 => 1,
            2 => 512,
            3 => 257,
            _ => 2 + rng.below(30),
        })
        .collect();
    for &k in &ns {
        b.extend_from_slice(&(k as u16).to_le_bytes());
    }
    for &k in &ns {
        for _ in 0..k {
            b.extend_from_slice(&(rng.below(n) as u32).to_le_bytes());
        }
    }
    for &k in &ns {
        let bits = codec::index_bits(k);
        let mut acc: u128 = 0;
        let mut filled = 0;
        for _ in 0..512 {
            acc = (acc << bits) | rng.below(k.max(1)) as u128;
            filled += bits;
            while filled >= 8 {
                b.push((acc >> (filled - 8)) as u8);
                filled -= 8;
            }
        }
    }
    b
}

#[test]
fn header_describes_the_layout() {
    let shape = Shape::new(16, 8, 8);
    let mut v = vec![3u64; shape.voxels()];
    v[9] = 4; // second sub-block: labels 3, 4 → 1 bit per voxel
    let b = codec::encode(&v, shape).unwrap();
    let h = codec::header(&b).unwrap();
    assert_eq!((h.gx, h.gy, h.gz, h.n), (2, 1, 1, 2));
    assert_eq!(h.table_at, 16);
    assert_eq!(h.ns_at, 16 + 2 * 8);
    assert_eq!(h.idx_at, h.ns_at + 2 * 2);
    assert_eq!(h.values_at, h.idx_at + 4 * 3);
    assert_eq!(h.len, h.values_at + 64);
    assert_eq!(h.len, b.len());
    let solid = codec::header(&codec::encode(&[9; 512], Shape::cube(8)).unwrap()).unwrap();
    assert_eq!((solid.n, solid.len), (1, 24));
}

#[test]
fn hand_built_blocks_decode_like_the_reference() {
    for seed in 0..12 {
        let g = [(1, 1, 1), (2, 1, 1), (1, 2, 2)][seed as usize % 3];
        let b = hand_built(seed, g);
        let h = codec::header(&b).unwrap();
        assert_eq!((h.gx, h.gy, h.gz), g);
        assert_eq!(
            codec::decode(&b).unwrap(),
            reference::block_decode(&b).unwrap()
        );
    }
}

/// The distinct labels of `v`, in order.
fn distinct(v: &[u64]) -> Vec<u64> {
    let mut l = v.to_vec();
    l.sort_unstable();
    l.dedup();
    l
}

#[test]
fn renaming_a_canonical_block_gives_the_encoding_of_its_relabelled_voxels() {
    let cpu = CpuCompute::new();
    let shape = Shape::new(16, 8, 24);
    let volumes = [
        boxes(shape, &NASTY, 6, 1),
        noise(shape, &NASTY, 2),
        noise(shape, &[0, 3], 3),
        vec![u64::MAX; shape.voxels()],
    ];
    for v in &volumes {
        let block = codec::encode(v, shape).unwrap();
        let present = distinct(v);
        let fresh = |i: usize| 0x5000_0000_0000 + i as u64;
        // Some labels to fresh ones; all of them to fresh ones; two swapped.
        let mut tables = vec![
            LabelTable::new(
                present
                    .iter()
                    .step_by(2)
                    .enumerate()
                    .map(|(i, l)| (*l, fresh(i))),
            )
            .unwrap(),
            LabelTable::new(present.iter().enumerate().map(|(i, l)| (*l, fresh(i)))).unwrap(),
        ];
        if let [a, b, ..] = present[..] {
            tables.push(LabelTable::new([(a, b), (b, a)]).unwrap());
        }
        for table in &tables {
            let mut want = v.clone();
            cpu.relabel(&mut want, table).unwrap();
            assert_eq!(
                codec::rename_labels(&block, table).unwrap(),
                Some(codec::encode(&want, shape).unwrap()),
                "{table:?}"
            );
        }
        // Onto a label the block keeps: the table would list it twice.
        if let [a, b, ..] = present[..] {
            let onto = LabelTable::new([(a, b)]).unwrap();
            assert_eq!(codec::rename_labels(&block, &onto).unwrap(), None);
        }
    }
    // Any valid block, canonical or not, decodes to its relabelled voxels.
    for seed in 0..12 {
        let b = hand_built(seed, [(1, 1, 1), (2, 1, 1), (1, 2, 2)][seed as usize % 3]);
        let (s, v) = codec::decode(&b).unwrap();
        let table = LabelTable::new(NASTY.iter().map(|l| (*l, l ^ 0xABCD_0000))).unwrap();
        let mut want = v.clone();
        cpu.relabel(&mut want, &table).unwrap();
        match codec::rename_labels(&b, &table).unwrap() {
            Some(renamed) => assert_eq!(codec::decode(&renamed).unwrap(), (s, want)),
            // A hand-built table may list a label twice already.
            None => {
                let n = codec::header(&b).unwrap().n;
                let table: Vec<u64> = (0..n)
                    .map(|i| u64::from_le_bytes(b[16 + 8 * i..24 + 8 * i].try_into().unwrap()))
                    .collect();
                assert!(distinct(&table).len() < n, "seed {seed}");
            }
        }
    }
    assert!(is_bad_input(codec::rename_labels(
        &[0; 12],
        &LabelTable::new([]).unwrap()
    )));
}

#[test]
fn voxel_reader_agrees_with_decode_at_every_voxel() {
    let mut blocks: Vec<Vec<u8>> = (0..9)
        .map(|seed| hand_built(seed, [(1, 1, 1), (2, 1, 1), (1, 2, 2)][seed as usize % 3]))
        .collect();
    let shape = Shape::new(16, 8, 8);
    blocks.push(codec::encode(&boxes(shape, &NASTY, 6, 9), shape).unwrap());
    blocks.push(codec::encode(&[7; 512], Shape::cube(8)).unwrap());
    for b in &blocks {
        let (shape, want) = codec::decode(b).unwrap();
        let r = codec::VoxelReader::new(b).unwrap();
        for z in 0..shape.z {
            for y in 0..shape.y {
                for x in 0..shape.x {
                    let i = (z * shape.y + y) * shape.x + x;
                    assert_eq!(r.get([x, y, z]).unwrap(), want[i], "voxel {x},{y},{z}");
                }
                // Rows from every start, of every length, across sub-block edges.
                let at = (z * shape.y + y) * shape.x;
                for x0 in 0..shape.x {
                    for n in 0..=shape.x - x0 {
                        let mut got = vec![u64::MAX; n];
                        r.row([x0, y, z], &mut got).unwrap();
                        assert_eq!(got, want[at + x0..at + x0 + n], "row {x0}+{n},{y},{z}");
                    }
                }
            }
        }
        assert!(is_bad_input(r.get([shape.x, 0, 0])));
        assert!(is_bad_input(r.row([1, 0, 0], &mut vec![0; shape.x])));
    }
}

#[test]
fn malformed_blocks_are_bad_input_never_panics() {
    let shape = Shape::new(16, 8, 8);
    let blocks = [
        codec::encode(&boxes(shape, &NASTY, 6, 9), shape).unwrap(),
        codec::encode(&[5; 1024], shape).unwrap(),
        hand_built(3, (1, 1, 1)),
    ];
    for b in &blocks {
        for len in 0..b.len() {
            assert!(is_bad_input(codec::decode(&b[..len])), "truncated to {len}");
        }
        let mut longer = b.clone();
        longer.push(0);
        assert!(is_bad_input(codec::decode(&longer)));
        for i in 0..b.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut c = b.clone();
                c[i] ^= flip;
                match codec::decode(&c) {
                    Ok(got) => assert_eq!(got, reference::block_decode(&c).unwrap(), "byte {i}"),
                    Err(e) => assert!(matches!(e, ComputeError::BadInput(_)), "byte {i}: {e}"),
                }
            }
        }
    }
    // A packed index past its sub-block's labels (Ns = 3, index 3).
    let mut b = Vec::new();
    for v in [1u32, 1, 1, 3] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    for l in [1u64, 2, 3] {
        b.extend_from_slice(&l.to_le_bytes());
    }
    b.extend_from_slice(&3u16.to_le_bytes());
    for i in 0..3u32 {
        b.extend_from_slice(&i.to_le_bytes());
    }
    b.extend_from_slice(&[0xff; 128]);
    assert!(is_bad_input(codec::decode(&b)));
    assert!(is_bad_input(reference::block_decode(&b)));
    // Huge sub-block counts in a 16-byte header never allocate.
    let mut huge = Vec::new();
    for v in [u32::MAX, u32::MAX, u32::MAX, 1] {
        huge.extend_from_slice(&v.to_le_bytes());
    }
    huge.extend_from_slice(&7u64.to_le_bytes());
    assert!(is_bad_input(codec::decode(&huge)));
}

fn block_strategy() -> impl Strategy<Value = (Shape, Vec<u64>)> {
    (
        1usize..=3,
        1usize..=2,
        1usize..=2,
        any::<u64>(),
        1usize..=40,
        prop::bool::ANY,
    )
        .prop_map(|(gx, gy, gz, seed, count, noisy)| {
            let shape = Shape::new(8 * gx, 8 * gy, 8 * gz);
            let mut rng = Rng(seed);
            let palette: Vec<u64> = (0..1 + rng.below(12))
                .map(|_| rng.next_u64() >> rng.below(64))
                .collect();
            let v = if noisy {
                noise(shape, &palette, seed)
            } else {
                boxes(shape, &palette, count, seed)
            };
            (shape, v)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn codec_round_trips((shape, v) in block_strategy()) {
        let b = codec::encode(&v, shape).unwrap();
        prop_assert_eq!(&b, &reference::block_encode(&v, shape));
        prop_assert_eq!(codec::decode(&b).unwrap(), (shape, v));
    }

    #[test]
    fn non_canonical_blocks_decode_like_the_reference(seed in any::<u64>(), g in 0usize..3) {
        let b = hand_built(seed, [(1, 1, 1), (2, 1, 1), (1, 1, 2)][g]);
        prop_assert_eq!(codec::decode(&b).unwrap(), reference::block_decode(&b).unwrap());
    }
}

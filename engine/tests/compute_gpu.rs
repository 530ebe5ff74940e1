//! The wgpu backend against `reference` (and the rayon backend, where it is implemented) on
//! random, adversarial and hand-built data. These tests run on a real adapter: lavapipe in CI.
//! No adapter is a failure, not a skip.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::OnceLock;

use tessera_engine::compute::cpu::CpuCompute;
use tessera_engine::compute::gpu::GpuCompute;
use tessera_engine::compute::{
    Backend, Compute, ComputeError, LabelTable, Run, Shape, normalize_runs, reference,
};

fn gpu() -> &'static GpuCompute {
    static GPU: OnceLock<GpuCompute> = OnceLock::new();
    GPU.get_or_init(|| match GpuCompute::new(true) {
        Ok(g) => g,
        Err(e) => panic!("no GPU adapter (CI installs mesa-vulkan-drivers for lavapipe): {e}"),
    })
}

/// Devices whose bindings are small, so that every chunked path runs on small data: `small`
/// for volumes and 16³ blocks, `mid` (two 64³ blocks a chunk) for full-size blocks.
fn limited(bytes: u64) -> GpuCompute {
    let mut g = GpuCompute::new(true).expect("GPU adapter");
    g.limit_binding(bytes);
    g
}

fn small_gpu() -> &'static GpuCompute {
    static GPU: OnceLock<GpuCompute> = OnceLock::new();
    GPU.get_or_init(|| limited(256 * 1024))
}

fn mid_gpu() -> &'static GpuCompute {
    static GPU: OnceLock<GpuCompute> = OnceLock::new();
    GPU.get_or_init(|| limited(4 << 20))
}

/// The devices a kernel runs on for blocks of `block`.
fn devices(block: Shape) -> [&'static GpuCompute; 2] {
    if block.voxels() * 8 > 256 * 1024 {
        [gpu(), mid_gpu()]
    } else {
        [gpu(), small_gpu()]
    }
}

/// The rayon backend's answer, or None while that kernel is still `unimplemented!()`.
fn cpu<T>(f: impl FnOnce(&CpuCompute) -> T) -> Option<T> {
    match catch_unwind(AssertUnwindSafe(|| f(&CpuCompute::new()))) {
        Ok(v) => Some(v),
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .map(|s| s.as_str())
                .or_else(|| p.downcast_ref::<&str>().copied())
                .unwrap_or("");
            if msg.contains("not implemented") {
                None
            } else {
                resume_unwind(p)
            }
        }
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// Labels drawn from a few values, including 0, u64::MAX and pairs that differ only in
    /// the high word (a device comparing only the low word gets them wrong).
    fn label(&mut self, distinct: u64) -> u64 {
        const SPECIAL: [u64; 6] = [0, u64::MAX, 7, 7 | 1 << 32, 1 << 63, (1 << 32) - 1];
        let k = self.below(distinct);
        if k < SPECIAL.len() as u64 {
            SPECIAL[k as usize]
        } else {
            k.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        }
    }
    fn labels(&mut self, n: usize, distinct: u64) -> Vec<u64> {
        (0..n).map(|_| self.label(distinct)).collect()
    }
    /// Up to `n` mappings of labels drawn like `label(distinct)` to random targets.
    fn table(&mut self, n: usize, distinct: u64) -> LabelTable {
        let pairs: std::collections::BTreeMap<u64, u64> = (0..n)
            .map(|_| (self.label(distinct), self.next()))
            .collect();
        LabelTable::new(pairs).unwrap()
    }
}

const SHAPES: [Shape; 7] = [
    Shape::new(1, 1, 1),
    Shape::new(7, 5, 3),
    Shape::new(2, 2, 2),
    Shape::new(8, 8, 8),
    Shape::new(33, 17, 9),
    Shape::new(64, 3, 5),
    Shape::new(1, 9, 16),
];

#[test]
fn opens_an_adapter() {
    let g = gpu();
    assert_eq!(g.backend(), Backend::Gpu);
    assert!(!g.adapter().is_empty());
    eprintln!("adapter: {}", g.adapter());
}

#[test]
fn relabel_matches_reference() {
    let mut rng = Rng(1);
    for (n, distinct, mapped) in [(1, 3, 2), (1000, 20, 10), (100_000, 5000, 3000), (37, 6, 0)] {
        let labels = rng.labels(n, distinct);
        let table = rng.table(mapped, distinct);
        let mut want = labels.clone();
        reference::relabel(&mut want, &table);
        for g in [gpu(), small_gpu()] {
            let mut got = labels.clone();
            g.relabel(&mut got, &table).unwrap();
            assert_eq!(got, want, "n={n}");
        }
        if let Some(r) = cpu(|c| {
            let mut got = labels.clone();
            c.relabel(&mut got, &table).map(|_| got)
        }) {
            assert_eq!(r.unwrap(), want);
        }
    }
}

#[test]
fn relabel_compares_high_words() {
    let labels = vec![7, 7 | 1 << 32, u64::MAX, 0, (1 << 32) - 1, 1 << 32];
    let table = LabelTable::new([(7 | 1 << 32, 1), (u64::MAX, 2), (1 << 32, 3)]).unwrap();
    let mut got = labels.clone();
    gpu().relabel(&mut got, &table).unwrap();
    assert_eq!(got, vec![7, 1, 2, 0, (1 << 32) - 1, 3]);
}

fn random_runs(rng: &mut Rng, shape: Shape, n: usize) -> Vec<Run> {
    (0..n)
        .map(|_| {
            let coord = |rng: &mut Rng, size: usize| rng.below(size as u64 + 4) as i32 - 2;
            Run::new(
                coord(rng, shape.x),
                coord(rng, shape.y),
                coord(rng, shape.z),
                rng.below(shape.x as u64 + 3) as i32 - 1,
            )
        })
        .collect()
}

#[test]
fn split_apply_matches_reference() {
    let mut rng = Rng(2);
    for shape in SHAPES.into_iter().chain([Shape::new(64, 64, 40)]) {
        let labels = rng.labels(shape.voxels(), 12);
        let raw = random_runs(&mut rng, shape, 1 + shape.voxels() / 20);
        let runs = normalize_runs(&raw, shape);
        let table = rng.table(6, 12);
        let mut want = labels.clone();
        let want_n = reference::split_apply(&mut want, shape, &runs, &table);
        for g in [gpu(), small_gpu()] {
            let mut got = labels.clone();
            let n = g.split_apply(&mut got, shape, &runs, &table).unwrap();
            assert_eq!((n, &got), (want_n, &want), "{shape}");
            // Unnormalized runs give the same answer.
            let mut got = labels.clone();
            assert_eq!(
                g.split_apply(&mut got, shape, &raw, &table).unwrap(),
                want_n
            );
            assert_eq!(got, want);
        }
        if let Some(r) = cpu(|c| {
            let mut got = labels.clone();
            c.split_apply(&mut got, shape, &runs, &table)
                .map(|n| (n, got))
        }) {
            assert_eq!(r.unwrap(), (want_n, want));
        }
    }
}

#[test]
fn split_apply_rejects_bad_shape_before_writing() {
    let mut labels = vec![5u64; 10];
    let table = LabelTable::new([(5, 6)]).unwrap();
    let err = gpu().split_apply(
        &mut labels,
        Shape::new(3, 3, 1),
        &[Run::new(0, 0, 0, 3)],
        &table,
    );
    assert!(matches!(err, Err(ComputeError::BadInput(_))));
    assert_eq!(labels, vec![5u64; 10]);
}

/// Volumes whose 2×2×2 windows are full of ties and zeros.
fn tie_volume(rng: &mut Rng, shape: Shape) -> Vec<u64> {
    (0..shape.voxels())
        .map(|_| [0, 0, 0, 3, 5, 3 | 1 << 40, 1 << 40, u64::MAX][rng.below(8) as usize])
        .collect()
}

#[test]
fn downsample_mode_matches_reference() {
    let mut rng = Rng(3);
    for shape in SHAPES.into_iter().chain([Shape::new(40, 36, 33)]) {
        for src in [
            rng.labels(shape.voxels(), 4),
            tie_volume(&mut rng, shape),
            vec![0; shape.voxels()],
            rng.labels(shape.voxels(), 1 << 40),
        ] {
            let want = reference::downsample_mode(&src, shape);
            for g in [gpu(), small_gpu()] {
                assert_eq!(g.downsample_mode(&src, shape).unwrap(), want, "{shape}");
            }
            if let Some(r) = cpu(|c| c.downsample_mode(&src, shape)) {
                assert_eq!(r.unwrap(), want);
            }
        }
    }
}

#[test]
fn pyramid_mode_matches_reference() {
    let mut rng = Rng(4);
    for (shape, levels) in [
        (Shape::new(1, 1, 1), 3),
        (Shape::new(7, 5, 3), 4),
        (Shape::new(64, 64, 64), 6),
        (Shape::new(96, 80, 70), 3),
        (Shape::new(33, 65, 17), 5),
    ] {
        let src = tie_volume(&mut rng, shape);
        let want = reference::pyramid(&src, shape, levels, reference::downsample_mode);
        for g in [gpu(), small_gpu()] {
            assert_eq!(
                g.pyramid_mode(&src, shape, levels).unwrap(),
                want,
                "{shape}"
            );
        }
        if let Some(r) = cpu(|c| c.pyramid_mode(&src, shape, levels)) {
            assert_eq!(r.unwrap(), want);
        }
    }
}

/// A plane larger than the (limited) binding takes the host path and still agrees.
#[test]
fn pyramid_beyond_one_binding() {
    let mut rng = Rng(5);
    let shape = Shape::new(128, 160, 3);
    let src = tie_volume(&mut rng, shape);
    let want = reference::pyramid(&src, shape, 3, reference::downsample_mode);
    assert_eq!(small_gpu().pyramid_mode(&src, shape, 3).unwrap(), want);
    let shape = Shape::new(512, 288, 4);
    let bytes: Vec<u8> = (0..shape.voxels()).map(|_| rng.next() as u8).collect();
    let want = reference::pyramid(&bytes, shape, 3, reference::downsample_mean);
    assert_eq!(small_gpu().pyramid_mean(&bytes, shape, 3).unwrap(), want);
}

#[test]
fn mean_matches_reference() {
    let mut rng = Rng(6);
    for shape in SHAPES.into_iter().chain([Shape::new(130, 67, 35)]) {
        for src in [
            (0..shape.voxels())
                .map(|_| rng.next() as u8)
                .collect::<Vec<u8>>(),
            vec![255; shape.voxels()],
            (0..shape.voxels())
                .map(|i| [0, 1, 254, 255][i % 4])
                .collect(),
        ] {
            let want = reference::downsample_mean(&src, shape);
            for g in [gpu(), small_gpu()] {
                assert_eq!(g.downsample_mean(&src, shape).unwrap(), want, "{shape}");
                let levels = reference::pyramid(&src, shape, 4, reference::downsample_mean);
                assert_eq!(g.pyramid_mean(&src, shape, 4).unwrap(), levels, "{shape}");
            }
            if let Some(r) = cpu(|c| c.downsample_mean(&src, shape)) {
                assert_eq!(r.unwrap(), want);
            }
        }
    }
}

fn bad<T>(r: Result<T, ComputeError>) -> bool {
    matches!(r, Err(ComputeError::BadInput(_)))
}

#[test]
fn downsample_rejects_bad_input() {
    let g = gpu();
    assert!(bad(g.downsample_mode(&[1, 2, 3], Shape::new(2, 2, 1))));
    assert!(bad(g.pyramid_mode(&[1; 8], Shape::cube(2), 0)));
    assert!(bad(g.downsample_mean(&[], Shape::new(0, 1, 1))));
    assert!(bad(g.pyramid_mean(&[1; 8], Shape::cube(2), 0)));
}

#[test]
fn label_counts_match_reference() {
    let mut rng = Rng(7);
    let cases: Vec<(Shape, Vec<u64>)> = vec![
        (Shape::cube(64), rng.labels(3 * 64 * 64 * 64, 40)),
        (Shape::cube(64), vec![0; 64 * 64 * 64]),
        (Shape::cube(8), rng.labels(20 * 512, 1 << 50)),
        (Shape::cube(8), (0..512).map(|i| i << 32).collect()),
        (Shape::new(7, 5, 3), rng.labels(105 * 4, 5)),
        (Shape::new(1, 1, 1), rng.labels(9, 4)),
        (
            Shape::new(16, 16, 16),
            tie_volume(&mut rng, Shape::new(16, 16, 64)),
        ),
    ];
    for (block, labels) in &cases {
        let want = reference::label_counts(labels, *block);
        for g in devices(*block) {
            assert_eq!(&g.label_counts(labels, *block).unwrap(), &want, "{block}");
        }
        if let Some(r) = cpu(|c| c.label_counts(labels, *block)) {
            assert_eq!(r.unwrap(), want);
        }
    }
    assert!(bad(gpu().label_counts(&[1, 2, 3], Shape::cube(2))));
    assert!(bad(gpu().label_counts(&[], Shape::cube(2))));
    assert!(bad(gpu().label_counts(&[1], Shape::new(0, 1, 1))));
}

/// Labels of a batch of `block`s with varied structure per sub-block: solid sub-blocks,
/// a few labels, 512 distinct labels, zeros.
fn structured_blocks(rng: &mut Rng, block: Shape, n: usize) -> Vec<u64> {
    let v = block.voxels();
    let mut out = Vec::with_capacity(n * v);
    for b in 0..n {
        let kind = b % 5;
        for z in 0..block.z {
            for y in 0..block.y {
                for x in 0..block.x {
                    let sub = (z / 8 + y / 8 + x / 8) % 4;
                    let l = match (kind, sub) {
                        (0, _) => 42 | 1 << 33,
                        (1, 0) => 0,
                        (1, 1) => (((z % 8) * 64 + (y % 8) * 8 + x % 8) as u64) << 32 | 9,
                        (1, _) => rng.label(3),
                        (2, _) => rng.label(2 + sub as u64 * 60),
                        // 512 distinct labels in the first sub-block only: the reference
                        // encoder is quadratic in the table size.
                        (3, _) if x < 8 && y < 8 && z < 8 => rng.next(),
                        (3, _) => rng.label(300),
                        _ => rng.label(6),
                    };
                    out.push(l);
                }
            }
        }
    }
    out
}

#[test]
fn block_encode_matches_reference() {
    let mut rng = Rng(8);
    for (block, n) in [
        (Shape::cube(64), 5),
        (Shape::cube(8), 7),
        (Shape::new(16, 8, 24), 5),
        (Shape::new(8, 24, 8), 5),
    ] {
        let labels = structured_blocks(&mut rng, block, n);
        let want: Vec<Vec<u8>> = labels
            .chunks(block.voxels())
            .map(|b| reference::block_encode(b, block))
            .collect();
        for g in devices(block) {
            assert!(g.block_encode(&labels, block).unwrap() == want, "{block}");
        }
        if let Some(r) = cpu(|c| c.block_encode(&labels, block)) {
            assert!(r.unwrap() == want);
        }
        // And back.
        let refs: Vec<&[u8]> = want.iter().map(|b| b.as_slice()).collect();
        let (shape, decoded) = gpu().block_decode(&refs).unwrap();
        assert_eq!(shape, block);
        assert!(decoded == labels);
    }
}

#[test]
fn block_encode_rejects_bad_input() {
    let g = gpu();
    for (len, block) in [
        (512, Shape::new(8, 8, 4)),
        (100, Shape::cube(8)),
        (0, Shape::new(12, 8, 8)),
        (0, Shape::cube(8)),
        (512 * 64 * 64, Shape::new(8, 8, 512 * 64)),
    ] {
        assert!(matches!(
            g.block_encode(&vec![1; len], block),
            Err(ComputeError::BadInput(_))
        ));
    }
}

/// Builds a DVID block per spec §5.2 from its parts: `subs[i]` is (sbIdx entries, 512 local
/// indices); the encoder never writes most of what the tests build with this.
fn build_block(dims: [u32; 3], table: &[u64], subs: &[(Vec<u32>, Vec<u32>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for d in dims {
        out.extend_from_slice(&d.to_le_bytes());
    }
    out.extend_from_slice(&(table.len() as u32).to_le_bytes());
    for l in table {
        out.extend_from_slice(&l.to_le_bytes());
    }
    if table.len() == 1 {
        return out;
    }
    for (idx, _) in subs {
        out.extend_from_slice(&(idx.len() as u16).to_le_bytes());
    }
    for (idx, _) in subs {
        for i in idx {
            out.extend_from_slice(&i.to_le_bytes());
        }
    }
    for (idx, values) in subs {
        if idx.len() < 2 {
            continue;
        }
        let bits = (idx.len() as u32 - 1).ilog2() + 1;
        let mut acc = 0u64;
        let mut held = 0;
        for &v in values {
            acc = acc << bits | v as u64;
            held += bits;
            while held >= 8 {
                out.push((acc >> (held - 8)) as u8);
                held -= 8;
            }
        }
        assert_eq!(held, 0, "512 values are always whole bytes");
    }
    out
}

fn check_decode(blocks: &[Vec<u8>]) {
    let refs: Vec<&[u8]> = blocks.iter().map(|b| b.as_slice()).collect();
    let mut want = Vec::new();
    let mut shape = None;
    for b in blocks {
        let (s, l) = reference::block_decode(b).unwrap();
        shape = Some(s);
        want.extend(l);
    }
    let want = (shape.unwrap(), want);
    for g in [gpu(), small_gpu()] {
        assert!(g.block_decode(&refs).unwrap() == want);
    }
    if let Some(r) = cpu(|c| c.block_decode(&refs)) {
        assert!(r.unwrap() == want);
    }
}

#[test]
fn block_decode_accepts_what_the_encoder_never_writes() {
    let mut rng = Rng(9);
    let mut values = |k: u32| {
        (0..512)
            .map(|_| rng.below(k as u64) as u32)
            .collect::<Vec<u32>>()
    };
    // Unordered table with duplicates and zeros; sub-blocks with Ns = 0, 1, 2, 3, 9, 512.
    let table = [9, 0, 9, u64::MAX, 3 | 1 << 32, 3, 0, 1 << 63];
    let subs = vec![
        (vec![], vec![]),
        (vec![2], vec![]),
        (vec![0, 2], values(2)),
        (vec![1, 6, 3], values(3)),
        ((0..9).map(|i| i % 8).collect(), values(9)),
        ((0..512).map(|i| (i * 7) % 8).collect(), values(512)),
        (vec![7, 7, 7, 7, 7], values(5)),
        (vec![4, 5, 4, 5], values(4)),
    ];
    let mixed = build_block([2, 2, 2], &table, &subs);
    let solid = build_block([2, 2, 2], &[5 | 1 << 40], &[]);
    let zeros = build_block([2, 2, 2], &[0, 1], &vec![(vec![], vec![]); 8]);
    let dup_solid = build_block([2, 2, 2], &[4, 4], &vec![(vec![1], vec![]); 8]);
    check_decode(std::slice::from_ref(&mixed));
    check_decode(&[
        solid.clone(),
        mixed.clone(),
        zeros,
        dup_solid,
        solid,
        mixed.clone(),
    ]);
    // Odd sub-block counts put sbIdx and values at unaligned offsets.
    let odd = build_block([1, 1, 3], &table, &subs[3..6]);
    let one = build_block([1, 1, 1], &[7, 8], &[(vec![1, 0], values(2))]);
    check_decode(&[odd.clone(), odd]);
    check_decode(&[one.clone(), one.clone(), one]);
    // Enough blocks to need several chunks on the small device.
    check_decode(&vec![mixed; 40]);
}

#[test]
fn block_decode_rejects_malformed_blocks() {
    let table = [1, 2, 3];
    let subs = vec![(vec![0, 1, 2], (0..512).map(|i| i % 3).collect::<Vec<u32>>()); 8];
    let good = build_block([2, 2, 2], &table, &subs);
    let mut past_ns = subs.clone();
    past_ns[5].1[77] = 3; // 2 bits can say 3 where Ns = 3
    let mut past_table = subs.clone();
    past_table[2].0[1] = 3;
    let mut cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
        ("truncated", vec![good[..good.len() - 1].to_vec()]),
        ("trailing byte", vec![[good.as_slice(), &[0]].concat()]),
        ("header only", vec![good[..12].to_vec()]),
        ("empty table", vec![build_block([1, 1, 1], &[], &[])]),
        (
            "solid with extra",
            vec![[build_block([1, 1, 1], &[4], &[]), vec![0]].concat()],
        ),
        ("zero dims", vec![build_block([0, 1, 1], &[4], &[])]),
        ("huge dims", vec![build_block([1 << 20, 1, 1], &[4], &[])]),
        (
            "index past Ns",
            vec![good.clone(), build_block([2, 2, 2], &table, &past_ns)],
        ),
        (
            "index past table",
            vec![build_block([2, 2, 2], &table, &past_table)],
        ),
        (
            "mixed sizes",
            vec![good.clone(), build_block([1, 1, 1], &[4], &[])],
        ),
        ("no blocks", vec![]),
    ];
    let mut short_ns = good.clone();
    short_ns[16 + 24] = 200; // Ns[0] = 200: the byte length no longer adds up
    cases.push(("lying Ns", vec![short_ns]));
    for (what, blocks) in &cases {
        let refs: Vec<&[u8]> = blocks.iter().map(|b| b.as_slice()).collect();
        for g in [gpu(), small_gpu()] {
            match g.block_decode(&refs) {
                Err(ComputeError::BadInput(_)) => {}
                other => panic!("{what}: {other:?}"),
            }
        }
    }
    check_decode(&[good]);
}

/// Batches of full-size blocks through encode → decode, and counts, on the real binding size.
#[test]
fn full_blocks_round_trip() {
    let mut rng = Rng(10);
    let block = Shape::cube(64);
    let labels = structured_blocks(&mut rng, block, 12);
    let encoded = gpu().block_encode(&labels, block).unwrap();
    let refs: Vec<&[u8]> = encoded.iter().map(|b| b.as_slice()).collect();
    let (shape, decoded) = gpu().block_decode(&refs).unwrap();
    assert_eq!(shape, block);
    assert!(decoded == labels);
    assert_eq!(
        gpu().label_counts(&labels, block).unwrap(),
        reference::label_counts(&labels, block)
    );
    assert_eq!(encoded[0].len(), 24);
}

#[test]
fn software_adapter_needs_consent() {
    if !gpu().adapter().contains("Cpu") {
        return; // a hardware adapter: nothing to refuse
    }
    match GpuCompute::new(false) {
        Err(ComputeError::Device(m)) => {
            assert!(
                m.contains("software adapter") && m.contains("TESSERA_GPU_ALLOW_SOFTWARE=1"),
                "{m}"
            )
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a software adapter was accepted without consent"),
    }
}

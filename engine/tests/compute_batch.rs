//! `run_batch` on both backends against the step-by-step composition of the individual kernels
//! (`batch::step_by_step`), byte for byte, and the GPU's transfer counts. The GPU runs on a
//! real adapter (lavapipe in CI); no adapter is a failure, not a skip.

mod common;

use std::sync::OnceLock;

use tessera_engine::compute::batch::{self, BatchInput, BatchOutput, BatchSteps};
use tessera_engine::compute::cpu::CpuCompute;
use tessera_engine::compute::gpu::GpuCompute;
use tessera_engine::compute::reference::Rng;
use tessera_engine::compute::{Cells, Compute, ComputeError, LabelTable, Run, Shape, Transfers};

fn gpu() -> &'static GpuCompute {
    static GPU: OnceLock<GpuCompute> = OnceLock::new();
    GPU.get_or_init(|| match GpuCompute::new(true) {
        Ok(g) => g,
        Err(e) => panic!("no GPU adapter (CI installs mesa-vulkan-drivers for lavapipe): {e}"),
    })
}

/// A device whose bindings hold `bytes`, so that batches are cut into several chunks.
fn limited(bytes: u64) -> GpuCompute {
    let mut g = GpuCompute::new(true).expect("GPU adapter");
    g.limit_binding(bytes);
    g
}

/// Two 64³ blocks a chunk (every per-block binding of a 64³ block is at most 2 MiB).
fn mid_gpu() -> &'static GpuCompute {
    static GPU: OnceLock<GpuCompute> = OnceLock::new();
    GPU.get_or_init(|| limited(4 << 20))
}

/// Small bindings: a few 16³ blocks a chunk; anything larger goes to the CPU twin.
fn small_gpu() -> &'static GpuCompute {
    static GPU: OnceLock<GpuCompute> = OnceLock::new();
    GPU.get_or_init(|| limited(64 << 10))
}

fn backends() -> Vec<(&'static str, &'static dyn Compute)> {
    static CPU: OnceLock<CpuCompute> = OnceLock::new();
    vec![
        ("cpu", CPU.get_or_init(CpuCompute::new) as &dyn Compute),
        ("gpu", gpu()),
        ("gpu, 4 MiB bindings", mid_gpu()),
        ("gpu, 64 KiB bindings", small_gpu()),
    ]
}

/// The reference: the CPU's individual kernels one after another.
fn reference(input: BatchInput, block: Shape, steps: &BatchSteps) -> BatchOutput {
    batch::step_by_step(&CpuCompute::new(), input, block, steps).expect("reference batch")
}

/// Every backend's `run_batch` equals the reference, and the GPU's own step-by-step too.
fn check_all(what: &str, input: BatchInput, block: Shape, steps: &BatchSteps) {
    let want = reference(input, block, steps);
    for (name, c) in backends() {
        let _ = c.run_batch(input, block, steps);
        let got = c
            .run_batch(input, block, steps)
            .unwrap_or_else(|e| panic!("{what} on {name}: {e}"));
        assert_same(&got, &want, &format!("{what} on {name}"));
    }
    let gpu_steps = batch::step_by_step(gpu(), input, block, steps).unwrap();
    assert_same(&gpu_steps, &want, &format!("{what}: gpu step by step"));
}

fn assert_same(got: &BatchOutput, want: &BatchOutput, what: &str) {
    assert_eq!(got.written, want.written, "{what}: written");
    assert_eq!(got.counts, want.counts, "{what}: counts");
    assert_eq!(got.levels.len(), want.levels.len(), "{what}: levels");
    for (k, (g, w)) in got.levels.iter().zip(&want.levels).enumerate() {
        assert!(g == w, "{what}: level {} differs", k + 1);
    }
    assert!(got.voxels == want.voxels, "{what}: voxels differ");
    assert_eq!(got.surfaces.len(), want.surfaces.len(), "{what}: surfaces");
    for (i, (g, w)) in got.surfaces.iter().zip(&want.surfaces).enumerate() {
        assert!(g == w, "{what}: block {i}'s meshes differ");
    }
    assert_eq!(got.blocks.len(), want.blocks.len(), "{what}: blocks");
    for (i, (g, w)) in got.blocks.iter().zip(&want.blocks).enumerate() {
        assert!(g == w, "{what}: encoded block {i} differs");
    }
}

/// Labels that stress the device's (lo, hi) words: 0, u64::MAX, pairs equal in one word.
fn palette(rng: &mut Rng, n: usize) -> Vec<u64> {
    let mut p = vec![0, u64::MAX, 1, 1 << 32, (1 << 32) + 1, u64::MAX - 1];
    while p.len() < n {
        p.push(rng.next_u64() >> rng.below(64));
    }
    p
}

/// Blocks of several kinds, stacked: boxes of few labels, noise of many, solid blocks (of 0,
/// u64::MAX and an ordinary label), and one with many labels per sub-block.
fn mixed_blocks(rng: &mut Rng, block: Shape, n: usize) -> Vec<u64> {
    let pal = palette(rng, 40);
    let mut out = Vec::with_capacity(n * block.voxels());
    for i in 0..n {
        let seed = rng.next_u64();
        let b = match i % 6 {
            0 => common::boxes(block, &pal, 12, seed),
            1 => common::noise(block, &pal[..5], seed),
            2 => vec![pal[rng.below(pal.len())]; block.voxels()],
            3 => vec![0; block.voxels()],
            4 => (0..block.voxels() as u64)
                .map(|x| x * 7 + (seed & 0xff))
                .collect(),
            _ => common::boxes(block, &pal[..3], 30, seed),
        };
        out.extend(b);
    }
    out
}

/// Runs over the stacked volume: whole planes across block boundaries, random rows, runs
/// that stick out of the volume, overlapping and unsorted ones.
fn runs(rng: &mut Rng, volume: Shape, n: usize) -> Vec<Run> {
    let mut r = Vec::new();
    // Every row of the planes around the first block boundary, and a few past the far end.
    let z_cut = volume.z as i32 / 2;
    for z in z_cut - 3..z_cut + 3 {
        for y in 0..volume.y as i32 {
            r.push(Run::new(-2, y, z, volume.x as i32 + 4));
        }
    }
    r.push(Run::new(0, 0, volume.z as i32, 9));
    r.push(Run::new(0, -1, 0, 9));
    for _ in 0..n {
        let x = rng.below(volume.x + 4) as i32 - 2;
        let len = 1 + rng.below(volume.x) as i32;
        let (y, z) = (rng.below(volume.y) as i32, rng.below(volume.z) as i32);
        r.push(Run::new(x, y, z, len));
        if rng.below(4) == 0 {
            r.push(Run::new(x + len / 2, y, z, len));
        }
    }
    r.reverse();
    r
}

/// A table over some of `labels`, mapping to 0, u64::MAX, other labels of the batch and new
/// ones, with identity entries.
fn table(rng: &mut Rng, labels: &[u64], n: usize) -> LabelTable {
    let mut pairs = Vec::new();
    let targets = [0, u64::MAX, 1 << 32, 12345];
    for i in 0..n {
        let from = labels[rng.below(labels.len())];
        let to = match i % 5 {
            0 => targets[rng.below(targets.len())],
            1 => labels[rng.below(labels.len())],
            2 => from,
            _ => rng.next_u64(),
        };
        pairs.push((from, to));
    }
    pairs.sort_by_key(|p| p.0);
    pairs.dedup_by_key(|p| p.0);
    LabelTable::new(pairs).unwrap()
}

fn encode(voxels: &[u64], block: Shape) -> Vec<Vec<u8>> {
    CpuCompute::new().block_encode(voxels, block).unwrap()
}

/// A valid block the canonical encoder never writes: its table lists labels in descending
/// order with the first one repeated at the end (and used), each sub-block lists its labels in
/// reverse order of appearance, and sub-blocks of zeros have Ns = 0.
fn odd_encoding(voxels: &[u64], block: Shape) -> Vec<u8> {
    let (gx, gy, gz) = (block.x / 8, block.y / 8, block.z / 8);
    let mut table: Vec<u64> = voxels.to_vec();
    table.sort_unstable_by(|a, b| b.cmp(a));
    table.dedup();
    table.push(table[0]);
    let mut ns = Vec::new();
    let mut idx = Vec::new();
    let mut bits_out = Vec::new();
    for sz in 0..gz {
        for sy in 0..gy {
            for sx in 0..gx {
                let mut sub = Vec::with_capacity(512);
                for z in 0..8 {
                    for y in 0..8 {
                        let at = ((sz * 8 + z) * block.y + sy * 8 + y) * block.x + sx * 8;
                        sub.extend_from_slice(&voxels[at..at + 8]);
                    }
                }
                if sub.iter().all(|&l| l == 0) {
                    ns.push(0u16);
                    continue;
                }
                let mut local: Vec<u64> = Vec::new();
                for &l in &sub {
                    if !local.contains(&l) {
                        local.push(l);
                    }
                }
                local.reverse();
                ns.push(local.len() as u16);
                for (j, l) in local.iter().enumerate() {
                    let mut t = table.iter().position(|x| x == l).unwrap();
                    if t == 0 && j % 2 == 0 {
                        t = table.len() - 1;
                    }
                    idx.push(t as u32);
                }
                if local.len() >= 2 {
                    let bits = (local.len() - 1).ilog2() as usize + 1;
                    let mut stream = vec![0u8; 64 * bits];
                    for (v, l) in sub.iter().enumerate() {
                        let k = local.iter().position(|x| x == l).unwrap();
                        for b in 0..bits {
                            if k >> (bits - 1 - b) & 1 == 1 {
                                let bit = v * bits + b;
                                stream[bit / 8] |= 0x80 >> (bit % 8);
                            }
                        }
                    }
                    bits_out.extend(stream);
                }
            }
        }
    }
    let mut out = Vec::new();
    for w in [gx as u32, gy as u32, gz as u32, table.len() as u32] {
        out.extend_from_slice(&w.to_le_bytes());
    }
    for l in &table {
        out.extend_from_slice(&l.to_le_bytes());
    }
    for n in ns {
        out.extend_from_slice(&n.to_le_bytes());
    }
    for i in idx {
        out.extend_from_slice(&i.to_le_bytes());
    }
    out.extend(bits_out);
    out
}

/// The edit sequence: split, relabel, counts, `levels` levels, the surface over `surface`'s
/// cells of each block, and encoding.
fn split_steps(
    runs: Vec<Run>,
    split: LabelTable,
    relabel: LabelTable,
    levels: u32,
    surface: Option<Cells>,
) -> BatchSteps {
    BatchSteps {
        split: Some((runs, split)),
        relabel: Some(relabel),
        counts: true,
        levels,
        surface,
        encode: true,
        voxels: false,
    }
}

#[test]
fn odd_encoding_decodes_to_its_voxels() {
    let mut rng = Rng(3);
    let block = Shape::new(16, 8, 24);
    let voxels = mixed_blocks(&mut rng, block, 6);
    for b in voxels.chunks(block.voxels()) {
        let (shape, got) = CpuCompute::new()
            .block_decode(&[&odd_encoding(b, block)])
            .unwrap();
        assert_eq!(shape, block);
        assert!(got == b);
    }
}

#[test]
fn split_sequence_matches_step_by_step() {
    let mut rng = Rng(11);
    for (block, n) in [
        (Shape::cube(16), 7),
        (Shape::new(24, 16, 8), 5),
        (Shape::cube(64), 3),
    ] {
        let voxels = mixed_blocks(&mut rng, block, n);
        let volume = batch::stacked(block, n);
        let runs = runs(&mut rng, volume, 300);
        let split = table(&mut rng, &voxels, 30);
        let relabel = table(&mut rng, &voxels, 20);
        // Meshing the 64³ block of a label per voxel takes lavapipe minutes; the transfer
        // tests mesh 64³ blocks.
        let surface = (block.voxels() < 64 * 64 * 64).then(|| Cells::all(block));
        let steps = split_steps(runs, split, relabel, 3, surface);
        let canonical = encode(&voxels, block);
        let odd: Vec<Vec<u8>> = voxels
            .chunks(block.voxels())
            .map(|b| odd_encoding(b, block))
            .collect();
        for (kind, blocks) in [("canonical", &canonical), ("odd", &odd)] {
            let refs: Vec<&[u8]> = blocks.iter().map(|b| b.as_slice()).collect();
            let what = format!("split of {n} {block} blocks, {kind} encoding");
            check_all(&what, BatchInput::Encoded(&refs), block, &steps);
        }
    }
}

/// Split targets that are new labels everywhere a run reaches: every sub-block's labels double
/// (the bound the device lays its output out by).
#[test]
fn split_doubling_every_label() {
    let mut rng = Rng(5);
    let block = Shape::cube(16);
    let n = 4;
    let voxels = common::noise(
        Shape::new(16, 16, 16 * n),
        &palette(&mut rng, 300),
        rng.next_u64(),
    );
    let volume = batch::stacked(block, n);
    // Every other voxel of every row: each sub-block keeps its labels and gains their images.
    let mut runs = Vec::new();
    for z in 0..volume.z as i32 {
        for y in 0..volume.y as i32 {
            for x in (0..volume.x as i32).step_by(2) {
                runs.push(Run::new(x, y, z, 1));
            }
        }
    }
    let mut labels = voxels.clone();
    labels.sort_unstable();
    labels.dedup();
    let split = LabelTable::new(labels.iter().map(|&l| (l, l ^ 0x5555_0000_0000_5555))).unwrap();
    let steps = split_steps(
        runs,
        split,
        LabelTable::default(),
        3,
        Some(Cells::all(block)),
    );
    let blocks = encode(&voxels, block);
    let refs: Vec<&[u8]> = blocks.iter().map(|b| b.as_slice()).collect();
    check_all(
        "split doubling labels",
        BatchInput::Encoded(&refs),
        block,
        &steps,
    );
}

#[test]
fn ingest_sequence_matches_step_by_step() {
    let mut rng = Rng(12);
    for (block, n) in [
        (Shape::cube(16), 6),
        (Shape::new(8, 16, 24), 5),
        (Shape::cube(64), 3),
    ] {
        let voxels = mixed_blocks(&mut rng, block, n);
        let steps = BatchSteps {
            counts: true,
            levels: 3,
            encode: true,
            ..BatchSteps::default()
        };
        let what = format!("ingest of {n} {block} blocks");
        check_all(&what, BatchInput::Voxels(&voxels), block, &steps);
    }
}

/// The surface step over other cell boxes than `Cells::all`: each block's interior cells (as
/// for blocks that carry a rim), a box that leaves out the low rim, and one of no cells.
#[test]
fn surfaces_of_other_cell_boxes() {
    let mut rng = Rng(15);
    let block = Shape::new(16, 24, 8);
    let voxels = mixed_blocks(&mut rng, block, 7);
    let blocks = encode(&voxels, block);
    let refs: Vec<&[u8]> = blocks.iter().map(|b| b.as_slice()).collect();
    let high_only = Cells {
        lo: [0, 0, 0],
        hi: [16, 24, 8],
    };
    let none = Cells {
        lo: [3, 3, 3],
        hi: [3, 9, 8],
    };
    for cells in [Cells::interior(block), high_only, none] {
        let steps = BatchSteps {
            relabel: Some(table(&mut rng, &voxels, 10)),
            surface: Some(cells),
            ..BatchSteps::default()
        };
        let what = format!("surface over {cells:?}");
        check_all(&what, BatchInput::Encoded(&refs), block, &steps);
        check_all(&what, BatchInput::Voxels(&voxels), block, &steps);
    }
}

#[test]
fn relabel_only_with_voxels() {
    let mut rng = Rng(13);
    let block = Shape::new(16, 8, 8);
    let voxels = mixed_blocks(&mut rng, block, 9);
    let steps = BatchSteps {
        relabel: Some(table(&mut rng, &voxels, 25)),
        voxels: true,
        ..BatchSteps::default()
    };
    check_all("relabel only", BatchInput::Voxels(&voxels), block, &steps);
    let blocks = encode(&voxels, block);
    let refs: Vec<&[u8]> = blocks.iter().map(|b| b.as_slice()).collect();
    check_all(
        "relabel only, encoded",
        BatchInput::Encoded(&refs),
        block,
        &steps,
    );
}

/// Every subset of the steps, from both inputs.
#[test]
fn every_combination_of_steps() {
    let mut rng = Rng(14);
    let block = Shape::new(16, 8, 16);
    let n = 5;
    let voxels = mixed_blocks(&mut rng, block, n);
    let volume = batch::stacked(block, n);
    let runs = runs(&mut rng, volume, 60);
    let split = table(&mut rng, &voxels, 12);
    let relabel = table(&mut rng, &voxels, 12);
    let blocks = encode(&voxels, block);
    let refs: Vec<&[u8]> = blocks.iter().map(|b| b.as_slice()).collect();
    // With the surface, the first block (boxes of 12 labels): lavapipe takes several µs a
    // surface cell to emit, and other tests mesh every kind of block.
    let light = &voxels[..block.voxels()];
    for mask in 0..128u32 {
        let on = |bit: u32| mask >> bit & 1 == 1;
        let steps = BatchSteps {
            split: on(0).then(|| (runs.clone(), split.clone())),
            relabel: on(1).then(|| relabel.clone()),
            counts: on(2),
            levels: if on(3) { 3 } else { 0 },
            encode: on(4),
            voxels: on(5),
            surface: on(6).then(|| Cells::all(block)),
        };
        let what = format!("steps {mask:07b}");
        let (voxels, refs) = match on(6) {
            true => (light, &refs[..1]),
            false => (&voxels[..], &refs[..]),
        };
        check_all(&what, BatchInput::Voxels(voxels), block, &steps);
        check_all(&what, BatchInput::Encoded(refs), block, &steps);
    }
}

fn is_bad<T: std::fmt::Debug>(r: Result<T, ComputeError>) -> bool {
    matches!(r, Err(ComputeError::BadInput(_)))
}

#[test]
fn rejects_bad_input_before_running() {
    let block = Shape::cube(16);
    let voxels = vec![7u64; 2 * block.voxels()];
    let good = encode(&voxels, block);
    let mut truncated = good[0].clone();
    truncated.pop();
    let mut bad_index = odd_encoding(&common::noise(block, &[1, 2, 3], 9), block);
    // The first packed value of the first sub-block: 3 labels → 2 bits; index 3 is past them.
    let values_at = bad_index.len() - 64 * 2 * block.voxels() / 512;
    bad_index[values_at] = 0xff;
    let small = encode(&vec![1u64; 512], Shape::cube(8));
    let all = BatchSteps {
        counts: true,
        levels: 1,
        encode: true,
        voxels: true,
        ..BatchSteps::default()
    };
    let odd_block = Shape::new(6, 6, 5);
    let odd_voxels = vec![1u64; odd_block.voxels()];
    // Devices of its own, so that no other test's traffic is counted.
    let devices: Vec<(&str, Box<dyn Compute>)> = vec![
        ("cpu", Box::new(CpuCompute::new())),
        ("gpu", Box::new(GpuCompute::new(true).expect("GPU adapter"))),
        ("gpu, 64 KiB bindings", Box::new(limited(64 << 10))),
    ];
    for (name, c) in &devices {
        let before = c.transfers();
        let enc = |blocks: &[&[u8]], block: Shape, steps: &BatchSteps| {
            c.run_batch(BatchInput::Encoded(blocks), block, steps)
        };
        assert!(
            is_bad(enc(&[&good[0], &truncated], block, &all)),
            "{name}: truncated"
        );
        assert!(
            is_bad(enc(&[&good[0], &small[0]], block, &all)),
            "{name}: mixed shapes"
        );
        assert!(
            is_bad(enc(&[&small[0]], block, &all)),
            "{name}: wrong shape"
        );
        assert!(is_bad(enc(&[], block, &all)), "{name}: no blocks");
        let vox = |v: &[u64], block: Shape, steps: &BatchSteps| {
            c.run_batch(BatchInput::Voxels(v), block, steps)
        };
        assert!(
            is_bad(vox(&voxels[1..], block, &all)),
            "{name}: partial block"
        );
        assert!(is_bad(vox(&[], block, &all)), "{name}: no voxels");
        let encode_only = BatchSteps {
            encode: true,
            ..BatchSteps::default()
        };
        let down = |levels: u32| BatchSteps {
            levels,
            ..BatchSteps::default()
        };
        assert!(
            is_bad(vox(&odd_voxels, odd_block, &encode_only)),
            "{name}: encode 6×6×5"
        );
        assert!(
            is_bad(vox(&odd_voxels, odd_block, &down(1))),
            "{name}: odd sides"
        );
        assert!(
            is_bad(vox(&voxels, block, &down(5))),
            "{name}: 5 levels of 16³"
        );
        assert!(is_bad(vox(&voxels, block, &down(64))), "{name}: 64 levels");
        let outside = BatchSteps {
            surface: Some(Cells {
                lo: [-2, 0, 0],
                hi: [16, 16, 16],
            }),
            ..BatchSteps::default()
        };
        assert!(
            is_bad(vox(&voxels, block, &outside)),
            "{name}: cells outside the block's rim"
        );
        // Nothing crossed the bus for any of them.
        assert_eq!(c.transfers(), before, "{name}: transfers on bad input");
        assert!(vox(&odd_voxels, odd_block, &BatchSteps::default()).is_ok());
        // A bad packed index is found while decoding.
        assert!(
            is_bad(enc(&[&good[0], &bad_index], block, &all)),
            "{name}: bad index"
        );
    }
}

/// The transfers of one split batch of 8 blocks of 64³, fused and step by step.
#[test]
fn split_batch_transfers() {
    let mut rng = Rng(21);
    let block = Shape::cube(64);
    let n = 8;
    let voxels = mixed_blocks(&mut rng, block, n);
    let runs = runs(&mut rng, batch::stacked(block, n), 500);
    let steps = split_steps(
        runs,
        table(&mut rng, &voxels, 40),
        table(&mut rng, &voxels, 40),
        1,
        None,
    );
    let blocks = encode(&voxels, block);
    let refs: Vec<&[u8]> = blocks.iter().map(|b| b.as_slice()).collect();
    let input = BatchInput::Encoded(&refs);
    // A device of its own, so that no other test's traffic is counted.
    let g = GpuCompute::new(true).expect("GPU adapter");
    let t0 = g.transfers();
    let fused = g.run_batch(input, block, &steps).unwrap();
    let t1 = g.transfers();
    let one_by_one = batch::step_by_step(&g, input, block, &steps).unwrap();
    let t2 = g.transfers();
    assert_same(&fused, &one_by_one, "fused vs step by step");
    assert_same(
        &fused,
        &reference(input, block, &steps),
        "fused vs reference",
    );
    let (fused_t, steps_t) = (t1.since(t0), t2.since(t1));
    eprintln!("split batch of 8 64³ blocks: fused {fused_t:?}, step by step {steps_t:?}");
    assert_eq!((fused_t.uploads, fused_t.downloads), (1, 1), "{fused_t:?}");
    // decode 3 up (bytes, descriptors, params) 1 down; split 5 up (keys, values, voxels, runs,
    // params) 1 down; relabel 4 up 1 down; counts 2 up 2 down (entry count, then entries);
    // downsample 2 up 1 down; encode 2 up 1 down.
    assert_eq!((steps_t.uploads, steps_t.downloads), (18, 7), "{steps_t:?}");
    assert!(
        fused_t.upload_bytes < steps_t.upload_bytes / 4,
        "{fused_t:?} {steps_t:?}"
    );
    assert!(
        fused_t.download_bytes < steps_t.download_bytes / 4,
        "{fused_t:?} {steps_t:?}"
    );
    // What came back is at most twice the exact results (the bound the layout is sized by).
    let exact = fused.blocks.iter().map(|b| b.len()).sum::<usize>()
        + fused
            .counts
            .iter()
            .map(|c| 16 * c.labels.len())
            .sum::<usize>()
        + 8 * fused.levels.iter().map(Vec::len).sum::<usize>();
    assert!(
        fused_t.download_bytes <= 2 * exact as u64 + 4096,
        "{fused_t:?}, {exact}"
    );
}

/// The surface step adds its parameters' upload and, per range of cells whose meshes fit a
/// binding, one more of each; what comes back for the meshes is of their size.
#[test]
fn surface_batch_transfers() {
    let mut rng = Rng(25);
    let block = Shape::cube(64);
    let n = 8;
    // Boxes of a few labels each: surfaces as segmentations have them.
    let pal = palette(&mut rng, 30);
    let voxels: Vec<u64> = (0..n)
        .flat_map(|i| common::boxes(block, &pal, 12, i as u64))
        .collect();
    let blocks = encode(&voxels, block);
    let refs: Vec<&[u8]> = blocks.iter().map(|b| b.as_slice()).collect();
    let input = BatchInput::Encoded(&refs);
    let without = split_steps(
        runs(&mut rng, batch::stacked(block, n), 200),
        table(&mut rng, &voxels, 20),
        table(&mut rng, &voxels, 20),
        1,
        None,
    );
    let with = BatchSteps {
        surface: Some(Cells::all(block)),
        ..without.clone()
    };
    let g = GpuCompute::new(true).expect("GPU adapter");
    let t0 = g.transfers();
    g.run_batch(input, block, &without).unwrap();
    let t1 = g.transfers();
    let got = g.run_batch(input, block, &with).unwrap();
    let t2 = g.transfers();
    assert_same(&got, &reference(input, block, &with), "with surfaces");
    let (plain, meshed) = (t1.since(t0), t2.since(t1));
    eprintln!("8 64³ blocks: without surfaces {plain:?}, with {meshed:?}");
    assert_eq!((plain.uploads, plain.downloads), (1, 1), "{plain:?}");
    assert_eq!((meshed.uploads, meshed.downloads), (3, 2), "{meshed:?}");
    // Vertices cross as 8 bytes and triangles as 12, with 12 bytes per (cell, label) record:
    // about the meshes' own size (12-byte vertices and triangles), where triangles with their
    // corners' positions would be 32 bytes each.
    let (mut vertices, mut triangles) = (0, 0);
    for s in got.surfaces.iter().flatten() {
        vertices += s.vertices.len() as u64;
        triangles += s.triangles.len() as u64;
    }
    let extra = meshed.download_bytes - plain.download_bytes;
    let mesh_bytes = 12 * (vertices + triangles);
    eprintln!(
        "{vertices} vertices, {triangles} triangles: {extra} bytes for {mesh_bytes} of meshes"
    );
    assert!(
        extra <= mesh_bytes * 3 / 2,
        "{extra} bytes for {mesh_bytes} of meshes"
    );
    assert!(
        extra < 32 * triangles,
        "{extra} bytes for {triangles} triangles"
    );
}

/// Voxel input can't bound the encoder's output in advance: one upload, two downloads (sizes
/// and fixed-size results, then exactly the variable part). Without encode or counts: one.
#[test]
fn ingest_batch_transfers() {
    let mut rng = Rng(22);
    let block = Shape::cube(64);
    let n = 4;
    let voxels = mixed_blocks(&mut rng, block, n);
    let g = GpuCompute::new(true).expect("GPU adapter");
    let ingest = BatchSteps {
        counts: true,
        levels: 5,
        encode: true,
        ..BatchSteps::default()
    };
    let down = BatchSteps {
        levels: 5,
        ..BatchSteps::default()
    };
    for (steps, downloads) in [(ingest, 2), (down, 1)] {
        let t0 = g.transfers();
        let got = g
            .run_batch(BatchInput::Voxels(&voxels), block, &steps)
            .unwrap();
        let t = g.transfers().since(t0);
        assert_eq!((t.uploads, t.downloads), (1, downloads), "{t:?}");
        assert_same(
            &got,
            &reference(BatchInput::Voxels(&voxels), block, &steps),
            "ingest",
        );
    }
}

/// With small bindings, a batch is cut into chunks, each one upload and one download.
#[test]
fn chunks_cost_one_upload_and_download_each() {
    let mut rng = Rng(23);
    let block = Shape::cube(64);
    let n = 5;
    let voxels = mixed_blocks(&mut rng, block, n);
    let steps = split_steps(
        runs(&mut rng, batch::stacked(block, n), 100),
        table(&mut rng, &voxels, 10),
        table(&mut rng, &voxels, 10),
        5,
        None,
    );
    let blocks = encode(&voxels, block);
    let refs: Vec<&[u8]> = blocks.iter().map(|b| b.as_slice()).collect();
    let g = limited(4 << 20);
    let t0 = g.transfers();
    let got = g
        .run_batch(BatchInput::Encoded(&refs), block, &steps)
        .unwrap();
    let t = g.transfers().since(t0);
    // Two 64³ blocks fill a 4 MiB binding: chunks of 2, 2 and 1.
    assert_eq!((t.uploads, t.downloads), (3, 3), "{t:?}");
    assert_same(
        &got,
        &reference(BatchInput::Encoded(&refs), block, &steps),
        "chunked",
    );
}

/// 64 blocks of 64³ (128 MiB of voxels) are one chunk on a device with 128 MiB bindings.
#[test]
fn sixty_four_blocks_are_one_chunk() {
    let g = GpuCompute::new(true).expect("GPU adapter");
    if g.max_binding() < 128 << 20 {
        eprintln!("bindings of {} bytes: skipped", g.max_binding());
        return;
    }
    let block = Shape::cube(64);
    let n = 64;
    let mut rng = Rng(24);
    let pal = palette(&mut rng, 20);
    let voxels: Vec<u64> = (0..n)
        .flat_map(|i| common::boxes(block, &pal, 4, i as u64))
        .collect();
    let blocks = encode(&voxels, block);
    let refs: Vec<&[u8]> = blocks.iter().map(|b| b.as_slice()).collect();
    let steps = split_steps(
        runs(&mut rng, batch::stacked(block, n), 100),
        table(&mut rng, &pal, 10),
        table(&mut rng, &pal, 10),
        5,
        None,
    );
    let t0 = g.transfers();
    let got = g
        .run_batch(BatchInput::Encoded(&refs), block, &steps)
        .unwrap();
    let t = g.transfers().since(t0);
    assert_eq!((t.uploads, t.downloads), (1, 1), "{t:?}");
    let want = CpuCompute::new()
        .run_batch(BatchInput::Encoded(&refs), block, &steps)
        .unwrap();
    assert_same(&got, &want, "64 blocks");
}

#[test]
fn cpu_moves_nothing() {
    assert_eq!(CpuCompute::new().transfers(), Transfers::default());
}

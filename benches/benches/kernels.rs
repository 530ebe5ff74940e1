//! Compute kernels on a synthetic 256³ segmentation, per backend: the CPU always, the GPU when
//! an adapter opens (set TESSERA_GPU_ALLOW_SOFTWARE=1 to accept a software one). Throughput
//! is in voxels of input, so criterion reports Gelem/s.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use tessera_engine::compute::cpu::CpuCompute;
use tessera_engine::compute::gpu::GpuCompute;
use tessera_engine::compute::reference::Rng;
use tessera_engine::compute::{Compute, LabelTable, Run, Shape, normalize_runs, to_blocks};

const N: usize = 256;
const BLOCK: Shape = Shape::cube(64);

/// A segmentation-like volume: boxes of 8 to 40 voxels a side painted with 1000 labels.
fn segmentation() -> Vec<u64> {
    let mut rng = Rng(1);
    let mut v = vec![0u64; N * N * N];
    for _ in 0..8_000 {
        let label = 1 + rng.below(1000) as u64 * 7_000_003;
        let size = [8 + rng.below(32), 8 + rng.below(32), 8 + rng.below(32)];
        let at = [rng.below(N), rng.below(N), rng.below(N)];
        for z in at[2]..(at[2] + size[2]).min(N) {
            for y in at[1]..(at[1] + size[1]).min(N) {
                let row = (z * N + y) * N;
                v[row + at[0]..row + (at[0] + size[0]).min(N)].fill(label);
            }
        }
    }
    v
}

fn bench_backend(c: &mut Criterion, compute: &dyn Compute) {
    let shape = Shape::cube(N);
    let labels = segmentation();
    let gray: Vec<u8> = labels
        .iter()
        .map(|&l| (l.wrapping_mul(31) >> 3) as u8)
        .collect();
    let blocks = to_blocks(&labels, shape, BLOCK).unwrap();
    let encoded = compute.block_encode(&blocks, BLOCK).unwrap();
    let encoded: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
    let table = LabelTable::new(labels.iter().step_by(101).take(1000).map(|&l| (l, 1))).unwrap();
    let runs: Vec<Run> = (0..N as i32)
        .flat_map(|z| (0..N as i32).map(move |y| Run::new(y / 2, y, z, N as i32 / 2)))
        .collect();
    let runs = normalize_runs(&runs, shape);

    let mut g = c.benchmark_group(compute.backend().name());
    g.sample_size(10);
    g.throughput(Throughput::Elements(shape.voxels() as u64));
    println!(
        "backend {}: {}",
        compute.backend().name(),
        compute.adapter()
    );

    g.bench_function("relabel", |b| {
        b.iter_batched_ref(
            || labels.clone(),
            |v| compute.relabel(v, &table).unwrap(),
            BatchSize::LargeInput,
        )
    });
    g.bench_function("split_apply", |b| {
        b.iter_batched_ref(
            || labels.clone(),
            |v| compute.split_apply(v, shape, &runs, &table).unwrap(),
            BatchSize::LargeInput,
        )
    });
    g.bench_function("downsample_mode", |b| {
        b.iter(|| compute.downsample_mode(black_box(&labels), shape).unwrap())
    });
    g.bench_function("pyramid_mode_5", |b| {
        b.iter(|| compute.pyramid_mode(black_box(&labels), shape, 5).unwrap())
    });
    g.bench_function("downsample_mean_u8", |b| {
        b.iter(|| compute.downsample_mean(black_box(&gray), shape).unwrap())
    });
    g.bench_function("pyramid_mean_u8_5", |b| {
        b.iter(|| compute.pyramid_mean(black_box(&gray), shape, 5).unwrap())
    });
    g.bench_function("label_counts_64", |b| {
        b.iter(|| compute.label_counts(black_box(&blocks), BLOCK).unwrap())
    });
    g.bench_function("block_encode_64", |b| {
        b.iter(|| compute.block_encode(black_box(&blocks), BLOCK).unwrap())
    });
    // Into one reused buffer, as a server decodes batch after batch; a fresh output per call
    // mostly measures page faults (see docs/benchmarks.md).
    let mut decoded = vec![0u64; blocks.len()];
    g.bench_function("block_decode_64", |b| {
        b.iter(|| {
            compute
                .block_decode_into(black_box(&encoded), &mut decoded)
                .unwrap()
        })
    });
    g.finish();
}

fn kernels(c: &mut Criterion) {
    bench_backend(c, &CpuCompute::new());
    let allow_software =
        std::env::var("TESSERA_GPU_ALLOW_SOFTWARE").is_ok_and(|v| v == "1" || v == "true");
    match GpuCompute::new(allow_software) {
        Ok(gpu) => bench_backend(c, &gpu),
        Err(e) => println!("skipping the gpu group: {e}"),
    }
}

criterion_group!(benches, kernels);
criterion_main!(benches);

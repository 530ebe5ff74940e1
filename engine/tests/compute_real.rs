//! Every kernel on real segmentation (crops of the pinky40 cutout, see tests/data/README.md):
//! the CPU and GPU backends must give the reference's bytes. The GPU side runs on whatever
//! adapter exists, lavapipe in CI; a missing adapter fails the test rather than skipping it.

use std::io::Read;

use tessera_engine::compute::cpu::CpuCompute;
use tessera_engine::compute::gpu::GpuCompute;
use tessera_engine::compute::{
    Compute, ComputeError, LabelTable, Run, Shape, normalize_runs, reference, to_blocks,
};

fn crops() -> Vec<(String, Shape, Vec<u64>)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("tests/data") {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".u64.gz") else {
            continue;
        };
        let n: usize = stem.rsplit('-').next().unwrap().parse().unwrap();
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(std::fs::File::open(&path).unwrap())
            .read_to_end(&mut raw)
            .unwrap();
        assert_eq!(raw.len(), n * n * n * 8, "{name}");
        let labels = raw
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        out.push((name, Shape::cube(n), labels));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() >= 4, "expected the pinky40 crops in {dir}");
    out
}

fn backends() -> Vec<Box<dyn Compute>> {
    let gpu = GpuCompute::new(true).unwrap_or_else(|e| {
        panic!("no GPU adapter (CI installs mesa-vulkan-drivers for lavapipe): {e}")
    });
    vec![Box::new(CpuCompute::new()), Box::new(gpu)]
}

#[test]
fn pyramids_match_the_reference() {
    let backends = backends();
    for (name, shape, labels) in crops() {
        let want = reference::pyramid(&labels, shape, 3, reference::downsample_mode);
        for c in &backends {
            let who = format!("{name} on {}", c.adapter());
            assert_eq!(c.downsample_mode(&labels, shape).unwrap(), want[0], "{who}");
            assert_eq!(c.pyramid_mode(&labels, shape, 3).unwrap(), want, "{who}");
        }
        // Grayscale: the low byte of the labels is as ragged a picture as any.
        let gray: Vec<u8> = labels
            .iter()
            .map(|&l| (l.wrapping_mul(0x9E37_79B9) >> 11) as u8)
            .collect();
        let want = reference::pyramid(&gray, shape, 2, reference::downsample_mean);
        for c in &backends {
            assert_eq!(
                c.pyramid_mean(&gray, shape, 2).unwrap(),
                want,
                "{name} on {}",
                c.adapter()
            );
        }
    }
}

#[test]
fn relabel_split_and_counts_match_the_reference() {
    let backends = backends();
    for (name, shape, labels) in crops() {
        let mut distinct = labels.clone();
        distinct.sort_unstable();
        distinct.dedup();
        // Merge every other body into the first, as a proofreading merge would.
        let table = LabelTable::new(distinct.iter().step_by(2).map(|&l| (l, distinct[0]))).unwrap();
        let mut want = labels.clone();
        reference::relabel(&mut want, &table);
        // Split: the largest label inside a slanted slab of rows gets a new id.
        let runs: Vec<Run> = (0..shape.z as i32)
            .flat_map(|z| (0..shape.y as i32).map(move |y| Run::new(z / 2 + y / 3 - 8, y, z, 40)))
            .collect();
        let runs = normalize_runs(&runs, shape);
        let split = LabelTable::new([(*distinct.last().unwrap(), u64::MAX)]).unwrap();
        let mut want_split = labels.clone();
        let written = reference::split_apply(&mut want_split, shape, &runs, &split);
        let blocks = to_blocks(&labels, shape, Shape::cube(64)).unwrap();
        let want_counts = reference::label_counts(&blocks, Shape::cube(64));
        for c in &backends {
            let who = format!("{name} on {}", c.adapter());
            let mut got = labels.clone();
            c.relabel(&mut got, &table).unwrap();
            assert!(got == want, "relabel {who}");
            let mut got = labels.clone();
            assert_eq!(
                c.split_apply(&mut got, shape, &runs, &split).unwrap(),
                written,
                "{who}"
            );
            assert!(got == want_split, "split_apply {who}");
            assert_eq!(
                c.label_counts(&blocks, Shape::cube(64)).unwrap(),
                want_counts,
                "{who}"
            );
        }
    }
}

#[test]
fn block_codec_matches_the_reference() {
    let backends = backends();
    let block = Shape::cube(64);
    for (name, shape, labels) in crops() {
        let blocks = to_blocks(&labels, shape, Shape::cube(64)).unwrap();
        let want: Vec<Vec<u8>> = blocks
            .chunks(block.voxels())
            .map(|b| reference::block_encode(b, block))
            .collect();
        for c in &backends {
            let who = format!("{name} on {}", c.adapter());
            let encoded = c.block_encode(&blocks, block).unwrap();
            assert!(encoded == want, "block_encode {who}");
            let refs: Vec<&[u8]> = encoded.iter().map(|b| b.as_slice()).collect();
            let (got_shape, decoded) = c.block_decode(&refs).unwrap();
            assert_eq!(got_shape, block, "{who}");
            assert!(decoded == blocks, "block_decode {who}");
            let mut reused = vec![7u64; blocks.len()];
            assert_eq!(c.block_decode_into(&refs, &mut reused).unwrap(), block);
            assert!(reused == blocks, "block_decode_into {who}");
            let mut short = vec![0u64; blocks.len() - 1];
            let err = c.block_decode_into(&refs, &mut short).unwrap_err();
            assert!(matches!(err, ComputeError::BadInput(_)), "{who}: {err}");
        }
    }
}

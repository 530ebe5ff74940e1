//! Real segmentation for the kernels' unit tests: the pinky40 crops of `tests/data`.

use std::io::Read;

use super::Shape;

/// The cube `tests/data/{name}.u64.gz` (little-endian u64, x fastest, side in the name).
pub fn pinky40(name: &str) -> (Shape, Vec<u64>) {
    let path = format!("{}/tests/data/{name}.u64.gz", env!("CARGO_MANIFEST_DIR"));
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&path).expect(&path))
        .read_to_end(&mut raw)
        .expect(&path);
    let side: usize = name.rsplit('-').next().unwrap().parse().unwrap();
    assert_eq!(raw.len(), side * side * side * 8, "{path}");
    let labels = raw
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    (Shape::cube(side), labels)
}

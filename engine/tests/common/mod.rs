//! Test volumes the kernel tests share.

use tessera_engine::compute::Shape;
use tessera_engine::compute::reference::Rng;

/// Segmentation-like labels: random boxes of random labels painted over a background.
pub fn boxes(shape: Shape, palette: &[u64], count: usize, seed: u64) -> Vec<u64> {
    let mut rng = Rng(seed);
    let mut v = vec![palette[0]; shape.voxels()];
    for _ in 0..count {
        let label = palette[rng.below(palette.len())];
        let (x0, y0, z0) = (rng.below(shape.x), rng.below(shape.y), rng.below(shape.z));
        let (x1, y1, z1) = (
            (x0 + 1 + rng.below(shape.x)).min(shape.x),
            (y0 + 1 + rng.below(shape.y)).min(shape.y),
            (z0 + 1 + rng.below(shape.z)).min(shape.z),
        );
        for z in z0..z1 {
            for y in y0..y1 {
                let at = (z * shape.y + y) * shape.x;
                v[at + x0..at + x1].fill(label);
            }
        }
    }
    v
}

/// Every voxel drawn independently from `palette`: ties and mixed windows everywhere.
pub fn noise(shape: Shape, palette: &[u64], seed: u64) -> Vec<u64> {
    let mut rng = Rng(seed);
    (0..shape.voxels())
        .map(|_| palette[rng.below(palette.len())])
        .collect()
}

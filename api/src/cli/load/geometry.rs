//! Where slabs go: each level's block-aligned box, its z-layers of blocks, and how a level's
//! layers are built from the level below (2×2×2 means of the zero-padded box).

use anyhow::{Context, ensure};
use bytes::Bytes;
use tessera_engine::compute::{Compute, Shape};

/// One level's block-aligned box in that level's voxel coordinates: every voxel of the input
/// (or of the level below, halved) lies inside it, and everything else in it is zero padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Level {
    /// (x, y, z) of the first voxel, a multiple of `block`.
    pub min: [i64; 3],
    /// (x, y, z) voxels, multiples of `block`.
    pub size: [usize; 3],
    pub block: [usize; 3],
}

fn align_down(v: i64, b: usize) -> i64 {
    v.div_euclid(b as i64) * b as i64
}

fn align_up(v: i64, b: usize) -> i64 {
    -align_down(-v, b)
}

impl Level {
    /// The box of an input of `shape` voxels whose first voxel goes to `offset`.
    pub fn base(offset: [i64; 3], shape: [usize; 3], block: [usize; 3]) -> Level {
        Level::spanning(
            offset,
            std::array::from_fn(|a| offset[a] + shape[a] as i64),
            block,
        )
    }

    /// The aligned box holding voxels `lo..hi` (exclusive).
    fn spanning(lo: [i64; 3], hi: [i64; 3], block: [usize; 3]) -> Level {
        let min: [i64; 3] = std::array::from_fn(|a| align_down(lo[a], block[a]));
        let size = std::array::from_fn(|a| (align_up(hi[a], block[a]) - min[a]) as usize);
        Level { min, size, block }
    }

    /// The next level down: the box holding this one's voxels halved (odd ends round out).
    pub fn half(&self) -> Level {
        let lo = std::array::from_fn(|a| self.min[a].div_euclid(2));
        let hi = std::array::from_fn(|a| align_up(self.min[a] + self.size[a] as i64, 2) / 2);
        Level::spanning(lo, hi, self.block)
    }

    /// Layers of blocks along z: one slab (one POST) each.
    pub fn layers(&self) -> usize {
        self.size[2] / self.block[2]
    }

    /// z of the first plane of layer `j`.
    pub fn layer_z(&self, j: usize) -> i64 {
        self.min[2] + (j * self.block[2]) as i64
    }

    /// Voxels of one slab.
    pub fn slab_voxels(&self) -> usize {
        self.size[0] * self.size[1] * self.block[2]
    }

    /// `(x, y, z)` sizes of one slab, as in a `raw/0_1_2/<size>` path.
    pub fn slab_size(&self) -> [usize; 3] {
        [self.size[0], self.size[1], self.block[2]]
    }

    /// `(x, y, z)` of the first voxel of layer `j`.
    pub fn slab_offset(&self, j: usize) -> [i64; 3] {
        [self.min[0], self.min[1], self.layer_z(j)]
    }
}

/// The layer of `upper` (the level above `lower`) that layer `j` of `lower` feeds, and which
/// of its two halves (0: lower z, 1: upper z) it is. Block z sizes must be even.
pub fn parent(lower: &Level, upper: &Level, j: usize) -> (usize, usize) {
    let bz = upper.block[2] as i64;
    let z = lower.layer_z(j);
    let m = (z.div_euclid(2) - upper.min[2]) / bz;
    let half = (z - 2 * upper.layer_z(m as usize)) / lower.block[2] as i64;
    debug_assert!(m >= 0 && (0..2).contains(&half), "layer {j}: {m} {half}");
    (m as usize, half as usize)
}

/// Copies `planes` z-planes of an input of `shape` (x, y) voxels, `elem` bytes each, x
/// fastest, into the slab of layer `j` of `level` (zero elsewhere). `z0` is the first
/// plane's z in the input, whose first voxel lies at `offset`.
pub fn place_planes(
    level: &Level,
    offset: [i64; 3],
    shape_xy: [usize; 2],
    elem: usize,
    z_in_slab: usize,
    planes: &[u8],
    slab: &mut [u8],
) {
    let [sx, sy, _] = level.slab_size();
    let row = shape_xy[0] * elem;
    let dx = (offset[0] - level.min[0]) as usize * elem;
    let dy = (offset[1] - level.min[1]) as usize;
    let plane = shape_xy[0] * shape_xy[1] * elem;
    for (p, src) in planes.chunks_exact(plane).enumerate() {
        let z = z_in_slab + p;
        for (y, src_row) in src.chunks_exact(row).enumerate() {
            let at = ((z * sy + y + dy) * sx) * elem + dx;
            slab[at..at + row].copy_from_slice(src_row);
        }
    }
}

/// A layer of the level below, as it reaches the builder of the level above.
#[derive(Clone, Debug)]
pub enum Layer {
    /// Not yet seen (a layer outside the lower box reads as zeros).
    Pending,
    /// Not read, because it and every layer it feeds are loaded already.
    Skipped,
    Data(Bytes),
}

/// Builds the uint8 layers of `upper` from the layers of `lower`, which arrive in order.
pub struct LevelBuilder {
    lower: Level,
    upper: Level,
    next: usize,
    halves: [Layer; 2],
}

impl LevelBuilder {
    pub fn new(lower: Level, upper: Level) -> LevelBuilder {
        LevelBuilder {
            lower,
            upper,
            next: 0,
            halves: [Layer::Pending, Layer::Pending],
        }
    }

    /// Takes layer `j` of the lower level; returns the upper layers it completes, in order
    /// (`None`: skipped).
    pub fn add(
        &mut self,
        j: usize,
        layer: Option<Bytes>,
        compute: &dyn Compute,
    ) -> anyhow::Result<Vec<(usize, Option<Bytes>)>> {
        let (m, half) = parent(&self.lower, &self.upper, j);
        let mut out = Vec::new();
        while self.next < m {
            out.push(self.emit(compute)?);
        }
        self.halves[half] = match layer {
            Some(b) => Layer::Data(b),
            None => Layer::Skipped,
        };
        if half == 1 {
            out.push(self.emit(compute)?);
        }
        Ok(out)
    }

    /// The upper layers still open once the lower level has no more.
    pub fn finish(&mut self, compute: &dyn Compute) -> anyhow::Result<Vec<(usize, Option<Bytes>)>> {
        let mut out = Vec::new();
        while self.next < self.upper.layers() {
            out.push(self.emit(compute)?);
        }
        Ok(out)
    }

    fn emit(&mut self, compute: &dyn Compute) -> anyhow::Result<(usize, Option<Bytes>)> {
        let m = self.next;
        self.next += 1;
        let halves = std::mem::replace(&mut self.halves, [Layer::Pending, Layer::Pending]);
        if halves.iter().any(|h| matches!(h, Layer::Skipped)) {
            return Ok((m, None));
        }
        let (lo, up) = (&self.lower, &self.upper);
        // The lower level's voxels under this upper slab: twice its extent, zero-filled.
        let [wx, wy] = [2 * up.size[0], 2 * up.size[1]];
        let bz = lo.block[2];
        let mut buf = vec![0u8; wx * wy * 2 * bz];
        let dx = (lo.min[0] - 2 * up.min[0]) as usize;
        let dy = (lo.min[1] - 2 * up.min[1]) as usize;
        let [lx, ly, _] = lo.slab_size();
        for (h, half) in halves.iter().enumerate() {
            let Layer::Data(data) = half else { continue };
            for z in 0..bz {
                for y in 0..ly {
                    let src = (z * ly + y) * lx;
                    let dst = ((h * bz + z) * wy + y + dy) * wx + dx;
                    buf[dst..dst + lx].copy_from_slice(&data[src..src + lx]);
                }
            }
        }
        let shape = Shape::new(wx, wy, 2 * bz);
        let out = compute
            .downsample_mean(&buf, shape)
            .with_context(|| format!("downsampling a {shape} slab"))?;
        ensure!(
            out.len() == up.slab_voxels(),
            "the mean kernel returned {} voxels for a {} slab",
            out.len(),
            up.slab_voxels()
        );
        Ok((m, Some(Bytes::from(out))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_engine::compute::cpu::CpuCompute;

    #[test]
    fn boxes_are_aligned_and_hold_the_volume() {
        let l = Level::base([0, 0, 0], [100, 70, 50], [32, 32, 32]);
        assert_eq!((l.min, l.size), ([0, 0, 0], [128, 96, 64]));
        assert_eq!(l.layers(), 2);
        let l = Level::base([10, -5, 33], [100, 70, 50], [32, 32, 32]);
        assert_eq!((l.min, l.size), ([0, -32, 32], [128, 128, 64]));
        // Halved: x 0..128 → 0..64; y -32..96 → -16..48 → aligned -32..64; z 32..96 → 16..48
        // → aligned 0..64, so level 0's first layer is the upper half of level 1's first.
        let h = l.half();
        assert_eq!((h.min, h.size), ([0, -32, 0], [64, 96, 64]));
        assert_eq!(parent(&l, &h, 0), (0, 1));
        assert_eq!(parent(&l, &h, 1), (1, 0));
        let h2 = h.half();
        assert_eq!((h2.min, h2.size), ([0, -32, 0], [32, 64, 32]));
        assert_eq!(parent(&h, &h2, 0), (0, 0));
        assert_eq!(parent(&h, &h2, 1), (0, 1));
    }

    #[test]
    fn builder_means_pairs_and_pads_with_zeros() {
        let compute = CpuCompute::new();
        // One block layer below at z 32..64 of a 4³-block box: the level above has its lower
        // half outside the box (zeros) and its upper half this layer.
        let lower = Level {
            min: [0, 0, 4],
            size: [4, 4, 4],
            block: [4, 4, 4],
        };
        let upper = lower.half();
        assert_eq!((upper.min, upper.size), ([0, 0, 0], [4, 4, 4]));
        let mut b = LevelBuilder::new(lower, upper);
        let data = Bytes::from(vec![200u8; 64]);
        let out = b.add(0, Some(data), &compute).unwrap();
        assert_eq!(out.len(), 1);
        let (m, Some(slab)) = &out[0] else {
            panic!("skipped")
        };
        assert_eq!(*m, 0);
        // x, y 0..2 hold means of 200s at z 2..4 (the upper half): (8·200 + 4) / 8 = 200;
        // elsewhere the padding and the lower half's zeros.
        let at = |x: usize, y: usize, z: usize| slab[(z * 4 + y) * 4 + x];
        assert_eq!((at(0, 0, 2), at(1, 1, 3)), (200, 200));
        assert_eq!((at(2, 0, 2), at(0, 0, 0), at(0, 0, 1)), (0, 0, 0));
        assert!(b.finish(&compute).unwrap().is_empty());
    }

    #[test]
    fn skipped_halves_skip_the_parent() {
        let compute = CpuCompute::new();
        let lower = Level::base([0, 0, 0], [8, 8, 16], [4, 4, 4]);
        let upper = lower.half();
        let mut b = LevelBuilder::new(lower, upper);
        let zeros = || Some(Bytes::from(vec![0u8; lower.slab_voxels()]));
        assert!(b.add(0, None, &compute).unwrap().is_empty());
        let out = b.add(1, zeros(), &compute).unwrap();
        assert!(matches!(out.as_slice(), [(0, None)]));
        assert!(b.add(2, zeros(), &compute).unwrap().is_empty());
        let out = b.add(3, zeros(), &compute).unwrap();
        assert!(matches!(out.as_slice(), [(1, Some(_))]));
    }
}

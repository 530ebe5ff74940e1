//! Dense uint64 label volumes, fixtures, and the counts a label index must report.

use std::collections::BTreeMap;

use super::rle::VoxelSet;

/// A voxel or block coordinate `[x, y, z]`.
pub type Coord = [i32; 3];

/// A dense label volume anchored at voxel `origin`, stored in ZYX order (x fastest) — the
/// layout of every uncompressed label array in DVID.
#[derive(Clone, PartialEq, Eq)]
pub struct Volume {
    /// Voxel coordinate of element 0.
    pub origin: Coord,
    /// Voxels per axis `[x, y, z]`.
    pub size: [usize; 3],
    pub data: Vec<u64>,
}

impl std::fmt::Debug for Volume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Volume {{ origin: {:?}, size: {:?}, labels: {:?} }}",
            self.origin,
            self.size,
            self.label_counts()
        )
    }
}

impl Volume {
    /// All zeros, at the origin.
    pub fn zeros(size: [usize; 3]) -> Volume {
        Volume {
            origin: [0; 3],
            size,
            data: vec![0; size[0] * size[1] * size[2]],
        }
    }

    /// Every voxel `label`.
    pub fn filled(size: [usize; 3], label: u64) -> Volume {
        let mut v = Volume::zeros(size);
        v.data.fill(label);
        v
    }

    /// Voxel `(x, y, z)` (relative to the origin) = `f(x, y, z)` in absolute coordinates.
    pub fn from_fn(origin: Coord, size: [usize; 3], f: impl Fn(i32, i32, i32) -> u64) -> Volume {
        let mut data = Vec::with_capacity(size[0] * size[1] * size[2]);
        for z in 0..size[2] as i32 {
            for y in 0..size[1] as i32 {
                for x in 0..size[0] as i32 {
                    data.push(f(origin[0] + x, origin[1] + y, origin[2] + z));
                }
            }
        }
        Volume { origin, size, data }
    }

    /// Parses a uint64 LE ZYX array; panics when the length is not `prod(size) * 8`.
    #[track_caller]
    pub fn from_le_bytes(origin: Coord, size: [usize; 3], bytes: &[u8]) -> Volume {
        let n = size[0] * size[1] * size[2];
        assert_eq!(
            bytes.len(),
            n * 8,
            "label array for {size:?} voxels must be {} bytes, got {}",
            n * 8,
            bytes.len()
        );
        let data = bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        Volume { origin, size, data }
    }

    /// The uint64 LE ZYX encoding (the body of `POST raw`, `GET raw`).
    pub fn to_le_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data.len() * 8);
        for v in &self.data {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn index(&self, p: Coord) -> Option<usize> {
        let mut rel = [0usize; 3];
        for a in 0..3 {
            let r = i64::from(p[a]) - i64::from(self.origin[a]);
            if r < 0 || r >= self.size[a] as i64 {
                return None;
            }
            rel[a] = r as usize;
        }
        Some((rel[2] * self.size[1] + rel[1]) * self.size[0] + rel[0])
    }

    /// The label at absolute voxel `p`; 0 outside the volume.
    pub fn get(&self, p: Coord) -> u64 {
        self.index(p).map_or(0, |i| self.data[i])
    }

    /// Sets the label at absolute voxel `p`; panics outside the volume.
    #[track_caller]
    pub fn set(&mut self, p: Coord, label: u64) {
        let i = self
            .index(p)
            .unwrap_or_else(|| panic!("{p:?} outside volume at {:?}", self.origin));
        self.data[i] = label;
    }

    /// The box `[offset, offset + size)` in absolute coordinates (0 outside this volume).
    pub fn region(&self, offset: Coord, size: [usize; 3]) -> Volume {
        Volume::from_fn(offset, size, |x, y, z| self.get([x, y, z]))
    }

    /// Copies `src` into this volume at `src.origin` (parts outside this volume are dropped).
    pub fn paste(&mut self, src: &Volume) {
        for (i, &v) in src.data.iter().enumerate() {
            let x = (i % src.size[0]) as i32;
            let y = ((i / src.size[0]) % src.size[1]) as i32;
            let z = (i / (src.size[0] * src.size[1])) as i32;
            let p = [src.origin[0] + x, src.origin[1] + y, src.origin[2] + z];
            if let Some(j) = self.index(p) {
                self.data[j] = v;
            }
        }
    }

    /// Absolute coordinates of every voxel, in storage order, with its label.
    pub fn voxels(&self) -> impl Iterator<Item = (Coord, u64)> + '_ {
        let [sx, sy, _] = self.size;
        let o = self.origin;
        self.data.iter().enumerate().map(move |(i, &v)| {
            let x = (i % sx) as i32;
            let y = ((i / sx) % sy) as i32;
            let z = (i / (sx * sy)) as i32;
            ([o[0] + x, o[1] + y, o[2] + z], v)
        })
    }

    /// Voxel counts of every non-zero label.
    pub fn label_counts(&self) -> BTreeMap<u64, u64> {
        let mut m = BTreeMap::new();
        for &v in &self.data {
            if v != 0 {
                *m.entry(v).or_insert(0) += 1;
            }
        }
        m
    }

    /// The sorted non-zero labels present.
    pub fn labels(&self) -> Vec<u64> {
        self.label_counts().into_keys().collect()
    }

    /// The voxel set of `label` (absolute coordinates).
    pub fn voxel_set(&self, label: u64) -> VoxelSet {
        self.voxels()
            .filter(|&(_, v)| v == label)
            .map(|(p, _)| p)
            .collect()
    }

    /// For every non-zero label: block coordinate → voxel count, for blocks of size `bs`
    /// (what a label index with no merges must hold: one supervoxel per label).
    pub fn block_counts(&self, bs: [usize; 3]) -> BTreeMap<u64, BTreeMap<Coord, u64>> {
        let mut m: BTreeMap<u64, BTreeMap<Coord, u64>> = BTreeMap::new();
        for (p, v) in self.voxels() {
            if v == 0 {
                continue;
            }
            let b = block_of(p, bs);
            *m.entry(v).or_default().entry(b).or_insert(0) += 1;
        }
        m
    }

    /// The block at block coordinate `b` (size `bs`), absolute coordinates.
    pub fn block(&self, b: Coord, bs: [usize; 3]) -> Volume {
        let off = [
            b[0] * bs[0] as i32,
            b[1] * bs[1] as i32,
            b[2] * bs[2] as i32,
        ];
        self.region(off, bs)
    }

    /// Block coordinates (size `bs`) of every block overlapping this volume that holds a
    /// non-zero voxel.
    pub fn nonempty_blocks(&self, bs: [usize; 3]) -> Vec<Coord> {
        let mut set = std::collections::BTreeSet::new();
        for (p, v) in self.voxels() {
            if v != 0 {
                set.insert(block_of(p, bs));
            }
        }
        set.into_iter().collect()
    }
}

/// The block coordinate holding voxel `p` (floor division).
pub fn block_of(p: Coord, bs: [usize; 3]) -> Coord {
    [
        p[0].div_euclid(bs[0] as i32),
        p[1].div_euclid(bs[1] as i32),
        p[2].div_euclid(bs[2] as i32),
    ]
}

/// A deterministic 64-bit hash of a voxel coordinate and a seed (splitmix64 finaliser).
pub fn hash3(x: i32, y: i32, z: i32, seed: u64) -> u64 {
    let mut h = seed ^ 0x9E37_79B9_7F4A_7C15;
    for v in [x, y, z] {
        h = h.wrapping_add((v as u32 as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9));
        h ^= h >> 31;
        h = h.wrapping_mul(0x94D0_49BB_1331_11EB);
        h ^= h >> 29;
    }
    h
}

/// The example of spec §6.2: a 128³ volume with 40³ cubes of labels 1, 2, 13, 209, 311 at
/// offsets (40,40,40), (40,40,80), (80,40,40), (40,80,40), (80,80,40).
pub fn spec_cubes_fixture() -> Volume {
    let cubes: [(u64, Coord); 5] = [
        (1, [40, 40, 40]),
        (2, [40, 40, 80]),
        (13, [80, 40, 40]),
        (209, [40, 80, 40]),
        (311, [80, 80, 40]),
    ];
    Volume::from_fn([0; 3], [128; 3], |x, y, z| {
        for (label, o) in cubes {
            if (o[0]..o[0] + 40).contains(&x)
                && (o[1]..o[1] + 40).contains(&y)
                && (o[2]..o[2] + 40).contains(&z)
            {
                return label;
            }
        }
        0
    })
}

/// Per-voxel random labels drawn from `alphabet` (zeros allowed, repeats weight a label).
pub fn noise_fixture(size: [usize; 3], seed: u64, alphabet: &[u64]) -> Volume {
    Volume::from_fn([0; 3], size, |x, y, z| {
        alphabet[(hash3(x, y, z, seed) % alphabet.len() as u64) as usize]
    })
}

/// A 128³ volume (eight 64³ blocks, all holding non-zero voxels) mixing shapes that cross
/// block faces with a noisy block:
/// * block (1,1,1) (voxels 64..128 on every axis): ~25 % zeros, the rest uniform over the 1000
///   labels 5000..6000 (so an 8³ sub-block holds > 256 labels: 9 bits per voxel);
/// * label 7: the ball of radius 25 around (40,40,40) (crosses into 7 other blocks);
/// * label 4294967301 (> 2^32): the slab 150 ≤ x+y+z < 170;
/// * label 3: the slab z < 10, y > 100;
/// * label 9: one voxel at (127,0,0); label 11: the line y=z=120, x<64;
/// * everything else 0.
pub fn mixed_fixture() -> Volume {
    Volume::from_fn([0; 3], [128; 3], |x, y, z| {
        if x >= 64 && y >= 64 && z >= 64 {
            let h = hash3(x, y, z, 77);
            return if h.is_multiple_of(4) {
                0
            } else {
                5000 + (h >> 8) % 1000
            };
        }
        let (dx, dy, dz) = (x - 40, y - 40, z - 40);
        if dx * dx + dy * dy + dz * dz < 25 * 25 {
            7
        } else if (150..170).contains(&(x + y + z)) {
            4_294_967_301
        } else if z < 10 && y > 100 {
            3
        } else if (x, y, z) == (127, 0, 0) {
            9
        } else if y == 120 && z == 120 && x < 64 {
            11
        } else {
            0
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_zyx_x_fastest() {
        let v = Volume::from_fn([10, 20, 30], [3, 4, 5], |x, y, z| {
            (x * 10000 + y * 100 + z) as u64
        });
        assert_eq!(v.data[0], 102030);
        assert_eq!(v.data[1], 112030);
        assert_eq!(v.data[3], 102130);
        assert_eq!(v.data[12], 102031);
        assert_eq!(v.get([12, 23, 34]), 122334);
        assert_eq!(v.get([13, 23, 34]), 0, "outside reads 0");
        let bytes = v.to_le_bytes();
        assert_eq!(&bytes[8..16], &112030u64.to_le_bytes());
        assert_eq!(Volume::from_le_bytes(v.origin, v.size, &bytes), v);
    }

    #[test]
    fn region_and_paste() {
        let v = Volume::from_fn([0; 3], [4, 4, 4], |x, y, z| (1 + x + 4 * y + 16 * z) as u64);
        let r = v.region([-1, 2, 3], [3, 3, 3]);
        assert_eq!(r.get([-1, 2, 3]), 0);
        assert_eq!(r.get([0, 2, 3]), v.get([0, 2, 3]));
        assert_eq!(r.get([1, 3, 3]), v.get([1, 3, 3]));
        assert_eq!(r.get([1, 3, 4]), 0);
        let mut w = Volume::zeros([4, 4, 4]);
        w.paste(&r);
        assert_eq!(w.get([1, 3, 3]), v.get([1, 3, 3]));
        assert_eq!(w.get([0, 0, 0]), 0);
    }

    #[test]
    fn counts_and_blocks() {
        let v = Volume::from_fn([0; 3], [4, 2, 2], |x, _, _| if x < 3 { 5 } else { 0 });
        assert_eq!(v.label_counts(), BTreeMap::from([(5, 12)]));
        let bc = v.block_counts([2, 2, 2]);
        assert_eq!(bc[&5], BTreeMap::from([([0, 0, 0], 8), ([1, 0, 0], 4)]));
        assert_eq!(v.nonempty_blocks([2, 2, 2]), vec![[0, 0, 0], [1, 0, 0]]);
        assert_eq!(block_of([-1, 64, 63], [64; 3]), [-1, 1, 0]);
        assert_eq!(v.voxel_set(5).len(), 12);
    }

    #[test]
    fn fixtures_are_as_documented() {
        let c = spec_cubes_fixture();
        assert_eq!(c.labels(), vec![1, 2, 13, 209, 311]);
        assert!(c.label_counts().values().all(|&n| n == 64_000));
        let m = mixed_fixture();
        assert_eq!(m.nonempty_blocks([64; 3]).len(), 8, "every block non-empty");
        let counts = m.label_counts();
        assert_eq!(counts[&9], 1);
        assert_eq!(counts[&11], 64);
        assert!(counts.contains_key(&4_294_967_301));
        assert_eq!(
            counts
                .keys()
                .filter(|&&l| (5000..6000).contains(&l))
                .count(),
            1000
        );
        // the noisy block needs more than 256 labels (9 bits) in its sub-blocks
        let sub = m.region([64, 64, 64], [8, 8, 8]);
        assert!(
            sub.label_counts().len() > 256,
            "{}",
            sub.label_counts().len()
        );
    }
}

//! Values the kernels share: shapes, runs, relabel tables, counts and errors.

use std::fmt;

/// Size of a (z, y, x) C-order volume in voxels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shape {
    pub x: usize,
    pub y: usize,
    pub z: usize,
}

impl Shape {
    pub const fn new(x: usize, y: usize, z: usize) -> Shape {
        Shape { x, y, z }
    }

    pub const fn cube(n: usize) -> Shape {
        Shape { x: n, y: n, z: n }
    }

    pub const fn voxels(self) -> usize {
        self.x * self.y * self.z
    }

    /// The shape one 2×2×2 level down: odd sizes round up (the missing half is padding).
    pub const fn half(self) -> Shape {
        Shape {
            x: self.x.div_ceil(2),
            y: self.y.div_ceil(2),
            z: self.z.div_ceil(2),
        }
    }

    /// Checks that `len` elements fill this shape exactly.
    pub fn check_len(self, len: usize, what: &str) -> Result<(), ComputeError> {
        if self.x == 0 || self.y == 0 || self.z == 0 {
            return Err(ComputeError::BadInput(format!(
                "{what}: empty shape {self}"
            )));
        }
        if len != self.voxels() {
            return Err(ComputeError::BadInput(format!(
                "{what}: {len} values do not fill a {self} volume ({} voxels)",
                self.voxels()
            )));
        }
        Ok(())
    }

    /// Checks that `len` values are a batch of whole blocks of this shape, at least one.
    pub fn check_batch(self, len: usize, what: &str) -> Result<(), ComputeError> {
        self.check_len(self.voxels(), what)?;
        if len == 0 || !len.is_multiple_of(self.voxels()) {
            return Err(ComputeError::BadInput(format!(
                "{what}: {len} values are not a whole number of {self} blocks"
            )));
        }
        Ok(())
    }
}

/// A pyramid has at least one level.
pub(crate) fn check_levels(levels: u32) -> Result<(), ComputeError> {
    if levels == 0 {
        return Err(ComputeError::BadInput(
            "a pyramid needs at least one level".into(),
        ));
    }
    Ok(())
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}×{}×{} (x×y×z)", self.x, self.y, self.z)
    }
}

/// A run of voxels along +x starting at (x, y, z), as in DVID's sparse-volume RLE (spec §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Run {
    pub z: i32,
    pub y: i32,
    pub x: i32,
    pub len: i32,
}

impl Run {
    pub const fn new(x: i32, y: i32, z: i32, len: i32) -> Run {
        Run { z, y, x, len }
    }
}

/// Clips runs to `shape` (coordinates relative to the volume's origin), drops empty ones, and
/// merges overlapping or touching runs, so that every voxel appears at most once and the
/// result is sorted by (z, y, x). Both backends take runs in this form, which makes the
/// result independent of the order in which a client listed them.
pub fn normalize_runs(runs: &[Run], shape: Shape) -> Vec<Run> {
    let (sx, sy, sz) = (shape.x as i64, shape.y as i64, shape.z as i64);
    let clipped: Vec<Run> = runs
        .iter()
        .filter_map(|r| {
            let (y, z) = (r.y as i64, r.z as i64);
            if r.len <= 0 || y < 0 || y >= sy || z < 0 || z >= sz {
                return None;
            }
            let x0 = (r.x as i64).max(0);
            let x1 = (r.x as i64 + r.len as i64).min(sx);
            (x0 < x1).then(|| Run::new(x0 as i32, y as i32, z as i32, (x1 - x0) as i32))
        })
        .collect();
    merge_runs(clipped)
}

/// Sorts runs by (z, y, x) and merges overlapping or touching ones, so every voxel appears
/// once. Runs must have positive lengths.
pub fn merge_runs(mut runs: Vec<Run>) -> Vec<Run> {
    runs.sort_unstable();
    let mut out: Vec<Run> = Vec::with_capacity(runs.len());
    for r in runs {
        if let Some(last) = out.last_mut()
            && last.z == r.z
            && last.y == r.y
            && r.x <= last.x + last.len
        {
            last.len = last.len.max(r.x + r.len - last.x);
            continue;
        }
        out.push(r);
    }
    out
}

/// A label → label mapping, held as sorted pairs (binary search on the device, a hash and a
/// last-hit cache on the CPU).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelTable {
    from: Vec<u64>,
    to: Vec<u64>,
}

impl LabelTable {
    /// Builds a table; a label mapped twice to different targets is an error.
    pub fn new(pairs: impl IntoIterator<Item = (u64, u64)>) -> Result<LabelTable, ComputeError> {
        let mut pairs: Vec<(u64, u64)> = pairs.into_iter().collect();
        pairs.sort_unstable();
        pairs.dedup();
        for w in pairs.windows(2) {
            if w[0].0 == w[1].0 {
                return Err(ComputeError::BadInput(format!(
                    "label {} is mapped to both {} and {}",
                    w[0].0, w[0].1, w[1].1
                )));
            }
        }
        Ok(LabelTable {
            from: pairs.iter().map(|p| p.0).collect(),
            to: pairs.iter().map(|p| p.1).collect(),
        })
    }

    /// Sorted source labels.
    pub fn from(&self) -> &[u64] {
        &self.from
    }

    /// Targets, parallel to `from()`.
    pub fn to(&self) -> &[u64] {
        &self.to
    }

    pub fn len(&self) -> usize {
        self.from.len()
    }

    pub fn is_empty(&self) -> bool {
        self.from.is_empty()
    }

    pub fn get(&self, label: u64) -> Option<u64> {
        self.from.binary_search(&label).ok().map(|i| self.to[i])
    }
}

/// Voxel counts of one block, sorted by label.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockCounts {
    pub labels: Vec<u64>,
    pub counts: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComputeError {
    /// The caller's data or parameters are wrong (a 400 at the HTTP layer).
    BadInput(String),
    /// The device failed or is absent.
    Device(String),
}

impl fmt::Display for ComputeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ComputeError::BadInput(m) => write!(f, "{m}"),
            ComputeError::Device(m) => write!(f, "compute device: {m}"),
        }
    }
}

impl std::error::Error for ComputeError {}

//! Voxel and block geometry: request coordinates, boxes, and the packed block coordinates of
//! the label index.

use crate::{Error, Result};

/// A block coordinate (x, y, z) at some scale.
pub type BlockCoord = [i32; 3];

/// Block coordinates are kept to 20-bit magnitudes, the range the label index can pack
/// (spec §5.5); with 64³ blocks that is ±67 million voxels per axis.
pub const MAX_BLOCK_COORD: i64 = (1 << 20) - 1;

/// Largest voxel box one request may name: 2^40 voxels (8 TiB of labels) keeps every size
/// product in range while being far beyond any sensible single request.
const MAX_BOX_VOXELS: u128 = 1 << 40;

/// "x_y_z" → three integers in i32 range.
pub fn parse_point(s: &str, what: &str) -> Result<[i64; 3]> {
    let v = parse_ints(s, what)?;
    v.try_into()
        .map_err(|_| Error::bad(format!("{what} {s:?} must be three integers x_y_z")))
}

fn parse_ints(s: &str, what: &str) -> Result<Vec<i64>> {
    s.split('_')
        .map(|p| {
            p.parse::<i32>()
                .map(i64::from)
                .map_err(|_| Error::bad(format!("{what} {s:?}: {p:?} is not a 32-bit integer")))
        })
        .collect()
}

/// A size "a_b[_c]" of `n` positive integers.
pub fn parse_size(s: &str, n: usize, what: &str) -> Result<Vec<usize>> {
    let v = parse_ints(s, what)?;
    if v.len() != n || v.iter().any(|&d| d <= 0) {
        return Err(Error::bad(format!(
            "{what} {s:?} must be {n} positive integers joined by '_'"
        )));
    }
    Ok(v.into_iter().map(|d| d as usize).collect())
}

/// An axis-aligned box of voxels: `min` inclusive, `size` voxels along (x, y, z).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VoxelBox {
    pub min: [i64; 3],
    pub size: [usize; 3],
}

impl VoxelBox {
    pub fn new(min: [i64; 3], size: [usize; 3]) -> Result<VoxelBox> {
        let voxels = size.iter().map(|&s| s as u128).product::<u128>();
        if voxels > MAX_BOX_VOXELS {
            return Err(Error::bad(format!(
                "a {}×{}×{} box is larger than the {MAX_BOX_VOXELS} voxels one request may name",
                size[0], size[1], size[2]
            )));
        }
        for a in 0..3 {
            if min[a] + size[a] as i64 - 1 > i32::MAX as i64 {
                return Err(Error::bad(
                    "the box reaches past the largest 32-bit voxel coordinate",
                ));
            }
        }
        Ok(VoxelBox { min, size })
    }

    pub fn voxels(&self) -> usize {
        self.size.iter().product()
    }

    /// One past the last voxel along each axis.
    pub fn end(&self) -> [i64; 3] {
        std::array::from_fn(|a| self.min[a] + self.size[a] as i64)
    }

    /// Inclusive range of block coordinates the box touches.
    pub fn block_range(&self, block: [usize; 3]) -> (BlockCoord, BlockCoord) {
        let end = self.end();
        let lo = std::array::from_fn(|a| self.min[a].div_euclid(block[a] as i64) as i32);
        let hi = std::array::from_fn(|a| (end[a] - 1).div_euclid(block[a] as i64) as i32);
        (lo, hi)
    }

    /// Whether the box is made of whole blocks.
    pub fn is_block_aligned(&self, block: [usize; 3]) -> bool {
        (0..3).all(|a| {
            self.min[a].rem_euclid(block[a] as i64) == 0 && self.size[a].is_multiple_of(block[a])
        })
    }

    /// Checks that every block the box touches can be stored (see `MAX_BLOCK_COORD`).
    pub fn check_storable(&self, block: [usize; 3]) -> Result<()> {
        let (lo, hi) = self.block_range(block);
        check_block_coord(lo)?;
        check_block_coord(hi)
    }
}

pub fn check_block_coord(c: BlockCoord) -> Result<()> {
    if c.iter().any(|&v| (v as i64).abs() > MAX_BLOCK_COORD) {
        return Err(Error::bad(format!(
            "block coordinate {c:?} is outside ±{MAX_BLOCK_COORD}, the range blocks are stored in"
        )));
    }
    Ok(())
}

/// The label index's packed block coordinate (spec §5.5): per axis a 20-bit magnitude and a
/// sign bit, x in bits 0–20, y in 21–41, z in 42–62.
pub fn pack_block(c: BlockCoord) -> u64 {
    let mut out = 0u64;
    for (a, &v) in c.iter().enumerate() {
        let mag = (v.unsigned_abs() as u64) & 0xF_FFFF;
        let sign = u64::from(v < 0);
        out |= (mag | sign << 20) << (21 * a);
    }
    out
}

pub fn unpack_block(p: u64) -> BlockCoord {
    std::array::from_fn(|a| {
        let field = (p >> (21 * a)) & 0x1F_FFFF;
        let mag = (field & 0xF_FFFF) as i32;
        if field >> 20 == 1 { -mag } else { mag }
    })
}

/// Sort key putting block coordinates in (z, y, x) order.
pub fn zyx(c: &BlockCoord) -> (i32, i32, i32) {
    (c[2], c[1], c[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_round_trips_and_matches_the_spec_layout() {
        assert_eq!(pack_block([1, 0, 0]), 1);
        assert_eq!(pack_block([-1, 0, 0]), 1 | 1 << 20);
        assert_eq!(pack_block([0, 2, 0]), 2 << 21);
        assert_eq!(pack_block([0, 0, -3]), (3 | 1 << 20) << 42);
        for c in [
            [0, 0, 0],
            [5, -7, 9],
            [-1048575, 1048575, -2],
            [123, 0, -99999],
        ] {
            assert_eq!(unpack_block(pack_block(c)), c);
        }
    }

    #[test]
    fn boxes_find_their_blocks() {
        let b = VoxelBox::new([-1, 0, 63], [2, 64, 2]).unwrap();
        assert_eq!(b.block_range([64; 3]), ([-1, 0, 0], [0, 0, 1]));
        assert!(!b.is_block_aligned([64; 3]));
        assert!(
            VoxelBox::new([64, -128, 0], [128, 64, 64])
                .unwrap()
                .is_block_aligned([64; 3])
        );
        assert!(VoxelBox::new([0; 3], [1 << 14, 1 << 14, 1 << 14]).is_err());
        assert!(parse_size("4_0_1", 3, "size").is_err());
        assert!(parse_point("1_2", "offset").is_err());
        assert!(parse_point("1_2_99999999999", "offset").is_err());
    }
}

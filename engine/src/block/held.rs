//! What a partial replica holds of a block instance (`tessera pull` with `roi=`, `box=` or
//! `scales=`): reads of blocks outside it answer 404 naming the missing part, instead of the
//! zeros a missing block otherwise reads as, which would be indistinguishable from real
//! background.

use serde::{Deserialize, Serialize};

use super::geom::BlockCoord;
use crate::{Error, Result};

/// The part of an instance's blocks a replica holds. Every bound is optional; an instance
/// without `Held` holds everything.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Held {
    /// Voxels at scale 0, `[x0, y0, z0, x1, y1, z1]`, end exclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bbox: Option<[i64; 6]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roi: Option<HeldRoi>,
    /// The highest scale held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_scale: Option<u8>,
}

/// An ROI as a partial replica keeps it: its spans `[z, y, x0, x1]` (inclusive, in ROI
/// blocks), sorted by (z, y, x0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeldRoi {
    pub name: String,
    pub block_size: [i32; 3],
    pub spans: Vec<[i32; 4]>,
}

impl HeldRoi {
    /// Whether some ROI block meets the scale-0 voxels `[lo, hi)`.
    fn meets(&self, lo: [i64; 3], hi: [i64; 3]) -> bool {
        let b = |a: usize, v: i64| v.div_euclid(i64::from(self.block_size[a])) as i32;
        let (x0, x1) = (b(0, lo[0]), b(0, hi[0] - 1));
        for z in b(2, lo[2])..=b(2, hi[2] - 1) {
            for y in b(1, lo[1])..=b(1, hi[1] - 1) {
                let start = self.spans.partition_point(|s| (s[0], s[1]) < (z, y));
                let row = self.spans[start..]
                    .iter()
                    .take_while(|s| (s[0], s[1]) == (z, y));
                if row.into_iter().any(|s| s[2] <= x1 && s[3] >= x0) {
                    return true;
                }
            }
        }
        false
    }
}

impl Held {
    /// Whether the block at `c` of `scale`, `block` voxels wide, is held.
    pub fn holds(&self, scale: u8, c: BlockCoord, block: [usize; 3]) -> bool {
        if self.max_scale.is_some_and(|m| scale > m) {
            return false;
        }
        let lo: [i64; 3] = std::array::from_fn(|a| (c[a] as i64 * block[a] as i64) << scale);
        let hi: [i64; 3] = std::array::from_fn(|a| ((c[a] as i64 + 1) * block[a] as i64) << scale);
        if let Some(b) = self.bbox
            && (0..3).any(|a| hi[a] <= b[a] || lo[a] >= b[a + 3])
        {
            return false;
        }
        self.roi.as_ref().is_none_or(|r| r.meets(lo, hi))
    }

    /// A 404 naming the block and what this replica holds, unless the block is held.
    pub fn check(&self, instance: &str, scale: u8, c: BlockCoord, block: [usize; 3]) -> Result<()> {
        if self.holds(scale, c, block) {
            return Ok(());
        }
        Err(Error::not_found(format!(
            "this server holds only part of instance {instance:?} ({}); block {c:?} at scale \
             {scale} is not here: read it from the server it was pulled from",
            self.describe()
        )))
    }

    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(b) = self.bbox {
            parts.push(format!(
                "voxels {},{},{} to {},{},{}",
                b[0], b[1], b[2], b[3], b[4], b[5]
            ));
        }
        if let Some(r) = &self.roi {
            parts.push(format!("roi {:?}", r.name));
        }
        if let Some(m) = self.max_scale {
            parts.push(format!("scales 0 to {m}"));
        }
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_blocks_meeting_the_box_roi_and_scales() {
        let held = Held {
            bbox: Some([0, 0, 0, 128, 64, 64]),
            roi: None,
            max_scale: Some(1),
        };
        let bs = [64, 64, 64];
        assert!(held.holds(0, [0, 0, 0], bs));
        assert!(held.holds(0, [1, 0, 0], bs));
        assert!(!held.holds(0, [2, 0, 0], bs));
        assert!(!held.holds(0, [0, 1, 0], bs));
        assert!(!held.holds(0, [-1, 0, 0], bs));
        assert!(held.holds(1, [0, 0, 0], bs));
        assert!(!held.holds(2, [0, 0, 0], bs));
        let roi = Held {
            roi: Some(HeldRoi {
                name: "r".into(),
                block_size: [32, 32, 32],
                spans: vec![[0, 0, 4, 5], [3, 2, 0, 0]],
            }),
            ..Held::default()
        };
        // ROI blocks x 4..=5 of row (0, 0) are voxels 128..192: block 2 at scale 0.
        assert!(roi.holds(0, [2, 0, 0], bs));
        assert!(!roi.holds(0, [1, 0, 0], bs));
        assert!(!roi.holds(0, [3, 0, 0], bs));
        // ROI block (0, 2, 3) is voxels (0, 64, 96): block (0, 1, 1).
        assert!(roi.holds(0, [0, 1, 1], bs));
        assert!(!roi.holds(0, [0, 1, 0], bs));
        // At scale 2 one block covers 256³ voxels: both spans.
        assert!(roi.holds(2, [0, 0, 0], bs));
        assert!(roi.check("x", 0, [3, 0, 0], bs).is_err());
    }
}

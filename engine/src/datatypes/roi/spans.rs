//! ROI spans `[z, y, x0, x1]` (block coordinates, x1 inclusive): parsing, normalizing, the
//! stored encoding, membership and voxel masks.

use serde_json::Value;

use crate::block::geom::{MAX_BLOCK_COORD, VoxelBox};
use crate::{Error, Result};

/// One run of blocks: `[z, y, x0, x1]`.
pub type Span = [i32; 4];

/// Parses a JSON array of spans; every element must be four integers within the block
/// coordinate range, with x0 <= x1.
pub fn parse(body: &[u8]) -> Result<Vec<Span>> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        Error::bad(format!(
            "ROI spans must be a JSON array of [z,y,x0,x1]: {e}"
        ))
    })?;
    let Value::Array(items) = v else {
        return Err(Error::bad("ROI spans must be a JSON array of [z,y,x0,x1]"));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let bad = |why: &str| Error::bad(format!("span {i} {item}: {why}"));
            let Some(a) = item.as_array().filter(|a| a.len() == 4) else {
                return Err(bad("must be an array of four integers [z,y,x0,x1]"));
            };
            let mut s = [0i32; 4];
            for (k, n) in a.iter().enumerate() {
                let n = n
                    .as_i64()
                    .ok_or_else(|| bad("coordinates must be integers"))?;
                if n.abs() > MAX_BLOCK_COORD {
                    return Err(bad(&format!(
                        "block coordinates are limited to ±{MAX_BLOCK_COORD}"
                    )));
                }
                s[k] = n as i32;
            }
            if s[2] > s[3] {
                return Err(bad("x0 must not be greater than x1"));
            }
            Ok(s)
        })
        .collect()
}

/// Sorted by (z, y, x0), overlapping and touching runs of a row merged.
pub fn normalize(mut spans: Vec<Span>) -> Vec<Span> {
    spans.sort_unstable();
    let mut out: Vec<Span> = Vec::with_capacity(spans.len());
    for s in spans {
        if let Some(last) = out.last_mut()
            && last[0] == s[0]
            && last[1] == s[1]
            && i64::from(s[2]) <= i64::from(last[3]) + 1
        {
            last[3] = last[3].max(s[3]);
            continue;
        }
        out.push(s);
    }
    out
}

pub fn encode(spans: &[Span]) -> Vec<u8> {
    spans
        .iter()
        .flat_map(|s| s.iter().flat_map(|n| n.to_le_bytes()))
        .collect()
}

pub fn decode(bytes: &[u8]) -> Result<Vec<Span>> {
    if !bytes.len().is_multiple_of(16) {
        return Err(Error::Internal(format!(
            "a stored ROI of {} bytes is not whole spans",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(16)
        .map(|c| {
            std::array::from_fn(|k| i32::from_le_bytes(c[k * 4..k * 4 + 4].try_into().unwrap()))
        })
        .collect())
}

/// The spans of block row (z, y) in normalized `spans`.
pub fn row(spans: &[Span], z: i32, y: i32) -> &[Span] {
    let lo = spans.partition_point(|s| (s[0], s[1]) < (z, y));
    let hi = spans.partition_point(|s| (s[0], s[1]) <= (z, y));
    &spans[lo..hi]
}

/// Whether block (x, y, z) is in normalized `spans`.
pub fn contains(spans: &[Span], [x, y, z]: [i32; 3]) -> bool {
    let r = row(spans, z, y);
    let i = r.partition_point(|s| s[2] <= x);
    i > 0 && r[i - 1][3] >= x
}

/// Calls `outside(start, len)` for every run of voxels of `bx` (x fastest, then y, then z)
/// outside the ROI of normalized `spans` with blocks of `bs`; runs are in index order.
pub fn outside_runs(
    spans: &[Span],
    bs: [i32; 3],
    bx: &VoxelBox,
    mut outside: impl FnMut(usize, usize),
) {
    let [nx, ny, nz] = bx.size;
    let x_lo = bx.min[0];
    let x_hi = x_lo + nx as i64; // exclusive
    let mut index = 0usize;
    for dz in 0..nz {
        let bz = (bx.min[2] + dz as i64).div_euclid(i64::from(bs[2])) as i32;
        for dy in 0..ny {
            let by = (bx.min[1] + dy as i64).div_euclid(i64::from(bs[1])) as i32;
            let mut at = x_lo;
            for s in row(spans, bz, by) {
                let a = (i64::from(s[2]) * i64::from(bs[0])).max(x_lo);
                let b = ((i64::from(s[3]) + 1) * i64::from(bs[0])).min(x_hi);
                if a >= b {
                    continue;
                }
                if a > at {
                    outside(index + (at - x_lo) as usize, (a - at) as usize);
                }
                at = b;
            }
            if at < x_hi {
                outside(index + (at - x_lo) as usize, (x_hi - at) as usize);
            }
            index += nx;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_and_queries() {
        let s = normalize(vec![
            [1, 0, 5, 6],
            [0, 2, 3, 4],
            [0, 2, 5, 7],
            [0, 2, 1, 3],
            [0, 1, 9, 9],
        ]);
        assert_eq!(s, vec![[0, 1, 9, 9], [0, 2, 1, 7], [1, 0, 5, 6]]);
        assert!(contains(&s, [1, 2, 0]));
        assert!(contains(&s, [7, 2, 0]));
        assert!(!contains(&s, [8, 2, 0]));
        assert!(!contains(&s, [0, 2, 0]));
        assert!(contains(&s, [6, 0, 1]));
        assert_eq!(decode(&encode(&s)).unwrap(), s);
    }

    #[test]
    fn masks_match_membership() {
        let s = normalize(vec![[0, 0, 0, 0], [0, 0, 2, 3], [1, -1, -1, 0]]);
        let bs = [4, 4, 4];
        let bx = VoxelBox::new([-5, -6, -3], [23, 11, 10]).unwrap();
        let mut mask = vec![1u8; bx.voxels()];
        outside_runs(&s, bs, &bx, |a, n| mask[a..a + n].fill(0));
        let mut i = 0;
        for z in 0..10i64 {
            for y in 0..11i64 {
                for x in 0..23i64 {
                    let p = [x - 5, y - 6, z - 3];
                    let b = std::array::from_fn(|k| p[k].div_euclid(4) as i32);
                    assert_eq!(mask[i] == 1, contains(&s, b), "{p:?}");
                    i += 1;
                }
            }
        }
    }

    #[test]
    fn rejects_bad_spans() {
        assert!(parse(b"[[0,0,2,1]]").is_err());
        assert!(parse(b"[[0,0,1.5,2]]").is_err());
        assert!(parse(b"[[0,0,1]]").is_err());
        assert!(parse(b"[[0,0,0,99999999]]").is_err());
        assert!(parse(b"{}").is_err());
        assert_eq!(parse(b"[[1,2,3,4]]").unwrap(), vec![[1, 2, 3, 4]]);
    }
}

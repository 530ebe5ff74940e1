//! `GET partition?batchsize=N`: DVID's simple partition (`SimplePartition` in DVID's
//! datatype/roi/roi.go) of an ROI into batchsize³-block subvolumes, reproduced with its
//! quirks: layers of `batchsize` block planes in z centred on the ROI's z range (a gap in z
//! advances one layer only), rows in y and subvolumes in x centred on what is active, the
//! ROI's x and y extents grown from 0, and NumTotalBlocks counting empty subvolumes too.

use serde::Serialize;

use super::spans::Span;

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Partition {
    pub num_total_blocks: u64,
    pub num_active_blocks: u64,
    pub num_subvolumes: i32,
    #[serde(rename = "ROI")]
    pub roi: ChunkExtents,
    pub subvolumes: Vec<Subvolume>,
}

#[derive(Serialize, Clone, Copy)]
#[serde(rename_all = "PascalCase")]
pub struct ChunkExtents {
    pub min_chunk: [i32; 3],
    pub max_chunk: [i32; 3],
}

impl ChunkExtents {
    fn extend(&mut self, dim: usize, v: i32) {
        self.min_chunk[dim] = self.min_chunk[dim].min(v);
        self.max_chunk[dim] = self.max_chunk[dim].max(v);
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Subvolume {
    pub min_point: [i64; 3],
    pub max_point: [i64; 3],
    pub min_chunk: [i64; 3],
    pub max_chunk: [i64; 3],
    pub total_blocks: u64,
    pub active_blocks: u64,
}

struct Layer<'a> {
    spans: Vec<&'a Span>,
    min_z: i64,
    max_z: i64,
}

/// Partitions normalized `spans` (sorted by z, y, x0) with blocks of `bs`.
pub fn simple(spans: &[Span], bs: [i32; 3], batch: i64) -> Partition {
    let min_z = spans.iter().map(|s| s[0]).min().unwrap_or(i32::MAX);
    let max_z = spans.iter().map(|s| s[0]).max().unwrap_or(i32::MIN);
    let mut p = Partition {
        num_total_blocks: 0,
        num_active_blocks: 0,
        num_subvolumes: 0,
        roi: ChunkExtents {
            min_chunk: [0, 0, min_z],
            max_chunk: [0, 0, max_z],
        },
        subvolumes: Vec::new(),
    };
    if spans.is_empty() {
        return p;
    }
    let dz = i64::from(max_z) - i64::from(min_z) + 1;
    let zleft = dz % batch;
    let mut beg = i64::from(min_z) - zleft / 2;
    let mut end = beg + batch - 1;
    let mut layer = Layer {
        spans: Vec::new(),
        min_z: beg,
        max_z: end,
    };
    for s in spans {
        if i64::from(s[0]) > end {
            grid(&layer, &mut p, bs, batch);
            beg = end + 1;
            end += batch;
            layer = Layer {
                spans: Vec::new(),
                min_z: beg,
                max_z: end,
            };
        }
        layer.spans.push(s);
    }
    if !layer.spans.is_empty() {
        grid(&layer, &mut p, bs, batch);
    }
    p.num_subvolumes = p.subvolumes.len() as i32;
    p
}

fn grid(layer: &Layer, p: &mut Partition, bs: [i32; 3], batch: i64) {
    let Some(min_y) = layer.spans.iter().map(|s| s[1]).min() else {
        return;
    };
    let max_y = layer.spans.iter().map(|s| s[1]).max().unwrap();
    p.roi.extend(1, min_y);
    p.roi.extend(1, max_y);
    let (min_y, max_y) = (i64::from(min_y), i64::from(max_y));
    let yleft = (max_y - min_y + 1) % batch;
    let beg_y = min_y - yleft / 2;
    let end_y = max_y + (yleft - yleft / 2);
    let bs: [i64; 3] = bs.map(i64::from);
    let mut y0 = beg_y;
    while y0 <= end_y {
        let y1 = y0 + batch - 1;
        let actives: Vec<&Span> = layer
            .spans
            .iter()
            .copied()
            .filter(|s| (y0..=y1).contains(&i64::from(s[1])))
            .collect();
        if actives.is_empty() {
            y0 += batch;
            continue;
        }
        let min_x = actives.iter().map(|s| s[2]).min().unwrap();
        let max_x = actives.iter().map(|s| s[3]).max().unwrap();
        p.roi.extend(0, min_x);
        p.roi.extend(0, max_x);
        let (min_x, max_x) = (i64::from(min_x), i64::from(max_x));
        let xleft = (max_x - min_x + 1) % batch;
        let beg_x = min_x - xleft / 2;
        let end_x = max_x + (xleft - xleft / 2);
        let mut x0 = beg_x;
        while x0 <= end_x {
            let x1 = x0 + batch - 1;
            let lo = [x0, y0, layer.min_z];
            let hi = [x1, y1, layer.max_z];
            let total = (0..3).map(|a| (hi[a] - lo[a] + 1) as u64).product::<u64>();
            let active: u64 = actives
                .iter()
                .map(|s| {
                    let a = x0.max(i64::from(s[2]));
                    let b = x1.min(i64::from(s[3]));
                    if a <= b { (b - a + 1) as u64 } else { 0 }
                })
                .sum();
            if active > 0 {
                p.subvolumes.push(Subvolume {
                    min_point: std::array::from_fn(|a| lo[a] * bs[a]),
                    max_point: std::array::from_fn(|a| (hi[a] + 1) * bs[a] - 1),
                    min_chunk: lo,
                    max_chunk: hi,
                    total_blocks: total,
                    active_blocks: active,
                });
            }
            p.num_active_blocks += active;
            p.num_total_blocks += total;
            x0 += batch;
        }
        y0 += batch;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_layer() {
        // Blocks (x 1..=3, y 0, z 0) and (x 2, y 1, z 1) with batch 2.
        let p = simple(&[[0, 0, 1, 3], [1, 1, 2, 2]], [32, 32, 32], 2);
        assert_eq!(p.roi.min_chunk, [0, 0, 0]);
        assert_eq!(p.roi.max_chunk, [3, 1, 1]);
        // z 0..=1 one layer; y 0..=1 one row; x 1..=3 (dx 3, left 1): 1..=2, 3..=4.
        assert_eq!(p.subvolumes.len(), 2);
        assert_eq!(p.subvolumes[0].min_chunk, [1, 0, 0]);
        assert_eq!(p.subvolumes[0].max_chunk, [2, 1, 1]);
        assert_eq!(p.subvolumes[0].active_blocks, 3);
        assert_eq!(p.subvolumes[1].min_chunk, [3, 0, 0]);
        assert_eq!(p.subvolumes[1].active_blocks, 1);
        assert_eq!(p.subvolumes[0].max_point, [95, 63, 63]);
        assert_eq!(p.num_active_blocks, 4);
        assert_eq!(p.num_total_blocks, 16);
    }
}

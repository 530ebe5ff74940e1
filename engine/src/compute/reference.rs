//! Plain scalar versions of every kernel, written for obviousness rather than speed. The
//! differential tests hold both backends to these.

use std::collections::HashMap;

use super::surface::{self, Cells, LabelSurface};
use super::{BlockCounts, ComputeError, LabelTable, Result, Run, Shape};

pub fn relabel(labels: &mut [u64], table: &LabelTable) {
    for l in labels {
        if let Some(t) = table.get(*l) {
            *l = t;
        }
    }
}

pub fn split_apply(labels: &mut [u64], shape: Shape, runs: &[Run], table: &LabelTable) -> u64 {
    let mut inside = vec![false; shape.voxels()];
    for r in runs {
        for x in r.x..r.x.saturating_add(r.len) {
            let (x, y, z) = (x as i64, r.y as i64, r.z as i64);
            if (0..shape.x as i64).contains(&x)
                && (0..shape.y as i64).contains(&y)
                && (0..shape.z as i64).contains(&z)
            {
                inside[(z as usize * shape.y + y as usize) * shape.x + x as usize] = true;
            }
        }
    }
    let mut written = 0;
    for (l, inside) in labels.iter_mut().zip(inside) {
        if inside && let Some(t) = table.get(*l) {
            *l = t;
            written += 1;
        }
    }
    written
}

/// Most frequent non-zero label, ties to the smallest, none → 0.
pub fn mode(children: &[u64]) -> u64 {
    let mut best = (0usize, 0u64);
    for &c in children {
        if c == 0 {
            continue;
        }
        let n = children.iter().filter(|&&o| o == c).count();
        if n > best.0 || (n == best.0 && c < best.1) {
            best = (n, c);
        }
    }
    best.1
}

fn children<T: Copy>(src: &[T], shape: Shape, x: usize, y: usize, z: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(8);
    for zz in 2 * z..(2 * z + 2).min(shape.z) {
        for yy in 2 * y..(2 * y + 2).min(shape.y) {
            for xx in 2 * x..(2 * x + 2).min(shape.x) {
                out.push(src[(zz * shape.y + yy) * shape.x + xx]);
            }
        }
    }
    out
}

fn downsample<T: Copy>(src: &[T], shape: Shape, f: impl Fn(&[T]) -> T) -> Vec<T> {
    let h = shape.half();
    let mut out = Vec::with_capacity(h.voxels());
    for z in 0..h.z {
        for y in 0..h.y {
            for x in 0..h.x {
                out.push(f(&children(src, shape, x, y, z)));
            }
        }
    }
    out
}

pub fn downsample_mode(src: &[u64], shape: Shape) -> Vec<u64> {
    downsample(src, shape, mode)
}

pub fn downsample_mean(src: &[u8], shape: Shape) -> Vec<u8> {
    downsample(src, shape, |c| {
        let n = c.len() as u32;
        let sum: u32 = c.iter().map(|&v| v as u32).sum();
        ((sum + n / 2) / n) as u8
    })
}

pub fn pyramid<T: Copy>(
    src: &[T],
    shape: Shape,
    levels: u32,
    level: impl Fn(&[T], Shape) -> Vec<T>,
) -> Vec<Vec<T>> {
    let mut out: Vec<Vec<T>> = Vec::new();
    let mut shape = shape;
    for _ in 0..levels {
        let next = level(out.last().map_or(src, |v| v.as_slice()), shape);
        shape = shape.half();
        out.push(next);
    }
    out
}

pub fn label_counts(blocks: &[u64], block: Shape) -> Vec<BlockCounts> {
    blocks
        .chunks(block.voxels())
        .map(|b| {
            let mut m: HashMap<u64, u32> = HashMap::new();
            for &l in b {
                *m.entry(l).or_default() += 1;
            }
            let mut pairs: Vec<(u64, u32)> = m.into_iter().collect();
            pairs.sort_unstable();
            BlockCounts {
                labels: pairs.iter().map(|p| p.0).collect(),
                counts: pairs.iter().map(|p| p.1).collect(),
            }
        })
        .collect()
}

fn le_u32(b: &[u8], at: usize) -> Result<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_le_bytes(s.try_into().unwrap()))
        .ok_or_else(|| ComputeError::BadInput("label block is truncated".into()))
}

/// Decodes one block by the voxel-lookup rule of spec §5.2, one voxel at a time.
pub fn block_decode(b: &[u8]) -> Result<(Shape, Vec<u64>)> {
    let (gx, gy, gz, n) = (
        le_u32(b, 0)? as usize,
        le_u32(b, 4)? as usize,
        le_u32(b, 8)? as usize,
        le_u32(b, 12)? as usize,
    );
    let shape = Shape::new(gx * 8, gy * 8, gz * 8);
    let labels: Vec<u64> = (0..n)
        .map(|i| {
            b.get(16 + 8 * i..24 + 8 * i)
                .map(|s| u64::from_le_bytes(s.try_into().unwrap()))
                .ok_or_else(|| ComputeError::BadInput("label block is truncated".into()))
        })
        .collect::<Result<_>>()?;
    if n == 1 {
        return Ok((shape, vec![labels[0]; shape.voxels()]));
    }
    let nsb = gx * gy * gz;
    let mut at = 16 + 8 * n;
    let mut ns = Vec::with_capacity(nsb);
    for i in 0..nsb {
        let s = b
            .get(at + 2 * i..at + 2 * i + 2)
            .ok_or_else(|| ComputeError::BadInput("label block is truncated".into()))?;
        ns.push(u16::from_le_bytes([s[0], s[1]]) as usize);
    }
    at += 2 * nsb;
    let idx_start = at;
    let values_start = idx_start + 4 * ns.iter().sum::<usize>();
    let bits = |k: usize| {
        if k <= 1 {
            0
        } else {
            (k - 1).ilog2() as usize + 1
        }
    };
    let mut out = vec![0u64; shape.voxels()];
    for z in 0..shape.z {
        for y in 0..shape.y {
            for x in 0..shape.x {
                let sb = (z / 8) * gx * gy + (y / 8) * gx + x / 8;
                let base: usize = ns[..sb].iter().sum();
                let bitoff: usize = ns[..sb]
                    .iter()
                    .map(|&k| (512 * bits(k)).div_ceil(8) * 8)
                    .sum();
                let label = match ns[sb] {
                    0 => 0,
                    k => {
                        let w = bits(k);
                        let pos = bitoff + ((z % 8) * 64 + (y % 8) * 8 + x % 8) * w;
                        let mut v = 0usize;
                        for i in 0..w {
                            let bit = pos + i;
                            let byte = *b.get(values_start + bit / 8).ok_or_else(|| {
                                ComputeError::BadInput("label block is truncated".into())
                            })?;
                            v = (v << 1) | ((byte >> (7 - bit % 8)) & 1) as usize;
                        }
                        if v >= k {
                            return Err(ComputeError::BadInput(
                                "label block has an index past its sub-block's labels".into(),
                            ));
                        }
                        let t = le_u32(b, idx_start + 4 * (base + v))? as usize;
                        *labels.get(t).ok_or_else(|| {
                            ComputeError::BadInput("label block index past its label table".into())
                        })?
                    }
                };
                out[(z * shape.y + y) * shape.x + x] = label;
            }
        }
    }
    Ok((shape, out))
}

/// Encodes one block in the canonical form (see `codec`), the simplest way.
pub fn block_encode(labels: &[u64], shape: Shape) -> Vec<u8> {
    let (gx, gy, gz) = (shape.x / 8, shape.y / 8, shape.z / 8);
    let mut out = Vec::new();
    for g in [gx, gy, gz] {
        out.extend_from_slice(&(g as u32).to_le_bytes());
    }
    if labels.iter().all(|&l| l == labels[0]) {
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&labels[0].to_le_bytes());
        return out;
    }
    let mut table: Vec<u64> = Vec::new();
    let mut sub_labels: Vec<Vec<u64>> = Vec::new();
    let mut sub_values: Vec<Vec<usize>> = Vec::new();
    for sz in 0..gz {
        for sy in 0..gy {
            for sx in 0..gx {
                let mut local: Vec<u64> = Vec::new();
                let mut values = Vec::with_capacity(512);
                for z in 0..8 {
                    for y in 0..8 {
                        for x in 0..8 {
                            let l = labels
                                [((sz * 8 + z) * shape.y + sy * 8 + y) * shape.x + sx * 8 + x];
                            let k = local.iter().position(|&o| o == l).unwrap_or_else(|| {
                                local.push(l);
                                local.len() - 1
                            });
                            values.push(k);
                            if !table.contains(&l) {
                                table.push(l);
                            }
                        }
                    }
                }
                sub_labels.push(local);
                sub_values.push(values);
            }
        }
    }
    out.extend_from_slice(&(table.len() as u32).to_le_bytes());
    for l in &table {
        out.extend_from_slice(&l.to_le_bytes());
    }
    for local in &sub_labels {
        out.extend_from_slice(&(local.len() as u16).to_le_bytes());
    }
    for local in &sub_labels {
        for l in local {
            let t = table.iter().position(|o| o == l).unwrap() as u32;
            out.extend_from_slice(&t.to_le_bytes());
        }
    }
    for (local, values) in sub_labels.iter().zip(&sub_values) {
        if local.len() < 2 {
            continue;
        }
        let w = (local.len() - 1).ilog2() as usize + 1;
        let mut bits: Vec<bool> = Vec::new();
        for &v in values {
            for i in (0..w).rev() {
                bits.push((v >> i) & 1 == 1);
            }
        }
        for byte in bits.chunks(8) {
            let mut b = 0u8;
            for (i, &bit) in byte.iter().enumerate() {
                b |= (bit as u8) << (7 - i);
            }
            out.push(b);
        }
    }
    out
}

/// Each item's closed label surfaces over `cells` (see `surface`): every cell in canonical
/// order (strips of rows, each in (z, y, x) order), every label of the cell, its case's
/// triangles, indexed by `surface::Assembler`.
pub fn surface(labels: &[u64], item: Shape, items: usize, cells: Cells) -> Vec<Vec<LabelSurface>> {
    let dims = [item.x as i32, item.y as i32, item.z as i32];
    (0..items)
        .map(|i| {
            let vol = &labels[i * item.voxels()..(i + 1) * item.voxels()];
            let at = |p: [i32; 3]| {
                if (0..3).all(|a| p[a] >= 0 && p[a] < dims[a]) {
                    vol[((p[2] * dims[1] + p[1]) * dims[0] + p[0]) as usize]
                } else {
                    0
                }
            };
            let t = surface::table();
            let mut asm = surface::Assembler::default();
            for y0 in (cells.lo[1]..cells.hi[1]).step_by(surface::STRIP) {
                for z in cells.lo[2]..cells.hi[2] {
                    for y in y0..(y0 + surface::STRIP as i32).min(cells.hi[1]) {
                        for x in cells.lo[0]..cells.hi[0] {
                            let l: [u64; 8] = std::array::from_fn(|c| {
                                let o = surface::corner(c);
                                at([x + o[0] as i32, y + o[1] as i32, z + o[2] as i32])
                            });
                            let mut labels: Vec<u64> =
                                l.iter().copied().filter(|&v| v != 0).collect();
                            labels.sort_unstable();
                            labels.dedup();
                            for label in labels {
                                let mask =
                                    (0..8).fold(0u8, |m, c| m | u8::from(l[c] == label) << c);
                                let range = t.start[mask as usize] as usize
                                    ..t.start[mask as usize + 1] as usize;
                                for tri in &t.triangles[range] {
                                    let corners = tri.map(|e| {
                                        let h = surface::edge_offset(e as usize);
                                        let q = [x, y, z];
                                        std::array::from_fn(|a| (2 * q[a] + 1 + h[a] as i32) as u32)
                                    });
                                    asm.push(label, corners);
                                }
                            }
                        }
                    }
                }
            }
            asm.finish()
        })
        .collect()
}

/// splitmix64: the seeded generator the kernel tests and benches draw their inputs from, so
/// an input is the same on every run.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value below `n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

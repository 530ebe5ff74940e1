//! 2×2×2 downsampling, one level or a fused pyramid, for any per-window reduction (`Reduce`).
//!
//! The pyramid works on slabs of 32 planes: a slab's first `min(levels, 5)` levels depend on
//! nothing outside it (slabs start at multiples of 32, so every 2ᵏ window of a level k ≤ 5 lies
//! in one slab), and an edge slab clipped by the volume pads exactly as the whole volume does.
//! Slabs run in parallel, each owning contiguous planes of every level. Within a slab, level 1
//! goes a whole plane at a time, so its reads are two long sequential streams (which the
//! hardware prefetcher needs), and each plane of a higher level is computed as soon as the two
//! planes it reduces exist, while they are still in cache (tiles of 32 rows read the input in
//! short pieces and were 25 % slower on the real 512³ cutout).

use rayon::prelude::*;

use super::Shape;
use super::alloc;

/// How a 2×2×2 window is reduced to one value.
pub trait Reduce: Copy + Default + Send + Sync {
    /// Reduces one output row. `rows` are the input rows that exist for it (1, 2 or 4 of the
    /// rows (2z, 2y), (2z, 2y+1), (2z+1, 2y), (2z+1, 2y+1), all of the same length `w`);
    /// `out` holds `w.div_ceil(2)` values. Missing rows and a missing last column are padding.
    fn reduce_rows(rows: &[&[Self]], out: &mut [Self]);
}

/// Asks for columns `cols` of the input rows two output rows on (four input rows below each
/// of `rows`) to be brought into L2, where a row kernel reaches them about when it gets there.
///
/// Every view here keeps a plane's rows `w` apart, so those rows lie `4w` values on. A row
/// kernel reads four streams that leave for new rows (new 4 KiB pages at 512 u64 wide) every
/// few microseconds, and the hardware prefetcher did not keep up: without this hint the mode
/// kernel's time sat on its loads and the input came in at 17 GB/s, where one core streams 31
/// (one level of real 512³ labels, one thread: 73 → 59 ms; the uint8 mean 16.9 → 8.7 ms).
/// Two rows ahead stays in L2 (32 KiB of 1 MiB at the widest u64 rows); asking for L1 instead
/// evicted the rows being read and was slower than no hint. A hint never faults, so addresses
/// past the volume's end are only wasted requests.
#[inline(always)]
pub(super) fn prefetch_ahead<T>(rows: &[&[T]], cols: std::ops::Range<usize>) {
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (rows, cols);
    #[cfg(target_arch = "x86_64")]
    for r in rows {
        use std::arch::x86_64::{_MM_HINT_T1, _mm_prefetch};
        let ahead = r
            .as_ptr()
            .wrapping_add(cols.start + 4 * r.len())
            .cast::<i8>();
        for at in (0..cols.len() * size_of::<T>()).step_by(64) {
            // SAFETY: SSE, which the hint needs, is part of every x86_64 CPU, and a prefetch
            // reads nothing and faults on no address.
            unsafe { _mm_prefetch::<_MM_HINT_T1>(ahead.wrapping_add(at)) };
        }
    }
}

/// A (z, y, x) region of a larger array: `shape` voxels, rows `row` and planes `plane` apart.
#[derive(Clone, Copy)]
struct View<'a, T> {
    data: &'a [T],
    shape: Shape,
    row: usize,
    plane: usize,
}

impl<'a, T> View<'a, T> {
    fn dense(data: &'a [T], shape: Shape) -> View<'a, T> {
        View {
            data,
            shape,
            row: shape.x,
            plane: shape.x * shape.y,
        }
    }

    fn row(&self, y: usize, z: usize) -> &'a [T] {
        let at = z * self.plane + y * self.row;
        &self.data[at..at + self.shape.x]
    }
}

/// Reduces output plane `z` of `src` into `out`, whose rows are `out_row` apart.
fn reduce_plane<T: Reduce>(src: View<T>, z: usize, out: &mut [T], out_row: usize) {
    let half = src.shape.half();
    for y in 0..half.y {
        let mut rows: [&[T]; 4] = [&[]; 4];
        let mut n = 0;
        for zz in 2 * z..(2 * z + 2).min(src.shape.z) {
            for yy in 2 * y..(2 * y + 2).min(src.shape.y) {
                rows[n] = src.row(yy, zz);
                n += 1;
            }
        }
        T::reduce_rows(&rows[..n], &mut out[y * out_row..y * out_row + half.x]);
    }
}

/// One level over a dense volume, output planes in parallel.
pub fn downsample<T: Reduce>(src: &[T], shape: Shape) -> Vec<T> {
    let mut out = alloc::zeroed(shape.half().voxels());
    downsample_into(src, shape, &mut out);
    out
}

/// `downsample` into `out`, which holds exactly `shape.half()` values.
pub fn downsample_into<T: Reduce>(src: &[T], shape: Shape, out: &mut [T]) {
    let half = shape.half();
    let view = View::dense(src, shape);
    out.par_chunks_mut(half.x * half.y)
        .enumerate()
        .for_each(|(z, plane)| reduce_plane(view, z, plane, half.x));
}

/// Planes of a slab of the fused pyramid, and the levels a slab computes by itself.
const SLAB: usize = 32;
const SLAB_LEVELS: u32 = 5;

/// `levels` successive levels; equal to calling `downsample` `levels` times.
pub fn pyramid<T: Reduce>(src: &[T], shape: Shape, levels: u32) -> Vec<Vec<T>> {
    let fused = levels.min(SLAB_LEVELS) as usize;
    let shapes: Vec<Shape> = (1..=fused)
        .scan(shape, |s, _| {
            *s = s.half();
            Some(*s)
        })
        .collect();
    let mut out: Vec<Vec<T>> = shapes.iter().map(|s| alloc::zeroed(s.voxels())).collect();

    // Split every level into the planes each slab of the input produces.
    let slabs = shape.z.div_ceil(SLAB);
    let mut parts: Vec<Vec<&mut [T]>> = (0..slabs).map(|_| Vec::with_capacity(fused)).collect();
    for (k, level) in out.iter_mut().enumerate() {
        let plane = shapes[k].x * shapes[k].y;
        let planes_per_slab = SLAB >> (k + 1);
        for (slab, chunk) in level.chunks_mut(plane * planes_per_slab).enumerate() {
            parts[slab].push(chunk);
        }
    }
    parts
        .into_par_iter()
        .enumerate()
        .for_each(|(slab, mut levels_out)| {
            let z0 = slab * SLAB;
            let slab_shape = Shape::new(shape.x, shape.y, (shape.z - z0).min(SLAB));
            let slab_view = View {
                data: &src[z0 * shape.x * shape.y..],
                shape: slab_shape,
                row: shape.x,
                plane: shape.x * shape.y,
            };
            pyramid_slab(slab_view, &shapes, &mut levels_out);
        });

    // Levels past what a slab holds continue level by level from the last fused one.
    for _ in fused..levels as usize {
        let last = out.last().unwrap();
        let last_shape = shape_at(shape, out.len());
        out.push(downsample(last, last_shape));
    }
    out
}

fn shape_at(shape: Shape, levels: usize) -> Shape {
    (0..levels).fold(shape, |s, _| s.half())
}

/// Computes one slab's planes of every fused level; `levels_out[k]` holds the slab's planes of
/// level k + 1, whose whole-volume shape is `shapes[k]`.
fn pyramid_slab<T: Reduce>(slab: View<T>, shapes: &[Shape], levels_out: &mut [&mut [T]]) {
    // The slab's own shape at each level's input.
    let in_shapes: Vec<Shape> = std::iter::successors(Some(slab.shape), |s| Some(s.half()))
        .take(shapes.len())
        .collect();
    let level1 = shapes[0];
    for z in 0..slab.shape.half().z {
        let plane = &mut levels_out[0][z * level1.x * level1.y..];
        reduce_plane(slab, z, plane, level1.x);
        cascade(shapes, &in_shapes, levels_out, 0, z);
    }
}

/// Plane `z` of level `k + 1` is done: computes the next level's plane when both planes it
/// reduces (or the last, odd one) exist, and so on up.
fn cascade<T: Reduce>(
    shapes: &[Shape],
    in_shapes: &[Shape],
    levels_out: &mut [&mut [T]],
    k: usize,
    z: usize,
) {
    let next = k + 1;
    if next == shapes.len() || (z.is_multiple_of(2) && z + 1 != in_shapes[next].z) {
        return;
    }
    let (done, rest) = levels_out.split_at_mut(next);
    let prev = shapes[k];
    let input = View {
        data: &*done[k],
        shape: in_shapes[next],
        row: prev.x,
        plane: prev.x * prev.y,
    };
    let level = shapes[next];
    reduce_plane(
        input,
        z / 2,
        &mut rest[0][z / 2 * level.x * level.y..],
        level.x,
    );
    cascade(shapes, in_shapes, levels_out, next, z / 2);
}

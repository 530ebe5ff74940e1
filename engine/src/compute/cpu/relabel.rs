//! `relabel` and `split_apply`: labels mapped through a table, everywhere or inside a mask.

use rayon::prelude::*;

use super::lookup::Lookup;
use super::{LabelTable, Run, Shape};

#[cfg(test)]
mod tests;

/// Voxels per rayon task: big enough to amortize scheduling, small enough to balance.
const CHUNK: usize = 1 << 16;

/// Maps every label of `labels` through `lookup`, remembering the labels already seen in a
/// small direct-mapped table (`Seen`), and writes every voxel back.
///
/// Real segmentation changes label every ~10 voxels along x (the pinky40 cutout: a third of
/// the groups of four voxels hold a change), and the labels come back but rarely the last one:
/// a cache of the last label mispredicts a branch and hashes into the full table at every
/// change, and one of the last four labels still misses on 31 % of the groups of four. Here
/// a voxel costs a multiply, one load from L1 and a compare, with no branch but the rare one
/// to the table. Writing unconditionally costs no bandwidth where labels change this often
/// (a change dirties the cache line either way: 91 % of the lines for the benchmark's table),
/// and saves a branch per group of voxels that the data would mispredict.
#[inline(always)]
fn map_seen(labels: &mut [u64], lookup: &Lookup) {
    let Some(&first) = labels.first() else { return };
    let mut seen = Seen::new(first, lookup.get(first));
    for l in labels {
        *l = seen.get(*l, lookup);
    }
}

/// Labels of one chunk with their targets, direct-mapped by a hash of the label. Every slot
/// holds a true (label, target) pair (at first the chunk's first label), so a lookup is one
/// load and one compare; a label not seen yet (or pushed out by another of the same slot)
/// goes to the full table and takes the slot.
struct Seen {
    slots: [(u64, u64); SEEN],
}

/// Slots of `Seen`: 16 KiB, in L1 beside the streaming voxels, and more than the distinct
/// labels of a chunk of real segmentation (fewer slots cost 27 % at 256).
const SEEN: usize = 1024;

impl Seen {
    fn new(label: u64, target: u64) -> Seen {
        Seen {
            slots: [(label, target); SEEN],
        }
    }

    #[inline(always)]
    fn slot(label: u64) -> usize {
        (label.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SEEN.trailing_zeros())) as usize
    }

    #[inline(always)]
    fn get(&mut self, label: u64, lookup: &Lookup) -> u64 {
        let i = Seen::slot(label);
        let (key, target) = self.slots[i];
        if key == label {
            return target;
        }
        let target = lookup.get(label);
        self.slots[i] = (label, target);
        target
    }
}

pub fn relabel(labels: &mut [u64], table: &LabelTable) {
    if table.is_empty() {
        return;
    }
    relabel_with(labels, &Lookup::new(table));
}

/// `relabel` with a lookup built once for many calls (the batch builds one per table).
pub fn relabel_with(labels: &mut [u64], lookup: &Lookup) {
    labels
        .par_chunks_mut(CHUNK)
        .for_each(|chunk| map_seen(chunk, lookup));
}

/// `runs` are normalized (sorted by z, y, x, inside `shape`, not overlapping). Returns the
/// number of voxels whose label is a key of the table (identity entries count too).
pub fn split_apply(labels: &mut [u64], shape: Shape, runs: &[Run], table: &LabelTable) -> u64 {
    if table.is_empty() || runs.is_empty() {
        return 0;
    }
    split_apply_with(labels, shape, 0, runs, &Lookup::new(table))
}

/// `split_apply` on the planes of a larger volume of width `shape.x` and height `shape.y`
/// that start at plane `z0` (`labels` holds whole planes from there); `runs` are normalized in
/// the larger volume's coordinates, and only those of these planes are applied.
pub fn split_apply_with(
    labels: &mut [u64],
    shape: Shape,
    z0: usize,
    runs: &[Run],
    lookup: &Lookup,
) -> u64 {
    let plane = shape.x * shape.y;
    labels
        .par_chunks_mut(plane)
        .enumerate()
        .map(|(z, slice)| {
            let z = (z0 + z) as i32;
            let start = runs.partition_point(|r| r.z < z);
            let end = runs.partition_point(|r| r.z <= z);
            let span = |r: &Run| {
                let at = r.y as usize * shape.x + r.x as usize;
                at..at + r.len as usize
            };
            let plane_runs = &runs[start..end];
            let mut written = 0;
            for (i, r) in plane_runs.iter().enumerate() {
                // Short runs on scattered rows defeat the hardware prefetcher: ask for the next
                // run's cache lines while this one is mapped.
                if let Some(next) = plane_runs.get(i + 1) {
                    prefetch(&slice[span(next)]);
                }
                written += map_span(&mut slice[span(r)], lookup);
            }
            written
        })
        .sum()
}

/// Maps one run's voxels, with the same last-label cache as `relabel`; counts the keys.
fn map_span(span: &mut [u64], lookup: &Lookup) -> u64 {
    let (mut last_in, mut last_out) = (span[0], lookup.find(span[0]));
    let mut written = 0;
    for l in span {
        if *l != last_in {
            last_in = *l;
            last_out = lookup.find(*l);
        }
        if let Some(to) = last_out {
            *l = to;
            written += 1;
        }
    }
    written
}

/// True when `runs` already are what `normalize_runs` would return for `shape`.
pub fn is_normalized(runs: &[Run], shape: Shape) -> bool {
    let inside = |r: &Run| {
        r.len > 0
            && r.x >= 0
            && r.y >= 0
            && r.z >= 0
            && (r.y as usize) < shape.y
            && (r.z as usize) < shape.z
            && r.x as i64 + r.len as i64 <= shape.x as i64
    };
    runs.iter().all(inside)
        && runs.windows(2).all(|w| {
            let (a, b) = (w[0], w[1]);
            (a.z, a.y) < (b.z, b.y) || ((a.z, a.y) == (b.z, b.y) && a.x + a.len < b.x)
        })
}

/// Hints the CPU to load `data`'s cache lines (a no-op off x86-64).
#[inline(always)]
fn prefetch(data: &[u64]) {
    #[cfg(target_arch = "x86_64")]
    for line in data.chunks(8) {
        // SAFETY: prefetching never faults and reads nothing visible; the address is in bounds.
        unsafe {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast());
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

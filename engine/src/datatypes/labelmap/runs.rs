//! A split's runs (spec §5.1 legacy RLE): parsing them, checking them against the body before
//! any block is read, the blocks and stretches they cover, and the labels under them (read in
//! place from the compressed blocks).

use std::collections::{BTreeMap, HashMap, HashSet};

use rayon::prelude::*;

use super::index::LabelIndex;
use super::store::Labels;
use crate::block::geom::{BlockCoord, pack_block, unpack_block};
use crate::block::stored::deserialize;
use crate::compute::{Run, codec, merge_runs};
use crate::{Error, Result};

/// Runs lie within ±(2^30 - 1) along x: far beyond any stored voxel (block coordinates are
/// 20-bit), and close enough that two merged runs never span more than an i32 can hold.
const MAX_RUN_X: i64 = (1 << 30) - 1;

/// A split body (spec §5.1 legacy RLE): byte 0 must be 0, bytes 1–7 are ignored, then the run
/// count and the runs. Runs are normalized (sorted, overlaps merged).
pub fn parse_rles(body: &[u8]) -> Result<Vec<Run>> {
    if body.len() < 12 {
        return Err(Error::bad(format!(
            "split body of {} bytes is shorter than the 12-byte RLE header",
            body.len()
        )));
    }
    if body[0] != 0 {
        return Err(Error::bad(format!(
            "split RLE payload descriptor is {}, only 0 (binary) is accepted",
            body[0]
        )));
    }
    let n = u32::from_le_bytes(body[8..12].try_into().expect("4 bytes")) as usize;
    if body.len() != 12 + 16 * n {
        return Err(Error::bad(format!(
            "split RLE says {n} runs ({} bytes) but the body holds {} bytes",
            12 + 16 * n,
            body.len()
        )));
    }
    let mut runs = Vec::with_capacity(n);
    for r in body[12..].chunks_exact(16) {
        let v = |i: usize| i32::from_le_bytes(r[4 * i..4 * i + 4].try_into().expect("4 bytes"));
        let (x, y, z, len) = (v(0), v(1), v(2), v(3));
        if len <= 0 || (x as i64) < -MAX_RUN_X || (x as i64 + len as i64) > MAX_RUN_X {
            return Err(Error::bad(format!(
                "split run at ({x}, {y}, {z}) has a bad length {len} or lies beyond ±{MAX_RUN_X} in x"
            )));
        }
        runs.push(Run::new(x, y, z, len));
    }
    let merged = merge_runs(runs);
    if merged.is_empty() {
        return Err(Error::bad("the split RLE holds no voxels"));
    }
    Ok(merged)
}

/// Checks a split's runs against what they split before any block is read: each run must lie
/// in the bounding box of the blocks holding `only` (every block of `index` when `None`) and
/// touch only such blocks, and together the runs may cover at most `most` voxels (all a valid
/// split can claim). The work a request causes is then bounded by the body's own size, not by
/// the run lengths it declares.
pub(crate) fn check_runs(
    runs: &[Run],
    index: &LabelIndex,
    only: Option<u64>,
    bs: [usize; 3],
    most: u64,
    whose: &str,
) -> Result<()> {
    let blocks: HashSet<u64> = index
        .blocks
        .iter()
        .filter(|(_, c)| only.is_none_or(|sv| c.counts.get(&sv).is_some_and(|n| *n > 0)))
        .map(|(p, _)| *p)
        .collect();
    let bs = bs.map(|b| b as i64);
    let (mut lo, mut hi) = ([i64::MAX; 3], [i64::MIN; 3]);
    for p in &blocks {
        let c = unpack_block(*p);
        for a in 0..3 {
            lo[a] = lo[a].min(c[a] as i64 * bs[a]);
            hi[a] = hi[a].max((c[a] as i64 + 1) * bs[a]);
        }
    }
    let name = |r: &Run| {
        format!(
            "split run at ({}, {}, {}) of length {}",
            r.x, r.y, r.z, r.len
        )
    };
    let mut total = 0u64;
    for r in runs {
        let (x0, x1, y, z) = (
            r.x as i64,
            r.x as i64 + r.len as i64,
            r.y as i64,
            r.z as i64,
        );
        if x0 < lo[0] || x1 > hi[0] || !(lo[1]..hi[1]).contains(&y) || !(lo[2]..hi[2]).contains(&z)
        {
            return Err(Error::bad(format!(
                "{} lies outside {whose}, whose blocks span voxels ({}, {}, {}) to ({}, {}, {})",
                name(r),
                lo[0],
                lo[1],
                lo[2],
                hi[0] - 1,
                hi[1] - 1,
                hi[2] - 1
            )));
        }
        total += r.len as u64;
        if total > most {
            return Err(Error::bad(format!(
                "the split runs cover more voxels than the {most} of {whose} (at {})",
                name(r)
            )));
        }
    }
    for r in runs {
        let (by, bz) = (
            (r.y as i64).div_euclid(bs[1]),
            (r.z as i64).div_euclid(bs[2]),
        );
        let x0 = (r.x as i64).div_euclid(bs[0]);
        let x1 = (r.x as i64 + r.len as i64 - 1).div_euclid(bs[0]);
        for bx in x0..=x1 {
            let c = [bx as i32, by as i32, bz as i32];
            if !blocks.contains(&pack_block(c)) {
                return Err(Error::bad(format!(
                    "{} crosses block {c:?}, which holds no voxels of {whose}",
                    name(r)
                )));
            }
        }
    }
    Ok(())
}

/// The runs inside block `c`, in the block's own coordinates shifted down `z_shift` planes
/// (its place in a batch stacked along z).
pub(crate) fn runs_in_block(
    runs: &[Run],
    c: BlockCoord,
    bs: [usize; 3],
    z_shift: i32,
    out: &mut Vec<Run>,
) {
    let o: [i64; 3] = std::array::from_fn(|a| c[a] as i64 * bs[a] as i64);
    for r in runs {
        let (y, z) = (r.y as i64 - o[1], r.z as i64 - o[2]);
        if y < 0 || y >= bs[1] as i64 || z < 0 || z >= bs[2] as i64 {
            continue;
        }
        let x0 = (r.x as i64 - o[0]).max(0);
        let x1 = (r.x as i64 + r.len as i64 - o[0]).min(bs[0] as i64);
        if x0 < x1 {
            out.push(Run::new(
                x0 as i32,
                y as i32,
                z as i32 + z_shift,
                (x1 - x0) as i32,
            ));
        }
    }
}

/// Blocks the runs touch, in (z, y, x) order.
pub(crate) fn blocks_of_runs(runs: &[Run], bs: [usize; 3]) -> Vec<BlockCoord> {
    let mut set = std::collections::BTreeSet::new();
    for r in runs {
        let (by, bz) = (
            (r.y as i64).div_euclid(bs[1] as i64),
            (r.z as i64).div_euclid(bs[2] as i64),
        );
        let x0 = (r.x as i64).div_euclid(bs[0] as i64);
        let x1 = (r.x as i64 + r.len as i64 - 1).div_euclid(bs[0] as i64);
        for bx in x0..=x1 {
            set.insert((bz as i32, by as i32, bx as i32));
        }
    }
    set.into_iter().map(|(z, y, x)| [x, y, z]).collect()
}

/// Voxels under a split's runs: per block (packed coordinate), per label.
pub(crate) struct UnderRuns(HashMap<u64, BTreeMap<u64, u64>>);

impl UnderRuns {
    /// Voxels under the runs per label, over all blocks.
    pub fn totals(&self) -> BTreeMap<u64, u64> {
        let mut out = BTreeMap::new();
        for (&label, &n) in self.0.values().flatten() {
            *out.entry(label).or_insert(0) += n;
        }
        out
    }

    /// Voxels of `label` under the runs in block `block` (packed).
    pub(super) fn in_block(&self, block: u64, label: u64) -> u64 {
        self.0
            .get(&block)
            .and_then(|c| c.get(&label))
            .copied()
            .unwrap_or(0)
    }
}

/// Voxels under the runs, per block and label, checking each voxel with `ok` (which names the
/// offending voxel's problem when it returns an error).
pub(crate) fn count_under_runs(
    labels: &Labels,
    runs: &[Run],
    ok: &dyn Fn(u64) -> std::result::Result<(), String>,
) -> Result<UnderRuns> {
    let bs = labels.cfg.block_size;
    let bv = labels.cfg.block_voxels();
    let mut counts = HashMap::new();
    let (mut voxels, zeros) = (vec![0; bv], vec![0; bv]);
    let mut scratch = Scratch::default();
    let coords = blocks_of_runs(runs, bs);
    // A batch of blocks read in one storage call; the labels under the runs are read in place
    // (a 5 % split of a 10M-voxel body covers a small part of each block it touches).
    for batch in coords.chunks(labels.blocks_per_batch()) {
        let payloads: Vec<Option<Vec<u8>>> = labels
            .voxel_blocks()
            .get_many(0, batch)?
            .par_iter()
            .map(|s| s.as_deref().map(deserialize).transpose())
            .collect::<Result<_>>()?;
        for (c, payload) in batch.iter().zip(&payloads) {
            let under = match payload {
                None => Under::Decoded(&zeros),
                // A labelvol's raw uint64 blocks.
                Some(p) if labels.source.is_some() => {
                    labels.decode_blocks(&[p], &mut voxels)?;
                    Under::Decoded(&voxels)
                }
                Some(p) => Under::Encoded(labels.reader(p)?),
            };
            let block = counts.entry(pack_block(*c)).or_default();
            count_block(*c, &under, bs, runs, &mut scratch, ok, block)?;
        }
    }
    Ok(UnderRuns(counts))
}

/// One block's voxels as a split's check reads them.
enum Under<'a> {
    Decoded(&'a [u64]),
    Encoded(codec::VoxelReader<'a>),
}

/// What checking one block reuses from the last: its runs, and one run's labels.
#[derive(Default)]
struct Scratch {
    runs: Vec<Run>,
    row: Vec<u64>,
}

/// Counts the labels under the runs in block `c` into `counts`, checking each with `ok`.
fn count_block(
    c: BlockCoord,
    block: &Under,
    bs: [usize; 3],
    runs: &[Run],
    scratch: &mut Scratch,
    ok: &dyn Fn(u64) -> std::result::Result<(), String>,
    counts: &mut BTreeMap<u64, u64>,
) -> Result<()> {
    scratch.runs.clear();
    runs_in_block(runs, c, bs, 0, &mut scratch.runs);
    for r in &scratch.runs {
        let n = r.len as usize;
        let voxels = match block {
            Under::Decoded(block) => {
                let at = ((r.z as usize * bs[1]) + r.y as usize) * bs[0] + r.x as usize;
                &block[at..at + n]
            }
            Under::Encoded(reader) => {
                scratch.row.resize(n, 0);
                reader.row([r.x as usize, r.y as usize, r.z as usize], &mut scratch.row)?;
                &scratch.row[..]
            }
        };
        // A stretch of equal labels at a time: one check and one count each.
        let mut i = 0;
        while i < voxels.len() {
            let v = voxels[i];
            let n = voxels[i..].iter().take_while(|&&u| u == v).count();
            ok(v).map_err(|why| {
                Error::bad(format!(
                    "split voxel ({}, {}, {}) {why}",
                    c[0] as i64 * bs[0] as i64 + r.x as i64 + i as i64,
                    c[1] as i64 * bs[1] as i64 + r.y as i64,
                    c[2] as i64 * bs[2] as i64 + r.z as i64
                ))
            })?;
            *counts.entry(v).or_insert(0) += n as u64;
            i += n;
        }
    }
    Ok(())
}

/// Block runs (a coarse RLE body) as the blocks they cover, in (z, y, x) order.
/// At most `most` blocks may be listed.
pub(crate) fn blocks_of_block_runs(runs: &[Run], most: usize) -> Result<Vec<BlockCoord>> {
    let listed: u64 = runs.iter().map(|r| r.len as u64).sum();
    if listed > most as u64 {
        return Err(Error::bad(format!(
            "the coarse split lists {listed} blocks, more than the {most} the label touches"
        )));
    }
    let mut set = std::collections::BTreeSet::new();
    for r in runs {
        for x in r.x..r.x + r.len {
            set.insert((r.z, r.y, x));
        }
    }
    Ok(set.into_iter().map(|(z, y, x)| [x, y, z]).collect())
}

//! Sparse volume encodings (spec §5.1), decoded into voxel (or block) coordinate sets so that
//! tests compare sparse volumes as sets: run order and run splitting are unspecified.

use std::collections::BTreeSet;

use super::volume::Coord;

/// A set of voxel (or block) coordinates.
pub type VoxelSet = BTreeSet<Coord>;

fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Adds the runs (16 bytes each: x, y, z, length along +x) to `set`; a run with length ≤ 0 or
/// a voxel seen twice (overlapping runs) is an error.
fn add_runs(set: &mut VoxelSet, runs: &[u8]) -> Result<(), String> {
    if !runs.len().is_multiple_of(16) {
        return Err(format!("run bytes {} not a multiple of 16", runs.len()));
    }
    for (i, r) in runs.chunks_exact(16).enumerate() {
        let (x, y, z, n) = (i32_at(r, 0), i32_at(r, 4), i32_at(r, 8), i32_at(r, 12));
        if n <= 0 {
            return Err(format!("run {i} at ({x},{y},{z}) has length {n}"));
        }
        for dx in 0..n {
            if !set.insert([x + dx, y, z]) {
                return Err(format!(
                    "run {i} at ({x},{y},{z}) len {n} overlaps an earlier run at x={}",
                    x + dx
                ));
            }
        }
    }
    Ok(())
}

/// Legacy RLE ("rles", the sparsevol default): 12-byte header (byte0 = 0 descriptor, byte1 = 3
/// dims, byte2 = 0 run dimension, byte3 reserved, u32 voxels (ignored), u32 N) then N runs.
/// Trailing bytes after the N runs are an error.
pub fn rles_voxels(bytes: &[u8]) -> Result<VoxelSet, String> {
    if bytes.len() < 12 {
        return Err(format!(
            "RLE shorter than its 12-byte header: {}",
            bytes.len()
        ));
    }
    if bytes[0] != 0 || bytes[1] != 3 || bytes[2] != 0 {
        return Err(format!("bad RLE header bytes {:?}", &bytes[..4]));
    }
    let n = u32_at(bytes, 8) as usize;
    let body = &bytes[12..];
    if body.len() != n * 16 {
        return Err(format!(
            "RLE header says {n} runs ({} bytes) but {} bytes follow",
            n * 16,
            body.len()
        ));
    }
    let mut set = VoxelSet::new();
    add_runs(&mut set, body)?;
    Ok(set)
}

/// Streaming RLE ("srles"): only the 16-byte runs.
pub fn srles_voxels(bytes: &[u8]) -> Result<VoxelSet, String> {
    let mut set = VoxelSet::new();
    add_runs(&mut set, bytes)?;
    Ok(set)
}

/// Coarse RLE (sparsevol-coarse): the legacy header and runs in **block** coordinates. Returns
/// the block set; also checks that runs are sorted by z, then y, then x.
pub fn coarse_rles(bytes: &[u8]) -> Result<VoxelSet, String> {
    let set = rles_voxels(bytes)?;
    let starts: Vec<[i32; 3]> = bytes[12..]
        .chunks_exact(16)
        .map(|r| [i32_at(r, 8), i32_at(r, 4), i32_at(r, 0)])
        .collect();
    if starts.windows(2).any(|w| w[0] >= w[1]) {
        return Err(format!("coarse runs not sorted by z, y, x: {starts:?}"));
    }
    Ok(set)
}

/// The "blocks" sparsevol format: header `u32 gx, gy, gz, u64 label`, then per block
/// `i32 x, y, z` (voxel offset), `u8 flag` (0 empty, 1 full, 2 mixed); mixed blocks carry for
/// each of gx·gy·gz sub-blocks (z, y, x order) a flag and, when 2, a 64-byte LSB-first mask
/// over the sub-block's voxels (x fastest, then y, then z). Returns (label, voxels).
pub fn blocks_voxels(bytes: &[u8]) -> Result<(u64, VoxelSet), String> {
    if bytes.len() < 20 {
        return Err(format!(
            "blocks format shorter than its header: {}",
            bytes.len()
        ));
    }
    let g = [
        u32_at(bytes, 0) as i32,
        u32_at(bytes, 4) as i32,
        u32_at(bytes, 8) as i32,
    ];
    if g.iter().any(|&d| d <= 0 || d > 64) {
        return Err(format!("implausible sub-block grid {g:?}"));
    }
    let label = u64_at(bytes, 12);
    let mut set = VoxelSet::new();
    let mut add = |p: Coord| -> Result<(), String> {
        if set.insert(p) {
            Ok(())
        } else {
            Err(format!("voxel {p:?} listed twice"))
        }
    };
    let mut at = 20;
    let need = |at: usize, n: usize| -> Result<(), String> {
        if bytes.len() < at + n {
            Err(format!("blocks format truncated at offset {at} (need {n})"))
        } else {
            Ok(())
        }
    };
    while at < bytes.len() {
        need(at, 13)?;
        let o = [
            i32_at(bytes, at),
            i32_at(bytes, at + 4),
            i32_at(bytes, at + 8),
        ];
        let flag = bytes[at + 12];
        at += 13;
        let full_sub = |s: [i32; 3], add: &mut dyn FnMut(Coord) -> Result<(), String>| {
            for z in 0..8 {
                for y in 0..8 {
                    for x in 0..8 {
                        add([
                            o[0] + s[0] * 8 + x,
                            o[1] + s[1] * 8 + y,
                            o[2] + s[2] * 8 + z,
                        ])?;
                    }
                }
            }
            Ok::<(), String>(())
        };
        let subs: Vec<[i32; 3]> = (0..g[2])
            .flat_map(|z| (0..g[1]).flat_map(move |y| (0..g[0]).map(move |x| [x, y, z])))
            .collect();
        match flag {
            0 => {}
            1 => {
                for &s in &subs {
                    full_sub(s, &mut add)?;
                }
            }
            2 => {
                for &s in &subs {
                    need(at, 1)?;
                    let sf = bytes[at];
                    at += 1;
                    match sf {
                        0 => {}
                        1 => full_sub(s, &mut add)?,
                        2 => {
                            need(at, 64)?;
                            let mask = &bytes[at..at + 64];
                            at += 64;
                            for v in 0..512i32 {
                                if mask[(v / 8) as usize] >> (v % 8) & 1 == 1 {
                                    let (x, y, z) = (v % 8, (v / 8) % 8, v / 64);
                                    add([
                                        o[0] + s[0] * 8 + x,
                                        o[1] + s[1] * 8 + y,
                                        o[2] + s[2] * 8 + z,
                                    ])?;
                                }
                            }
                        }
                        f => return Err(format!("bad sub-block flag {f} in block at {o:?}")),
                    }
                }
            }
            f => return Err(format!("bad block flag {f} at {o:?}")),
        }
    }
    Ok((label, set))
}

/// `sparsevols-coarse` stream: repeated `u64 label, i32 numSpans, numSpans × (x, y, z, len)`
/// in block coordinates. Returns (label, block set) per record, in stream order.
pub fn sparsevols_coarse(bytes: &[u8]) -> Result<Vec<(u64, VoxelSet)>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        if bytes.len() - at < 12 {
            return Err(format!("truncated record header at {at}"));
        }
        let label = u64_at(bytes, at);
        let n = i32_at(bytes, at + 8);
        at += 12;
        if n < 0 || bytes.len() - at < n as usize * 16 {
            return Err(format!("label {label}: {n} spans do not fit at {at}"));
        }
        let mut set = VoxelSet::new();
        add_runs(&mut set, &bytes[at..at + n as usize * 16])?;
        at += n as usize * 16;
        out.push((label, set));
    }
    Ok(out)
}

/// Encodes a voxel set as legacy RLE (maximal x-runs, sorted by z, y, x).
pub fn encode_rles(set: &VoxelSet) -> Vec<u8> {
    let mut sorted: Vec<[i32; 3]> = set.iter().map(|p| [p[2], p[1], p[0]]).collect();
    sorted.sort_unstable();
    let mut runs: Vec<[i32; 4]> = Vec::new();
    for [z, y, x] in sorted {
        match runs.last_mut() {
            Some(r) if r[1] == y && r[2] == z && r[0] + r[3] == x => r[3] += 1,
            _ => runs.push([x, y, z, 1]),
        }
    }
    let mut out = vec![0, 3, 0, 0, 0, 0, 0, 0];
    out.extend_from_slice(&(runs.len() as u32).to_le_bytes());
    for r in runs {
        for v in r {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(x: i32, y: i32, z: i32, n: i32) -> Vec<u8> {
        [x, y, z, n].iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn legacy_rles_with_header() {
        let mut b = vec![0, 3, 0, 0, 99, 0, 0, 0, 2, 0, 0, 0];
        b.extend(run(-2, 5, 7, 3));
        b.extend(run(10, 0, 0, 1));
        let s = rles_voxels(&b).unwrap();
        assert_eq!(
            s,
            VoxelSet::from([[-2, 5, 7], [-1, 5, 7], [0, 5, 7], [10, 0, 0]])
        );
        assert_eq!(srles_voxels(&b[12..]).unwrap(), s);
        // header count disagreeing with the body, bad descriptor, overlap, zero length
        let mut short = b.clone();
        short[8] = 3;
        assert!(rles_voxels(&short).is_err());
        let mut desc = b.clone();
        desc[0] = 1;
        assert!(rles_voxels(&desc).is_err());
        let mut over = vec![0, 3, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0];
        over.extend(run(0, 0, 0, 3));
        over.extend(run(2, 0, 0, 3));
        assert!(rles_voxels(&over).is_err());
        assert!(srles_voxels(&run(0, 0, 0, 0)).is_err());
        assert!(srles_voxels(&b[12..20]).is_err());
        assert_eq!(
            rles_voxels(&[0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap(),
            VoxelSet::new()
        );
    }

    #[test]
    fn encode_decode_roundtrip() {
        let set: VoxelSet = (0..200)
            .map(|i| [(i * 7) % 13 - 3, (i * 3) % 5, i % 4])
            .collect();
        let enc = encode_rles(&set);
        assert_eq!(rles_voxels(&enc).unwrap(), set);
        assert_eq!(
            coarse_rles(&enc).unwrap(),
            set,
            "encoder output is z,y,x sorted"
        );
    }

    #[test]
    fn coarse_requires_sorted_runs() {
        let mut b = vec![0, 3, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0];
        b.extend(run(0, 0, 1, 1));
        b.extend(run(0, 0, 0, 1));
        assert!(rles_voxels(&b).is_ok());
        assert!(coarse_rles(&b).is_err());
    }

    #[test]
    fn blocks_format() {
        // 16³ blocks (g = 2), label 42; block at (16,0,-16) full; block at (0,0,0) mixed with
        // sub-block 0 empty, sub-block 1 (x=8..16) full, sub-block 7 holding voxels 0 and 511
        // and voxel 9 (x=1,y=1,z=0).
        let mut b = Vec::new();
        for g in [2u32, 2, 2] {
            b.extend_from_slice(&g.to_le_bytes());
        }
        b.extend_from_slice(&42u64.to_le_bytes());
        for v in [16i32, 0, -16] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.push(1);
        for v in [0i32, 0, 0] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.push(2);
        b.push(0);
        b.push(1);
        b.extend([0; 5]); // sub-blocks 2..7 empty
        b.push(2);
        let mut mask = [0u8; 64];
        mask[0] = 0b0000_0001;
        mask[1] = 0b0000_0010;
        mask[63] = 0b1000_0000;
        b.extend_from_slice(&mask);
        // an empty block record is allowed too
        for v in [32i32, 32, 32] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.push(0);
        let (label, set) = blocks_voxels(&b).unwrap();
        assert_eq!(label, 42);
        assert_eq!(set.len(), 4096 + 512 + 3);
        assert!(set.contains(&[16, 0, -16]) && set.contains(&[31, 15, -1]));
        assert!(set.contains(&[8, 0, 0]) && set.contains(&[15, 7, 7]));
        assert!(!set.contains(&[7, 0, 0]));
        assert!(set.contains(&[8, 8, 8]) && set.contains(&[9, 9, 8]));
        assert!(set.contains(&[15, 15, 15]));
        assert!(!set.contains(&[9, 8, 8]));
        assert!(blocks_voxels(&b[..b.len() - 14]).is_err(), "truncated mask");
    }

    #[test]
    fn sparsevols_coarse_stream() {
        let mut b = Vec::new();
        b.extend_from_slice(&5u64.to_le_bytes());
        b.extend_from_slice(&2i32.to_le_bytes());
        b.extend(run(0, 0, 0, 2));
        b.extend(run(1, 1, 1, 1));
        b.extend_from_slice(&(1u64 << 40).to_le_bytes());
        b.extend_from_slice(&1i32.to_le_bytes());
        b.extend(run(-1, 0, 3, 1));
        let v = sparsevols_coarse(&b).unwrap();
        assert_eq!(
            v,
            vec![
                (5, VoxelSet::from([[0, 0, 0], [1, 0, 0], [1, 1, 1]])),
                (1 << 40, VoxelSet::from([[-1, 0, 3]])),
            ]
        );
        assert!(sparsevols_coarse(&b[..b.len() - 1]).is_err());
    }
}

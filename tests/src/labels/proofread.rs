//! Test-side reference of labelmap proofreading (spec §4.4 "Mutations", §5.1, §5.6), written
//! from the specification, independently of the engine:
//!
//! * [`Model`]: a supervoxel volume plus a supervoxel → body mapping, with the effect of merge,
//!   renumber, cleave, split and split-supervoxel (including the order in which split allocates
//!   new ids) — what every read must show afterwards;
//! * [`parse_mappings_text`], [`parse_mappings_binary`], [`assert_mappings`]: `GET mappings`;
//! * [`raw_rles`] (malformed split bodies), [`voxels_where`], [`volume_diff`], [`Rng`].
//!
//! Request helpers, the consistency check and the event stream are in `mutations.rs`.

use std::collections::{BTreeMap, BTreeSet};

use super::rle::VoxelSet;
use super::volume::{Coord, Volume};

// ------------------------------------------------------------------ the reference model

/// The ids a split allocated: the new body, then per affected supervoxel (ascending)
/// `(old, split, remain)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitIds {
    pub label: u64,
    pub svs: Vec<(u64, u64, u64)>,
}

/// A labelmap's proofreading state as the spec defines it: the supervoxel ids stored in the
/// blocks (`sv`) and the non-identity entries of the supervoxel → body mapping (`map`; retired
/// supervoxels map to 0). Supervoxels not in `map` map to themselves.
#[derive(Clone, Debug)]
pub struct Model {
    pub sv: Volume,
    pub map: BTreeMap<u64, u64>,
}

impl Model {
    /// A freshly ingested volume: every supervoxel is its own body.
    pub fn new(sv: Volume) -> Model {
        Model {
            sv,
            map: BTreeMap::new(),
        }
    }

    /// The body of supervoxel `sv` (0 for 0 and for retired supervoxels).
    pub fn body_of(&self, sv: u64) -> u64 {
        if sv == 0 {
            return 0;
        }
        self.map.get(&sv).copied().unwrap_or(sv)
    }

    fn set(&mut self, sv: u64, body: u64) {
        if sv == body {
            self.map.remove(&sv);
        } else {
            self.map.insert(sv, body);
        }
    }

    /// Applies the mapping to any supervoxel volume (e.g. a pyramid level).
    pub fn map_volume(&self, v: &Volume) -> Volume {
        let mut cache: BTreeMap<u64, u64> = BTreeMap::new();
        let data = v
            .data
            .iter()
            .map(|&s| *cache.entry(s).or_insert_with(|| self.body_of(s)))
            .collect();
        Volume {
            origin: v.origin,
            size: v.size,
            data,
        }
    }

    /// The mapped (body) volume.
    pub fn mapped(&self) -> Volume {
        self.map_volume(&self.sv)
    }

    /// Supervoxels present in the volume, with their voxel counts.
    pub fn sv_sizes(&self) -> BTreeMap<u64, u64> {
        self.sv.label_counts()
    }

    /// Every body with voxels → the supervoxels (with voxels) it holds.
    pub fn bodies(&self) -> BTreeMap<u64, BTreeSet<u64>> {
        let mut m: BTreeMap<u64, BTreeSet<u64>> = BTreeMap::new();
        for sv in self.sv_sizes().into_keys() {
            m.entry(self.body_of(sv)).or_default().insert(sv);
        }
        m
    }

    /// The supervoxels (with voxels) of `body`; empty when the body does not exist.
    pub fn supervoxels(&self, body: u64) -> BTreeSet<u64> {
        self.bodies().remove(&body).unwrap_or_default()
    }

    /// Voxel count of every body.
    pub fn body_sizes(&self) -> BTreeMap<u64, u64> {
        let mut m = BTreeMap::new();
        for (sv, n) in self.sv_sizes() {
            *m.entry(self.body_of(sv)).or_insert(0) += n;
        }
        m
    }

    /// The non-identity mappings `GET mappings` must list (retired supervoxels → 0).
    pub fn mappings(&self) -> BTreeMap<u64, u64> {
        self.map.clone()
    }

    /// Every supervoxel id the model knows: those with voxels and those in the mapping.
    fn known_svs(&self) -> BTreeSet<u64> {
        let mut s: BTreeSet<u64> = self.sv_sizes().into_keys().collect();
        s.extend(self.map.keys().copied());
        s
    }

    /// `POST merge [target, merged…]`: every supervoxel of a merged body maps to `target`.
    #[track_caller]
    pub fn merge(&mut self, target: u64, merged: &[u64]) {
        let sizes = self.body_sizes();
        assert!(
            sizes.contains_key(&target),
            "model: merge target {target} missing"
        );
        for &m in merged {
            assert!(sizes.contains_key(&m), "model: merged body {m} missing");
            for sv in self.known_svs() {
                if self.body_of(sv) == m {
                    self.set(sv, target);
                }
            }
        }
    }

    /// `POST renumber [new, old]`: body `old` becomes `new`.
    #[track_caller]
    pub fn renumber(&mut self, new: u64, old: u64) {
        let sizes = self.body_sizes();
        assert!(
            !sizes.contains_key(&new),
            "model: renumber target {new} exists"
        );
        assert!(
            sizes.contains_key(&old),
            "model: renumbered body {old} missing"
        );
        for sv in self.known_svs() {
            if self.body_of(sv) == old {
                self.set(sv, new);
            }
        }
    }

    /// `POST cleave/<body> [svs]` that allocated `cleaved`.
    #[track_caller]
    pub fn cleave(&mut self, body: u64, svs: &[u64], cleaved: u64) {
        let have = self.supervoxels(body);
        for sv in svs {
            assert!(have.contains(sv), "model: sv {sv} not in body {body}");
        }
        assert!(
            svs.len() < have.len(),
            "model: cleave would empty body {body}"
        );
        for &sv in svs {
            self.set(sv, cleaved);
        }
    }

    /// The supervoxels a split of `voxels` touches, ascending; panics when a voxel is not in
    /// `body`.
    #[track_caller]
    pub fn split_supervoxels(&self, body: u64, voxels: &VoxelSet) -> Vec<u64> {
        let mut svs = BTreeSet::new();
        for &p in voxels {
            let sv = self.sv.get(p);
            assert!(
                sv != 0 && self.body_of(sv) == body,
                "model: split voxel {p:?} (sv {sv}) is not in body {body}"
            );
            svs.insert(sv);
        }
        svs.into_iter().collect()
    }

    /// `POST split/<body>` of `voxels`, new ids allocated from `first` on: the new body label,
    /// then for each affected supervoxel in ascending order its split id and its remain id.
    /// Every voxel of an affected supervoxel is relabelled (split id inside `voxels`, remain
    /// id elsewhere); the old supervoxel is retired (maps to 0).
    #[track_caller]
    pub fn split(&mut self, body: u64, voxels: &VoxelSet, first: u64) -> SplitIds {
        let svs = self.split_supervoxels(body, voxels);
        let label = first;
        let ids: Vec<(u64, u64, u64)> = svs
            .iter()
            .enumerate()
            .map(|(i, &sv)| (sv, first + 1 + 2 * i as u64, first + 2 + 2 * i as u64))
            .collect();
        let table: BTreeMap<u64, (u64, u64)> = ids.iter().map(|&(o, s, r)| (o, (s, r))).collect();
        let [sx, sy, _] = self.sv.size;
        let o = self.sv.origin;
        for (i, v) in self.sv.data.iter_mut().enumerate() {
            if let Some(&(s, r)) = table.get(v) {
                let p = [
                    o[0] + (i % sx) as i32,
                    o[1] + ((i / sx) % sy) as i32,
                    o[2] + (i / (sx * sy)) as i32,
                ];
                *v = if voxels.contains(&p) { s } else { r };
            }
        }
        for &(old, s, r) in &ids {
            self.map.insert(old, 0);
            self.set(s, label);
            self.set(r, body);
        }
        SplitIds { label, svs: ids }
    }

    /// `POST split-supervoxel/<sv>`: `voxels` (inside `sv`) become `split`, the rest of `sv`
    /// becomes `remain`; both map to the body of `sv`, which is retired.
    #[track_caller]
    pub fn split_supervoxel(&mut self, sv: u64, voxels: &VoxelSet, split: u64, remain: u64) {
        let body = self.body_of(sv);
        assert!(body != 0, "model: sv {sv} is retired");
        for &p in voxels {
            assert_eq!(self.sv.get(p), sv, "model: voxel {p:?} not in sv {sv}");
        }
        let [sx, sy, _] = self.sv.size;
        let o = self.sv.origin;
        for (i, v) in self.sv.data.iter_mut().enumerate() {
            if *v == sv {
                let p = [
                    o[0] + (i % sx) as i32,
                    o[1] + ((i / sx) % sy) as i32,
                    o[2] + (i / (sx * sy)) as i32,
                ];
                *v = if voxels.contains(&p) { split } else { remain };
            }
        }
        self.map.insert(sv, 0);
        self.set(split, body);
        self.set(remain, body);
    }
}

// ------------------------------------------------------------------ parsers and encoders

/// `GET mappings` text: lines `"<sv> <body>\n"`. Errors on malformed or repeated lines.
pub fn parse_mappings_text(text: &str) -> Result<BTreeMap<u64, u64>, String> {
    let mut m = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let parts: Vec<&str> = line.split(' ').collect();
        if parts.len() != 2 {
            return Err(format!("line {i} {line:?}: want \"<sv> <body>\""));
        }
        let sv: u64 = parts[0]
            .parse()
            .map_err(|e| format!("line {i} {line:?}: {e}"))?;
        let body: u64 = parts[1]
            .parse()
            .map_err(|e| format!("line {i} {line:?}: {e}"))?;
        if m.insert(sv, body).is_some() {
            return Err(format!("line {i}: supervoxel {sv} listed twice"));
        }
    }
    Ok(m)
}

/// `GET mappings?format=binary`: (sv, body) pairs of uint64 LE.
pub fn parse_mappings_binary(bytes: &[u8]) -> Result<BTreeMap<u64, u64>, String> {
    if !bytes.len().is_multiple_of(16) {
        return Err(format!(
            "{} bytes is not a whole number of pairs",
            bytes.len()
        ));
    }
    let mut m = BTreeMap::new();
    for c in bytes.chunks_exact(16) {
        let sv = u64::from_le_bytes(c[..8].try_into().expect("8"));
        let body = u64::from_le_bytes(c[8..].try_into().expect("8"));
        if m.insert(sv, body).is_some() {
            return Err(format!("supervoxel {sv} listed twice"));
        }
    }
    Ok(m)
}

/// A legacy RLE body (§5.1) with an arbitrary descriptor byte, declared run count and runs
/// `[x, y, z, length]` — for building malformed split bodies.
pub fn raw_rles(descriptor: u8, declared_runs: u32, runs: &[[i32; 4]]) -> Vec<u8> {
    let mut out = vec![descriptor, 3, 0, 0, 0, 0, 0, 0];
    out.extend_from_slice(&declared_runs.to_le_bytes());
    for r in runs {
        for v in r {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

/// The voxels of `v` in the box `[lo, hi)` whose label satisfies `keep`.
pub fn voxels_where(v: &Volume, lo: Coord, hi: Coord, keep: impl Fn(u64) -> bool) -> VoxelSet {
    v.voxels()
        .filter(|&(p, l)| (0..3).all(|a| p[a] >= lo[a] && p[a] < hi[a]) && keep(l))
        .map(|(p, _)| p)
        .collect()
}

/// "n voxels differ; first: (voxel, got, want)…" for assertion messages.
pub fn volume_diff(got: &Volume, want: &Volume) -> String {
    if got.size != want.size || got.origin != want.origin {
        return format!(
            "shape {:?}@{:?} vs {:?}@{:?}",
            got.size, got.origin, want.size, want.origin
        );
    }
    let bad: Vec<(Coord, u64, u64)> = got
        .voxels()
        .zip(want.data.iter())
        .filter(|((_, g), w)| g != *w)
        .map(|((p, g), w)| (p, g, *w))
        .collect();
    format!(
        "{} voxels differ; first (voxel, got, want): {:?}",
        bad.len(),
        &bad[..bad.len().min(6)]
    )
}

/// Asserts `got` (from `GET mappings`) equals the model's mappings, tolerating extra
/// `id → 0` lines for ids in `body_only` (cleaved body ids, which §5.6 marks as "not a
/// supervoxel" with a 0 mapping).
#[track_caller]
pub fn assert_mappings(got: &BTreeMap<u64, u64>, want: &BTreeMap<u64, u64>, body_only: &[u64]) {
    let mut got = got.clone();
    for id in body_only {
        if !want.contains_key(id) && got.get(id) == Some(&0) {
            got.remove(id);
        }
    }
    if &got != want {
        let missing: Vec<_> = want
            .iter()
            .filter(|(k, v)| got.get(k) != Some(v))
            .take(10)
            .collect();
        let extra: Vec<_> = got
            .iter()
            .filter(|(k, v)| want.get(k) != Some(v))
            .take(10)
            .collect();
        panic!("mappings differ: missing or wrong {missing:?}; unexpected {extra:?}");
    }
}

/// A deterministic pseudo-random sequence (splitmix64).
#[derive(Clone, Debug)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

#[cfg(test)]
mod tests {
    use super::super::rle::rles_voxels;
    use super::*;

    /// A 1-voxel-high line of supervoxels along x.
    fn line(labels: &[u64]) -> Model {
        Model::new(Volume {
            origin: [0; 3],
            size: [labels.len(), 1, 1],
            data: labels.to_vec(),
        })
    }

    fn set(ps: &[Coord]) -> VoxelSet {
        ps.iter().copied().collect()
    }

    #[test]
    fn merge_and_renumber_move_every_supervoxel_of_a_body() {
        let mut m = line(&[1, 1, 2, 3, 0, 4]);
        m.merge(1, &[2]);
        assert_eq!(m.body_of(2), 1);
        m.merge(3, &[1, 4]);
        assert_eq!(
            m.mapped().data,
            vec![3, 3, 3, 3, 0, 3],
            "a merged body brings all its supervoxels"
        );
        assert_eq!(m.bodies()[&3], BTreeSet::from([1, 2, 3, 4]));
        assert_eq!(m.body_sizes(), BTreeMap::from([(3, 5)]));
        assert_eq!(m.mappings(), BTreeMap::from([(1, 3), (2, 3), (4, 3)]));
        m.renumber(9, 3);
        assert_eq!(
            m.mappings(),
            BTreeMap::from([(1, 9), (2, 9), (3, 9), (4, 9)])
        );
        assert_eq!(m.supervoxels(9).len(), 4);
        assert!(m.supervoxels(3).is_empty());
        assert_eq!(m.body_of(0), 0);
    }

    #[test]
    #[should_panic(expected = "missing")]
    fn model_merge_of_a_missing_body_panics() {
        let mut m = line(&[1, 2]);
        m.merge(1, &[7]);
    }

    #[test]
    fn cleave_moves_listed_supervoxels() {
        let mut m = line(&[1, 2, 3]);
        m.merge(1, &[2, 3]);
        m.cleave(1, &[3], 10);
        assert_eq!(m.mapped().data, vec![1, 1, 10]);
        assert_eq!(m.mappings(), BTreeMap::from([(2, 1), (3, 10)]));
    }

    #[test]
    #[should_panic(expected = "empty body")]
    fn cleave_of_every_supervoxel_panics() {
        let mut m = line(&[1, 2]);
        m.merge(1, &[2]);
        m.cleave(1, &[1, 2], 10);
    }

    #[test]
    fn split_allocates_body_then_split_remain_per_supervoxel_ascending() {
        // body 5 = svs {5, 3}: [3, 3, 5, 5, 5, 8]
        let mut m = line(&[3, 3, 5, 5, 5, 8]);
        m.merge(5, &[3]);
        let ids = m.split(5, &set(&[[1, 0, 0], [2, 0, 0]]), 9);
        assert_eq!(
            ids,
            SplitIds {
                label: 9,
                svs: vec![(3, 10, 11), (5, 12, 13)]
            }
        );
        assert_eq!(m.sv.data, vec![11, 10, 12, 13, 13, 8]);
        assert_eq!(m.mapped().data, vec![5, 9, 9, 5, 5, 8]);
        assert_eq!(
            m.mappings(),
            BTreeMap::from([(3, 0), (5, 0), (10, 9), (11, 5), (12, 9), (13, 5)])
        );
        assert_eq!(m.body_of(3), 0, "old supervoxels are retired");
        assert_eq!(m.supervoxels(5), BTreeSet::from([11, 13]));
        assert_eq!(m.supervoxels(9), BTreeSet::from([10, 12]));
    }

    #[test]
    fn spec_example_split_of_body_4() {
        let mut m = line(&[1, 2, 3, 4, 4]);
        let ids = m.split(4, &set(&[[3, 0, 0]]), 5);
        assert_eq!(ids.svs, vec![(4, 6, 7)]);
        assert_eq!(m.sv.data, vec![1, 2, 3, 6, 7]);
        assert_eq!(m.mapped().data, vec![1, 2, 3, 5, 4]);
    }

    #[test]
    #[should_panic(expected = "not in body")]
    fn split_outside_the_body_panics() {
        let mut m = line(&[1, 2]);
        m.split(1, &set(&[[1, 0, 0]]), 5);
    }

    #[test]
    fn split_supervoxel_keeps_the_body() {
        let mut m = line(&[1, 2, 2, 2]);
        m.merge(1, &[2]);
        m.split_supervoxel(2, &set(&[[2, 0, 0]]), 20, 21);
        assert_eq!(m.sv.data, vec![1, 21, 20, 21]);
        assert_eq!(m.mapped().data, vec![1, 1, 1, 1]);
        assert_eq!(m.mappings(), BTreeMap::from([(2, 0), (20, 1), (21, 1)]));
        // an unmerged supervoxel: both halves map to its old id
        let mut m = line(&[7, 7]);
        m.split_supervoxel(7, &set(&[[0, 0, 0]]), 8, 9);
        assert_eq!(m.mapped().data, vec![7, 7]);
        assert_eq!(m.supervoxels(7), BTreeSet::from([8, 9]));
    }

    #[test]
    fn mappings_parsers() {
        let t = "2 1\n7 0\n10 4\n";
        assert_eq!(
            parse_mappings_text(t).unwrap(),
            BTreeMap::from([(2, 1), (7, 0), (10, 4)])
        );
        assert_eq!(parse_mappings_text("").unwrap(), BTreeMap::new());
        assert!(parse_mappings_text("2 1\n2 3\n").is_err(), "duplicate");
        assert!(parse_mappings_text("2,1\n").is_err());
        assert!(parse_mappings_text("2 x\n").is_err());
        let mut b = Vec::new();
        for v in [2u64, 1, u64::MAX, 0] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        assert_eq!(
            parse_mappings_binary(&b).unwrap(),
            BTreeMap::from([(2, 1), (u64::MAX, 0)])
        );
        assert!(parse_mappings_binary(&b[..24]).is_err());
    }

    #[test]
    fn mappings_assertion_tolerates_zeroed_body_ids_only() {
        let want = BTreeMap::from([(2, 1)]);
        assert_mappings(&BTreeMap::from([(2, 1), (9, 0)]), &want, &[9]);
        let r = std::panic::catch_unwind(|| {
            assert_mappings(&BTreeMap::from([(2, 1), (9, 0)]), &want, &[]);
        });
        assert!(r.is_err(), "an unlisted extra line fails");
        let r = std::panic::catch_unwind(|| {
            assert_mappings(&BTreeMap::from([(2, 1), (9, 3)]), &want, &[9]);
        });
        assert!(r.is_err(), "a body id mapped to non-zero fails");
    }

    #[test]
    fn raw_rles_layout() {
        let b = raw_rles(1, 2, &[[1, 2, 3, 4]]);
        assert_eq!(b.len(), 12 + 16);
        assert_eq!(&b[..4], &[1, 3, 0, 0]);
        assert_eq!(&b[8..12], &2u32.to_le_bytes());
        assert_eq!(&b[12..16], &1i32.to_le_bytes());
        assert_eq!(&b[24..28], &4i32.to_le_bytes());
        let good = raw_rles(0, 1, &[[5, 0, 0, 3]]);
        assert_eq!(
            rles_voxels(&good).unwrap(),
            set(&[[5, 0, 0], [6, 0, 0], [7, 0, 0]])
        );
    }

    #[test]
    fn voxels_where_filters_box_and_label() {
        let v = Volume::from_fn([0; 3], [4, 2, 1], |x, y, _| (x + y) as u64);
        let s = voxels_where(&v, [1, 0, 0], [4, 2, 1], |l| l == 2);
        assert_eq!(s, set(&[[2, 0, 0], [1, 1, 0]]));
    }

    #[test]
    fn mapping_ops_wire_format() {
        use crate::proto::{MappingOp, MappingOps};
        let ops = MappingOps {
            mappings: vec![MappingOp {
                mutid: 1,
                mapped: 2,
                original: vec![3, 300],
            }],
        };
        // field 1 (len 9): mutid=1, mapped=2, original packed [3, 300]
        assert_eq!(
            crate::encode(&ops),
            vec![
                0x0a, 0x09, 0x08, 0x01, 0x10, 0x02, 0x1a, 0x03, 0x03, 0xac, 0x02
            ]
        );
        assert_eq!(crate::decode::<MappingOps>(&crate::encode(&ops)), ops);
    }

    #[test]
    fn rng_is_deterministic_and_bounded() {
        let mut a = Rng(5);
        let mut b = Rng(5);
        let xs: Vec<u64> = (0..100).map(|_| a.below(7)).collect();
        let ys: Vec<u64> = (0..100).map(|_| b.below(7)).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().all(|&x| x < 7));
        assert!((0..7).all(|k| xs.contains(&k)), "covers the range");
    }

    #[test]
    fn volume_diff_reports_differences() {
        let a = Volume::filled([2, 1, 1], 1);
        let mut b = a.clone();
        b.data[1] = 2;
        assert!(volume_diff(&a, &b).starts_with("1 voxels differ"));
        assert!(volume_diff(&a, &Volume::filled([1, 1, 1], 1)).starts_with("shape"));
    }
}

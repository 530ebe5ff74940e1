//! Synapse fixtures and the oracle the annotation and labelsz tests check against: which
//! body each point lies in, computed by the test from the labelmap's voxels (one `GET raw` of
//! the whole volume), never from the annotation instance.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::labels::{Coord, Seg, Volume, hash3};

/// Edge of the fixture volume.
pub const EDGE: i32 = 128;

/// A 128³ volume of 27 supervoxels (10..=36) cut at 43 and 86 on each axis — not aligned
/// with 64³ blocks — with x < 4 left 0.
pub fn grid_fixture() -> Volume {
    Volume::from_fn([0; 3], [EDGE as usize; 3], |x, y, z| {
        if x < 4 {
            return 0;
        }
        10 + (x / 43) as u64 + 3 * (y / 43) as u64 + 9 * (z / 43) as u64
    })
}

/// The supervoxel `grid_fixture` has at `p`.
pub fn grid_sv(p: Coord) -> u64 {
    if p[0] < 4 {
        return 0;
    }
    10 + (p[0] / 43) as u64 + 3 * (p[1] / 43) as u64 + 9 * (p[2] / 43) as u64
}

/// `n` distinct points spread over the volume: PreSyn/PostSyn pairs (a PreSyn with a PostSyn
/// partner 3 voxels away in x), with a tag on every fifth.
pub fn synapse_pairs(n: usize, seed: u64) -> Vec<Value> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    let mut i = 0u64;
    while out.len() < n {
        i += 1;
        let h = |k: u64| (hash3(i as i32, k as i32, 7, seed) % (EDGE as u64 - 4)) as i32;
        let pre = [h(1), h(2), h(3)];
        let post = [pre[0] + 3, pre[1], pre[2]];
        if !seen.insert(pre) || !seen.insert(post) {
            continue;
        }
        let tags: Vec<String> = if i.is_multiple_of(5) {
            vec!["checked".into()]
        } else {
            vec![]
        };
        out.push(
            json!({"Pos": pre, "Kind": "PreSyn", "Tags": tags, "Prop": {"conf": "0.9"},
            "Rels": [{"Rel": "PreSynTo", "To": post}]}),
        );
        out.push(
            json!({"Pos": post, "Kind": "PostSyn", "Tags": [], "Prop": {},
            "Rels": [{"Rel": "PostSynTo", "To": pre}]}),
        );
    }
    out.truncate(n);
    out
}

/// Position of an element's JSON.
pub fn pos(e: &Value) -> Coord {
    serde_json::from_value(e["Pos"].clone()).expect("element Pos")
}

/// Body → the (position, kind) of the points in it, from the labelmap's voxels.
pub type Bodies = BTreeMap<u64, BTreeSet<(Coord, String)>>;

/// The oracle: reads every voxel of the labelmap (bodies) and places each point.
pub fn bodies_from_voxels(seg: &Seg, points: &[(Coord, String)]) -> Bodies {
    let vol = seg.raw([0; 3], [EDGE as usize; 3], "");
    let mut out = Bodies::new();
    for (p, kind) in points {
        let body = vol.get(*p);
        if body != 0 {
            out.entry(body).or_default().insert((*p, kind.clone()));
        }
    }
    out
}

/// What `GET label/<body>` answers, as (position, kind).
pub fn label_query(seg: &Seg, ann: &str, body: u64) -> BTreeSet<(Coord, String)> {
    let v = seg
        .srv
        .get(&format!("/api/node/{}/{ann}/label/{body}", seg.uuid))
        .expect(200)
        .json();
    v.as_array()
        .expect("label query answers an array")
        .iter()
        .map(|e| (pos(e), e["Kind"].as_str().expect("Kind").to_string()))
        .collect()
}

/// Checks `GET label/<b>` for every body the oracle has and every body of `also` (which must
/// then be empty unless the oracle has it).
#[track_caller]
pub fn assert_labels_match(seg: &Seg, ann: &str, want: &Bodies, also: &[u64], step: &str) {
    let bodies: BTreeSet<u64> = want.keys().copied().chain(also.iter().copied()).collect();
    for b in bodies {
        let got = label_query(seg, ann, b);
        let expected = want.get(&b).cloned().unwrap_or_default();
        assert_eq!(
            got,
            expected,
            "{step}: label/{b} of {ann} differs from the voxels ({} vs {} points)",
            got.len(),
            expected.len()
        );
    }
}

/// Every kind of labelmap edit, in turn, on the grid fixture: merge, cleave, split,
/// split-supervoxel then cleave of the new piece, renumber, and a voxel overwrite. After each,
/// `check(step, labels)` is called with the labels the edit touched (some of which are now
/// empty), so the caller can compare its views with the voxels.
pub fn edit_sequence(seg: &Seg, check: &mut dyn FnMut(&str, &[u64])) {
    seg.merge_ok(&[10, 11, 12], "");
    check("merge", &[11, 12]);
    let (cleaved, _) = seg.cleave_ok(10, &[12], "");
    check("cleave", &[10, 12, cleaved]);
    // Supervoxel 22 spans x 4..43, y 43..86, z 43..86.
    let mut voxels = BTreeSet::new();
    for z in 50..70 {
        for y in 50..70 {
            for x in 10..40 {
                voxels.insert([x, y, z]);
            }
        }
    }
    let (split, _) = seg.split_ok(22, &voxels, "");
    check("split", &[22, split]);
    let mut part = BTreeSet::new();
    for z in 0..43 {
        for y in 43..86 {
            for x in 50..70 {
                part.insert([x, y, z]);
            }
        }
    }
    let (s, _r, _) = seg.split_supervoxel_ok(14, &part, "");
    check("split-supervoxel", &[14]);
    let (c2, _) = seg.cleave_ok(14, &[s], "");
    check("cleave after split-supervoxel", &[14, c2]);
    seg.renumber(&[5000, 30], "").expect(200);
    check("renumber", &[30, 5000]);
    let patch = Volume::from_fn([64, 64, 64], [64, 64, 64], |_, _, _| 777);
    seg.write(&patch);
    check("voxel write", &[777]);
}

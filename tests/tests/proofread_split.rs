//! labelmap proofreading, voxel-changing mutations (spec §4.4 "Mutations", §5.1, §6.2):
//! `split/<body>` and `split-supervoxel/<sv>` with legacy RLE bodies. A split gives every
//! supervoxel it touches two new ids (new body label first, then split/remain per supervoxel in
//! ascending order), retires the old supervoxel (mapping 0), relabels all of its voxels —
//! including blocks outside the split region — and leaves every pyramid scale exact. Refused
//! requests (bad RLE, voxels outside the body/supervoxel, whole body, splits disabled by
//! configuration) write nothing.
//!
//! Fixture (128³, 64³ blocks, MaxDownresLevel 2): supervoxels 10, 11, 12, 15 (15 sprinkled
//! inside 10's box) crossing block faces, merged into body 10; supervoxel 20 its own body.
//! One `POST raw` (mutation 1000000000) and one merge (1000000001); max label 20.

use std::collections::BTreeSet;

use tessera_tests::labels::*;
use tessera_tests::*;

const FIRST_MUTATION: u64 = 1_000_000_000;
const SIZE: [usize; 3] = [128; 3];
const LEVELS: usize = 2;
const MISSING: u64 = 424_242;

fn in_box(p: [i32; 3], lo: [i32; 3], hi: [i32; 3]) -> bool {
    (0..3).all(|a| p[a] >= lo[a] && p[a] < hi[a])
}

fn sv_fixture() -> Volume {
    Volume::from_fn([0; 3], SIZE, |x, y, z| {
        let p = [x, y, z];
        if in_box(p, [8, 8, 8], [100, 40, 40]) {
            if hash3(x, y, z, 3).is_multiple_of(7) {
                15
            } else {
                10
            }
        } else if in_box(p, [8, 40, 8], [100, 56, 100]) {
            11
        } else if in_box(p, [70, 70, 70], [120, 120, 120]) {
            12
        } else if in_box(p, [8, 60, 8], [60, 100, 60]) {
            20
        } else {
            0
        }
    })
}

fn setup_with(srv: &Server) -> (Seg<'_>, Model) {
    let root = srv.create_repo("split");
    let seg = Seg::create(srv, &root, "seg", &standard_settings(LEVELS as u32));
    let vol = sv_fixture();
    seg.write(&vol);
    let mut model = Model::new(vol);
    assert_eq!(seg.merge_ok(&[10, 11, 12, 15], ""), FIRST_MUTATION + 1);
    model.merge(10, &[11, 12, 15]);
    (seg, model)
}

/// Supervoxel and mapped volumes, sizes, supervoxels and mappings all match `model`.
#[track_caller]
fn assert_state(seg: &Seg, model: &Model) {
    assert_state_with(seg, model, &[]);
}

/// [`assert_state`], tolerating `id → 0` mapping lines for the cleaved body ids `body_only`.
#[track_caller]
fn assert_state_with(seg: &Seg, model: &Model, body_only: &[u64]) {
    let got = seg.raw([0; 3], SIZE, "supervoxels=true");
    assert!(
        got == model.sv,
        "supervoxel raw: {}",
        volume_diff(&got, &model.sv)
    );
    let want = model.mapped();
    let got = seg.raw([0; 3], SIZE, "");
    assert!(got == want, "mapped raw: {}", volume_diff(&got, &want));
    let sizes = model.body_sizes();
    let labels: Vec<u64> = sizes.keys().copied().collect();
    assert_eq!(seg.existing_labels(), labels);
    assert_eq!(
        seg.sizes(&labels, ""),
        sizes.values().copied().collect::<Vec<_>>()
    );
    for (body, svs) in model.bodies() {
        assert_eq!(seg.supervoxels_of(body), Some(svs), "supervoxels/{body}");
    }
    assert_mappings(&seg.mappings(), &model.mappings(), body_only);
}

/// The `[mutid, old, remain, split]` entries of one version in `supervoxel-splits`, sorted.
fn split_entries(v: &Value, uuid: &str) -> Vec<[u64; 4]> {
    let a = v.as_array().expect("supervoxel-splits is an array");
    let at = a
        .iter()
        .position(|e| e.as_str() == Some(uuid))
        .unwrap_or_else(|| panic!("{uuid} not in supervoxel-splits {v}"));
    let mut out: Vec<[u64; 4]> = serde_json::from_value(a[at + 1].clone())
        .unwrap_or_else(|e| panic!("entries of {uuid} in {v}: {e}"));
    out.sort_unstable();
    out
}

// ------------------------------------------------------------------ split

#[test]
fn spec_example_split_of_body_4() {
    let srv = Server::start();
    let root = srv.create_repo("spec");
    let seg = Seg::create(&srv, &root, "seg", &standard_settings(LEVELS as u32));
    let vol = Volume::from_fn([0; 3], SIZE, |x, _, _| 1 + (x / 32) as u64);
    seg.write(&vol);
    assert_eq!(seg.maxlabel(), 4);
    let part = voxels_where(&vol, [96, 0, 0], [128, 128, 10], |l| l == 4);
    seg.split(4, &part, "")
        .expect(200)
        .expect_body(r#"{"label": 5, "MutationID": 1000000001}"#);
    assert_eq!(
        seg.supervoxel_splits(),
        json!([root, [[1_000_000_001u64, 4, 7, 6]]])
    );
    assert_eq!(seg.mapping(&[4, 5, 6, 7], ""), vec![0, 0, 5, 4]);
    assert_eq!(seg.nextlabel(), 8);
    let mut model = Model::new(vol);
    let ids = model.split(4, &part, 5);
    assert_eq!(ids.svs, vec![(4, 6, 7)]);
    assert_state(&seg, &model);
    check_consistency(&seg, SIZE, LEVELS);
}

#[test]
fn split_relabels_every_voxel_and_every_scale() {
    let srv = Server::start();
    let (seg, mut model) = setup_with(&srv);
    let before = model.body_sizes()[&10];
    // part of body 10 in block (0,0,0): touches supervoxels 10, 11 and 15, each of which also
    // has voxels in other blocks
    let part = voxels_where(&model.sv, [0, 0, 0], [40, 128, 30], |l| {
        model.body_of(l) == 10
    });
    assert_eq!(model.split_supervoxels(10, &part), vec![10, 11, 15]);
    let (label, id) = seg.split_ok(10, &part, "u=carol&app=splitter");
    assert_eq!((label, id), (21, FIRST_MUTATION + 2));
    let ids = model.split(10, &part, 21);
    assert_eq!(ids.svs, vec![(10, 22, 23), (11, 24, 25), (15, 26, 27)]);

    assert_eq!(
        seg.mapping(&[10, 11, 15, 22, 23, 24, 25, 26, 27, 12, 21], ""),
        vec![0, 0, 0, 21, 10, 21, 10, 21, 10, 10, 0],
        "old supervoxels retired; split halves → new body, remain halves → old body"
    );
    assert_eq!(seg.size_of(21), Some(part.len() as u64));
    assert_eq!(seg.size_of(10), Some(before - part.len() as u64));
    assert_eq!(seg.supervoxels_of(21), Some(BTreeSet::from([22, 24, 26])));
    assert_eq!(
        seg.supervoxels_of(10),
        Some(BTreeSet::from([12, 23, 25, 27]))
    );
    assert_eq!(seg.sizes(&[10, 11, 15], "supervoxels=true"), vec![0, 0, 0]);
    seg.get("size/11?supervoxels=true").expect(404);
    assert_eq!(seg.sparsevol(21, ""), Some(part.clone()));
    assert_eq!(
        seg.sparsevol(22, "supervoxels=true"),
        Some(model.sv.voxel_set(22))
    );
    assert_eq!(seg.nextlabel(), 28);
    assert_eq!(seg.maxlabel(), 27);
    for l in [10, 21] {
        let lm = seg.lastmod(l);
        assert_eq!(lm["mutation id"], id, "lastmod/{l}: {lm}");
        assert_eq!(lm["last mod user"], "carol", "lastmod/{l}: {lm}");
        assert_eq!(lm["last mod app"], "splitter", "lastmod/{l}: {lm}");
    }
    assert_eq!(
        split_entries(&seg.supervoxel_splits(), &seg.uuid),
        vec![[id, 10, 23, 22], [id, 11, 25, 24], [id, 15, 27, 26]]
    );
    assert_state(&seg, &model);
    // all scales exact (against the downres of the scale-0 volume read back), and no scale
    // still holds a retired supervoxel
    let (s0, _) = check_consistency(&seg, SIZE, LEVELS);
    for (s, level) in pyramid(&s0, LEVELS).iter().enumerate() {
        let got = seg.raw([0; 3], level.size, &format!("supervoxels=true&scale={s}"));
        for old in [10, 11, 15] {
            assert!(
                !got.data.contains(&old),
                "scale {s} still shows retired supervoxel {old}"
            );
        }
    }

    // the remainder can be split again; ids continue
    let part2 = voxels_where(&model.sv, [0, 0, 60], [128, 128, 128], |l| {
        model.body_of(l) == 10
    });
    let (label2, _) = seg.split_ok(10, &part2, "");
    assert_eq!(label2, 28);
    let ids2 = model.split(10, &part2, 28);
    assert_eq!(ids2.svs, vec![(12, 29, 30), (25, 31, 32)]);
    assert_state(&seg, &model);
    check_consistency(&seg, SIZE, LEVELS);
}

/// A split answers before its lower resolutions are rebuilt, with the rebuild as an event
/// committed with it. Held (`TESSERA_SYNC_HOLD=1`: nothing delivered), scale 0 is exact at the
/// answer and scale 1 still shows the retired supervoxel; after SIGKILL, the restarted
/// server rebuilds from the event it kept, and every scale is exact.
#[test]
fn split_lower_resolutions_follow_the_answer_and_survive_a_kill() {
    const HOLD: &str = "TESSERA_SYNC_HOLD";
    let mut srv = Server::builder().env(HOLD, "1").start();
    let (uuid, model) = {
        let (seg, mut model) = setup_with(&srv);
        let part = voxels_where(&model.sv, [0, 0, 0], [40, 128, 30], |l| {
            model.body_of(l) == 10
        });
        let (label, _) = seg.split_ok(10, &part, "");
        model.split(10, &part, label);
        assert_state(&seg, &model);
        let s1 = seg.raw([0; 3], [64; 3], "supervoxels=true&scale=1");
        assert!(
            s1.data.contains(&10),
            "held, scale 1 keeps the retired supervoxel 10 until the rebuild"
        );
        (seg.uuid.clone(), model)
    };
    srv.kill();
    srv.remove_env(HOLD);
    srv.start_again();
    let seg = Seg::open(&srv, &uuid, "seg");
    assert_state(&seg, &model);
    let (s0, _) = check_consistency(&seg, SIZE, LEVELS);
    for (s, level) in pyramid(&s0, LEVELS).iter().enumerate() {
        let got = seg.raw([0; 3], level.size, &format!("supervoxels=true&scale={s}"));
        assert!(
            !got.data.contains(&10),
            "scale {s} still shows supervoxel 10"
        );
    }
}

#[test]
fn split_covering_a_whole_supervoxel_still_allocates_two_ids() {
    let srv = Server::start();
    let (seg, mut model) = setup_with(&srv);
    // all of supervoxel 12 plus part of 11
    let part = voxels_where(&model.sv, [0, 0, 0], [128, 128, 128], |l| l == 12)
        .union(&voxels_where(&model.sv, [0, 0, 50], [128, 128, 128], |l| {
            l == 11
        }))
        .copied()
        .collect::<VoxelSet>();
    let (label, _) = seg.split_ok(10, &part, "");
    assert_eq!(label, 21);
    let ids = model.split(10, &part, 21);
    assert_eq!(ids.svs, vec![(11, 22, 23), (12, 24, 25)]);
    assert_eq!(seg.nextlabel(), 26, "two ids for every touched supervoxel");
    assert_eq!(
        seg.mapping(&[11, 12, 22, 23, 24], ""),
        vec![0, 0, 21, 10, 21]
    );
    assert_eq!(seg.supervoxels_of(21), Some(BTreeSet::from([22, 24])));
    assert_eq!(seg.supervoxels_of(10), Some(BTreeSet::from([10, 15, 23])));
    assert_state(&seg, &model);
    check_consistency(&seg, SIZE, LEVELS);
}

#[test]
fn split_rejects_bad_bodies_and_writes_nothing() {
    let srv = Server::start();
    let (seg, model) = setup_with(&srv);
    let body10 = voxels_where(&model.sv, [0; 3], [128; 3], |l| model.body_of(l) == 10);
    let some: VoxelSet = body10.iter().take(50).copied().collect();
    let p = *some.iter().next().unwrap();
    let with = |extra: [i32; 3]| {
        let mut s = some.clone();
        s.insert(extra);
        encode_rles(&s)
    };
    let cases: Vec<(&str, u64, Vec<u8>)> = vec![
        ("a voxel of another body", 10, with([20, 70, 20])),
        ("a background voxel", 10, with([0, 0, 0])),
        ("the whole body", 10, encode_rles(&body10)),
        ("a missing body", MISSING, encode_rles(&some)),
        (
            "voxels of body 10 posted to body 20",
            20,
            encode_rles(&some),
        ),
        (
            "descriptor byte 1",
            10,
            raw_rles(1, 1, &[[p[0], p[1], p[2], 1]]),
        ),
        (
            "descriptor byte 4",
            10,
            raw_rles(4, 1, &[[p[0], p[1], p[2], 1]]),
        ),
        (
            "3 runs declared, 2 sent",
            10,
            raw_rles(0, 3, &[[p[0], p[1], p[2], 1]; 2]),
        ),
        (
            "half a run",
            10,
            raw_rles(0, 1, &[[p[0], p[1], p[2], 1]])[..20].to_vec(),
        ),
        (
            "zero-length run",
            10,
            raw_rles(0, 1, &[[p[0], p[1], p[2], 0]]),
        ),
        (
            "negative run",
            10,
            raw_rles(0, 1, &[[p[0], p[1], p[2], -3]]),
        ),
        ("short header", 10, vec![0, 3, 0, 0, 0]),
        ("empty body", 10, vec![]),
    ];
    for (what, body, bytes) in cases {
        let r = seg.post(&format!("split/{body}"), bytes);
        assert_eq!(r.status, 400, "split with {what}: {}", r.text());
    }
    assert_state(&seg, &model);
    assert_eq!(seg.supervoxel_splits(), json!([]), "no split recorded");
    check_consistency(&seg, SIZE, LEVELS);
}

#[test]
fn split_can_be_disabled_by_configuration() {
    let srv = Server::start_with_config("[server]\nallow_labelmap_split = false\n");
    let (seg, mut model) = setup_with(&srv);
    let part = voxels_where(&model.sv, [0; 3], [40, 128, 30], |l| model.body_of(l) == 10);
    let r = seg.split(10, &part, "").expect(400);
    assert!(
        r.text().contains("allow_labelmap_split"),
        "the refusal names the setting: {:?}",
        r.text()
    );
    assert_state(&seg, &model);
    // only split is disabled
    let sv11 = voxels_where(&model.sv, [0; 3], [128, 128, 50], |l| l == 11);
    let (s, r, _) = seg.split_supervoxel_ok(11, &sv11, "");
    model.split_supervoxel(11, &sv11, s, r);
    let (c, _) = seg.cleave_ok(10, &[12], "");
    model.cleave(10, &[12], c);
    seg.merge_ok(&[10, c], "");
    model.merge(10, &[c]);
    assert_state_with(&seg, &model, &[c]);
}

// ------------------------------------------------------------------ split-supervoxel

#[test]
fn split_supervoxel_keeps_the_body() {
    let srv = Server::start();
    let (seg, mut model) = setup_with(&srv);
    let mapped_before = model.mapped();
    let size_before = model.body_sizes()[&10];
    let part = voxels_where(&model.sv, [0; 3], [128, 128, 50], |l| l == 11);
    let sv11 = model.sv_sizes()[&11];
    let (s, r, id) = seg.split_supervoxel_ok(11, &part, "u=dave&app=svsplit");
    assert_eq!((s, r, id), (21, 22, FIRST_MUTATION + 2));
    model.split_supervoxel(11, &part, s, r);
    assert!(model.mapped() == mapped_before, "model: bodies unchanged");
    assert_eq!(seg.mapping(&[11, 21, 22], ""), vec![0, 10, 10]);
    assert_eq!(seg.size_of(10), Some(size_before), "body size unchanged");
    assert_eq!(
        seg.supervoxels_of(10),
        Some(BTreeSet::from([10, 12, 15, 21, 22]))
    );
    assert_eq!(
        seg.sizes(&[21, 22, 11], "supervoxels=true"),
        vec![part.len() as u64, sv11 - part.len() as u64, 0]
    );
    assert_eq!(seg.sparsevol(21, "supervoxels=true"), Some(part));
    let lm = seg.lastmod(10);
    assert_eq!(lm["mutation id"], id, "{lm}");
    assert_eq!(lm["last mod user"], "dave", "{lm}");
    assert_eq!(lm["last mod app"], "svsplit", "{lm}");
    assert_eq!(
        split_entries(&seg.supervoxel_splits(), &seg.uuid),
        vec![[id, 11, 22, 21]]
    );
    assert_eq!(seg.nextlabel(), 23);
    assert_state(&seg, &model);
    check_consistency(&seg, SIZE, LEVELS);
}

#[test]
fn split_supervoxel_with_given_ids_and_without_downres() {
    let srv = Server::start();
    let (seg, mut model) = setup_with(&srv);
    let old_pyramid = pyramid(&model.sv, LEVELS);
    let part = voxels_where(&model.sv, [0; 3], [30, 128, 128], |l| l == 20);
    let (s, r, _) = seg.split_supervoxel_ok(20, &part, "split=1000&remain=1001&downres=false");
    assert_eq!((s, r), (1000, 1001));
    model.split_supervoxel(20, &part, 1000, 1001);
    assert_eq!(seg.mapping(&[20, 1000, 1001], ""), vec![0, 20, 20]);
    assert_eq!(seg.supervoxels_of(20), Some(BTreeSet::from([1000, 1001])));
    assert_eq!(seg.size_of(20), Some(model.body_sizes()[&20]));
    assert!(
        seg.nextlabel() > 1001,
        "ids given explicitly are never allocated again"
    );
    assert_state(&seg, &model);
    for (lvl, level) in old_pyramid.iter().enumerate().skip(1) {
        let got = seg.raw([0; 3], level.size, &format!("supervoxels=true&scale={lvl}"));
        assert!(
            got == *level,
            "downres=false: scale {lvl} must be left as it was: {}",
            volume_diff(&got, level)
        );
    }
    // the default recomputes the lower scales
    let part = voxels_where(&model.sv, [0; 3], [128, 128, 50], |l| l == 11);
    let (s, r, _) = seg.split_supervoxel_ok(11, &part, "");
    assert_eq!(
        (s, r),
        (1002, 1003),
        "allocation continues after the given ids"
    );
    model.split_supervoxel(11, &part, s, r);
    assert_state(&seg, &model);
}

#[test]
fn split_supervoxel_rejects_bad_requests_and_writes_nothing() {
    let srv = Server::start();
    let (seg, mut model) = setup_with(&srv);
    let part = voxels_where(&model.sv, [0; 3], [128, 128, 50], |l| l == 11);
    let (s, r, _) = seg.split_supervoxel_ok(11, &part, "");
    model.split_supervoxel(11, &part, s, r);
    let sv12 = model.sv.voxel_set(12);
    let some: VoxelSet = sv12.iter().take(40).copied().collect();
    let p = *some.iter().next().unwrap();
    let with = |extra: [i32; 3]| {
        let mut s = some.clone();
        s.insert(extra);
        encode_rles(&s)
    };
    let in10 = *model.sv.voxel_set(10).iter().next().unwrap();
    let cases: Vec<(&str, u64, Vec<u8>)> = vec![
        ("a voxel of another supervoxel of the body", 12, with(in10)),
        ("a background voxel", 12, with([0, 0, 0])),
        ("a voxel of another body", 12, with([20, 70, 20])),
        ("a retired supervoxel", 11, encode_rles(&some)),
        ("a missing supervoxel", MISSING, encode_rles(&some)),
        ("label 0", 0, encode_rles(&some)),
        (
            "descriptor byte 1",
            12,
            raw_rles(1, 1, &[[p[0], p[1], p[2], 1]]),
        ),
        (
            "2 runs declared, 1 sent",
            12,
            raw_rles(0, 2, &[[p[0], p[1], p[2], 1]]),
        ),
        (
            "zero-length run",
            12,
            raw_rles(0, 1, &[[p[0], p[1], p[2], 0]]),
        ),
        (
            "negative run",
            12,
            raw_rles(0, 1, &[[p[0], p[1], p[2], -1]]),
        ),
        ("short header", 12, vec![0, 3]),
    ];
    let splits_before = seg.supervoxel_splits();
    for (what, sv, bytes) in cases {
        let r = seg.post(&format!("split-supervoxel/{sv}"), bytes);
        assert_eq!(r.status, 400, "split-supervoxel with {what}: {}", r.text());
    }
    assert_state(&seg, &model);
    assert_eq!(seg.supervoxel_splits(), splits_before);
    check_consistency(&seg, SIZE, LEVELS);
}

//! labelmap proofreading, mapping-only mutations (spec §4.4 "Mutations", §5.6, §5.7): merge,
//! renumber, cleave, and the mapping reads (`mapping`, `mappings`, `POST mappings`). A merge
//! changes no voxel: mapped reads (raw, label, labels, blocks, specificblocks, every scale) show
//! the target, `supervoxels=true` reads the original ids, and the label index (sizes,
//! supervoxels, existing-labels, sparsevol) follows. Every refused request writes nothing.
//!
//! Fixture: the spec §6.2 cubes (128³, 64³ blocks, 40³ cubes of supervoxels 1, 2, 13, 209,
//! 311, each crossing block faces), MaxDownresLevel 2, written with one `POST raw`, which
//! consumes mutation id 1000000000.

use std::collections::{BTreeMap, BTreeSet};

use tessera_tests::labels::*;
use tessera_tests::proto::{MappingOp, MappingOps};
use tessera_tests::*;

const FIRST_MUTATION: u64 = 1_000_000_000;
const SIZE: [usize; 3] = [128; 3];
const LEVELS: usize = 2;
const CUBE: u64 = 64_000;
const MISSING: u64 = 424_242;

fn start() -> Server {
    Server::start()
}

/// A labelmap "seg" holding the cubes fixture; returns the model of its state.
fn setup(srv: &Server) -> (Seg<'_>, Model) {
    let root = srv.create_repo("proofread");
    let seg = Seg::create(srv, &root, "seg", &standard_settings(LEVELS as u32));
    let vol = spec_cubes_fixture();
    seg.write(&vol);
    (seg, Model::new(vol))
}

/// Point inside each cube.
fn inside(label: u64) -> Coord {
    match label {
        1 => [50, 50, 50],
        2 => [50, 50, 90],
        13 => [90, 50, 50],
        209 => [50, 90, 50],
        311 => [90, 90, 50],
        _ => panic!("no cube {label}"),
    }
}

/// Sizes, supervoxels, mapping and mapped/supervoxel voxels at scale 0 all match `model`.
#[track_caller]
fn assert_state(seg: &Seg, model: &Model, body_only: &[u64]) {
    let sizes = model.body_sizes();
    let mut ask: Vec<u64> = sizes.keys().copied().collect();
    ask.extend([1, 2, 13, 209, 311, MISSING]);
    let got = seg.sizes(&ask, "");
    for (l, g) in ask.iter().zip(got) {
        assert_eq!(g, sizes.get(l).copied().unwrap_or(0), "size of {l}");
    }
    assert_eq!(
        seg.existing_labels(),
        sizes.keys().copied().collect::<Vec<_>>()
    );
    for (body, svs) in model.bodies() {
        assert_eq!(seg.supervoxels_of(body), Some(svs), "supervoxels/{body}");
    }
    let svs: Vec<u64> = model.sv_sizes().into_keys().collect();
    let want: Vec<u64> = svs.iter().map(|&s| model.body_of(s)).collect();
    assert_eq!(seg.mapping(&svs, ""), want, "mapping of {svs:?}");
    assert_mappings(&seg.mappings(), &model.mappings(), body_only);
    let got = seg.raw([0; 3], SIZE, "");
    let want = model.mapped();
    assert!(got == want, "mapped raw: {}", volume_diff(&got, &want));
    let got = seg.raw([0; 3], SIZE, "supervoxels=true");
    assert!(
        got == model.sv,
        "supervoxel raw: {}",
        volume_diff(&got, &model.sv)
    );
}

// ------------------------------------------------------------------ merge

#[test]
fn merge_maps_supervoxels_in_every_read() {
    let srv = start();
    let (seg, mut model) = setup(&srv);
    let id = seg.merge_ok(&[13, 1, 209], "u=alice&app=neu3");
    assert_eq!(id, FIRST_MUTATION + 1, "POST raw consumed the first id");
    model.merge(13, &[1, 209]);

    // label index
    assert_eq!(seg.size_of(13), Some(3 * CUBE), "sizes add up");
    assert_eq!(seg.size_of(1), None, "merged label is gone");
    assert_eq!(seg.size_of(209), None, "merged label is gone");
    assert_eq!(seg.size_of(2), Some(CUBE));
    assert_eq!(seg.supervoxels_of(13), Some(BTreeSet::from([1, 13, 209])));
    assert_eq!(seg.supervoxels_of(1), None);
    let ss = seg.get("supervoxel-sizes/13").expect(200).json();
    let pairs: BTreeMap<u64, u64> = ss["supervoxels"]
        .as_array()
        .expect("supervoxels")
        .iter()
        .zip(ss["sizes"].as_array().expect("sizes"))
        .map(|(a, b)| (a.as_u64().unwrap(), b.as_u64().unwrap()))
        .collect();
    assert_eq!(pairs, BTreeMap::from([(1, CUBE), (13, CUBE), (209, CUBE)]));
    assert_eq!(
        seg.sizes(&[1, 13, 209], "supervoxels=true"),
        vec![CUBE; 3],
        "supervoxel sizes are unchanged"
    );
    assert_eq!(seg.existing_labels(), vec![2, 13, 311]);
    assert_eq!(
        seg.mapping(&[1, 209, 13, 2, 311], ""),
        vec![13, 13, 13, 2, 311]
    );
    let lm = seg.lastmod(13);
    assert_eq!(lm["mutation id"], id, "{lm}");
    assert_eq!(lm["last mod user"], "alice", "{lm}");
    assert_eq!(lm["last mod app"], "neu3", "{lm}");

    // sparse volumes: the body is the union, supervoxels are unchanged
    let vol = &model.sv;
    let mut union = vol.voxel_set(13);
    union.extend(vol.voxel_set(1));
    union.extend(vol.voxel_set(209));
    assert_eq!(seg.sparsevol(13, ""), Some(union));
    assert_eq!(seg.sparsevol(1, "supervoxels=true"), Some(vol.voxel_set(1)));
    assert_eq!(seg.sparsevol(1, ""), None, "merged body has no sparsevol");

    // point reads
    assert_eq!(seg.label_at(inside(1), ""), 13);
    assert_eq!(seg.label_at(inside(1), "supervoxels=true"), 1);
    assert_eq!(seg.label_at(inside(209), ""), 13);
    assert_eq!(seg.label_at(inside(2), ""), 2);
    let pts = json!([inside(1), inside(209), inside(13), inside(2), [0, 0, 0]]);
    seg.get_with_body("labels", serde_json::to_vec(&pts).unwrap())
        .expect(200)
        .expect_body("[13,13,13,2,0]");
    seg.get_with_body("labels?supervoxels=true", serde_json::to_vec(&pts).unwrap())
        .expect(200)
        .expect_body("[1,209,13,2,0]");
    assert_eq!(
        seg.label_at([25, 25, 25], "scale=1"),
        13,
        "scale 1 is mapped"
    );
    assert_eq!(
        seg.label_at([25, 25, 25], "scale=1&supervoxels=true"),
        1,
        "scale 1 supervoxels"
    );

    // volumes and blocks: mapped by default, original with supervoxels=true; no voxel changed
    let mapped = model.mapped();
    assert_state(&seg, &model, &[]);
    let all: Vec<Coord> = (0..2)
        .flat_map(|z| (0..2).flat_map(move |y| (0..2).map(move |x| [x, y, z])))
        .collect();
    let required = vol.nonempty_blocks(seg.bs);
    for (query, compression, reference) in [
        ("", "lz4", &mapped),
        ("compression=blocks", "blocks", &mapped),
        ("compression=uncompressed", "uncompressed", &mapped),
        ("supervoxels=true", "lz4", vol),
        ("compression=blocks&supervoxels=true", "blocks", vol),
    ] {
        let recs = seg.blocks([0; 3], SIZE, query);
        seg.check_records(&recs, compression, reference, &all, &required);
    }
    let r = seg.get("specificblocks?blocks=0,0,0,1,1,0").expect(200);
    let recs = block_records(&r.body);
    assert_eq!(recs.len(), 2);
    seg.check_records(&recs, "blocks", &mapped, &all, &[[0, 0, 0], [1, 1, 0]]);

    // every scale: mapped = mapping of the (unchanged) supervoxel pyramid
    let p = pyramid(vol, LEVELS);
    for (s, level) in p.iter().enumerate().skip(1) {
        let got = seg.raw([0; 3], level.size, &format!("scale={s}"));
        let want = model.map_volume(level);
        assert!(
            got == want,
            "scale {s} mapped: {}",
            volume_diff(&got, &want)
        );
        let got = seg.raw([0; 3], level.size, &format!("scale={s}&supervoxels=true"));
        assert!(
            got == *level,
            "scale {s} supervoxels: {}",
            volume_diff(&got, level)
        );
    }

    // a body of several supervoxels merges as a whole
    let id2 = seg.merge_ok(&[311, 13], "");
    assert_eq!(id2, id + 1);
    model.merge(311, &[13]);
    assert_eq!(seg.mapping(&[1, 13, 209, 311], ""), vec![311; 4]);
    assert_eq!(seg.size_of(311), Some(4 * CUBE));
    assert_eq!(seg.size_of(13), None);
    assert_eq!(
        seg.mappings(),
        BTreeMap::from([(1, 311), (13, 311), (209, 311)])
    );
    assert_eq!(seg.mappings_binary(), seg.mappings(), "binary = text");
    check_consistency(&seg, SIZE, LEVELS);
    assert_state(&seg, &model, &[]);
}

#[test]
fn merge_rejects_bad_requests_and_writes_nothing() {
    let srv = start();
    let (seg, model) = setup(&srv);
    let bad: [&[u8]; 15] = [
        b"[]",
        b"[13]",
        b"[0, 1]",
        b"[1, 0]",
        b"[13, 1, 0]",
        b"[13, 424242]",
        b"[424242, 13]",
        b"[13, 1, 424242]",
        b"not json",
        b"",
        br#"{"target": 13, "merge": [1]}"#,
        br#"[13, "1"]"#,
        b"[13, -1]",
        b"[13, 1.5]",
        b"[13, 1",
    ];
    for body in bad {
        let r = seg.post("merge", body.to_vec());
        assert_eq!(
            r.status,
            400,
            "merge {:?}: want 400, got {} {:?}",
            String::from_utf8_lossy(body),
            r.status,
            r.text()
        );
    }
    assert_state(&seg, &model, &[]);
    assert!(seg.mappings().is_empty(), "no mapping was written");
    // the instance still works
    seg.merge_ok(&[13, 1], "");
}

// ------------------------------------------------------------------ renumber

#[test]
fn renumber_gives_bodies_new_ids() {
    let srv = start();
    let (seg, mut model) = setup(&srv);
    seg.renumber(&[500, 2, 600, 311], "")
        .expect(200)
        .expect_body("");
    model.renumber(500, 2);
    model.renumber(600, 311);
    assert_eq!(seg.size_of(2), None);
    assert_eq!(seg.size_of(311), None);
    assert_eq!(seg.size_of(500), Some(CUBE));
    assert_eq!(seg.size_of(600), Some(CUBE));
    assert_eq!(seg.supervoxels_of(500), Some(BTreeSet::from([2])));
    assert_eq!(seg.mapping(&[2, 311], ""), vec![500, 600]);
    assert_eq!(seg.label_at(inside(2), ""), 500);
    assert_eq!(seg.label_at(inside(2), "supervoxels=true"), 2);
    assert_state(&seg, &model, &[]);

    // a renumbered body is an ordinary body; a multi-supervoxel body renumbers as a whole
    seg.merge_ok(&[500, 13], "");
    model.merge(500, &[13]);
    seg.renumber(&[700, 500], "").expect(200);
    model.renumber(700, 500);
    assert_eq!(seg.supervoxels_of(700), Some(BTreeSet::from([2, 13])));
    assert_eq!(seg.size_of(700), Some(2 * CUBE));
    assert_state(&seg, &model, &[]);
    check_consistency(&seg, SIZE, LEVELS);

    // refusals write nothing
    for body in [
        "[800]",
        "[800, 1, 801]",
        "[1, 209]",
        "[700, 1]",
        "[0, 1]",
        "[800, 0]",
        "junk",
        "",
        r#"{"800": 1}"#,
    ] {
        let r = seg.post("renumber", body.as_bytes().to_vec());
        assert_eq!(r.status, 400, "renumber {body}: {}", r.text());
    }
    assert_state(&seg, &model, &[]);
}

// ------------------------------------------------------------------ cleave

#[test]
fn cleave_moves_supervoxels_to_a_new_body() {
    let srv = start();
    let (seg, mut model) = setup(&srv);
    seg.merge_ok(&[13, 1, 209], "");
    model.merge(13, &[1, 209]);
    assert_eq!(seg.maxlabel(), 311);
    let (cleaved, id) = seg.cleave_ok(13, &[1, 209], "u=bob&app=cleaver");
    assert_eq!(cleaved, 312, "new label = max label + 1");
    assert_eq!(id, FIRST_MUTATION + 2);
    model.cleave(13, &[1, 209], cleaved);
    assert_eq!(seg.size_of(13), Some(CUBE));
    assert_eq!(seg.size_of(312), Some(2 * CUBE));
    assert_eq!(seg.supervoxels_of(13), Some(BTreeSet::from([13])));
    assert_eq!(seg.supervoxels_of(312), Some(BTreeSet::from([1, 209])));
    assert_eq!(
        seg.mapping(&[1, 209, 13, 312], ""),
        vec![312, 312, 13, 0],
        "a cleaved body id is not a supervoxel"
    );
    assert!(
        seg.maxlabel() >= 312,
        "the allocated label raises the max label"
    );
    assert_eq!(seg.nextlabel(), 313);
    for l in [13, 312] {
        let lm = seg.lastmod(l);
        assert_eq!(lm["mutation id"], id, "lastmod/{l}: {lm}");
        assert_eq!(lm["last mod user"], "bob", "lastmod/{l}: {lm}");
        assert_eq!(lm["last mod app"], "cleaver", "lastmod/{l}: {lm}");
    }
    assert_eq!(
        seg.label_at([25, 25, 25], "scale=1"),
        312,
        "scale 1 is mapped"
    );
    assert_state(&seg, &model, &[312]);
    check_consistency(&seg, SIZE, LEVELS);

    // a cleaved body can be merged back and cleaved again
    seg.merge_ok(&[13, 312], "");
    model.merge(13, &[312]);
    let (again, _) = seg.cleave_ok(13, &[13], "");
    assert_eq!(again, 313);
    model.cleave(13, &[13], again);
    assert_eq!(seg.supervoxels_of(13), Some(BTreeSet::from([1, 209])));
    assert_state(&seg, &model, &[312, 313]);
}

#[test]
fn cleave_failures_consume_a_label_and_write_nothing() {
    let srv = start();
    let (seg, mut model) = setup(&srv);
    seg.merge_ok(&[13, 1, 209], "");
    model.merge(13, &[1, 209]);
    assert_eq!(seg.nextlabel(), 312);
    let refusals: [(u64, &[u64]); 4] = [
        (13, &[2]),          // not in the body
        (13, &[1, 2]),       // one of them not in the body
        (13, &[13, 1, 209]), // the whole body
        (MISSING, &[1]),     // no such body
    ];
    for (i, (body, svs)) in refusals.iter().enumerate() {
        seg.cleave(*body, svs, "").expect(400);
        assert_eq!(
            seg.nextlabel(),
            313 + i as u64,
            "a refused cleave ({body}, {svs:?}) still allocates a label"
        );
    }
    assert_state(&seg, &model, &[]);
    let (cleaved, _) = seg.cleave_ok(13, &[209], "");
    assert_eq!(cleaved, 316, "labels of refused cleaves are not reused");
    model.cleave(13, &[209], cleaved);
    // malformed requests: refused, nothing written (label consumption unspecified here)
    for (path, body) in [
        ("cleave/0", "[1]"),
        ("cleave/13", "[0]"),
        ("cleave/13", "[1, 0]"),
        ("cleave/13", "junk"),
        ("cleave/13", ""),
        ("cleave/13", r#"{"svs": [1]}"#),
        ("cleave/13", r#"["1"]"#),
        ("cleave/abc", "[1]"),
    ] {
        let r = seg.post(path, body.as_bytes().to_vec());
        assert_eq!(r.status, 400, "{path} {body}: {}", r.text());
    }
    assert_state(&seg, &model, &[cleaved]);
}

// ------------------------------------------------------------------ mapping reads

#[test]
fn mapping_reports_bodies_retired_and_unknown_ids() {
    let srv = start();
    let (seg, mut model) = setup(&srv);
    assert!(seg.mappings().is_empty(), "no mappings before any mutation");
    assert!(seg.mappings_binary().is_empty());
    assert_eq!(
        seg.mapping(&[1, 2, MISSING], ""),
        vec![1, 2, 0],
        "identity for existing supervoxels, 0 for unknown ids"
    );
    assert_eq!(
        seg.mapping(&[MISSING, 1], "nolookup=true"),
        vec![MISSING, 1],
        "nolookup: no index lookup, identity for unmapped ids"
    );
    seg.merge_ok(&[13, 1], "");
    model.merge(13, &[1]);
    let (cleaved, _) = seg.cleave_ok(13, &[1], "");
    model.cleave(13, &[1], cleaved);
    let half = voxels_where(&model.sv, [0, 0, 0], [60, 128, 100], |l| l == 2);
    let (s, r, _) = seg.split_supervoxel_ok(2, &half, "");
    assert_eq!((s, r), (cleaved + 1, cleaved + 2));
    model.split_supervoxel(2, &half, s, r);
    assert_eq!(
        seg.mapping(&[13, 1, 2, s, r, cleaved, MISSING, 209], ""),
        vec![13, cleaved, 0, 2, 2, 0, 0, 209]
    );
    assert_eq!(
        seg.mapping(&[2], "nolookup=true"),
        vec![0],
        "a retired supervoxel maps to 0 even without lookup"
    );
    let text = seg.mappings();
    assert_mappings(&text, &model.mappings(), &[cleaved]);
    assert_eq!(
        model.mappings(),
        BTreeMap::from([(1, cleaved), (2, 0), (s, 2), (r, 2)])
    );
    assert_eq!(seg.mappings_binary(), text, "binary pairs = text lines");
    let r = seg.get("mappings").expect(200);
    for line in r.text().lines() {
        assert!(
            line.split(' ').count() == 2 && !line.contains("  "),
            "line {line:?}: want \"<sv> <body>\""
        );
    }
    for body in ["junk", "{\"a\": 1}", "[1, \"x\"]"] {
        seg.get_with_body("mapping", body.as_bytes().to_vec())
            .expect(400);
    }
}

#[test]
fn post_mappings_loads_mapping_ops() {
    let srv = start();
    let (seg, _) = setup(&srv);
    let ops = MappingOps {
        mappings: vec![
            MappingOp {
                mutid: 77,
                mapped: 1,
                original: vec![2, 209],
            },
            MappingOp {
                mutid: 78,
                mapped: 13,
                original: vec![311],
            },
        ],
    };
    seg.post("mappings", encode(&ops)).expect(200);
    // POST mappings loads the mapping only (label indices are posted separately, e.g. with
    // POST indices); an explicitly mapped supervoxel is answered from the mapping, with or
    // without the index lookup (which only checks ids that were never mapped)
    for q in ["nolookup=true", ""] {
        assert_eq!(
            seg.mapping(&[2, 209, 311, 1, 13], q),
            vec![1, 1, 13, 1, 13],
            "mapping?{q}"
        );
    }
    let want = BTreeMap::from([(2, 1), (209, 1), (311, 13)]);
    assert_eq!(seg.mappings(), want);
    assert_eq!(seg.mappings_binary(), want);
    assert_eq!(
        seg.label_at(inside(2), ""),
        1,
        "reads apply the loaded mapping"
    );
    assert_eq!(seg.label_at(inside(311), ""), 13);
    assert_eq!(seg.label_at(inside(2), "supervoxels=true"), 2);
    // a later op overrides an earlier one
    let ops = MappingOps {
        mappings: vec![MappingOp {
            mutid: 79,
            mapped: 13,
            original: vec![2],
        }],
    };
    seg.post("mappings", encode(&ops)).expect(200);
    assert_eq!(seg.mapping(&[2, 209], "nolookup=true"), vec![13, 1]);
    assert_eq!(seg.label_at(inside(2), ""), 13);
}

// ------------------------------------------------------------------ label 0

#[test]
fn label_zero_is_rejected_by_every_mutation() {
    let srv = start();
    let (seg, model) = setup(&srv);
    let one = encode_rles(&VoxelSet::from([inside(1)]));
    for (path, body) in [
        ("merge", b"[0, 1]".to_vec()),
        ("merge", b"[1, 0]".to_vec()),
        ("renumber", b"[0, 1]".to_vec()),
        ("renumber", b"[800, 0]".to_vec()),
        ("cleave/0", b"[1]".to_vec()),
        ("split/0", one.clone()),
        ("split-supervoxel/0", one.clone()),
    ] {
        let r = seg.post(path, body);
        assert_eq!(r.status, 400, "{path}: {}", r.text());
    }
    seg.get("lastmod/0").expect(400);
    seg.get("supervoxels/0").expect(400);
    assert_state(&seg, &model, &[]);
    assert!(
        seg.supervoxel_splits()
            .as_array()
            .is_some_and(|a| a.is_empty())
    );
}

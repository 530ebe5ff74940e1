//! labelmap label indices and label bookkeeping (spec §4.4 "Labels, sizes, metadata", §5.5):
//! sizes, sparsevol-size, supervoxels, existing-labels, listlabels, index/indices/
//! indices-compressed, lastmod, maxlabel/nextlabel (incl. admin endpoints) — exact after every
//! write, including overwrites. No mutations (merge/split) here: every label is its own
//! supervoxel.

use std::collections::BTreeMap;

use tessera_tests::labels::*;
use tessera_tests::proto::{LabelIndex, LabelIndices};
use tessera_tests::*;

const MISSING: u64 = 424_242;
const WIDE: u64 = 4_294_967_301;

fn start() -> (Server, String) {
    let srv = Server::start();
    let root = srv.create_repo("labelindex");
    (srv, root)
}

fn u64s(bytes: &[u8]) -> Vec<u64> {
    assert_eq!(bytes.len() % 8, 0, "u64 stream of {} bytes", bytes.len());
    bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8")))
        .collect()
}

fn json_body(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("json")
}

/// The label index blocks a label must have: packed block coord → {label: count}.
fn expected_blocks(
    per_block: &BTreeMap<Coord, u64>,
    label: u64,
) -> BTreeMap<u64, BTreeMap<u64, u32>> {
    per_block
        .iter()
        .map(|(&b, &n)| (pack_block_coord(b), BTreeMap::from([(label, n as u32)])))
        .collect()
}

fn index_blocks(idx: &LabelIndex) -> BTreeMap<u64, BTreeMap<u64, u32>> {
    idx.blocks
        .iter()
        .map(|(&k, sv)| (k, sv.counts.clone()))
        .collect()
}

/// Everything the label index reports must equal what `reference` (the whole written volume
/// at scale 0) implies.
#[track_caller]
fn verify_index(seg: &Seg, reference: &Volume, gone: &[u64]) {
    let counts = reference.label_counts();
    let per_block = reference.block_counts(seg.bs);
    // listlabels?sizes=true: every label with its size, ascending
    let pairs = u64s(&seg.get("listlabels?sizes=true").expect(200).body);
    let got: Vec<(u64, u64)> = pairs.chunks_exact(2).map(|p| (p[0], p[1])).collect();
    let want: Vec<(u64, u64)> = counts.iter().map(|(&l, &n)| (l, n)).collect();
    if got != want {
        let gm: BTreeMap<u64, u64> = got.iter().copied().collect();
        let diff: Vec<_> = counts
            .iter()
            .filter(|(l, n)| gm.get(l) != Some(n))
            .map(|(l, n)| (*l, *n, gm.get(l).copied()))
            .take(10)
            .collect();
        panic!(
            "listlabels?sizes=true: {} pairs, want {}; first (label, want, got) diffs {diff:?}; extra {:?}",
            got.len(),
            want.len(),
            gm.keys()
                .filter(|l| !counts.contains_key(l))
                .take(10)
                .collect::<Vec<_>>()
        );
    }
    // existing-labels
    let mut existing: Vec<u64> =
        serde_json::from_value(seg.get("existing-labels").expect(200).json()).expect("u64 array");
    existing.sort_unstable();
    assert_eq!(existing, reference.labels(), "existing-labels");
    // sizes (GET with body), including labels that are gone or never existed
    let mut ask: Vec<u64> = counts.keys().copied().collect();
    ask.extend_from_slice(gone);
    ask.push(MISSING);
    let sizes: Vec<u64> = serde_json::from_value(
        seg.get_with_body("sizes", json_body(&json!(ask)))
            .expect(200)
            .json(),
    )
    .expect("sizes is a u64 array");
    let want: Vec<u64> = ask
        .iter()
        .map(|l| counts.get(l).copied().unwrap_or(0))
        .collect();
    assert!(sizes == want, "sizes differ from the reference");
    // indices: per-block supervoxel counts of every label
    let r = seg
        .get_with_body("indices", json_body(&json!(ask)))
        .expect(200);
    let all: LabelIndices = decode(&r.body);
    assert_eq!(
        all.indices.len(),
        ask.len(),
        "indices: one LabelIndex per requested label"
    );
    for idx in &all.indices {
        match per_block.get(&idx.label) {
            Some(pb) => assert!(
                index_blocks(idx) == expected_blocks(pb, idx.label),
                "indices: label {} blocks differ: got {:?}",
                idx.label,
                index_blocks(idx)
                    .keys()
                    .map(|&k| unpack_block_coord(k))
                    .collect::<Vec<_>>()
            ),
            None => assert!(
                idx.blocks.is_empty(),
                "indices: label {} should be empty",
                idx.label
            ),
        }
    }
    for &l in gone {
        assert_eq!(seg.size_of(l), None, "size of vanished label {l}");
        seg.get(&format!("index/{l}")).expect(404);
        seg.get(&format!("sparsevol/{l}")).expect(404);
    }
}

// ------------------------------------------------------------------ fixture checks

#[test]
fn label_index_endpoints_match_the_fixture() {
    let (srv, root) = start();
    let seg = Seg::create(&srv, &root, "seg", &standard_settings(0));
    let vol = mixed_fixture();
    seg.write(&vol);
    let counts = vol.label_counts();
    let per_block = vol.block_counts(seg.bs);
    verify_index(&seg, &vol, &[]);

    // size
    seg.get("size/9")
        .expect(200)
        .expect_body(r#"{"voxels": 1}"#);
    for l in [3, 7, 11, WIDE, 5000, 5999] {
        assert_eq!(
            seg.get(&format!("size/{l}")).expect(200).json(),
            json!({"voxels": counts[&l]})
        );
    }
    seg.get(&format!("size/{MISSING}")).expect(404);
    seg.get("size/12").expect(404);

    // sparsevol-size: block-aligned bounds
    seg.get("sparsevol-size/9").expect(200).expect_body(
        r#"{"voxels": 1, "numblocks": 1, "minvoxel": [64, 0, 0], "maxvoxel": [127, 63, 63]}"#,
    );
    for l in [3, 7, 11, WIDE] {
        let blocks: Vec<Coord> = per_block[&l].keys().copied().collect();
        let lo: Vec<i32> = (0..3)
            .map(|a| blocks.iter().map(|b| b[a]).min().unwrap() * 64)
            .collect();
        let hi: Vec<i32> = (0..3)
            .map(|a| blocks.iter().map(|b| b[a]).max().unwrap() * 64 + 63)
            .collect();
        assert_eq!(
            seg.get(&format!("sparsevol-size/{l}")).expect(200).json(),
            json!({"voxels": counts[&l], "numblocks": blocks.len(), "minvoxel": lo, "maxvoxel": hi}),
            "sparsevol-size/{l}"
        );
    }
    seg.get(&format!("sparsevol-size/{MISSING}")).expect(404);

    // supervoxels and supervoxel-sizes: without merges a label is its only supervoxel
    assert_eq!(seg.get("supervoxels/7").expect(200).json(), json!([7]));
    assert_eq!(
        seg.get(&format!("supervoxels/{WIDE}")).expect(200).json(),
        json!([WIDE])
    );
    seg.get(&format!("supervoxels/{MISSING}")).expect(404);
    assert_eq!(
        seg.get("supervoxel-sizes/7").expect(200).json(),
        json!({"supervoxels": [7], "sizes": [counts[&7]]})
    );
    seg.get(&format!("supervoxel-sizes/{MISSING}")).expect(404);

    // listlabels without sizes, start (inclusive) and number
    let labels = vol.labels();
    assert_eq!(u64s(&seg.get("listlabels").expect(200).body), labels);
    assert_eq!(
        u64s(&seg.get("listlabels?start=0").expect(200).body),
        labels
    );
    assert_eq!(
        u64s(&seg.get("listlabels?start=11").expect(200).body)[0],
        11
    );
    assert_eq!(
        u64s(&seg.get("listlabels?start=12").expect(200).body)[0],
        5000
    );
    assert_eq!(
        u64s(&seg.get("listlabels?start=5000&number=3").expect(200).body),
        vec![5000, 5001, 5002]
    );
    let page = u64s(
        &seg.get("listlabels?start=5998&number=3&sizes=true")
            .expect(200)
            .body,
    );
    assert_eq!(
        page,
        vec![
            5998,
            counts[&5998],
            5999,
            counts[&5999],
            WIDE,
            counts[&WIDE]
        ]
    );
    assert_eq!(
        u64s(
            &seg.get(&format!("listlabels?start={}", WIDE + 1))
                .expect(200)
                .body
        ),
        Vec::<u64>::new()
    );

    // index/<label>
    for l in [7, 9, WIDE, 5321] {
        let r = seg.get(&format!("index/{l}")).expect(200);
        let idx: LabelIndex = decode(&r.body);
        assert_eq!(idx.label, l);
        assert!(
            index_blocks(&idx) == expected_blocks(&per_block[&l], l),
            "index/{l}: got blocks {:?}",
            idx.blocks
                .keys()
                .map(|&k| unpack_block_coord(k))
                .collect::<Vec<_>>()
        );
        let total: u64 = idx
            .blocks
            .values()
            .flat_map(|s| s.counts.values())
            .map(|&n| u64::from(n))
            .sum();
        assert_eq!(total, counts[&l]);
    }
    seg.get(&format!("index/{MISSING}")).expect(404);
}

#[test]
fn indices_and_indices_compressed() {
    let (srv, root) = start();
    let seg = Seg::create(&srv, &root, "seg", &standard_settings(0));
    let vol = mixed_fixture();
    seg.write(&vol);
    let per_block = vol.block_counts(seg.bs);
    let ask = [7, MISSING, 9, WIDE, 5050];
    let all: LabelIndices = decode(
        &seg.get_with_body("indices", json_body(&json!(ask)))
            .expect(200)
            .body,
    );
    let by_label: BTreeMap<u64, &LabelIndex> = all.indices.iter().map(|i| (i.label, i)).collect();
    assert_eq!(all.indices.len(), ask.len());
    assert_eq!(by_label.keys().copied().collect::<Vec<_>>(), {
        let mut s = ask.to_vec();
        s.sort_unstable();
        s
    });
    let missing = by_label[&MISSING];
    assert!(
        missing.blocks.is_empty() && missing.last_mutid == 0 && missing.last_mod_user.is_empty(),
        "a missing label carries only its label: {missing:?}"
    );

    let r = seg
        .get_with_body("indices-compressed", json_body(&json!(ask)))
        .expect(200);
    let b = &r.body;
    let mut at = 0;
    let mut seen = Vec::new();
    while at < b.len() {
        assert!(
            b.len() - at >= 16,
            "indices-compressed: truncated record header"
        );
        let n = u64::from_le_bytes(b[at..at + 8].try_into().unwrap()) as usize;
        let label = u64::from_le_bytes(b[at + 8..at + 16].try_into().unwrap());
        at += 16;
        assert!(
            b.len() - at >= n,
            "indices-compressed: label {label} record of {n} bytes truncated"
        );
        let rec = &b[at..at + n];
        at += n;
        seen.push(label);
        if label == MISSING {
            assert_eq!(n, 0, "missing label has length 0");
            continue;
        }
        assert!(n > 5, "label {label}: empty record");
        assert_eq!(
            rec[0], 0x80,
            "label {label}: DVID serialization byte (lz4, no checksum)"
        );
        let len = u32::from_le_bytes(rec[1..5].try_into().unwrap()) as usize;
        let pb = lz4_decompress(&rec[5..], len).unwrap_or_else(|e| panic!("label {label}: {e}"));
        let idx: LabelIndex = decode(&pb);
        assert_eq!(idx.label, label);
        assert!(
            index_blocks(&idx) == expected_blocks(&per_block[&label], label),
            "label {label}"
        );
        assert_eq!(
            &idx, by_label[&label],
            "indices-compressed and indices agree for {label}"
        );
    }
    seen.sort_unstable();
    let mut want = ask.to_vec();
    want.sort_unstable();
    assert_eq!(seen, want, "one record per requested label");
}

// ------------------------------------------------------------------ overwrites

#[test]
fn index_stays_exact_across_overwrites() {
    let (srv, root) = start();
    let seg = Seg::create(&srv, &root, "seg", &standard_settings(0));
    let mut reference = mixed_fixture();
    seg.write(&reference);
    // writing identical content again must not double-count
    seg.write(&reference);
    verify_index(&seg, &reference, &[]);

    // 1. block (0,0,0): label 7 shrinks, the wide slab leaves this block, label 12 appears
    let b = Volume::from_fn([0; 3], [64; 3], |x, y, _| {
        if x < 32 {
            7
        } else if y < 16 {
            12
        } else {
            0
        }
    });
    seg.write(&b);
    reference.paste(&b);
    verify_index(&seg, &reference, &[]);

    // 2. block (1,0,0): label 9 disappears entirely
    let b = Volume::from_fn(
        [64, 0, 0],
        [64; 3],
        |x, _, z| if x == 100 && z < 5 { 12 } else { 0 },
    );
    seg.write(&b);
    reference.paste(&b);
    assert!(!reference.label_counts().contains_key(&9));
    verify_index(&seg, &reference, &[9]);
    assert!(!u64s(&seg.get("listlabels").expect(200).body).contains(&9));

    // 3. the noisy block rewritten through POST blocks with other labels and counts
    let noisy =
        noise_fixture([128; 3], 99, &[0, 5000, 5001, 5002, 6000, 6001]).block([1, 1, 1], [64; 3]);
    let gone: Vec<u64> = (5003..6000).collect();
    seg.post(
        "blocks",
        records_body(&[([1, 1, 1], gzip(&encode_block(&noisy)))]),
    )
    .expect(200);
    reference.paste(&noisy);
    verify_index(&seg, &reference, &gone[..5]);

    // 4. a two-block POST raw spanning blocks (0,1,0) and (1,1,0)
    let b = Volume::from_fn([0, 64, 0], [128, 64, 64], |x, y, z| {
        if (x + y) % 7 == 0 {
            3
        } else if z > 60 {
            6001
        } else {
            0
        }
    });
    seg.write(&b);
    reference.paste(&b);
    verify_index(&seg, &reference, &gone[..5]);
    assert_eq!(
        seg.get("sparsevol-size/3").expect(200).json()["voxels"],
        reference.label_counts()[&3]
    );
}

// ------------------------------------------------------------------ lastmod

#[test]
fn lastmod_records_user_app_and_mutation() {
    let (srv, root) = start();
    let seg = Seg::create(&srv, &root, "seg", &standard_settings(0));
    let mut a = Volume::filled([128, 64, 64], 0);
    for x in 0..64 {
        a.set([x, 0, 0], 21);
        a.set([x + 64, 1, 1], 22);
    }
    seg.post_raw(&a, "u=alice&app=tester").expect(200);
    let lm = seg.get("lastmod/21").expect(200).json();
    assert_eq!(lm["last mod user"], "alice", "{lm}");
    assert_eq!(lm["last mod app"], "tester", "{lm}");
    let t = lm["last mod time"]
        .as_str()
        .unwrap_or_else(|| panic!("{lm}"));
    assert!(
        t.len() >= 20 && t.as_bytes()[10] == b'T',
        "RFC3339 time: {t:?}"
    );
    let first = lm["mutation id"]
        .as_u64()
        .unwrap_or_else(|| panic!("mutation id: {lm}"));
    let idx: LabelIndex = decode(&seg.get("index/21").expect(200).body);
    assert_eq!(idx.last_mod_user, "alice");
    assert_eq!(idx.last_mod_app, "tester");
    assert_eq!(idx.last_mutid, first);

    // bob rewrites only block (0,0,0): label 21 changes, label 22 (block (1,0,0)) does not
    let mut b = Volume::zeros([64; 3]);
    b.set([5, 5, 5], 21);
    seg.post_raw(&b, "u=bob&app=other").expect(200);
    let lm = seg.get("lastmod/21").expect(200).json();
    assert_eq!(lm["last mod user"], "bob", "{lm}");
    assert_eq!(lm["last mod app"], "other", "{lm}");
    assert!(
        lm["mutation id"].as_u64().unwrap() > first,
        "mutation id must increase: {lm}"
    );
    assert_eq!(
        seg.get("lastmod/22").expect(200).json()["last mod user"],
        "alice"
    );
    seg.get(&format!("lastmod/{MISSING}")).expect(404);
}

// ------------------------------------------------------------------ label 0

#[test]
fn label_zero_is_rejected() {
    let (srv, root) = start();
    let seg = Seg::create(&srv, &root, "seg", &standard_settings(0));
    seg.write(&mixed_fixture());
    assert_eq!(seg.label_at([0, 0, 0], ""), 0, "fixture sanity");
    for rest in [
        "size/0",
        "sparsevol/0",
        "sparsevol-size/0",
        "sparsevol-coarse/0",
        "sparsevols-coarse/0/10",
        "supervoxels/0",
        "supervoxel-sizes/0",
        "index/0",
        "lastmod/0",
        "sparsevol-by-point/0_0_0",
        "sparsevol-by-point/1000_1000_1000",
    ] {
        seg.get(rest).expect(400);
    }
    assert_eq!(seg.head("sparsevol/0").status, 400, "HEAD sparsevol/0");
}

// ------------------------------------------------------------------ maxlabel / nextlabel

#[test]
fn maxlabel_and_nextlabel() {
    let (srv, root) = start();
    let seg = Seg::create(&srv, &root, "seg", &standard_settings(0));
    seg.get("maxlabel").expect(400);
    seg.get("nextlabel")
        .expect(200)
        .expect_body(r#"{"nextlabel": 1}"#);
    let vol = Volume::from_fn([0; 3], [64; 3], |x, _, _| (x % 43) as u64);
    seg.write(&vol);
    seg.get("maxlabel")
        .expect(200)
        .expect_body(r#"{"maxlabel": 42}"#);
    seg.get("nextlabel")
        .expect(200)
        .expect_body(r#"{"nextlabel": 43}"#);
    seg.post_empty("nextlabel/5")
        .expect(200)
        .expect_body(r#"{"start": 43, "end": 47}"#);
    assert_eq!(seg.maxlabel(), 47, "reserving labels raises the max label");
    seg.get("nextlabel")
        .expect(200)
        .expect_body(r#"{"nextlabel": 48}"#);
    seg.post_empty("nextlabel/1")
        .expect(200)
        .expect_body(r#"{"start": 48, "end": 48}"#);
    // a write with a higher label raises it; a write with lower labels does not lower it
    let mut hi = Volume::filled([64; 3], 100);
    hi.origin = [64, 0, 0];
    seg.write(&hi);
    assert_eq!(seg.maxlabel(), 100);
    seg.get("nextlabel")
        .expect(200)
        .expect_body(r#"{"nextlabel": 101}"#);
    let mut lo = Volume::filled([64; 3], 2);
    lo.origin = [64, 0, 0];
    seg.write(&lo);
    assert_eq!(seg.maxlabel(), 100);
    assert_eq!(seg.info()["Extended"]["MaxRepoLabel"], 100);
}

#[test]
fn admin_maxlabel_and_set_nextlabel() {
    let srv = Server::builder()
        .config("[auth]\nadmin_token = \"tok\"\n")
        .admin_token("tok")
        .start();
    let root = srv.create_repo("admin");
    let seg = Seg::create(&srv, &root, "seg", &standard_settings(0));
    seg.post_empty("maxlabel/100").expect_4xx();
    seg.post_empty("maxlabel/100?admintoken=wrong").expect_4xx();
    seg.get("maxlabel").expect(400);
    seg.post_empty("maxlabel/100?admintoken=tok").expect(200);
    assert_eq!(seg.maxlabel(), 100);
    seg.get("nextlabel")
        .expect(200)
        .expect_body(r#"{"nextlabel": 101}"#);
    // never lowers
    let _ = seg.post_empty("maxlabel/50?admintoken=tok");
    assert_eq!(seg.maxlabel(), 100);
    seg.post_empty("maxlabel/0?admintoken=tok").expect(400);
    seg.post_empty(&format!("maxlabel/{}?admintoken=tok", (1u64 << 48) + 1))
        .expect(400);
    assert_eq!(seg.maxlabel(), 100);

    seg.post_empty("set-nextlabel/1000").expect_4xx();
    seg.get("nextlabel")
        .expect(200)
        .expect_body(r#"{"nextlabel": 101}"#);
    seg.post_empty("set-nextlabel/1000?admintoken=tok")
        .expect(200);
    seg.get("nextlabel")
        .expect(200)
        .expect_body(r#"{"nextlabel": 1001}"#);
    seg.post_empty("nextlabel/3")
        .expect(200)
        .expect_body(r#"{"start": 1001, "end": 1003}"#);
    seg.get("nextlabel")
        .expect(200)
        .expect_body(r#"{"nextlabel": 1004}"#);
    assert_eq!(
        seg.maxlabel(),
        1003,
        "allocated labels raise the version max label"
    );
}

#[test]
fn child_inherits_maxlabel_and_parent_keeps_its_own() {
    let (srv, root) = start();
    let seg = Seg::create(&srv, &root, "seg", &standard_settings(0));
    seg.write(&Volume::filled([64; 3], 10));
    assert_eq!(seg.maxlabel(), 10);
    srv.commit(&root);
    let child_uuid = srv.newversion(&root);
    let child = seg.at(&child_uuid);
    assert_eq!(
        child.maxlabel(),
        10,
        "a child inherits its parent's max label"
    );
    let mut b = Volume::filled([64; 3], 20);
    b.origin = [64, 0, 0];
    child.write(&b);
    assert_eq!(child.maxlabel(), 20);
    assert_eq!(
        seg.maxlabel(),
        10,
        "the committed parent keeps its own max label"
    );
    assert_eq!(child.size_of(10), Some(64 * 64 * 64));
    assert_eq!(seg.size_of(20), None);
    assert_eq!(child.size_of(20), Some(64 * 64 * 64));
    assert_eq!(u64s(&seg.get("listlabels").expect(200).body), vec![10]);
    assert_eq!(
        u64s(&child.get("listlabels").expect(200).body),
        vec![10, 20]
    );
}

#[test]
fn negative_block_coordinates_in_the_index() {
    let (srv, root) = start();
    let seg = Seg::create(&srv, &root, "seg", &standard_settings(0));
    let vol = Volume::from_fn([-128, -64, 64], [192, 64, 64], |x, y, z| {
        if (x + y + z).rem_euclid(5) == 0 {
            31
        } else {
            0
        }
    });
    seg.write(&vol);
    verify_index(&seg, &vol, &[]);
    let idx: LabelIndex = decode(&seg.get("index/31").expect(200).body);
    let keys: Vec<Coord> = idx.blocks.keys().map(|&k| unpack_block_coord(k)).collect();
    let mut want = vec![[-2, -1, 1], [-1, -1, 1], [0, -1, 1]];
    let mut got = keys.clone();
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want, "sign-magnitude packed block keys");
    assert_eq!(
        seg.get("sparsevol-size/31").expect(200).json(),
        json!({"voxels": vol.label_counts()[&31], "numblocks": 3,
               "minvoxel": [-128, -64, 64], "maxvoxel": [63, -1, 127]})
    );
}

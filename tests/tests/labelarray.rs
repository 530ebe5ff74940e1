//! labelarray datatype (spec §4.3): labelmap's blocks, index and pyramid without a supervoxel
//! mapping. Round trips at unaligned and negative boxes, neuroglancer reads, blocks, and the
//! mutations that rewrite voxels: merge, split, split-coarse; versions; bad input.

use tessera_tests::labels::*;
use tessera_tests::*;

/// The fixture's box: 64³ voxels from (-32, -32, -32), eight 32³ blocks.
const ORIGIN: Coord = [-32, -32, -32];
const SIZE: [usize; 3] = [64, 64, 64];

fn settings() -> Value {
    json!({
        "BlockSize": "32,32,32",
        "VoxelSize": "8,8,8",
        "VoxelUnits": "nanometers",
        "IndexedLabels": "true",
        "MaxDownresLevel": "1",
    })
}

/// Labels 1–5 crossing block faces on every axis; label 5 is a plane at y = 7.
fn fixture() -> Volume {
    Volume::from_fn(ORIGIN, SIZE, |x, y, z| {
        if x < -10 {
            1
        } else if x < 10 && y < 0 {
            2
        } else if x < 10 {
            3
        } else if z < 5 {
            4
        } else if y == 7 {
            5
        } else {
            0
        }
    })
}

fn setup(srv: &Server) -> (String, Seg<'_>) {
    let root = srv.create_repo("labelarray");
    let arr = Seg::create_typed(srv, &root, "labelarray", "arr", &settings());
    arr.write(&fixture());
    (root, arr)
}

fn relabelled(vol: &Volume, f: impl Fn(Coord, u64) -> u64) -> Volume {
    Volume::from_fn(vol.origin, vol.size, |x, y, z| {
        f([x, y, z], vol.get([x, y, z]))
    })
}

fn rles(r: &Response) -> VoxelSet {
    rles_voxels(&r.body).unwrap_or_else(|e| panic!("{}: {e}", r.what))
}

/// Every label any stored block's label table holds (payloads as `compression=blocks`).
fn stored_labels(seg: &Seg<'_>, query: &str) -> std::collections::BTreeSet<u64> {
    let q = if query.is_empty() {
        "compression=blocks".to_string()
    } else {
        format!("compression=blocks&{query}")
    };
    let mut out = std::collections::BTreeSet::new();
    for (c, payload) in seg.blocks(ORIGIN, SIZE, &q) {
        let raw = gunzip(&payload).unwrap_or_else(|e| panic!("block {c:?}: {e}"));
        let v = decode_block(&raw).unwrap_or_else(|e| panic!("block {c:?}: {e}"));
        out.extend(v.labels());
    }
    out
}

#[test]
fn create_info_and_no_mapping_endpoints() {
    let srv = Server::start();
    let (root, arr) = setup(&srv);
    let info = arr.info();
    assert_eq!(info["Base"]["TypeName"], "labelarray", "{info}");
    assert_eq!(
        info["Base"]["TypeURL"],
        "github.com/janelia-flyem/dvid/datatype/labelarray"
    );
    let ext = &info["Extended"];
    assert_eq!(ext["Values"][0]["Label"], "labelarray", "{ext}");
    assert_eq!(ext["BlockSize"], json!([32, 32, 32]));
    assert_eq!(ext["MaxDownresLevel"], 1);
    assert_eq!(ext["IndexedLabels"], true);
    assert_eq!(ext["MinPoint"], json!([-32, -32, -32]), "{ext}");
    assert_eq!(ext["MaxPoint"], json!([31, 31, 31]), "{ext}");
    // No mapping, no supervoxels.
    arr.get_with_body("mapping", "[1]").expect(400);
    arr.get("mappings").expect(400);
    arr.get("supervoxels/1").expect(400);
    arr.post("cleave/1", "[1]").expect(400);
    arr.post("renumber", "[100, 1]").expect(400);
    arr.get("mesh/1").expect(400);
    // KeepMeshes is labelmap's.
    let mut body =
        json!({"typename": "labelarray", "dataname": "withmeshes", "KeepMeshes": "true"});
    for (k, v) in settings().as_object().unwrap() {
        body[k] = v.clone();
    }
    srv.post_json(&format!("/api/repo/{root}/instance"), &body)
        .expect_4xx();
    let types = srv.get("/api/server/compiled-types").expect(200).json();
    assert!(types.to_string().contains("labelarray"), "{types}");
}

#[test]
fn round_trips_at_unaligned_negative_boxes() {
    let srv = Server::start();
    let (root, arr) = setup(&srv);
    let vol = fixture();
    for (offset, size) in [
        ([-17, -5, -29], [41, 23, 37]),
        ([-32, -32, -32], [64, 64, 64]),
        ([-40, 20, -1], [30, 30, 3]),
    ] {
        let got = arr.raw(offset, size, "");
        assert!(
            got == vol.region(offset, size),
            "raw at {offset:?} size {size:?}"
        );
        let gz = arr
            .get(&format!(
                "raw/0_1_2/{}_{}_{}/{}_{}_{}?compression=gzip",
                size[0], size[1], size[2], offset[0], offset[1], offset[2]
            ))
            .expect(200);
        let got = Volume::from_le_bytes(offset, size, &gunzip(&gz.body).unwrap());
        assert!(got == vol.region(offset, size), "gzip raw at {offset:?}");
    }
    assert_eq!(arr.label_at([-20, -20, -20], ""), 1);
    assert_eq!(arr.label_at([0, -1, 0], ""), 2);
    assert_eq!(arr.label_at([15, 7, 20], ""), 5);
    assert_eq!(arr.label_at([100, 100, 100], ""), 0);
    let r = arr
        .get_with_body("labels", "[[-20,-20,-20],[0,5,0],[12,0,-3],[40,40,40]]")
        .expect(200)
        .json();
    assert_eq!(r, json!([1, 3, 4, 0]));

    // Scale 1: the mode downres of the fixture.
    let half = downres(&vol);
    let got = arr.raw([-16, -16, -16], [32, 32, 32], "scale=1");
    assert!(got == half, "scale 1");
    arr.get("raw/0_1_2/8_8_8/0_0_0?scale=2").expect(400);

    // Block records in every payload coding.
    let blocks = vol.nonempty_blocks(arr.bs);
    assert_eq!(blocks.len(), 8);
    for compression in ["blocks", "uncompressed", "lz4", "gzip"] {
        let recs = arr.blocks(ORIGIN, SIZE, &format!("compression={compression}"));
        arr.check_records(&recs, compression, &vol, &blocks, &blocks);
    }

    // neuroglancer: the same bytes as a labelmap holding the same voxels.
    let map = Seg::create(&srv, &root, "map", &settings());
    map.write(&vol);
    for q in ["compression=google", "compression=googlegzip&scale=0"] {
        let path = format!("raw/0_1_2/64_64_64/-32_-32_-32?{q}");
        let a = arr.get(&path).expect(200);
        let m = map.get(&path).expect(200);
        assert!(a.body == m.body, "{q}: labelarray and labelmap differ");
        if q.contains("googlegzip") {
            assert_eq!(a.header("content-encoding").as_deref(), Some("gzip"));
        }
    }

    // pseudocolor: labelblk's colours of the same voxels.
    let blk = Seg::create_typed(&srv, &root, "labelblk", "blk", &json!({}));
    let blk = Seg { bs: [32; 3], ..blk };
    blk.write(&vol);
    for path in [
        "pseudocolor/0_1/40_30/-20_-10_3",
        "pseudocolor/xz/17_9/-3_2_-30",
    ] {
        let a = arr.get(path).expect(200);
        assert_eq!(a.header("content-type").as_deref(), Some("image/png"));
        assert!(a.body == blk.get(path).expect(200).body, "{path}");
    }
    arr.get("pseudocolor/0_1_2/8_8_8/0_0_0").expect(400);
    arr.get("pseudocolor/0_1/8_8/0_0_0?scale=1").expect(200);

    // Index-backed reads.
    let counts = vol.label_counts();
    for l in 1..=5u64 {
        assert_eq!(arr.size_of(l), Some(counts[&l]), "size of {l}");
        let got = rles(&arr.get(&format!("sparsevol/{l}")).expect(200));
        assert!(got == vol.voxel_set(l), "sparsevol/{l}");
    }
    assert_eq!(arr.size_of(6), None);
    arr.get("sparsevol/6").expect(404);
    arr.head("sparsevol/3").expect(200);
    arr.head("sparsevol/6").expect(204);
    let got = rles(&arr.get("sparsevol-by-point/0_5_0").expect(200));
    assert!(got == vol.voxel_set(3), "sparsevol-by-point");
    let coarse = coarse_rles(&arr.get("sparsevol-coarse/4").expect(200).body).unwrap();
    let want: VoxelSet = [[0, -1, -1], [0, 0, -1], [0, -1, 0], [0, 0, 0]]
        .into_iter()
        .collect();
    assert_eq!(coarse, want, "sparsevol-coarse/4");
    assert_eq!(arr.maxlabel(), 5);
    assert_eq!(arr.get("nextlabel").expect(200).json()["nextlabel"], 6);
}

#[test]
fn merge_rewrites_voxels_and_the_index_follows() {
    let srv = Server::start();
    let (_root, arr) = setup(&srv);
    let vol = fixture();
    let counts = vol.label_counts();
    let r = arr.post("merge", "[1, 2, 5]").expect(200).json();
    assert!(r["MutationID"].as_u64().is_some(), "{r}");
    let want = relabelled(&vol, |_, l| if l == 2 || l == 5 { 1 } else { l });
    assert!(arr.raw(ORIGIN, SIZE, "") == want, "raw after merge");
    // The voxels themselves changed: no stored block holds 2 or 5 at any scale.
    for q in ["", "scale=1"] {
        let stored = stored_labels(&arr, q);
        assert!(
            !stored.contains(&2) && !stored.contains(&5),
            "stored labels {q}: {stored:?}"
        );
        assert!(stored.contains(&1), "stored labels {q}: {stored:?}");
    }
    assert!(
        arr.raw([-16, -16, -16], [32, 32, 32], "scale=1") == downres(&want),
        "scale 1 after merge"
    );
    assert_eq!(arr.size_of(1), Some(counts[&1] + counts[&2] + counts[&5]));
    assert_eq!(arr.size_of(2), None);
    assert_eq!(arr.size_of(5), None);
    arr.get("sparsevol/2").expect(404);
    let got = rles(&arr.get("sparsevol/1").expect(200));
    assert!(got == want.voxel_set(1), "sparsevol/1 after merge");
    assert_eq!(arr.size_of(3), Some(counts[&3]), "bystander label");
    let log = arr.get("mutations").expect(200).json();
    assert!(
        log.to_string().contains("merge-complete"),
        "mutations: {log}"
    );

    // Bad merges change nothing.
    arr.post("merge", "[1, 2]").expect(400);
    arr.post("merge", "[3, 3]").expect(400);
    arr.post("merge", "[0, 3]").expect(400);
    arr.post("merge", "not json").expect(400);
    assert!(arr.raw(ORIGIN, SIZE, "") == want, "raw after bad merges");
}

/// The voxels of `label` in `vol` for which `keep` holds, as a voxel set.
fn subset(vol: &Volume, label: u64, keep: impl Fn(Coord) -> bool) -> VoxelSet {
    vol.voxel_set(label)
        .into_iter()
        .filter(|p| keep(*p))
        .collect()
}

#[test]
fn split_and_split_coarse_rewrite_voxels() {
    let srv = Server::start();
    let (_root, arr) = setup(&srv);
    let vol = fixture();
    let counts = vol.label_counts();

    // Part of label 3 (crossing z blocks) into a new label.
    let part = subset(&vol, 3, |p| p[2] < 3 && p[0] > -5);
    let r = arr.post("split/3", encode_rles(&part)).expect(200).json();
    let new = r["label"].as_u64().unwrap_or_else(|| panic!("{r}"));
    assert_eq!(new, 6, "the next label after max label 5");
    let mut want = relabelled(
        &vol,
        |p, l| if l == 3 && part.contains(&p) { new } else { l },
    );
    assert!(arr.raw(ORIGIN, SIZE, "") == want, "raw after split");
    assert_eq!(arr.size_of(new), Some(part.len() as u64));
    assert_eq!(arr.size_of(3), Some(counts[&3] - part.len() as u64));
    assert!(rles(&arr.get(&format!("sparsevol/{new}")).expect(200)) == part);
    assert!(
        arr.raw([-16, -16, -16], [32, 32, 32], "scale=1") == downres(&want),
        "scale 1 after split"
    );

    // A split label chosen by the client.
    let part2 = subset(&vol, 1, |p| p[1] > 20);
    let r = arr
        .post("split/1?splitlabel=100", encode_rles(&part2))
        .expect(200)
        .json();
    assert_eq!(r["label"], 100, "{r}");
    want = relabelled(
        &want,
        |p, l| if l == 1 && part2.contains(&p) { 100 } else { l },
    );
    assert!(arr.raw(ORIGIN, SIZE, "") == want, "raw after splitlabel");
    assert_eq!(arr.maxlabel(), 100);

    // Runs over voxels of another label, label 0, or bad bodies: 400, nothing written.
    let mut bad = subset(&want, 4, |_| true);
    bad.insert([-20, 0, 0]);
    arr.post("split/4", encode_rles(&bad)).expect(400);
    arr.post("split/4", vec![1u8; 12]).expect(400);
    arr.post("split/4", vec![0u8; 5]).expect(400);
    arr.post("split/77", encode_rles(&bad)).expect(400);
    arr.post("split/4?splitlabel=4", encode_rles(&bad))
        .expect(400);
    assert!(arr.raw(ORIGIN, SIZE, "") == want, "raw after bad splits");
    assert_eq!(arr.maxlabel(), 100);

    // split-coarse: every voxel of 4 in block (0, -1, -1).
    let mut coarse = VoxelSet::new();
    coarse.insert([0, -1, -1]);
    let r = arr
        .post("split-coarse/4", encode_rles(&coarse))
        .expect(200)
        .json();
    let c = r["label"].as_u64().unwrap_or_else(|| panic!("{r}"));
    assert_eq!(c, 101);
    let in_block = |p: Coord| p[0] >= 0 && p[1] < 0 && p[2] < 0;
    want = relabelled(&want, |p, l| if l == 4 && in_block(p) { c } else { l });
    assert!(arr.raw(ORIGIN, SIZE, "") == want, "raw after split-coarse");
    assert_eq!(arr.size_of(c), Some(want.label_counts()[&c]));
    // A block without the label: 400.
    let mut none = VoxelSet::new();
    none.insert([-1, -1, -1]);
    arr.post("split-coarse/4", encode_rles(&none)).expect(400);
    assert!(
        arr.raw(ORIGIN, SIZE, "") == want,
        "raw after a bad split-coarse"
    );
}

#[test]
fn mutations_are_versioned() {
    let srv = Server::start();
    let (root, arr) = setup(&srv);
    let vol = fixture();
    srv.commit(&root);
    let child = srv.newversion(&root);
    let arr_child = arr.at(&child);
    arr_child.post("merge", "[3, 2]").expect(200);
    let merged = relabelled(&vol, |_, l| if l == 2 { 3 } else { l });
    assert!(
        arr_child.raw(ORIGIN, SIZE, "") == merged,
        "child after merge"
    );
    assert!(arr.raw(ORIGIN, SIZE, "") == vol, "root unchanged");
    assert_eq!(arr.size_of(2), Some(vol.label_counts()[&2]));
    assert_eq!(arr_child.size_of(2), None);
    // Writes to the locked root are refused.
    arr.post("merge", "[3, 2]").expect_4xx();
    // A new block at the child only.
    let extra = Volume::from_fn([32, 0, 0], [32, 32, 32], |_, _, _| 9);
    arr_child.write(&extra);
    assert_eq!(arr_child.label_at([40, 1, 1], ""), 9);
    assert_eq!(arr.label_at([40, 1, 1], ""), 0);
    assert_eq!(arr_child.size_of(9), Some(32 * 32 * 32));
    assert_eq!(arr.size_of(9), None);
}

#[test]
fn bad_writes_store_nothing() {
    let srv = Server::start();
    let root = srv.create_repo("labelarray");
    let arr = Seg::create_typed(&srv, &root, "labelarray", "arr", &settings());
    let vol = Volume::from_fn([-32, 0, 0], [32, 32, 32], |_, _, _| 4);
    // Unaligned offset, wrong length, 2-D, isotropic.
    arr.post("raw/0_1_2/32_32_32/-31_0_0", vol.to_le_bytes())
        .expect(400);
    arr.post("raw/0_1_2/32_32_32/-32_0_0", vec![0u8; 100])
        .expect(400);
    arr.post("raw/0_1/32_32/-32_0_0", vol.to_le_bytes())
        .expect_4xx();
    arr.post("blocks", vec![1u8, 2, 3]).expect(400);
    let info = arr.info();
    assert!(info["Extended"]["MinPoint"].is_null(), "{info}");
    assert_eq!(arr.size_of(4), None);
    assert!(
        arr.raw([-32, 0, 0], [32, 32, 32], "")
            == Volume::from_fn([-32, 0, 0], [32, 32, 32], |_, _, _| 0)
    );
    arr.write(&vol);
    assert_eq!(arr.size_of(4), Some(32 * 32 * 32));
}

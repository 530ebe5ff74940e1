//! labelmap `GET history/<label>/<from UUID>/<to UUID>` (DVID's mutation history of a label):
//! the supervoxels the label has at `to`, the bodies that held them at `from`, and the merges,
//! renumbers, cleaves and splits of those bodies (and the supervoxel splits that made or split
//! those supervoxels) over the versions from `from` to `to`, oldest first, in DVID's record
//! shapes, as one JSON array.
//!
//! Fixture: the spec §6.2 cubes (supervoxels 1, 2, 13, 209, 311; 128³, 64³ blocks).

use tessera_tests::labels::*;
use tessera_tests::*;

/// The voxels of supervoxel `sv` with z below `z`.
fn lower(v: &Volume, sv: u64, z: i32) -> VoxelSet {
    voxels_where(v, [0; 3], [128, 128, z], |l| l == sv)
}

#[test]
fn history_lists_the_mutations_of_a_labels_bodies_across_versions() {
    let srv = Server::start();
    let root = srv.create_repo("history");
    let seg = Seg::create(&srv, &root, "seg", &standard_settings(1));
    let vol = spec_cubes_fixture();
    seg.write(&vol);
    // root: one merge into 13, one elsewhere
    seg.merge_ok(&[13, 1], "");
    seg.merge_ok(&[2, 311], "");
    srv.commit(&root);
    let child = srv.newversion(&root);
    let seg = seg.at(&child);
    seg.merge_ok(&[13, 209], "");
    assert_eq!(seg.cleave_ok(13, &[1], "").0, 312);
    // 209 → 313 (z < 60) and 314
    let (s, r, _) = seg.split_supervoxel_ok(209, &lower(&vol, 209, 60), "");
    assert_eq!((s, r), (313, 314));
    // part of 313 leaves body 13: new body 315, 313 → 316 (split off) and 317 (remains)
    let part = voxels_where(&vol, [0; 3], [128, 128, 50], |l| l == 209);
    assert_eq!(seg.split_ok(13, &part, "").0, 315);
    assert_eq!(
        seg.supervoxels_of(13),
        Some([13, 314, 317].into_iter().collect())
    );
    seg.merge_ok(&[2, 312], "");
    seg.renumber(&[900, 315], "").expect(200);

    let history = |label: u64, from: &str, to: &str| {
        seg.get(&format!("history/{label}/{from}/{to}"))
            .expect(200)
            .text()
    };
    let merge_1 = r#"{"Action":"merge","Target":13,"Labels":[1]}"#;
    let merge_311 = r#"{"Action":"merge","Target":2,"Labels":[311]}"#;
    let merge_209 = r#"{"Action":"merge","Target":13,"Labels":[209]}"#;
    let cleave =
        r#"{"Action":"cleave","OrigLabel":13,"CleavedLabel":312,"CleavedSupervoxels":[1]}"#;
    let sv_split = r#"{"Action":"split-supervoxel","Supervoxel":209,"SplitSupervoxel":313,"RemainSupervoxel":314}"#;
    let split = r#"{"Action":"split","Target":13,"NewLabel":315,"Coarse":false}"#;
    let merge_312 = r#"{"Action":"merge","Target":2,"Labels":[312]}"#;
    // body 13 at the child: supervoxels 13, 314, 317; at the root 13 was body 13 (314 and 317
    // did not exist yet, so they name only themselves)
    assert_eq!(
        history(13, &root, &child),
        format!("[{merge_1},{merge_209},{cleave},{sv_split},{split}]")
    );
    // only the child's records
    assert_eq!(
        history(13, &child, &child),
        format!("[{merge_209},{cleave},{sv_split},{split}]")
    );
    // the root alone: body 13 there holds 13 and 1
    assert_eq!(history(13, &root, &root), format!("[{merge_1}]"));
    // body 2 at the child holds 2, 311 and 1: bodies 2 and 13 at the root
    assert_eq!(
        history(2, &root, &child),
        format!("[{merge_1},{merge_311},{merge_209},{cleave},{split},{merge_312}]")
    );
    // a renumber is a merge into the new label (DVID logs it as one)
    assert_eq!(
        history(900, &child, &child),
        r#"[{"Action":"merge","Target":900,"Labels":[315]}]"#
    );
    // a label without voxels at `to` has no history
    assert_eq!(history(424242, &root, &child), "[]");
    let v = seg
        .get(&format!("history/13/{root}/{child}"))
        .expect(200)
        .json();
    assert_eq!(v.as_array().map(Vec::len), Some(5), "one JSON document");

    // bad requests
    seg.get(&format!("history/0/{root}/{child}")).expect(400);
    seg.get(&format!("history/x/{root}/{child}")).expect(400);
    seg.get(&format!("history/13/{root}")).expect(400);
    seg.get(&format!("history/13/{child}/{root}")).expect(400);
    seg.get(&format!(
        "history/13/{root}/ffffffffffffffffffffffffffffffff"
    ))
    .expect(400);
}

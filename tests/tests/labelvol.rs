//! labelvol datatype (spec §4.11, §6.1): the sparse-volume index of a labelblk. It follows the
//! labelblk's writes through the sync (`GET /api/server/sync?wait=` says when it has), and its
//! merges and splits rewrite the labelblk's voxels.

use tessera_tests::labels::*;
use tessera_tests::*;

const ORIGIN: Coord = [-32, -32, -32];
const SIZE: [usize; 3] = [64, 64, 64];

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

fn caught_up(srv: &Server) {
    let s = srv.get("/api/server/sync?wait=60").expect(200).json();
    assert_eq!(s["CaughtUp"], true, "sync: {s}");
}

/// A labelblk `blk` and a labelvol `vol` synced both ways (as dvision pairs them), the
/// fixture written to the labelblk and indexed.
fn setup(srv: &Server) -> (String, Seg<'_>, Seg<'_>) {
    let root = srv.create_repo("labelvol");
    let blk = Seg::create_typed(srv, &root, "labelblk", "blk", &json!({}));
    let blk = Seg { bs: [32; 3], ..blk };
    let vol = Seg::create_typed(srv, &root, "labelvol", "vol", &json!({}));
    let vol = Seg { bs: [32; 3], ..vol };
    vol.post("sync", json!({"sync": "blk"}).to_string())
        .expect(200);
    blk.post("sync", json!({"sync": "vol"}).to_string())
        .expect(200);
    blk.write(&fixture());
    caught_up(srv);
    (root, blk, vol)
}

fn rles(r: &Response) -> VoxelSet {
    rles_voxels(&r.body).unwrap_or_else(|e| panic!("{}: {e}", r.what))
}

#[track_caller]
fn check_index(vol: &Seg<'_>, want: &Volume, labels: &[u64]) {
    let counts = want.label_counts();
    for &l in labels {
        match counts.get(&l) {
            Some(&n) => {
                let got = rles(&vol.get(&format!("sparsevol/{l}")).expect(200));
                assert!(got == want.voxel_set(l), "sparsevol/{l}");
                assert_eq!(vol.size_of(l), Some(n), "size of {l}");
                let coarse =
                    coarse_rles(&vol.get(&format!("sparsevol-coarse/{l}")).expect(200).body)
                        .unwrap();
                let blocks: VoxelSet = want
                    .voxel_set(l)
                    .iter()
                    .map(|p| block_of(*p, vol.bs))
                    .collect();
                assert_eq!(coarse, blocks, "sparsevol-coarse/{l}");
            }
            None => {
                vol.get(&format!("sparsevol/{l}")).expect(404);
                assert_eq!(vol.size_of(l), None, "size of {l}");
            }
        }
    }
}

#[test]
fn follows_labelblk_writes() {
    let srv = Server::start();
    let (_root, blk, vol) = setup(&srv);
    let mut want = fixture();
    check_index(&vol, &want, &[1, 2, 3, 4, 5, 6]);
    assert_eq!(vol.maxlabel(), 5);
    assert_eq!(vol.get("nextlabel").expect(200).json()["nextlabel"], 6);
    vol.head("sparsevol/3").expect(200);
    vol.head("sparsevol/9").expect(204);
    let got = rles(&vol.get("sparsevol-by-point/0_5_0").expect(200));
    assert!(got == want.voxel_set(3), "sparsevol-by-point");
    // Bounds and formats are labelmap's.
    let r = vol.get("sparsevol/1?minz=0&maxz=3").expect(200);
    let bounded: VoxelSet = want
        .voxel_set(1)
        .into_iter()
        .filter(|p| (0..=3).contains(&p[2]))
        .collect();
    assert!(rles(&r) == bounded, "bounded sparsevol");
    let r = vol.get("sparsevol/4?format=srles").expect(200);
    assert!(srles_voxels(&r.body).unwrap() == want.voxel_set(4));

    // Overwrite a block (BLOCK_MUTATE): label 4 leaves it, 9 arrives.
    let patch = Volume::from_fn(
        [0, -32, -32],
        [32, 32, 32],
        |x, _, _| if x < 16 { 9 } else { 0 },
    );
    blk.write(&patch);
    want.paste(&patch);
    caught_up(&srv);
    check_index(&vol, &want, &[1, 2, 3, 4, 5, 9]);
    assert_eq!(vol.maxlabel(), 9);
    // Write a label away entirely.
    let wipe = Volume::from_fn([0, 0, 0], [32, 32, 32], |_, _, _| 0);
    let wipe2 = Volume::from_fn([0, -32, 0], [32, 32, 32], |_, _, _| 0);
    blk.write(&wipe);
    blk.write(&wipe2);
    want.paste(&wipe);
    want.paste(&wipe2);
    caught_up(&srv);
    assert!(!want.label_counts().contains_key(&5));
    check_index(&vol, &want, &[1, 2, 3, 4, 5, 9]);
    // Block records posted to the labelblk are indexed too.
    let other = Volume::from_fn([64, 0, 0], [32, 32, 32], |_, _, _| 12);
    let recs = vec![([2, 0, 0], lz4_flex::block::compress(&other.to_le_bytes()))];
    blk.post("blocks", records_body(&recs)).expect(200);
    caught_up(&srv);
    assert_eq!(vol.size_of(12), Some(32 * 32 * 32));
}

#[test]
fn merge_and_split_rewrite_the_labelblk() {
    let srv = Server::start();
    let (_root, blk, vol) = setup(&srv);
    let vol_fixture = fixture();
    let r = vol.post("merge", "[1, 2, 5]").expect(200).json();
    assert!(r["MutationID"].as_u64().is_some(), "{r}");
    let mut want = Volume::from_fn(ORIGIN, SIZE, |x, y, z| match vol_fixture.get([x, y, z]) {
        2 | 5 => 1,
        l => l,
    });
    // The labelblk's voxels changed, and the index answers at once.
    assert!(blk.raw(ORIGIN, SIZE, "") == want, "labelblk after merge");
    check_index(&vol, &want, &[1, 2, 3, 4, 5]);
    caught_up(&srv);
    check_index(&vol, &want, &[1, 2, 3, 4, 5]);
    vol.post("merge", "[1, 2]").expect(400);

    // Split part of label 3 into a new label.
    let part: VoxelSet = want
        .voxel_set(3)
        .into_iter()
        .filter(|p| p[2] < 3 && p[0] > -5)
        .collect();
    let r = vol.post("split/3", encode_rles(&part)).expect(200).json();
    let new = r["label"].as_u64().unwrap_or_else(|| panic!("{r}"));
    assert_eq!(new, 6);
    for p in &part {
        want.set(*p, new);
    }
    assert!(blk.raw(ORIGIN, SIZE, "") == want, "labelblk after split");
    check_index(&vol, &want, &[1, 3, 4, new]);

    // split-coarse: all of label 4 in block (0, -1, -1), into a chosen label.
    let mut coarse = VoxelSet::new();
    coarse.insert([0, -1, -1]);
    let r = vol
        .post("split-coarse/4?splitlabel=40", encode_rles(&coarse))
        .expect(200)
        .json();
    assert_eq!(r["label"], 40);
    want = Volume::from_fn(ORIGIN, SIZE, |x, y, z| match want.get([x, y, z]) {
        4 if x >= 0 && y < 0 && z < 0 => 40,
        l => l,
    });
    assert!(
        blk.raw(ORIGIN, SIZE, "") == want,
        "labelblk after split-coarse"
    );
    check_index(&vol, &want, &[4, 40]);
    assert_eq!(vol.maxlabel(), 40);

    // Bad splits write nothing.
    let mut bad: VoxelSet = want.voxel_set(4);
    bad.insert([-20, 0, 0]);
    vol.post("split/4", encode_rles(&bad)).expect(400);
    vol.post("split/77", encode_rles(&bad)).expect(400);
    vol.post("split/4", vec![1u8; 12]).expect(400);
    caught_up(&srv);
    assert!(blk.raw(ORIGIN, SIZE, "") == want, "after bad splits");
    check_index(&vol, &want, &[1, 3, 4, 40, new]);
    let log = vol.get("mutations").expect(200).json();
    let text = log.to_string();
    assert!(
        text.contains("merge-complete") && text.contains("split-complete"),
        "{log}"
    );
}

#[test]
fn versions_and_unsynced_instances() {
    let srv = Server::start();
    let (root, blk, vol) = setup(&srv);
    let base = fixture();
    srv.commit(&root);
    let child = srv.newversion(&root);
    let (blk_c, vol_c) = (blk.at(&child), vol.at(&child));
    let patch = Volume::from_fn([-32, -32, -32], [32, 32, 32], |_, _, _| 8);
    blk_c.write(&patch);
    caught_up(&srv);
    let mut want = base.clone();
    want.paste(&patch);
    check_index(&vol_c, &want, &[1, 2, 8]);
    check_index(&vol, &base, &[1, 2, 8]);
    vol_c.post("merge", "[8, 1]").expect(200);
    vol.post("merge", "[3, 2]").expect_4xx();
    assert!(blk.raw(ORIGIN, SIZE, "") == base, "root labelblk unchanged");
    assert_eq!(vol_c.size_of(1), None);
    assert!(vol.size_of(1).is_some());

    // A labelvol synced to nothing says so.
    let lone = Seg::create_typed(&srv, &child, "labelvol", "lone", &json!({}));
    lone.get("sparsevol/1").expect(400);
    // Syncs only to labelblk.
    lone.post("sync", json!({"sync": "vol"}).to_string())
        .expect_4xx();
    // Block sizes must match.
    let big = Seg::create_typed(
        &srv,
        &child,
        "labelvol",
        "big",
        &json!({"BlockSize": "64,64,64"}),
    );
    big.post("sync", json!({"sync": "blk"}).to_string())
        .expect(200);
    big.get("sparsevol/1").expect(400);
}

#[test]
fn delete_area_and_resync_repair_the_index() {
    let srv = Server::start();
    let (_root, blk, vol) = setup(&srv);
    let want = fixture();
    // Label 3's entry for block (0, 0, 0) dropped; the labelblk keeps its voxels.
    vol.srv
        .delete(&vol.path("area/3/32_32_32/0_0_0"))
        .expect(200);
    let outside: VoxelSet = want
        .voxel_set(3)
        .into_iter()
        .filter(|p| block_of(*p, vol.bs) != [0, 0, 0])
        .collect();
    assert!(rles(&vol.get("sparsevol/3").expect(200)) == outside);
    assert_eq!(vol.size_of(3), Some(outside.len() as u64));
    assert!(blk.raw(ORIGIN, SIZE, "") == want, "labelblk untouched");
    // resync/3 over that block brings it back.
    let mut blocks = VoxelSet::new();
    blocks.insert([0, 0, 0]);
    vol.post("resync/3", encode_rles(&blocks)).expect(200);
    check_index(&vol, &want, &[1, 2, 3, 4, 5]);
    vol.post("resync/3", vec![7u8; 3]).expect(400);
    vol.srv.delete(&vol.path("area/3/32_32/0_0_0")).expect(400);
}

/// A labelblk write acknowledged before the labelvol indexed it survives SIGKILL: the event
/// committed with the write, and the restarted server's subscriber applies it.
#[test]
fn indexing_catches_up_after_a_kill_between_commit_and_delivery() {
    const HOLD: &str = "TESSERA_SYNC_HOLD";
    let mut srv = Server::builder().env(HOLD, "1").start();
    let root = srv.create_repo("crash");
    {
        let blk = Seg::create_typed(&srv, &root, "labelblk", "blk", &json!({}));
        let blk = Seg { bs: [32; 3], ..blk };
        let vol = Seg::create_typed(&srv, &root, "labelvol", "vol", &json!({}));
        vol.post("sync", json!({"sync": "blk"}).to_string())
            .expect(200);
        blk.write(&fixture());
        vol.get("sparsevol/1").expect(404);
    }
    let status = srv.get("/api/server/sync?wait=0.5").expect(200).json();
    assert_eq!(status["CaughtUp"], json!(false), "{status}");
    srv.kill();
    srv.remove_env(HOLD);
    srv.start_again();
    caught_up(&srv);
    let vol = Seg {
        bs: [32; 3],
        ..Seg::open(&srv, &root, "vol")
    };
    check_index(&vol, &fixture(), &[1, 2, 3, 4, 5]);
}

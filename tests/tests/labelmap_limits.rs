//! labelmap requests that would leave the label space or cost far more than their size, refused
//! with a 400 before anything is written:
//! * label allocation and the label counters stay below u64::MAX (DVID's range sentinel) and
//!   never hand out 0: `set-nextlabel`, `nextlabel/<n>`, `maxlabel/<n>`, and the allocations of
//!   cleave, split and split-supervoxel, and their `split=`/`remain=` ids;
//! * `POST blocks` and `ingest-supervoxels` take only `compression=blocks` (the default);
//! * split runs must lie in the target body's (or supervoxel's) blocks and cover at most its
//!   voxels, whatever lengths they declare.
//!
//! Fixture: the spec §6.2 cubes (supervoxels 1, 2, 13, 209, 311, 40³ each; 128³, 64³ blocks).

use tessera_tests::labels::*;
use tessera_tests::*;

const TOP: u64 = u64::MAX;
const CUBE: u64 = 64_000;

fn admin_server() -> Server {
    Server::builder()
        .config("[auth]\nadmin_token = \"tok\"\n")
        .admin_token("tok")
        .start()
}

fn setup(srv: &Server) -> (Seg<'_>, Volume) {
    let root = srv.create_repo("limits");
    let seg = Seg::create(srv, &root, "seg", &standard_settings(1));
    let vol = spec_cubes_fixture();
    seg.write(&vol);
    (seg, vol)
}

/// The voxels of supervoxel `sv` with z below `z`.
fn lower(v: &Volume, sv: u64, z: i32) -> VoxelSet {
    voxels_where(v, [0; 3], [128, 128, z], |l| l == sv)
}

#[track_caller]
fn refused(r: Response, says: &str) {
    let r = r.expect(400);
    assert!(
        r.text().contains(says),
        "{}: the message should say {says:?}: {:?}",
        r.what,
        r.text()
    );
}

#[test]
fn set_nextlabel_refuses_zero_and_the_top_label() {
    let srv = admin_server();
    let (seg, _) = setup(&srv);
    assert_eq!(seg.nextlabel(), 312);
    refused(
        seg.post_empty(&format!("set-nextlabel/{TOP}?admintoken=tok")),
        "reserved",
    );
    refused(seg.post_empty("set-nextlabel/0?admintoken=tok"), "label 0");
    assert_eq!(seg.nextlabel(), 312, "nothing was set");
    assert_eq!(seg.info()["Extended"]["NextLabel"], 0);
    refused(
        seg.post_empty(&format!("maxlabel/{TOP}?admintoken=tok")),
        "2^48",
    );
    seg.post_empty("maxlabel/0?admintoken=tok").expect(400);
    assert_eq!(seg.maxlabel(), 311);
}

#[test]
fn allocations_stop_below_the_top_label_and_write_nothing() {
    let srv = admin_server();
    let (seg, vol) = setup(&srv);
    seg.merge_ok(&[13, 1, 209], "");
    // the highest label a counter may name: two labels are left, TOP - 2 + 1 and TOP - 1
    seg.post_empty(&format!("set-nextlabel/{}?admintoken=tok", TOP - 2))
        .expect(200);
    assert_eq!(seg.nextlabel(), TOP - 1);
    refused(seg.post_empty("nextlabel/2"), "overflow");
    refused(seg.post_empty("nextlabel/281474976710656"), "overflow");
    assert_eq!(
        seg.nextlabel(),
        TOP - 1,
        "a refused reservation takes nothing"
    );
    assert_eq!(seg.cleave_ok(13, &[1], "").0, TOP - 1);
    assert_eq!(seg.nextlabel(), TOP, "never wraps to 0");
    assert_eq!(seg.maxlabel(), TOP - 1);
    let before = seg.mappings();
    let sizes = seg.sizes(&[13, 2, TOP - 1, 311], "");
    refused(seg.cleave(13, &[209], ""), "overflow");
    refused(seg.post_empty("nextlabel/1"), "overflow");
    refused(seg.split(311, &lower(&vol, 311, 60), ""), "overflow");
    refused(
        seg.split_supervoxel(2, &lower(&vol, 2, 100), ""),
        "overflow",
    );
    refused(
        seg.split_supervoxel(2, &lower(&vol, 2, 100), "split=5000"),
        "overflow",
    );
    // ids given for both need no allocation, but u64::MAX is never one
    refused(
        seg.split_supervoxel(2, &lower(&vol, 2, 100), &format!("split={TOP}&remain=5001")),
        "reserved",
    );
    refused(
        seg.split_supervoxel(2, &lower(&vol, 2, 100), &format!("split=5000&remain={TOP}")),
        "reserved",
    );
    assert_eq!(seg.nextlabel(), TOP);
    assert_eq!(seg.maxlabel(), TOP - 1);
    assert_eq!(
        seg.mappings(),
        before,
        "the refused mutations mapped nothing"
    );
    assert_eq!(seg.sizes(&[13, 2, TOP - 1, 311], ""), sizes);
    assert_eq!(
        seg.supervoxels_of(13),
        Some([13, 209].into_iter().collect())
    );
    assert_eq!(
        seg.split_supervoxel_ok(2, &lower(&vol, 2, 100), "split=5000&remain=5001")
            .0,
        5000
    );
}

#[test]
fn a_block_label_at_the_top_stops_allocation_without_wrapping() {
    let srv = Server::start();
    let (seg, _) = setup(&srv);
    let mut block = Volume::filled([64; 3], TOP - 1);
    block.origin = [128, 0, 0];
    seg.write(&block);
    assert_eq!(seg.maxlabel(), TOP - 1);
    assert_eq!(seg.nextlabel(), TOP);
    refused(seg.post_empty("nextlabel/1"), "overflow");
    refused(seg.cleave(TOP - 1, &[TOP - 1], ""), "overflow");
    let mut block = Volume::filled([64; 3], TOP);
    block.origin = [192, 0, 0];
    seg.write(&block);
    assert_eq!(seg.maxlabel(), TOP);
    assert_eq!(seg.nextlabel(), TOP, "saturates, never 0");
    refused(seg.post_empty("nextlabel/1"), "overflow");
}

#[test]
fn post_blocks_refuses_unknown_compression_and_writes_nothing() {
    let srv = Server::start();
    let (seg, vol) = setup(&srv);
    let block = Volume::filled([64; 3], 77);
    let body = records_body(&[([0, 0, 0], gzip(&encode_block(&block)))]);
    let stored = seg.blocks([0; 3], [128; 3], "compression=blocks");
    for (kw, c) in [
        ("blocks", "bogus"),
        ("blocks", "gzip"),
        ("blocks", "lz4"),
        ("ingest-supervoxels", "bogus"),
        ("ingest-supervoxels", "uncompressed"),
    ] {
        refused(seg.post(&format!("{kw}?compression={c}"), body.clone()), c);
    }
    assert_eq!(
        seg.blocks([0; 3], [128; 3], "compression=blocks"),
        stored,
        "no block was written"
    );
    assert!(seg.raw([0; 3], [128; 3], "supervoxels=true") == vol);
    assert_eq!(seg.maxlabel(), 311);
    seg.post("blocks?compression=blocks", body.clone())
        .expect(200);
    assert_eq!(seg.label_at([1, 1, 1], ""), 77);
}

#[test]
fn split_runs_are_checked_against_the_body_before_any_block_is_read() {
    let srv = Server::start();
    let (seg, vol) = setup(&srv);
    let max_run = i32::MAX;
    // one run of 2^31 - 1 voxels in 28 bytes
    let body = raw_rles(0, 1, &[[0, 50, 50, max_run]]);
    assert_eq!(body.len(), 28);
    refused(seg.post("split/13", body), "split run at (0, 50, 50)");
    refused(
        seg.post(
            "split-supervoxel/13",
            raw_rles(0, 1, &[[0, 50, 50, max_run]]),
        ),
        "split run at (0, 50, 50)",
    );
    // a few of them
    let runs: Vec<[i32; 4]> = (0..8).map(|i| [-max_run, i, 60, max_run]).collect();
    refused(seg.post("split/13", raw_rles(0, 8, &runs)), "split run");
    let runs: Vec<[i32; 4]> = (0..8).map(|i| [64, 40 + i, 40, max_run - 64]).collect();
    refused(
        seg.post("split/13", raw_rles(0, 8, &runs)),
        "split run at (64, 40, 40)",
    );
    // outside the body's blocks (13's are the x = 1 column: voxels x 64..127)
    refused(
        seg.post("split/13", raw_rles(0, 1, &[[10, 50, 50, 5]])),
        "lies outside body 13",
    );
    refused(
        seg.post("split/13", raw_rles(0, 1, &[[120, 50, 50, 20]])),
        "lies outside body 13",
    );
    // inside the bounding box but in a block without the body: 209 + 2 hold no voxel in
    // block (0, 0, 0)
    seg.merge_ok(&[209, 2], "");
    refused(
        seg.post("split/209", raw_rles(0, 1, &[[0, 10, 10, 5]])),
        "crosses block [0, 0, 0]",
    );
    // more voxels than the body has (13: 64000), all inside its blocks
    let runs: Vec<[i32; 4]> = (0..1001).map(|i| [64, i % 128, i / 128, 64]).collect();
    refused(seg.post("split/13", raw_rles(0, 1001, &runs)), "64000");
    refused(
        seg.post("split-supervoxel/13", raw_rles(0, 1001, &runs)),
        "64000",
    );
    // nothing changed, and a valid split still works
    assert!(seg.raw([0; 3], [128; 3], "supervoxels=true") == vol);
    assert_eq!(seg.size_of(13), Some(CUBE));
    let (label, _) = seg.split_ok(13, &lower(&vol, 13, 50), "");
    assert_eq!(seg.size_of(label), Some(40 * 40 * 10));
    assert_eq!(seg.size_of(13), Some(CUBE - 40 * 40 * 10));
}

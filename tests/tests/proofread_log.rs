//! labelmap proofreading bookkeeping (spec §1.5, §4.4, §7.2–7.3): mutation ids (every mutation,
//! failed ones and POST raw / POST blocks included, consumes one), new-label allocation
//! (max repo label + 1, or NextLabel + 1 after set-nextlabel; a refused cleave still uses a
//! label), lastmod, the completed-mutation records (`mutations`, `mutations-range`, the live
//! `mutations/stream`), `supervoxel-splits` across versions, and versioning: mutations in a
//! child never change what its committed parent reads, and a committed node refuses them.
//!
//! Fixture: the spec §6.2 cubes (supervoxels 1, 2, 13, 209, 311; 128³, 64³ blocks,
//! MaxDownresLevel 2), written with one `POST raw` (mutation 1000000000).

use std::collections::BTreeMap;
use std::time::Duration;

use tessera_tests::labels::*;
use tessera_tests::proto::{MappingOp, MappingOps};
use tessera_tests::*;

const FIRST_MUTATION: u64 = 1_000_000_000;
const SIZE: [usize; 3] = [128; 3];
const LEVELS: usize = 2;
const CUBE: u64 = 64_000;
const MISSING: u64 = 424_242;

fn setup(srv: &Server) -> (Seg<'_>, Model) {
    let root = srv.create_repo("log");
    let seg = Seg::create(srv, &root, "seg", &standard_settings(LEVELS as u32));
    let vol = spec_cubes_fixture();
    seg.write(&vol);
    (seg, Model::new(vol))
}

/// The voxels of supervoxel `sv` with z below `z`.
fn lower(model: &Model, sv: u64, z: i32) -> VoxelSet {
    voxels_where(&model.sv, [0; 3], [128, 128, z], |l| l == sv)
}

/// The completed-mutation records (Action `*-complete`) of a mutations answer, by MutationID.
#[track_caller]
fn completed(records: &[Value]) -> BTreeMap<u64, Value> {
    let mut m = BTreeMap::new();
    for r in records {
        let action = r["Action"].as_str().unwrap_or_default();
        if !action.ends_with("-complete") {
            continue;
        }
        let id = r["MutationID"]
            .as_u64()
            .unwrap_or_else(|| panic!("record without MutationID: {r}"));
        assert!(m.insert(id, r.clone()).is_none(), "MutationID {id} twice");
    }
    m
}

/// `supervoxel-splits` with each version's entries sorted (their order is not specified).
fn sorted_splits(v: &Value) -> Value {
    let mut a = v.as_array().expect("supervoxel-splits is an array").clone();
    for e in a.iter_mut() {
        if let Value::Array(entries) = e {
            entries.sort_by_key(|x| x[0].as_u64());
        }
    }
    Value::Array(a)
}

fn sorted(v: &Value) -> Vec<u64> {
    let mut out: Vec<u64> =
        serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("not a u64 array: {v} ({e})"));
    out.sort_unstable();
    out
}

// ------------------------------------------------------------------ ids and labels

#[test]
fn every_mutation_consumes_one_mutation_id() {
    let srv = Server::start();
    let (seg, model) = setup(&srv);
    let m = FIRST_MUTATION;
    assert_eq!(seg.merge_ok(&[13, 1], ""), m + 1, "POST raw consumed {m}");
    seg.merge(&[13, MISSING], "").expect(400);
    // A malformed request is refused before it takes an id.
    seg.post("merge", b"[13, ".to_vec()).expect(400);
    seg.post("cleave/13", b"{}".to_vec()).expect(400);
    assert_eq!(
        seg.merge_ok(&[13, 209], ""),
        m + 3,
        "a refused merge consumes an id"
    );
    // POST blocks (indexed) consumes one and raises the max label to 400
    let block = Volume::filled([64; 3], 400);
    let body = records_body(&[([2, 0, 0], gzip(&encode_block(&block)))]);
    seg.post("blocks", body).expect(200);
    assert_eq!(seg.maxlabel(), 400);
    assert_eq!(seg.cleave_ok(13, &[209], ""), (401, m + 5));
    seg.cleave(13, &[2], "").expect(400);
    let half = lower(&model, 2, 100);
    assert_eq!(seg.split_supervoxel_ok(2, &half, ""), (403, 404, m + 7));
    let part = lower(&model, 311, 50);
    assert_eq!(seg.split_ok(311, &part, ""), (405, m + 8));
    seg.renumber(&[900, 400], "").expect(200);
    let mut again = Volume::filled([64; 3], 950);
    again.origin = [192, 0, 0];
    seg.write(&again);
    let wrong = VoxelSet::from([[50, 50, 90]]); // supervoxel 403 of body 2, not body 13
    seg.split(13, &wrong, "").expect(400);
    assert_eq!(
        seg.merge_ok(&[13, 900], ""),
        m + 12,
        "renumber, POST raw and a refused split each consumed one id"
    );
}

#[test]
fn new_labels_come_from_the_max_label_or_set_nextlabel() {
    let srv = Server::builder()
        .config("[auth]\nadmin_token = \"tok\"\n")
        .admin_token("tok")
        .start();
    let (seg, model) = setup(&srv);
    seg.merge_ok(&[13, 1, 209], "");
    assert_eq!(seg.cleave_ok(13, &[1], "").0, 312, "max label 311 + 1");
    seg.post_empty("maxlabel/1000?admintoken=tok").expect(200);
    assert_eq!(
        seg.cleave_ok(13, &[209], "").0,
        1001,
        "raised max label + 1"
    );
    seg.post_empty("set-nextlabel/5000?admintoken=tok")
        .expect(200);
    seg.merge_ok(&[13, 312, 1001], "");
    assert_eq!(seg.cleave_ok(13, &[1], "").0, 5001, "NextLabel + 1");
    assert_eq!(seg.nextlabel(), 5002);
    assert_eq!(
        seg.maxlabel(),
        5001,
        "allocated labels are tracked as the max label"
    );
    let part = lower(&model, 2, 100);
    assert_eq!(seg.split_ok(2, &part, "").0, 5002);
    assert_eq!(
        seg.mapping(&[5003, 5004, 2], ""),
        vec![5002, 2, 0],
        "split ids follow the new body label"
    );
    let part = lower(&model, 311, 60);
    let (sv_split, sv_remain, _) = seg.split_supervoxel_ok(311, &part, "");
    assert_eq!((sv_split, sv_remain), (5005, 5006));
    assert_eq!(seg.nextlabel(), 5007);
}

// ------------------------------------------------------------------ records

#[test]
fn mutations_lists_completed_records_with_users() {
    let srv = Server::start();
    let (seg, model) = setup(&srv);
    let uuid = seg.uuid.clone();
    let merge = seg.merge_ok(&[13, 1, 209], "u=alice&app=neu3");
    seg.merge(&[13, MISSING], "u=mallory").expect(400);
    let (cleaved, cleave) = seg.cleave_ok(13, &[209], "u=bob");
    let part = lower(&model, 311, 50);
    let (label, split) = seg.split_ok(311, &part, "u=carol");
    let half = lower(&model, 2, 100);
    let (s, rem, svsplit) = seg.split_supervoxel_ok(2, &half, "u=dave");
    seg.renumber(&[700, 13], "u=erin&app=re").expect(200);
    let lm = seg.lastmod(700);
    assert_eq!(lm["last mod user"], "erin", "{lm}");
    assert_eq!(lm["last mod app"], "re", "{lm}");
    let renumber = lm["mutation id"].as_u64().expect("mutation id");
    assert_eq!(renumber, svsplit + 1, "lastmod of a renumbered body: {lm}");

    let recs = completed(&seg.mutations());
    let ids: Vec<u64> = recs.keys().copied().collect();
    assert_eq!(
        ids,
        vec![merge, cleave, split, svsplit, renumber],
        "exactly the completed mutations (not the refused merge)"
    );
    for (id, user, action) in [
        (merge, "alice", "merge-complete"),
        (cleave, "bob", "cleave-complete"),
        (split, "carol", "split-complete"),
        (svsplit, "dave", "split-supervoxel-complete"),
        (renumber, "erin", "renumber-complete"),
    ] {
        let r = &recs[&id];
        assert_eq!(r["Action"], action, "{r}");
        assert_eq!(r["UUID"], uuid, "{r}");
        assert_eq!(r["User"], user, "{r}");
    }
    let r = &recs[&merge];
    assert_eq!(r["Target"], 13, "{r}");
    assert_eq!(sorted(&r["Labels"]), vec![1, 209], "{r}");
    let r = &recs[&cleave];
    assert_eq!(
        (&r["OrigLabel"], &r["CleavedLabel"]),
        (&json!(13), &json!(cleaved)),
        "{r}"
    );
    assert_eq!(sorted(&r["CleavedSupervoxels"]), vec![209], "{r}");
    assert_eq!(
        (&r["CleavedSize"], &r["RemainSize"]),
        (&json!(CUBE), &json!(2 * CUBE)),
        "{r}"
    );
    let r = &recs[&split];
    assert_eq!(
        (&r["Target"], &r["NewLabel"]),
        (&json!(311), &json!(label)),
        "{r}"
    );
    assert_eq!(
        r["SVSplits"],
        json!({"311": {"Split": label + 1, "Remain": label + 2}}),
        "{r}"
    );
    let r = &recs[&svsplit];
    assert_eq!(
        [
            &r["Supervoxel"],
            &r["Body"],
            &r["SplitSupervoxel"],
            &r["RemainSupervoxel"]
        ],
        [&json!(2), &json!(2), &json!(s), &json!(rem)],
        "{r}"
    );
    let n = half.len() as u64;
    assert_eq!(
        (&r["SplitSize"], &r["RemainSize"]),
        (&json!(n), &json!(CUBE - n)),
        "{r}"
    );
    let r = &recs[&renumber];
    assert_eq!(
        (&r["NewLabel"], &r["OrigLabel"]),
        (&json!(700), &json!(13)),
        "{r}"
    );
}

#[test]
fn mutations_range_spans_versions() {
    let srv = Server::start();
    let (seg, _) = setup(&srv);
    let root = seg.uuid.clone();
    let a = seg.merge_ok(&[13, 1], "u=alice");
    srv.commit(&root);
    let child_uuid = srv.newversion(&root);
    let child = seg.at(&child_uuid);
    let b = child.merge_ok(&[13, 209], "u=bob");
    assert!(b > a);
    let in_root = completed(&seg.mutations());
    assert_eq!(in_root.keys().copied().collect::<Vec<_>>(), vec![a]);
    let in_child = completed(&child.mutations());
    assert_eq!(in_child.keys().copied().collect::<Vec<_>>(), vec![b]);
    assert_eq!(in_child[&b]["UUID"], child_uuid);
    let r = seg
        .get(&format!("mutations-range/{root}/{child_uuid}"))
        .expect(200);
    let all = completed(r.json().as_array().expect("array"));
    assert_eq!(all.keys().copied().collect::<Vec<_>>(), vec![a, b]);
    assert_eq!(all[&a]["UUID"], root);
    assert_eq!(all[&b]["UUID"], child_uuid);
    assert_eq!(all[&a]["User"], "alice");
}

#[test]
fn mutation_stream_replays_then_follows() {
    let srv = Server::start();
    let (seg, _) = setup(&srv);
    seg.merge_ok(&[311, 2], ""); // before `from`: not replayed
    let from = seg.merge_ok(&[13, 1], "u=alice");
    let url = srv.url(&seg.path(&format!("mutations/stream?from={from}")));
    let stream = EventStream::open(url, Duration::from_secs(120));
    match stream.next(Duration::from_secs(30)) {
        Some(StreamMsg::Head(status, ct)) => {
            assert_eq!(status, 200, "mutations/stream status");
            assert!(
                ct.starts_with("text/event-stream"),
                "Content-Type {ct:?}, want text/event-stream"
            );
        }
        other => panic!("mutations/stream: no response head: {other:?}"),
    }
    // The event id is the record's commit sequence number: mutation ids are handed out as
    // requests arrive, so only the commit order is safe to resume from.
    let check = |ev: &SseEvent, id: u64, what: &str| {
        let rec: Value = serde_json::from_str(&ev.data)
            .unwrap_or_else(|e| panic!("{what}: data is not JSON ({e}): {:?}", ev.data));
        assert_eq!(
            ev.id.as_deref(),
            Some(rec["CommitSeq"].to_string().as_str()),
            "{what}: id line"
        );
        assert_eq!(rec["MutationID"], id, "{what}: {rec}");
        assert_eq!(rec["Action"], "merge-complete", "{what}: {rec}");
        assert_eq!(rec["UUID"], seg.uuid, "{what}: {rec}");
        rec
    };
    let ev = stream.next_event(Duration::from_secs(30));
    let rec = check(&ev, from, "replayed record (records before `from` are not)");
    assert_eq!(rec["User"], "alice");
    // live records, in order
    let a = seg.merge_ok(&[13, 209], "u=bob");
    let b = seg.merge_ok(&[311, 13], "u=carol");
    let ev = stream.next_event(Duration::from_secs(30));
    assert_eq!(check(&ev, a, "first live record")["User"], "bob");
    let after_a = ev.id.clone();
    let ev = stream.next_event(Duration::from_secs(30));
    assert_eq!(check(&ev, b, "second live record")["User"], "carol");
    // A reconnecting client resumes after the last event it saw.
    let resumed = EventStream::open_with(
        srv.url(&seg.path("mutations/stream")),
        after_a,
        Duration::from_secs(60),
    );
    match resumed.next(Duration::from_secs(30)) {
        Some(StreamMsg::Head(200, _)) => {}
        other => panic!("resumed mutations/stream: {other:?}"),
    }
    let ev = resumed.next_event(Duration::from_secs(30));
    check(&ev, b, "first record after Last-Event-ID");
    drop(resumed);
    // a refused mutation sends nothing; the next completed one follows
    seg.merge(&[311, MISSING], "").expect(400);
    let (_, d) = seg.cleave_ok(311, &[2], "");
    let ev = stream.next_event(Duration::from_secs(30));
    let rec: Value = serde_json::from_str(&ev.data).expect("JSON record");
    assert_eq!(rec["Action"], "cleave-complete", "{rec}");
    assert_eq!(rec["MutationID"], d, "{rec}");
}

// ------------------------------------------------------------------ versioning

/// What a reader of a version sees, for before/after comparisons.
#[derive(Debug, PartialEq)]
struct Snapshot {
    sv: Volume,
    mapped: Vec<Volume>,
    sv_scales: Vec<Volume>,
    sizes: Vec<u64>,
    mappings: BTreeMap<u64, u64>,
    mapping: Vec<u64>,
    splits: Value,
    existing: Vec<u64>,
}

const PROBE: [u64; 10] = [1, 2, 13, 209, 311, 312, 313, 314, 315, 316];

fn snapshot(seg: &Seg) -> Snapshot {
    Snapshot {
        sv: seg.raw([0; 3], SIZE, "supervoxels=true"),
        mapped: (0..=LEVELS)
            .map(|s| seg.raw([0; 3], SIZE.map(|n| n >> s), &format!("scale={s}")))
            .collect(),
        sv_scales: (1..=LEVELS)
            .map(|s| {
                seg.raw(
                    [0; 3],
                    SIZE.map(|n| n >> s),
                    &format!("scale={s}&supervoxels=true"),
                )
            })
            .collect(),
        sizes: seg.sizes(&PROBE, ""),
        mappings: seg.mappings(),
        mapping: seg.mapping(&PROBE, ""),
        splits: seg.supervoxel_splits(),
        existing: seg.existing_labels(),
    }
}

#[test]
fn child_mutations_never_change_the_committed_parent() {
    let srv = Server::start();
    let (seg, mut model) = setup(&srv);
    let root = seg.uuid.clone();
    let m0 = seg.merge_ok(&[13, 1], "");
    model.merge(13, &[1]);
    let half = lower(&model, 2, 100);
    let (s, r, m1) = seg.split_supervoxel_ok(2, &half, "");
    assert_eq!((s, r), (312, 313));
    model.split_supervoxel(2, &half, s, r);
    srv.commit(&root);
    let before = snapshot(&seg);

    let child_uuid = srv.newversion(&root);
    let child = seg.at(&child_uuid);
    assert!(
        snapshot(&child) == before,
        "a new child reads like its parent"
    );
    let m2 = child.merge_ok(&[13, 209], "");
    model.merge(13, &[209]);
    let (c, _) = child.cleave_ok(13, &[1], "");
    model.cleave(13, &[1], c);
    let part = lower(&model, 311, 50);
    let (l, m3) = child.split_ok(311, &part, "");
    let ids = model.split(311, &part, l);
    let part = voxels_where(&model.sv, [0; 3], [60, 128, 128], |v| v == s);
    let (s2, r2, m4) = child.split_supervoxel_ok(s, &part, "");
    model.split_supervoxel(s, &part, s2, r2);
    child.renumber(&[900, 13], "").expect(200);
    model.renumber(900, 13);
    assert!(m2 > m1 && m1 > m0);

    // the parent reads exactly as before
    let after = snapshot(&seg);
    assert!(after.sv == before.sv, "parent supervoxels changed");
    assert!(
        after.mapped == before.mapped,
        "parent mapped volume changed"
    );
    assert!(
        after.sv_scales == before.sv_scales,
        "parent lower scales changed"
    );
    assert_eq!(after.sizes, before.sizes, "parent sizes");
    assert_eq!(after.mappings, before.mappings, "parent mappings");
    assert_eq!(after.mapping, before.mapping, "parent mapping");
    assert_eq!(after.splits, before.splits, "parent supervoxel-splits");
    assert_eq!(after.existing, before.existing, "parent existing-labels");
    assert_eq!(seg.supervoxels_of(13), Some([1, 13].into()));

    // the child has everything
    let got = child.raw([0; 3], SIZE, "supervoxels=true");
    assert!(
        got == model.sv,
        "child supervoxels: {}",
        volume_diff(&got, &model.sv)
    );
    let got = child.raw([0; 3], SIZE, "");
    assert!(got == model.mapped(), "child mapped");
    assert_mappings(&child.mappings(), &model.mappings(), &[c]);
    check_consistency(&child, SIZE, LEVELS);
    // supervoxel-splits: this version first, then the ancestors that have splits
    let (old, split, remain) = ids.svs[0];
    assert_eq!(
        sorted_splits(&child.supervoxel_splits()),
        json!([
            child_uuid,
            [[m3, old, remain, split], [m4, s, r2, s2]],
            root,
            [[m1, 2, r, s]]
        ])
    );
    assert_eq!(
        sorted_splits(&seg.supervoxel_splits()),
        json!([root, [[m1, 2, r, s]]])
    );
}

#[test]
fn a_committed_node_refuses_mutations() {
    let srv = Server::start();
    let (seg, model) = setup(&srv);
    let root = seg.uuid.clone();
    seg.merge_ok(&[13, 1], "");
    srv.commit(&root);
    let before = snapshot(&seg);
    let part = lower(&model, 2, 100);
    let ops = MappingOps {
        mappings: vec![MappingOp {
            mutid: 5,
            mapped: 2,
            original: vec![311],
        }],
    };
    for (what, r) in [
        ("merge", seg.merge(&[13, 209], "")),
        ("renumber", seg.renumber(&[900, 2], "")),
        ("cleave", seg.cleave(13, &[1], "")),
        ("split", seg.split(2, &part, "")),
        ("split-supervoxel", seg.split_supervoxel(2, &part, "")),
        ("POST mappings", seg.post("mappings", encode(&ops))),
    ] {
        assert_eq!(r.status, 400, "{what} on a committed node: {}", r.text());
    }
    assert!(
        snapshot(&seg) == before,
        "a refused mutation changed the committed node"
    );
    // its child accepts them
    let child = seg.at(&srv.newversion(&root));
    child.merge_ok(&[13, 209], "");
}

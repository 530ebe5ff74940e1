//! Kept meshes: a labelmap created with `"KeepMeshes": "true"` keeps the keyvalue instance
//! `<name>_meshes` (creating it when missing) filled with `<body>.ngmesh` = exactly the bytes of
//! `GET mesh/<body>?format=ngmesh` at that version, after every write (`POST raw`,
//! `POST blocks`) and proofreading mutation (merge, cleave, split, split-supervoxel,
//! renumber), and deletes the keys of bodies that no longer exist. When `<name>_meshes_mutid`
//! exists, its key `<body>` holds the mutation ID of the body's last change (a JSON integer).
//! The updates are asynchronous: every expectation is checked once the server reports its
//! sync subscribers caught up (`GET /api/server/sync?wait=`).
//! Without the setting nothing is kept and no `<name>_meshes` instance appears; with
//! `KeepMeshesScale` N the kept meshes are those of `GET mesh/<body>?scale=N`.

use std::collections::{BTreeMap, BTreeSet};

use tessera_tests::labels::*;
use tessera_tests::mesh::*;
use tessera_tests::*;

const FIRST_MUTATION: u64 = 1_000_000_000;

fn keep_settings() -> Value {
    let mut s = mesh_settings(1);
    s["KeepMeshes"] = json!("true");
    s
}

/// Waits for `srv`'s sync subscribers to have applied every acknowledged write, then checks
/// once (panicking with `what` and the failure).
#[track_caller]
fn synced(srv: &Server, what: &str, check: impl FnOnce() -> Result<(), String>) {
    let status = srv.get("/api/server/sync?wait=120").expect(200).json();
    assert_eq!(
        status["CaughtUp"],
        json!(true),
        "sync subscribers not caught up after 120 s: {status}"
    );
    if let Err(e) = check() {
        panic!("{what}: not so once caught up: {e}");
    }
}

/// GET of a keyvalue key: Ok(Some) on 200, Ok(None) on 404, Err on anything else (e.g. the
/// instance does not exist yet).
fn fetch(srv: &Server, uuid: &str, inst: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
    let r = srv.get(&format!("/api/node/{uuid}/{inst}/key/{key}"));
    match r.status {
        200 => Ok(Some(r.body)),
        404 => Ok(None),
        s => Err(format!("{}: status {s}: {}", r.what, r.text())),
    }
}

/// Waits until `<seg>_meshes` holds, for every body of `bodies`, the bytes of its mesh at this
/// version, and no key for any label of `gone` (whose meshes must be 404).
#[track_caller]
fn wait_kept(seg: &Seg, bodies: &[u64], gone: &[u64]) {
    wait_kept_as(seg, "format=ngmesh", bodies, gone);
}

/// `wait_kept` with the bytes of `GET mesh/<body>?<query>`.
#[track_caller]
fn wait_kept_as(seg: &Seg, query: &str, bodies: &[u64], gone: &[u64]) {
    let inst = format!("{}_meshes", seg.name);
    let want: BTreeMap<u64, Vec<u8>> = bodies
        .iter()
        .map(|&b| (b, seg.mesh(b, query).expect(200).body))
        .collect();
    for &g in gone {
        seg.mesh(g, "").expect(404);
    }
    synced(
        seg.srv,
        &format!(
            "{inst} at {} for bodies {bodies:?}, without {gone:?}",
            seg.uuid
        ),
        || {
            for (b, bytes) in &want {
                match fetch(seg.srv, &seg.uuid, &inst, &format!("{b}.ngmesh"))? {
                    Some(v) if v == *bytes => {}
                    Some(v) => {
                        return Err(format!(
                            "{b}.ngmesh holds {} bytes, GET mesh/{b} gives {}",
                            v.len(),
                            bytes.len()
                        ));
                    }
                    None => return Err(format!("no key {b}.ngmesh")),
                }
            }
            for g in gone {
                if fetch(seg.srv, &seg.uuid, &inst, &format!("{g}.ngmesh"))?.is_some() {
                    return Err(format!("{g}.ngmesh still exists"));
                }
            }
            Ok(())
        },
    );
}

/// Waits until the `.ngmesh` keys of `<seg>_meshes` are exactly those of `bodies`.
#[track_caller]
fn wait_key_set(seg: &Seg, bodies: &BTreeSet<u64>) {
    let inst = format!("{}_meshes", seg.name);
    let want: BTreeSet<String> = bodies.iter().map(|b| format!("{b}.ngmesh")).collect();
    synced(seg.srv, &format!("the keys of {inst}"), || {
        let got: BTreeSet<String> = seg
            .srv
            .keys(&seg.uuid, &inst)
            .into_iter()
            .filter(|k| k.ends_with(".ngmesh"))
            .collect();
        if got == want {
            Ok(())
        } else {
            Err(format!(
                "missing {:?}, unexpected {:?}",
                want.difference(&got).collect::<Vec<_>>(),
                got.difference(&want).collect::<Vec<_>>()
            ))
        }
    });
}

/// Waits until `<seg>_meshes_mutid` key `<body>` is a JSON integer accepted by `ok`.
#[track_caller]
fn wait_mutid(seg: &Seg, body: u64, what: &str, ok: impl Fn(u64) -> bool) {
    let inst = format!("{}_meshes_mutid", seg.name);
    synced(seg.srv, &format!("{inst}/key/{body} ({what})"), || {
        let v = fetch(seg.srv, &seg.uuid, &inst, &body.to_string())?
            .ok_or_else(|| format!("no key {body}"))?;
        let n: u64 = serde_json::from_slice(&v).map_err(|e| {
            format!(
                "{:?} is not a JSON integer: {e}",
                String::from_utf8_lossy(&v)
            )
        })?;
        if ok(n) {
            Ok(())
        } else {
            Err(format!("holds {n}"))
        }
    });
}

/// Every body of the model, at `seg`'s version.
fn bodies(model: &Model) -> Vec<u64> {
    model.body_sizes().into_keys().collect()
}

#[test]
fn kept_meshes_follow_every_write_and_mutation() {
    let srv = Server::start();
    let root = srv.create_repo("kept");
    // mutid instance made by the user; the meshes instance is left to the server
    srv.create_instance(&root, "keyvalue", "seg_meshes_mutid");
    let seg = Seg::create(&srv, &root, "seg", &keep_settings());
    let mut model = Model::new(mesh_fixture());
    seg.write(&model.sv);
    wait_kept(&seg, &bodies(&model), &[]);
    for b in bodies(&model) {
        wait_mutid(&seg, b, "the first POST raw", |n| n == FIRST_MUTATION);
    }
    assert!(
        srv.repo_info(&root)["DataInstances"]["seg_meshes"]["Base"]["TypeName"] == "keyvalue",
        "the server made seg_meshes a keyvalue instance"
    );

    // merge
    let m1 = seg.merge_ok(&[3, 1, 2], "");
    model.merge(3, &[1, 2]);
    wait_kept(&seg, &[3], &[1, 2]);
    wait_mutid(&seg, 3, "merge", |n| n == m1);

    // cleave 1 back out of 3
    let (cleaved, m2) = seg.cleave_ok(3, &[1], "");
    model.cleave(3, &[1], cleaved);
    wait_kept(&seg, &[3, cleaved], &[]);
    wait_mutid(&seg, 3, "cleave", |n| n == m2);
    wait_mutid(&seg, cleaved, "cleave", |n| n == m2);

    // split the torus
    let part = voxels_where(&model.sv, [0, 0, 0], [100, 128, 128], |l| l == 15);
    let (split, m3) = seg.split_ok(15, &part, "");
    model.split(15, &part, split);
    wait_kept(&seg, &[15, split], &[]);
    wait_mutid(&seg, 15, "split", |n| n == m3);
    wait_mutid(&seg, split, "split", |n| n == m3);

    // split a supervoxel of a noise body (its body's voxels do not change)
    let part = voxels_where(&model.sv, [40, 96, 40], [64, 128, 64], |l| l == 13);
    let (s, r, m4) = seg.split_supervoxel_ok(13, &part, "");
    model.split_supervoxel(13, &part, s, r);
    wait_kept(&seg, &[13], &[]);
    assert_eq!(m4, m3 + 1);

    // renumber 8 to 5000
    seg.renumber(&[5000, 8], "").expect(200);
    model.renumber(5000, 8);
    wait_kept(&seg, &[5000], &[8]);
    // every mutation, writes included, consumes one id (see proofread_log.rs)
    wait_mutid(&seg, 5000, "renumber", |n| n == m4 + 1);

    // POST blocks: block (0,0,0) gains label 950 and part of line 5 becomes 951
    let mut blk = model.sv.block([0, 0, 0], [64; 3]);
    for x in 20..30 {
        for y in 20..30 {
            for z in 20..30 {
                blk.set([x, y, z], 950);
            }
        }
    }
    for x in 0..10 {
        blk.set([x, 5, 5], 951);
    }
    seg.post(
        "blocks",
        records_body(&[([0, 0, 0], gzip(&encode_block(&blk)))]),
    )
    .expect(200);
    model.sv.paste(&blk);
    wait_kept(&seg, &[950, 951, 5], &[]);
    for b in [950, 951, 5] {
        wait_mutid(&seg, b, "POST blocks", |n| n == m4 + 2);
    }

    // and in the end: every body kept, nothing else
    let all = bodies(&model);
    wait_kept(&seg, &all, &[1, 2, 8, 424_242]);
    wait_key_set(&seg, &all.iter().copied().collect());
}

#[test]
fn kept_meshes_are_versioned() {
    let srv = Server::start();
    let root = srv.create_repo("kept-versions");
    // the meshes instance made by the user beforehand is used as is
    srv.create_instance(&root, "keyvalue", "seg_meshes");
    srv.put_key(&root, "seg_meshes", "readme", b"not a mesh");
    let seg = Seg::create(&srv, &root, "seg", &keep_settings());
    let vol = spec_cubes_fixture();
    seg.write(&vol);
    let mut model = Model::new(vol);
    wait_kept(&seg, &bodies(&model), &[]);
    let root_meshes: BTreeMap<u64, Vec<u8>> = bodies(&model)
        .into_iter()
        .map(|b| (b, seg.mesh(b, "").expect(200).body))
        .collect();

    srv.commit(&root);
    let child = seg.at(&srv.branch(&root, "edits"));
    child.merge_ok(&[1, 2], "");
    model.merge(1, &[2]);
    let part = voxels_where(&model.sv, [0, 0, 0], [128, 128, 60], |l| l == 13);
    let (split, _) = child.split_ok(13, &part, "");
    model.split(13, &part, split);
    wait_kept(&child, &[1, 13, split], &[2]);
    wait_key_set(&child, &bodies(&model).into_iter().collect());
    // unchanged bodies are inherited and still right at the child
    wait_kept(&child, &[209, 311], &[]);

    // the parent keeps the parent's meshes
    for (b, bytes) in &root_meshes {
        assert!(
            srv.key_value(&root, "seg_meshes", &format!("{b}.ngmesh"))
                .as_ref()
                == Some(bytes),
            "{b}.ngmesh changed at the parent version"
        );
        assert!(
            seg.mesh(*b, "").expect(200).body == *bytes,
            "GET mesh/{b} changed at the parent version"
        );
    }
    assert!(
        srv.key_value(&root, "seg_meshes", &format!("{split}.ngmesh"))
            .is_none(),
        "a child's new body appeared at the parent"
    );
}

/// `KeepMeshesScale` keeps the meshes of that scale, also after a split, whose coarser scales
/// are rebuilt after its answer; the setting is checked when the instance is made.
#[test]
fn kept_meshes_at_a_coarser_scale() {
    let srv = Server::start();
    let root = srv.create_repo("kept-scale");
    for (extra, what) in [
        (
            json!({"KeepMeshes": "true", "KeepMeshesScale": "2"}),
            "MaxDownresLevel",
        ),
        (
            json!({"KeepMeshes": "true", "KeepMeshesScale": "one"}),
            "integer",
        ),
        (json!({"KeepMeshesScale": "1"}), "needs KeepMeshes"),
    ] {
        let mut body = mesh_settings(1);
        body["typename"] = json!("labelmap");
        body["dataname"] = json!("bad");
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let r = srv
            .post_json(&format!("/api/repo/{root}/instance"), &body)
            .expect(400);
        assert!(r.text().contains(what), "{extra}: {}", r.text());
    }
    assert!(srv.repo_info(&root)["DataInstances"].get("bad").is_none());

    let mut settings = keep_settings();
    settings["KeepMeshesScale"] = json!("1");
    let seg = Seg::create(&srv, &root, "seg", &settings);
    let vol = spec_cubes_fixture();
    seg.write(&vol);
    let mut model = Model::new(vol);
    let coarse = "format=ngmesh&scale=1";
    wait_kept_as(&seg, coarse, &bodies(&model), &[]);
    for b in bodies(&model) {
        let kept = srv.key_value(&root, "seg_meshes", &format!("{b}.ngmesh"));
        assert!(
            kept != Some(seg.mesh(b, "").expect(200).body),
            "{b}.ngmesh is the scale-0 mesh"
        );
    }

    seg.merge_ok(&[1, 2], "");
    model.merge(1, &[2]);
    let part = voxels_where(&model.sv, [0, 0, 0], [128, 128, 60], |l| l == 13);
    let (split, _) = seg.split_ok(13, &part, "");
    model.split(13, &part, split);
    wait_kept_as(&seg, coarse, &[1, 13, split], &[2]);
    wait_key_set(&seg, &bodies(&model).into_iter().collect());
}

#[test]
fn without_keep_meshes_nothing_is_kept() {
    let srv = Server::start();
    let root = srv.create_repo("not-kept");
    // a: its own <name>_meshes instance exists but KeepMeshes is not set
    srv.create_instance(&root, "keyvalue", "a_meshes");
    let a = Seg::create(&srv, &root, "a", &mesh_settings(1));
    // b: no setting; c: KeepMeshes false
    let b = Seg::create(&srv, &root, "b", &mesh_settings(1));
    let mut off = mesh_settings(1);
    off["KeepMeshes"] = json!("false");
    let c = Seg::create(&srv, &root, "c", &off);
    // d: the control, kept
    let d = Seg::create(&srv, &root, "d", &keep_settings());
    let vol = spec_cubes_fixture();
    for seg in [&a, &b, &c, &d] {
        seg.write(&vol);
        seg.merge_ok(&[1, 2], "");
    }
    // once the control is done, the others have had their chance
    // Caught up means every subscriber applied everything, so the others had their chance.
    wait_kept(&d, &[1, 13, 209, 311], &[2]);
    assert_eq!(
        srv.keys(&root, "a_meshes"),
        Vec::<String>::new(),
        "a_meshes was filled without KeepMeshes"
    );
    let info = srv.repo_info(&root);
    for name in ["b_meshes", "c_meshes", "a_meshes_mutid", "b_meshes_mutid"] {
        assert!(
            info["DataInstances"].get(name).is_none(),
            "{name} was created: {}",
            info["DataInstances"]
        );
    }
    assert!(info["DataInstances"].get("d_meshes").is_some());
}

/// A change acknowledged before the KeepMeshes worker applied it survives SIGKILL: its outbox
/// entry committed with it, and the restarted server's worker applies it.
#[test]
fn kept_meshes_catch_up_after_a_kill_between_commit_and_delivery() {
    const HOLD: &str = "TESSERA_SYNC_HOLD";
    let mut srv = Server::builder().env(HOLD, "1").start();
    let root = srv.create_repo("crash");
    {
        let seg = Seg::create(&srv, &root, "seg", &keep_settings());
        seg.write(&spec_cubes_fixture());
        seg.merge_ok(&[1, 2], "");
    }
    let status = srv.get("/api/server/sync?wait=0.5").expect(200).json();
    assert_eq!(status["CaughtUp"], json!(false), "{status}");
    let waiting: u64 = status["Backlog"]
        .as_object()
        .expect("a backlog object")
        .values()
        .map(|v| v.as_u64().expect("a count"))
        .sum();
    assert!(waiting >= 2, "the write and the merge wait: {status}");
    assert!(
        srv.repo_info(&root)["DataInstances"]
            .get("seg_meshes")
            .is_none(),
        "nothing was delivered while held"
    );
    srv.kill();
    srv.remove_env(HOLD);
    srv.start_again();
    let seg = Seg::open(&srv, &root, "seg");
    wait_kept(&seg, &[1, 13, 209, 311], &[2]);
    let status = srv.get("/api/server/sync").expect(200).json();
    assert!(
        status["Backlog"]
            .as_object()
            .expect("a backlog object")
            .values()
            .all(|v| v == &json!(0)),
        "{status}"
    );
}

/// The worker writes kept meshes without a sync of their own (they are large and derived), and
/// syncs their store before it acknowledges its events: once the server says caught up, a
/// SIGKILL loses none of them.
#[test]
fn kept_meshes_survive_a_kill_once_caught_up() {
    let mut srv = Server::start();
    let root = srv.create_repo("kill");
    let want = {
        let seg = Seg::create(&srv, &root, "seg", &keep_settings());
        seg.write(&spec_cubes_fixture());
        seg.merge_ok(&[1, 2], "");
        synced(&srv, "kept meshes", || Ok(()));
        wait_kept(&seg, &[1, 13, 209, 311], &[2]);
        kept(&srv, &root, &[1, 13])
    };
    srv.kill();
    srv.start_again();
    assert_kept(&srv, &root, &[1, 13], &want);
}

/// Meshes of 1 MiB or more skip the write-ahead log and are in the server's memory only until
/// the worker's sync writes them out, before it acknowledges its events: a SIGKILL once the
/// server says caught up loses none of them either.
#[test]
fn large_kept_meshes_survive_a_kill_once_caught_up() {
    let mut srv = Server::start();
    let root = srv.create_repo("kill large");
    let want = {
        let seg = Seg::create(&srv, &root, "seg", &keep_settings());
        seg.write(&noise_fixture([64; 3], 3, &[0, 5, 6]));
        wait_kept(&seg, &[5, 6], &[]);
        kept(&srv, &root, &[5, 6])
    };
    for (body, mesh) in [5, 6].iter().zip(&want) {
        assert!(
            mesh.len() >= 1 << 20,
            "body {body}'s mesh is {} bytes",
            mesh.len()
        );
    }
    srv.kill();
    srv.start_again();
    assert_kept(&srv, &root, &[5, 6], &want);
}

/// The kept `<body>.ngmesh`, if there is one.
fn kept_mesh(srv: &Server, root: &str, body: u64) -> Option<Vec<u8>> {
    fetch(srv, root, "seg_meshes", &format!("{body}.ngmesh")).unwrap()
}

/// The kept `<body>.ngmesh` of each body.
fn kept(srv: &Server, root: &str, bodies: &[u64]) -> Vec<Vec<u8>> {
    bodies
        .iter()
        .map(|&b| kept_mesh(srv, root, b).expect("a kept mesh"))
        .collect()
}

/// After a restart, the kept meshes of `bodies` are `want`.
#[track_caller]
fn assert_kept(srv: &Server, root: &str, bodies: &[u64], want: &[Vec<u8>]) {
    let status = srv.get("/api/server/sync").expect(200).json();
    let same: Vec<bool> = bodies
        .iter()
        .zip(want)
        .map(|(&b, w)| kept_mesh(srv, root, b).as_ref() == Some(w))
        .collect();
    assert!(
        same.iter().all(|s| *s),
        "kept meshes of {bodies:?} after the kill, as before it: {same:?} (sync status at start {status})"
    );
}

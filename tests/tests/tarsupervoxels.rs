//! tarsupervoxels datatype (spec §4.9): per-supervoxel blobs, body tar archives read through
//! the synced labelmap (following its merges), `missing`, `exists`, `POST load`, versioning
//! like keyvalue (ancestor reads, tombstones, locked nodes), mutation records, and bad input
//! that gets a 4xx and writes nothing.
//!
//! Fixture: labelmap "seg" holding the spec §6.2 cubes (supervoxels 1, 2, 13, 209, 311, each
//! its own body), and tarsupervoxels "meshes" (Extension "drc") synced to it.

use std::io::Read;

use tessera_tests::labels::*;
use tessera_tests::*;

struct Fx {
    srv: Server,
    root: String,
}

impl Fx {
    fn path(&self, uuid: &str, rest: &str) -> String {
        format!("/api/node/{uuid}/meshes/{rest}")
    }
    fn get(&self, uuid: &str, rest: &str) -> Response {
        self.srv.get(&self.path(uuid, rest))
    }
    fn head(&self, uuid: &str, rest: &str) -> Response {
        self.srv.head(&self.path(uuid, rest))
    }
    fn post(&self, uuid: &str, rest: &str, body: impl Into<Vec<u8>>) -> Response {
        self.srv.post(&self.path(uuid, rest), body)
    }
    fn delete(&self, uuid: &str, rest: &str) -> Response {
        self.srv.delete(&self.path(uuid, rest))
    }
    /// `GET supervoxel/<sv>`: Some(blob) on 200, None on 404.
    #[track_caller]
    fn blob(&self, uuid: &str, sv: u64) -> Option<Vec<u8>> {
        let r = self.get(uuid, &format!("supervoxel/{sv}"));
        match r.status {
            200 => Some(r.body),
            404 => None,
            s => panic!("{}: expected 200 or 404, got {s}: {}", r.what, r.text()),
        }
    }
    /// `GET tarfile/<body>` → (name, contents) of each entry, in order; asserts 200.
    #[track_caller]
    fn tarfile(&self, uuid: &str, body: u64) -> Vec<(String, Vec<u8>)> {
        let r = self.get(uuid, &format!("tarfile/{body}")).expect(200);
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/tar"),
            "{}",
            r.what
        );
        entries(&r.body)
    }
    #[track_caller]
    fn missing(&self, uuid: &str, body: u64) -> Vec<u64> {
        let r = self.get(uuid, &format!("missing/{body}")).expect(200);
        serde_json::from_value(r.json()).unwrap()
    }
    #[track_caller]
    fn exists(&self, uuid: &str, svs: &[u64]) -> Vec<bool> {
        let r = self
            .srv
            .get_with_body(&self.path(uuid, "exists"), json!(svs).to_string())
            .expect(200);
        serde_json::from_value(r.json()).unwrap()
    }
    fn mutations(&self, uuid: &str) -> Vec<Value> {
        let r = self.get(uuid, "mutations").expect(200);
        serde_json::from_value(r.json()).unwrap()
    }
    fn seg(&self, uuid: &str) -> Seg<'_> {
        Seg::open(&self.srv, uuid, "seg")
    }
}

/// (name, contents) of every entry of a tar archive, in order.
fn entries(tar: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut a = tar::Archive::new(tar);
    a.entries()
        .expect("a tar archive")
        .map(|e| {
            let mut e = e.expect("a tar entry");
            assert_eq!(e.header().entry_type(), tar::EntryType::Regular);
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut d = Vec::new();
            e.read_to_end(&mut d).unwrap();
            (name, d)
        })
        .collect()
}

/// A tar archive of (name, contents) regular files.
fn tar_of(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn entry(name: &str, data: &[u8]) -> (String, Vec<u8>) {
    (name.to_string(), data.to_vec())
}

fn setup() -> Fx {
    let srv = Server::start();
    let root = srv.create_repo("tarsupervoxels");
    let seg = Seg::create(&srv, &root, "seg", &standard_settings(0));
    seg.write(&spec_cubes_fixture());
    srv.create_instance_with(
        &root,
        "tarsupervoxels",
        "meshes",
        &json!({"Extension": "drc"}),
    );
    srv.post_json(
        &format!("/api/node/{root}/meshes/sync"),
        &json!({"sync": "seg"}),
    )
    .expect(200);
    Fx { srv, root }
}

#[test]
fn info_reports_extension_and_sync() {
    let fx = setup();
    let info = fx.get(&fx.root, "info").expect(200).json();
    assert_eq!(info["Base"]["TypeName"], "tarsupervoxels");
    assert_eq!(info["Base"]["Syncs"], json!(["seg"]));
    assert_eq!(
        info["Extended"],
        json!({"Extension": "drc", "Generate": false})
    );
    fx.srv.create_instance(&fx.root, "tarsupervoxels", "plain");
    let info = fx
        .srv
        .get(&format!("/api/node/{}/plain/info", fx.root))
        .expect(200)
        .json();
    assert_eq!(
        info["Extended"],
        json!({"Extension": "dat", "Generate": false})
    );
    let help = fx.get(&fx.root, "help").expect(200).text();
    assert!(help.contains("tarfile/<body>"), "{help}");
}

#[test]
fn supervoxel_blobs_round_trip() {
    let fx = setup();
    let root = &fx.root;
    assert_eq!(fx.blob(root, 13), None);
    let r = fx.get(root, "supervoxel/13").expect(404);
    assert!(
        r.text().contains("13") && r.text().contains("not found"),
        "{}",
        r.text()
    );
    let blob: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    fx.post(root, "supervoxel/13", blob.clone()).expect(200);
    let r = fx.get(root, "supervoxel/13").expect(200);
    assert_eq!(r.body, blob);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/octet-stream")
    );
    // Overwrite, empty blobs, supervoxels no labelmap knows.
    fx.post(root, "supervoxel/13", b"second".to_vec())
        .expect(200);
    assert_eq!(fx.blob(root, 13).as_deref(), Some(&b"second"[..]));
    fx.post(root, "supervoxel/77", Vec::new()).expect(200);
    assert_eq!(fx.blob(root, 77).as_deref(), Some(&b""[..]));
    fx.post(root, &format!("supervoxel/{}", u64::MAX), b"max".to_vec())
        .expect(200);
    assert_eq!(fx.blob(root, u64::MAX).as_deref(), Some(&b"max"[..]));
    // Delete (200 twice, and for what was never written).
    fx.delete(root, "supervoxel/13").expect(200);
    fx.delete(root, "supervoxel/13").expect(200);
    fx.delete(root, "supervoxel/4242").expect(200);
    assert_eq!(fx.blob(root, 13), None);
    assert_eq!(fx.exists(root, &[13, 77, 4242]), vec![false, true, false]);
}

#[test]
fn tarfile_missing_head_and_exists_after_a_load() {
    let fx = setup();
    let root = &fx.root;
    let load = tar_of(&[
        ("209.drc", b"mesh 209"),
        ("1.drc", b"mesh 1"),
        ("13.drc", b""),
        ("5000.drc", b"no such supervoxel in seg"),
    ]);
    fx.post(root, "load", load).expect(200);
    assert_eq!(fx.blob(root, 209).as_deref(), Some(&b"mesh 209"[..]));
    assert_eq!(fx.blob(root, 13).as_deref(), Some(&b""[..]));
    assert_eq!(fx.tarfile(root, 1), vec![entry("1.drc", b"mesh 1")]);
    assert_eq!(fx.tarfile(root, 13), vec![entry("13.drc", b"")]);
    assert_eq!(fx.tarfile(root, 2), vec![entry("2.missing", b"")]);
    fx.head(root, "tarfile/1").expect(200);
    fx.head(root, "tarfile/13").expect(200); // an empty blob is data
    fx.head(root, "tarfile/2").expect(400);
    assert_eq!(fx.missing(root, 1), Vec::<u64>::new());
    assert_eq!(fx.missing(root, 2), vec![2]);
    fx.get(root, "missing/1").expect_body("[]");
    assert_eq!(
        fx.exists(root, &[1, 2, 13, 209, 311, 5000, 0, 999]),
        vec![true, false, true, true, false, true, false, false]
    );
    fx.srv
        .get_with_body(&fx.path(root, "exists"), "[]")
        .expect(200)
        .expect_body("[]");
    // hash= is the MD5 of the body, as labelmap's batch reads take it.
    let body = "[1, 2]";
    let md5 = "04cd0e0151f352e7fd414d694a604136";
    let r = fx
        .srv
        .get_with_body(&fx.path(root, &format!("exists?hash={md5}")), body)
        .expect(200);
    assert_eq!(r.json(), json!([true, false]));
    let r = fx
        .srv
        .get_with_body(
            &fx.path(root, "exists?hash=00000000000000000000000000000000"),
            body,
        )
        .expect(400);
    assert!(r.text().contains("hash"), "{}", r.text());
    // Unknown query parameters are ignored.
    fx.get(root, "tarfile/1?u=someone&app=neuclease")
        .expect(200);
}

#[test]
fn merges_in_the_labelmap_change_which_supervoxels_tarfile_lists() {
    let fx = setup();
    let root = &fx.root;
    fx.post(
        root,
        "load",
        tar_of(&[("1.drc", b"one"), ("209.drc", b"two-o-nine")]),
    )
    .expect(200);
    let seg = fx.seg(root);
    seg.merge_ok(&[209, 311, 1], "");
    assert_eq!(
        fx.tarfile(root, 209),
        vec![
            entry("1.drc", b"one"),
            entry("209.drc", b"two-o-nine"),
            entry("311.missing", b""),
        ]
    );
    assert_eq!(fx.missing(root, 209), vec![311]);
    fx.head(root, "tarfile/209").expect(400);
    // Merged-away bodies are gone.
    let r = fx.get(root, "tarfile/1").expect(400);
    assert!(r.text().contains("body 1"), "{}", r.text());
    fx.head(root, "tarfile/311").expect(400);
    fx.get(root, "missing/311").expect(400);
    fx.post(root, "supervoxel/311", b"three-eleven".to_vec())
        .expect(200);
    fx.head(root, "tarfile/209").expect(200);
    assert_eq!(fx.missing(root, 209), Vec::<u64>::new());
    // A cleave splits the archive again.
    let (cleaved, _) = seg.cleave_ok(209, &[1], "");
    assert_eq!(fx.tarfile(root, cleaved), vec![entry("1.drc", b"one")]);
    assert_eq!(
        fx.tarfile(root, 209),
        vec![
            entry("209.drc", b"two-o-nine"),
            entry("311.drc", b"three-eleven")
        ]
    );
}

#[test]
fn versions_read_ancestors_tombstones_stay_local_and_locked_nodes_refuse() {
    let fx = setup();
    let root = fx.root.clone();
    fx.post(
        &root,
        "load",
        tar_of(&[("1.drc", b"root one"), ("2.drc", b"root two")]),
    )
    .expect(200);
    fx.srv.commit(&root);
    let before = fx.mutations(&root);
    // The committed root refuses every write, and nothing changes.
    fx.post(&root, "supervoxel/1", b"late".to_vec()).expect(400);
    fx.post(&root, "supervoxel/13", b"late".to_vec())
        .expect(400);
    fx.delete(&root, "supervoxel/2").expect(400);
    fx.post(&root, "load", tar_of(&[("13.drc", b"late")]))
        .expect(400);
    assert_eq!(fx.blob(&root, 1).as_deref(), Some(&b"root one"[..]));
    assert_eq!(fx.blob(&root, 2).as_deref(), Some(&b"root two"[..]));
    assert_eq!(fx.blob(&root, 13), None);
    assert_eq!(fx.mutations(&root).len(), before.len());

    let child = fx.srv.newversion(&root);
    // The child sees the root's blobs until it writes its own.
    assert_eq!(fx.blob(&child, 1).as_deref(), Some(&b"root one"[..]));
    fx.delete(&child, "supervoxel/1").expect(200);
    fx.post(&child, "supervoxel/2", b"child two".to_vec())
        .expect(200);
    fx.post(&child, "supervoxel/13", b"child thirteen".to_vec())
        .expect(200);
    assert_eq!(fx.blob(&child, 1), None);
    assert_eq!(fx.blob(&child, 2).as_deref(), Some(&b"child two"[..]));
    assert_eq!(fx.blob(&root, 1).as_deref(), Some(&b"root one"[..]));
    assert_eq!(fx.blob(&root, 2).as_deref(), Some(&b"root two"[..]));
    assert_eq!(fx.blob(&root, 13), None);
    // Body lookups read the labelmap at each node: merge 1 into 2 in the child only.
    fx.seg(&child).merge_ok(&[2, 1, 13], "");
    assert_eq!(
        fx.tarfile(&child, 2),
        vec![
            entry("1.missing", b""),
            entry("2.drc", b"child two"),
            entry("13.drc", b"child thirteen"),
        ]
    );
    assert_eq!(fx.tarfile(&root, 2), vec![entry("2.drc", b"root two")]);
    assert_eq!(fx.tarfile(&root, 1), vec![entry("1.drc", b"root one")]);
    fx.get(&child, "tarfile/1").expect(400);
    assert_eq!(fx.missing(&child, 2), vec![1]);
    assert_eq!(fx.exists(&child, &[1, 2, 13]), vec![false, true, true]);
    assert_eq!(fx.exists(&root, &[1, 2, 13]), vec![true, true, false]);
    // A grandchild sees the child's tombstone.
    fx.srv.commit(&child);
    let grandchild = fx.srv.newversion(&child);
    assert_eq!(fx.blob(&grandchild, 1), None);
    assert_eq!(
        fx.blob(&grandchild, 13).as_deref(),
        Some(&b"child thirteen"[..])
    );
}

#[test]
fn writes_are_recorded_in_the_mutation_log() {
    let fx = setup();
    let root = &fx.root;
    fx.post(root, "supervoxel/5?u=alice", b"12345".to_vec())
        .expect(200);
    fx.delete(root, "supervoxel/5").expect(200);
    fx.post(root, "load", tar_of(&[("7.drc", b"77"), ("6.drc", b"6")]))
        .expect(200);
    let recs = fx.mutations(root);
    let summary: Vec<(String, u64, Option<u64>)> = recs
        .iter()
        .map(|r| {
            assert_eq!(r["UUID"], json!(root));
            (
                r["Action"].as_str().unwrap().to_string(),
                r["Supervoxel"].as_u64().unwrap(),
                r["Bytes"].as_u64(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("post".to_string(), 5, Some(5)),
            ("delete".to_string(), 5, None),
            ("post".to_string(), 6, Some(1)),
            ("post".to_string(), 7, Some(2)),
        ]
    );
    assert_eq!(recs[0]["User"], "alice");
    let alice = fx.get(root, "mutations?userid=alice").expect(200).json();
    assert_eq!(alice.as_array().unwrap().len(), 1);
}

#[test]
fn bad_requests_are_4xx_and_write_nothing() {
    let fx = setup();
    let root = &fx.root;
    fx.post(root, "supervoxel/1", b"keep".to_vec()).expect(200);
    let recs = fx.mutations(root).len();

    for bad in ["abc", "0", "-1", "1.5", "18446744073709551616", ""] {
        let p = format!("supervoxel/{bad}");
        fx.post(root, &p, b"x".to_vec()).expect_4xx();
        fx.get(root, &p).expect(400);
        fx.delete(root, &p).expect_4xx();
    }
    let r = fx.post(root, "supervoxel/0", b"x".to_vec()).expect(400);
    assert!(r.text().contains("supervoxel 0"), "{}", r.text());
    fx.post(root, "supervoxel/1/2", b"x".to_vec()).expect(400);
    for bad in ["0", "abc", "-3"] {
        fx.get(root, &format!("tarfile/{bad}")).expect(400);
        fx.head(root, &format!("tarfile/{bad}")).expect(400);
        fx.get(root, &format!("missing/{bad}")).expect(400);
    }
    // Unknown bodies.
    let r = fx.get(root, "tarfile/424242").expect(400);
    assert!(r.text().contains("424242"), "{}", r.text());
    fx.head(root, "tarfile/424242").expect(400);
    fx.get(root, "missing/424242").expect(400);
    // Wrong methods and keywords.
    fx.post(root, "tarfile/1", b"x".to_vec()).expect(400);
    fx.post(root, "exists", b"[1]".to_vec()).expect(400);
    fx.get(root, "load").expect(400);
    fx.get(root, "nosuchthing").expect(400);
    // exists needs a JSON list of ids.
    for body in ["", "{}", "[1, -2]", "[\"1\"]", "[1.5]", "not json"] {
        fx.srv
            .get_with_body(&fx.path(root, "exists"), body)
            .expect(400);
    }
    // Bad archives: bad names, non-files, damage, garbage. Each names its problem.
    let good: &[u8] = b"fine";
    for (members, needle) in [
        (vec![("2.drc", good), ("3.dat", good)], "3.dat"),
        (vec![("2.drc", good), ("0.drc", good)], "0.drc"),
        (vec![("x.drc", good)], "x.drc"),
        (vec![("2.drc", good), ("13", good)], "\"13\""),
        (vec![("meshes/2.drc", good)], "meshes/2.drc"),
    ] {
        let r = fx.post(root, "load", tar_of(&members)).expect(400);
        assert!(r.text().contains(needle), "{needle}: {}", r.text());
    }
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_size(0);
    b.append_data(&mut h, "2.drc", &[][..]).unwrap();
    fx.post(root, "load", b.into_inner().unwrap()).expect(400);
    let whole = tar_of(&[("2.drc", &[2u8; 3000]), ("13.drc", good)]);
    fx.post(root, "load", whole[..2000].to_vec()).expect(400);
    let mut flipped = whole.clone();
    flipped[3600] ^= 0x11; // inside the second header
    fx.post(root, "load", flipped).expect(400);
    fx.post(root, "load", b"this is not a tar archive".to_vec())
        .expect(400);
    // Nothing of the above was written.
    assert_eq!(
        fx.exists(root, &[1, 2, 3, 13]),
        vec![true, false, false, false]
    );
    assert_eq!(fx.blob(root, 1).as_deref(), Some(&b"keep"[..]));
    assert_eq!(fx.mutations(root).len(), recs);
}

#[test]
fn bodies_need_a_synced_labelmap() {
    let fx = setup();
    let root = &fx.root;
    fx.srv.create_instance(root, "tarsupervoxels", "lonely");
    fx.srv.create_instance(root, "keyvalue", "kv");
    let p = |rest: &str| format!("/api/node/{root}/lonely/{rest}");
    for r in [fx.srv.get(&p("tarfile/1")), fx.srv.get(&p("missing/1"))] {
        let r = r.expect(400);
        assert!(r.text().contains("not synced"), "{}", r.text());
    }
    fx.srv.head(&p("tarfile/1")).expect(400);
    // Blobs work without a sync.
    fx.srv.post(&p("supervoxel/1"), b"x".to_vec()).expect(200);
    fx.srv
        .get_with_body(&p("exists"), "[1]")
        .expect(200)
        .expect_body("[true]");
    // Only labelmaps can be synced; unknown names are refused.
    fx.srv
        .post_json(&p("sync"), &json!({"sync": "kv"}))
        .expect(400);
    fx.srv
        .post_json(&p("sync"), &json!({"sync": "nosuch"}))
        .expect(400);
    fx.srv.get(&p("tarfile/1")).expect(400);
    // Two labelmaps: ambiguous until one replaces both.
    Seg::create(&fx.srv, root, "seg2", &standard_settings(0));
    fx.srv
        .post_json(&p("sync"), &json!({"sync": "seg,seg2"}))
        .expect(200);
    let r = fx.srv.get(&p("tarfile/1")).expect(400);
    assert!(r.text().contains("several"), "{}", r.text());
    fx.srv
        .post_json(&p("sync?replace=true"), &json!({"sync": "seg"}))
        .expect(200);
    assert_eq!(
        entries(&fx.srv.get(&p("tarfile/1")).expect(200).body).len(),
        1
    );
}

#[test]
fn bad_extensions_are_refused_at_creation() {
    let fx = setup();
    for ext in ["", "d.rc", "a/b", "missing", "drc!"] {
        fx.srv
            .post_json(
                &format!("/api/repo/{}/instance", fx.root),
                &json!({"typename": "tarsupervoxels", "dataname": "x", "Extension": ext}),
            )
            .expect(400);
    }
}

#[test]
fn large_bodies_stream_in_order() {
    // 300 supervoxels in one body: blobs of assorted sizes cross the stream's chunk size.
    let srv = Server::start();
    let root = srv.create_repo("big");
    let seg = Seg::create(&srv, &root, "seg", &standard_settings(0));
    let vol = Volume::from_fn([0; 3], [64; 3], |x, y, z| {
        1 + ((x / 4) + 16 * (y / 4) + 256 * (z / 16)) as u64 % 300
    });
    seg.write(&vol);
    srv.create_instance(&root, "tarsupervoxels", "meshes");
    srv.post_json(
        &format!("/api/node/{root}/meshes/sync"),
        &json!({"sync": "seg"}),
    )
    .expect(200);
    let fx = Fx { srv, root };
    let svs: Vec<u64> = vol.labels();
    assert_eq!(svs.len(), 300);
    let blob = |sv: u64| vec![(sv % 251) as u8; (sv as usize * 977) % 20_000];
    let names: Vec<String> = svs.iter().map(|sv| format!("{sv}.dat")).collect();
    let blobs: Vec<Vec<u8>> = svs.iter().map(|&sv| blob(sv)).collect();
    let members: Vec<(&str, &[u8])> = names
        .iter()
        .zip(&blobs)
        .filter(|(n, _)| !n.starts_with("17."))
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    fx.post(&fx.root, "load", tar_of(&members)).expect(200);
    let target = svs[0];
    let mut merge = vec![target];
    merge.extend(&svs[1..]);
    fx.seg(&fx.root).merge_ok(&merge, "");
    let got = fx.tarfile(&fx.root, target);
    let want: Vec<(String, Vec<u8>)> = svs
        .iter()
        .map(|&sv| match sv {
            17 => entry("17.missing", b""),
            _ => (format!("{sv}.dat"), blob(sv)),
        })
        .collect();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "tarfile entries differ");
    assert_eq!(fx.missing(&fx.root, target), vec![17]);
}

/// `Generate`: supervoxels without a stored blob are meshed from the synced labelmap — the
/// same bytes as the labelmap's own `mesh/<sv>?supervoxels=true` — on read (nothing stored),
/// and `POST generate/<body>` stores them.
#[test]
fn generate_meshes_supervoxels_from_the_labelmap() {
    let fx = setup();
    let root = &fx.root;
    fx.srv.create_instance_with(
        root,
        "tarsupervoxels",
        "svmeshes",
        &json!({"Extension": "ngmesh", "Generate": "true"}),
    );
    fx.srv
        .post_json(
            &format!("/api/node/{root}/svmeshes/sync"),
            &json!({"sync": "seg"}),
        )
        .expect(200);
    fx.seg(root).merge_ok(&[1, 2], "");
    let path = |rest: &str| format!("/api/node/{root}/svmeshes/{rest}");
    let mesh_of = |sv: u64| {
        fx.srv
            .get(&format!("/api/node/{root}/seg/mesh/{sv}?supervoxels=true"))
            .expect(200)
            .body
    };
    // On read: the labelmap's mesh, and nothing stored.
    let got = fx.srv.get(&path("supervoxel/2")).expect(200).body;
    assert_eq!(got, mesh_of(2));
    fx.srv.get(&path("supervoxel/999999")).expect(404);
    let tar = fx.srv.get(&path("tarfile/1")).expect(200);
    assert_eq!(
        entries(&tar.body),
        vec![
            entry("1.ngmesh", &mesh_of(1)),
            entry("2.ngmesh", &mesh_of(2))
        ]
    );
    fx.srv.head(&path("tarfile/1")).expect(200);
    let missing = fx.srv.get(&path("missing/1")).expect(200).json();
    assert_eq!(missing, json!([]));
    let exists = fx
        .srv
        .get_with_body(&path("exists"), "[1, 2, 999999]")
        .expect(200)
        .json();
    assert_eq!(exists, json!([true, true, false]));
    let log = fx.srv.get(&path("mutations")).expect(200).json();
    assert_eq!(log, json!([]), "reads stored nothing");

    // POST generate stores the body's meshes, once.
    let r = fx.srv.post(&path("generate/1"), "").expect(200).json();
    assert_eq!(r, json!({"generated": 2}));
    let log = fx.srv.get(&path("mutations")).expect(200).json();
    assert_eq!(log.as_array().map(Vec::len), Some(2), "{log}");
    let r = fx.srv.post(&path("generate/1"), "").expect(200).json();
    assert_eq!(r, json!({"generated": 0}));
    assert_eq!(
        fx.srv.get(&path("supervoxel/1")).expect(200).body,
        mesh_of(1)
    );

    // Generate needs a mesh extension; POST generate needs Generate.
    let r = fx.srv.post_json(
        &format!("/api/repo/{root}/instance"),
        &json!({"typename": "tarsupervoxels", "dataname": "bad", "Extension": "drc", "Generate": "true"}),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    fx.post(root, "generate/1", "").expect(400);
}

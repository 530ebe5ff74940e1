//! tarsupervoxels through the engine (in-memory store), below HTTP: body lookups in the synced
//! labelmap at the request's node, and fuzzed `POST load` bodies that must never panic and
//! must write nothing when refused.

use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use tessera_storage::{KvStore, MemoryStore};

use crate::Engine;
use crate::datatype::{Body, DataRequest, DataResponse, Method, Query, Settings};
use crate::engine::{Caller, EngineOptions};
use crate::{Error, Result};

const B: usize = 16;

struct Fixture {
    engine: Arc<Engine>,
    kv: Arc<MemoryStore>,
    root: String,
}

/// A repo with labelmap "seg" (16³ blocks) and tarsupervoxels "meshes" (Extension "drc",
/// `versioned` as given), synced.
fn setup(versioned: bool) -> Fixture {
    let kv = Arc::new(MemoryStore::new());
    let engine = Engine::open(EngineOptions::single(kv.clone())).unwrap();
    let root = engine.create_repo("tsv", "", None, "").unwrap();
    let mut s = Settings::default();
    s.set("typename", "labelmap");
    s.set("dataname", "seg");
    s.set("BlockSize", "16,16,16");
    engine
        .create_instance(&root, &s, &Caller::default())
        .unwrap();
    let mut s = Settings::default();
    s.set("typename", "tarsupervoxels");
    s.set("dataname", "meshes");
    s.set("Extension", "drc");
    s.set("versioned", versioned.to_string());
    engine
        .create_instance(&root, &s, &Caller::default())
        .unwrap();
    let fx = Fixture { engine, kv, root };
    fx.call(
        &fx.root,
        "meshes",
        Method::Post,
        "sync",
        &[],
        br#"{"sync": "seg"}"#,
    )
    .unwrap();
    fx
}

impl Fixture {
    fn call(
        &self,
        uuid: &str,
        name: &str,
        method: Method,
        keyword: &str,
        path: &[&str],
        body: &[u8],
    ) -> Result<DataResponse> {
        let req = DataRequest {
            method,
            keyword: keyword.into(),
            path: path.iter().map(|s| s.to_string()).collect(),
            query: Query::default(),
            headers: Default::default(),
            body: Bytes::copy_from_slice(body),
            stream: None,
        };
        self.engine
            .data_request(uuid, name, &req, &Caller::default())
    }

    /// Four 16³ blocks along x holding supervoxels 1..4.
    fn write_labels(&self) {
        let mut vol = Vec::new();
        for _z in 0..B {
            for _y in 0..B {
                for x in 0..4 * B {
                    vol.extend_from_slice(&(1 + (x / B) as u64).to_le_bytes());
                }
            }
        }
        self.call(
            &self.root,
            "seg",
            Method::Post,
            "raw",
            &["0_1_2", "64_16_16", "0_0_0"],
            &vol,
        )
        .unwrap();
    }

    /// Every key and value in the store.
    fn snapshot(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        self.kv
            .scan(&[], &[0xFF; 32], &mut |k, v| {
                out.push((k.to_vec(), v.to_vec()));
                Ok(true)
            })
            .unwrap();
        out
    }
}

fn bytes_of(resp: DataResponse) -> Vec<u8> {
    match resp.body {
        Body::Full(b) => b.to_vec(),
        Body::Stream(it) => it.map(|c| c.unwrap().to_vec()).collect::<Vec<_>>().concat(),
    }
}

/// (name, contents) of every tar entry, in order.
fn entries(tar: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut a = tar::Archive::new(tar);
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut d = Vec::new();
            e.read_to_end(&mut d).unwrap();
            (name, d)
        })
        .collect()
}

fn tar_of(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn tarfile_follows_merges_and_names_missing_supervoxels() {
    let fx = setup(true);
    fx.write_labels();
    let load = tar_of(&[("3.drc", b"three"), ("1.drc", b"one")]);
    fx.call(&fx.root, "meshes", Method::Post, "load", &[], &load)
        .unwrap();
    let tar = |body: &str| {
        entries(&bytes_of(
            fx.call(&fx.root, "meshes", Method::Get, "tarfile", &[body], b"")
                .unwrap(),
        ))
    };
    assert_eq!(tar("1"), vec![("1.drc".to_string(), b"one".to_vec())]);
    fx.call(&fx.root, "seg", Method::Post, "merge", &[], b"[2, 3, 1]")
        .unwrap();
    assert_eq!(
        tar("2"),
        vec![
            ("1.drc".to_string(), b"one".to_vec()),
            ("2.missing".to_string(), vec![]),
            ("3.drc".to_string(), b"three".to_vec()),
        ]
    );
    // Merged-away bodies are unknown.
    let e = fx
        .call(&fx.root, "meshes", Method::Get, "tarfile", &["1"], b"")
        .err()
        .unwrap();
    assert!(matches!(e, Error::BadRequest(_)), "{e}");
    assert!(e.to_string().contains("body 1 does not exist"), "{e}");
}

#[test]
fn unversioned_instances_read_the_labelmap_at_the_named_node() {
    let fx = setup(false);
    fx.write_labels();
    fx.engine.commit(&fx.root, None, vec![]).unwrap();
    let child = fx
        .engine
        .new_version(&fx.root, None, String::new(), None)
        .unwrap();
    fx.call(&child, "seg", Method::Post, "merge", &[], b"[4, 1]")
        .unwrap();
    // The blob lives at the root (unversioned) but the body is the child's.
    fx.call(&child, "meshes", Method::Post, "supervoxel", &["1"], b"m1")
        .unwrap();
    let missing = |uuid: &str, body: &str| {
        fx.call(uuid, "meshes", Method::Get, "missing", &[body], b"")
            .map(|r| String::from_utf8(bytes_of(r)).unwrap())
    };
    assert_eq!(missing(&child, "4").unwrap(), "[4]");
    assert_eq!(missing(&fx.root, "4").unwrap(), "[4]");
    assert_eq!(missing(&fx.root, "1").unwrap(), "[]");
    assert!(missing(&child, "1").is_err());
}

#[test]
fn endpoints_needing_bodies_refuse_without_a_sync() {
    let fx = setup(true);
    fx.write_labels();
    let req = DataRequest {
        method: Method::Post,
        keyword: "sync".into(),
        path: vec![],
        query: Query(std::iter::once(("replace".into(), "true".into())).collect()),
        headers: Default::default(),
        body: Bytes::from_static(br#"{"sync": ""}"#),
        stream: None,
    };
    fx.engine
        .data_request(&fx.root, "meshes", &req, &Caller::default())
        .unwrap();
    for (method, keyword) in [
        (Method::Get, "tarfile"),
        (Method::Head, "tarfile"),
        (Method::Get, "missing"),
    ] {
        let e = fx
            .call(&fx.root, "meshes", method, keyword, &["1"], b"")
            .err()
            .unwrap();
        assert!(matches!(e, Error::BadRequest(_)), "{e}");
        assert!(e.to_string().contains("not synced"), "{e}");
    }
    // Blob I/O needs no sync.
    fx.call(&fx.root, "meshes", Method::Post, "supervoxel", &["1"], b"x")
        .unwrap();
}

/// A valid load body of three members.
fn valid_load() -> Vec<u8> {
    tar_of(&[("5.drc", &[5u8; 700]), ("6.drc", b""), ("7.drc", b"seven")])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn damaged_loads_are_refused_and_write_nothing(
        cut in 1usize..4000,
        flip_at in 0usize..4000,
        flip in 1u8..=255,
        truncate in any::<bool>(),
    ) {
        let fx = setup(true);
        let before = fx.snapshot();
        let mut body = valid_load();
        if truncate {
            body.truncate(body.len() - cut.min(body.len() - 1));
        } else {
            let at = flip_at % body.len();
            body[at] ^= flip;
        }
        match fx.call(&fx.root, "meshes", Method::Post, "load", &[], &body) {
            Ok(_) => {}
            Err(Error::BadRequest(_)) => prop_assert!(fx.snapshot() == before),
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
    }

    #[test]
    fn random_loads_never_panic(body in proptest::collection::vec(any::<u8>(), 0..3000)) {
        let fx = setup(true);
        let before = fx.snapshot();
        if fx.call(&fx.root, "meshes", Method::Post, "load", &[], &body).is_err() {
            prop_assert!(fx.snapshot() == before);
        }
    }

    #[test]
    fn one_bad_member_refuses_the_whole_load(
        bad in prop::sample::select(vec!["0.drc", "x.drc", "8.dat", "9", "-1.drc", "10.drc.gz"]),
        at in 0usize..4,
    ) {
        let fx = setup(true);
        let before = fx.snapshot();
        let mut members: Vec<(&str, &[u8])> =
            vec![("1.drc", b"a"), ("2.drc", b"b"), ("3.drc", b"c")];
        members.insert(at.min(members.len()), (bad, b"bad"));
        let e = fx
            .call(&fx.root, "meshes", Method::Post, "load", &[], &tar_of(&members))
            .err()
            .unwrap();
        prop_assert!(e.to_string().contains(bad), "{}", e);
        prop_assert!(fx.snapshot() == before);
    }
}

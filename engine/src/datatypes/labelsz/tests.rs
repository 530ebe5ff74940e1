//! labelsz through the engine (in-memory store), below HTTP: request parsing, bad input
//! refused with nothing written, the JSON shapes of every read, and versioned counts. Counting
//! from a live annotation instance is covered by the black-box tests (tests/tests/labelsz.rs).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use tessera_storage::MemoryStore;

use super::keys::{Counts, IndexType};
use super::store::{label_counts, put_change};
use crate::Engine;
use crate::datatype::{Body, DataRequest, DataResponse, Method, Query, Settings};
use crate::engine::{Caller, EngineOptions};
use crate::{Error, Result};

struct Fixture {
    engine: Arc<Engine>,
    root: String,
}

fn setup() -> Fixture {
    let engine = Engine::open(EngineOptions::single(Arc::new(MemoryStore::new()))).unwrap();
    let root = engine.create_repo("sz", "", None, "").unwrap();
    let fx = Fixture { engine, root };
    fx.create("sz", &[]).unwrap();
    fx
}

impl Fixture {
    fn create(&self, name: &str, extra: &[(&str, &str)]) -> Result<()> {
        let mut s = Settings::default();
        s.set("typename", "labelsz");
        s.set("dataname", name);
        for (k, v) in extra {
            s.set(k, *v);
        }
        self.engine
            .create_instance(&self.root, &s, &Caller::default())
            .map(|_| ())
    }

    fn call(
        &self,
        uuid: &str,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: &[u8],
    ) -> Result<String> {
        let mut segs = path.split('/');
        let keyword = segs.next().unwrap().to_string();
        let req = DataRequest {
            method,
            keyword,
            path: segs.map(str::to_string).collect(),
            query: Query(
                query
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<HashMap<_, _>>(),
            ),
            headers: Default::default(),
            body: Bytes::copy_from_slice(body),
            stream: None,
        };
        let resp = self
            .engine
            .data_request(uuid, "sz", &req, &Caller::default())?;
        Ok(text(resp))
    }

    fn get(&self, uuid: &str, path: &str) -> String {
        self.call(uuid, Method::Get, path, &[], b"")
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// Writes absolute counts at `uuid` as the sync worker does.
    fn set(&self, uuid: &str, updates: &[(u64, Counts)]) {
        let ctx = self
            .engine
            .ctx_at(uuid, "sz", None, &Caller::admin())
            .unwrap();
        let labels: Vec<u64> = updates.iter().map(|u| u.0).collect();
        let old = label_counts(&ctx.store, &ctx.view, &labels).unwrap();
        let mut m = ctx.write();
        for ((label, new), old) in updates.iter().zip(&old) {
            put_change(&mut m.batch, &ctx.view, *label, old, new);
        }
        m.commit().unwrap();
    }
}

fn text(resp: DataResponse) -> String {
    assert_eq!(resp.status, 200);
    match resp.body {
        Body::Full(b) => String::from_utf8(b.to_vec()).unwrap(),
        Body::Stream(_) => panic!("labelsz answers whole bodies"),
    }
}

fn bad(r: Result<String>) -> String {
    match r {
        Err(e @ Error::BadRequest(_)) => e.to_string(),
        other => panic!("expected a 400, got {:?}", other.map_err(|e| e.to_string())),
    }
}

/// PostSyn, PreSyn, Gap, Note; AllSyn is their synaptic sum.
fn counts(post: u32, pre: u32, gap: u32, note: u32) -> Counts {
    [post, pre, gap, note, post + pre + gap]
}

#[test]
fn reads_of_an_empty_instance() {
    let fx = setup();
    let r = &fx.root;
    assert_eq!(fx.get(r, "count/5/PreSyn"), r#"{"Label":5,"PreSyn":0}"#);
    assert_eq!(
        fx.call(r, Method::Get, "counts/AllSyn", &[], b"[3, 1]")
            .unwrap(),
        r#"[{"Label":3,"AllSyn":0},{"Label":1,"AllSyn":0}]"#
    );
    assert_eq!(
        fx.call(r, Method::Get, "counts/Note", &[], b"[]").unwrap(),
        "[]"
    );
    assert_eq!(fx.get(r, "top/3/Note"), "[]");
    assert_eq!(fx.get(r, "threshold/0/Gap"), "[]");
}

#[test]
fn reads_answer_in_dvid_shapes() {
    let fx = setup();
    let r = &fx.root;
    fx.set(
        r,
        &[
            (188, counts(1, 81, 0, 0)),
            (23, counts(0, 65, 2, 4)),
            (8137, counts(0, 58, 0, 0)),
            (9, counts(0, 65, 0, 0)),
        ],
    );
    assert_eq!(
        fx.get(r, "count/188/PreSyn"),
        r#"{"Label":188,"PreSyn":81}"#
    );
    assert_eq!(fx.get(r, "count/23/AllSyn"), r#"{"Label":23,"AllSyn":67}"#);
    assert_eq!(fx.get(r, "count/23/Note"), r#"{"Label":23,"Note":4}"#);
    assert_eq!(
        fx.call(r, Method::Get, "counts/PreSyn", &[], b"[8137,1,188]")
            .unwrap(),
        r#"[{"Label":8137,"PreSyn":58},{"Label":1,"PreSyn":0},{"Label":188,"PreSyn":81}]"#
    );
    assert_eq!(
        fx.get(r, "top/3/PreSyn"),
        r#"[{"Label":188,"Size":81},{"Label":9,"Size":65},{"Label":23,"Size":65}]"#
    );
    assert_eq!(
        fx.get(r, "top/100/AllSyn"),
        r#"[{"Label":188,"Size":82},{"Label":23,"Size":67},{"Label":9,"Size":65},{"Label":8137,"Size":58}]"#
    );
    assert_eq!(
        fx.get(r, "threshold/65/PreSyn"),
        r#"[{"Label":188,"Size":81},{"Label":9,"Size":65},{"Label":23,"Size":65}]"#
    );
    assert_eq!(
        fx.call(
            r,
            Method::Get,
            "threshold/1/PreSyn",
            &[("offset", "1"), ("n", "2")],
            b""
        )
        .unwrap(),
        r#"[{"Label":9,"Size":65},{"Label":23,"Size":65}]"#
    );
    assert_eq!(
        fx.call(
            r,
            Method::Get,
            "threshold/1/PreSyn",
            &[("offset", "4")],
            b""
        )
        .unwrap(),
        "[]"
    );
    assert_eq!(
        fx.call(r, Method::Get, "threshold/1/PreSyn", &[("n", "0")], b"")
            .unwrap()
            .matches("Label")
            .count(),
        4
    );
}

#[test]
fn versions_keep_their_own_counts() {
    let fx = setup();
    let root = fx.root.clone();
    fx.set(&root, &[(1, counts(0, 3, 0, 0)), (2, counts(0, 2, 0, 0))]);
    fx.engine.commit(&root, None, vec![]).unwrap();
    let child = fx
        .engine
        .new_version(&root, None, String::new(), None)
        .unwrap();
    assert_eq!(
        fx.get(&child, "top/5/PreSyn"),
        fx.get(&root, "top/5/PreSyn")
    );
    fx.set(&child, &[(1, counts(0, 0, 0, 0)), (2, counts(0, 5, 0, 0))]);
    assert_eq!(fx.get(&child, "top/5/PreSyn"), r#"[{"Label":2,"Size":5}]"#);
    assert_eq!(
        fx.get(&child, "count/1/PreSyn"),
        r#"{"Label":1,"PreSyn":0}"#
    );
    assert_eq!(
        fx.get(&root, "top/5/PreSyn"),
        r#"[{"Label":1,"Size":3},{"Label":2,"Size":2}]"#
    );
    // A committed node refuses reload like any write.
    let msg = bad(fx.call(&root, Method::Post, "reload", &[], b""));
    assert!(msg.contains("locked"), "{msg}");
}

#[test]
fn bad_input_is_refused() {
    let fx = setup();
    let r = &fx.root;
    let get = |path: &str, query: &[(&str, &str)], body: &[u8]| {
        bad(fx.call(r, Method::Get, path, query, body))
    };
    for path in [
        "count/abc/PreSyn",
        "count/-1/PreSyn",
        "count/+1/PreSyn",
        "count/18446744073709551616/PreSyn",
        "count/1/Voxels",
        "count/1/presyn",
        "count/1/Bogus",
        "count/1",
        "count/1/PreSyn/extra",
        "top/0/PreSyn",
        "top/4294967296/PreSyn",
        "top/99999999999999999999999/PreSyn",
        "top/x/PreSyn",
        "top/3",
        "top/3/Voxels",
        "threshold/x/PreSyn",
        "threshold/-1/PreSyn",
        "threshold/1/Unknown",
        "threshold/1",
        "counts",
        "counts/Voxels",
    ] {
        get(path, &[], b"[1]");
    }
    for q in [
        ("n", "10001"),
        ("n", "-1"),
        ("n", "x"),
        ("offset", "-1"),
        ("offset", "1.5"),
    ] {
        get("threshold/1/PreSyn", &[q], b"");
    }
    let bodies: [&[u8]; 7] = [
        b"",
        b"nope",
        b"[-1]",
        b"[1.5]",
        b"{\"a\":1}",
        b"[\"1\"]",
        b"[1,",
    ];
    for body in bodies {
        get("counts/PreSyn", &[], body);
    }
    assert!(get("count/1/Voxels", &[], b"").contains("Voxels"));
    assert!(get("count/1/Bogus", &[], b"").contains("Bogus"));
    for (m, path) in [
        (Method::Post, "count/1/PreSyn"),
        (Method::Post, "top/1/PreSyn"),
        (Method::Delete, "counts/PreSyn"),
        (Method::Get, "reload"),
        (Method::Get, "nosuch"),
    ] {
        bad(fx.call(r, m, path, &[], b""));
    }
    // reload needs exactly one synced annotation instance.
    let msg = bad(fx.call(r, Method::Post, "reload", &[], b""));
    assert!(msg.contains("not synced"), "{msg}");
    // Nothing was written by any of it.
    let ctx = fx.engine.ctx_at(r, "sz", None, &Caller::admin()).unwrap();
    assert!(
        super::store::all_counts(&ctx.store, &ctx.view)
            .unwrap()
            .is_empty()
    );
    assert!(
        super::store::ranked(&ctx.store, &ctx.view, IndexType::AllSyn, 0, 0, 10)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn roi_setting_is_checked_and_reported() {
    let fx = setup();
    for roi in ["a,b,c", ",x", "a,", " , "] {
        assert!(
            matches!(fx.create("bad", &[("ROI", roi)]), Err(Error::BadRequest(_))),
            "ROI {roi:?}"
        );
    }
    fx.create("withroi", &[("ROI", "mito,abc123")]).unwrap();
    fx.create("byname", &[("roi", "mito")]).unwrap();
    let info = fx.engine.instance_info(&fx.root, "withroi").unwrap();
    assert_eq!(info["Extended"]["StaticROI"], "mito,abc123");
    assert_eq!(info["Base"]["TypeName"], "labelsz");
    let info = fx.engine.instance_info(&fx.root, "byname").unwrap();
    assert_eq!(info["Extended"]["StaticROI"], "mito");
    let info = fx.engine.instance_info(&fx.root, "sz").unwrap();
    assert_eq!(info["Extended"]["StaticROI"], "");
}

#[test]
fn syncs_only_to_annotation_instances() {
    let fx = setup();
    let mut s = Settings::default();
    s.set("typename", "keyvalue");
    s.set("dataname", "kv");
    fx.engine
        .create_instance(&fx.root, &s, &Caller::default())
        .unwrap();
    bad(fx.call(&fx.root, Method::Post, "sync", &[], br#"{"sync": "kv"}"#));
}

//! keyvalue end to end through the engine (in-memory store), below the HTTP layer.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use prost::Message;
use serde_json::Value;
use tessera_storage::MemoryStore;

use super::proto::{KeyRange, KeyValue, KeyValues, Keys};
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
    let root = engine.create_repo("kvtest", "", None, "").unwrap();
    let mut settings = Settings::default();
    settings.set("typename", "keyvalue");
    settings.set("dataname", "kv");
    engine
        .create_instance(&root, &settings, &Caller::default())
        .unwrap();
    Fixture { engine, root }
}

struct Req<'a> {
    method: Method,
    keyword: &'a str,
    path: &'a [&'a str],
    query: &'a [(&'a str, &'a str)],
    headers: &'a [(&'a str, &'a str)],
    body: &'a [u8],
}

fn req<'a>(method: Method, keyword: &'a str, path: &'a [&'a str]) -> Req<'a> {
    Req {
        method,
        keyword,
        path,
        query: &[],
        headers: &[],
        body: &[],
    }
}

impl Fixture {
    fn call_as(&self, uuid: &str, r: Req<'_>, caller: &Caller) -> Result<DataResponse> {
        let request = DataRequest {
            method: r.method,
            keyword: r.keyword.to_string(),
            path: r.path.iter().map(|s| s.to_string()).collect(),
            query: Query(
                r.query
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
            body: Bytes::copy_from_slice(r.body),
            stream: None,
        };
        self.engine.data_request(uuid, "kv", &request, caller)
    }

    fn call_at(&self, uuid: &str, r: Req<'_>) -> Result<DataResponse> {
        self.call_as(uuid, r, &Caller::default())
    }

    fn call(&self, r: Req<'_>) -> Result<DataResponse> {
        self.call_at(&self.root, r)
    }

    fn post(&self, key: &str, value: &[u8]) {
        let resp = self
            .call(Req {
                body: value,
                ..req(Method::Post, "key", &[key])
            })
            .unwrap();
        assert_eq!(resp.status, 200);
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        self.call(req(Method::Get, "key", &[key])).map(body)
    }

    fn json(&self, r: Req<'_>) -> Value {
        serde_json::from_slice(&body(self.call(r).unwrap())).unwrap()
    }
}

fn body(resp: DataResponse) -> Vec<u8> {
    match resp.body {
        Body::Full(b) => b.to_vec(),
        Body::Stream(chunks) => chunks.flat_map(|c| c.unwrap().to_vec()).collect(),
    }
}

fn header<'a>(resp: &'a DataResponse, name: &str) -> Option<&'a str> {
    resp.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn status(r: Result<DataResponse>) -> u16 {
    match r {
        Ok(resp) => resp.status,
        Err(e) => e.status(),
    }
}

#[test]
fn post_get_head_delete() {
    let f = setup();
    f.post("a", b"hello");
    f.post("empty", b"");
    let resp = f.call(req(Method::Get, "key", &["a"])).unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.content_type, "application/octet-stream");
    assert_eq!(header(&resp, "Accept-Ranges"), Some("bytes"));
    assert_eq!(body(resp), b"hello");
    assert_eq!(f.get("empty").unwrap(), b"");

    let head = f.call(req(Method::Head, "key", &["a"])).unwrap();
    assert_eq!(head.status, 200);
    assert!(body(head).is_empty());
    assert_eq!(status(f.call(req(Method::Head, "key", &["nope"]))), 404);

    match f.get("nope") {
        Err(Error::NotFound(m)) => assert_eq!(m, r#"Key "nope" not found"#),
        other => panic!("{:?}", other.map(|_| ())),
    }

    assert_eq!(status(f.call(req(Method::Delete, "key", &["a"]))), 200);
    assert_eq!(status(f.call(req(Method::Delete, "key", &["never"]))), 200);
    assert_eq!(f.get("a").unwrap_err().status(), 404);

    // Overwrite.
    f.post("empty", b"x");
    assert_eq!(f.get("empty").unwrap(), b"x");
}

#[test]
fn bad_keys_and_methods() {
    let f = setup();
    assert_eq!(status(f.call(req(Method::Post, "key", &[]))), 400);
    assert_eq!(status(f.call(req(Method::Post, "key", &[""]))), 400);
    assert_eq!(status(f.call(req(Method::Get, "key", &["a", "b"]))), 400);
    assert_eq!(status(f.call(req(Method::Put, "key", &["a"]))), 400);
    assert_eq!(status(f.call(req(Method::Delete, "keys", &[]))), 400);
    assert_eq!(status(f.call(req(Method::Get, "keyrange", &["a"]))), 400);
    assert_eq!(status(f.call(req(Method::Get, "bogus", &[]))), 400);
    assert_eq!(f.json(req(Method::Get, "keys", &[])), serde_json::json!([]));
}

#[test]
fn keys_and_inclusive_key_ranges() {
    let f = setup();
    for k in ["c", "a", "ca", "b", "d", "c1"] {
        f.post(k, k.as_bytes());
    }
    assert_eq!(
        f.json(req(Method::Get, "keys", &[])),
        serde_json::json!(["a", "b", "c", "c1", "ca", "d"])
    );
    assert_eq!(
        f.json(req(Method::Get, "keyrange", &["b", "c"])),
        serde_json::json!(["b", "c"])
    );
    assert_eq!(
        f.json(req(Method::Get, "keyrange", &["a", "a"])),
        serde_json::json!(["a"])
    );
    assert_eq!(
        f.json(req(Method::Get, "keyrange", &["c0", "cz"])),
        serde_json::json!(["c1", "ca"])
    );
    assert_eq!(
        f.json(req(Method::Get, "keyrange", &["z", "a"])),
        serde_json::json!([])
    );
}

#[test]
fn byte_ranges_and_range_header() {
    let f = setup();
    f.post("k", b"0123456789");
    let q = |s: &str, e: &str| {
        let query = [("byte_start", s), ("byte_end", e)];
        f.call(Req {
            query: &query,
            ..req(Method::Get, "key", &["k"])
        })
    };
    let resp = q("2", "4").unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(body(resp), b"234");
    assert_eq!(body(q("9", "9").unwrap()), b"9");
    for (s, e) in [("4", "2"), ("-1", "3"), ("0", "10"), ("x", "1")] {
        assert_eq!(status(q(s, e)), 400, "{s}-{e}");
    }
    let one_bound = f.call(Req {
        query: &[("byte_start", "1")],
        ..req(Method::Get, "key", &["k"])
    });
    assert_eq!(status(one_bound), 400);

    let ranged = |h: &str| {
        let headers = [("range", h)];
        f.call(Req {
            headers: &headers,
            ..req(Method::Get, "key", &["k"])
        })
    };
    let resp = ranged("bytes=1-3").unwrap();
    assert_eq!(resp.status, 206);
    assert_eq!(header(&resp, "Content-Range"), Some("bytes 1-3/10"));
    assert_eq!(header(&resp, "Accept-Ranges"), Some("bytes"));
    assert_eq!(body(resp), b"123");
    let resp = ranged("bytes=7-100").unwrap();
    assert_eq!(header(&resp, "Content-Range"), Some("bytes 7-9/10"));
    assert_eq!(body(resp), b"789");
    assert_eq!(body(ranged("bytes=8-").unwrap()), b"89");
    assert_eq!(body(ranged("bytes=-2").unwrap()), b"89");
    match ranged("bytes=10-") {
        Err(Error::RangeNotSatisfiable { len }) => assert_eq!(len, 10),
        other => panic!("{:?}", other.map(|r| r.status)),
    }
    for ignored in ["bytes=0-1,4-5", "bytes=x-", "lines=1-2", "bytes=5-1"] {
        let resp = ranged(ignored).unwrap();
        assert_eq!(resp.status, 200, "{ignored}");
        assert_eq!(body(resp), b"0123456789");
    }
    let both = f.call(Req {
        query: &[("byte_start", "0"), ("byte_end", "1")],
        headers: &[("range", "bytes=0-1")],
        ..req(Method::Get, "key", &["k"])
    });
    assert_eq!(status(both), 400);
    // A missing key is still a 404 under a Range header.
    let missing = f.call(Req {
        headers: &[("range", "bytes=0-1")],
        ..req(Method::Get, "key", &["nope"])
    });
    assert_eq!(status(missing), 404);
}

#[test]
fn keyvalues_protobuf() {
    let f = setup();
    f.post("a", b"AAAA");
    f.post("b", b"B");
    let keys = Keys {
        keys: vec!["b".into(), "missing".into(), "a".into()],
        key_ranges: vec![
            KeyRange {
                key: "a".into(),
                byte_start: 1,
                byte_end: 2,
            },
            KeyRange {
                key: "gone".into(),
                byte_start: 0,
                byte_end: 5,
            },
        ],
    }
    .encode_to_vec();
    let resp = f
        .call(Req {
            body: &keys,
            ..req(Method::Get, "keyvalues", &[])
        })
        .unwrap();
    assert_eq!(resp.content_type, "application/octet-stream");
    let kvs = KeyValues::decode(body(resp).as_slice()).unwrap();
    let got: Vec<(&str, &[u8])> = kvs
        .kvs
        .iter()
        .map(|kv| (kv.key.as_str(), kv.value.as_slice()))
        .collect();
    assert_eq!(
        got,
        [
            ("b", &b"B"[..]),
            ("missing", &b""[..]),
            ("a", &b"AAAA"[..]),
            ("a", &b"AA"[..]),
            ("gone", &b""[..]),
        ]
    );
    // A range beyond an existing value is a 400; a malformed body too.
    let beyond = Keys {
        keys: vec![],
        key_ranges: vec![KeyRange {
            key: "b".into(),
            byte_start: 0,
            byte_end: 1,
        }],
    }
    .encode_to_vec();
    assert_eq!(
        status(f.call(Req {
            body: &beyond,
            ..req(Method::Get, "keyvalues", &[])
        })),
        400
    );
    assert_eq!(
        status(f.call(Req {
            body: b"\x0a\x09abc",
            ..req(Method::Get, "keyvalues", &[])
        })),
        400
    );
}

#[test]
fn keyvalues_json_and_tar() {
    let f = setup();
    f.post("j1", br#"{"a":1}"#);
    f.post("j2", b"[1, 2, 3]");
    f.post("raw", b"not json");
    let body_json = br#"["j2","nope","j1",{"key":"j2","byte_start":1,"byte_end":1}]"#;
    let resp = f
        .call(Req {
            query: &[("json", "true")],
            body: body_json,
            ..req(Method::Get, "keyvalues", &[])
        })
        .unwrap();
    assert_eq!(resp.content_type, "application/json");
    assert_eq!(
        String::from_utf8(body(resp)).unwrap(),
        r#"{"j2":[1, 2, 3],"nope":{},"j1":{"a":1},"j2":1}"#
    );
    // Invalid JSON values pass unchecked, but not with check=true.
    let raw = br#"["raw"]"#;
    let unchecked = f
        .call(Req {
            query: &[("json", "true")],
            body: raw,
            ..req(Method::Get, "keyvalues", &[])
        })
        .unwrap();
    assert_eq!(body(unchecked), br#"{"raw":not json}"#);
    let checked = f.call(Req {
        query: &[("json", "true"), ("check", "true")],
        body: raw,
        ..req(Method::Get, "keyvalues", &[])
    });
    assert_eq!(status(checked), 400);
    // Ranged slices must be JSON.
    let bad_slice = f.call(Req {
        query: &[("json", "true")],
        body: br#"[{"key":"j1","byte_start":0,"byte_end":2}]"#,
        ..req(Method::Get, "keyvalues", &[])
    });
    assert_eq!(status(bad_slice), 400);
    // Not an array.
    let not_array = f.call(Req {
        query: &[("json", "true")],
        body: br#"{"j1":1}"#,
        ..req(Method::Get, "keyvalues", &[])
    });
    assert_eq!(status(not_array), 400);
    // tar and json together.
    let both = f.call(Req {
        query: &[("json", "true"), ("tar", "true")],
        body: raw,
        ..req(Method::Get, "keyvalues", &[])
    });
    assert_eq!(status(both), 400);

    for flag in ["jsontar", "tar"] {
        let query: &[(&str, &str)] = &[(flag, "true")];
        let resp = f
            .call(Req {
                query,
                body: br#"["raw","nope","j1"]"#,
                ..req(Method::Get, "keyvalues", &[])
            })
            .unwrap();
        assert_eq!(resp.content_type, "application/tar");
        let tar = body(resp);
        let mut archive = tar::Archive::new(tar.as_slice());
        let entries: Vec<(String, Vec<u8>)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let name = e.path().unwrap().to_string_lossy().into_owned();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                (name, data)
            })
            .collect();
        assert_eq!(
            entries,
            [
                ("raw".to_string(), b"not json".to_vec()),
                ("nope".to_string(), vec![]),
                ("j1".to_string(), br#"{"a":1}"#.to_vec()),
            ]
        );
    }
}

#[test]
fn post_keyvalues_is_atomic_and_logged() {
    let f = setup();
    let kvs = |pairs: &[(&str, &[u8])]| {
        KeyValues {
            kvs: pairs
                .iter()
                .map(|(k, v)| KeyValue {
                    key: k.to_string(),
                    value: v.to_vec(),
                })
                .collect(),
        }
        .encode_to_vec()
    };
    let good = kvs(&[("x", &b"1"[..]), ("y", &b""[..]), ("z", &b"333"[..])]);
    let caller = Caller {
        user: Some("ann".into()),
        app: Some("tests".into()),
        admin: false,
    };
    let resp = f
        .call_as(
            &f.root,
            Req {
                body: &good,
                ..req(Method::Post, "keyvalues", &[])
            },
            &caller,
        )
        .unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(f.get("z").unwrap(), b"333");
    assert_eq!(f.get("y").unwrap(), b"");

    // An empty key anywhere rejects the whole batch.
    let bad = kvs(&[("w", &b"1"[..]), ("", &b"2"[..])]);
    assert_eq!(
        status(f.call(Req {
            body: &bad,
            ..req(Method::Post, "keyvalues", &[])
        })),
        400
    );
    assert_eq!(f.get("w").unwrap_err().status(), 404);
    assert_eq!(
        status(f.call(Req {
            body: b"\xff\xff\xff",
            ..req(Method::Post, "keyvalues", &[])
        })),
        400
    );

    let muts = f.json(req(Method::Get, "mutations", &[]));
    let muts = muts.as_array().unwrap();
    assert_eq!(muts.len(), 3);
    for (m, (key, bytes)) in muts.iter().zip([("x", 1), ("y", 0), ("z", 3)]) {
        assert_eq!(m["Action"], "postkv");
        assert_eq!(m["Key"], key);
        assert_eq!(m["Bytes"], bytes);
        assert_eq!(m["UUID"], f.root.as_str());
        assert_eq!(m["User"], "ann");
        assert_eq!(m["App"], "tests");
        assert!(m["Timestamp"].is_string());
    }
    let filtered = f.json(Req {
        query: &[("userid", "bob")],
        ..req(Method::Get, "mutations", &[])
    });
    assert_eq!(filtered, serde_json::json!([]));
}

#[test]
fn mutations_record_posts_and_deletes() {
    let f = setup();
    assert_eq!(
        body(f.call(req(Method::Get, "mutations", &[])).unwrap()),
        b"[]"
    );
    f.post("k", b"abc");
    f.call(req(Method::Delete, "key", &["k"])).unwrap();
    let muts = f.json(req(Method::Get, "mutations", &[]));
    let actions: Vec<&str> = muts
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["Action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["postkv", "delete"]);
    assert_eq!(muts[1]["Key"], "k");
    assert!(muts[1].get("Bytes").is_none());
    // A failed write logs nothing.
    let _ = f.call(req(Method::Post, "key", &[""]));
    assert_eq!(
        f.json(req(Method::Get, "mutations", &[]))
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn versions_and_mutation_ranges() {
    let f = setup();
    f.post("shared", b"root");
    f.post("doomed", b"root");
    f.engine.commit(&f.root, None, vec![]).unwrap();
    // Writes to a committed node are refused before reaching the handler.
    assert_eq!(
        status(f.call(Req {
            body: b"x",
            ..req(Method::Post, "key", &["late"])
        })),
        400
    );
    let child = f
        .engine
        .new_version(&f.root, None, String::new(), None)
        .unwrap();
    f.call_at(
        &child,
        Req {
            body: b"child",
            ..req(Method::Post, "key", &["new"])
        },
    )
    .unwrap();
    f.call_at(&child, req(Method::Delete, "key", &["doomed"]))
        .unwrap();
    let keys_at = |uuid: &str| -> Value {
        serde_json::from_slice(&body(
            f.call_at(uuid, req(Method::Get, "keys", &[])).unwrap(),
        ))
        .unwrap()
    };
    assert_eq!(keys_at(&child), serde_json::json!(["new", "shared"]));
    assert_eq!(keys_at(&f.root), serde_json::json!(["doomed", "shared"]));
    assert_eq!(
        body(
            f.call_at(&child, req(Method::Get, "key", &["shared"]))
                .unwrap()
        ),
        b"root"
    );

    let child_muts: Value = serde_json::from_slice(&body(
        f.call_at(&child, req(Method::Get, "mutations", &[]))
            .unwrap(),
    ))
    .unwrap();
    assert_eq!(child_muts.as_array().unwrap().len(), 2);
    let path = [f.root.as_str(), child.as_str()];
    let all: Value = serde_json::from_slice(&body(
        f.call_at(&child, req(Method::Get, "mutations-range", &path))
            .unwrap(),
    ))
    .unwrap();
    let keys: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["Key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["shared", "doomed", "new", "doomed"]);
    assert_eq!(all[0]["UUID"], f.root.as_str());
    assert_eq!(all[3]["UUID"], child.as_str());
    assert_eq!(
        status(f.call_at(
            &child,
            req(Method::Get, "mutations-range", &[f.root.as_str()])
        )),
        400
    );
}

#[test]
fn keyrangevalues_formats() {
    let f = setup();
    f.post("a", b"1");
    f.post("b", br#"{"x":2}"#);
    f.post("ba", b"");
    f.post("c", b"3");
    let range = |query: &[(&str, &str)]| {
        f.call(Req {
            query,
            ..req(Method::Get, "keyrangevalues", &["b", "c"])
        })
    };
    let kvs = KeyValues::decode(body(range(&[]).unwrap()).as_slice()).unwrap();
    let keys: Vec<&str> = kvs.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["b", "ba", "c"]);
    let same = body(range(&[("protobuf", "true")]).unwrap());
    assert_eq!(KeyValues::decode(same.as_slice()).unwrap(), kvs);

    let json = range(&[("json", "true"), ("check", "true")]).unwrap();
    assert_eq!(json.content_type, "application/json");
    assert_eq!(body(json), br#"{"b":{"x":2},"ba":{},"c":3}"#);

    let tar = body(range(&[("tar", "true")]).unwrap());
    let names: Vec<String> = tar::Archive::new(tar.as_slice())
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["b", "ba", "c"]);

    f.post("bb", b"{oops");
    assert_eq!(status(range(&[("json", "true"), ("check", "true")])), 400);
    assert_eq!(status(range(&[("json", "true"), ("tar", "true")])), 400);
    assert_eq!(
        status(f.call(req(Method::Get, "keyrangevalues", &["a"]))),
        400
    );
}

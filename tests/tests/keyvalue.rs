//! keyvalue datatype (spec §4.5) and versioned reads (§1.4): tombstones, merges, resolve,
//! byte ranges, batch reads and writes, mutation records, unversioned instances, locked nodes.

use std::collections::BTreeSet;

use tessera_tests::proto::{KeyValue, KeyValues, Keys};
use tessera_tests::*;

fn kv_url(uuid: &str, inst: &str, rest: &str) -> String {
    format!("/api/node/{uuid}/{inst}/{rest}")
}

/// A repo with a committed root holding a `kv` instance; returns (server, root).
fn setup() -> (Server, String) {
    let srv = Server::start();
    let root = srv.create_repo("kvtest");
    srv.create_instance(&root, "keyvalue", "kv");
    (srv, root)
}

// ------------------------------------------------------------------ single keys

#[test]
fn post_get_head_delete_key() {
    let (srv, root) = setup();
    srv.put_key(&root, "kv", "alpha", b"first value");
    let r = srv.get(&kv_url(&root, "kv", "key/alpha")).expect(200);
    assert_eq!(r.body, b"first value");
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/octet-stream")
    );
    assert_eq!(r.header("accept-ranges").as_deref(), Some("bytes"));
    assert_eq!(r.header("content-length").as_deref(), Some("11"));
    let h = srv.head(&kv_url(&root, "kv", "key/alpha")).expect(200);
    assert_eq!(h.header("accept-ranges").as_deref(), Some("bytes"));
    // overwrite
    srv.put_key(&root, "kv", "alpha", b"second");
    assert_eq!(
        srv.key_value(&root, "kv", "alpha").as_deref(),
        Some(&b"second"[..])
    );
    // delete, twice (200 even if absent)
    srv.delete_key(&root, "kv", "alpha");
    srv.delete_key(&root, "kv", "alpha");
    srv.delete_key(&root, "kv", "never-written");
    assert_eq!(srv.key_value(&root, "kv", "alpha"), None);
    srv.head(&kv_url(&root, "kv", "key/alpha")).expect(404);
}

#[test]
fn missing_key_is_404_not_found() {
    let (srv, root) = setup();
    let r = srv.get(&kv_url(&root, "kv", "key/nothere")).expect(404);
    assert!(
        r.text().contains("not found"),
        "404 body should say not found: {:?}",
        r.text()
    );
    srv.head(&kv_url(&root, "kv", "key/nothere")).expect(404);
}

#[test]
fn empty_and_binary_values() {
    let (srv, root) = setup();
    srv.put_key(&root, "kv", "empty", b"");
    let r = srv.get(&kv_url(&root, "kv", "key/empty")).expect(200);
    assert!(r.body.is_empty());
    srv.head(&kv_url(&root, "kv", "key/empty")).expect(200);
    let bin: Vec<u8> = (0..=255u8).rev().cycle().take(70_000).collect();
    srv.put_key(&root, "kv", "bin", &bin);
    assert_eq!(srv.key_value(&root, "kv", "bin"), Some(bin));
}

#[test]
fn percent_encoded_keys_are_decoded() {
    let (srv, root) = setup();
    srv.put_key(&root, "kv", "a%20b", b"space");
    assert_eq!(srv.keys(&root, "kv"), vec!["a b".to_string()]);
    assert_eq!(
        srv.key_value(&root, "kv", "a%20b").as_deref(),
        Some(&b"space"[..])
    );
}

// ------------------------------------------------------------------ keys and keyrange

#[test]
fn keys_sorted_and_keyrange_inclusive() {
    let (srv, root) = setup();
    for k in ["c", "a", "ca", "b", "d", "B"] {
        srv.put_key(&root, "kv", k, k.as_bytes());
    }
    assert_eq!(
        srv.keys(&root, "kv"),
        vec!["B", "a", "b", "c", "ca", "d"],
        "byte-lexicographic order"
    );
    let r = srv
        .get(&kv_url(&root, "kv", "keyrange/b/c"))
        .expect(200)
        .json();
    assert_eq!(
        r,
        json!(["b", "c"]),
        "inclusive bounds; \"ca\" is not <= \"c\""
    );
    let r = srv
        .get(&kv_url(&root, "kv", "keyrange/a/z"))
        .expect(200)
        .json();
    assert_eq!(r, json!(["a", "b", "c", "ca", "d"]));
    let r = srv
        .get(&kv_url(&root, "kv", "keyrange/x/z"))
        .expect(200)
        .json();
    assert_eq!(r, json!([]));
}

#[test]
fn keys_of_empty_instance_is_empty_array() {
    let (srv, root) = setup();
    assert_eq!(
        srv.get(&kv_url(&root, "kv", "keys")).expect(200).json(),
        json!([])
    );
}

// ------------------------------------------------------------------ versioning

#[test]
fn versioned_reads_with_tombstones() {
    let (srv, root) = setup();
    srv.put_key(&root, "kv", "k1", b"v1");
    srv.put_key(&root, "kv", "k2", b"v2");
    srv.put_key(&root, "kv", "k3", b"v3");
    srv.commit(&root);
    let a = srv.newversion(&root);
    let b = srv.branch(&root, "b");
    // overwrite in one child, delete in another
    srv.put_key(&a, "kv", "k1", b"a1");
    srv.put_key(&a, "kv", "only-a", b"new in a");
    srv.delete_key(&b, "kv", "k2");

    // parent unchanged
    assert_eq!(
        srv.key_value(&root, "kv", "k1").as_deref(),
        Some(&b"v1"[..])
    );
    assert_eq!(
        srv.key_value(&root, "kv", "k2").as_deref(),
        Some(&b"v2"[..])
    );
    assert_eq!(srv.key_value(&root, "kv", "only-a"), None);
    assert_eq!(srv.keys(&root, "kv"), vec!["k1", "k2", "k3"]);
    // child a
    assert_eq!(srv.key_value(&a, "kv", "k1").as_deref(), Some(&b"a1"[..]));
    assert_eq!(srv.key_value(&a, "kv", "k2").as_deref(), Some(&b"v2"[..]));
    assert_eq!(
        srv.key_value(&a, "kv", "only-a").as_deref(),
        Some(&b"new in a"[..])
    );
    assert_eq!(srv.keys(&a, "kv"), vec!["k1", "k2", "k3", "only-a"]);
    // child b
    assert_eq!(srv.key_value(&b, "kv", "k1").as_deref(), Some(&b"v1"[..]));
    assert_eq!(srv.key_value(&b, "kv", "k2"), None);
    srv.head(&kv_url(&b, "kv", "key/k2")).expect(404);
    assert_eq!(srv.keys(&b, "kv"), vec!["k1", "k3"]);
    assert_eq!(
        srv.get(&kv_url(&b, "kv", "keyrange/k1/k3"))
            .expect(200)
            .json(),
        json!(["k1", "k3"])
    );

    // a grandchild of b sees the tombstone; a re-put at the grandchild revives the key
    srv.commit(&b);
    let b2 = srv.newversion(&b);
    assert_eq!(srv.key_value(&b2, "kv", "k2"), None);
    srv.put_key(&b2, "kv", "k2", b"revived");
    assert_eq!(
        srv.key_value(&b2, "kv", "k2").as_deref(),
        Some(&b"revived"[..])
    );
    assert_eq!(srv.key_value(&b, "kv", "k2"), None);
    assert_eq!(
        srv.key_value(&root, "kv", "k2").as_deref(),
        Some(&b"v2"[..])
    );
}

#[test]
fn put_then_delete_then_put_in_same_version() {
    let (srv, root) = setup();
    srv.put_key(&root, "kv", "k", b"base");
    srv.commit(&root);
    let c = srv.newversion(&root);
    srv.put_key(&c, "kv", "k", b"child");
    srv.delete_key(&c, "kv", "k");
    assert_eq!(
        srv.key_value(&c, "kv", "k"),
        None,
        "delete removes the same-version value and hides the ancestor"
    );
    srv.put_key(&c, "kv", "k", b"again");
    assert_eq!(srv.key_value(&c, "kv", "k").as_deref(), Some(&b"again"[..]));
    assert_eq!(
        srv.key_value(&root, "kv", "k").as_deref(),
        Some(&b"base"[..])
    );
}

#[test]
fn locked_node_rejects_keyvalue_writes() {
    let (srv, root) = setup();
    srv.put_key(&root, "kv", "k", b"before");
    srv.commit(&root);
    srv.post(&kv_url(&root, "kv", "key/k"), b"after".to_vec())
        .expect(400);
    srv.post(&kv_url(&root, "kv", "key/new"), b"x".to_vec())
        .expect(400);
    srv.delete(&kv_url(&root, "kv", "key/k")).expect(400);
    let batch = encode(&KeyValues {
        kvs: vec![KeyValue {
            key: "batch".into(),
            value: b"x".to_vec(),
        }],
    });
    srv.post(&kv_url(&root, "kv", "keyvalues"), batch)
        .expect(400);
    assert_eq!(
        srv.key_value(&root, "kv", "k").as_deref(),
        Some(&b"before"[..])
    );
    assert_eq!(srv.keys(&root, "kv"), vec!["k"]);
    // reads still work
    srv.get(&kv_url(&root, "kv", "keys")).expect(200);
}

#[test]
fn locked_node_write_allowed_with_admintoken() {
    let srv = Server::builder()
        .config("[auth]\nadmin_token = \"tok\"\n")
        .admin_token("tok")
        .start();
    let root = srv.create_repo("admin");
    srv.create_instance(&root, "keyvalue", "kv");
    srv.commit(&root);
    srv.post(&kv_url(&root, "kv", "key/k"), b"x".to_vec())
        .expect(400);
    srv.post(
        &kv_url(&root, "kv", "key/k?admintoken=wrong"),
        b"x".to_vec(),
    )
    .expect(400);
    srv.post(
        &kv_url(&root, "kv", "key/k?admintoken=tok"),
        b"admin".to_vec(),
    )
    .expect(200);
    assert_eq!(
        srv.key_value(&root, "kv", "k").as_deref(),
        Some(&b"admin"[..])
    );
    srv.delete(&kv_url(&root, "kv", "key/k?admintoken=tok"))
        .expect(200);
    assert_eq!(srv.key_value(&root, "kv", "k"), None);
}

#[test]
fn unversioned_instance_is_shared_by_all_nodes() {
    let srv = Server::start();
    let root = srv.create_repo("unv");
    srv.create_instance_with(&root, "keyvalue", "shared", &json!({"versioned": "false"}));
    srv.put_key(&root, "shared", "k", b"from root");
    srv.commit(&root);
    let a = srv.newversion(&root);
    let b = srv.branch(&root, "b");
    // visible everywhere
    assert_eq!(
        srv.key_value(&a, "shared", "k").as_deref(),
        Some(&b"from root"[..])
    );
    assert_eq!(
        srv.key_value(&b, "shared", "k").as_deref(),
        Some(&b"from root"[..])
    );
    // a write at a child is seen by the root and the sibling
    srv.put_key(&a, "shared", "k", b"from a");
    assert_eq!(
        srv.key_value(&root, "shared", "k").as_deref(),
        Some(&b"from a"[..])
    );
    assert_eq!(
        srv.key_value(&b, "shared", "k").as_deref(),
        Some(&b"from a"[..])
    );
    // writes are allowed on locked nodes
    srv.put_key(&root, "shared", "k2", b"on locked root");
    assert_eq!(
        srv.key_value(&b, "shared", "k2").as_deref(),
        Some(&b"on locked root"[..])
    );
    srv.delete_key(&b, "shared", "k");
    assert_eq!(srv.key_value(&root, "shared", "k"), None);
    assert_eq!(srv.keys(&a, "shared"), vec!["k2"]);
}

// ------------------------------------------------------------------ merges and resolve

/// root: base, shared, delete-me, change-in-a, change-in-b; a and b are committed children.
fn diverged() -> (Server, String, String, String) {
    let (srv, root) = setup();
    for (k, v) in [
        ("conflict", "base"),
        ("shared", "base"),
        ("delete-in-b", "base"),
        ("change-in-a", "base"),
        ("change-in-b", "base"),
    ] {
        srv.put_key(&root, "kv", k, v.as_bytes());
    }
    srv.commit(&root);
    let a = srv.newversion(&root);
    let b = srv.branch(&root, "b");
    srv.put_key(&a, "kv", "conflict", b"from a");
    srv.put_key(&b, "kv", "conflict", b"from b");
    srv.put_key(&a, "kv", "change-in-a", b"a value");
    srv.put_key(&b, "kv", "change-in-b", b"b value");
    srv.put_key(&a, "kv", "new-in-a", b"a only");
    srv.put_key(&b, "kv", "new-in-b", b"b only");
    srv.delete_key(&b, "kv", "delete-in-b");
    srv.commit(&a);
    srv.commit(&b);
    (srv, root, a, b)
}

#[test]
fn conflict_free_merge_reads() {
    let (srv, root, a, b) = diverged();
    let m = srv.merge(&root, &[&a, &b]);
    // same key written differently on both branches: the read fails with 400
    srv.get(&kv_url(&m, "kv", "key/conflict")).expect(400);
    // untouched keys resolve through both paths to the same version
    assert_eq!(
        srv.key_value(&m, "kv", "shared").as_deref(),
        Some(&b"base"[..])
    );
    // a key changed on only one branch takes that branch's value (the deeper hit shadows the root)
    assert_eq!(
        srv.key_value(&m, "kv", "change-in-a").as_deref(),
        Some(&b"a value"[..])
    );
    assert_eq!(
        srv.key_value(&m, "kv", "change-in-b").as_deref(),
        Some(&b"b value"[..])
    );
    assert_eq!(
        srv.key_value(&m, "kv", "new-in-a").as_deref(),
        Some(&b"a only"[..])
    );
    assert_eq!(
        srv.key_value(&m, "kv", "new-in-b").as_deref(),
        Some(&b"b only"[..])
    );
    // a tombstone on one branch shadows the root's value
    assert_eq!(srv.key_value(&m, "kv", "delete-in-b"), None);
    // the parents are unchanged
    assert_eq!(
        srv.key_value(&a, "kv", "conflict").as_deref(),
        Some(&b"from a"[..])
    );
    assert_eq!(
        srv.key_value(&b, "kv", "conflict").as_deref(),
        Some(&b"from b"[..])
    );
    // writing at the merge node settles the conflict there
    srv.put_key(&m, "kv", "conflict", b"settled");
    assert_eq!(
        srv.key_value(&m, "kv", "conflict").as_deref(),
        Some(&b"settled"[..])
    );
}

#[test]
fn resolve_gives_first_parent_priority() {
    let (srv, root, a, b) = diverged();
    let r = srv
        .post_json(
            &format!("/api/repo/{root}/resolve"),
            &json!({"data": ["kv"], "parents": [a, b], "note": "resolved"}),
        )
        .expect(200);
    let c = r.json()["child"].as_str().expect("child").to_string();
    assert_uuid(&c);
    r.expect_body(&format!("{{\"child\": \"{c}\"}}"));
    // the conflicting key takes the first parent's value
    assert_eq!(
        srv.key_value(&c, "kv", "conflict").as_deref(),
        Some(&b"from a"[..])
    );
    // keys changed or added on only one branch keep that branch's value
    assert_eq!(
        srv.key_value(&c, "kv", "change-in-a").as_deref(),
        Some(&b"a value"[..])
    );
    assert_eq!(
        srv.key_value(&c, "kv", "new-in-a").as_deref(),
        Some(&b"a only"[..])
    );
    assert_eq!(
        srv.key_value(&c, "kv", "new-in-b").as_deref(),
        Some(&b"b only"[..])
    );
    assert_eq!(
        srv.key_value(&c, "kv", "shared").as_deref(),
        Some(&b"base"[..])
    );
    // the whole key listing is readable (no conflicts left)
    let keys: BTreeSet<String> = srv.keys(&c, "kv").into_iter().collect();
    for k in ["conflict", "shared", "change-in-a", "new-in-a", "new-in-b"] {
        assert!(keys.contains(k), "{k} missing from {keys:?}");
    }
    // the resolved child is an unlocked node with the note, and the parents are untouched
    let node = srv.node_info(&c);
    assert_eq!(node["Locked"], false);
    assert_eq!(node["Note"], "resolved");
    assert_eq!(
        srv.key_value(&a, "kv", "conflict").as_deref(),
        Some(&b"from a"[..])
    );
    assert_eq!(
        srv.key_value(&b, "kv", "conflict").as_deref(),
        Some(&b"from b"[..])
    );
}

#[test]
fn resolve_with_reversed_priority() {
    let (srv, root, a, b) = diverged();
    let v = srv
        .post_json(
            &format!("/api/repo/{root}/resolve"),
            &json!({"data": ["kv"], "parents": [b, a], "note": "r"}),
        )
        .expect(200)
        .json();
    let c = v["child"].as_str().expect("child").to_string();
    assert_eq!(
        srv.key_value(&c, "kv", "conflict").as_deref(),
        Some(&b"from b"[..])
    );
    assert_eq!(
        srv.key_value(&c, "kv", "new-in-a").as_deref(),
        Some(&b"a only"[..])
    );
    assert_eq!(
        srv.key_value(&c, "kv", "new-in-b").as_deref(),
        Some(&b"b only"[..])
    );
}

#[test]
fn resolve_bad_requests() {
    let (srv, root, a, b) = diverged();
    let url = format!("/api/repo/{root}/resolve");
    let nodes_before = srv.node_count(&root);
    srv.post_json(&url, &json!({"data": ["kv"], "parents": [a]}))
        .expect(400);
    srv.post_json(&url, &json!({"data": [], "parents": [a, b]}))
        .expect(400);
    srv.post_json(&url, &json!({"data": ["nosuch"], "parents": [a, b]}))
        .expect(400);
    srv.post(&url, b"{not json".to_vec()).expect(400);
    assert_eq!(srv.node_count(&root), nodes_before);
}

// ------------------------------------------------------------------ byte ranges

fn ten_bytes() -> (Server, String) {
    let (srv, root) = setup();
    srv.put_key(&root, "kv", "r", b"0123456789");
    (srv, root)
}

#[test]
fn byte_start_byte_end_inclusive() {
    let (srv, root) = ten_bytes();
    let r = srv
        .get(&kv_url(&root, "kv", "key/r?byte_start=2&byte_end=5"))
        .expect(200);
    assert_eq!(r.body, b"2345");
    let r = srv
        .get(&kv_url(&root, "kv", "key/r?byte_start=0&byte_end=9"))
        .expect(200);
    assert_eq!(r.body, b"0123456789");
    let r = srv
        .get(&kv_url(&root, "kv", "key/r?byte_start=4&byte_end=4"))
        .expect(200);
    assert_eq!(r.body, b"4");
}

#[test]
fn bad_byte_ranges_are_400() {
    let (srv, root) = ten_bytes();
    for q in [
        "byte_start=2",
        "byte_end=5",
        "byte_start=5&byte_end=2",
        "byte_start=2&byte_end=10",
        "byte_start=-1&byte_end=3",
        "byte_start=a&byte_end=3",
    ] {
        srv.get(&kv_url(&root, "kv", &format!("key/r?{q}")))
            .expect(400);
    }
}

#[test]
fn http_range_header() {
    let (srv, root) = ten_bytes();
    let url = kv_url(&root, "kv", "key/r");
    let cases = [
        ("bytes=2-5", "2345", "bytes 2-5/10"),
        ("bytes=5-", "56789", "bytes 5-9/10"),
        ("bytes=-3", "789", "bytes 7-9/10"),
        ("bytes=2-100", "23456789", "bytes 2-9/10"),
        ("bytes=0-0", "0", "bytes 0-0/10"),
    ];
    for (range, body, content_range) in cases {
        let r = srv.get_with_headers(&url, &[("Range", range)]).expect(206);
        assert_eq!(r.text(), body, "Range {range}");
        assert_eq!(
            r.header("content-range").as_deref(),
            Some(content_range),
            "Range {range}"
        );
    }
    let r = srv
        .get_with_headers(&url, &[("Range", "bytes=10-12")])
        .expect(416);
    assert_eq!(r.header("content-range").as_deref(), Some("bytes */10"));
    // multi-range and malformed ranges are ignored
    let r = srv
        .get_with_headers(&url, &[("Range", "bytes=0-1,3-4")])
        .expect(200);
    assert_eq!(r.body, b"0123456789");
    let r = srv
        .get_with_headers(&url, &[("Range", "bytes=abc")])
        .expect(200);
    assert_eq!(r.body, b"0123456789");
    // Range together with byte_start/byte_end is an error
    srv.get_with_headers(
        &kv_url(&root, "kv", "key/r?byte_start=1&byte_end=2"),
        &[("Range", "bytes=2-5")],
    )
    .expect(400);
}

// ------------------------------------------------------------------ batch reads

fn abc() -> (Server, String) {
    let (srv, root) = setup();
    srv.put_key(&root, "kv", "a", b"{\"x\":1}");
    srv.put_key(&root, "kv", "b", b"[1,2,3]");
    srv.put_key(&root, "kv", "c", b"\"str\"");
    srv.put_key(&root, "kv", "e", b"");
    (srv, root)
}

#[test]
fn keyvalues_protobuf_in_request_order() {
    let (srv, root) = abc();
    let req = Keys {
        keys: vec!["c".into(), "missing".into(), "a".into()],
        key_ranges: vec![],
    };
    let r = srv
        .get_with_body(&kv_url(&root, "kv", "keyvalues"), encode(&req))
        .expect(200);
    let kvs: KeyValues = decode(&r.body);
    let got: Vec<(String, Vec<u8>)> = kvs.kvs.into_iter().map(|kv| (kv.key, kv.value)).collect();
    assert_eq!(
        got,
        vec![
            ("c".to_string(), b"\"str\"".to_vec()),
            ("missing".to_string(), vec![]),
            ("a".to_string(), b"{\"x\":1}".to_vec()),
        ]
    );
}

#[test]
fn keyvalues_json() {
    let (srv, root) = abc();
    let r = srv
        .get_with_body(
            &kv_url(&root, "kv", "keyvalues?json=true"),
            b"[\"b\",\"a\",\"c\"]".to_vec(),
        )
        .expect(200);
    assert_eq!(r.json(), json!({"b": [1, 2, 3], "a": {"x": 1}, "c": "str"}));
    // values are inserted verbatim, in request order, without whitespace
    assert_eq!(r.text(), "{\"b\":[1,2,3],\"a\":{\"x\":1},\"c\":\"str\"}");
    // an empty value is written as {}
    let r = srv
        .get_with_body(
            &kv_url(&root, "kv", "keyvalues?json=true"),
            b"[\"e\"]".to_vec(),
        )
        .expect(200);
    assert_eq!(r.json(), json!({"e": {}}));
}

#[test]
fn keyvalues_json_with_missing_key_is_valid_json() {
    let (srv, root) = abc();
    let r = srv
        .get_with_body(
            &kv_url(&root, "kv", "keyvalues?json=true"),
            b"[\"a\",\"nothere\",\"b\"]".to_vec(),
        )
        .expect(200);
    let v = r.json();
    assert_eq!(v["a"], json!({"x": 1}));
    assert_eq!(v["b"], json!([1, 2, 3]));
    // The spec leaves a missing key's rendering open (absent or {}), but never a value.
    assert!(
        v.get("nothere").is_none() || v["nothere"] == json!({}),
        "{v}"
    );
}

#[test]
fn keyvalues_jsontar_in_request_order() {
    let (srv, root) = abc();
    for q in ["jsontar=true", "tar=true"] {
        let r = srv
            .get_with_body(
                &kv_url(&root, "kv", &format!("keyvalues?{q}")),
                b"[\"c\",\"missing\",\"a\"]".to_vec(),
            )
            .expect(200);
        let entries = untar(&r.body);
        assert_eq!(
            entries,
            vec![
                ("c".to_string(), b"\"str\"".to_vec()),
                ("missing".to_string(), vec![]),
                ("a".to_string(), b"{\"x\":1}".to_vec()),
            ],
            "{q}"
        );
    }
}

#[test]
fn keyrangevalues_formats() {
    let (srv, root) = abc();
    // default: protobuf, sorted by key, inclusive bounds
    let r = srv
        .get(&kv_url(&root, "kv", "keyrangevalues/a/c"))
        .expect(200);
    let kvs: KeyValues = decode(&r.body);
    let keys: Vec<&str> = kvs.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, vec!["a", "b", "c"]);
    assert_eq!(kvs.kvs[1].value, b"[1,2,3]");
    let r = srv
        .get(&kv_url(&root, "kv", "keyrangevalues/a/c?protobuf=true"))
        .expect(200);
    let again: KeyValues = decode(&r.body);
    assert_eq!(again, kvs);
    // json
    let r = srv
        .get(&kv_url(&root, "kv", "keyrangevalues/a/b?json=true"))
        .expect(200);
    assert_eq!(r.json(), json!({"a": {"x": 1}, "b": [1, 2, 3]}));
    // tar
    let r = srv
        .get(&kv_url(&root, "kv", "keyrangevalues/b/c?tar=true"))
        .expect(200);
    assert_eq!(
        untar(&r.body),
        vec![
            ("b".to_string(), b"[1,2,3]".to_vec()),
            ("c".to_string(), b"\"str\"".to_vec())
        ]
    );
}

#[test]
fn batch_reads_respect_versions() {
    let (srv, root) = abc();
    srv.commit(&root);
    let child = srv.newversion(&root);
    srv.put_key(&child, "kv", "a", b"{\"x\":2}");
    srv.delete_key(&child, "kv", "b");
    let r = srv
        .get(&kv_url(&child, "kv", "keyrangevalues/a/c?json=true"))
        .expect(200);
    assert_eq!(r.json(), json!({"a": {"x": 2}, "c": "str"}));
    let r = srv
        .get(&kv_url(&root, "kv", "keyrangevalues/a/c?json=true"))
        .expect(200);
    assert_eq!(r.json(), json!({"a": {"x": 1}, "b": [1, 2, 3], "c": "str"}));
}

// ------------------------------------------------------------------ batch writes

#[test]
fn post_keyvalues_protobuf() {
    let (srv, root) = setup();
    let batch = KeyValues {
        kvs: vec![
            KeyValue {
                key: "k1".into(),
                value: b"one".to_vec(),
            },
            KeyValue {
                key: "k2".into(),
                value: b"two".to_vec(),
            },
            KeyValue {
                key: "k3".into(),
                value: vec![],
            },
        ],
    };
    srv.post(&kv_url(&root, "kv", "keyvalues"), encode(&batch))
        .expect(200);
    assert_eq!(srv.keys(&root, "kv"), vec!["k1", "k2", "k3"]);
    assert_eq!(
        srv.key_value(&root, "kv", "k1").as_deref(),
        Some(&b"one"[..])
    );
    assert_eq!(
        srv.key_value(&root, "kv", "k2").as_deref(),
        Some(&b"two"[..])
    );
    assert_eq!(srv.key_value(&root, "kv", "k3").as_deref(), Some(&b""[..]));
}

// ------------------------------------------------------------------ mutation records

#[test]
fn mutations_record_postkv_and_delete() {
    let (srv, root) = setup();
    srv.put_key(&root, "kv", "one", b"12345");
    let batch = KeyValues {
        kvs: vec![KeyValue {
            key: "two".into(),
            value: b"ab".to_vec(),
        }],
    };
    srv.post(&kv_url(&root, "kv", "keyvalues"), encode(&batch))
        .expect(200);
    srv.delete_key(&root, "kv", "one");
    let v = srv
        .get(&kv_url(&root, "kv", "mutations"))
        .expect(200)
        .json();
    let recs = v
        .as_array()
        .unwrap_or_else(|| panic!("mutations is not an array: {v}"));
    assert_eq!(recs.len(), 3, "{v}");
    let mut seen = BTreeSet::new();
    for rec in recs {
        let action = rec["Action"]
            .as_str()
            .unwrap_or_else(|| panic!("no Action in {rec}"));
        let key = rec["Key"]
            .as_str()
            .unwrap_or_else(|| panic!("no Key in {rec}"));
        assert_eq!(rec["UUID"], root.as_str(), "{rec}");
        assert!(rec.get("Timestamp").is_some(), "{rec}");
        match (action, key) {
            ("postkv", "one") => assert_eq!(rec["Bytes"], 5, "{rec}"),
            ("postkv", "two") => assert_eq!(rec["Bytes"], 2, "{rec}"),
            ("delete", "one") => {}
            other => panic!("unexpected record {other:?}: {rec}"),
        }
        seen.insert((action.to_string(), key.to_string()));
    }
    assert_eq!(seen.len(), 3);
    // records are per version: a child starts empty
    srv.commit(&root);
    let child = srv.newversion(&root);
    assert_eq!(
        srv.get(&kv_url(&child, "kv", "mutations"))
            .expect(200)
            .json(),
        json!([])
    );
}

#[test]
fn failed_write_is_not_recorded() {
    let (srv, root) = setup();
    srv.put_key(&root, "kv", "ok", b"x");
    srv.commit(&root);
    srv.post(&kv_url(&root, "kv", "key/refused"), b"y".to_vec())
        .expect(400);
    let v = srv
        .get(&kv_url(&root, "kv", "mutations"))
        .expect(200)
        .json();
    let recs = v.as_array().expect("array");
    assert_eq!(recs.len(), 1, "{v}");
    assert_eq!(recs[0]["Key"], "ok");
}

#[test]
fn large_value_roundtrip() {
    let (srv, root) = setup();
    let big: Vec<u8> = (0..8u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 7) as u8)
        .collect();
    srv.put_key(&root, "kv", "big", &big);
    assert_eq!(srv.key_value(&root, "kv", "big"), Some(big));
}

#[test]
fn concurrent_writes_to_distinct_keys_all_land() {
    let (srv, root) = setup();
    std::thread::scope(|s| {
        for t in 0..8 {
            let srv = &srv;
            let root = &root;
            s.spawn(move || {
                for i in 0..20 {
                    srv.put_key(
                        root,
                        "kv",
                        &format!("t{t}-k{i:02}"),
                        format!("{t}:{i}").as_bytes(),
                    );
                }
            });
        }
    });
    let keys = srv.keys(&root, "kv");
    assert_eq!(keys.len(), 160);
    for t in 0..8 {
        for i in 0..20 {
            assert_eq!(
                srv.key_value(&root, "kv", &format!("t{t}-k{i:02}")),
                Some(format!("{t}:{i}").into_bytes())
            );
        }
    }
}

#[test]
fn writes_racing_a_commit_are_all_or_nothing() {
    // Every write either landed before the commit (200, visible) or was refused (400, absent).
    let (srv, root) = setup();
    let results: Vec<(String, u16)> = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            (0..60)
                .map(|i| {
                    let k = format!("w{i:03}");
                    let st = srv
                        .post(
                            &kv_url(&root, "kv", &format!("key/{k}")),
                            k.clone().into_bytes(),
                        )
                        .status;
                    (k, st)
                })
                .collect::<Vec<_>>()
        });
        std::thread::sleep(std::time::Duration::from_millis(20));
        srv.commit(&root);
        writer.join().unwrap()
    });
    for (k, st) in results {
        match st {
            200 => assert_eq!(srv.key_value(&root, "kv", &k), Some(k.clone().into_bytes())),
            400 => assert_eq!(
                srv.key_value(&root, "kv", &k),
                None,
                "{k} refused but stored"
            ),
            other => panic!("{k}: unexpected status {other}"),
        }
    }
}

#[test]
fn keyvalues_json_and_tar_accept_key_objects() {
    let (srv, root) = abc();
    let body = br#"[{"key":"b"},{"key":"a"}]"#.to_vec();
    let r = srv
        .get_with_body(&kv_url(&root, "kv", "keyvalues?json=true"), body.clone())
        .expect(200);
    assert_eq!(r.json(), json!({"b": [1, 2, 3], "a": {"x": 1}}));
    let r = srv
        .get_with_body(&kv_url(&root, "kv", "keyvalues?jsontar=true"), body)
        .expect(200);
    assert_eq!(
        untar(&r.body),
        vec![
            ("b".to_string(), b"[1,2,3]".to_vec()),
            ("a".to_string(), b"{\"x\":1}".to_vec())
        ]
    );
}

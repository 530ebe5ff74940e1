//! neuronjson datatype (spec §4.11): records under body-ID keys, per-field _user/_time,
//! merge/replace/null-delete, listings, query, schemas, versions, locked nodes, bad input.

use serde_json::{Value, json};
use tessera_tests::proto::{KeyValue, KeyValues};
use tessera_tests::*;

fn url(uuid: &str, rest: &str) -> String {
    format!("/api/node/{uuid}/nj/{rest}")
}

fn setup() -> (Server, String) {
    let srv = Server::start();
    let root = srv.create_repo("njtest");
    srv.create_instance(&root, "neuronjson", "nj");
    (srv, root)
}

#[track_caller]
fn post(srv: &Server, uuid: &str, key: &str, query: &str, body: Value) {
    srv.post_json(&url(uuid, &format!("key/{key}?u=alice{query}")), &body)
        .expect(200);
}

#[track_caller]
fn get(srv: &Server, uuid: &str, rest: &str) -> Value {
    srv.get(&url(uuid, rest)).expect(200).json()
}

/// Three annotated bodies.
fn populate(srv: &Server, uuid: &str) {
    post(
        srv,
        uuid,
        "100",
        "",
        json!({"bodyid": 100, "type": "KC-ab", "status": "Traced", "size": 5, "tags": ["a", "b"]}),
    );
    post(
        srv,
        uuid,
        "20",
        "",
        json!({"bodyid": 20, "type": "MBON01", "status": "Anchor", "size": 7}),
    );
    post(
        srv,
        uuid,
        "3",
        "",
        json!({"bodyid": 3, "type": "KC-g", "status": "Traced", "size": 5.5}),
    );
}

#[test]
fn post_get_with_fields_and_show() {
    let (srv, root) = setup();
    post(
        &srv,
        &root,
        "100",
        "",
        json!({"bodyid": 100, "type": "KC", "n": 3}),
    );
    assert_eq!(
        get(&srv, &root, "key/100"),
        json!({"bodyid": 100, "type": "KC", "n": 3})
    );
    assert_eq!(
        get(&srv, &root, "key/100?fields=type"),
        json!({"bodyid": 100, "type": "KC"})
    );
    let user = get(&srv, &root, "key/100?show=user");
    assert_eq!(user["type_user"], "alice");
    assert!(user.get("type_time").is_none());
    assert!(user.get("bodyid_user").is_none());
    let all = get(&srv, &root, "key/100?show=all&fields=n");
    assert_eq!(all["n_user"], "alice");
    let t = all["n_time"].as_str().unwrap();
    assert!(
        t.len() == 20 && t.ends_with('Z') && t.as_bytes()[10] == b'T',
        "{t}"
    );
    assert!(all.get("type").is_none());
    let time = get(&srv, &root, "key/100?show=time");
    assert!(time.get("type_time").is_some() && time.get("type_user").is_none());
    srv.head(&url(&root, "key/100")).expect(200);
    srv.head(&url(&root, "key/101")).expect(404);
    srv.get(&url(&root, "key/101")).expect(404);
}

#[test]
fn merge_replace_and_null_delete() {
    let (srv, root) = setup();
    post(&srv, &root, "5", "", json!({"bodyid": 5, "a": 1, "b": 2}));
    // merge: b kept, c added by bob
    srv.post_json(
        &url(&root, "key/5?u=bob"),
        &json!({"bodyid": 5, "a": 1, "c": 3}),
    )
    .expect(200);
    let r = get(&srv, &root, "key/5?show=user");
    assert_eq!(
        r,
        json!({"bodyid": 5, "a": 1, "a_user": "alice", "b": 2, "b_user": "alice",
               "c": 3, "c_user": "bob"})
    );
    // a changed value takes the new user
    srv.post_json(&url(&root, "key/5?u=bob"), &json!({"bodyid": 5, "a": 9}))
        .expect(200);
    assert_eq!(get(&srv, &root, "key/5?show=user")["a_user"], "bob");
    // null deletes the field
    post(&srv, &root, "5", "", json!({"bodyid": 5, "b": null}));
    let r = get(&srv, &root, "key/5");
    assert_eq!(r, json!({"bodyid": 5, "a": 9, "c": 3}));
    // replace drops what is not posted
    post(
        &srv,
        &root,
        "5",
        "&replace=true",
        json!({"bodyid": 5, "c": 3}),
    );
    assert_eq!(get(&srv, &root, "key/5"), json!({"bodyid": 5, "c": 3}));
    assert_eq!(get(&srv, &root, "key/5?show=user")["c_user"], "bob");
    // conditional keeps a stored value
    post(
        &srv,
        &root,
        "5",
        "&conditional=c",
        json!({"bodyid": 5, "c": 4, "d": 1}),
    );
    assert_eq!(
        get(&srv, &root, "key/5"),
        json!({"bodyid": 5, "c": 3, "d": 1})
    );
}

#[test]
fn delete_and_mutation_records() {
    let (srv, root) = setup();
    populate(&srv, &root);
    srv.delete(&url(&root, "key/20")).expect(200);
    srv.get(&url(&root, "key/20")).expect(404);
    assert_eq!(get(&srv, &root, "keys"), json!(["3", "100"]));
    let recs = get(&srv, &root, "mutations");
    let recs = recs.as_array().unwrap();
    assert_eq!(recs.len(), 4, "{recs:?}");
    assert_eq!(recs[0]["Action"], "postneuronjson");
    assert_eq!(recs[0]["Key"], "100");
    assert_eq!(recs[0]["User"], "alice");
    assert!(recs[0]["Bytes"].as_u64().unwrap() > 0);
    assert_eq!(recs[3]["Action"], "delete");
    assert_eq!(recs[3]["Key"], "20");
}

#[test]
fn keys_keyrange_all_fields() {
    let (srv, root) = setup();
    populate(&srv, &root);
    assert_eq!(get(&srv, &root, "keys"), json!(["3", "20", "100"]));
    assert_eq!(get(&srv, &root, "keyrange/4/100"), json!(["20", "100"]));
    assert_eq!(get(&srv, &root, "keyrange/0/z"), json!(["3", "20", "100"]));
    assert_eq!(get(&srv, &root, "keyrange/50/40"), json!([]));
    let all = get(&srv, &root, "all");
    let ids: Vec<u64> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["bodyid"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [3, 20, 100]);
    assert!(all[0].get("type_user").is_none());
    assert_eq!(
        get(&srv, &root, "all?fields=status"),
        json!([{"bodyid": 3, "status": "Traced"}, {"bodyid": 20, "status": "Anchor"},
               {"bodyid": 100, "status": "Traced"}])
    );
    let fields = get(&srv, &root, "fields");
    for f in [
        "bodyid",
        "type",
        "status",
        "size",
        "tags",
        "type_user",
        "type_time",
    ] {
        assert!(
            fields.as_array().unwrap().contains(&json!(f)),
            "{f}: {fields}"
        );
    }
    assert_eq!(get(&srv, &root, "fields?counts=true")["tags"], 1);
    let kv = get(&srv, &root, "keyrangevalues/0/20?json=true");
    assert_eq!(kv["20"]["type"], "MBON01");
    assert!(kv.get("100").is_none());
    let batch = srv
        .get_with_body(
            &url(&root, "keyvalues?json=true"),
            br#"["100","3"]"#.to_vec(),
        )
        .expect(200)
        .json();
    assert_eq!(batch["100"]["type"], "KC-ab");
    assert_eq!(batch["3"]["type"], "KC-g");
    // body IDs as numbers; absent bodies are left out of the JSON answer
    let batch = srv
        .get_with_body(
            &url(&root, "keyvalues?json=true&fields=status"),
            b"[20, 999]".to_vec(),
        )
        .expect(200)
        .json();
    assert_eq!(batch, json!({"20": {"bodyid": 20, "status": "Anchor"}}));
}

fn query(srv: &Server, uuid: &str, opts: &str, q: Value) -> Value {
    srv.post_json(&url(uuid, &format!("query{opts}")), &q)
        .expect(200)
        .json()
}

fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r["bodyid"].as_u64().unwrap())
        .collect()
}

#[test]
fn queries() {
    let (srv, root) = setup();
    populate(&srv, &root);
    // exact
    assert_eq!(
        ids(&query(&srv, &root, "", json!({"status": "Traced"}))),
        [3, 100]
    );
    // list = any of
    assert_eq!(
        ids(&query(&srv, &root, "", json!({"type": ["MBON01", "KC-g"]}))),
        [3, 20]
    );
    // regex (unanchored, as Go's)
    assert_eq!(
        ids(&query(&srv, &root, "", json!({"type": "re/^KC"}))),
        [3, 100]
    );
    assert_eq!(ids(&query(&srv, &root, "", json!({"type": "re/01"}))), [20]);
    // numbers match numerically, not strings
    assert_eq!(ids(&query(&srv, &root, "", json!({"size": 5}))), [100]);
    assert_eq!(ids(&query(&srv, &root, "", json!({"size": 5.5}))), [3]);
    assert_eq!(
        ids(&query(&srv, &root, "", json!({"size": "5"}))),
        Vec::<u64>::new()
    );
    // list fields match any element
    assert_eq!(ids(&query(&srv, &root, "", json!({"tags": "b"}))), [100]);
    // AND within an object, OR across a list of objects
    assert_eq!(
        ids(&query(
            &srv,
            &root,
            "",
            json!({"status": "Traced", "size": 5})
        )),
        [100]
    );
    assert_eq!(
        ids(&query(
            &srv,
            &root,
            "",
            json!([{"type": "MBON01"}, {"size": 5.5}])
        )),
        [3, 20]
    );
    assert_eq!(
        ids(&query(&srv, &root, "", json!({"tags": "exists/1"}))),
        [100]
    );
    // onlyid, fields, show
    assert_eq!(
        query(&srv, &root, "?onlyid=true", json!({"status": "Traced"})),
        json!([3, 100])
    );
    assert_eq!(
        query(
            &srv,
            &root,
            "?fields=type&show=user",
            json!({"status": "Anchor"})
        ),
        json!([{"bodyid": 20, "type": "MBON01", "type_user": "alice"}])
    );
    // GET with a body
    let r = srv
        .get_with_body(&url(&root, "query"), br#"{"type":"KC-g"}"#.to_vec())
        .expect(200)
        .json();
    assert_eq!(ids(&r), [3]);
    // POST query is a read: allowed on a committed node
    srv.commit(&root);
    assert_eq!(
        ids(&query(&srv, &root, "", json!({"status": "Traced"}))),
        [3, 100]
    );
    srv.post_json(
        &url(&root, "key/3?u=alice"),
        &json!({"bodyid": 3, "status": "x"}),
    )
    .expect(400);
    srv.delete(&url(&root, "key/3")).expect(400);
    assert_eq!(get(&srv, &root, "key/3")["status"], "Traced");
}

#[test]
fn versions_child_edits_parent_unchanged() {
    let (srv, root) = setup();
    populate(&srv, &root);
    srv.commit(&root);
    let child = srv.newversion(&root);
    // the child sees the parent's records
    assert_eq!(get(&srv, &child, "key/20")["type"], "MBON01");
    post(
        &srv,
        &child,
        "20",
        "",
        json!({"bodyid": 20, "type": "MBON02"}),
    );
    srv.delete(&url(&child, "key/3")).expect(200);
    post(&srv, &child, "7", "", json!({"bodyid": 7, "type": "new"}));
    assert_eq!(get(&srv, &child, "key/20")["type"], "MBON02");
    // the merge in the child kept the parent's other fields
    assert_eq!(get(&srv, &child, "key/20")["status"], "Anchor");
    assert_eq!(get(&srv, &child, "keys"), json!(["7", "20", "100"]));
    assert_eq!(
        ids(&query(&srv, &child, "", json!({"type": "re/MBON"}))),
        [20]
    );
    // the parent is unchanged
    assert_eq!(get(&srv, &root, "key/20")["type"], "MBON01");
    assert_eq!(get(&srv, &root, "keys"), json!(["3", "20", "100"]));
    assert_eq!(
        query(&srv, &root, "?onlyid=true", json!({"type": "MBON02"})),
        json!([])
    );
}

#[test]
fn schemas_are_stored_per_version() {
    let (srv, root) = setup();
    srv.get(&url(&root, "json_schema")).expect(404);
    let doc = json!({"type": "object", "properties": {"bodyid": {"type": "integer"}}});
    srv.post_json(&url(&root, "json_schema"), &doc).expect(200);
    assert_eq!(get(&srv, &root, "json_schema"), doc);
    srv.head(&url(&root, "json_schema")).expect(200);
    srv.post_json(&url(&root, "schema"), &json!({"s": 1}))
        .expect(200);
    assert_eq!(get(&srv, &root, "schema"), json!({"s": 1}));
    // key/schema is the same document (DVID's keyvalue compatibility)
    assert_eq!(get(&srv, &root, "key/schema"), json!({"s": 1}));
    srv.post(&url(&root, "schema_batch"), b"not json".to_vec())
        .expect(400);
    srv.get(&url(&root, "schema_batch")).expect(404);
}

#[test]
fn bad_input_is_400_and_writes_nothing() {
    let (srv, root) = setup();
    post(&srv, &root, "5", "", json!({"bodyid": 5, "a": 1}));
    let cases: &[(&str, &[u8], &str)] = &[
        ("key/abc?u=alice", br#"{"bodyid": 5}"#, "body ID"),
        ("key/0?u=alice", br#"{"bodyid": 0}"#, "reserved"),
        ("key/5?u=alice", b"[1,2]", "JSON object"),
        ("key/5?u=alice", b"{not json", "JSON object"),
        ("key/5?u=alice", br#"{"a": 2}"#, "bodyid"),
        (
            "key/5?u=alice",
            br#"{"bodyid": 6, "a": 2}"#,
            "must match key",
        ),
        ("key/5?u=alice", br#"{"bodyid": "5", "a": 2}"#, "uint64"),
        ("key/5", br#"{"bodyid": 5, "a": 2}"#, "user"),
        (
            "key/6?u=alice",
            br#"{"bodyid": 6, "bodyid_user": "x"}"#,
            "not allowed",
        ),
    ];
    for (path, body, needle) in cases {
        let r = srv.post(&url(&root, path), body.to_vec()).expect(400);
        assert!(
            r.text().contains(needle),
            "{path} {:?}: {:?} lacks {needle:?}",
            String::from_utf8_lossy(body),
            r.text()
        );
    }
    srv.get(&url(&root, "key/abc")).expect(400);
    srv.get(&url(&root, "keyrange/1x/5")).expect(400);
    for (body, needle) in [
        (&b"{bad"[..], "query"),
        (b"[]", "no query"),
        (b"[1]", "JSON object"),
        (b"7", "JSON object"),
        (br#"{"type": "re/("}"#, "regex"),
    ] {
        let r = srv.post(&url(&root, "query"), body.to_vec()).expect(400);
        assert!(r.text().contains(needle), "{:?}", r.text());
    }
    // nothing was written
    assert_eq!(get(&srv, &root, "keys"), json!(["5"]));
    assert_eq!(get(&srv, &root, "key/5"), json!({"bodyid": 5, "a": 1}));
    assert_eq!(get(&srv, &root, "mutations").as_array().unwrap().len(), 1);
}

#[test]
fn post_keyvalues_batch_and_fieldtimes() {
    let (srv, root) = setup();
    let kv = |k: &str, v: Value| KeyValue {
        key: k.into(),
        value: serde_json::to_vec(&v).unwrap(),
    };
    let body = encode(&KeyValues {
        kvs: vec![
            kv("8", json!({"bodyid": 8, "type": "a"})),
            kv("9", json!({"bodyid": 9, "type": "b"})),
            kv("8", json!({"bodyid": 8, "status": "s"})),
        ],
    });
    // u= is required
    srv.post(&url(&root, "keyvalues"), body.clone()).expect(400);
    srv.post(&url(&root, "keyvalues?u=carol"), body).expect(200);
    // the second record of 8 merged into the first
    assert_eq!(
        get(&srv, &root, "key/8?show=user"),
        json!({"bodyid": 8, "type": "a", "type_user": "carol", "status": "s", "status_user": "carol"})
    );
    assert_eq!(get(&srv, &root, "keys"), json!(["8", "9"]));
    let times = get(&srv, &root, "fieldtimes");
    assert!(times["type"].as_str().unwrap().ends_with('Z'), "{times}");
    assert!(times.get("bodyid").is_none());
    // one bad pair: nothing written
    let bad = encode(&KeyValues {
        kvs: vec![
            kv("10", json!({"bodyid": 10})),
            kv("11", json!({"bodyid": 12})),
        ],
    });
    let r = srv.post(&url(&root, "keyvalues?u=carol"), bad).expect(400);
    assert!(r.text().contains("must match key"), "{}", r.text());
    assert_eq!(get(&srv, &root, "keys"), json!(["8", "9"]));
}

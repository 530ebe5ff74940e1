//! Bad input gets a clear 4xx and changes nothing (ARCHITECTURE principle 8, spec §3.1, §10).
//! Every test reads back afterwards to check that nothing was written.

use tessera_tests::proto::{KeyValue, KeyValues};
use tessera_tests::*;

const UNKNOWN: &str = "ffffffffffffffffffffffffffffffff";

#[track_caller]
fn assert_plain_text_error(r: &Response) {
    let ct = r.header("content-type").unwrap_or_default();
    assert!(
        ct.starts_with("text/plain"),
        "{}: error content-type {ct:?}",
        r.what
    );
    assert!(
        !r.body.is_empty(),
        "{}: error body should carry a message",
        r.what
    );
}

#[test]
fn malformed_json_creating_repo() {
    let srv = Server::start();
    let r = srv.post("/api/repos", b"{\"alias\": ".to_vec()).expect(400);
    assert_plain_text_error(&r);
    srv.post("/api/repos", b"[1,2,3]".to_vec()).expect(400);
    assert_eq!(srv.get("/api/repos/info").expect(200).json(), json!({}));
}

#[test]
fn malformed_json_creating_instance() {
    let srv = Server::start();
    let root = srv.create_repo("bad");
    let r = srv
        .post(
            &format!("/api/repo/{root}/instance"),
            b"{\"typename\": \"keyvalue\", ".to_vec(),
        )
        .expect(400);
    assert_plain_text_error(&r);
    srv.post(
        &format!("/api/repo/{root}/instance"),
        b"not json at all".to_vec(),
    )
    .expect(400);
    srv.post_empty(&format!("/api/repo/{root}/instance"))
        .expect(400);
    assert_eq!(srv.repo_info(&root)["DataInstances"], json!({}));
}

#[test]
fn malformed_json_in_dag_operations() {
    let srv = Server::start();
    let root = srv.create_repo("bad");
    srv.post(&format!("/api/node/{root}/commit"), b"{oops".to_vec())
        .expect(400);
    srv.get(&format!("/api/node/{root}/commit"))
        .expect(200)
        .expect_body("{\"Locked\":false}");
    srv.commit(&root);
    srv.post(&format!("/api/node/{root}/newversion"), b"{oops".to_vec())
        .expect(400);
    srv.post(&format!("/api/node/{root}/branch"), b"{oops".to_vec())
        .expect(400);
    srv.post(&format!("/api/node/{root}/tag"), b"{oops".to_vec())
        .expect(400);
    srv.post(&format!("/api/repo/{root}/merge"), b"{oops".to_vec())
        .expect(400);
    assert_eq!(
        srv.node_count(&root),
        1,
        "nothing may be created by malformed requests"
    );
}

#[test]
fn malformed_json_in_repo_and_node_metadata() {
    let srv = Server::start();
    let root = srv.create_repo("meta");
    srv.post(&format!("/api/repo/{root}/info"), b"{\"alias\": 3".to_vec())
        .expect(400);
    assert_eq!(srv.repo_info(&root)["Alias"], "meta");
    let log_before = srv.get(&format!("/api/repo/{root}/log")).expect(200).json();
    srv.post(&format!("/api/repo/{root}/log"), b"{\"log\": [".to_vec())
        .expect(400);
    assert_eq!(
        srv.get(&format!("/api/repo/{root}/log")).expect(200).json(),
        log_before
    );
    srv.post_json(&format!("/api/node/{root}/note"), &json!({"note": "kept"}))
        .expect(200);
    srv.post(&format!("/api/node/{root}/note"), b"{\"note\": ".to_vec())
        .expect(400);
    assert_eq!(
        srv.get(&format!("/api/node/{root}/note"))
            .expect(200)
            .json()["note"],
        "kept"
    );
    let nlog_before = srv.get(&format!("/api/node/{root}/log")).expect(200).json();
    srv.post(&format!("/api/node/{root}/log"), b"[".to_vec())
        .expect(400);
    assert_eq!(
        srv.get(&format!("/api/node/{root}/log")).expect(200).json(),
        nlog_before
    );
}

#[test]
fn unknown_uuid_everywhere_is_400() {
    let srv = Server::start();
    let root = srv.create_repo("known");
    srv.create_instance(&root, "keyvalue", "kv");
    let cases = [
        srv.get(&format!("/api/repo/{UNKNOWN}/info")),
        srv.get(&format!("/api/repo/{UNKNOWN}/log")),
        srv.get(&format!("/api/repo/{UNKNOWN}/branch-versions/master")),
        srv.post_json(
            &format!("/api/repo/{UNKNOWN}/instance"),
            &json!({"typename": "keyvalue", "dataname": "x"}),
        ),
        srv.post_json(&format!("/api/repo/{UNKNOWN}/info"), &json!({"alias": "x"})),
        srv.get(&format!("/api/node/{UNKNOWN}/kv/keys")),
        srv.get(&format!("/api/node/{UNKNOWN}/kv/key/a")),
        srv.post(&format!("/api/node/{UNKNOWN}/kv/key/a"), b"x".to_vec()),
        srv.get(&format!("/api/node/{UNKNOWN}/note")),
        srv.post_json(&format!("/api/node/{UNKNOWN}/commit"), &json!({})),
    ];
    for r in cases {
        assert_eq!(r.status, 400, "{}: body {:?}", r.what, r.text());
        assert_plain_text_error(&r);
    }
    assert_eq!(srv.keys(&root, "kv"), Vec::<String>::new());
    assert_eq!(
        srv.get("/api/repos/info")
            .expect(200)
            .json()
            .as_object()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn ambiguous_prefix_is_400_and_writes_nothing() {
    let srv = Server::start();
    let r1 = "cccc0000000000000000000000000001";
    let r2 = "cccc0000000000000000000000000002";
    srv.post_json("/api/repos", &json!({"root": r1}))
        .expect(200);
    srv.post_json("/api/repos", &json!({"root": r2}))
        .expect(200);
    srv.create_instance(r1, "keyvalue", "kv");
    srv.post("/api/node/cccc/kv/key/a", b"x".to_vec())
        .expect(400);
    srv.post_json("/api/node/cccc/note", &json!({"note": "ambiguous"}))
        .expect(400);
    srv.post_json("/api/node/cccc/commit", &json!({}))
        .expect(400);
    assert_eq!(srv.keys(r1, "kv"), Vec::<String>::new());
    assert_eq!(srv.node_info(r1)["Locked"], false);
    assert_eq!(srv.node_info(r2)["Locked"], false);
    assert_ne!(srv.node_info(r1)["Note"], "ambiguous");
}

#[test]
fn oversized_body_is_413_and_not_stored() {
    let srv = Server::start_with_config("[server]\nmax_body_mb = 1\n");
    let root = srv.create_repo("big");
    srv.create_instance(&root, "keyvalue", "kv");
    let big = vec![7u8; 2 << 20];
    let r = srv
        .post(&format!("/api/node/{root}/kv/key/big"), big)
        .expect(413);
    assert_eq!(
        r.header("access-control-allow-origin").as_deref(),
        Some("*")
    );
    assert_eq!(srv.key_value(&root, "kv", "big"), None);
    assert_eq!(srv.keys(&root, "kv"), Vec::<String>::new());
    // a batch over the limit is refused whole
    let batch = KeyValues {
        kvs: vec![
            KeyValue {
                key: "small".into(),
                value: b"s".to_vec(),
            },
            KeyValue {
                key: "huge".into(),
                value: vec![1u8; 2 << 20],
            },
        ],
    };
    srv.post(&format!("/api/node/{root}/kv/keyvalues"), encode(&batch))
        .expect(413);
    assert_eq!(srv.keys(&root, "kv"), Vec::<String>::new());
    // just under the limit is fine
    let ok = vec![7u8; (1 << 20) - 4096];
    srv.post(&format!("/api/node/{root}/kv/key/ok"), ok.clone())
        .expect(200);
    assert_eq!(srv.key_value(&root, "kv", "ok"), Some(ok));
}

#[test]
fn oversized_body_response_closes_connection_explicitly() {
    // The server answers before reading a too-large body and then drops the connection; it must
    // say so (`Connection: close`, as Go's net/http does for DVID) or keep-alive clients send
    // their next request into a dead connection.
    let srv = Server::start_with_config("[server]\nmax_body_mb = 1\n");
    let root = srv.create_repo("big");
    srv.create_instance(&root, "keyvalue", "kv");
    let r = srv
        .post(&format!("/api/node/{root}/kv/key/big"), vec![7u8; 2 << 20])
        .expect(413);
    assert_eq!(
        r.header("connection")
            .map(|v| v.to_ascii_lowercase())
            .as_deref(),
        Some("close"),
        "413 without `Connection: close`; headers {:?}",
        r.headers
    );
}

#[test]
fn malformed_protobuf_batch_writes_nothing() {
    let srv = Server::start();
    let root = srv.create_repo("pb");
    srv.create_instance(&root, "keyvalue", "kv");
    // a valid first pair followed by a truncated second one
    let mut body = encode(&KeyValues {
        kvs: vec![KeyValue {
            key: "first".into(),
            value: b"1".to_vec(),
        }],
    });
    body.extend_from_slice(&[0x0a, 0x20, 0x0a, 0x01, b'x']);
    srv.post(&format!("/api/node/{root}/kv/keyvalues"), body)
        .expect(400);
    assert_eq!(
        srv.keys(&root, "kv"),
        Vec::<String>::new(),
        "a refused batch must not be partly applied"
    );
    // an invalid wire type
    srv.post(
        &format!("/api/node/{root}/kv/keyvalues"),
        vec![0x0f, 0x01, 0x02],
    )
    .expect(400);
    assert_eq!(srv.keys(&root, "kv"), Vec::<String>::new());
}

#[test]
fn malformed_batch_read_bodies_are_400() {
    let srv = Server::start();
    let root = srv.create_repo("pb");
    srv.create_instance(&root, "keyvalue", "kv");
    srv.get_with_body(
        &format!("/api/node/{root}/kv/keyvalues?json=true"),
        b"[\"a\",".to_vec(),
    )
    .expect(400);
    srv.get_with_body(
        &format!("/api/node/{root}/kv/keyvalues?jsontar=true"),
        b"{}".to_vec(),
    )
    .expect(400);
    srv.get_with_body(
        &format!("/api/node/{root}/kv/keyvalues"),
        vec![0x0a, 0x20, b'a'],
    )
    .expect(400);
}

#[test]
fn bad_instance_requests_write_nothing() {
    let srv = Server::start();
    let root = srv.create_repo("inst");
    srv.post_json(
        &format!("/api/repo/{root}/instance"),
        &json!({"typename": "keyvalue", "dataname": "x", "versioned": "maybe"}),
    )
    .expect(400);
    srv.post_json(
        &format!("/api/repo/{root}/instance"),
        &json!({"typename": "keyvalue", "dataname": "y", "Compression": "zip-zap"}),
    )
    .expect(400);
    assert_eq!(srv.repo_info(&root)["DataInstances"], json!({}));
}

#[test]
fn wrong_methods_do_not_write() {
    let srv = Server::start();
    let root = srv.create_repo("m");
    srv.create_instance(&root, "keyvalue", "kv");
    // The key endpoint supports GET, HEAD, POST and DELETE only.
    let r = srv.request(
        "PUT",
        &format!("/api/node/{root}/kv/key/a"),
        &[],
        Some(b"x".to_vec()),
    );
    assert!((400..500).contains(&r.status), "{}: {}", r.what, r.status);
    assert_eq!(srv.keys(&root, "kv"), Vec::<String>::new());
}

#[test]
fn server_survives_garbage() {
    let srv = Server::start();
    let root = srv.create_repo("garbage");
    srv.create_instance(&root, "keyvalue", "kv");
    let junk: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    for path in [
        "/api/repos".to_string(),
        format!("/api/repo/{root}/instance"),
        format!("/api/repo/{root}/merge"),
        format!("/api/repo/{root}/resolve"),
        format!("/api/node/{root}/commit"),
        format!("/api/node/{root}/kv/tags"),
        format!("/api/node/{root}/kv/sync"),
    ] {
        let r = srv.post(&path, junk.clone());
        assert!(
            (400..500).contains(&r.status),
            "{}: status {} (must be 4xx, never 5xx)",
            r.what,
            r.status
        );
    }
    srv.get("/api/heartbeat").expect(200);
    assert_eq!(srv.keys(&root, "kv"), Vec::<String>::new());
    assert_eq!(srv.node_info(&root)["Locked"], false);
}

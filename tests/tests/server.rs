//! Server-level endpoints (spec §3.1, §3.2), CORS, configuration and admin/rw-mode guards.

use tessera_tests::*;

#[test]
fn heartbeat_is_plain_ok() {
    let srv = Server::start();
    let r = srv.get("/api/heartbeat").expect(200);
    assert_eq!(r.text().trim_end(), "OK");
    let ct = r.header("content-type").unwrap_or_default();
    assert!(
        ct.starts_with("text/plain"),
        "heartbeat content-type {ct:?}"
    );
    // u= and unknown query parameters are accepted and ignored.
    srv.get("/api/heartbeat?u=tester&app=dvidtools&no_such_param=1")
        .expect(200);
}

#[test]
fn cors_header_on_every_response() {
    let srv = Server::start();
    let root = srv.create_repo("cors");
    let cases = [
        srv.get("/api/heartbeat"),
        srv.get("/api/repos/info"),
        srv.get(&format!("/api/repo/{root}/info")),
        // errors too: a 400 and an unmatched route
        srv.get("/api/node/ffffffffffffffffffffffffffffffff/note"),
        srv.get("/api/no/such/route/here"),
        srv.post_json("/api/repos", &json!({"alias": "second"})),
    ];
    for r in cases {
        assert_eq!(
            r.header("access-control-allow-origin").as_deref(),
            Some("*"),
            "{}: status {}",
            r.what,
            r.status
        );
    }
}

#[test]
fn options_preflight_is_answered() {
    let srv = Server::start();
    let r = srv.request(
        "OPTIONS",
        "/api/repos/info",
        &[
            ("Origin", "http://example.org"),
            ("Access-Control-Request-Method", "GET"),
        ],
        None,
    );
    assert!(
        (200..300).contains(&r.status),
        "{}: status {}",
        r.what,
        r.status
    );
    assert_eq!(
        r.header("access-control-allow-origin").as_deref(),
        Some("*")
    );
}

#[test]
fn unmatched_route_is_404() {
    let srv = Server::start();
    let r = srv.get("/api/this-does-not-exist").expect(404);
    let ct = r.header("content-type").unwrap_or_default();
    assert!(ct.starts_with("text/plain"), "error content-type {ct:?}");
}

#[test]
fn server_info_is_an_object_of_strings() {
    let srv = Server::start_with_config("[server]\nnote = \"hello from the test\"\n");
    let info = srv.get("/api/server/info").expect(200).json();
    let obj = info
        .as_object()
        .unwrap_or_else(|| panic!("server/info is not an object: {info}"));
    for key in [
        "Cores",
        "Maximum Cores",
        "Datastore Version",
        "DVID Version",
        "Storage backend",
        "Server time",
        "Server uptime",
        "RPC Address",
        "Host",
        "Note",
        "TOML location",
    ] {
        assert!(obj.contains_key(key), "server/info lacks {key:?}: {info}");
    }
    for (k, v) in obj {
        assert!(
            v.is_string(),
            "server/info value of {k:?} is not a string: {v}"
        );
    }
    assert_eq!(info["Note"], "hello from the test");
    let note = srv.get("/api/server/note").expect(200);
    assert_eq!(note.text().trim_end(), "hello from the test");
}

#[test]
fn compiled_types_include_keyvalue() {
    let srv = Server::start();
    let types = srv.get("/api/server/compiled-types").expect(200).json();
    assert_eq!(
        types["keyvalue"], "github.com/janelia-flyem/dvid/datatype/keyvalue",
        "compiled-types: {types}"
    );
    for (k, v) in types.as_object().expect("object") {
        assert!(v.is_string(), "type URL of {k} is not a string");
    }
}

#[test]
fn types_lists_only_types_with_instances() {
    let srv = Server::start();
    let before = srv.get("/api/server/types").expect(200).json();
    assert_eq!(before, json!({}), "no instances yet");
    let root = srv.create_repo("types");
    srv.create_instance(&root, "keyvalue", "kv");
    let after = srv.get("/api/server/types").expect(200).json();
    assert_eq!(
        after,
        json!({"keyvalue": "github.com/janelia-flyem/dvid/datatype/keyvalue"})
    );
}

#[test]
fn repos_info_empty_then_keyed_by_root() {
    let srv = Server::start();
    assert_eq!(srv.get("/api/repos/info").expect(200).json(), json!({}));
    let a = srv.create_repo("a");
    let b = srv.create_repo("b");
    let all = srv.get("/api/repos/info").expect(200).json();
    let obj = all.as_object().expect("object");
    assert_eq!(obj.len(), 2, "{all}");
    assert_eq!(all[&a]["Root"], a.as_str());
    assert_eq!(all[&a]["Alias"], "a");
    assert_eq!(all[&b]["Root"], b.as_str());
    assert_eq!(all[&b]["Alias"], "b");
}

#[test]
fn get_requests_may_carry_bodies() {
    let srv = Server::start();
    srv.create_repo("body");
    let r = srv
        .get_with_body("/api/repos/info", b"{\"ignored\": true}".to_vec())
        .expect(200);
    assert_eq!(r.json().as_object().map(|o| o.len()), Some(1));
}

#[test]
fn help_pages() {
    let srv = Server::start();
    srv.get("/api/help").expect(200);
    let kv = srv.get("/api/help/keyvalue").expect(200);
    assert!(!kv.body.is_empty());
    srv.get("/api/help/nosuchtype").expect(400);
}

#[test]
fn load_counters_are_integers() {
    let srv = Server::start();
    let load = srv.get("/api/load").expect(200).json();
    for key in [
        "file bytes read",
        "file bytes written",
        "key bytes read",
        "key bytes written",
        "value bytes read",
        "value bytes written",
        "GET requests",
        "PUT requests",
        "handlers active",
    ] {
        assert!(
            load[key].is_u64() || load[key].is_i64(),
            "load[{key:?}] is not an integer: {load}"
        );
    }
}

#[test]
fn head_repo() {
    let srv = Server::start();
    let root = srv.create_repo("head");
    srv.head(&format!("/api/repo/{root}")).expect(200);
    srv.head("/api/repo/0123456789abcdef0123456789abcdef")
        .expect(400);
}

// ------------------------------------------------------------------ admin token / rw modes

#[test]
fn admin_token_from_config_guards_repo_creation() {
    let srv = Server::builder()
        .config("[auth]\nadmin_token = \"s3cret\"\n")
        .start();
    srv.post_json("/api/repos", &json!({"alias": "nope"}))
        .expect_4xx();
    srv.post_json("/api/repos?admintoken=wrong", &json!({"alias": "nope"}))
        .expect_4xx();
    assert_eq!(
        srv.get("/api/repos/info").expect(200).json(),
        json!({}),
        "a refused POST must not create a repo"
    );
    let v = srv
        .post_json("/api/repos?admintoken=s3cret", &json!({"alias": "yes"}))
        .expect(200)
        .json();
    assert_uuid(v["root"].as_str().expect("root"));
    assert_eq!(
        srv.get("/api/repos/info")
            .expect(200)
            .json()
            .as_object()
            .map(|o| o.len()),
        Some(1)
    );
}

#[test]
fn admin_token_from_env_guards_repo_creation() {
    let srv = Server::builder()
        .env("TESSERA_ADMIN_TOKEN", "envtok")
        .start();
    srv.post_json("/api/repos", &json!({"alias": "nope"}))
        .expect_4xx();
    srv.post_json("/api/repos?admintoken=envtok", &json!({"alias": "yes"}))
        .expect(200);
}

#[test]
fn without_admin_token_anyone_may_create_repos() {
    let srv = Server::start();
    let v = srv.post_json("/api/repos", &json!({})).expect(200).json();
    assert_uuid(v["root"].as_str().expect("root"));
}

#[test]
fn readonly_mode_rejects_writes() {
    let srv = Server::start_with_config("[server]\nrwmode = \"readonly\"\n");
    srv.post_json("/api/repos", &json!({"alias": "ro"}))
        .expect(400);
    assert_eq!(srv.get("/api/repos/info").expect(200).json(), json!({}));
    srv.get("/api/heartbeat").expect(200);
}

#[test]
fn readonly_mode_is_bypassed_by_admintoken() {
    let srv = Server::builder()
        .config("[server]\nrwmode = \"readonly\"\n[auth]\nadmin_token = \"tok\"\n")
        .start();
    let v = srv
        .post_json("/api/repos?admintoken=tok", &json!({"alias": "ro"}))
        .expect(200)
        .json();
    let root = v["root"].as_str().expect("root").to_string();
    srv.post_json(
        &format!("/api/repo/{root}/log"),
        &json!({"log": ["not admin"]}),
    )
    .expect(400);
    srv.post_json(
        &format!("/api/repo/{root}/log?admintoken=tok"),
        &json!({"log": ["admin"]}),
    )
    .expect(200);
    let log = srv.get(&format!("/api/repo/{root}/log")).expect(200).json();
    let lines: Vec<String> = serde_json::from_value(log["log"].clone()).expect("log array");
    assert!(lines.iter().any(|l| l.ends_with("admin")), "{lines:?}");
    assert!(!lines.iter().any(|l| l.ends_with("not admin")), "{lines:?}");
}

#[test]
fn fullwrite_mode_allows_writes_on_locked_nodes() {
    let srv = Server::start_with_config("[server]\nrwmode = \"fullwrite\"\n");
    let root = srv.create_repo("fw");
    srv.create_instance(&root, "keyvalue", "kv");
    srv.commit(&root);
    srv.put_key(&root, "kv", "k", b"written on a locked node");
    assert_eq!(
        srv.key_value(&root, "kv", "k").as_deref(),
        Some(&b"written on a locked node"[..])
    );
}

// ------------------------------------------------------------------ store configuration

#[test]
fn explicit_rocksdb_store_path_is_used_and_persists() {
    let mut srv = Server::start_with_config(
        "[store.main]\nengine = \"rocksdb\"\npath = \"{dir}/main-store\"\n[backend.default]\nstore = \"main\"\n",
    );
    let root = srv.create_repo("stores");
    srv.create_instance(&root, "keyvalue", "kv");
    srv.put_key(&root, "kv", "k", b"v");
    let store_dir = srv.scratch_dir().join("main-store");
    assert!(
        store_dir.is_dir(),
        "configured store directory {} was not created",
        store_dir.display()
    );
    assert!(
        std::fs::read_dir(&store_dir)
            .expect("read store dir")
            .next()
            .is_some(),
        "store directory is empty"
    );
    srv.restart();
    assert_eq!(srv.key_value(&root, "kv", "k").as_deref(), Some(&b"v"[..]));
}

#[test]
fn memory_store_serves() {
    let srv = Server::start_with_config(
        "[store.mem]\nengine = \"memory\"\n[backend.default]\nstore = \"mem\"\n",
    );
    let root = srv.create_repo("mem");
    srv.create_instance(&root, "keyvalue", "kv");
    srv.put_key(&root, "kv", "k", b"in memory");
    assert_eq!(
        srv.key_value(&root, "kv", "k").as_deref(),
        Some(&b"in memory"[..])
    );
}

#[test]
fn per_type_backend_store() {
    let srv = Server::start_with_config(
        "[store.meta]\nengine = \"rocksdb\"\npath = \"{dir}/meta\"\n\
         [store.kvs]\nengine = \"rocksdb\"\npath = \"{dir}/kvs\"\n\
         [backend.default]\nstore = \"meta\"\n[backend.keyvalue]\nstore = \"kvs\"\n",
    );
    let root = srv.create_repo("typed");
    srv.create_instance(&root, "keyvalue", "kv");
    srv.put_key(&root, "kv", "k", b"typed store");
    assert_eq!(
        srv.key_value(&root, "kv", "k").as_deref(),
        Some(&b"typed store"[..])
    );
    assert!(srv.scratch_dir().join("kvs").is_dir());
    assert!(srv.scratch_dir().join("meta").is_dir());
}

#[test]
fn compute_flag_is_accepted() {
    let srv = Server::builder().compute("cpu").start();
    srv.get("/api/heartbeat").expect(200);
}

#[test]
fn user_latencies_track_u_parameter() {
    let srv = Server::start();
    srv.get("/api/heartbeat?u=alice").expect(200);
    srv.get("/api/heartbeat?u=bob&app=test").expect(200);
    let all = srv.get("/api/user-latencies").expect(200).json();
    for user in ["alice", "bob"] {
        let e = &all[user];
        assert_eq!(e["User"], user, "{all}");
        assert!(e["LastPing"].is_string(), "{all}");
        for k in ["LastLatency", "MinLatency", "MaxLatency"] {
            assert!(e[k].is_number(), "{k}: {all}");
        }
    }
    let one = srv.get("/api/user-latencies?u=alice").expect(200).json();
    assert_eq!(one["User"], "alice", "{one}");
}

#[test]
fn server_config_is_admin_only() {
    let srv = Server::builder()
        .config("[server]\nnote = \"cfg-note\"\n[auth]\nadmin_token = \"tok\"\n")
        .start();
    srv.get("/api/server/config").expect_4xx();
    let r = srv.get("/api/server/config?admintoken=tok").expect(200);
    assert!(
        r.text().contains("cfg-note"),
        "raw TOML expected: {:?}",
        r.text()
    );
}

/// The niceness in a `/proc/.../stat` file: field 19, the 17th after the parenthesised name.
#[cfg(target_os = "linux")]
fn niceness(stat: &std::path::Path) -> Option<i32> {
    let stat = std::fs::read_to_string(stat).ok()?;
    stat.rsplit_once(") ")?.1.split(' ').nth(16)?.parse().ok()
}

/// The server's threads by name, each with its niceness.
#[cfg(target_os = "linux")]
fn threads(pid: u32) -> Vec<(String, i32)> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| {
            let dir = t.ok()?.path();
            let name = std::fs::read_to_string(dir.join("comm")).ok()?;
            Some((name.trim_end().to_string(), niceness(&dir.join("stat"))?))
        })
        .collect()
}

#[cfg(target_os = "linux")]
#[test]
fn reads_run_on_threads_below_the_writes() {
    let srv = Server::start();
    let root = srv.create_repo("lanes");
    srv.create_instance(&root, "keyvalue", "kv");
    srv.put_key(&root, "kv", "k", b"v");
    assert_eq!(srv.key_value(&root, "kv", "k").as_deref(), Some(&b"v"[..]));

    let own = niceness(format!("/proc/{}/stat", srv.pid()).as_ref()).unwrap();
    let threads = threads(srv.pid());
    let reads: Vec<i32> = threads
        .iter()
        .filter(|(name, _)| name == "tessera read")
        .map(|t| t.1)
        .collect();
    assert!(!reads.is_empty(), "no read lane thread in {threads:?}");
    // 3 (tessera_engine::priority::READS), or the server's own if it was started lower.
    assert!(
        reads.iter().all(|&n| n >= 3.max(own)),
        "read lane threads at {reads:?}"
    );
    // The write went through tokio's blocking pool, which keeps the process's priority.
    let writes: Vec<i32> = threads
        .iter()
        .filter(|(name, _)| name.starts_with("tokio-r"))
        .map(|t| t.1)
        .collect();
    assert!(!writes.is_empty(), "no tokio thread in {threads:?}");
    assert!(
        writes.iter().all(|&n| n == own),
        "tokio threads at {writes:?}"
    );
}

//! Everything survives a restart on the same data directory: repos, DAG, locks, instances,
//! values, logs; counters (VersionID, mutation ID) never go backwards.

use tessera_tests::*;

/// The DAG with timestamps removed (their formatting is not what this test is about).
fn dag_without_times(info: &Value) -> Value {
    let mut dag = info["DAG"].clone();
    if let Some(nodes) = dag["Nodes"].as_object_mut() {
        for node in nodes.values_mut() {
            if let Some(o) = node.as_object_mut() {
                o.remove("Created");
                o.remove("Updated");
            }
        }
    }
    dag
}

fn max_version_id(info: &Value) -> u64 {
    info["DAG"]["Nodes"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n["VersionID"].as_u64().unwrap())
        .max()
        .unwrap()
}

#[test]
fn restart_preserves_repos_dag_instances_and_values() {
    let mut srv = Server::start();
    let root = srv.create_repo("persist");
    srv.post_json(
        &format!("/api/repo/{root}/log"),
        &json!({"log": ["repo line"]}),
    )
    .expect(200);
    srv.create_instance_with(&root, "keyvalue", "kv", &json!({"Tags": "a=1"}));
    srv.create_instance_with(&root, "keyvalue", "shared", &json!({"versioned": "false"}));
    srv.put_key(&root, "kv", "k", b"root value");
    srv.put_key(&root, "kv", "gone", b"deleted later");
    srv.post_json(
        &format!("/api/node/{root}/log"),
        &json!({"log": ["node line"]}),
    )
    .expect(200);
    srv.post_json(
        &format!("/api/node/{root}/commit"),
        &json!({"note": "committed root"}),
    )
    .expect(200);
    let child = srv.newversion(&root);
    srv.put_key(&child, "kv", "k", b"child value");
    srv.delete_key(&child, "kv", "gone");
    let side = srv.branch(&root, "side");
    srv.put_key(&side, "shared", "s", b"unversioned");
    let repo_before = srv.repo_info(&root);
    let kv_info_before = srv
        .get(&format!("/api/node/{root}/kv/info"))
        .expect(200)
        .json();
    let repos_before = srv.get("/api/repos/info").expect(200).json();
    let mutations_before = srv
        .get(&format!("/api/node/{child}/kv/mutations"))
        .expect(200)
        .json();

    srv.restart();

    let repo_after = srv.repo_info(&root);
    assert_eq!(
        dag_without_times(&repo_after),
        dag_without_times(&repo_before)
    );
    for key in ["Root", "Alias", "Description", "Log", "Properties"] {
        assert_eq!(repo_after[key], repo_before[key], "{key}");
    }
    assert_eq!(
        repo_after["DataInstances"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        repo_before["DataInstances"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>()
    );
    assert_eq!(
        srv.get(&format!("/api/node/{root}/kv/info"))
            .expect(200)
            .json(),
        kv_info_before
    );
    assert_eq!(
        srv.get("/api/repos/info")
            .expect(200)
            .json()
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        repos_before.as_object().unwrap().keys().collect::<Vec<_>>()
    );
    // mutation records
    assert_eq!(
        srv.get(&format!("/api/node/{child}/kv/mutations"))
            .expect(200)
            .json(),
        mutations_before
    );
    // locked state
    srv.get(&format!("/api/node/{root}/commit"))
        .expect(200)
        .expect_body("{\"Locked\":true}");
    srv.get(&format!("/api/node/{child}/commit"))
        .expect(200)
        .expect_body("{\"Locked\":false}");
    srv.post(&format!("/api/node/{root}/kv/key/k"), b"x".to_vec())
        .expect(400);
    // values per version, tombstones
    assert_eq!(
        srv.key_value(&root, "kv", "k").as_deref(),
        Some(&b"root value"[..])
    );
    assert_eq!(
        srv.key_value(&child, "kv", "k").as_deref(),
        Some(&b"child value"[..])
    );
    assert_eq!(
        srv.key_value(&root, "kv", "gone").as_deref(),
        Some(&b"deleted later"[..])
    );
    assert_eq!(srv.key_value(&child, "kv", "gone"), None);
    assert_eq!(
        srv.key_value(&side, "kv", "k").as_deref(),
        Some(&b"root value"[..])
    );
    assert_eq!(
        srv.key_value(&child, "shared", "s").as_deref(),
        Some(&b"unversioned"[..])
    );
    // tags and branch resolution
    assert_eq!(
        srv.get(&format!("/api/node/{root}/kv/tags"))
            .expect(200)
            .json(),
        json!({"Tags": {"a": "1"}})
    );
    assert_eq!(
        srv.key_value(&format!("{root}:master"), "kv", "k")
            .as_deref(),
        Some(&b"child value"[..])
    );
    let bv = srv
        .get(&format!("/api/repo/{root}/branch-versions/side"))
        .expect(200)
        .json();
    assert_eq!(bv, json!([side, root]));
    // the DAG rules still hold after the restart
    srv.post_json(&format!("/api/node/{root}/newversion"), &json!({}))
        .expect(400);
    srv.post_json(
        &format!("/api/node/{root}/branch"),
        &json!({"branch": "side"}),
    )
    .expect(400);
    srv.post_json(&format!("/api/node/{root}/commit"), &json!({}))
        .expect(400);
}

#[test]
fn version_ids_do_not_repeat_after_restart() {
    let mut srv = Server::start();
    let root = srv.create_repo("ids");
    srv.commit(&root);
    let c = srv.newversion(&root);
    let max_before = max_version_id(&srv.repo_info(&root));
    srv.restart();
    srv.commit(&c);
    let c2 = srv.newversion(&c);
    let other = srv.create_repo("other");
    let v_c2 = srv.node_info(&c2)["VersionID"].as_u64().unwrap();
    let v_other = srv.node_info(&other)["VersionID"].as_u64().unwrap();
    assert!(
        v_c2 > max_before,
        "new VersionID {v_c2} must exceed {max_before}"
    );
    assert!(
        v_other > max_before,
        "new VersionID {v_other} must exceed {max_before}"
    );
    assert_ne!(v_c2, v_other);
}

#[test]
fn mutation_id_does_not_go_backwards() {
    let mut srv = Server::start();
    let root = srv.create_repo("mut");
    srv.create_instance(&root, "keyvalue", "kv");
    for i in 0..5 {
        srv.put_key(&root, "kv", &format!("k{i}"), b"x");
    }
    let before = srv.repo_info(&root)["MutationID"]
        .as_u64()
        .expect("MutationID");
    assert!(before >= 1_000_000_000, "{before}");
    srv.restart();
    let after = srv.repo_info(&root)["MutationID"]
        .as_u64()
        .expect("MutationID");
    assert!(
        after >= before,
        "MutationID went backwards: {before} -> {after}"
    );
    srv.restart();
    let again = srv.repo_info(&root)["MutationID"]
        .as_u64()
        .expect("MutationID");
    assert!(
        again >= after,
        "MutationID went backwards: {after} -> {again}"
    );
}

#[test]
fn acknowledged_writes_survive_a_crash() {
    let mut srv = Server::start();
    let root = srv.create_repo("crash");
    srv.create_instance(&root, "keyvalue", "kv");
    srv.put_key(&root, "kv", "k", b"acknowledged");
    srv.commit(&root);
    let child = srv.newversion(&root);
    srv.put_key(&child, "kv", "k", b"child");
    srv.kill(); // SIGKILL: no clean shutdown
    srv.start_again();
    assert_eq!(srv.node_info(&root)["Locked"], true);
    assert_eq!(
        srv.key_value(&root, "kv", "k").as_deref(),
        Some(&b"acknowledged"[..])
    );
    assert_eq!(
        srv.key_value(&child, "kv", "k").as_deref(),
        Some(&b"child"[..])
    );
}

#[test]
fn second_server_on_same_directory_sees_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = {
        let mut srv = Server::start_in(dir.path());
        let root = srv.create_repo("shared dir");
        srv.create_instance(&root, "keyvalue", "kv");
        srv.put_key(&root, "kv", "k", b"v");
        let st = srv.stop();
        assert!(st.success(), "clean shutdown exits 0: {st:?}");
        root
    };
    let srv = Server::start_in(dir.path());
    assert_eq!(srv.repo_info(&root)["Alias"], "shared dir");
    assert_eq!(srv.key_value(&root, "kv", "k").as_deref(), Some(&b"v"[..]));
}

#[test]
fn sigterm_exits_zero() {
    let mut srv = Server::start();
    srv.create_repo("bye");
    let st = srv.stop();
    assert!(
        st.success(),
        "SIGTERM must shut down cleanly with exit 0, got {st:?}"
    );
}

//! Repo endpoints (spec §3.3): create, info shape, info edit, repo log.

use tessera_tests::*;

#[test]
fn create_repo_returns_root_exactly_formatted() {
    let srv = Server::start();
    let r = srv
        .post_json(
            "/api/repos",
            &json!({"alias": "fly", "description": "a fly brain"}),
        )
        .expect(200);
    let root = r.json()["root"].as_str().expect("root").to_string();
    assert_uuid(&root);
    let r = r.expect_body(&format!("{{\"root\": \"{root}\"}}"));
    let ct = r.header("content-type").unwrap_or_default();
    assert!(ct.starts_with("application/json"), "content-type {ct:?}");
}

#[test]
fn create_repo_without_body() {
    let srv = Server::start();
    let v = srv.post_empty("/api/repos").expect(200).json();
    assert_uuid(v["root"].as_str().expect("root"));
}

#[test]
fn create_repo_with_assigned_root() {
    let srv = Server::start();
    let want = "0123456789abcdef0123456789abcdef";
    let v = srv
        .post_json("/api/repos", &json!({"alias": "assigned", "root": want}))
        .expect(200)
        .json();
    assert_eq!(v["root"], want);
    assert_eq!(srv.repo_info(want)["Root"], want);
    // The same root again is refused and changes nothing.
    srv.post_json("/api/repos", &json!({"alias": "dup", "root": want}))
        .expect(400);
    assert_eq!(
        srv.get("/api/repos/info")
            .expect(200)
            .json()
            .as_object()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(srv.repo_info(want)["Alias"], "assigned");
}

#[test]
fn create_repo_with_bad_root_is_refused() {
    let srv = Server::start();
    srv.post_json("/api/repos", &json!({"root": "not-a-uuid"}))
        .expect(400);
    assert_eq!(srv.get("/api/repos/info").expect(200).json(), json!({}));
}

#[test]
fn repo_info_shape() {
    let srv = Server::start();
    let root = srv.create_repo("shape");
    let info = srv.repo_info(&root);
    assert_eq!(info["Root"], root.as_str());
    assert_eq!(info["Alias"], "shape");
    assert_eq!(info["Description"], "shape description");
    assert!(info["Log"].is_array(), "Log: {info}");
    assert!(info["Properties"].is_object(), "Properties: {info}");
    assert_eq!(info["DataInstances"], json!({}));
    assert_eq!(info["DAG"]["Root"], root.as_str());
    let nodes = info["DAG"]["Nodes"].as_object().expect("DAG.Nodes object");
    assert_eq!(nodes.len(), 1);
    let node = &nodes[&root];
    assert_eq!(node["UUID"], root.as_str());
    assert_eq!(node["Branch"], "");
    assert_eq!(node["Locked"], false);
    assert!(
        node["VersionID"].is_u64(),
        "VersionID must be an integer: {node}"
    );
    assert_eq!(node["Parents"], json!([]));
    assert_eq!(node["Children"], json!([]));
    assert!(node["Note"].is_string());
    assert!(node["Log"].is_array());
    assert!(node["Created"].is_string());
    assert!(node["Updated"].is_string());
    let mid = info["MutationID"]
        .as_u64()
        .unwrap_or_else(|| panic!("MutationID must be an integer: {info}"));
    assert!(
        mid >= 1_000_000_000,
        "mutation IDs start at 1000000000, got {mid}"
    );
    assert!(info["SavedMutationID"].is_u64(), "SavedMutationID: {info}");
    assert!(info["Created"].is_string());
    assert!(info["Updated"].is_string());
}

#[test]
fn repo_info_parents_and_children_are_version_ids() {
    let srv = Server::start();
    let root = srv.create_repo("ids");
    srv.commit(&root);
    let child = srv.newversion(&root);
    let info = srv.repo_info(&child);
    let nodes = &info["DAG"]["Nodes"];
    let root_v = nodes[&root]["VersionID"].as_u64().expect("root VersionID");
    let child_v = nodes[&child]["VersionID"]
        .as_u64()
        .expect("child VersionID");
    assert_ne!(root_v, child_v);
    assert_eq!(nodes[&child]["Parents"], json!([root_v]));
    assert_eq!(nodes[&root]["Children"], json!([child_v]));
    assert_eq!(nodes[&child]["Children"], json!([]));
    assert_eq!(nodes[&root]["Locked"], true);
    assert_eq!(nodes[&child]["Locked"], false);
    // Any node of the repo reaches the same repo info.
    assert_eq!(srv.repo_info(&root)["DAG"], info["DAG"]);
}

#[test]
fn version_ids_are_unique_across_repos() {
    let srv = Server::start();
    let a = srv.create_repo("a");
    let b = srv.create_repo("b");
    let va = srv.node_info(&a)["VersionID"].as_u64().unwrap();
    let vb = srv.node_info(&b)["VersionID"].as_u64().unwrap();
    assert_ne!(va, vb, "VersionIDs are server-wide");
}

#[test]
fn post_repo_info_edits_alias_and_description() {
    let srv = Server::start();
    let root = srv.create_repo("old");
    srv.post_json(&format!("/api/repo/{root}/info"), &json!({"alias": "new"}))
        .expect(200);
    let info = srv.repo_info(&root);
    assert_eq!(info["Alias"], "new");
    assert_eq!(
        info["Description"], "old description",
        "missing keys stay unchanged"
    );
    srv.post_json(
        &format!("/api/repo/{root}/info"),
        &json!({"description": "changed"}),
    )
    .expect(200);
    let info = srv.repo_info(&root);
    assert_eq!(info["Alias"], "new");
    assert_eq!(info["Description"], "changed");
    let all = srv.get("/api/repos/info").expect(200).json();
    assert_eq!(all[&root]["Alias"], "new");
}

#[test]
fn repo_log_appends() {
    let srv = Server::start();
    let root = srv.create_repo("log");
    let before: Vec<String> = serde_json::from_value(
        srv.get(&format!("/api/repo/{root}/log")).expect(200).json()["log"].clone(),
    )
    .expect("log array");
    srv.post_json(
        &format!("/api/repo/{root}/log"),
        &json!({"log": ["first line", "second line"]}),
    )
    .expect(200);
    srv.post_json(
        &format!("/api/repo/{root}/log"),
        &json!({"log": ["third line"]}),
    )
    .expect(200);
    let v = srv.get(&format!("/api/repo/{root}/log")).expect(200).json();
    let after: Vec<String> = serde_json::from_value(v["log"].clone()).expect("log array");
    assert_eq!(after.len(), before.len() + 3, "{after:?}");
    let new = &after[before.len()..];
    assert!(new[0].ends_with("first line"), "{new:?}");
    assert!(new[1].ends_with("second line"), "{new:?}");
    assert!(new[2].ends_with("third line"), "{new:?}");
    // The repo info carries the same log.
    let info = srv.repo_info(&root);
    assert_eq!(info["Log"], v["log"]);
}

#[test]
fn repo_endpoints_accept_uuid_prefixes() {
    let srv = Server::start();
    let root = srv.create_repo("prefix");
    let info = srv.repo_info(&root[..6]);
    assert_eq!(info["Root"], root.as_str());
}

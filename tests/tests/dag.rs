//! The version DAG (spec §1.2, §1.3, §3.3, §3.4): commit, newversion, branch, tag, merge,
//! assigned UUIDs, UUID prefixes and branch specifications, node note and log.

use tessera_tests::*;

fn branch_versions(srv: &Server, uuid: &str, name: &str) -> Vec<String> {
    let v = srv
        .get(&format!("/api/repo/{uuid}/branch-versions/{name}"))
        .expect(200)
        .json();
    serde_json::from_value(v.clone())
        .unwrap_or_else(|_| panic!("branch-versions is not a string array: {v}"))
}

fn note_of(srv: &Server, uuid_spec: &str) -> String {
    let v = srv
        .get(&format!("/api/node/{uuid_spec}/note"))
        .expect(200)
        .json();
    v["note"]
        .as_str()
        .unwrap_or_else(|| panic!("no note in {v}"))
        .to_string()
}

fn set_note(srv: &Server, uuid: &str, note: &str) {
    srv.post_json(&format!("/api/node/{uuid}/note"), &json!({"note": note}))
        .expect(200);
}

fn commit_noted(srv: &Server, uuid: &str, note: &str) {
    srv.post_json(&format!("/api/node/{uuid}/commit"), &json!({"note": note}))
        .expect(200);
}

// ------------------------------------------------------------------ commit

#[test]
fn commit_status_and_response_shapes() {
    let srv = Server::start();
    let root = srv.create_repo("commit");
    srv.get(&format!("/api/node/{root}/commit"))
        .expect(200)
        .expect_body("{\"Locked\":false}");
    srv.get(&format!("/api/node/{root}/status"))
        .expect(200)
        .expect_body("{\"Locked\":false}");
    srv.post_json(
        &format!("/api/node/{root}/commit"),
        &json!({"note": "first commit", "log": ["line a", "line b"]}),
    )
    .expect(200)
    .expect_body(&format!("{{\"committed\": \"{root}\"}}"));
    srv.get(&format!("/api/node/{root}/commit"))
        .expect(200)
        .expect_body("{\"Locked\":true}");
    srv.get(&format!("/api/node/{root}/status"))
        .expect(200)
        .expect_body("{\"Locked\":true}");
    let node = srv.node_info(&root);
    assert_eq!(node["Locked"], true);
    assert_eq!(node["Note"], "first commit");
    let log: Vec<String> = serde_json::from_value(node["Log"].clone()).expect("node log");
    assert!(log.iter().any(|l| l.ends_with("line a")), "{log:?}");
    assert!(log.iter().any(|l| l.ends_with("line b")), "{log:?}");
}

#[test]
fn commit_without_body() {
    let srv = Server::start();
    let root = srv.create_repo("commit");
    srv.post_empty(&format!("/api/node/{root}/commit"))
        .expect(200);
    srv.get(&format!("/api/node/{root}/commit"))
        .expect(200)
        .expect_body("{\"Locked\":true}");
}

#[test]
fn double_commit_is_400() {
    let srv = Server::start();
    let root = srv.create_repo("commit");
    srv.commit(&root);
    srv.post_json(
        &format!("/api/node/{root}/commit"),
        &json!({"note": "again"}),
    )
    .expect(400);
    assert_eq!(
        srv.node_info(&root)["Note"],
        "commit",
        "a refused commit must not change the note"
    );
}

// ------------------------------------------------------------------ newversion

#[test]
fn newversion_requires_locked_parent() {
    let srv = Server::start();
    let root = srv.create_repo("nv");
    srv.post_json(&format!("/api/node/{root}/newversion"), &json!({}))
        .expect(400);
    assert_eq!(srv.node_count(&root), 1, "no child may be created");
}

#[test]
fn newversion_creates_unlocked_child_on_same_branch() {
    let srv = Server::start();
    let root = srv.create_repo("nv");
    srv.commit(&root);
    let r = srv
        .post_json(
            &format!("/api/node/{root}/newversion"),
            &json!({"note": "child note"}),
        )
        .expect(200);
    let child = r.json()["child"].as_str().expect("child").to_string();
    assert_uuid(&child);
    r.expect_body(&format!("{{\"child\": \"{child}\"}}"));
    let node = srv.node_info(&child);
    assert_eq!(node["Locked"], false);
    assert_eq!(node["Branch"], "");
    assert_eq!(node["Note"], "child note");
    srv.get(&format!("/api/node/{child}/commit"))
        .expect(200)
        .expect_body("{\"Locked\":false}");
}

#[test]
fn second_newversion_on_same_branch_is_400() {
    let srv = Server::start();
    let root = srv.create_repo("nv");
    srv.commit(&root);
    srv.newversion(&root);
    srv.post_json(&format!("/api/node/{root}/newversion"), &json!({}))
        .expect(400);
    assert_eq!(srv.node_count(&root), 2);
}

#[test]
fn newversion_inherits_branch_name() {
    let srv = Server::start();
    let root = srv.create_repo("nv");
    srv.commit(&root);
    let b1 = srv.branch(&root, "feature");
    srv.commit(&b1);
    let b2 = srv.newversion(&b1);
    assert_eq!(srv.node_info(&b2)["Branch"], "feature");
}

#[test]
fn newversion_with_assigned_uuid() {
    let srv = Server::start();
    let root = srv.create_repo("assign");
    srv.commit(&root);
    let want = "abcdefabcdefabcdefabcdefabcdef01";
    let v = srv
        .post_json(
            &format!("/api/node/{root}/newversion"),
            &json!({"uuid": want}),
        )
        .expect(200)
        .json();
    assert_eq!(v["child"], want);
    assert_eq!(srv.node_info(want)["UUID"], want);
}

#[test]
fn newversion_with_bad_or_duplicate_uuid_is_400() {
    let srv = Server::start();
    let root = srv.create_repo("assign");
    srv.commit(&root);
    srv.post_json(
        &format!("/api/node/{root}/newversion"),
        &json!({"uuid": "xyz"}),
    )
    .expect(400);
    srv.post_json(
        &format!("/api/node/{root}/newversion"),
        &json!({"uuid": root}),
    )
    .expect(400);
    assert_eq!(srv.node_count(&root), 1, "nothing may be created");
    // A duplicate of a node in another repo is refused too.
    let other = srv.create_repo("other");
    srv.post_json(
        &format!("/api/node/{root}/newversion"),
        &json!({"uuid": other}),
    )
    .expect(400);
    assert_eq!(srv.node_count(&root), 1);
}

// ------------------------------------------------------------------ branch

#[test]
fn branch_creates_named_child() {
    let srv = Server::start();
    let root = srv.create_repo("br");
    srv.commit(&root);
    let r = srv
        .post_json(
            &format!("/api/node/{root}/branch"),
            &json!({"branch": "alt", "note": "alt note"}),
        )
        .expect(200);
    let child = r.json()["child"].as_str().expect("child").to_string();
    assert_uuid(&child);
    r.expect_body(&format!("{{\"child\": \"{child}\"}}"));
    let node = srv.node_info(&child);
    assert_eq!(node["Branch"], "alt");
    assert_eq!(node["Locked"], false);
    assert_eq!(node["Note"], "alt note");
    // A master child can still be made next to the branch.
    let m = srv.newversion(&root);
    assert_eq!(srv.node_info(&m)["Branch"], "");
}

#[test]
fn branch_requires_locked_parent() {
    let srv = Server::start();
    let root = srv.create_repo("br");
    srv.post_json(
        &format!("/api/node/{root}/branch"),
        &json!({"branch": "alt"}),
    )
    .expect(400);
    assert_eq!(srv.node_count(&root), 1);
}

#[test]
fn branch_name_must_be_new_and_not_master() {
    let srv = Server::start();
    let root = srv.create_repo("br");
    srv.commit(&root);
    srv.post_json(
        &format!("/api/node/{root}/branch"),
        &json!({"branch": "master"}),
    )
    .expect(400);
    srv.post_json(&format!("/api/node/{root}/branch"), &json!({"branch": ""}))
        .expect(400);
    srv.post_json(&format!("/api/node/{root}/branch"), &json!({}))
        .expect(400);
    let alt = srv.branch(&root, "alt");
    srv.post_json(
        &format!("/api/node/{root}/branch"),
        &json!({"branch": "alt"}),
    )
    .expect(400);
    // Used anywhere in the DAG counts as used.
    let m = srv.newversion(&root);
    srv.commit(&m);
    srv.post_json(&format!("/api/node/{m}/branch"), &json!({"branch": "alt"}))
        .expect(400);
    let nodes = srv.node_count(&root);
    assert_eq!(nodes, 3, "root, alt, master child");
    let _ = alt;
}

#[test]
fn branch_with_assigned_uuid() {
    let srv = Server::start();
    let root = srv.create_repo("br");
    srv.commit(&root);
    let want = "00000000000000000000000000000abc";
    let v = srv
        .post_json(
            &format!("/api/node/{root}/branch"),
            &json!({"branch": "x", "uuid": want}),
        )
        .expect(200)
        .json();
    assert_eq!(v["child"], want);
    srv.post_json(
        &format!("/api/node/{root}/branch"),
        &json!({"branch": "y", "uuid": want}),
    )
    .expect(400);
    srv.post_json(
        &format!("/api/node/{root}/branch"),
        &json!({"branch": "z", "uuid": "nothex!"}),
    )
    .expect(400);
    assert_eq!(srv.node_count(&root), 2);
}

#[test]
fn branch_versions_lists_leaf_to_root() {
    let srv = Server::start();
    let root = srv.create_repo("bv");
    srv.commit(&root);
    let c1 = srv.newversion(&root);
    srv.commit(&c1);
    let c2 = srv.newversion(&c1);
    let b1 = srv.branch(&c1, "side");
    srv.commit(&b1);
    let b2 = srv.newversion(&b1);
    assert_eq!(
        branch_versions(&srv, &root, "master"),
        vec![c2.clone(), c1.clone(), root.clone()]
    );
    assert_eq!(
        branch_versions(&srv, &root, "side"),
        vec![b2.clone(), b1.clone(), c1.clone(), root.clone()]
    );
    assert_eq!(
        branch_versions(&srv, &b2, "master"),
        vec![c2, c1, root.clone()],
        "any node of the repo"
    );
    assert!(branch_versions(&srv, &root, "nosuchbranch").is_empty());
}

// ------------------------------------------------------------------ tag

#[test]
fn tag_creates_committed_child_named_by_tag() {
    let srv = Server::start();
    let root = srv.create_repo("tag");
    srv.commit(&root);
    srv.post_json(
        &format!("/api/node/{root}/tag"),
        &json!({"tag": "v1.0", "note": "release"}),
    )
    .expect(200)
    .expect_body("{\"child\": \"v1.0\"}");
    let node = srv.node_info("v1.0");
    assert_eq!(node["UUID"], "v1.0");
    assert_eq!(node["Locked"], true);
    assert_eq!(node["Branch"], "tag-v1.0");
    let root_v = srv.node_info(&root)["VersionID"].clone();
    assert_eq!(node["Parents"], json!([root_v]));
    srv.get("/api/node/v1.0/commit")
        .expect(200)
        .expect_body("{\"Locked\":true}");
}

// ------------------------------------------------------------------ merge

#[test]
fn merge_creates_unlocked_child_with_ordered_parents() {
    let srv = Server::start();
    let root = srv.create_repo("merge");
    srv.commit(&root);
    let a = srv.newversion(&root);
    let b = srv.branch(&root, "b");
    srv.commit(&a);
    srv.commit(&b);
    let r = srv
        .post_json(
            &format!("/api/repo/{root}/merge"),
            &json!({"mergeType": "conflict-free", "parents": [b, a], "note": "merged"}),
        )
        .expect(200);
    let m = r.json()["child"].as_str().expect("child").to_string();
    assert_uuid(&m);
    r.expect_body(&format!("{{\"child\": \"{m}\"}}"));
    let info = srv.repo_info(&root);
    let nodes = &info["DAG"]["Nodes"];
    let va = nodes[&a]["VersionID"].as_u64().unwrap();
    let vb = nodes[&b]["VersionID"].as_u64().unwrap();
    let vm = nodes[&m]["VersionID"].as_u64().unwrap();
    assert_eq!(
        nodes[&m]["Parents"],
        json!([vb, va]),
        "parents in the order given"
    );
    assert_eq!(nodes[&m]["Locked"], false);
    assert_eq!(nodes[&m]["Branch"], "");
    assert_eq!(nodes[&m]["Note"], "merged");
    assert!(
        nodes[&a]["Children"]
            .as_array()
            .unwrap()
            .contains(&json!(vm))
    );
    assert!(
        nodes[&b]["Children"]
            .as_array()
            .unwrap()
            .contains(&json!(vm))
    );
}

#[test]
fn merge_accepts_uuid_prefixes() {
    let srv = Server::start();
    let root = srv.create_repo("merge");
    srv.commit(&root);
    let a = srv.newversion(&root);
    let b = srv.branch(&root, "b");
    srv.commit(&a);
    srv.commit(&b);
    // 12 hex characters are unique among a handful of random UUIDs.
    let m = srv.merge(&root, &[&a[..12], &b[..12]]);
    assert_uuid(&m);
}

#[test]
fn merge_needs_two_parents_locked_and_conflict_free_type() {
    let srv = Server::start();
    let root = srv.create_repo("merge");
    srv.commit(&root);
    let a = srv.newversion(&root);
    let b = srv.branch(&root, "b");
    srv.commit(&a);
    let url = format!("/api/repo/{root}/merge");
    // fewer than two parents
    srv.post_json(&url, &json!({"mergeType": "conflict-free", "parents": [a]}))
        .expect(400);
    srv.post_json(&url, &json!({"mergeType": "conflict-free", "parents": []}))
        .expect(400);
    // b is not locked
    srv.post_json(
        &url,
        &json!({"mergeType": "conflict-free", "parents": [a, b]}),
    )
    .expect(400);
    srv.commit(&b);
    // unknown merge type
    srv.post_json(&url, &json!({"mergeType": "whatever", "parents": [a, b]}))
        .expect(400);
    // unknown parent
    srv.post_json(
        &url,
        &json!({"mergeType": "conflict-free", "parents": [a, "ffffffffffffffffffffffffffffffff"]}),
    )
    .expect(400);
    assert_eq!(srv.node_count(&root), 3, "no merge node may be created");
    srv.merge(&root, &[&a, &b]);
    assert_eq!(srv.node_count(&root), 4);
}

#[test]
fn merge_parents_must_share_a_repo() {
    let srv = Server::start();
    let r1 = srv.create_repo("one");
    let r2 = srv.create_repo("two");
    srv.commit(&r1);
    srv.commit(&r2);
    srv.post_json(
        &format!("/api/repo/{r1}/merge"),
        &json!({"mergeType": "conflict-free", "parents": [r1, r2]}),
    )
    .expect(400);
}

#[test]
fn branch_versions_at_merge_appends_other_parents_and_follows_last() {
    let srv = Server::start();
    let root = srv.create_repo("bvm");
    srv.commit(&root);
    let a = srv.newversion(&root);
    let b = srv.branch(&root, "b");
    srv.commit(&a);
    srv.commit(&b);
    let m = srv.merge(&root, &[&b, &a]);
    srv.commit(&m);
    let leaf = srv.newversion(&m);
    // leaf, m, then m's non-last parents (b), then up the last parent (a) to the root.
    assert_eq!(
        branch_versions(&srv, &root, "master"),
        vec![leaf, m, b, a, root.clone()]
    );
}

// ------------------------------------------------------------------ UUID prefixes and branch specs

#[test]
fn uuid_prefixes_resolve_when_unique() {
    let srv = Server::start();
    let r1 = "aaaa0000000000000000000000000001";
    let r2 = "aaaa1111000000000000000000000002";
    srv.post_json("/api/repos", &json!({"root": r1}))
        .expect(200);
    srv.post_json("/api/repos", &json!({"root": r2}))
        .expect(200);
    set_note(&srv, r1, "one");
    set_note(&srv, r2, "two");
    assert_eq!(note_of(&srv, "aaaa0"), "one");
    assert_eq!(note_of(&srv, "aaaa1"), "two");
    assert_eq!(note_of(&srv, r1), "one");
    // ambiguous prefix
    srv.get("/api/node/aaaa/note").expect(400);
    srv.get("/api/repo/aaaa/info").expect(400);
    // unknown prefix
    srv.get("/api/node/bbbb/note").expect(400);
    srv.get("/api/repo/bbbb/info").expect(400);
    // prefixes are case-sensitive
    srv.get("/api/node/AAAA0/note").expect(400);
}

#[test]
fn master_and_branch_specs_resolve_to_leaves() {
    let srv = Server::start();
    let root = srv.create_repo("spec");
    // (a commit's note replaces the node note, so commit with the same note)
    commit_noted(&srv, &root, "root");
    let c1 = srv.newversion(&root);
    commit_noted(&srv, &c1, "c1");
    let c2 = srv.newversion(&c1);
    set_note(&srv, &c2, "c2");
    let s1 = srv.branch(&root, "side");
    set_note(&srv, &s1, "s1");

    assert_eq!(note_of(&srv, &format!("{root}:master")), "c2");
    assert_eq!(
        note_of(&srv, &format!("{}:master", &s1[..8])),
        "c2",
        "X only picks the repo"
    );
    assert_eq!(note_of(&srv, &format!("{root}:master~0")), "c2");
    assert_eq!(note_of(&srv, &format!("{root}:master~1")), "c1");
    assert_eq!(note_of(&srv, &format!("{root}:master~2")), "root");
    assert_eq!(note_of(&srv, &format!("{root}:side")), "s1");
    assert_eq!(note_of(&srv, &format!("{root}:side~1")), "root");
    // With exactly one repo, the prefix may be empty.
    assert_eq!(note_of(&srv, ":master"), "c2");
    assert_eq!(note_of(&srv, ":side"), "s1");
    // Branch names are case-sensitive; unknown branches are errors.
    srv.get(&format!("/api/node/{root}:Side/note")).expect(400);
    srv.get(&format!("/api/node/{root}:nosuch/note"))
        .expect(400);

    // The spec follows new versions.
    commit_noted(&srv, &c2, "c2");
    let c3 = srv.newversion(&c2);
    set_note(&srv, &c3, "c3");
    assert_eq!(note_of(&srv, &format!("{root}:master")), "c3");

    // With two repos an empty prefix is ambiguous.
    srv.create_repo("second");
    srv.get("/api/node/:master/note").expect(400);
}

#[test]
fn branch_spec_works_for_data_requests() {
    let srv = Server::start();
    let root = srv.create_repo("spec");
    srv.create_instance(&root, "keyvalue", "kv");
    srv.put_key(&root, "kv", "k", b"root");
    srv.commit(&root);
    let c1 = srv.newversion(&root);
    srv.put_key(&c1, "kv", "k", b"leaf");
    assert_eq!(
        srv.key_value(&format!("{root}:master"), "kv", "k")
            .as_deref(),
        Some(&b"leaf"[..])
    );
    assert_eq!(
        srv.key_value(&format!("{root}:master~1"), "kv", "k")
            .as_deref(),
        Some(&b"root"[..])
    );
}

// ------------------------------------------------------------------ node note and log

#[test]
fn node_note_roundtrip() {
    let srv = Server::start();
    let root = srv.create_repo("note");
    set_note(&srv, &root, "hello note");
    srv.get(&format!("/api/node/{root}/note")).expect(200);
    assert_eq!(note_of(&srv, &root), "hello note");
    assert_eq!(srv.node_info(&root)["Note"], "hello note");
    set_note(&srv, &root, "replaced");
    assert_eq!(note_of(&srv, &root), "replaced");
}

#[test]
fn node_log_appends_with_timestamp_prefix() {
    let srv = Server::start();
    let root = srv.create_repo("nlog");
    srv.post_json(
        &format!("/api/node/{root}/log"),
        &json!({"log": ["alpha", "beta"]}),
    )
    .expect(200);
    srv.post_json(&format!("/api/node/{root}/log"), &json!({"log": ["gamma"]}))
        .expect(200);
    let v = srv.get(&format!("/api/node/{root}/log")).expect(200).json();
    let log: Vec<String> = serde_json::from_value(v["log"].clone()).expect("log array");
    let tail: Vec<&String> = log.iter().rev().take(3).rev().collect();
    assert!(
        tail[0].ends_with("  alpha"),
        "node log lines are \"<time>  <msg>\": {log:?}"
    );
    assert!(tail[1].ends_with("  beta"), "{log:?}");
    assert!(tail[2].ends_with("  gamma"), "{log:?}");
    assert!(
        tail[0].len() > "  alpha".len(),
        "timestamp prefix missing: {log:?}"
    );
    assert_eq!(srv.node_info(&root)["Log"], v["log"]);
}

#[test]
fn node_posts_on_locked_node_are_400() {
    let srv = Server::start();
    let root = srv.create_repo("locked");
    set_note(&srv, &root, "before");
    srv.commit(&root);
    let note_after_commit = note_of(&srv, &root);
    srv.post_json(&format!("/api/node/{root}/note"), &json!({"note": "after"}))
        .expect(400);
    srv.post_json(&format!("/api/node/{root}/log"), &json!({"log": ["after"]}))
        .expect(400);
    assert_eq!(note_of(&srv, &root), note_after_commit);
    let log = srv.get(&format!("/api/node/{root}/log")).expect(200).json();
    assert!(
        !log["log"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().ends_with("after")),
        "{log}"
    );
    // newversion, branch and tag are allowed on locked nodes (that is their point).
    srv.newversion(&root);
    srv.branch(&root, "b");
    srv.post_json(&format!("/api/node/{root}/tag"), &json!({"tag": "t1"}))
        .expect(200);
}

#[test]
fn admintoken_bypasses_locked_node_guard_for_node_posts() {
    let srv = Server::builder()
        .config("[auth]\nadmin_token = \"tok\"\n")
        .admin_token("tok")
        .start();
    let root = srv.create_repo("locked");
    srv.commit(&root);
    srv.post_json(&format!("/api/node/{root}/note"), &json!({"note": "x"}))
        .expect(400);
    srv.post_json(
        &format!("/api/node/{root}/note?admintoken=tok"),
        &json!({"note": "admin note"}),
    )
    .expect(200);
    assert_eq!(note_of(&srv, &root), "admin note");
}

#[test]
fn unknown_node_is_400() {
    let srv = Server::start();
    srv.create_repo("x");
    for ep in ["note", "log", "commit", "status"] {
        srv.get(&format!("/api/node/ffffffffffffffffffffffffffffffff/{ep}"))
            .expect(400);
    }
    srv.post_json(
        "/api/node/ffffffffffffffffffffffffffffffff/commit",
        &json!({}),
    )
    .expect(400);
    srv.post_json(
        "/api/node/ffffffffffffffffffffffffffffffff/newversion",
        &json!({}),
    )
    .expect(400);
}

// ------------------------------------------------------------------ merge node and :master

#[test]
fn merge_node_is_not_master_leaf_until_extended() {
    // spec §10: the merge node is on the master branch name but does not become the
    // `:master` leaf unless later versions are created from it.
    let srv = Server::start();
    let root = srv.create_repo("mleaf");
    commit_noted(&srv, &root, "root");
    let a = srv.newversion(&root);
    commit_noted(&srv, &a, "a");
    let b = srv.branch(&root, "b");
    commit_noted(&srv, &b, "b");
    let m = srv.merge(&root, &[&a, &b]);
    assert_eq!(srv.node_info(&m)["Branch"], "");
    assert_eq!(note_of(&srv, &format!("{root}:master")), "a");
    commit_noted(&srv, &m, "m");
    let after = srv.newversion(&m);
    set_note(&srv, &after, "after");
    assert_eq!(note_of(&srv, &format!("{root}:master")), "after");
}

// ------------------------------------------------------------------ races

#[test]
fn concurrent_newversion_creates_exactly_one_child() {
    let srv = Server::start();
    let root = srv.create_repo("race");
    srv.commit(&root);
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    srv.post_json(&format!("/api/node/{root}/newversion"), &json!({}))
                        .status
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        statuses.iter().filter(|&&s| s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|&s| s == 200 || s == 400),
        "{statuses:?}"
    );
    let info = srv.repo_info(&root);
    assert_eq!(info["DAG"]["Nodes"].as_object().unwrap().len(), 2);
    assert_eq!(
        info["DAG"]["Nodes"][&root]["Children"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn concurrent_commits_exactly_one_succeeds() {
    let srv = Server::start();
    let root = srv.create_repo("race");
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|i| {
                let srv = &srv;
                let root = &root;
                s.spawn(move || {
                    srv.post_json(
                        &format!("/api/node/{root}/commit"),
                        &json!({"note": format!("n{i}")}),
                    )
                    .status
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        statuses.iter().filter(|&&s| s == 200).count(),
        1,
        "{statuses:?}"
    );
    let winner = statuses.iter().position(|&s| s == 200).unwrap();
    assert_eq!(srv.node_info(&root)["Note"], format!("n{winner}"));
}

#[test]
fn concurrent_branches_with_same_name_create_one() {
    let srv = Server::start();
    let root = srv.create_repo("race");
    srv.commit(&root);
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    srv.post_json(
                        &format!("/api/node/{root}/branch"),
                        &json!({"branch": "same"}),
                    )
                    .status
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        statuses.iter().filter(|&&s| s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(srv.node_count(&root), 2);
}

//! Data instances (spec §3.3 instance creation, §4.0 common endpoints, §3.4 blobstore).

use tessera_tests::*;

const KV_URL: &str = "github.com/janelia-flyem/dvid/datatype/keyvalue";

#[test]
fn create_instance_response_and_info() {
    let srv = Server::start();
    let root = srv.create_repo("inst");
    srv.post_json(
        &format!("/api/repo/{root}/instance"),
        &json!({"typename": "keyvalue", "dataname": "kv"}),
    )
    .expect(200)
    .expect_body(&format!(
        "{{\"result\": \"Added kv [keyvalue] to node {root}\"}}"
    ));
    let info = srv
        .get(&format!("/api/node/{root}/kv/info"))
        .expect(200)
        .json();
    let base = &info["Base"];
    assert_eq!(base["TypeName"], "keyvalue");
    assert_eq!(base["TypeURL"], KV_URL);
    assert_eq!(base["Name"], "kv");
    assert_eq!(base["RepoUUID"], root.as_str());
    assert_eq!(base["Versioned"], true);
    assert!(
        base["DataUUID"].as_str().is_some_and(|s| !s.is_empty()),
        "DataUUID: {info}"
    );
    assert!(base["TypeVersion"].is_string(), "TypeVersion: {info}");
    assert!(base["Compression"].is_string(), "Compression: {info}");
    assert!(base["Checksum"].is_string(), "Checksum: {info}");
    assert!(base["Syncs"].is_array(), "Syncs: {info}");
    assert!(base["Tags"].is_object(), "Tags: {info}");
    assert_eq!(info["Extended"], json!({}));
    // The repo info lists it too.
    let repo = srv.repo_info(&root);
    assert_eq!(repo["DataInstances"]["kv"]["Base"]["Name"], "kv");
    assert_eq!(repo["DataInstances"]["kv"]["Base"]["TypeName"], "keyvalue");
}

#[test]
fn instance_settings_keys_are_case_insensitive() {
    let srv = Server::start();
    let root = srv.create_repo("inst");
    srv.post_json(
        &format!("/api/repo/{root}/instance"),
        &json!({"TypeName": "keyvalue", "DataName": "Mixed"}),
    )
    .expect(200);
    srv.get(&format!("/api/node/{root}/Mixed/info")).expect(200);
}

#[test]
fn data_uuids_differ_between_instances() {
    let srv = Server::start();
    let root = srv.create_repo("inst");
    srv.create_instance(&root, "keyvalue", "a");
    srv.create_instance(&root, "keyvalue", "b");
    let a = srv
        .get(&format!("/api/node/{root}/a/info"))
        .expect(200)
        .json();
    let b = srv
        .get(&format!("/api/node/{root}/b/info"))
        .expect(200)
        .json();
    assert_ne!(a["Base"]["DataUUID"], b["Base"]["DataUUID"]);
}

#[test]
fn duplicate_instance_name_is_400() {
    let srv = Server::start();
    let root = srv.create_repo("inst");
    srv.create_instance(&root, "keyvalue", "kv");
    let before = srv
        .get(&format!("/api/node/{root}/kv/info"))
        .expect(200)
        .json();
    srv.post_json(
        &format!("/api/repo/{root}/instance"),
        &json!({"typename": "keyvalue", "dataname": "kv"}),
    )
    .expect(400);
    let after = srv
        .get(&format!("/api/node/{root}/kv/info"))
        .expect(200)
        .json();
    assert_eq!(
        before["Base"]["DataUUID"], after["Base"]["DataUUID"],
        "the original instance is untouched"
    );
    // Names are per repo: another repo may reuse it.
    let other = srv.create_repo("other");
    srv.create_instance(&other, "keyvalue", "kv");
}

#[test]
fn reserved_instance_names_are_400() {
    let srv = Server::start();
    let root = srv.create_repo("inst");
    for name in ["log", "branch", "note", "commit", "newversion"] {
        srv.post_json(
            &format!("/api/repo/{root}/instance"),
            &json!({"typename": "keyvalue", "dataname": name}),
        )
        .expect(400);
    }
    assert_eq!(srv.repo_info(&root)["DataInstances"], json!({}));
}

#[test]
fn unknown_typename_is_400() {
    let srv = Server::start();
    let root = srv.create_repo("inst");
    srv.post_json(
        &format!("/api/repo/{root}/instance"),
        &json!({"typename": "nosuchtype", "dataname": "x"}),
    )
    .expect(400);
    assert_eq!(srv.repo_info(&root)["DataInstances"], json!({}));
}

#[test]
fn missing_typename_or_dataname_is_400() {
    let srv = Server::start();
    let root = srv.create_repo("inst");
    srv.post_json(
        &format!("/api/repo/{root}/instance"),
        &json!({"typename": "keyvalue"}),
    )
    .expect(400);
    srv.post_json(
        &format!("/api/repo/{root}/instance"),
        &json!({"dataname": "x"}),
    )
    .expect(400);
    assert_eq!(srv.repo_info(&root)["DataInstances"], json!({}));
}

#[test]
fn settings_values_must_be_strings() {
    let srv = Server::start();
    let root = srv.create_repo("inst");
    srv.post_json(
        &format!("/api/repo/{root}/instance"),
        &json!({"typename": "keyvalue", "dataname": 42}),
    )
    .expect(400);
    assert_eq!(srv.repo_info(&root)["DataInstances"], json!({}));
}

#[test]
fn versioned_false_as_string_or_bool() {
    let srv = Server::start();
    let root = srv.create_repo("inst");
    srv.create_instance_with(&root, "keyvalue", "u1", &json!({"versioned": "false"}));
    srv.create_instance_with(&root, "keyvalue", "u2", &json!({"Versioned": false}));
    srv.create_instance_with(&root, "keyvalue", "u3", &json!({"versioned": "0"}));
    srv.create_instance_with(&root, "keyvalue", "v1", &json!({"versioned": "true"}));
    for (name, want) in [("u1", false), ("u2", false), ("u3", false), ("v1", true)] {
        let info = srv
            .get(&format!("/api/node/{root}/{name}/info"))
            .expect(200)
            .json();
        assert_eq!(info["Base"]["Versioned"], want, "{name}: {info}");
    }
}

#[test]
fn instance_creation_on_locked_node_is_400() {
    let srv = Server::start();
    let root = srv.create_repo("inst");
    srv.commit(&root);
    srv.post_json(
        &format!("/api/repo/{root}/instance"),
        &json!({"typename": "keyvalue", "dataname": "kv"}),
    )
    .expect(400);
    assert_eq!(srv.repo_info(&root)["DataInstances"], json!({}));
}

#[test]
fn instance_creation_on_locked_node_with_admintoken() {
    let srv = Server::builder()
        .config("[auth]\nadmin_token = \"tok\"\n")
        .admin_token("tok")
        .start();
    let root = srv.create_repo("inst");
    srv.commit(&root);
    srv.post_json(
        &format!("/api/repo/{root}/instance?admintoken=tok"),
        &json!({"typename": "keyvalue", "dataname": "kv"}),
    )
    .expect(200);
    srv.get(&format!("/api/node/{root}/kv/info")).expect(200);
}

#[test]
fn instance_is_visible_from_every_node_including_ancestors() {
    let srv = Server::start();
    let root = srv.create_repo("inst");
    srv.commit(&root);
    let child = srv.newversion(&root);
    srv.create_instance(&child, "keyvalue", "late");
    let info = srv
        .get(&format!("/api/node/{root}/late/info"))
        .expect(200)
        .json();
    assert_eq!(info["Base"]["RepoUUID"], root.as_str());
    srv.get(&format!("/api/node/{child}/late/info")).expect(200);
    srv.get(&format!("/api/node/{root}/late/keys")).expect(200);
}

#[test]
fn unknown_instance_and_unknown_keyword_are_400() {
    let srv = Server::start();
    let root = srv.create_repo("inst");
    srv.create_instance(&root, "keyvalue", "kv");
    srv.get(&format!("/api/node/{root}/nosuch/info"))
        .expect(400);
    srv.get(&format!("/api/node/{root}/kv/nosuchkeyword"))
        .expect(400);
}

#[test]
fn instance_help() {
    let srv = Server::start();
    let root = srv.create_repo("inst");
    srv.create_instance(&root, "keyvalue", "kv");
    let r = srv.get(&format!("/api/node/{root}/kv/help")).expect(200);
    assert!(!r.body.is_empty());
}

// ------------------------------------------------------------------ tags

#[test]
fn tags_at_creation_merge_and_replace() {
    let srv = Server::start();
    let root = srv.create_repo("tags");
    srv.create_instance_with(&root, "keyvalue", "kv", &json!({"Tags": "a=1,b=2"}));
    let url = format!("/api/node/{root}/kv/tags");
    assert_eq!(
        srv.get(&url).expect(200).json(),
        json!({"Tags": {"a": "1", "b": "2"}})
    );
    srv.post_json(&url, &json!({"b": "20", "c": "3"}))
        .expect(200);
    assert_eq!(
        srv.get(&url).expect(200).json(),
        json!({"Tags": {"a": "1", "b": "20", "c": "3"}})
    );
    srv.post_json(&format!("{url}?replace=true"), &json!({"z": "26"}))
        .expect(200);
    assert_eq!(
        srv.get(&url).expect(200).json(),
        json!({"Tags": {"z": "26"}})
    );
    let info = srv
        .get(&format!("/api/node/{root}/kv/info"))
        .expect(200)
        .json();
    assert_eq!(info["Base"]["Tags"], json!({"z": "26"}));
    srv.post_json(&format!("{url}?replace=true"), &json!({}))
        .expect(200);
    assert_eq!(srv.get(&url).expect(200).json(), json!({"Tags": {}}));
}

#[test]
fn malformed_tags_body_is_400_and_changes_nothing() {
    let srv = Server::start();
    let root = srv.create_repo("tags");
    srv.create_instance_with(&root, "keyvalue", "kv", &json!({"Tags": "a=1"}));
    let url = format!("/api/node/{root}/kv/tags");
    srv.post(&url, b"{not json".to_vec()).expect(400);
    assert_eq!(
        srv.get(&url).expect(200).json(),
        json!({"Tags": {"a": "1"}})
    );
}

// ------------------------------------------------------------------ sync

#[test]
fn keyvalue_cannot_sync() {
    let srv = Server::start();
    let root = srv.create_repo("sync");
    srv.create_instance(&root, "keyvalue", "a");
    srv.create_instance(&root, "keyvalue", "b");
    srv.post_json(&format!("/api/node/{root}/a/sync"), &json!({"sync": "b"}))
        .expect(400);
    srv.post_json(
        &format!("/api/node/{root}/a/sync"),
        &json!({"sync": "nosuch"}),
    )
    .expect(400);
    let info = srv
        .get(&format!("/api/node/{root}/a/info"))
        .expect(200)
        .json();
    assert_eq!(info["Base"]["Syncs"], json!([]));
}

// ------------------------------------------------------------------ blobstore

#[test]
fn blobstore_roundtrip() {
    let srv = Server::start();
    let root = srv.create_repo("blob");
    srv.create_instance(&root, "keyvalue", "kv");
    let payload: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    let r = srv
        .post(&format!("/api/node/{root}/kv/blobstore"), payload.clone())
        .expect(200);
    let v = r.json();
    let reference = v["reference"]
        .as_str()
        .unwrap_or_else(|| panic!("no reference in {v}"))
        .to_string();
    assert!(!reference.is_empty());
    r.expect_body(&format!("{{\"reference\": \"{reference}\"}}"));
    let got = srv
        .get(&format!("/api/node/{root}/kv/blobstore/{reference}"))
        .expect(200);
    assert_eq!(got.body, payload);
    assert_eq!(
        got.header("content-type").as_deref(),
        Some("application/octet-stream")
    );
    srv.get(&format!("/api/node/{root}/kv/blobstore/nosuchreference"))
        .expect(404);
}

#[test]
fn concurrent_creation_of_same_name_creates_one() {
    let srv = Server::start();
    let root = srv.create_repo("race");
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    srv.post_json(
                        &format!("/api/repo/{root}/instance"),
                        &json!({"typename": "keyvalue", "dataname": "same"}),
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
    assert_eq!(
        srv.repo_info(&root)["DataInstances"]
            .as_object()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn compression_and_checksum_settings() {
    let srv = Server::start();
    let root = srv.create_repo("comp");
    let value: Vec<u8> = b"compressible "
        .iter()
        .cycle()
        .take(100_000)
        .copied()
        .collect();
    for (i, (comp, sum)) in [
        ("none", "none"),
        ("snappy", "crc32"),
        ("lz4", "none"),
        ("gzip", "crc32"),
        ("gzip:9", "none"),
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("kv{i}");
        srv.create_instance_with(
            &root,
            "keyvalue",
            &name,
            &json!({"Compression": comp, "Checksum": sum}),
        );
        let info = srv
            .get(&format!("/api/node/{root}/{name}/info"))
            .expect(200)
            .json();
        assert!(info["Base"]["Compression"].is_string(), "{info}");
        srv.put_key(&root, &name, "k", &value);
        assert_eq!(
            srv.key_value(&root, &name, "k"),
            Some(value.clone()),
            "{comp}/{sum}"
        );
    }
}

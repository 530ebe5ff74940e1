//! Push and pull between two real servers (`tessera push`/`pull`): every selection reproduces
//! the sender's reads, a second transfer moves nothing, an interrupted one resumes, tampered
//! records are refused, diverged histories are refused unless told how, and a partial replica
//! answers 404 for what it lacks.

use std::process::Command;

use prost::Message;
use serde_json::{Value, json};
use tessera_tests::labels::*;
use tessera_tests::*;

const SIZE: [usize; 3] = [128, 64, 64];

/// Runs `tessera ARGS`; the JSON report on success, the error text otherwise.
fn tessera(args: &[&str]) -> Result<Value, String> {
    let out = Command::new(binary_path())
        .args(args)
        .output()
        .expect("run tessera");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("report {text:?}: {e}")))
}

fn push(from: &Server, to: &Server, repo: &str, extra: &[&str]) -> Result<Value, String> {
    let mut args = vec![
        "push",
        repo,
        "--from",
        from.base_url(),
        "--to",
        to.base_url(),
        "--quiet",
    ];
    args.extend_from_slice(extra);
    tessera(&args)
}

/// A repo on `srv`: root (committed) → n1 (committed) → n2 (open), with a keyvalue and a
/// labelmap (two levels) written, merged and deleted from along the way. Returns the nodes.
fn fixture(srv: &Server) -> [String; 3] {
    let root = srv.create_repo("shared");
    srv.create_instance(&root, "keyvalue", "kv");
    let seg = Seg::create(srv, &root, "seg", &standard_settings(1));
    seg.write(&noise_fixture(SIZE, 3, &[1, 2, 3, 4]));
    for i in 0..40 {
        srv.put_key(
            &root,
            "kv",
            &format!("k{i:02}"),
            format!("root {i}").as_bytes(),
        );
    }
    srv.commit(&root);
    let n1 = srv.newversion(&root);
    srv.put_key(&n1, "kv", "k01", b"changed in n1");
    srv.delete_key(&n1, "kv", "k02");
    seg.at(&n1).merge_ok(&[1, 2], "");
    srv.commit(&n1);
    let n2 = srv.newversion(&n1);
    srv.put_key(&n2, "kv", "new", &[7u8; 3000]);
    seg.at(&n2).merge_ok(&[3, 4], "");
    [root, n1, n2]
}

/// A label index, decoded (its encoding's map order is not fixed).
fn index(seg: &Seg, label: u64) -> String {
    let r = seg.get(&format!("index/{label}"));
    match r.status {
        404 => "absent".into(),
        _ => format!(
            "{:?}",
            proto::LabelIndex::decode(r.expect(200).body.as_slice()).expect("an index")
        ),
    }
}

fn mesh(seg: &Seg, label: u64) -> Vec<u8> {
    let r = seg.get(&format!("mesh/{label}?format=obj"));
    match r.status {
        404 => Vec::new(),
        _ => r.expect(200).body,
    }
}

/// Everything a client reads of the fixture at one node.
fn reads(srv: &Server, node: &str) -> Value {
    let seg = Seg::open(srv, node, "seg");
    let keys = srv.keys(node, "kv");
    let values: Vec<Option<Vec<u8>>> = keys.iter().map(|k| srv.key_value(node, "kv", k)).collect();
    json!({
        "keys": keys,
        "values": values,
        "sv": seg.raw([0; 3], SIZE, "supervoxels=true").data,
        "bodies": seg.raw([0; 3], SIZE, "").data,
        "scale1": seg.raw([0; 3], [64, 32, 32], "scale=1").data,
        "mappings": seg.mappings(),
        "index1": index(&seg, 1),
        "index3": index(&seg, 3),
        "mutations": seg.get("mutations").json(),
        "maxlabel": seg.maxlabel(),
        "mesh1": mesh(&seg, 1),
    })
}

/// Asserts two `reads` agree, naming the fields that differ (not printing the volumes).
#[track_caller]
fn assert_same(want: &Value, got: &Value, what: &str) {
    let differ: Vec<&String> = want
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, v)| got.get(k.as_str()) != Some(v))
        .map(|(k, _)| k)
        .collect();
    let show: Vec<String> = differ
        .iter()
        .map(|k| {
            let (w, g) = (want[k.as_str()].to_string(), got[k.as_str()].to_string());
            format!(
                "{k}: {} vs {}",
                &w[..w.len().min(300)],
                &g[..g.len().min(300)]
            )
        })
        .collect();
    assert!(differ.is_empty(), "{what}: {show:?}");
}

fn dag(srv: &Server, node: &str) -> Value {
    let info = srv.repo_info(node);
    let nodes = info["DAG"]["Nodes"].as_object().unwrap();
    let mut out: Vec<Value> = nodes
        .values()
        .map(|n| {
            json!([
                n["UUID"],
                n["Locked"],
                n["Parents"].as_array().unwrap().len(),
                n["Note"]
            ])
        })
        .collect();
    out.sort_by_key(|v| v[0].to_string());
    json!(out)
}

#[test]
fn every_selection_reproduces_the_senders_reads_and_a_second_push_moves_nothing() {
    let a = Server::start();
    let [root, n1, n2] = fixture(&a);

    // all: every node, every read, the same DAG.
    let b = Server::start();
    let r = push(&a, &b, &root, &[]).unwrap();
    assert_eq!(r["root"], json!(root));
    assert_eq!(r["new_nodes"], json!(3));
    assert!(r["records_sent"].as_u64().unwrap() > 40, "{r}");
    assert_eq!(dag(&a, &root), dag(&b, &root));
    for (i, node) in [&root, &n1, &n2].into_iter().enumerate() {
        assert_same(&reads(&a, node), &reads(&b, node), &format!("node {i}"));
    }
    let again = push(&a, &b, &root, &[]).unwrap();
    assert_eq!(again["records_sent"], json!(0), "{again}");
    assert_eq!(again["groups_differing"], json!(0), "{again}");
    // After more edits at the open node only the changes move.
    a.put_key(&n2, "kv", "later", b"after the first push");
    Seg::open(&a, &n2, "seg").merge_ok(&[1, 3], "");
    let more = push(&a, &b, &root, &[]).unwrap();
    let sent = more["bytes_sent"].as_u64().unwrap();
    assert!(
        sent > 0 && sent * 4 < r["bytes_sent"].as_u64().unwrap(),
        "{more} vs {r}"
    );
    assert_same(
        &reads(&a, &n2),
        &reads(&b, &n2),
        "after the incremental push",
    );

    // branch: n1 and its ancestors, nothing of n2.
    let c = Server::start();
    push(&a, &c, &n1, &["--transmit", "branch"]).unwrap();
    assert_eq!(c.node_count(&root), 2);
    c.get(&format!("/api/node/{n2}/kv/keys")).expect_4xx();
    assert_same(&reads(&a, &n1), &reads(&c, &n1), "branch");

    // flatten: n2's view as the root of a new repo, history dropped; pulled this time.
    let d = Server::start();
    let f = tessera(&[
        "pull",
        &n2,
        "--from",
        a.base_url(),
        "--to",
        d.base_url(),
        "--transmit",
        "flatten",
        "--quiet",
    ])
    .unwrap();
    assert_eq!(f["root"], json!(n2));
    assert_eq!(d.node_count(&n2), 1);
    let (mut want, mut got) = (reads(&a, &n2), reads(&d, &n2));
    // The log is history: a flattened repo starts without one.
    assert_eq!(got["mutations"], json!([]));
    want["mutations"] = Value::Null;
    got["mutations"] = Value::Null;
    assert_same(&want, &got, "flatten");

    // data filter: only the keyvalue.
    let e = Server::start();
    push(&a, &e, &root, &["--data", "kv"]).unwrap();
    let names = e.repo_info(&root)["DataInstances"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect::<Vec<_>>();
    assert_eq!(names, vec!["kv".to_string()]);
    assert_eq!(e.keys(&n2, "kv"), a.keys(&n2, "kv"));
    // What was left out answers 404, naming it.
    let r = e.get(&format!("/api/node/{n2}/seg/maxlabel"));
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.text().contains("not held on this server"), "{}", r.text());
    e.get(&format!("/api/node/{n2}/nothing/maxlabel"))
        .expect(400);
}

/// The transfer requests the CLI makes, for steering a transfer by hand.
fn call(srv: &Server, path: &str, body: Value) -> Value {
    srv.post_json(path, &body).expect(200).json()
}

#[test]
fn an_interrupted_transfer_resumes_and_tampered_records_are_refused() {
    let a = Server::start();
    let root = a.create_repo("big");
    a.create_instance(&root, "keyvalue", "kv");
    for i in 0..600 {
        a.put_key(
            &root,
            "kv",
            &format!("k{i:04}"),
            &vec![(i % 251) as u8; 1000 + i],
        );
    }
    let mut b = Server::start();
    let sel = json!({});
    let ex = |step: &str| format!("/api/repo/{root}/export/{step}");
    let im = |step: &str| format!("/api/repo/{root}/import/{step}");
    let manifest = call(&a, &ex("manifest"), json!({ "selection": sel }));
    assert!(manifest["records"].as_u64().unwrap() >= 600);
    call(&b, &im("begin"), json!({ "manifest": manifest }));
    // The first page's first group arrives, then the receiver dies.
    let page = call(&a, &ex("groups"), json!({ "selection": sel }));
    let first = &page["groups"][0];
    let headers = call(
        &a,
        &ex("list"),
        json!({ "selection": sel, "groups": [first] }),
    );
    let ids: Vec<Value> = headers
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].clone())
        .collect();
    let frames = a
        .post_json(&ex("fetch"), &json!({ "selection": sel, "records": ids }))
        .expect(200)
        .body;

    // A tampered record (one value byte changed, its hash kept) refuses the whole body.
    let mut bad = frames.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let r = b.post(&im("records"), bad).expect(400);
    assert!(r.text().contains("does not match its hash"), "{}", r.text());
    let m = call(&b, &im("missing"), json!({ "headers": headers }));
    assert_eq!(
        m["missing"].as_array().unwrap().len(),
        ids.len(),
        "nothing was written"
    );
    // A truncated body too.
    b.post(&im("records"), frames[..frames.len() - 3].to_vec())
        .expect(400);

    b.post(&im("records"), frames.clone()).expect(200);
    b.kill();
    b.start_again();
    // Staged, not finished: the instance answers 503 rather than a partial answer.
    let r = b.get(&format!("/api/node/{root}/kv/key/k0000"));
    assert_eq!(r.status, 503, "{}", r.text());

    let done = push(&a, &b, &root, &[]).unwrap();
    let total = manifest["records"].as_u64().unwrap();
    assert_eq!(
        done["records_sent"].as_u64().unwrap(),
        total - ids.len() as u64,
        "{done}"
    );
    assert_eq!(b.keys(&root, "kv"), a.keys(&root, "kv"));
    assert_eq!(
        b.key_value(&root, "kv", "k0599"),
        a.key_value(&root, "kv", "k0599")
    );
}

#[test]
fn diverged_histories_are_refused_unless_the_senders_nodes_get_a_new_branch() {
    let a = Server::start();
    let [root, n1, n2] = fixture(&a);
    let b = Server::start();
    push(&a, &b, &root, &["--data", "kv"]).unwrap();

    // Both sides extend master from n1's child... n2 is open on both: written on b, it is b's.
    b.put_key(&n2, "kv", "local", b"written on b");
    let err = push(&a, &b, &root, &["--data", "kv"]).unwrap_err();
    assert!(err.contains("409") && err.contains(&n2), "{err}");

    // A node b made under committed n1 on master, and a node a made there too.
    let c = Server::start();
    a.commit(&n2);
    push(&a, &c, &root, &["--data", "kv"]).unwrap();
    let mine = c.newversion(&n2);
    c.put_key(&mine, "kv", "c", b"c's own");
    let theirs = a.newversion(&n2);
    a.put_key(&theirs, "kv", "a", b"a's own");
    let err = push(&a, &c, &root, &["--data", "kv"]).unwrap_err();
    assert!(err.contains("409") && err.contains("branch"), "{err}");
    push(&a, &c, &root, &["--data", "kv", "--new-branch", "from-a"]).unwrap();
    assert_eq!(
        c.key_value(&theirs, "kv", "a").as_deref(),
        Some(&b"a's own"[..])
    );
    assert_eq!(
        c.key_value(&mine, "kv", "c").as_deref(),
        Some(&b"c's own"[..])
    );
    assert_eq!(c.node_info(&theirs)["Branch"], json!("from-a"));
    let _ = n1;
}

#[test]
fn a_partial_replica_answers_what_it_holds_and_names_what_it_lacks() {
    let a = Server::start();
    let root = a.create_repo("part");
    let seg = Seg::create(&a, &root, "seg", &standard_settings(1));
    let vol = noise_fixture(SIZE, 3, &[5, 6]);
    seg.write(&vol);
    let b = Server::start();
    let r = push(
        &a,
        &b,
        &root,
        &["--box", "0,0,0,64,64,64", "--max-scale", "0"],
    )
    .unwrap();
    assert!(r["records_sent"].as_u64().unwrap() > 0);
    let mine = Seg::open(&b, &root, "seg");
    assert_eq!(
        mine.raw([0; 3], [64; 3], "supervoxels=true"),
        seg.raw([0; 3], [64; 3], "supervoxels=true")
    );
    for path in [
        "raw/0_1_2/64_64_64/64_0_0",
        "raw/0_1_2/32_32_32/0_0_0?scale=1",
    ] {
        let r = mine.get(path);
        assert_eq!(r.status, 404, "{path}: {}", r.text());
        assert!(r.text().contains("holds only part"), "{}", r.text());
    }
    // Pulling the rest makes it whole.
    push(&a, &b, &root, &[]).unwrap();
    assert_eq!(mine.raw([0; 3], SIZE, ""), seg.raw([0; 3], SIZE, ""));
}

#[test]
fn a_server_with_an_admin_token_takes_transfers_only_with_it() {
    let a = Server::start();
    let root = a.create_repo("guarded");
    a.create_instance(&root, "keyvalue", "kv");
    a.put_key(&root, "kv", "x", b"1");
    let b = Server::builder()
        .env("DVID_ADMIN_TOKEN", "sesame")
        .admin_token("sesame")
        .start();
    let err = push(&a, &b, &root, &[]).unwrap_err();
    assert!(err.contains("401"), "{err}");
    push(&a, &b, &root, &["--to-token", "sesame"]).unwrap();
    assert_eq!(b.key_value(&root, "kv", "x").as_deref(), Some(&b"1"[..]));
}

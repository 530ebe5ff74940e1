//! Bad input over HTTP, as a table: every write route of every datatype gets malformed bodies
//! (truncated, wrong lengths, wrong JSON types, out-of-range coordinates, label 0 and 2^64−1
//! where they are not allowed), bad paths and bad query values. Each must answer a 4xx with a
//! message, and afterwards the stores must be byte-identical to before (`tessera store
//! digest` of the stopped server, before and after). Unknown query parameters are ignored, as
//! DVID ignores them; known ones are checked.

use std::process::Command;

use tessera_tests::labels::*;
use tessera_tests::*;

const MAX: &str = "18446744073709551615";

/// `(method, path under /api/node/<root>/ unless it starts with /, body)`.
type Case = (&'static str, String, Vec<u8>);

fn cases() -> Vec<Case> {
    let mut t: Vec<Case> = Vec::new();
    let mut add = |m: &'static str, p: &str, b: &[u8]| t.push((m, p.to_string(), b.to_vec()));
    // ---- labelmap `seg` (supervoxels 1, 2, 13, 209, 311 of the spec cubes; 128³)
    for body in [
        &b""[..],
        b"[",
        b"[1, 2",
        b"{}",
        b"[]",
        b"[1]",
        b"[1, \"2\"]",
        b"[1.5, 2]",
        b"[-1, 2]",
        b"[0, 2]",
        b"[1, 0]",
        b"[1, 424242]",
        b"[1, 18446744073709551615]",
        b"[1, 18446744073709551616]",
        b"[1, 1]",
        b"[[1], [2]]",
        b"null",
    ] {
        add("POST", "seg/merge", body);
    }
    for (path, body) in [
        ("seg/cleave/1", &b""[..]),
        ("seg/cleave/1", b"[2"),
        ("seg/cleave/1", b"{\"a\": 2}"),
        ("seg/cleave/1", b"[\"2\"]"),
        ("seg/cleave/1", b"[0]"),
        ("seg/cleave/1", b"[424242]"),
        ("seg/cleave/1", b"[13]"),
        ("seg/cleave/0", b"[2]"),
        ("seg/cleave/abc", b"[2]"),
        ("seg/cleave/424242", b"[2]"),
        ("seg/cleave/18446744073709551616", b"[2]"),
        ("seg/cleave", b"[2]"),
    ] {
        add("POST", path, body);
    }
    // split and split-supervoxel: DVID's RLE bodies (u8 0, u8 3, u8 0, u8 0, u32 0, u32 n,
    // then n × (i32 x, y, z, length))
    let rle = |n: u32, runs: &[[i32; 4]]| {
        let mut b = vec![0u8, 3, 0, 0];
        b.extend(0u32.to_le_bytes());
        b.extend(n.to_le_bytes());
        for r in runs {
            for v in r {
                b.extend(v.to_le_bytes());
            }
        }
        b
    };
    let good_run = [[1, 1, 1, 4]];
    let bodies: Vec<Vec<u8>> = vec![
        vec![],
        rle(1, &good_run)[..10].to_vec(),
        rle(2, &good_run),
        rle(1, &good_run)[..20].to_vec(),
        rle(1, &[[500, 1, 1, 4]]),
        rle(1, &[[1, 1, 1, 0]]),
        rle(1, &[[1, 1, 1, -3]]),
        rle(1, &[[i32::MAX, 1, 1, 4]]),
        rle(u32::MAX, &good_run),
        {
            let mut b = rle(1, &good_run);
            b[1] = 9;
            b
        },
    ];
    for b in &bodies {
        add("POST", "seg/split/1", b);
        add("POST", "seg/split-supervoxel/1", b);
    }
    add("POST", "seg/split/0", &rle(1, &good_run));
    add("POST", &format!("seg/split/{MAX}"), &rle(1, &good_run));
    add("POST", "seg/split-supervoxel/0", &rle(1, &good_run));
    add(
        "POST",
        "seg/split-supervoxel/1?downres=maybe",
        &rle(1, &good_run),
    );
    add("POST", "seg/split-supervoxel/1?split=0", &rle(1, &good_run));
    add(
        "POST",
        &format!("seg/split-supervoxel/1?remain={MAX}"),
        &rle(1, &good_run),
    );
    add("POST", "seg/split-supervoxel/xyz", &rle(1, &good_run));
    // raw voxel posts: wrong length, unaligned, bad shapes, bad coordinates, bad queries
    let block = vec![0u8; 64 * 64 * 64 * 8];
    for (path, body) in [
        ("seg/raw/0_1_2/64_64_64/0_0_0", &block[..100]),
        ("seg/raw/0_1_2/64_64_64/0_0_0", &block[..block.len() - 8]),
        ("seg/raw/0_1_2/64_64_64/1_0_0", &block[..]),
        ("seg/raw/0_1_2/64_64_0/0_0_0", &[][..]),
        ("seg/raw/0_1_2/64_64_-64/0_0_0", &block[..]),
        ("seg/raw/0_1_2/64_64/0_0_0", &block[..]),
        ("seg/raw/0_1/64_64_64/0_0_0", &block[..]),
        ("seg/raw/0_1_2/64_64_64/a_b_c", &block[..]),
        ("seg/raw/0_1_2/64_64_64/0_0_2147483647", &block[..]),
        ("seg/raw/0_0_2/64_64_64/0_0_0", &block[..]),
        ("seg/raw/0_1_2/64_64_64/0_0_0?scale=abc", &block[..]),
        ("seg/raw/0_1_2/64_64_64/0_0_0?compression=bogus", &block[..]),
        ("seg/raw/0_1_2/64_64_64/0_0_0?scale=9", &block[..]),
    ] {
        add("POST", path, body);
    }
    // block streams: truncated header, a length past the end, a corrupt compressed block
    let mut bad_block = Vec::new();
    for v in [0i32, 0, 0, 12] {
        bad_block.extend(v.to_le_bytes());
    }
    bad_block.extend([1u8; 12]);
    let mut long_len = Vec::new();
    for v in [0i32, 0, 0, 1 << 30] {
        long_len.extend(v.to_le_bytes());
    }
    for body in [
        &b"\x00\x00\x00"[..],
        &bad_block,
        &long_len,
        &bad_block[..14],
    ] {
        add("POST", "seg/blocks", body);
        add("POST", "seg/blocks?compression=gzip", body);
    }
    add("POST", "seg/blocks?compression=bogus", &bad_block);
    // mappings, label indices, renumbering, label counters
    for body in [&b"\x0a\x05\x08\x01"[..], b"\xff\xff\xff", b"\x0a"] {
        add("POST", "seg/mapping", body);
        add("POST", "seg/indices", body);
    }
    for body in [
        &b"{"[..],
        b"[1, 2, 3]",
        b"{\"1\": \"x\"}",
        b"[[1, 0]]",
        b"[\"a\", \"b\"]",
    ] {
        add("POST", "seg/renumber", body);
    }
    add("POST", "seg/nextlabel/abc", b"");
    add("POST", "seg/nextlabel/0", b"");
    add("POST", &format!("seg/nextlabel/{MAX}"), b"");
    add("POST", "seg/unknownkeyword", b"[1, 2]");
    add("DELETE", "seg/merge", b"");
    // ---- grayscale `gray` (uint8blk, 64³ blocks)
    let gray = vec![0u8; 64 * 64 * 64];
    for path in [
        "gray/raw/0_1_2/64_64_64/0_0_0",
        "gray/raw/0_1_2/64_64_64/3_0_0",
        "gray/raw/0_1_2/64_64/0_0_0",
        "gray/raw/0_1_2/64_64_64/x_0_0",
    ] {
        let body = if path.ends_with("0_0_0") {
            &gray[..4096]
        } else {
            &gray[..]
        };
        add("POST", path, body);
    }
    add("POST", "gray/blocks", &bad_block[..14]);
    // ---- keyvalue `kv`
    for body in [
        &b"\x0a\x03\x0a"[..],
        b"\xff\xff",
        b"\x0a\x05\x0a\x01a\x12\x05x",
    ] {
        add("POST", "kv/keyvalues", body);
    }
    add("POST", "kv/key/", b"x");
    add("POST", "kv/key", b"x");
    add("DELETE", "kv/key/", b"");
    add("POST", "kv/keys", b"[]");
    // ---- annotation `syn` (synced to seg)
    for body in [
        &b"["[..],
        b"{}",
        b"[{\"Pos\": [1, 2]}]",
        b"[{\"Pos\": \"1,2,3\", \"Kind\": \"PreSyn\"}]",
        b"[{\"Pos\": [1, 2, 3], \"Kind\": \"Bogus\"}]",
        b"[{\"Pos\": [1, 2, 3], \"Kind\": \"PreSyn\", \"Rels\": [{\"Rel\": \"PreSynTo\", \"To\": [1, 2]}]}]",
        b"[{\"Pos\": [1, 2, 3], \"Kind\": \"PreSyn\", \"Tags\": \"t\"}]",
        b"[{\"Pos\": [1, 2, 2147483648], \"Kind\": \"PreSyn\"}]",
        b"[{\"Pos\": [1, 2, 3], \"Kind\": \"PreSyn\"}, 5]",
    ] {
        add("POST", "syn/elements", body);
    }
    add("POST", "syn/move/1_2_3/4_5", b"");
    add("POST", "syn/move/1_2_3/a_b_c", b"");
    add("POST", "syn/move/9_9_9/4_5_6", b"");
    add("DELETE", "syn/element/1_2", b"");
    add("DELETE", "syn/element/9_9_9", b"");
    add("POST", "syn/blocks", b"{\"0,0\": []}");
    add("POST", "syn/blocks", b"[");
    // ---- roi `roi`
    for body in [
        &b"["[..],
        b"[[1, 2, 3]]",
        b"[[0, 0, 5, 2]]",
        b"[[\"0\", 0, 0, 1]]",
        b"{\"spans\": []}",
        b"[[0, 0, 0, 2147483648]]",
    ] {
        add("POST", "roi/roi", body);
    }
    // ---- neuronjson `nj`
    add("POST", "nj/key/12", b"{\"a\": 2}"); // no user (u=)
    add("POST", "nj/key/abc?u=alice", b"{\"a\": 1}");
    add("POST", "nj/key/0?u=alice", b"{\"a\": 1}");
    add("POST", "nj/key/12?u=alice", b"{");
    add("POST", "nj/key/12?u=alice", b"[1, 2]");
    add("POST", "nj/key/12?u=alice", b"\"text\"");
    add("POST", "nj/keyvalues?u=alice", b"{\"12\": [1]}");
    add("POST", "nj/keyvalues?u=alice", b"{\"x\": {}}");
    add("POST", "nj/json_schema?u=alice", b"{");
    // ---- tarsupervoxels `tsv` (synced to seg)
    add("POST", "tsv/load", b"definitely not a tar archive");
    add("POST", "tsv/load", &tar_with("abc.drc", b"x"));
    add("POST", "tsv/load", &tar_with("0.drc", b"x"));
    add("POST", "tsv/supervoxel/abc", b"x");
    add("POST", "tsv/supervoxel/0", b"x");
    // ---- repo and node operations, bad paths
    for (path, body) in [
        ("/api/repos", &b"{\"alias\": 5}"[..]),
        ("/api/repos", b"{\"root\": \"not-a-uuid\"}"),
        (
            "/api/repo/{root}/instance",
            b"{\"typename\": \"nosuchtype\", \"dataname\": \"x\"}",
        ),
        ("/api/repo/{root}/instance", b"{\"typename\": \"keyvalue\"}"),
        (
            "/api/repo/{root}/instance",
            b"{\"typename\": \"keyvalue\", \"dataname\": \"kv\"}",
        ),
        (
            "/api/repo/{root}/instance",
            b"{\"typename\": 5, \"dataname\": \"y\"}",
        ),
        (
            "/api/repo/{root}/instance",
            b"{\"typename\": \"labelmap\", \"dataname\": \"y\", \"BlockSize\": \"0,0,0\"}",
        ),
        ("/api/repo/{root}/info", b"{\"alias\": [1]}"),
        (
            "/api/repo/{root}/merge",
            b"{\"parents\": [\"nope\"], \"note\": \"x\"}",
        ),
        ("/api/repo/{root}/merge", b"{\"parents\": 5}"),
        ("commit", b"{\"note\": 5}"),
        ("branch", b"{}"),
        ("branch", b"{\"branch\": 5}"),
        ("branch", b"{\"branch\": \"master\"}"),
        ("newversion", b"{\"uuid\": \"xyz\"}"),
        ("newversion", b"{\"note\": [1]}"),
        ("tag", b"{\"tag\": 5}"),
        ("note", b"{\"note\": 5}"),
        ("log", b"{\"log\": \"not a list\"}"),
        ("nosuchinstance/key/a", b"x"),
    ] {
        add("POST", path, body);
    }
    add(
        "POST",
        "/api/node/ffffffffffffffffffffffffffffffff/kv/key/a",
        b"x",
    );
    add("POST", "/api/node/{root}:nosuchbranch/kv/key/a", b"x");
    add("POST", "/api/node/%zz/kv/key/a", b"x");
    add("DELETE", "/api/repo/{root}/nosuchinstance?imsure=true", b"");
    add("DELETE", "/api/repo/{root}/kv", b"");
    t
}

fn tar_with(name: &str, data: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, name, data).unwrap();
    b.into_inner().unwrap()
}

fn setup(srv: &Server) -> String {
    let root = srv.create_repo("bad");
    srv.create_instance(&root, "keyvalue", "kv");
    srv.put_key(&root, "kv", "a", b"1");
    let seg = Seg::create(srv, &root, "seg", &standard_settings(1));
    seg.write(&spec_cubes_fixture());
    seg.merge_ok(&[1, 2], "");
    srv.create_instance(&root, "uint8blk", "gray");
    srv.post(
        &format!("/api/node/{root}/gray/raw/0_1_2/64_64_64/0_0_0"),
        vec![9u8; 64 * 64 * 64],
    )
    .expect(200);
    srv.create_instance(&root, "annotation", "syn");
    srv.post_json(
        &format!("/api/node/{root}/syn/sync"),
        &json!({"sync": "seg"}),
    )
    .expect(200);
    srv.post_json(
        &format!("/api/node/{root}/syn/elements"),
        &json!([{"Pos": [1, 2, 3], "Kind": "PreSyn", "Tags": [], "Prop": {}, "Rels": []}]),
    )
    .expect(200);
    srv.create_instance(&root, "roi", "roi");
    srv.post_json(&format!("/api/node/{root}/roi/roi"), &json!([[0, 0, 0, 1]]))
        .expect(200);
    srv.create_instance(&root, "neuronjson", "nj");
    srv.post_json(
        &format!("/api/node/{root}/nj/key/12?u=alice"),
        &json!({"bodyid": 12, "a": 1}),
    )
    .expect(200);
    srv.create_instance_with(&root, "tarsupervoxels", "tsv", &json!({"Extension": "drc"}));
    srv.post_json(
        &format!("/api/node/{root}/tsv/sync"),
        &json!({"sync": "seg"}),
    )
    .expect(200);
    srv.post(
        &format!("/api/node/{root}/tsv/supervoxel/13"),
        b"mesh".to_vec(),
    )
    .expect(200);
    let s = srv.get("/api/server/sync?wait=120").expect(200).json();
    assert_eq!(s["CaughtUp"], json!(true), "sync not caught up: {s}");
    root
}

/// `tessera store digest` of the stopped server's data.
fn digest(srv: &Server) -> String {
    let out = Command::new(binary_path())
        .args(["store", "digest", "--keys", "--data"])
        .arg(srv.data_dir())
        .output()
        .expect("tessera store digest");
    assert!(
        out.status.success(),
        "store digest failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Sends `cases`; returns the ones not answered with a 4xx and a message.
fn send(srv: &Server, root: &str, cases: &[&Case]) -> Vec<String> {
    let mut failures = Vec::new();
    for (method, path, body) in cases {
        let path = path.replace("{root}", root);
        let url = if path.starts_with('/') {
            path.clone()
        } else {
            format!("/api/node/{root}/{path}")
        };
        let r = match *method {
            "POST" => srv.post(&url, body.clone()),
            "DELETE" => srv.delete(&url),
            m => panic!("method {m}"),
        };
        if !(400..500).contains(&r.status) || r.body.is_empty() {
            failures.push(format!(
                "{method} {url} ({} bytes): {} {:?}",
                body.len(),
                r.status,
                r.text().chars().take(200).collect::<String>()
            ));
        }
    }
    let s = srv.get("/api/server/sync?wait=120").expect(200).json();
    assert_eq!(s["CaughtUp"], json!(true), "sync not caught up: {s}");
    failures
}

/// The lines of `after` (store, key, value hash) that `before` does not have, and the number
/// of keys gone.
fn changes(before: &str, after: &str) -> (Vec<String>, usize) {
    let changed = after
        .lines()
        .filter(|l| !before.lines().any(|b| b == *l))
        .map(str::to_string)
        .collect();
    let gone = before
        .lines()
        .filter(|l| l.split(' ').count() == 3)
        .filter(|l| {
            let key = l.split(' ').nth(1);
            !after.lines().any(|a| a.split(' ').nth(1) == key)
        })
        .count();
    (changed, gone)
}

/// Labelmap writes DVID counts as mutations even when they fail (spec §1.5): a well-formed
/// edit that is refused (a label that does not exist, a supervoxel outside the body) consumes
/// a mutation id, and a refused cleave a new label; malformed edits take neither. Voxel posts
/// take their id before the body streams in, so a short body is found after it.
fn takes_mutation_id(path: &str) -> bool {
    [
        "merge",
        "cleave",
        "split",
        "split-supervoxel",
        "renumber",
        "raw",
        "blocks",
    ]
    .iter()
    .any(|k| path.starts_with(&format!("seg/{k}")))
}

#[test]
fn every_write_route_refuses_bad_input_with_a_4xx_and_writes_nothing() {
    let mut srv = Server::start();
    let root = setup(&srv);
    // What clients read, less the counters refused labelmap mutations move.
    let seg_state = |srv: &Server| {
        let seg = Seg::open(srv, &root, "seg");
        let mut info = srv.repo_info(&root);
        for counter in ["MutationID", "SavedMutationID"] {
            info.as_object_mut().unwrap().remove(counter);
        }
        let ext = &mut info["DataInstances"]["seg"]["Extended"];
        for counter in ["MaxLabel", "MaxRepoLabel"] {
            ext.as_object_mut().unwrap().remove(counter);
        }
        (
            seg.mappings(),
            seg.get("mutations").expect(200).json(),
            info,
        )
    };
    srv.restart();
    let all = cases();
    let (others, edits): (Vec<&Case>, Vec<&Case>) =
        all.iter().partition(|(_, p, _)| !takes_mutation_id(p));
    // Everything else: not one byte may change.
    srv.stop();
    let before = digest(&srv);
    srv.start_again();
    let mut failures = send(&srv, &root, &others);
    srv.stop();
    let after = digest(&srv);
    let (changed, gone) = changes(&before, &after);
    assert!(
        changed.is_empty() && gone == 0,
        "refused requests changed the stores ({gone} keys gone); keys now different or new:\n{}",
        changed.join("\n")
    );
    // Labelmap mutations: only the repo's mutation-id reservation (`0x00 "repo" 0x00 ‖ root`) and
    // the labelmap's label counter (instance 2, type key 0xed) may move.
    srv.start_again();
    let state = seg_state(&srv);
    failures.extend(send(&srv, &root, &edits));
    assert_eq!(
        seg_state(&srv),
        state,
        "refused edits changed what clients read"
    );
    check_consistency(&Seg::open(&srv, &root, "seg"), [128; 3], 1);
    srv.stop();
    let last = digest(&srv);
    let (changed, gone) = changes(&after, &last);
    let unexpected: Vec<&String> = changed
        .iter()
        .filter(|l| !l.starts_with("{"))
        .filter(|l| {
            let key = l.split(' ').nth(1).unwrap_or_default();
            !key.starts_with("007265706f00") && !key.starts_with("0100000002ed")
        })
        .collect();
    assert!(
        unexpected.is_empty() && gone == 0,
        "refused edits changed more than the id and label counters ({gone} keys gone):\n{unexpected:?}"
    );
    println!(
        "bad-input table: {} requests ({} labelmap mutations), {} not a 4xx with a message, \
         store unchanged but for {} counter keys",
        others.len() + edits.len(),
        edits.len(),
        failures.len(),
        changed.iter().filter(|l| !l.starts_with('{')).count()
    );
    assert!(
        failures.is_empty(),
        "requests not refused with a 4xx and a message:\n{}",
        failures.join("\n")
    );
}

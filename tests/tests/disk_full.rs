//! A store that runs out of space (injected with `TESSERA_FAULT_DISK_FULL`, which makes every
//! write fail as ENOSPC does while a file exists): writes are refused with 507 and a message,
//! reads go on, nothing of a refused write is visible once space returns, and writes work again.

use tessera_tests::labels::*;
use tessera_tests::*;

const SIZE: [usize; 3] = [128; 3];
const LEVELS: usize = 1;

#[derive(Debug, PartialEq)]
struct Seen {
    sv: Volume,
    mapped: Volume,
    mappings: std::collections::BTreeMap<u64, u64>,
    log: Value,
    keys: Vec<String>,
    a: Option<Vec<u8>>,
    nodes: usize,
}

fn seen(srv: &Server, seg: &Seg, root: &str) -> Seen {
    Seen {
        sv: seg.raw([0; 3], SIZE, "supervoxels=true"),
        mapped: seg.raw([0; 3], SIZE, ""),
        mappings: seg.mappings(),
        log: seg.get("mutations").expect(200).json(),
        keys: srv.keys(root, "kv"),
        a: srv.key_value(root, "kv", "a"),
        nodes: srv.node_count(root),
    }
}

#[test]
fn a_full_disk_refuses_writes_whole_and_keeps_reads() {
    let dir = tempfile::tempdir().unwrap();
    let switch = dir.path().join("disk-full");
    let srv = Server::builder()
        .env("TESSERA_FAULT_DISK_FULL", switch.to_str().unwrap())
        .start();
    let root = srv.create_repo("full");
    srv.create_instance(&root, "keyvalue", "kv");
    let seg = Seg::create(&srv, &root, "seg", &standard_settings(LEVELS as u32));
    seg.write(&spec_cubes_fixture());
    srv.put_key(&root, "kv", "a", b"1");
    seg.merge_ok(&[1, 2], "");
    let before = seen(&srv, &seg, &root);

    std::fs::write(&switch, b"").unwrap();
    let refused = [
        srv.post(&format!("/api/node/{root}/kv/key/b"), b"2".to_vec()),
        srv.delete(&format!("/api/node/{root}/kv/key/a")),
        seg.merge(&[13, 209], ""),
        seg.cleave(1, &[2], ""),
        seg.post_raw(&noise_fixture(SIZE, 7, &[5, 6, 7]), ""),
        srv.post(&format!("/api/node/{root}/commit"), b"{}".to_vec()),
        srv.post_json(
            &format!("/api/repo/{root}/instance"),
            &json!({"typename": "keyvalue", "dataname": "kv2"}),
        ),
    ];
    for r in refused {
        assert_eq!(r.status, 507, "{}: {}", r.what, r.text());
        assert!(
            r.text().contains("out of space"),
            "{}: the message names the problem: {}",
            r.what,
            r.text()
        );
    }
    // Reads go on, and see nothing of the refused writes.
    assert_eq!(seen(&srv, &seg, &root), before);
    assert_eq!(srv.get("/api/server/info").status, 200);

    std::fs::remove_file(&switch).unwrap();
    // Nothing half-written is visible once space returns ...
    assert_eq!(seen(&srv, &seg, &root), before);
    assert!(srv.repo_info(&root)["DataInstances"].get("kv2").is_none());
    check_consistency(&seg, SIZE, LEVELS);
    // ... and writes work again.
    seg.merge_ok(&[13, 209], "");
    srv.put_key(&root, "kv", "b", b"2");
    assert_eq!(srv.key_value(&root, "kv", "b").as_deref(), Some(&b"2"[..]));
    check_consistency(&seg, SIZE, LEVELS);
    srv.commit(&root);
}

//! Blocks on a real S3 server (SeaweedFS on loopback): a labelmap placed on a store whose
//! blocks are content-addressed objects, with its keys, label index and mapping in a local
//! RocksDB, and a keyvalue on a plain local store. Proofreading, restarts, the object
//! collection, and an outage of the object store while clients write.

use tessera_tests::labels::*;
use tessera_tests::seaweed::Seaweed;
use tessera_tests::*;

const SIZE: [usize; 3] = [128; 3];
const LEVELS: usize = 1;

/// Two stores: `local` (the default: metadata, keyvalue) and `s3` (labelmap instances; blocks
/// as objects under `prefix`). No object cache, so every block read is a request.
fn config(weed: &Seaweed, prefix: &str) -> String {
    stores(weed, prefix) + "\n[backend.labelmap]\nstore = \"s3\"\n"
}

/// The two stores, everything placed on `local`.
fn stores(weed: &Seaweed, prefix: &str) -> String {
    format!(
        r#"
[store.local]
engine = "rocksdb"
path = "{{dir}}/local"

[store.s3]
engine = "rocksdb"
path = "{{dir}}/s3-keys"
objects = "{url}"
object_cache_mb = 0
object_retry_secs = 1

[store.s3.object_options]
{options}
[backend.default]
store = "local"
"#,
        url = weed.url(prefix),
        options = weed.options_toml()
    )
}

#[derive(Debug, PartialEq)]
struct Seen {
    sv: Volume,
    mapped: Volume,
    scale1: Volume,
    mappings: std::collections::BTreeMap<u64, u64>,
    a: Option<Vec<u8>>,
}

fn seen(srv: &Server, seg: &Seg, root: &str) -> Seen {
    Seen {
        sv: seg.raw([0; 3], SIZE, "supervoxels=true"),
        mapped: seg.raw([0; 3], SIZE, ""),
        scale1: seg.raw([0; 3], [64; 3], "scale=1"),
        mappings: seg.mappings(),
        a: srv.key_value(root, "kv", "a"),
    }
}

fn gc(srv: &Server, grace: &str) -> Value {
    srv.post(&format!("/api/server/gc?grace={grace}"), Vec::new())
        .expect(200)
        .json()["s3"]
        .clone()
}

#[test]
fn a_labelmap_with_blocks_on_s3_is_proofread_collected_and_read_back_after_restarts() {
    let weed = Seaweed::start();
    let mut srv = Server::builder()
        .config(&config(&weed, "proofread"))
        .start();
    let root = srv.create_repo("s3");
    srv.create_instance(&root, "keyvalue", "kv");
    srv.put_key(&root, "kv", "a", b"local");
    let before = proofread_and_collect(&srv, &root, &weed.url("proofread"));

    srv.restart();
    let seg = Seg::open(&srv, &root, "seg");
    assert_eq!(seen(&srv, &seg, &root), before);

    // A committed version's blocks stay as they were when its child is edited.
    srv.commit(&root);
    let child = srv.branch(&root, "next");
    seg.at(&child)
        .post_raw(&noise_fixture(SIZE, 9, &[7, 8]), "")
        .expect(200);
    drop(seg);
    srv.kill();
    srv.start_again();
    let seg = Seg::open(&srv, &root, "seg");
    assert_eq!(seen(&srv, &seg, &root), before);
    assert_eq!(
        Seg::open(&srv, &child, "seg").raw([0; 3], SIZE, "supervoxels=true"),
        noise_fixture(SIZE, 9, &[7, 8])
    );
    let after = gc(&srv, "0");
    assert_eq!(
        after["Deleted"], 0,
        "both versions' blocks are live: {after}"
    );
    assert_eq!(seen(&srv, &seg, &root), before);
}

/// Writes, checks placement, proofreads and collects; returns what the version then holds.
fn proofread_and_collect(srv: &Server, root: &str, objects_url: &str) -> Seen {
    let seg = Seg::create(srv, root, "seg", &standard_settings(LEVELS as u32));
    let vol = noise_fixture(SIZE, 3, &[1, 2, 3, 4, 5, 6]);
    seg.write(&vol);

    let stores = &srv.get("/api/server/storage").expect(200).json();
    assert_eq!(stores["s3"]["Engine"], "rocksdb+objects", "{stores}");
    assert_eq!(stores["s3"]["Objects"], objects_url);
    assert_eq!(stores["s3"]["Instances"], json!([format!("{root}/seg")]));
    assert_eq!(stores["local"]["Objects"], Value::Null);
    assert_eq!(stores["local"]["Instances"], json!([format!("{root}/kv")]));

    // Every block of both scales is an object: 8 at scale 0 and 1 at scale 1, all distinct
    // (noise), and nothing is garbage yet.
    let first = gc(srv, "0");
    assert_eq!(first["Referenced"], 9, "{first}");
    assert_eq!(first["Deleted"], 0, "{first}");

    seg.merge_ok(&[1, 2], "");
    let part = voxels_where(&vol, [0, 0, 0], [40, 128, 128], |l| l == 3);
    seg.split_ok(3, &part, "");
    seg.cleave_ok(1, &[2], "");
    check_consistency(&seg, SIZE, LEVELS);
    let before = seen(srv, &seg, root);

    // The split rewrote blocks at the same (open) version: their old objects are garbage now,
    // but younger than an hour, so the default grace keeps them.
    let kept = gc(srv, "3600");
    assert_eq!(kept["Deleted"], 0, "{kept}");
    assert!(kept["KeptRecent"].as_u64().unwrap() > 0, "{kept}");
    let swept = gc(srv, "0");
    assert_eq!(swept["Deleted"], kept["KeptRecent"], "{swept}");
    assert_eq!(seen(srv, &seg, root), before);
    before
}

#[test]
fn an_object_store_outage_refuses_block_writes_whole_and_heals_by_itself() {
    let mut weed = Seaweed::start();
    let srv = Server::builder().config(&config(&weed, "outage")).start();
    let root = srv.create_repo("outage");
    srv.create_instance(&root, "keyvalue", "kv");
    srv.put_key(&root, "kv", "a", b"1");
    let seg = Seg::create(&srv, &root, "seg", &standard_settings(LEVELS as u32));
    let vol = noise_fixture(SIZE, 5, &[1, 2, 3, 4]);
    seg.write(&vol);
    let before = seen(&srv, &seg, &root);

    let part = voxels_where(&vol, [0, 0, 0], [64, 64, 64], |l| l == 4);
    // Readers go on through the whole outage: every answer is a 200 or a 503/504, never
    // anything else, and the server stays up.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let statuses = std::thread::scope(|scope| {
        let readers: Vec<_> = (0..2)
            .map(|r| {
                let (stop, srv, root) = (&stop, &srv, &root);
                scope.spawn(move || {
                    let mut seen = Vec::new();
                    let mut i = 0u32;
                    // Once the store is back, each reader goes on until it is answered again:
                    // how soon SeaweedFS serves reads after a restart is its own affair.
                    let healed = |seen: &Vec<u16>| {
                        stop.load(std::sync::atomic::Ordering::Relaxed) && seen.last() == Some(&200)
                    };
                    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
                    while !healed(&seen) {
                        assert!(
                            std::time::Instant::now() < deadline,
                            "reads did not heal: {seen:?}"
                        );
                        let at = 64 * ((i + r) % 2);
                        let path = format!("/api/node/{root}/seg/raw/0_1_2/64_64_64/{at}_0_{at}");
                        seen.push(srv.get(&path).status);
                        i += 1;
                    }
                    seen
                })
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(300));
        weed.kill();
        let refused = [
            seg.post_raw(&noise_fixture(SIZE, 6, &[9]), ""),
            seg.split(4, &part, ""),
            seg.get("raw/0_1_2/64_64_64/0_0_0"),
        ];
        for r in refused {
            assert!(
                r.status == 503 || r.status == 504,
                "{}: {} {}",
                r.what,
                r.status,
                r.text()
            );
            assert!(
                r.text().contains("object store"),
                "{}: {}",
                r.what,
                r.text()
            );
        }
        // What lives on the local stores goes on.
        srv.put_key(&root, "kv", "b", b"2");
        assert_eq!(seg.mappings(), before.mappings);
        assert_eq!(srv.get("/api/server/info").status, 200);

        weed.start_again();
        // Readers see the store come back by themselves, with no restart of the server.
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        readers
            .into_iter()
            .flat_map(|r| r.join().unwrap())
            .collect::<Vec<u16>>()
    });
    assert!(
        statuses.iter().all(|s| [200, 503, 504].contains(s)),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&200) && statuses.iter().any(|s| *s != 200),
        "{statuses:?}"
    );
    // Nothing of the refused writes is visible, and writes work again with no restart.
    assert_eq!(seen(&srv, &seg, &root), before);
    seg.split_ok(4, &part, "");
    check_consistency(&seg, SIZE, LEVELS);
}

fn migrate(srv: &Server, instance: &str, to: &str) -> Value {
    let mut cmd = std::process::Command::new(binary_path());
    cmd.args([
        "store",
        "migrate",
        "--instance",
        instance,
        "--to",
        to,
        "--config",
    ])
    .arg(srv.scratch_dir().join("tessera.toml"))
    .current_dir(srv.scratch_dir());
    serde_json::from_slice(&succeeded(&mut cmd).stdout).unwrap()
}

/// Runs `cmd` and asserts it succeeded, showing its stderr when not.
#[track_caller]
fn succeeded(cmd: &mut std::process::Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn an_instance_moves_to_object_storage_and_back_with_every_version() {
    let weed = Seaweed::start();
    let mut srv = Server::builder().config(&stores(&weed, "migrate")).start();
    let root = srv.create_repo("migrate");
    srv.create_instance(&root, "keyvalue", "kv");
    srv.put_key(&root, "kv", "a", b"1");
    let vol = noise_fixture(SIZE, 12, &[1, 2, 3, 4, 5]);
    let child = {
        let seg = Seg::create(&srv, &root, "seg", &standard_settings(LEVELS as u32));
        seg.write(&vol);
        seg.merge_ok(&[1, 2], "");
        srv.commit(&root);
        let child = srv.newversion(&root);
        let part = voxels_where(&vol, [0, 0, 0], [64, 128, 128], |l| l == 3);
        seg.at(&child).split_ok(3, &part, "");
        child
    };
    let read = |srv: &Server| {
        let at = |uuid: &str| seen(srv, &Seg::open(srv, uuid, "seg"), uuid);
        (
            at(&root),
            at(&child),
            Seg::open(srv, &root, "seg")
                .get("mutations")
                .expect(200)
                .json(),
        )
    };
    let before = read(&srv);
    let placed = |srv: &Server, store: &str| {
        srv.get("/api/server/storage").expect(200).json()[store]["Instances"]
            .as_array()
            .unwrap()
            .contains(&json!(format!("{root}/seg")))
    };
    assert!(placed(&srv, "local"));

    for (to, from) in [("s3", "local"), ("local", "s3")] {
        assert!(srv.stop().success());
        let moved = migrate(&srv, &format!("{root}/seg"), to);
        assert_eq!(
            (moved["from"].as_str(), moved["to"].as_str()),
            (Some(from), Some(to))
        );
        assert!(moved["keys"].as_u64().unwrap() > 20, "{moved}");
        assert!(moved["deleted"].as_u64().unwrap() > 20, "{moved}");
        srv.start_again();
        assert!(placed(&srv, to), "seg on {to}");
        assert_eq!(read(&srv), before, "after the move to {to}");
        if to == "s3" {
            let report = gc(&srv, "3600");
            assert!(report["Referenced"].as_u64().unwrap() >= 9, "{report}");
        }
    }
    // Moving to where it is moves nothing.
    assert!(srv.stop().success());
    let none = migrate(&srv, &format!("{root}/seg"), "local");
    assert_eq!(
        (none["keys"].as_u64(), none["deleted"].as_u64()),
        (Some(0), Some(0))
    );
}

/// Polls `f` until it holds, for up to 10 s.
fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn a_read_replica_serves_the_writers_data_refuses_writes_and_follows_edits() {
    let weed = Seaweed::start();
    let writer = Server::builder().config(&config(&weed, "replica")).start();
    let root = writer.create_repo("replica");
    writer.create_instance(&root, "keyvalue", "kv");
    writer.put_key(&root, "kv", "a", b"1");
    let seg = Seg::create(&writer, &root, "seg", &standard_settings(LEVELS as u32));
    seg.write(&noise_fixture(SIZE, 11, &[1, 2, 3, 4]));
    seg.merge_ok(&[1, 2], "");
    writer.commit(&root);
    let child = writer.newversion(&root);
    let committed = seen(&writer, &seg, &root);

    // The replica: the writer's configuration (its RocksDB directories, the same bucket).
    let dir = writer.scratch_dir().to_str().unwrap().to_string();
    let replica = Server::builder()
        .config(&config(&weed, "replica").replace("{dir}", &dir))
        .arg("--read-only")
        .arg("--follow-secs")
        .arg("0.2")
        .start();
    let rseg = Seg::open(&replica, &root, "seg");
    assert_eq!(seen(&replica, &rseg, &root), committed);
    assert_eq!(
        replica.get("/api/server/info").expect(200).json()["Mode"],
        "replica"
    );

    for r in [
        replica.post(&format!("/api/node/{child}/kv/key/b"), b"2".to_vec()),
        Seg::open(&replica, &child, "seg").merge(&[1, 3], ""),
        replica.post("/api/server/gc?grace=0", Vec::new()),
    ] {
        assert_eq!(r.status, 400, "{}: {}", r.what, r.text());
        assert!(
            r.text().contains("read replica"),
            "{}: {}",
            r.what,
            r.text()
        );
    }

    // The writer edits its open node and adds a repo; the replica follows, and the committed
    // version reads as before.
    let rchild = Seg::open(&replica, &child, "seg");
    assert_eq!(rchild.mapping(&[3], ""), vec![3]);
    Seg::open(&writer, &child, "seg").merge_ok(&[1, 3], "");
    writer.put_key(&child, "kv", "b", b"2");
    let later = writer.create_repo("later");
    eventually("the replica sees the writer's merge", || {
        rchild.mapping(&[3], "") == vec![1]
    });
    eventually("the replica sees the writer's key", || {
        // Until the replica has followed the new node, its UUID is unknown there (400).
        let r = replica.get(&format!("/api/node/{child}/kv/key/b"));
        r.status == 200 && r.body == b"2"
    });
    eventually("the replica sees the new repo", || {
        replica.get(&format!("/api/repo/{later}/info")).status == 200
    });
    assert_eq!(
        rchild.raw([0; 3], SIZE, ""),
        Seg::open(&writer, &child, "seg").raw([0; 3], SIZE, "")
    );
    assert_eq!(seen(&replica, &rseg, &root), committed);
}

#[test]
fn a_server_whose_every_byte_is_on_s3_restarts_with_an_empty_disk() {
    let weed = Seaweed::start();
    // SlateDB keeps the ordered keys (repo metadata, indices, references) on the S3 server and
    // blocks are objects there: the local data directory holds nothing.
    let toml = format!(
        r#"
[store.cloud]
engine = "slatedb"
url = "{meta}"
objects = "{blocks}"
object_cache_mb = 0

[store.cloud.object_options]
{options}"#,
        meta = weed.url("cloud-meta"),
        blocks = weed.url("cloud-blocks"),
        options = weed.options_toml()
    );
    let mut srv = Server::builder().config(&toml).start();
    let root = srv.create_repo("cloud");
    srv.create_instance(&root, "keyvalue", "kv");
    srv.put_key(&root, "kv", "a", b"on s3");
    let before = {
        let seg = Seg::create(&srv, &root, "seg", &standard_settings(LEVELS as u32));
        let vol = noise_fixture(SIZE, 13, &[1, 2, 3, 4]);
        seg.write(&vol);
        seg.merge_ok(&[1, 2], "");
        let part = voxels_where(&vol, [0, 0, 0], [64, 128, 128], |l| l == 3);
        seg.split_ok(3, &part, "");
        check_consistency(&seg, SIZE, LEVELS);
        seen(&srv, &seg, &root)
    };
    let storage = srv.get("/api/server/storage").expect(200).json();
    assert_eq!(storage["cloud"]["Engine"], "slatedb+objects", "{storage}");
    assert!(srv.stop().success());
    let local: Vec<_> = walk(srv.data_dir());
    assert!(local.is_empty(), "nothing on the local disk: {local:?}");

    // Another server process, a fresh scratch directory, the same bucket.
    let again = Server::builder().config(&toml).start();
    let seg = Seg::open(&again, &root, "seg");
    assert_eq!(seen(&again, &seg, &root), before);
    assert_eq!(
        again.key_value(&root, "kv", "a").as_deref(),
        Some(&b"on s3"[..])
    );
    seg.merge_ok(&[1, 4], "");
}

/// Every file under `dir` (none if it does not exist).
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|e| {
            if e.path().is_dir() {
                walk(&e.path())
            } else {
                vec![e.path()]
            }
        })
        .collect()
}

/// Runs `tessera ARGS --input INPUT` once into the directory `files`, then as four workers
/// (`--shard I/4`) started together writing into `url`; every run must succeed.
fn one_and_four_workers(
    weed: &Seaweed,
    args: &[&str],
    input: &std::path::Path,
    files: &std::path::Path,
    url: &str,
) {
    let run = |out: &str, shard: &str| {
        succeeded(
            std::process::Command::new(binary_path())
                .args(args)
                .arg("--input")
                .arg(input)
                .args(["--compute", "cpu", "--out-dir", out, "--shard", shard])
                .envs(weed.env()),
        );
    };
    run(files.to_str().unwrap(), "0/1");
    let run = &run;
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|i| s.spawn(move || run(url, &format!("{i}/4"))))
            .collect();
        for w in workers {
            w.join().expect("a worker's run failed");
        }
    });
}

/// `tessera pyramid --shard I/4 --out-dir s3://…`: four workers started together write zarr
/// levels straight into SeaweedFS; a volumeproxy instance reads each level back as exactly the
/// voxels one process writes to local `.npy` files.
#[test]
fn a_sharded_pyramid_writes_zarr_levels_into_s3_as_one_process_writes_files() {
    let weed = Seaweed::start();
    let dir = tempfile::tempdir().unwrap();
    let (shape, levels) = ([72, 96, 80], 2);
    let labels: Vec<u64> = (0..shape.iter().product::<usize>())
        .map(|i| ((i as u64 * 2654435761) >> 7) % 6 + (i as u64 / 9000))
        .collect();
    let input = dir.path().join("in.npy");
    let raw: Vec<u8> = labels.iter().flat_map(|v| v.to_le_bytes()).collect();
    tessera_tests::mesh::write_npy(&input, "<u8", shape, &raw);
    let files = dir.path().join("files");
    one_and_four_workers(
        &weed,
        &["pyramid", "--levels", "2"],
        &input,
        &files,
        &weed.url("pyramid"),
    );

    let srv = Server::start();
    let root = srv.create_repo("zarr");
    let options = weed.options_toml();
    for k in 1..=levels {
        let mut settings = json!({"typename": "volumeproxy", "dataname": format!("s{k}"),
                                  "Source": weed.url(&format!("pyramid/s{k}"))});
        for line in options.lines() {
            let (key, value) = line.split_once(" = ").unwrap();
            settings[format!("object_{key}")] = json!(value.trim_matches('"'));
        }
        srv.post_json(&format!("/api/repo/{root}/instance"), &settings)
            .expect(200);
        let npy = std::fs::read(files.join(format!("s{k}.npy"))).unwrap();
        let dims: [usize; 3] = std::array::from_fn(|a| shape[a].div_ceil(1 << k));
        let want = &npy[npy.len() - dims.iter().product::<usize>() * 8..];
        let got = srv
            .get(&format!(
                "/api/node/{root}/s{k}/raw/0_1_2/{}_{}_{}/0_0_0",
                dims[2], dims[1], dims[0]
            ))
            .expect(200)
            .body;
        assert!(
            got == want,
            "level {k}: the zarr level differs from the file"
        );
    }
}

/// With a disk cache, blocks read once are served after a restart without the object store:
/// SeaweedFS is killed, and the cached level still reads the same, while an uncached read
/// answers 503.
#[test]
fn blocks_in_the_disk_cache_are_served_after_a_restart_while_the_object_store_is_down() {
    let mut weed = Seaweed::start();
    let toml = config(&weed, "disk-cache").replace(
        "object_cache_mb = 0\n",
        "object_cache_mb = 0\nobject_disk_cache = \"{dir}/object-cache\"\nobject_disk_cache_mb = 64\n",
    );
    let mut srv = Server::builder().config(&toml).start();
    let root = srv.create_repo("cached");
    let seg = Seg::create(&srv, &root, "seg", &standard_settings(LEVELS as u32));
    seg.write(&noise_fixture(SIZE, 11, &[1, 2, 3]));
    let cached = seg.raw([0; 3], [64; 3], "supervoxels=true");
    srv.restart();
    let seg = Seg::open(&srv, &root, "seg");
    assert_eq!(seg.raw([0; 3], [64; 3], "supervoxels=true"), cached);
    let metrics = srv.get("/metrics").expect(200).text();
    assert!(
        metrics.lines().any(
            |l| l.starts_with("tessera_object_disk_hits_total{store=\"s3\"}") && !l.ends_with(" 0")
        ),
        "no disk hits after the restart:\n{metrics}"
    );
    weed.kill();
    assert_eq!(seg.raw([0; 3], [64; 3], "supervoxels=true"), cached);
    let r = seg.get("raw/0_1_2/64_64_64/64_64_64?supervoxels=true");
    assert!(
        r.status == 503 || r.status == 504,
        "{} {}",
        r.status,
        r.text()
    );
}

/// A read replica of a server whose keys are in SlateDB and blocks are objects, both on the S3
/// server: it opens SlateDB's reader beside the writer (a second writer would fence the first
/// out), serves what the writer wrote, refuses writes, and follows the writer's edits.
#[test]
fn a_read_replica_of_a_server_whose_every_byte_is_on_s3_follows_the_writer() {
    let weed = Seaweed::start();
    let toml = format!(
        "[store.cloud]\nengine = \"slatedb\"\nurl = \"{}\"\nobjects = \"{}\"\n\n\
         [store.cloud.object_options]\n{}",
        weed.url("follow-meta"),
        weed.url("follow-blocks"),
        weed.options_toml()
    );
    let writer = Server::builder().config(&toml).start();
    let root = writer.create_repo("cloud");
    writer.create_instance(&root, "keyvalue", "kv");
    writer.put_key(&root, "kv", "a", b"1");
    let seg = Seg::create(&writer, &root, "seg", &standard_settings(LEVELS as u32));
    seg.write(&noise_fixture(SIZE, 17, &[1, 2, 3]));
    writer.commit(&root);
    let child = writer.newversion(&root);

    let replica = Server::builder()
        .config(&toml)
        .arg("--read-only")
        .arg("--follow-secs")
        .arg("0.2")
        .start();
    let rseg = Seg::open(&replica, &root, "seg");
    assert_eq!(rseg.raw([0; 3], SIZE, ""), seg.raw([0; 3], SIZE, ""));
    assert_eq!(
        replica.key_value(&root, "kv", "a").as_deref(),
        Some(&b"1"[..])
    );
    let r = replica.post(&format!("/api/node/{child}/kv/key/b"), b"x".to_vec());
    assert_eq!(r.status, 400, "{}", r.text());

    writer.put_key(&child, "kv", "b", b"2");
    Seg::open(&writer, &child, "seg").merge_ok(&[1, 2], "");
    let later = writer.create_repo("later");
    eventually("the replica sees the writer's key", || {
        // Until the replica has followed the new node, its UUID is unknown there (400).
        let r = replica.get(&format!("/api/node/{child}/kv/key/b"));
        r.status == 200 && r.body == b"2"
    });
    eventually("the replica sees the writer's merge", || {
        Seg::open(&replica, &child, "seg").mapping(&[2], "") == vec![1]
    });
    eventually("the replica sees the new repo", || {
        replica.get(&format!("/api/repo/{later}/info")).status == 200
    });
}

/// `tessera mesh --shard I/4 --out-dir s3://…`: four workers write their labels' meshes
/// straight into SeaweedFS, the same files, byte for byte, as one process writes to a directory.
#[test]
fn a_sharded_mesh_job_writes_into_s3_what_one_process_writes_to_files() {
    let weed = Seaweed::start();
    let dir = tempfile::tempdir().unwrap();
    let shape = [40, 48, 56];
    let labels: Vec<u64> = (0..shape.iter().product::<usize>())
        .map(|i| {
            let (z, y, x) = (i / (48 * 56), i / 56 % 48, i % 56);
            (z / 10 * 9 + y / 16 * 3 + x / 20) as u64 % 7
        })
        .collect();
    let raw: Vec<u8> = labels.iter().flat_map(|v| v.to_le_bytes()).collect();
    let input = dir.path().join("in.npy");
    tessera_tests::mesh::write_npy(&input, "<u8", shape, &raw);
    let files = dir.path().join("files");
    one_and_four_workers(
        &weed,
        &["mesh", "--format", "precomputed"],
        &input,
        &files,
        &weed.url("meshes"),
    );
    let names: Vec<String> = std::fs::read_dir(&files)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.len() > 8, "{names:?}");
    for name in names {
        let want = std::fs::read(files.join(&name)).unwrap();
        assert!(
            weed.read(&format!("meshes/{name}")) == Some(want),
            "{name} differs in the object store"
        );
    }
}

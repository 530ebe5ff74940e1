//! What each `Durability` keeps when the process dies without closing the store: a child
//! process (this test binary run again) writes and then aborts, skipping every destructor, and
//! the parent reopens the database.

use std::path::Path;
use std::process::Command;

use tessera_storage::{Durability, KvStore, RocksStore, WriteBatch};

const CHILD: &str = "TESSERA_DURABILITY_CHILD";

fn write(kv: &RocksStore, key: &str, durability: Durability) {
    let mut b = WriteBatch::new();
    b.durability = durability;
    b.put(key.as_bytes(), b"v".to_vec());
    kv.write(b).unwrap();
}

/// In the child: the writes `step` names, then an abort.
fn child(dir: &Path, step: &str) -> ! {
    let kv = RocksStore::open(dir).unwrap();
    match step {
        "unsynced" => {
            write(&kv, "synced", Durability::Synced);
            write(&kv, "lazy", Durability::Lazy);
            write(&kv, "unlogged", Durability::Unlogged);
            // Visible at once, whatever its durability.
            assert!(kv.get(b"unlogged").unwrap().is_some());
        }
        "synced" => {
            write(&kv, "unlogged", Durability::Unlogged);
            write(&kv, "logged after", Durability::Lazy);
            kv.sync().unwrap();
        }
        _ => panic!("unknown step {step}"),
    }
    std::process::abort()
}

fn run_child(dir: &Path, step: &str) {
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_killed_process_keeps_what_its_durability_promises",
        ])
        .args(["--nocapture", "--test-threads", "1"])
        .env(CHILD, format!("{step}:{}", dir.display()))
        .status()
        .unwrap();
    assert!(!status.success(), "the child was meant to abort");
}

fn present(dir: &Path, keys: &[&str]) -> Vec<bool> {
    let kv = RocksStore::open(dir).unwrap();
    keys.iter()
        .map(|k| kv.get(k.as_bytes()).unwrap().is_some())
        .collect()
}

#[test]
fn a_killed_process_keeps_what_its_durability_promises() {
    if let Ok(arg) = std::env::var(CHILD) {
        let (step, dir) = arg.split_once(':').unwrap();
        child(Path::new(dir), step);
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");

    // A killed process loses only what skipped the log: synced and lazy writes are in the
    // write-ahead log, which the OS still holds.
    run_child(&dir, "unsynced");
    assert_eq!(
        present(&dir, &["synced", "lazy", "unlogged"]),
        [true, true, false]
    );

    // `sync` makes an unlogged write durable, and the logged writes beside it stay.
    run_child(&dir, "synced");
    assert_eq!(present(&dir, &["unlogged", "logged after"]), [true, true]);
}

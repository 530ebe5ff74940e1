//! What a killed process keeps: a child process (this test binary run again) writes and then
//! aborts, skipping every destructor, and the parent reopens the database.

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

/// In the child: one write of each durability, an unlogged write before a `sync` and one
/// after it, then an abort.
fn child(dir: &Path) -> ! {
    let kv = RocksStore::open(dir).unwrap();
    write(&kv, "synced", Durability::Synced);
    write(&kv, "lazy", Durability::Lazy);
    write(&kv, "unlogged, synced", Durability::Unlogged);
    kv.sync().unwrap();
    write(&kv, "unlogged", Durability::Unlogged);
    write(&kv, "synced after it", Durability::Synced);
    std::process::abort()
}

#[test]
fn a_killed_process_keeps_synced_lazy_and_synced_unlogged_writes() {
    if let Ok(dir) = std::env::var(CHILD) {
        child(Path::new(&dir));
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_killed_process_keeps_synced_lazy_and_synced_unlogged_writes",
        ])
        .args(["--nocapture", "--test-threads", "1"])
        .env(CHILD, &dir)
        .status()
        .unwrap();
    assert!(!status.success(), "the child was meant to abort");
    // A lazy write is in the write-ahead log, which the OS holds after the process dies: only
    // a machine's crash before the next sync can lose it. An unlogged write is in the
    // process's memory until a sync writes it out: the one after the sync is gone, though a
    // synced write followed it.
    let kv = RocksStore::open(&dir).unwrap();
    for key in ["synced", "lazy", "unlogged, synced", "synced after it"] {
        assert!(kv.get(key.as_bytes()).unwrap().is_some(), "{key} lost");
    }
    assert_eq!(
        kv.get(b"unlogged").unwrap(),
        None,
        "an unlogged write was logged"
    );
}

//! What a killed process keeps: a child process (this test binary run again) writes and then
//! aborts, skipping every destructor, and the parent reopens the database.

use std::path::Path;
use std::process::Command;

use tessera_storage::{Durability, KvStore, RocksStore, WriteBatch};

const CHILD: &str = "TESSERA_DURABILITY_CHILD";

/// In the child: one write of each durability, then an abort.
fn child(dir: &Path) -> ! {
    let kv = RocksStore::open(dir).unwrap();
    for (key, durability) in [("synced", Durability::Synced), ("lazy", Durability::Lazy)] {
        let mut b = WriteBatch::new();
        b.durability = durability;
        b.put(key.as_bytes(), b"v".to_vec());
        kv.write(b).unwrap();
    }
    std::process::abort()
}

#[test]
fn a_killed_process_keeps_synced_and_lazy_writes() {
    if let Ok(dir) = std::env::var(CHILD) {
        child(Path::new(&dir));
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "a_killed_process_keeps_synced_and_lazy_writes"])
        .args(["--nocapture", "--test-threads", "1"])
        .env(CHILD, &dir)
        .status()
        .unwrap();
    assert!(!status.success(), "the child was meant to abort");
    // A lazy write is in the write-ahead log, which the OS holds after the process dies: only
    // a machine's crash before the next sync can lose it.
    let kv = RocksStore::open(&dir).unwrap();
    for key in ["synced", "lazy"] {
        assert!(kv.get(key.as_bytes()).unwrap().is_some(), "{key} lost");
    }
}

//! What large values rewritten again and again leave on disk. RocksDB keeps values of 64 KiB
//! or more in blob files and, with its blob garbage collection off (storage/src/rocks.rs says
//! why), frees a blob file only once every value in it has been overwritten or deleted. Kept
//! meshes are written that way: a body's mesh again after each edit, a flush per edit.

use std::path::Path;

use tessera_storage::{Durability, KvStore, RocksStore, WriteBatch};

const VALUE: usize = 2 << 20;
const STATIC: usize = 16;
const HOT: usize = 2;
const ROUNDS: usize = 40;

/// `VALUE` bytes that LZ4 cannot shrink, different for every seed.
fn noise(seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..VALUE / 8)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect()
}

fn put_unlogged(kv: &RocksStore, key: String, seed: u64) {
    let mut b = WriteBatch::new();
    b.durability = Durability::Unlogged;
    b.put(key.as_bytes(), noise(seed));
    kv.write(b).unwrap();
}

fn bytes_on_disk(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

#[test]
fn hot_values_rewritten_many_times_leave_the_store_near_its_live_size() {
    let tmp = tempfile::tempdir().unwrap();
    let kv = RocksStore::open(tmp.path()).unwrap();
    for i in 0..STATIC + HOT {
        put_unlogged(&kv, format!("mesh {i}"), i as u64);
    }
    kv.sync().unwrap();
    for round in 1..=ROUNDS {
        for h in 0..HOT {
            put_unlogged(&kv, format!("mesh {h}"), (round * 100 + h) as u64);
        }
        kv.sync().unwrap();
    }
    kv.flush().unwrap();

    let live = ((STATIC + HOT) * VALUE) as u64;
    let written = live + (ROUNDS * HOT * VALUE) as u64;
    let on_disk = bytes_on_disk(tmp.path());
    // Written 5.4× the live size; what is left may be the live values, the first file's two
    // overwritten values, and the rounds since the last compaction (RocksDB compacts at four
    // flushed files).
    assert!(
        on_disk < 2 * live,
        "{} MiB on disk for {} MiB live ({} MiB written)",
        on_disk >> 20,
        live >> 20,
        written >> 20
    );
    assert_eq!(
        kv.get(b"mesh 0").unwrap().unwrap(),
        noise((ROUNDS * 100) as u64)
    );
    assert_eq!(kv.get(b"mesh 5").unwrap().unwrap(), noise(5));
}

//! One conformance suite for every key-value engine: each `check_*` function takes a
//! `&dyn KvStore` and states one part of the `KvStore` contract (bytewise key order, `[start, end)`
//! scans with an empty `end` meaning "to the end", early stop, atomic in-order batches, deletes,
//! overwrites, empty and large values). The `conformance!` macro runs the whole suite against a
//! fresh store of each engine. A new engine adds one line at the bottom.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tessera_storage::versioned::put_into;
use tessera_storage::{
    ContentStore, Dag, Error, KvStore, MemoryStore, Metered, ObjectConfig, Objects, RocksStore,
    SlateStore, VersionedStore, View, WriteBatch,
};
use tessera_tests::seaweed::Seaweed;

type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Everything `scan(start, end)` visits, in visiting order.
fn scan_all(s: &dyn KvStore, start: &[u8], end: &[u8]) -> Pairs {
    let mut out = Vec::new();
    s.scan(start, end, &mut |k, v| {
        out.push((k.to_vec(), v.to_vec()));
        Ok(true)
    })
    .expect("scan");
    out
}

fn scan_keys(s: &dyn KvStore, start: &[u8], end: &[u8]) -> Vec<Vec<u8>> {
    scan_all(s, start, end)
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

/// Keys that stress bytewise ordering: 0x00 and 0xFF bytes, keys that are prefixes of one
/// another, and 0x7F/0x80 (a signed-byte comparison would put 0x80 first).
fn tricky_keys() -> Vec<Vec<u8>> {
    let keys: Vec<&[u8]> = vec![
        b"",
        b"\x00",
        b"\x00\x00",
        b"\x00\x01",
        b"\x00\xff",
        b"\x01",
        b"\x7f",
        b"\x80",
        b"a",
        b"a\x00",
        b"a\x00\x00",
        b"a\x00b",
        b"a\x01",
        b"a\xff",
        b"a\xff\xff",
        b"ab",
        b"abc",
        b"b",
        b"\xfe\xff",
        b"\xff",
        b"\xff\x00",
        b"\xff\xff",
        b"\xff\xff\xff",
    ];
    keys.into_iter().map(<[u8]>::to_vec).collect()
}

/// Writes the tricky keys in a scrambled order with value = key ‖ "!".
fn load_tricky(s: &dyn KvStore) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let keys = tricky_keys();
    let n = keys.len();
    let mut model = BTreeMap::new();
    for i in 0..n {
        let k = &keys[(i * 7 + 3) % n]; // 7 is coprime with n: a permutation
        let mut v = k.clone();
        v.push(b'!');
        s.put(k, &v).expect("put");
        model.insert(k.clone(), v);
    }
    assert_eq!(model.len(), n);
    model
}

/// The model's answer to `scan(start, end)`.
fn model_scan(model: &BTreeMap<Vec<u8>, Vec<u8>>, start: &[u8], end: &[u8]) -> Pairs {
    model
        .iter()
        .filter(|(k, _)| k.as_slice() >= start && (end.is_empty() || k.as_slice() < end))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

pub fn check_empty_store(s: &dyn KvStore) {
    assert_eq!(s.get(b"missing").unwrap(), None);
    assert_eq!(s.get(b"").unwrap(), None);
    assert!(scan_all(s, b"", b"").is_empty());
    assert!(scan_all(s, b"a", b"z").is_empty());
    s.flush().expect("flush of an empty store");
}

pub fn check_put_get_overwrite(s: &dyn KvStore) {
    s.put(b"k", b"one").unwrap();
    assert_eq!(s.get(b"k").unwrap().as_deref(), Some(&b"one"[..]));
    s.put(b"k", b"two, longer").unwrap();
    assert_eq!(s.get(b"k").unwrap().as_deref(), Some(&b"two, longer"[..]));
    s.put(b"k", b"3").unwrap();
    assert_eq!(s.get(b"k").unwrap().as_deref(), Some(&b"3"[..]));
    // A get of a prefix or an extension of a stored key finds nothing.
    assert_eq!(s.get(b"").unwrap(), None);
    assert_eq!(s.get(b"k\x00").unwrap(), None);
    assert_eq!(s.get(b"kk").unwrap(), None);
    assert_eq!(scan_all(s, b"", b""), vec![(b"k".to_vec(), b"3".to_vec())]);
}

pub fn check_delete(s: &dyn KvStore) {
    s.put(b"a", b"1").unwrap();
    s.put(b"b", b"2").unwrap();
    s.put(b"c", b"3").unwrap();
    s.delete(b"b").unwrap();
    assert_eq!(s.get(b"b").unwrap(), None);
    assert_eq!(scan_keys(s, b"", b""), vec![b"a".to_vec(), b"c".to_vec()]);
    // Deleting a missing key, or the same key twice, is not an error.
    s.delete(b"b").unwrap();
    s.delete(b"never-written").unwrap();
    // A deleted key can be written again.
    s.put(b"b", b"again").unwrap();
    assert_eq!(s.get(b"b").unwrap().as_deref(), Some(&b"again"[..]));
    // Deleting one key leaves its prefix and extensions alone.
    s.put(b"b\x00", b"ext").unwrap();
    s.delete(b"b").unwrap();
    assert_eq!(s.get(b"b\x00").unwrap().as_deref(), Some(&b"ext"[..]));
    assert_eq!(
        scan_keys(s, b"", b""),
        vec![b"a".to_vec(), b"b\x00".to_vec(), b"c".to_vec()]
    );
}

pub fn check_empty_values(s: &dyn KvStore) {
    s.put(b"empty", b"").unwrap();
    // Stored-but-empty is not missing.
    assert_eq!(s.get(b"empty").unwrap(), Some(Vec::new()));
    assert_eq!(s.get(b"other").unwrap(), None);
    assert_eq!(scan_all(s, b"", b""), vec![(b"empty".to_vec(), Vec::new())]);
    let mut b = WriteBatch::new();
    b.put(b"empty2".to_vec(), Vec::new());
    s.write(b).unwrap();
    assert_eq!(s.get(b"empty2").unwrap(), Some(Vec::new()));
    // The empty key is a key like any other, and the smallest one.
    s.put(b"", b"root").unwrap();
    assert_eq!(s.get(b"").unwrap().as_deref(), Some(&b"root"[..]));
    assert_eq!(
        scan_keys(s, b"", b""),
        vec![b"".to_vec(), b"empty".to_vec(), b"empty2".to_vec()]
    );
}

pub fn check_large_values(s: &dyn KvStore) {
    // Patterned so a truncation or a chunk mix-up is visible; larger than RocksDB's block
    // size and write buffer alike.
    let big: Vec<u8> = (0..9 * 1024 * 1024 + 17).map(|i| (i % 251) as u8).collect();
    let big_key: Vec<u8> = (0..4096).map(|i| (i % 256) as u8).collect();
    s.put(b"big", &big).unwrap();
    s.put(&big_key, b"long key").unwrap();
    let mut b = WriteBatch::new();
    b.put(b"big-batched".to_vec(), big.clone());
    s.write(b).unwrap();
    assert!(s.get(b"big").unwrap().unwrap() == big);
    assert!(s.get(b"big-batched").unwrap().unwrap() == big);
    assert_eq!(s.get(&big_key).unwrap().as_deref(), Some(&b"long key"[..]));
    let seen = scan_all(s, b"", b"");
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].0, big_key); // starts with 0x00
    assert!(seen[1] == (b"big".to_vec(), big.clone()));
    assert!(seen[2] == (b"big-batched".to_vec(), big));
    s.flush().unwrap();
    assert_eq!(
        s.get(b"big").unwrap().map(|v| v.len()),
        Some(9 * 1024 * 1024 + 17)
    );
}

pub fn check_ordering(s: &dyn KvStore) {
    let model = load_tricky(s);
    let expected: Vec<Vec<u8>> = model.keys().cloned().collect();
    let mut sorted = tricky_keys();
    sorted.sort(); // Vec<u8> orders bytewise, unsigned, shorter prefix first
    assert_eq!(expected, sorted);
    assert_eq!(scan_keys(s, b"", b""), expected);
    for (k, v) in &model {
        assert_eq!(s.get(k).unwrap().as_ref(), Some(v), "get {k:?}");
    }
    // Every single-byte key: unsigned order.
    let s2: Vec<Vec<u8>> = (0..=255u8).rev().map(|b| vec![b'~', b]).collect();
    for k in &s2 {
        s.put(k, b"").unwrap();
    }
    let got = scan_keys(s, b"~", b"\x7f");
    let want: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b'~', b]).collect();
    assert_eq!(got, want);
}

pub fn check_scan_bounds(s: &dyn KvStore) {
    let model = load_tricky(s);
    let mut bounds = tricky_keys();
    // Bounds that are not stored keys, between and around the stored ones.
    for extra in [
        &b"\x00\x00\x00"[..],
        b"\x02",
        b"a\x00a",
        b"aa",
        b"abd",
        b"c",
        b"\xff\x01",
        b"\xff\xff\xff\xff",
    ] {
        bounds.push(extra.to_vec());
    }
    for start in &bounds {
        for end in &bounds {
            // Includes start == end (empty), start > end (empty, no panic), end = "" (to the end).
            assert_eq!(
                scan_all(s, start, end),
                model_scan(&model, start, end),
                "scan [{start:?}, {end:?})"
            );
        }
    }
    // Spot checks that spell out the contract.
    assert_eq!(
        scan_keys(s, b"a", b"b"),
        vec![
            b"a".to_vec(),
            b"a\x00".to_vec(),
            b"a\x00\x00".to_vec(),
            b"a\x00b".to_vec(),
            b"a\x01".to_vec(),
            b"ab".to_vec(),
            b"abc".to_vec(),
            b"a\xff".to_vec(),
            b"a\xff\xff".to_vec(),
        ],
        "[a, b) is every key starting with a"
    );
    assert_eq!(
        scan_keys(s, b"a", b"a\x00"),
        vec![b"a".to_vec()],
        "end is exclusive"
    );
    assert!(
        scan_keys(s, b"ab", b"ab").is_empty(),
        "start == end is empty"
    );
    assert!(scan_keys(s, b"b", b"a").is_empty(), "start > end is empty");
    assert_eq!(
        scan_keys(s, b"\xff", b""),
        vec![
            b"\xff".to_vec(),
            b"\xff\x00".to_vec(),
            b"\xff\xff".to_vec(),
            b"\xff\xff\xff".to_vec(),
        ],
        "empty end scans to the end of the keyspace"
    );
    assert_eq!(
        scan_keys(s, b"\xfe", b"\xff"),
        vec![b"\xfe\xff".to_vec()],
        "end 0xFF excludes 0xFF and its extensions"
    );
    assert_eq!(scan_keys(s, b"", b"\x00"), vec![b"".to_vec()]);
}

pub fn check_early_stop(s: &dyn KvStore) {
    let model = load_tricky(s);
    let all: Vec<Vec<u8>> = model.keys().cloned().collect();
    for limit in [1, 2, 5, all.len() - 1, all.len(), all.len() + 3] {
        let mut seen = Vec::new();
        s.scan(b"", b"", &mut |k, _| {
            seen.push(k.to_vec());
            Ok(seen.len() < limit)
        })
        .unwrap();
        assert_eq!(seen, all[..limit.min(all.len())], "stop after {limit}");
    }
    // Stopping inside a bounded scan.
    let mut seen = Vec::new();
    s.scan(b"a", b"b", &mut |k, _| {
        seen.push(k.to_vec());
        Ok(k != b"a\x01")
    })
    .unwrap();
    assert_eq!(
        seen,
        vec![
            b"a".to_vec(),
            b"a\x00".to_vec(),
            b"a\x00\x00".to_vec(),
            b"a\x00b".to_vec(),
            b"a\x01".to_vec(),
        ]
    );
    // A visitor error ends the scan and is returned as is.
    let mut calls = 0;
    let r = s.scan(b"", b"", &mut |_, _| {
        calls += 1;
        if calls == 3 {
            Err(Error::Corrupt("visitor says no".into()))
        } else {
            Ok(true)
        }
    });
    assert!(matches!(r, Err(Error::Corrupt(m)) if m == "visitor says no"));
    assert_eq!(calls, 3);
}

pub fn check_batch_order(s: &dyn KvStore) {
    s.put(b"pre-existing", b"old").unwrap();
    s.put(b"doomed", b"old").unwrap();
    let mut b = WriteBatch::new();
    assert!(b.is_empty());
    b.put(b"put-then-delete".to_vec(), b"x".to_vec());
    b.delete(b"put-then-delete".to_vec());
    b.delete(b"delete-then-put".to_vec());
    b.put(b"delete-then-put".to_vec(), b"y".to_vec());
    b.put(b"put-twice".to_vec(), b"first".to_vec());
    b.put(b"put-twice".to_vec(), b"second".to_vec());
    b.delete(b"pre-existing".to_vec());
    b.put(b"pre-existing".to_vec(), b"new".to_vec());
    b.delete(b"doomed".to_vec());
    b.put(b"plain".to_vec(), b"p".to_vec());
    b.delete(b"never-existed".to_vec());
    assert_eq!(b.len(), 11);
    s.write(b).unwrap();
    assert_eq!(s.get(b"put-then-delete").unwrap(), None);
    assert_eq!(
        s.get(b"delete-then-put").unwrap().as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(
        s.get(b"put-twice").unwrap().as_deref(),
        Some(&b"second"[..])
    );
    assert_eq!(
        s.get(b"pre-existing").unwrap().as_deref(),
        Some(&b"new"[..])
    );
    assert_eq!(s.get(b"doomed").unwrap(), None);
    assert_eq!(
        scan_keys(s, b"", b""),
        vec![
            b"delete-then-put".to_vec(),
            b"plain".to_vec(),
            b"pre-existing".to_vec(),
            b"put-twice".to_vec(),
        ]
    );
    // An empty batch is a no-op.
    s.write(WriteBatch::new()).unwrap();
    assert_eq!(scan_keys(s, b"", b"").len(), 4);
    // A batch built by appending two batches applies the first one's ops first.
    let mut first = WriteBatch::new();
    first.put(b"appended".to_vec(), b"1".to_vec());
    let mut second = WriteBatch::new();
    second.put(b"appended".to_vec(), b"2".to_vec());
    second.delete(b"plain".to_vec());
    first.append(second);
    s.write(first).unwrap();
    assert_eq!(s.get(b"appended").unwrap().as_deref(), Some(&b"2"[..]));
    assert_eq!(s.get(b"plain").unwrap(), None);
}

pub fn check_big_batch(s: &dyn KvStore) {
    let mut b = WriteBatch::new();
    for i in 0..20_000u32 {
        b.put(i.to_be_bytes().to_vec(), i.to_le_bytes().to_vec());
    }
    for i in (0..20_000u32).step_by(2) {
        b.delete(i.to_be_bytes().to_vec());
    }
    s.write(b).unwrap();
    let seen = scan_all(s, b"", b"");
    assert_eq!(seen.len(), 10_000);
    for (n, (k, v)) in seen.iter().enumerate() {
        let i = 2 * n as u32 + 1;
        assert_eq!(k, &i.to_be_bytes());
        assert_eq!(v, &i.to_le_bytes());
    }
}

/// Batches are all-or-nothing for readers: a writer rewrites ten keys and deletes a marker in
/// each batch, while readers scanning the key group must always see one batch's state, never a
/// mix of two.
pub fn check_batch_atomic_for_readers(s: Arc<dyn KvStore>) {
    const KEYS: u32 = 10;
    const ROUNDS: u32 = 300;
    let write_round = |s: &dyn KvStore, round: u32| {
        let mut b = WriteBatch::new();
        for i in 0..KEYS {
            b.put(
                format!("atom/{i}").into_bytes(),
                round.to_be_bytes().to_vec(),
            );
        }
        // Even rounds add a marker, odd rounds remove it.
        if round.is_multiple_of(2) {
            b.put(b"atom/marker".to_vec(), round.to_be_bytes().to_vec());
        } else {
            b.delete(b"atom/marker".to_vec());
        }
        s.write(b).unwrap();
    };
    write_round(&*s, 0);
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let s = s.clone();
            let done = done.clone();
            std::thread::spawn(move || {
                let mut checks = 0u32;
                while !done.load(Ordering::Acquire) || checks == 0 {
                    let seen = scan_all(&*s, b"atom/", b"atom0");
                    let values: Vec<&Vec<u8>> = seen
                        .iter()
                        .filter(|(k, _)| k != b"atom/marker")
                        .map(|(_, v)| v)
                        .collect();
                    assert_eq!(values.len(), KEYS as usize, "{seen:?}");
                    assert!(values.iter().all(|v| *v == values[0]), "mixed: {seen:?}");
                    let round = u32::from_be_bytes(values[0].as_slice().try_into().unwrap());
                    let marker = seen.iter().find(|(k, _)| k == b"atom/marker");
                    match marker {
                        Some((_, v)) => {
                            assert_eq!(round % 2, 0, "marker at odd round: {seen:?}");
                            assert_eq!(v, values[0]);
                        }
                        None => assert_eq!(round % 2, 1, "no marker at even round: {seen:?}"),
                    }
                    checks += 1;
                }
                checks
            })
        })
        .collect();
    for round in 1..=ROUNDS {
        write_round(&*s, round);
    }
    done.store(true, Ordering::Release);
    for r in readers {
        assert!(r.join().expect("reader panicked") > 0);
    }
    assert_eq!(
        s.get(b"atom/3").unwrap().as_deref(),
        Some(&ROUNDS.to_be_bytes()[..])
    );
}

/// A scan's visitor may write to the same store (writes outside the scanned range) without
/// deadlocking; the writes land.
pub fn check_visitor_may_write(s: &dyn KvStore) {
    for i in 0..5u8 {
        s.put(&[b'r', i], &[i]).unwrap();
    }
    let mut n = 0;
    s.scan(b"r", b"s", &mut |k, v| {
        let mut copy = b"w".to_vec();
        copy.extend_from_slice(&k[1..]);
        s.put(&copy, v)?;
        n += 1;
        Ok(true)
    })
    .unwrap();
    assert_eq!(n, 5);
    assert_eq!(scan_keys(s, b"w", b"x").len(), 5);
}

pub fn check_identity(s: &dyn KvStore) {
    assert!(!s.engine_name().is_empty());
    s.put(b"x", b"y").unwrap();
    s.flush().unwrap();
    assert_eq!(s.get(b"x").unwrap().as_deref(), Some(&b"y"[..]));
}

/// The versioned layer works on the engine (its keys are ordinary keys to the engine).
pub fn check_versioned_smoke(s: Arc<dyn KvStore>) {
    let vs = VersionedStore::new(s);
    let mut dag = Dag::new();
    dag.add(1, vec![]);
    dag.add(2, vec![1]);
    let dag = Arc::new(dag);
    let root = View {
        instance: 7,
        version: 1,
        dag: dag.clone(),
    };
    let child = View {
        instance: 7,
        version: 2,
        dag,
    };
    let mut b = WriteBatch::new();
    put_into(&mut b, &root, b"k\x00", b"v1");
    put_into(&mut b, &root, b"k", b"v0");
    vs.write(b).unwrap();
    vs.delete(&child, b"k").unwrap();
    assert_eq!(vs.get(&root, b"k").unwrap().as_deref(), Some(&b"v0"[..]));
    assert_eq!(vs.get(&child, b"k").unwrap(), None);
    assert_eq!(
        vs.get(&child, b"k\x00").unwrap().as_deref(),
        Some(&b"v1"[..])
    );
}

/// `scan_ranges` equals one `scan` per range: overlapping, empty, unbounded and out-of-order
/// ranges, and an early stop that ends only its own range.
pub fn check_scan_ranges(s: &dyn KvStore) {
    let model = load_tricky(s);
    let keys: Vec<Vec<u8>> = model.keys().cloned().collect();
    let mut ranges: Vec<(Vec<u8>, Vec<u8>)> = vec![
        (b"".to_vec(), b"".to_vec()),
        (b"z".to_vec(), b"a".to_vec()),
        (keys[1].clone(), keys[1].clone()),
    ];
    for w in keys.windows(3) {
        ranges.push((w[2].clone(), Vec::new()));
        ranges.push((w[0].clone(), w[2].clone()));
    }
    let mut got: Vec<Pairs> = vec![Vec::new(); ranges.len()];
    s.scan_ranges(&ranges, &mut |i, k, v| {
        got[i].push((k.to_vec(), v.to_vec()));
        Ok(got[i].len() < 3)
    })
    .unwrap();
    for (i, (start, end)) in ranges.iter().enumerate() {
        let mut want = model_scan(&model, start, end);
        want.truncate(3);
        assert_eq!(got[i], want, "range {i}");
    }
}

/// `get_many` resolves every key as `get` does, in one call.
pub fn check_versioned_get_many(s: Arc<dyn KvStore>) {
    let vs = VersionedStore::new(s);
    let mut dag = Dag::new();
    dag.add(1, vec![]);
    dag.add(2, vec![1]);
    let dag = Arc::new(dag);
    let root = View {
        instance: 7,
        version: 1,
        dag: dag.clone(),
    };
    let child = View {
        instance: 7,
        version: 2,
        dag,
    };
    vs.put(&root, b"a", b"a1").unwrap();
    vs.put(&root, b"b", b"b1").unwrap();
    vs.put(&child, b"b", b"b2").unwrap();
    vs.delete(&child, b"a").unwrap();
    vs.put(&child, b"a\x00", b"ext").unwrap();
    let keys: [&[u8]; 4] = [b"a", b"b", b"missing", b"a\x00"];
    for view in [&root, &child] {
        let many = vs.get_many(view, &keys).unwrap();
        let one: Vec<_> = keys.iter().map(|k| vs.get(view, k).unwrap()).collect();
        assert_eq!(many, one);
    }
    assert_eq!(
        vs.get_many(&child, &keys).unwrap()[1].as_deref(),
        Some(&b"b2"[..])
    );
}

/// One test running one `check_*` function on a fresh store from the enclosing module's `store()`.
macro_rules! case {
    ($name:ident, $check:ident) => {
        #[test]
        fn $name() {
            let (s, _guard) = store();
            $check(&*s);
        }
    };
}

macro_rules! conformance {
    ($engine:ident, $make:expr) => {
        mod $engine {
            use super::*;

            /// A fresh store, and whatever must outlive it (a temporary directory).
            fn store() -> (Arc<dyn KvStore>, Box<dyn std::any::Any>) {
                $make
            }

            case!(empty_store, check_empty_store);
            case!(put_get_overwrite, check_put_get_overwrite);
            case!(delete, check_delete);
            case!(empty_values, check_empty_values);
            case!(large_values, check_large_values);
            case!(ordering, check_ordering);
            case!(scan_bounds, check_scan_bounds);
            case!(early_stop, check_early_stop);
            case!(batch_order, check_batch_order);
            case!(big_batch, check_big_batch);
            case!(visitor_may_write, check_visitor_may_write);
            case!(identity, check_identity);
            case!(scan_ranges, check_scan_ranges);

            #[test]
            fn versioned_get_many() {
                let (s, _guard) = store();
                check_versioned_get_many(s);
            }

            #[test]
            fn batch_atomic_for_readers() {
                let (s, _guard) = store();
                check_batch_atomic_for_readers(s);
            }

            #[test]
            fn versioned_smoke() {
                let (s, _guard) = store();
                check_versioned_smoke(s);
            }
        }
    };
}

conformance!(memory, (Arc::new(MemoryStore::new()), Box::new(())));

conformance!(rocksdb, {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = RocksStore::open(dir.path()).expect("open");
    (Arc::new(s), Box::new(dir))
});

// The engine runs every store behind `Metered`: it must behave exactly like the engine inside.
conformance!(metered_rocksdb, {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = RocksStore::open(dir.path()).expect("open");
    (Arc::new(Metered::new(Arc::new(s))), Box::new(dir))
});

/// Every key selected, so every value longer than a reference goes through the object store.
fn every_key(_: &[u8]) -> bool {
    true
}

fn file_objects(dir: &std::path::Path) -> Objects {
    let url = format!("file://{}/", dir.display());
    Objects::open(&ObjectConfig::new(url)).expect("file objects")
}

// Keys in RocksDB, values as content-addressed objects in local files.
conformance!(content_rocksdb_files, {
    let dir = tempfile::tempdir().expect("tempdir");
    let kv = RocksStore::open(&dir.path().join("kv")).expect("open");
    let objects = file_objects(&dir.path().join("objects"));
    let s = ContentStore::new(Arc::new(kv), objects, every_key, 1 << 20);
    (Arc::new(s), Box::new(dir))
});

// The same with no cache: every read goes to the object store.
conformance!(content_memory_files_uncached, {
    let dir = tempfile::tempdir().expect("tempdir");
    let objects = file_objects(dir.path());
    let s = ContentStore::new(Arc::new(MemoryStore::new()), objects, every_key, 0);
    (Arc::new(s), Box::new(dir))
});

// SlateDB, its LSM's files in a local directory through the object store layer.
conformance!(slatedb_files, {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("file://{}/", dir.path().display());
    let s = SlateStore::open(&ObjectConfig::new(url)).expect("open slatedb");
    (Arc::new(s), Box::new(dir))
});

/// The whole suite against a real S3 server (one SeaweedFS for all checks, fresh prefixes for
/// each): RocksDB keys with every value as an object and no cache, so reads are real requests;
/// and SlateDB with its whole LSM on the server.
#[test]
fn content_rocksdb_seaweedfs() {
    let weed = Seaweed::start();
    type Check = fn(Arc<dyn KvStore>);
    let checks: Vec<(&str, Check)> = vec![
        ("empty_store", |s| check_empty_store(&*s)),
        ("put_get_overwrite", |s| check_put_get_overwrite(&*s)),
        ("delete", |s| check_delete(&*s)),
        ("empty_values", |s| check_empty_values(&*s)),
        ("large_values", |s| check_large_values(&*s)),
        ("ordering", |s| check_ordering(&*s)),
        ("scan_bounds", |s| check_scan_bounds(&*s)),
        ("early_stop", |s| check_early_stop(&*s)),
        ("batch_order", |s| check_batch_order(&*s)),
        ("big_batch", |s| check_big_batch(&*s)),
        ("visitor_may_write", |s| check_visitor_may_write(&*s)),
        ("identity", |s| check_identity(&*s)),
        ("scan_ranges", |s| check_scan_ranges(&*s)),
        ("versioned_get_many", check_versioned_get_many),
        ("batch_atomic_for_readers", check_batch_atomic_for_readers),
        ("versioned_smoke", check_versioned_smoke),
    ];
    let config = |prefix: &str| {
        let mut cfg = ObjectConfig::new(weed.url(prefix));
        for line in weed.options_toml().lines() {
            let (k, v) = line.split_once(" = ").expect("k = v");
            cfg.options.insert(k.into(), v.trim_matches('"').into());
        }
        cfg
    };
    for (name, check) in checks {
        let dir = tempfile::tempdir().expect("tempdir");
        let kv = RocksStore::open(dir.path()).expect("open");
        let objects = Objects::open(&config(name)).expect("seaweedfs objects");
        let s = ContentStore::new(Arc::new(kv), objects, every_key, 0);
        eprintln!("seaweedfs, blocks as objects: {name}");
        check(Arc::new(s));
        // SlateDB with its whole LSM on the S3 server.
        let slate = SlateStore::open(&config(&format!("slate-{name}"))).expect("open slatedb");
        eprintln!("seaweedfs, slatedb: {name}");
        check(Arc::new(slate));
    }
}

#[test]
fn engine_names_differ() {
    let dir = tempfile::tempdir().unwrap();
    let rocks = RocksStore::open(dir.path()).unwrap();
    assert_eq!(rocks.engine_name(), "rocksdb");
    assert_eq!(MemoryStore::new().engine_name(), "memory");
}

/// RocksDB keeps everything across a close and reopen: plain puts, batch ops (including
/// deletes), empty values, and versioned data.
#[test]
fn rocksdb_persists_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let model;
    {
        let s = RocksStore::open(dir.path()).unwrap();
        model = load_tricky(&s);
        s.put(b"zz-empty", b"").unwrap();
        s.put(b"zz-deleted", b"x").unwrap();
        s.delete(b"zz-deleted").unwrap();
        let mut b = WriteBatch::new();
        b.put(b"zz-batched".to_vec(), b"b".to_vec());
        b.delete(b"a".to_vec());
        s.write(b).unwrap();
        s.flush().unwrap();
        // Written after the flush: must survive through the write-ahead log.
        s.put(b"zz-after-flush", b"wal").unwrap();
    }
    let s = RocksStore::open(dir.path()).unwrap();
    let mut expected = model.clone();
    expected.remove(b"a".as_slice());
    expected.insert(b"zz-empty".to_vec(), Vec::new());
    expected.insert(b"zz-batched".to_vec(), b"b".to_vec());
    expected.insert(b"zz-after-flush".to_vec(), b"wal".to_vec());
    assert_eq!(scan_all(&s, b"", b""), model_scan(&expected, b"", b""));
    assert_eq!(s.get(b"zz-deleted").unwrap(), None);
    assert_eq!(s.get(b"zz-empty").unwrap(), Some(Vec::new()));
    // The reopened store takes writes and a second reopen sees them too.
    s.put(b"second", b"2").unwrap();
    s.flush().unwrap();
    drop(s);
    let s = RocksStore::open(dir.path()).unwrap();
    assert_eq!(s.get(b"second").unwrap().as_deref(), Some(&b"2"[..]));
    assert_eq!(
        s.get(b"zz-after-flush").unwrap().as_deref(),
        Some(&b"wal"[..])
    );
}

/// Values of 64 KiB and more live in RocksDB's blob files: they read back whole after a flush
/// moved them there, after overwrites and deletes, from `scan_ranges`, and across a reopen.
#[test]
fn rocksdb_large_values_live_in_blob_files() {
    let dir = tempfile::tempdir().unwrap();
    let value =
        |seed: u8, len: usize| -> Vec<u8> { (0..len).map(|i| (i % 251) as u8 ^ seed).collect() };
    {
        let s = RocksStore::open(dir.path()).unwrap();
        for (i, len) in [(0u8, 64 << 10), (1, (64 << 10) - 1), (2, 3 << 20), (3, 10)] {
            s.put(&[b'k', i], &value(i, len)).unwrap();
        }
        s.put(b"gone", &value(9, 1 << 20)).unwrap();
        s.flush().unwrap();
        // Overwritten and deleted after the flush: the newer values must win over the blobs.
        s.put(&[b'k', 2], &value(7, 2 << 20)).unwrap();
        s.delete(b"gone").unwrap();
        s.flush().unwrap();
    }
    let blobs = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension() == Some("blob".as_ref()))
        .count();
    assert!(blobs > 0, "no blob file was written");
    let s = RocksStore::open(dir.path()).unwrap();
    let expected = [
        (vec![b'k', 0], value(0, 64 << 10)),
        (vec![b'k', 1], value(1, (64 << 10) - 1)),
        (vec![b'k', 2], value(7, 2 << 20)),
        (vec![b'k', 3], value(3, 10)),
    ];
    assert!(scan_all(&s, b"", b"") == expected.to_vec());
    assert_eq!(s.get(b"gone").unwrap(), None);
    let mut ranged = Vec::new();
    s.scan_ranges(
        &[
            (vec![b'k', 2], vec![b'k', 3]),
            (vec![b'k', 0], vec![b'k', 1]),
        ],
        &mut |i, k, v| {
            ranged.push((i, k.to_vec(), v.to_vec()));
            Ok(true)
        },
    )
    .unwrap();
    assert_eq!(ranged.len(), 2);
    assert!(ranged[0] == (0, expected[2].0.clone(), expected[2].1.clone()));
    assert!(ranged[1] == (1, expected[0].0.clone(), expected[0].1.clone()));
}

#[test]
fn rocksdb_versioned_data_persists() {
    let dir = tempfile::tempdir().unwrap();
    let mut dag = Dag::new();
    dag.add(1, vec![]);
    dag.add(2, vec![1]);
    dag.add(3, vec![1]);
    dag.add(4, vec![2, 3]);
    let dag = Arc::new(dag);
    let view = |version| View {
        instance: 3,
        version,
        dag: dag.clone(),
    };
    {
        let kv: Arc<dyn KvStore> = Arc::new(RocksStore::open(dir.path()).unwrap());
        let vs = VersionedStore::new(kv.clone());
        vs.put(&view(1), b"k", b"root").unwrap();
        vs.put(&view(2), b"k", b"left").unwrap();
        vs.put(&view(3), b"k", b"right").unwrap();
        vs.put(&view(1), b"same", b"s").unwrap();
        vs.delete(&view(3), b"same").unwrap();
        kv.flush().unwrap();
    }
    let vs = VersionedStore::new(Arc::new(RocksStore::open(dir.path()).unwrap()));
    assert_eq!(
        vs.get(&view(1), b"k").unwrap().as_deref(),
        Some(&b"root"[..])
    );
    assert_eq!(
        vs.get(&view(2), b"k").unwrap().as_deref(),
        Some(&b"left"[..])
    );
    assert!(matches!(
        vs.get(&view(4), b"k"),
        Err(Error::Conflict { .. })
    ));
    assert_eq!(
        vs.get(&view(2), b"same").unwrap().as_deref(),
        Some(&b"s"[..])
    );
    assert_eq!(vs.get(&view(3), b"same").unwrap(), None);
    // The tombstone at 3 shadows the root's value; 2 does not write it: nothing visible at 4.
    assert_eq!(vs.get(&view(4), b"same").unwrap(), None);
}

/// A directory held open by one store cannot be opened by a second: an error, not a panic or
/// a silently shared database.
#[test]
fn rocksdb_second_open_of_same_dir_fails() {
    let dir = tempfile::tempdir().unwrap();
    let _first = RocksStore::open(dir.path()).unwrap();
    assert!(matches!(
        RocksStore::open(dir.path()),
        Err(Error::Engine(_))
    ));
}

/// A read replica's store: RocksDB's secondary instance sees the writer's database as of its
/// last `refresh`, says whether a refresh brought anything, and refuses writes.
#[test]
fn rocksdb_secondary_follows_the_primary_on_refresh() {
    let dir = tempfile::tempdir().unwrap();
    let primary = RocksStore::open(&dir.path().join("db")).unwrap();
    primary.put(b"a", b"1").unwrap();
    let replica =
        RocksStore::open_secondary(&dir.path().join("db"), &dir.path().join("replica")).unwrap();
    assert_eq!(replica.get(b"a").unwrap().as_deref(), Some(&b"1"[..]));
    assert!(!replica.refresh().unwrap(), "nothing new yet");

    let mut b = WriteBatch::new();
    b.put(b"b".to_vec(), b"2".to_vec());
    b.delete(b"a".to_vec());
    primary.write(b).unwrap();
    assert_eq!(replica.get(b"b").unwrap(), None, "not before a refresh");
    assert!(replica.refresh().unwrap());
    assert_eq!(
        scan_all(&replica, b"", b""),
        vec![(b"b".to_vec(), b"2".to_vec())]
    );
    assert!(!replica.refresh().unwrap());

    assert!(replica.put(b"c", b"3").is_err());
    replica.flush().unwrap();
    assert!(!primary.refresh().unwrap(), "a primary follows nothing");
}

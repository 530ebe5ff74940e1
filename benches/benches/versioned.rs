//! Versioned storage on RocksDB: point reads, point writes and 1000-key range scans at version
//! depth 1 (read at a child of the root, value stored at the root) and depth 50 (read at the leaf
//! of a 50-version chain, value stored at the root), plus reads whose value sits at the leaf
//! itself (depth 0 below the read version). The `resolve_only` group times the DAG walk alone.
//!
//! Run with `cargo bench --bench versioned` (figures in `docs/benchmarks.md`).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use tessera_storage::versioned::{Entry, resolve};
use tessera_storage::{Dag, KvStore, RocksStore, VersionId, VersionedStore, View};

/// Keys per instance.
const KEYS: u32 = 10_000;
/// Keys per range scan.
const RANGE: u32 = 1_000;
/// Value size in bytes.
const VALUE_LEN: usize = 128;

const ROOT: VersionId = 1;
/// The child of the root (depth 1).
const CHILD: VersionId = 2;
/// Chain versions 101..=150: 101's parent is the root, 150 is the leaf, 50 links from the root.
const CHAIN_FIRST: VersionId = 101;
const LEAF: VersionId = 150;

/// Values written at the root.
const AT_ROOT: u32 = 1;
/// Values written at the chain's leaf.
const AT_LEAF: u32 = 2;
/// Instances receiving the write benchmarks' puts (kept apart from the read data).
const WRITES_DEPTH1: u32 = 3;
const WRITES_DEPTH50: u32 = 4;

fn tkey(i: u32) -> Vec<u8> {
    // Shaped like a block key: a type byte and a big-endian index.
    let mut k = vec![0x10];
    k.extend_from_slice(&i.to_be_bytes());
    k
}

/// A deterministic, well-spread key sequence (xorshift), so consecutive reads don't share cache
/// lines and every run reads the same keys.
struct Keys(u32);

impl Keys {
    fn next(&mut self, modulo: u32) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x % modulo
    }
}

/// The root, its child, and the 50-version chain below the root.
fn dag() -> Arc<Dag> {
    let mut dag = Dag::new();
    dag.add(ROOT, vec![]);
    dag.add(CHILD, vec![ROOT]);
    let mut parent = ROOT;
    for v in CHAIN_FIRST..=LEAF {
        dag.add(v, vec![parent]);
        parent = v;
    }
    Arc::new(dag)
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: VersionedStore,
    dag: Arc<Dag>,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let kv: Arc<dyn KvStore> = Arc::new(RocksStore::open(dir.path()).expect("open rocksdb"));
        let store = VersionedStore::new(kv);

        let dag = dag();

        let value = vec![0xAB; VALUE_LEN];
        for (instance, version) in [(AT_ROOT, ROOT), (AT_LEAF, LEAF)] {
            let view = View {
                instance,
                version,
                dag: dag.clone(),
            };
            let mut batch = tessera_storage::WriteBatch::new();
            for i in 0..KEYS {
                tessera_storage::versioned::put_into(&mut batch, &view, &tkey(i), &value);
            }
            store.write(batch).expect("load");
        }
        // Reads come from SST files and the block cache, as after a restart, not the memtable.
        store.kv().flush().expect("flush");
        Fixture {
            _dir: dir,
            store,
            dag,
        }
    }

    fn view(&self, instance: u32, version: VersionId) -> View {
        View {
            instance,
            version,
            dag: self.dag.clone(),
        }
    }
}

fn bench(c: &mut Criterion) {
    let fx = Fixture::new();
    assert_eq!(LEAF - CHAIN_FIRST + 1, 50, "the chain is 50 versions deep");

    let mut g = c.benchmark_group("versioned_get");
    g.throughput(Throughput::Elements(1));
    for (name, instance, version) in [
        ("depth1", AT_ROOT, CHILD),
        ("depth50", AT_ROOT, LEAF),
        ("depth50_value_at_leaf", AT_LEAF, LEAF),
    ] {
        let view = fx.view(instance, version);
        let mut keys = Keys(0x9E37_79B9);
        g.bench_function(name, |b| {
            b.iter(|| {
                let k = tkey(keys.next(KEYS));
                let v = fx.store.get(&view, &k).expect("get");
                assert!(v.is_some());
                black_box(v)
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("versioned_put");
    g.throughput(Throughput::Elements(1));
    let value = vec![0xCD; VALUE_LEN];
    for (name, instance, version) in [
        ("depth1", WRITES_DEPTH1, CHILD),
        ("depth50", WRITES_DEPTH50, LEAF),
    ] {
        let view = fx.view(instance, version);
        let mut keys = Keys(0x85EB_CA6B);
        g.bench_function(name, |b| {
            b.iter(|| {
                let k = tkey(keys.next(KEYS));
                fx.store.put(&view, &k, &value).expect("put");
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("versioned_range_1000");
    g.throughput(Throughput::Elements(RANGE as u64));
    for (name, instance, version) in [
        ("depth1", AT_ROOT, CHILD),
        ("depth50", AT_ROOT, LEAF),
        ("depth50_value_at_leaf", AT_LEAF, LEAF),
    ] {
        let view = fx.view(instance, version);
        let mut keys = Keys(0xC2B2_AE35);
        g.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let first = keys.next(KEYS - RANGE + 1);
                    (tkey(first), tkey(first + RANGE - 1))
                },
                |(start, end)| {
                    let mut n = 0u32;
                    fx.store
                        .range(&view, &start, Some(&end), &mut |k, v| {
                            black_box((k, v));
                            n += 1;
                            Ok(true)
                        })
                        .expect("range");
                    assert_eq!(n, RANGE);
                    n
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

/// The DAG walk alone (`resolve` over one key's stored versions, no storage access): what a
/// deeper read adds on top of the depth-1 read.
fn bench_resolve(c: &mut Criterion) {
    let dag = dag();
    let value = vec![0xAB; VALUE_LEN];
    let mut g = c.benchmark_group("resolve_only");
    g.throughput(Throughput::Elements(1));
    for (name, stored_at, read_at) in [
        ("depth1", ROOT, CHILD),
        ("depth50", ROOT, LEAF),
        ("depth50_value_at_leaf", LEAF, LEAF),
    ] {
        let entries: Vec<Entry> = vec![(stored_at, Some(value.clone()))];
        g.bench_function(name, |b| {
            b.iter(|| {
                let v =
                    resolve(&dag, black_box(read_at), black_box(&entries), b"k").expect("resolve");
                assert!(v.is_some());
                black_box(v.map(<[u8]>::len))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench, bench_resolve);
criterion_main!(benches);

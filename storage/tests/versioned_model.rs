//! Property tests of the versioned view against an independent model.
//!
//! The model keeps every versioned write in a map `(instance, version, key) → value or
//! tombstone` and resolves a read the way the semantics are stated (spec §1.4, with Tessera's one
//! difference): a version that wrote the key answers for itself; otherwise the nearest writes on
//! every parent path are collected, writes that are proper ancestors of another collected write
//! are dropped (tombstones shadow too), and among the remaining non-tombstone values none means
//! not found, identical bytes mean that value, and anything else is a conflict. It shares no code
//! with `versioned.rs`: its own parent lists, its own ancestor sets, its own key order.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use tessera_storage::versioned::{Entry, delete_into, put_into};
use tessera_storage::{
    Dag, Error, KvStore, MemoryStore, RocksStore, VersionId, VersionedStore, View, WriteBatch,
};

/// Keys that are prefixes of one another, contain 0x00 and 0xFF bytes, and the empty key.
const KEYS: &[&[u8]] = &[
    b"",
    b"\x00",
    b"\x00\x00",
    b"\x00\xff",
    b"\x01",
    b"a",
    b"a\x00",
    b"a\x00b",
    b"a\xff",
    b"ab",
    b"b",
    b"\xff",
    b"\xff\xff",
];

/// Few values, so two paths often hold identical bytes; the empty value is not a tombstone.
const VALUES: &[&[u8]] = &[b"", b"x", b"y", b"\x00"];

/// Instances at the edges of the 4-byte instance id.
const INSTANCES: &[u32] = &[0, 1, 0x100, u32::MAX];

const MAX_VERSIONS: usize = 30;

// ---------------------------------------------------------------------------------------------
// Generated plans

#[derive(Debug, Clone)]
enum NodeSpec {
    /// A child of one earlier version.
    Child(Index),
    /// A merge of 2 or 3 distinct earlier versions (a child when fewer than 2 exist).
    Merge(Vec<Index>),
}

#[derive(Debug, Clone)]
struct OpSpec {
    version: Index,
    instance: usize,
    key: usize,
    /// `None` deletes (writes a tombstone).
    value: Option<usize>,
    /// Starts a new write batch before this op (ops of one batch are applied in order).
    new_batch: bool,
}

#[derive(Debug, Clone)]
struct RangeSpec {
    version: Index,
    instance: usize,
    start: Vec<u8>,
    end: Option<Vec<u8>>,
    /// Stop after this many visited keys.
    limit: Option<usize>,
}

#[derive(Debug, Clone)]
struct Plan {
    /// Version ids in creation order (index 0 is the root); arbitrary and unordered, so nothing
    /// may rely on ids growing down the DAG.
    ids: Vec<VersionId>,
    nodes: Vec<NodeSpec>,
    ops: Vec<OpSpec>,
    ranges: Vec<RangeSpec>,
    /// Physically delete every version of this instance's keys after the writes.
    delete_all: Option<usize>,
}

fn version_id() -> impl Strategy<Value = VersionId> {
    prop_oneof![
        1 => Just(0u32),
        1 => Just(u32::MAX),
        1 => Just(0x00FF_FFFF),
        8 => any::<u32>(),
        8 => 1..200u32,
    ]
}

fn bound_key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => (0..KEYS.len()).prop_map(|i| KEYS[i].to_vec()),
        1 => prop::collection::vec(prop_oneof![Just(0u8), Just(b'a'), Just(0xFF), any::<u8>()], 0..4),
    ]
}

fn plan(max_versions: usize, max_ops: usize) -> impl Strategy<Value = Plan> {
    (1..=max_versions).prop_flat_map(move |n| {
        let ids = prop::collection::btree_set(version_id(), n)
            .prop_map(|s| s.into_iter().collect::<Vec<_>>())
            .prop_shuffle();
        let node = prop_oneof![
            3 => any::<Index>().prop_map(NodeSpec::Child),
            2 => prop::collection::vec(any::<Index>(), 2..=3).prop_map(NodeSpec::Merge),
        ];
        let nodes = prop::collection::vec(node, n - 1);
        let op = (
            any::<Index>(),
            0..INSTANCES.len(),
            0..KEYS.len(),
            prop::option::weighted(0.75, 0..VALUES.len()),
            prop::bool::weighted(0.3),
        )
            .prop_map(|(version, instance, key, value, new_batch)| OpSpec {
                version,
                instance,
                key,
                value,
                new_batch,
            });
        let ops = prop::collection::vec(op, 0..=max_ops);
        let range = (
            any::<Index>(),
            0..INSTANCES.len(),
            bound_key(),
            prop::option::weighted(0.7, bound_key()),
            prop::option::weighted(0.3, 1..5usize),
        )
            .prop_map(|(version, instance, start, end, limit)| RangeSpec {
                version,
                instance,
                start,
                end,
                limit,
            });
        let ranges = prop::collection::vec(range, 0..12);
        let delete_all = prop::option::weighted(0.2, 0..INSTANCES.len());
        (ids, nodes, ops, ranges, delete_all).prop_map(|(ids, nodes, ops, ranges, delete_all)| {
            Plan {
                ids,
                nodes,
                ops,
                ranges,
                delete_all,
            }
        })
    })
}

// ---------------------------------------------------------------------------------------------
// The model

/// What the model predicts for one read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Found(Vec<u8>),
    NotFound,
    /// A conflict among these versions' values (sorted).
    Conflict(Vec<VersionId>),
}

struct Model {
    ids: Vec<VersionId>,
    /// Parents of each version, first parent first.
    parents: HashMap<VersionId, Vec<VersionId>>,
    /// Proper ancestors of each version.
    ancestors: HashMap<VersionId, BTreeSet<VersionId>>,
    /// `(instance, version, key) → Some(value)` or `None` for a tombstone; later writes replace.
    writes: BTreeMap<(u32, VersionId, Vec<u8>), Option<Vec<u8>>>,
}

impl Model {
    fn new(plan: &Plan) -> Self {
        let mut parents = HashMap::new();
        parents.insert(plan.ids[0], vec![]);
        for (i, node) in plan.nodes.iter().enumerate() {
            let me = i + 1; // versions 0..me already exist
            let picks: Vec<usize> = match node {
                NodeSpec::Merge(idx) if me >= 2 => {
                    // Distinct earlier versions, probing forward past repeats.
                    let mut out: Vec<usize> = Vec::new();
                    for ix in idx.iter().take(me) {
                        let mut p = ix.index(me);
                        while out.contains(&p) {
                            p = (p + 1) % me;
                        }
                        out.push(p);
                    }
                    out
                }
                NodeSpec::Merge(idx) => vec![idx[0].index(me)],
                NodeSpec::Child(ix) => vec![ix.index(me)],
            };
            parents.insert(plan.ids[me], picks.iter().map(|&p| plan.ids[p]).collect());
        }
        // Parents are created before their children: one pass in creation order.
        let mut ancestors: HashMap<VersionId, BTreeSet<VersionId>> = HashMap::new();
        for v in &plan.ids {
            let mut mine = BTreeSet::new();
            for p in &parents[v] {
                mine.insert(*p);
                mine.extend(ancestors[p].iter().copied());
            }
            ancestors.insert(*v, mine);
        }
        Model {
            ids: plan.ids.clone(),
            parents,
            ancestors,
            writes: BTreeMap::new(),
        }
    }

    fn dag(&self) -> Arc<Dag> {
        let mut dag = Dag::new();
        for v in &self.ids {
            dag.add(*v, self.parents[v].clone());
        }
        Arc::new(dag)
    }

    fn version(&self, ix: &Index) -> VersionId {
        self.ids[ix.index(self.ids.len())]
    }

    /// Every proper ancestor of `v`.
    fn ancestors(&self, v: VersionId) -> &BTreeSet<VersionId> {
        &self.ancestors[&v]
    }

    fn wrote(&self, instance: u32, v: VersionId, key: &[u8]) -> Option<&Option<Vec<u8>>> {
        self.writes.get(&(instance, v, key.to_vec()))
    }

    /// The nearest writes of `key` on every path from `v` up to the root (`v` itself if it wrote).
    fn nearest(&self, instance: u32, v: VersionId, key: &[u8]) -> BTreeSet<VersionId> {
        // Memoized: paths through stacked merges multiply.
        fn search(
            m: &Model,
            instance: u32,
            v: VersionId,
            key: &[u8],
            memo: &mut HashMap<VersionId, BTreeSet<VersionId>>,
        ) -> BTreeSet<VersionId> {
            if let Some(done) = memo.get(&v) {
                return done.clone();
            }
            let out = if m.wrote(instance, v, key).is_some() {
                BTreeSet::from([v])
            } else {
                let mut out = BTreeSet::new();
                for p in &m.parents[&v] {
                    out.extend(search(m, instance, *p, key, memo));
                }
                out
            };
            memo.insert(v, out.clone());
            out
        }
        search(self, instance, v, key, &mut HashMap::new())
    }

    /// The nearest writes not shadowed by another nearest write, keeping only values.
    fn live(&self, instance: u32, v: VersionId, key: &[u8]) -> Vec<(VersionId, &Vec<u8>)> {
        let hits = self.nearest(instance, v, key);
        let shadowed: BTreeSet<VersionId> = hits
            .iter()
            .flat_map(|h| self.ancestors(*h).iter().copied())
            .collect();
        hits.iter()
            .filter(|h| !shadowed.contains(h))
            .filter_map(|h| match self.wrote(instance, *h, key) {
                Some(Some(value)) => Some((*h, value)),
                _ => None,
            })
            .collect()
    }

    fn read(&self, instance: u32, v: VersionId, key: &[u8]) -> Outcome {
        let live = self.live(instance, v, key);
        match live.as_slice() {
            [] => Outcome::NotFound,
            [(_, first), rest @ ..] if rest.iter().all(|(_, v)| v == first) => {
                Outcome::Found((*first).clone())
            }
            _ => Outcome::Conflict(live.iter().map(|(h, _)| *h).collect()),
        }
    }

    /// A range read: keys in `[start, end]` in byte order, not-found keys skipped, stopping after
    /// `limit` visited keys or at the first conflict (reported with its key and versions).
    fn range(&self, r: &RangeRead) -> RangeOutcome {
        let RangeRead {
            instance,
            version: v,
            start,
            end,
            limit,
        } = r.clone();
        let end = end.as_deref();
        let start = start.as_slice();
        let mut keys: Vec<&[u8]> = KEYS.to_vec();
        keys.sort();
        let mut out = Vec::new();
        for k in keys {
            if k < start || end.is_some_and(|e| k > e) {
                continue;
            }
            if limit.is_some_and(|l| out.len() >= l) {
                break;
            }
            match self.read(instance, v, k) {
                Outcome::Found(value) => out.push((k.to_vec(), value)),
                Outcome::NotFound => {}
                Outcome::Conflict(vs) => return (out, Some((k.to_vec(), vs))),
            }
        }
        (out, None)
    }
}

/// One resolved range read to run against the store and the model.
#[derive(Debug, Clone)]
struct RangeRead {
    instance: u32,
    version: VersionId,
    start: Vec<u8>,
    end: Option<Vec<u8>>,
    limit: Option<usize>,
}

/// The visited `(key, value)`s, then the conflict that ended the read, if any.
type RangeOutcome = (Vec<(Vec<u8>, Vec<u8>)>, Option<(Vec<u8>, Vec<VersionId>)>);

// ---------------------------------------------------------------------------------------------
// Running a plan against a store

fn outcome(r: Result<Option<Vec<u8>>, Error>) -> Outcome {
    match r {
        Ok(Some(v)) => Outcome::Found(v),
        Ok(None) => Outcome::NotFound,
        Err(Error::Conflict { versions, .. }) => {
            let mut vs = versions;
            vs.sort();
            Outcome::Conflict(vs)
        }
        Err(e) => panic!("unexpected error {e}"),
    }
}

fn run_plan(plan: &Plan, kv: Arc<dyn KvStore>) -> Result<(), TestCaseError> {
    let mut model = Model::new(plan);
    let dag = model.dag();
    let store = VersionedStore::new(kv);
    let view = |instance: u32, version: VersionId| View {
        instance,
        version,
        dag: dag.clone(),
    };

    // Writes, in batches; a batch's ops apply in order.
    let mut batch = WriteBatch::new();
    for op in &plan.ops {
        if op.new_batch && !batch.is_empty() {
            store.write(std::mem::take(&mut batch)).unwrap();
        }
        let (instance, version, key) = (
            INSTANCES[op.instance],
            model.version(&op.version),
            KEYS[op.key],
        );
        let value = op.value.map(|i| VALUES[i].to_vec());
        match &value {
            Some(v) => put_into(&mut batch, &view(instance, version), key, v),
            None => delete_into(&mut batch, &view(instance, version), key),
        }
        model
            .writes
            .insert((instance, version, key.to_vec()), value);
    }
    store.write(batch).unwrap();
    if let Some(i) = plan.delete_all {
        let instance = INSTANCES[i];
        store.delete_all(instance).unwrap();
        model.writes.retain(|(inst, _, _), _| *inst != instance);
    }

    // Every key at every version of every instance.
    for &instance in INSTANCES {
        for &v in &model.ids {
            for &key in KEYS {
                let got = outcome(store.get(&view(instance, v), key));
                let want = model.read(instance, v, key);
                prop_assert_eq!(
                    &got,
                    &want,
                    "get instance {} version {} key {:?}; dag {:?}",
                    instance,
                    v,
                    key,
                    model.parents
                );
            }
        }
    }

    // The stored versions of every key, as scan_grouped reports them.
    for &instance in INSTANCES {
        let mut visited: Vec<(Vec<u8>, Vec<Entry>)> = Vec::new();
        store
            .scan_grouped(instance, b"", None, &mut |k, entries| {
                let mut e = entries.to_vec();
                e.sort();
                visited.push((k.to_vec(), e));
                Ok(true)
            })
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let order: Vec<Vec<u8>> = visited.iter().map(|(k, _)| k.clone()).collect();
        let got: BTreeMap<_, _> = visited.into_iter().collect();
        prop_assert_eq!(got.len(), order.len(), "a key visited twice: {:?}", order);
        let mut want: BTreeMap<Vec<u8>, Vec<Entry>> = BTreeMap::new();
        for ((inst, v, k), value) in &model.writes {
            if *inst == instance {
                want.entry(k.clone()).or_default().push((*v, value.clone()));
            }
        }
        for e in want.values_mut() {
            e.sort();
        }
        prop_assert_eq!(&got, &want, "scan_grouped instance {}", instance);
        let sorted: Vec<Vec<u8>> = got.keys().cloned().collect();
        prop_assert_eq!(order, sorted, "scan_grouped key order");
    }

    // Range reads: whole-instance ones at every version, then the generated ones.
    let mut ranges: Vec<RangeRead> = Vec::new();
    for &instance in INSTANCES {
        for &version in &model.ids {
            ranges.push(RangeRead {
                instance,
                version,
                start: Vec::new(),
                end: None,
                limit: None,
            });
        }
    }
    for r in &plan.ranges {
        ranges.push(RangeRead {
            instance: INSTANCES[r.instance],
            version: model.version(&r.version),
            start: r.start.clone(),
            end: r.end.clone(),
            limit: r.limit,
        });
    }
    for r in ranges {
        let mut seen = Vec::new();
        let limit = r.limit;
        let result = store.range(
            &view(r.instance, r.version),
            &r.start,
            r.end.as_deref(),
            &mut |k, val| {
                seen.push((k.to_vec(), val.to_vec()));
                Ok(limit.is_none_or(|l| seen.len() < l))
            },
        );
        let (want, want_conflict) = model.range(&r);
        let ctx = format!("{r:?}; dag {:?}", model.parents);
        prop_assert_eq!(&seen, &want, "{}", ctx);
        match (result, want_conflict) {
            (Ok(()), None) => {}
            (Err(Error::Conflict { key, mut versions }), Some((wkey, wversions))) => {
                versions.sort();
                prop_assert_eq!((key, versions), (wkey, wversions), "{}", ctx);
            }
            (got, want) => {
                return Err(TestCaseError::fail(format!(
                    "{ctx}: got {got:?}, want conflict {want:?}"
                )));
            }
        }
    }
    Ok(())
}

fn memory() -> Arc<dyn KvStore> {
    Arc::new(MemoryStore::new())
}

proptest! {
    #![proptest_config(Config { cases: 512, ..Config::default() })]

    #[test]
    fn memory_store_matches_model(plan in plan(MAX_VERSIONS, 80)) {
        run_plan(&plan, memory())?;
    }
}

proptest! {
    // Each case opens a fresh RocksDB directory: fewer cases.
    #![proptest_config(Config { cases: 24, ..Config::default() })]

    #[test]
    fn rocks_store_matches_model(plan in plan(MAX_VERSIONS, 80)) {
        let dir = tempfile::tempdir().unwrap();
        let kv: Arc<dyn KvStore> = Arc::new(RocksStore::open(dir.path()).unwrap());
        run_plan(&plan, kv)?;
    }
}

proptest! {
    #![proptest_config(Config { cases: 256, ..Config::default() })]

    /// Unversioned-style use: every key is written at the root; some versions override some
    /// keys. A version sees the root's value exactly when neither it nor any ancestor other than
    /// the root wrote the key (stated without the model's merge rules).
    #[test]
    fn root_writes_are_seen_by_every_descendant_that_does_not_override(
        plan in plan(MAX_VERSIONS, 12)
    ) {
        let model = Model::new(&plan);
        let dag = model.dag();
        let store = VersionedStore::new(memory());
        let root = model.ids[0];
        let view = |version| View { instance: 9, version, dag: dag.clone() };
        let root_value = |k: &[u8]| {
            let mut v = b"root:".to_vec();
            v.extend_from_slice(k);
            v
        };
        for &k in KEYS {
            store.put(&view(root), k, &root_value(k)).unwrap();
        }
        // Overrides at non-root versions (the generated ops, minus any at the root).
        let mut overridden: BTreeSet<(VersionId, &[u8])> = BTreeSet::new();
        for op in &plan.ops {
            let v = model.version(&op.version);
            if v == root {
                continue;
            }
            let k = KEYS[op.key];
            match op.value {
                Some(i) => store.put(&view(v), k, VALUES[i]).unwrap(),
                None => store.delete(&view(v), k).unwrap(),
            }
            overridden.insert((v, k));
        }
        for &v in &model.ids {
            let mut lineage = model.ancestors(v).clone();
            lineage.insert(v);
            for &k in KEYS {
                let untouched = lineage.iter().all(|a| !overridden.contains(&(*a, k)));
                if untouched {
                    prop_assert_eq!(
                        store.get(&view(v), k).unwrap(),
                        Some(root_value(k)),
                        "version {} key {:?}", v, k
                    );
                }
            }
        }
        // Whole-range reads agree with point reads.
        for &v in &model.ids {
            let mut seen = Vec::new();
            let r = store.range(&view(v), b"", None, &mut |k, val| {
                seen.push((k.to_vec(), val.to_vec()));
                Ok(true)
            });
            let mut sorted: Vec<&[u8]> = KEYS.to_vec();
            sorted.sort();
            let mut want = Vec::new();
            let mut conflict = false;
            for k in sorted {
                match store.get(&view(v), k) {
                    Ok(Some(val)) => want.push((k.to_vec(), val)),
                    Ok(None) => {}
                    Err(Error::Conflict { .. }) => { conflict = true; break; }
                    Err(e) => panic!("{e}"),
                }
            }
            prop_assert_eq!(seen, want);
            prop_assert_eq!(r.is_err(), conflict);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Fixed scenarios: the semantics spelled out on small DAGs, for readers and for regressions.

struct Fixed {
    store: VersionedStore,
    dag: Arc<Dag>,
}

impl Fixed {
    /// 1 ← 2 ← 4, 1 ← 3, merge 5 = [2, 3], merge 6 = [4, 3], 7 ← 5, merge 8 = [5, 3] (3 is
    /// already an ancestor of 5), 9 = merge [6, 5].
    fn new() -> Self {
        let mut dag = Dag::new();
        dag.add(1, vec![]);
        dag.add(2, vec![1]);
        dag.add(3, vec![1]);
        dag.add(4, vec![2]);
        dag.add(5, vec![2, 3]);
        dag.add(6, vec![4, 3]);
        dag.add(7, vec![5]);
        dag.add(8, vec![5, 3]);
        dag.add(9, vec![6, 5]);
        Fixed {
            store: VersionedStore::new(memory()),
            dag: Arc::new(dag),
        }
    }
    fn v(&self, version: VersionId) -> View {
        View {
            instance: 1,
            version,
            dag: self.dag.clone(),
        }
    }
    fn put(&self, version: VersionId, k: &[u8], val: &[u8]) {
        self.store.put(&self.v(version), k, val).unwrap();
    }
    fn del(&self, version: VersionId, k: &[u8]) {
        self.store.delete(&self.v(version), k).unwrap();
    }
    fn get(&self, version: VersionId, k: &[u8]) -> Outcome {
        outcome(self.store.get(&self.v(version), k))
    }
}

fn found(v: &[u8]) -> Outcome {
    Outcome::Found(v.to_vec())
}

#[test]
fn different_values_on_two_paths_conflict() {
    let f = Fixed::new();
    f.put(2, b"k", b"left");
    f.put(3, b"k", b"right");
    assert_eq!(f.get(5, b"k"), Outcome::Conflict(vec![2, 3]));
    assert_eq!(
        f.get(7, b"k"),
        Outcome::Conflict(vec![2, 3]),
        "inherited below the merge"
    );
    assert_eq!(f.get(4, b"k"), found(b"left"));
    assert_eq!(f.get(6, b"k"), Outcome::Conflict(vec![2, 3]));
    // Writing at the merge resolves it there and below.
    f.put(5, b"k", b"fixed");
    assert_eq!(f.get(5, b"k"), found(b"fixed"));
    assert_eq!(f.get(7, b"k"), found(b"fixed"));
    // 9 = [6, 5]: the paths via 6 still reach 2 and 3, but both are ancestors of 5's write.
    assert_eq!(f.get(9, b"k"), found(b"fixed"));
    // The conflict error names the key.
    match f.store.get(&f.v(6), b"k") {
        Err(Error::Conflict { key, .. }) => assert_eq!(key, b"k"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn identical_values_on_two_paths_are_not_a_conflict() {
    let f = Fixed::new();
    f.put(2, b"k", b"same");
    f.put(3, b"k", b"same");
    assert_eq!(f.get(5, b"k"), found(b"same"));
    f.put(2, b"e", b"");
    f.put(3, b"e", b"");
    assert_eq!(f.get(5, b"e"), found(b""));
    // Empty bytes differ from "x".
    f.put(2, b"d", b"");
    f.put(3, b"d", b"x");
    assert_eq!(f.get(5, b"d"), Outcome::Conflict(vec![2, 3]));
}

#[test]
fn an_ancestor_on_another_path_is_shadowed() {
    let f = Fixed::new();
    f.put(1, b"k", b"root");
    f.put(2, b"k", b"two");
    // 5 = [2, 3]: path via 3 reaches the root's write, which is an ancestor of 2's.
    assert_eq!(f.get(5, b"k"), found(b"two"));
    // 8 = [5, 3]: 3 is itself an ancestor of 5.
    assert_eq!(f.get(8, b"k"), found(b"two"));
    f.put(3, b"k", b"three");
    assert_eq!(f.get(8, b"k"), Outcome::Conflict(vec![2, 3]));
}

#[test]
fn tombstones_shadow_and_hide() {
    let f = Fixed::new();
    f.put(1, b"k", b"root");
    f.del(2, b"k");
    assert_eq!(
        f.get(1, b"k"),
        found(b"root"),
        "ancestors keep their values"
    );
    assert_eq!(f.get(2, b"k"), Outcome::NotFound);
    assert_eq!(f.get(4, b"k"), Outcome::NotFound);
    assert_eq!(f.get(3, b"k"), found(b"root"));
    // 5 = [2, 3]: the tombstone at 2 shadows the root's value reached through 3.
    assert_eq!(f.get(5, b"k"), Outcome::NotFound);
    // A tombstone on one path and a value on the other: the value.
    f.put(3, b"k", b"three");
    assert_eq!(f.get(5, b"k"), found(b"three"));
    // Re-putting at the deleting version replaces the tombstone.
    f.put(2, b"k", b"two");
    assert_eq!(f.get(2, b"k"), found(b"two"));
    assert_eq!(f.get(5, b"k"), Outcome::Conflict(vec![2, 3]));
    // And deleting at the merge hides it below.
    f.del(5, b"k");
    assert_eq!(f.get(7, b"k"), Outcome::NotFound);
}

#[test]
fn ranges_resolve_key_by_key_and_stop_at_a_conflict() {
    let f = Fixed::new();
    f.put(1, b"a", b"1");
    f.put(1, b"a\x00", b"2");
    f.put(2, b"b", b"L");
    f.put(3, b"b", b"R");
    f.put(1, b"c", b"3");
    f.del(3, b"a\x00");
    let collect = |version, start: &[u8], end: Option<&[u8]>| {
        let mut seen = Vec::new();
        let r = f.store.range(&f.v(version), start, end, &mut |k, v| {
            seen.push((k.to_vec(), v.to_vec()));
            Ok(true)
        });
        (seen, r)
    };
    let (seen, r) = collect(2, b"", None);
    assert!(r.is_ok());
    assert_eq!(
        seen,
        vec![
            (b"a".to_vec(), b"1".to_vec()),
            (b"a\x00".to_vec(), b"2".to_vec()),
            (b"b".to_vec(), b"L".to_vec()),
            (b"c".to_vec(), b"3".to_vec()),
        ]
    );
    let (seen, r) = collect(5, b"", None);
    assert_eq!(seen, vec![(b"a".to_vec(), b"1".to_vec())]);
    assert!(matches!(r, Err(Error::Conflict { key, .. }) if key == b"b"));
    // The end is inclusive and exact: [a, a] holds "a" but not "a\0".
    let (seen, _) = collect(2, b"a", Some(b"a"));
    assert_eq!(seen, vec![(b"a".to_vec(), b"1".to_vec())]);
    // A range ending before the conflicting key succeeds.
    let (seen, r) = collect(5, b"a", Some(b"a\xff"));
    assert!(r.is_ok());
    assert_eq!(seen, vec![(b"a".to_vec(), b"1".to_vec())]);
    // start > end is empty, not an error.
    let (seen, r) = collect(2, b"c", Some(b"a"));
    assert!(r.is_ok() && seen.is_empty());
}

#[test]
fn unversioned_root_writes_visible_everywhere() {
    let f = Fixed::new();
    for k in KEYS {
        f.put(1, k, b"r");
    }
    for v in 1..=9 {
        for k in KEYS {
            assert_eq!(f.get(v, k), found(b"r"), "version {v} key {k:?}");
        }
    }
    // An override on one branch is seen below it and not elsewhere.
    f.put(3, b"a", b"three");
    for (v, want) in [
        (1, &b"r"[..]),
        (2, b"r"),
        (3, b"three"),
        (4, b"r"),
        (5, b"three"),
        (6, b"three"),
        (7, b"three"),
        (8, b"three"),
        (9, b"three"),
    ] {
        assert_eq!(f.get(v, b"a"), found(want), "version {v}");
    }
}

#[test]
fn instances_are_isolated() {
    let f = Fixed::new();
    let other = View {
        instance: 2,
        version: 1,
        dag: f.dag.clone(),
    };
    f.put(1, b"k", b"one");
    assert_eq!(f.store.get(&other, b"k").unwrap(), None);
    f.store.put(&other, b"k", b"two").unwrap();
    f.store.delete_all(1).unwrap();
    assert_eq!(f.get(1, b"k"), Outcome::NotFound);
    assert_eq!(
        f.store.get(&other, b"k").unwrap().as_deref(),
        Some(&b"two"[..])
    );
}

/// The generator must actually produce the interesting cases: conflicts, identical values
/// meeting at a merge, tombstones shadowing, nested merges.
#[test]
fn generator_covers_the_interesting_cases() {
    let mut runner = TestRunner::deterministic();
    let strategy = plan(MAX_VERSIONS, 80);
    let (mut conflicts, mut agreeing_merges, mut shadowing_tombstones, mut merges) = (0, 0, 0, 0);
    for _ in 0..300 {
        let plan = strategy.new_tree(&mut runner).unwrap().current();
        let mut model = Model::new(&plan);
        for op in &plan.ops {
            let v = model.version(&op.version);
            model.writes.insert(
                (INSTANCES[op.instance], v, KEYS[op.key].to_vec()),
                op.value.map(|i| VALUES[i].to_vec()),
            );
        }
        merges += model.parents.values().filter(|p| p.len() >= 2).count();
        for &instance in INSTANCES {
            for &v in &model.ids {
                for &k in KEYS {
                    let lineage_has_value = std::iter::once(v)
                        .chain(model.ancestors(v).iter().copied())
                        .any(|a| matches!(model.wrote(instance, a, k), Some(Some(_))));
                    match model.read(instance, v, k) {
                        Outcome::Conflict(_) => conflicts += 1,
                        Outcome::Found(_) if model.live(instance, v, k).len() >= 2 => {
                            agreeing_merges += 1
                        }
                        Outcome::NotFound if lineage_has_value => shadowing_tombstones += 1,
                        _ => {}
                    }
                }
            }
        }
    }
    assert!(merges > 300, "merges: {merges}");
    assert!(conflicts > 50, "conflicts: {conflicts}");
    assert!(agreeing_merges > 20, "agreeing merges: {agreeing_merges}");
    assert!(
        shadowing_tombstones > 50,
        "tombstones: {shadowing_tombstones}"
    );
}

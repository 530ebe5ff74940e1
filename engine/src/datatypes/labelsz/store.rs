//! Reading and writing a labelsz instance's counts at one version (see [`super::keys`]).
//! Reads never scan more than they answer: a count is one key, `top`/`threshold` a prefix of
//! one type's ordering keys.

use std::collections::BTreeMap;

use tessera_storage::versioned::{delete_into, put_into};
use tessera_storage::{VersionedStore, View, WriteBatch};

use super::keys::{
    Counts, IndexType, count_key, count_range, decode_count, decode_count_key, decode_order_key,
    encode_count, order_key, order_range,
};
use crate::{Error, Result};

/// Labels read per storage call in batch reads.
const CHUNK: usize = 4096;

/// The count of (type, label) at the view's version; 0 when none.
pub fn count(store: &VersionedStore, view: &View, ty: IndexType, label: u64) -> Result<u32> {
    match store.get(view, &count_key(ty, label))? {
        Some(v) => decode_count(&v),
        None => Ok(0),
    }
}

/// The counts of one type for `labels`, in their order.
pub fn counts_of(
    store: &VersionedStore,
    view: &View,
    ty: IndexType,
    labels: &[u64],
) -> Result<Vec<u32>> {
    let mut out = Vec::with_capacity(labels.len());
    for chunk in labels.chunks(CHUNK) {
        let keys: Vec<Vec<u8>> = chunk.iter().map(|&l| count_key(ty, l)).collect();
        let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        for v in store.get_many(view, &refs)? {
            out.push(match v {
                Some(v) => decode_count(&v)?,
                None => 0,
            });
        }
    }
    Ok(out)
}

/// Every type's count of each of `labels`, in their order.
pub fn label_counts(store: &VersionedStore, view: &View, labels: &[u64]) -> Result<Vec<Counts>> {
    let mut out = vec![[0u32; 5]; labels.len()];
    for ty in IndexType::ALL {
        for (c, n) in out.iter_mut().zip(counts_of(store, view, ty, labels)?) {
            c[ty.slot()] = n;
        }
    }
    Ok(out)
}

/// Every stored count at the view's version, by label (a whole-instance read, for reload).
pub fn all_counts(store: &VersionedStore, view: &View) -> Result<BTreeMap<u64, Counts>> {
    let (lo, hi) = count_range();
    let mut out: BTreeMap<u64, Counts> = BTreeMap::new();
    store.range(view, &lo, Some(&hi), &mut |k, v| {
        let (ty, label) = decode_count_key(k)
            .ok_or_else(|| tessera_storage::Error::Corrupt(format!("labelsz count key {k:?}")))?;
        let n = decode_count(v)
            .map_err(|e| tessera_storage::Error::Corrupt(format!("labelsz count: {e}")))?;
        out.entry(label).or_default()[ty.slot()] = n;
        Ok(true)
    })?;
    Ok(out)
}

/// Ordering keys read per round of `ranked`, at most.
const ROUND: usize = 10_000;

/// Labels with count ≥ `min` of `ty`, by count descending then label ascending: `limit` of
/// them after skipping the first `offset`.
///
/// Ordering keys are read in rounds and each is checked against its label's count key, which
/// is the truth: an ordering key whose count is not the label's count at this version is
/// skipped. Such a key can only be seen where an ancestor changed a count after this version
/// changed it too (a sync event of the parent applied late), since a version then inherits
/// the ancestor's new ordering key while its own count key hides the ancestor's count.
pub fn ranked(
    store: &VersionedStore,
    view: &View,
    ty: IndexType,
    min: u32,
    offset: u64,
    limit: usize,
) -> Result<Vec<(u64, u32)>> {
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    let (mut start, hi) = order_range(ty);
    let mut skipped = 0u64;
    loop {
        let need = (limit - out.len()) as u64 + (offset - skipped);
        let round = need.clamp(16, ROUND as u64) as usize;
        let mut keys: Vec<Vec<u8>> = Vec::new();
        let mut found: Vec<(u64, u32)> = Vec::new();
        let mut below = false;
        let mut bad = None;
        store.range(view, &start, Some(&hi), &mut |k, _| {
            let Some((_, n, label)) = decode_order_key(k).filter(|d| d.0 == ty) else {
                bad = Some(k.to_vec());
                return Ok(false);
            };
            if n < min {
                below = true;
                return Ok(false);
            }
            keys.push(k.to_vec());
            found.push((label, n));
            Ok(found.len() < round)
        })?;
        if let Some(k) = bad {
            return Err(Error::Internal(format!("labelsz ordering key {k:?}")));
        }
        let labels: Vec<u64> = found.iter().map(|f| f.0).collect();
        let actual = counts_of(store, view, ty, &labels)?;
        for ((label, n), c) in found.iter().zip(actual) {
            if c != *n {
                continue;
            }
            if skipped < offset {
                skipped += 1;
                continue;
            }
            out.push((*label, *n));
            if out.len() == limit {
                return Ok(out);
            }
        }
        if below || found.len() < round {
            return Ok(out);
        }
        // Ordering keys all have one length, so the next possible key follows the last.
        start = keys.pop().expect("a full round");
        start.push(0);
    }
}

/// Adds to `batch` what turns `label`'s counts from `old` (what the view's version holds)
/// into `new`: for each type that changed, the old ordering key is removed and the new count
/// and ordering key written; a count of 0 removes both keys. Returns how many types changed.
pub fn put_change(
    batch: &mut WriteBatch,
    view: &View,
    label: u64,
    old: &Counts,
    new: &Counts,
) -> usize {
    let mut changed = 0;
    for ty in IndexType::ALL {
        let (o, n) = (old[ty.slot()], new[ty.slot()]);
        if o == n {
            continue;
        }
        changed += 1;
        if o > 0 {
            delete_into(batch, view, &order_key(ty, o, label));
        }
        if n > 0 {
            put_into(batch, view, &count_key(ty, label), &encode_count(n));
            put_into(batch, view, &order_key(ty, n, label), &[]);
        } else {
            delete_into(batch, view, &count_key(ty, label));
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tessera_storage::{Dag, MemoryStore};

    use super::*;

    fn setup() -> (VersionedStore, View, View) {
        let store = VersionedStore::new(Arc::new(MemoryStore::new()));
        let mut dag = Dag::new();
        dag.add(1, vec![]);
        dag.add(2, vec![1]);
        let dag = Arc::new(dag);
        let view = |version| View {
            instance: 9,
            version,
            dag: dag.clone(),
        };
        (store, view(1), view(2))
    }

    /// Sets absolute counts as the sync worker does: read what is there, write the change.
    fn set(store: &VersionedStore, view: &View, updates: &[(u64, Counts)]) {
        let labels: Vec<u64> = updates.iter().map(|u| u.0).collect();
        let old = label_counts(store, view, &labels).unwrap();
        let mut batch = WriteBatch::new();
        for ((label, new), old) in updates.iter().zip(&old) {
            put_change(&mut batch, view, *label, old, new);
        }
        store.write(batch).unwrap();
    }

    fn one(ty: IndexType, n: u32) -> Counts {
        let mut c = [0; 5];
        c[ty.slot()] = n;
        c
    }

    #[test]
    fn counts_top_and_threshold_follow_absolute_updates() {
        let (store, v1, _) = setup();
        let pre = IndexType::PreSyn;
        set(
            &store,
            &v1,
            &[
                (10, one(pre, 5)),
                (20, one(pre, 7)),
                (30, one(pre, 5)),
                (40, one(pre, 1)),
                (50, one(IndexType::Note, 9)),
            ],
        );
        assert_eq!(count(&store, &v1, pre, 20).unwrap(), 7);
        assert_eq!(count(&store, &v1, pre, 50).unwrap(), 0);
        assert_eq!(
            counts_of(&store, &v1, pre, &[40, 99, 10, 40]).unwrap(),
            [1, 0, 5, 1]
        );
        assert_eq!(
            ranked(&store, &v1, pre, 0, 0, 3).unwrap(),
            [(20, 7), (10, 5), (30, 5)]
        );
        assert_eq!(ranked(&store, &v1, pre, 5, 0, 100).unwrap().len(), 3);
        assert_eq!(
            ranked(&store, &v1, pre, 0, 2, 2).unwrap(),
            [(30, 5), (40, 1)]
        );
        assert_eq!(ranked(&store, &v1, pre, 0, 4, 10).unwrap(), []);
        assert_eq!(ranked(&store, &v1, pre, 8, 0, 10).unwrap(), []);
        assert_eq!(ranked(&store, &v1, pre, 0, 0, 0).unwrap(), []);
        assert_eq!(
            ranked(&store, &v1, IndexType::Note, 0, 0, 10).unwrap(),
            [(50, 9)]
        );
        assert_eq!(ranked(&store, &v1, IndexType::Gap, 0, 0, 10).unwrap(), []);

        // Counts move: the old ordering keys go with them; 0 removes the label.
        set(
            &store,
            &v1,
            &[(10, one(pre, 8)), (20, [0; 5]), (30, one(pre, 5))],
        );
        assert_eq!(
            ranked(&store, &v1, pre, 0, 0, 10).unwrap(),
            [(10, 8), (30, 5), (40, 1)]
        );
        assert_eq!(count(&store, &v1, pre, 20).unwrap(), 0);
        let all = all_counts(&store, &v1).unwrap();
        assert_eq!(all.keys().copied().collect::<Vec<_>>(), [10, 30, 40, 50]);
        assert_eq!(all[&50], one(IndexType::Note, 9));
    }

    #[test]
    fn a_child_sees_the_parent_until_it_changes() {
        let (store, v1, v2) = setup();
        let ty = IndexType::AllSyn;
        set(&store, &v1, &[(1, one(ty, 3)), (2, one(ty, 2))]);
        assert_eq!(ranked(&store, &v2, ty, 0, 0, 10).unwrap(), [(1, 3), (2, 2)]);
        set(&store, &v2, &[(1, [0; 5]), (2, one(ty, 5))]);
        assert_eq!(ranked(&store, &v2, ty, 0, 0, 10).unwrap(), [(2, 5)]);
        assert_eq!(count(&store, &v2, ty, 1).unwrap(), 0);
        assert_eq!(ranked(&store, &v1, ty, 0, 0, 10).unwrap(), [(1, 3), (2, 2)]);
        assert_eq!(count(&store, &v1, ty, 1).unwrap(), 3);
        assert_eq!(all_counts(&store, &v2).unwrap().len(), 1);
        assert_eq!(all_counts(&store, &v1).unwrap().len(), 2);
    }

    #[test]
    fn applying_the_same_counts_twice_changes_nothing() {
        let (store, v1, _) = setup();
        let c = [1, 2, 3, 4, 6];
        set(&store, &v1, &[(7, c)]);
        let old = label_counts(&store, &v1, &[7]).unwrap();
        assert_eq!(old, [c]);
        let mut batch = WriteBatch::new();
        assert_eq!(put_change(&mut batch, &v1, 7, &old[0], &c), 0);
        assert!(batch.is_empty());
    }

    #[test]
    fn top_matches_a_sort_over_many_labels() {
        let (store, v1, _) = setup();
        let ty = IndexType::PostSyn;
        // Deterministic pseudo-random counts with many ties.
        let mut x = 0x9E37_79B9u64;
        let mut updates = Vec::new();
        for label in 1..=3000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            updates.push((label * 7919 % 100_003, one(ty, (x % 50) as u32 + 1)));
        }
        set(&store, &v1, &updates);
        // A second round moves a third of them.
        let moved: Vec<(u64, Counts)> = updates
            .iter()
            .step_by(3)
            .map(|(l, c)| (*l, one(ty, (c[ty.slot()] * 7) % 60)))
            .collect();
        set(&store, &v1, &moved);
        let mut want: BTreeMap<u64, u32> =
            updates.iter().map(|(l, c)| (*l, c[ty.slot()])).collect();
        for (l, c) in &moved {
            want.insert(*l, c[ty.slot()]);
        }
        let mut sorted: Vec<(u64, u32)> = want.into_iter().filter(|e| e.1 > 0).collect();
        sorted.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        assert_eq!(ranked(&store, &v1, ty, 0, 0, 100).unwrap(), sorted[..100]);
        let t = 20;
        let above: Vec<(u64, u32)> = sorted.iter().copied().filter(|e| e.1 >= t).collect();
        let mut paged = Vec::new();
        let mut offset = 0;
        loop {
            let page = ranked(&store, &v1, ty, t, offset, 97).unwrap();
            if page.is_empty() {
                break;
            }
            offset += page.len() as u64;
            paged.extend(page);
        }
        assert_eq!(paged, above);
    }

    #[test]
    fn a_late_parent_change_does_not_show_twice_in_a_child() {
        let (store, v1, v2) = setup();
        let ty = IndexType::PreSyn;
        set(&store, &v1, &[(1, one(ty, 5)), (2, one(ty, 4))]);
        // The child recounts label 1, then a late event of the parent recounts it there.
        set(&store, &v2, &[(1, one(ty, 7))]);
        set(&store, &v1, &[(1, one(ty, 6))]);
        assert_eq!(ranked(&store, &v2, ty, 0, 0, 10).unwrap(), [(1, 7), (2, 4)]);
        assert_eq!(ranked(&store, &v2, ty, 0, 1, 10).unwrap(), [(2, 4)]);
        assert_eq!(ranked(&store, &v1, ty, 0, 0, 10).unwrap(), [(1, 6), (2, 4)]);
        // Many stale keys ahead of the live ones: rounds continue past them.
        let many: Vec<(u64, Counts)> = (100..200).map(|l| (l, one(ty, 50))).collect();
        set(&store, &v1, &many);
        let zero: Vec<(u64, Counts)> = (100..200).map(|l| (l, [0; 5])).collect();
        set(&store, &v2, &zero);
        let raised: Vec<(u64, Counts)> = (100..200).map(|l| (l, one(ty, 60))).collect();
        set(&store, &v1, &raised);
        assert_eq!(ranked(&store, &v2, ty, 0, 0, 3).unwrap(), [(1, 7), (2, 4)]);
        assert_eq!(
            ranked(&store, &v1, ty, 0, 99, 3).unwrap(),
            [(199, 60), (1, 6), (2, 4)]
        );
    }

    /// A store that counts the keys its scans visit.
    struct Counting<S> {
        inner: S,
        visited: std::sync::atomic::AtomicUsize,
    }

    impl<S: tessera_storage::KvStore> tessera_storage::KvStore for Counting<S> {
        fn get(&self, key: &[u8]) -> tessera_storage::Result<Option<Vec<u8>>> {
            self.inner.get(key)
        }
        fn put(&self, key: &[u8], value: &[u8]) -> tessera_storage::Result<()> {
            self.inner.put(key, value)
        }
        fn delete(&self, key: &[u8]) -> tessera_storage::Result<()> {
            self.inner.delete(key)
        }
        fn scan(
            &self,
            start: &[u8],
            end: &[u8],
            visit: &mut dyn FnMut(&[u8], &[u8]) -> tessera_storage::Result<bool>,
        ) -> tessera_storage::Result<()> {
            self.inner.scan(start, end, &mut |k, v| {
                self.visited
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                visit(k, v)
            })
        }
        fn write(&self, batch: WriteBatch) -> tessera_storage::Result<()> {
            self.inner.write(batch)
        }
        fn flush(&self) -> tessera_storage::Result<()> {
            self.inner.flush()
        }
        fn sync(&self) -> tessera_storage::Result<()> {
            self.inner.sync()
        }
        fn engine_name(&self) -> &'static str {
            "counting"
        }
    }

    /// ~100k labels holding ~1M synapses, then proofreading churn: half the largest labels
    /// merged away (their old ordering keys become tombstones at the top of the range) and
    /// many others grown. Returns the store, the view and the expected ranking.
    fn big<S: tessera_storage::KvStore + 'static>(
        kv: Arc<S>,
    ) -> (VersionedStore, View, Vec<(u64, u32)>) {
        let store = VersionedStore::new(kv);
        let mut dag = Dag::new();
        dag.add(1, vec![]);
        let view = View {
            instance: 4,
            version: 1,
            dag: Arc::new(dag),
        };
        let ty = IndexType::AllSyn;
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut want: BTreeMap<u64, u32> = BTreeMap::new();
        let mut batch = WriteBatch::new();
        for label in 1..=100_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Heavy-tailed: most labels small, a few large (mean ~10).
            let n = (1 + x % 8) as u32 * if x.is_multiple_of(97) { 60 } else { 1 } + (x % 5) as u32;
            put_change(&mut batch, &view, label, &[0; 5], &one(ty, n));
            want.insert(label, n);
        }
        store.write(batch).unwrap();
        let mut top: Vec<(u64, u32)> = want.iter().map(|(l, n)| (*l, *n)).collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut batch = WriteBatch::new();
        for (i, (label, n)) in top.iter().take(1000).enumerate() {
            let new = if i % 2 == 0 { 0 } else { n + 3 };
            put_change(&mut batch, &view, *label, &one(ty, *n), &one(ty, new));
            want.insert(*label, new);
        }
        for label in (1..=100_000u64).step_by(7) {
            let n = want[&label];
            if n > 0 {
                put_change(&mut batch, &view, label, &one(ty, n), &one(ty, n + 1));
                want.insert(label, n + 1);
            }
        }
        store.write(batch).unwrap();
        let mut ranked: Vec<(u64, u32)> = want.into_iter().filter(|e| e.1 > 0).collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        (store, view, ranked)
    }

    #[test]
    fn top_and_threshold_read_a_short_prefix_of_the_range() {
        let kv = Arc::new(Counting {
            inner: MemoryStore::new(),
            visited: Default::default(),
        });
        let (store, view, want) = big(kv.clone());
        let ty = IndexType::AllSyn;
        let visited = || kv.visited.swap(0, std::sync::atomic::Ordering::Relaxed);
        visited();
        assert_eq!(ranked(&store, &view, ty, 0, 0, 100).unwrap(), want[..100]);
        // 100 live keys, plus the tombstones of the 500 labels merged away from the top.
        let n = visited();
        assert!(n <= 100 + 2 * 500 + 10, "top/100 visited {n} keys");
        let t = want[300].1;
        let page = ranked(&store, &view, ty, t, 200, 50).unwrap();
        assert_eq!(page, want[200..250]);
        let n = visited();
        assert!(n <= 250 + 2 * 500 + 10, "threshold page visited {n} keys");
        assert_eq!(count(&store, &view, ty, want[7].0).unwrap(), want[7].1);
        assert!(visited() <= 2);
    }
}

//! A store whose large values live as content-addressed objects: the ordered KV keeps every key
//! and, for the keys a rule selects (blocks), a 33-byte reference naming an immutable object by
//! the BLAKE3 hash of the value. Identical values, across versions and instances, are stored
//! once; a value is never rewritten in place, so a committed version's objects never change.
//!
//! Encoding of a selected key's value in the KV (other keys' values pass unchanged):
//! - `0x02 ‖ hash` — the value is the object named `hash`;
//! - `0x03 ‖ value` — an inline value whose first byte is 0x02 or 0x03 (escaped);
//! - anything else — the value itself, inline. Values no longer than a reference stay inline:
//!   a tombstone or a solid block costs no object and no request.
//!
//! Writes upload the objects first, then write the KV batch that references them, so a crash
//! between the two leaves only unreferenced objects (collected by [`ContentStore::gc`]), never a
//! reference to a missing object.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};

use crate::disk_cache::DiskCache;
use crate::object::{Hash, Objects, hash_of};
use crate::{Error, KvStore, Result, WriteBatch, WriteOp};

const REF: u8 = 0x02;
const ESCAPED: u8 = 0x03;
const REF_LEN: usize = 33;
/// Entries a scan gathers before resolving their references together.
const SCAN_CHUNK: usize = 256;

/// Which keys' values may become objects.
pub type Selector = fn(&[u8]) -> bool;

#[derive(Clone)]
struct ByLen;

impl quick_cache::Weighter<Hash, Bytes> for ByLen {
    fn weight(&self, _: &Hash, v: &Bytes) -> u64 {
        v.len() as u64 + 64
    }
}

/// What a collection found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    /// Distinct hashes referenced by any key at any version.
    pub referenced: u64,
    /// Objects in the object store when the sweep began.
    pub objects: u64,
    pub deleted: u64,
    pub deleted_bytes: u64,
    /// Unreferenced but younger than the grace period (or written during the collection).
    pub kept_recent: u64,
}

/// Object traffic since the store opened (read at scrape time: docs/observability.md).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ObjectIo {
    pub gets: u64,
    pub get_bytes: u64,
    pub puts: u64,
    pub put_bytes: u64,
    pub cache_hits: u64,
    /// Reads answered by the disk cache.
    pub disk_hits: u64,
}

#[derive(Default)]
struct Counters {
    gets: AtomicU64,
    get_bytes: AtomicU64,
    puts: AtomicU64,
    put_bytes: AtomicU64,
    cache_hits: AtomicU64,
    disk_hits: AtomicU64,
}

/// Hashes written while a collection runs: the sweep must not delete them, whatever the mark
/// phase saw.
#[derive(Default)]
struct Sweep {
    active: bool,
    written: HashSet<Hash>,
}

pub struct ContentStore {
    kv: Arc<dyn KvStore>,
    objects: Objects,
    selects: Selector,
    /// Objects known to exist, with their bytes: serves hot reads, and lets a write skip the
    /// upload of an object it already has (the sweep evicts what it deletes).
    cache: quick_cache::sync::Cache<Hash, Bytes, ByLen>,
    /// Below the memory cache, when configured: objects read from the store, kept on disk.
    disk: Option<DiskCache>,
    sweep: Mutex<Sweep>,
    /// Writes hold this shared from their upload to their KV batch; a collection takes it
    /// exclusively to start, so no write straddles the start unregistered (its objects could
    /// be old, its references not yet marked).
    writing: RwLock<()>,
    name: &'static str,
    io: Counters,
}

impl ContentStore {
    pub fn new(
        kv: Arc<dyn KvStore>,
        objects: Objects,
        selects: Selector,
        cache_bytes: u64,
    ) -> ContentStore {
        let name = match kv.engine_name() {
            "rocksdb" => "rocksdb+objects",
            "memory" => "memory+objects",
            "slatedb" => "slatedb+objects",
            _ => "kv+objects",
        };
        ContentStore {
            kv,
            objects,
            selects,
            cache: quick_cache::sync::Cache::with_weighter(
                (cache_bytes / 16384).max(16) as usize,
                cache_bytes.max(1),
                ByLen,
            ),
            disk: None,
            sweep: Mutex::new(Sweep::default()),
            writing: RwLock::new(()),
            name,
            io: Counters::default(),
        }
    }

    /// Keeps the objects it reads in `disk` too.
    pub fn with_disk_cache(mut self, disk: DiskCache) -> ContentStore {
        self.disk = Some(disk);
        self
    }

    pub fn objects_url(&self) -> &str {
        self.objects.url()
    }

    pub fn io(&self) -> ObjectIo {
        let c = &self.io;
        ObjectIo {
            gets: c.gets.load(Ordering::Relaxed),
            get_bytes: c.get_bytes.load(Ordering::Relaxed),
            puts: c.puts.load(Ordering::Relaxed),
            put_bytes: c.put_bytes.load(Ordering::Relaxed),
            cache_hits: c.cache_hits.load(Ordering::Relaxed),
            disk_hits: c.disk_hits.load(Ordering::Relaxed),
        }
    }

    /// Rewrites a batch for the KV, returning the objects its references need.
    fn encode(&self, batch: WriteBatch) -> (WriteBatch, Vec<(Hash, Bytes)>) {
        let mut out = WriteBatch {
            durability: batch.durability,
            ..WriteBatch::new()
        };
        let mut objects: HashMap<Hash, Bytes> = HashMap::new();
        for op in batch.ops {
            match op {
                WriteOp::Put(k, v) if (self.selects)(&k) => {
                    if v.len() > REF_LEN {
                        let h = hash_of(&v);
                        objects.entry(h).or_insert_with(|| Bytes::from(v));
                        let mut r = Vec::with_capacity(REF_LEN);
                        r.push(REF);
                        r.extend_from_slice(&h);
                        out.put(k, r);
                    } else if matches!(v.first(), Some(&REF) | Some(&ESCAPED)) {
                        let mut e = Vec::with_capacity(v.len() + 1);
                        e.push(ESCAPED);
                        e.extend_from_slice(&v);
                        out.put(k, e);
                    } else {
                        out.put(k, v);
                    }
                }
                op => out.ops.push(op),
            }
        }
        (out, objects.into_iter().collect())
    }

    /// Uploads what the store may lack. A running sweep is told first, so it cannot delete an
    /// object this write is about to reference; objects in the cache are known to exist (the
    /// sweep evicts before it deletes) and are not sent again.
    fn upload(&self, objects: Vec<(Hash, Bytes)>) -> Result<()> {
        let missing: Vec<(Hash, Bytes)> = {
            let mut sweep = self.sweep.lock();
            if sweep.active {
                sweep.written.extend(objects.iter().map(|(h, _)| *h));
            }
            objects
                .into_iter()
                .filter(|(h, _)| self.cache.get(h).is_none())
                .collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        self.objects.put_many(missing.clone())?;
        let bytes: usize = missing.iter().map(|(_, b)| b.len()).sum();
        self.io
            .puts
            .fetch_add(missing.len() as u64, Ordering::Relaxed);
        self.io.put_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        for (h, b) in missing {
            self.cache.insert(h, b);
        }
        Ok(())
    }

    /// The objects' bytes, from the cache or fetched together.
    fn fetch(&self, hashes: &[Hash]) -> Result<Vec<Bytes>> {
        let mut out: Vec<Option<Bytes>> = hashes.iter().map(|h| self.cache.get(h)).collect();
        let mut wanted: Vec<Hash> = hashes
            .iter()
            .zip(&out)
            .filter(|(_, got)| got.is_none())
            .map(|(h, _)| *h)
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        let hits = out.iter().filter(|b| b.is_some()).count();
        self.io.cache_hits.fetch_add(hits as u64, Ordering::Relaxed);
        let mut by_hash = HashMap::with_capacity(wanted.len());
        if let Some(disk) = &self.disk {
            wanted.retain(|h| match disk.get(h) {
                Some(b) => {
                    self.cache.insert(*h, b.clone());
                    by_hash.insert(*h, b);
                    false
                }
                None => true,
            });
            self.io
                .disk_hits
                .fetch_add(by_hash.len() as u64, Ordering::Relaxed);
        }
        if !wanted.is_empty() {
            let got = self.objects.get_many(&wanted)?;
            let bytes: usize = got.iter().map(Bytes::len).sum();
            self.io.gets.fetch_add(got.len() as u64, Ordering::Relaxed);
            self.io.get_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
            for (h, b) in wanted.into_iter().zip(got) {
                if hash_of(&b) != h {
                    return Err(Error::Corrupt(format!(
                        "object {} does not hash to its name",
                        crate::object::hex(&h)
                    )));
                }
                if let Some(disk) = &self.disk {
                    disk.put(&h, &b);
                }
                self.cache.insert(h, b.clone());
                by_hash.insert(h, b);
            }
        }
        for (slot, h) in out.iter_mut().zip(hashes) {
            if slot.is_none() {
                *slot = by_hash.get(h).cloned();
            }
        }
        Ok(out.into_iter().map(|b| b.unwrap_or_default()).collect())
    }

    /// Resolves raw KV values of selected keys, in place; references are fetched together.
    fn decode(&self, values: &mut [(bool, Vec<u8>)]) -> Result<()> {
        let mut refs = Vec::new();
        let mut at = Vec::new();
        for (i, (selected, v)) in values.iter_mut().enumerate() {
            if !*selected {
                continue;
            }
            match v.first() {
                Some(&REF) => {
                    let h: Hash = v
                        .get(1..REF_LEN)
                        .and_then(|s| s.try_into().ok())
                        .ok_or_else(|| Error::Corrupt("short object reference".into()))?;
                    refs.push(h);
                    at.push(i);
                }
                Some(&ESCAPED) => {
                    v.remove(0);
                }
                _ => {}
            }
        }
        if refs.is_empty() {
            return Ok(());
        }
        for (i, bytes) in at.into_iter().zip(self.fetch(&refs)?) {
            values[i].1 = bytes.to_vec();
        }
        Ok(())
    }

    /// Mark and sweep: deletes every object that no key references at any version, unless it
    /// is younger than `grace` or was written while the collection ran. Deleted objects cannot
    /// be referenced again without being uploaded again (the cache forgets them first), so
    /// writes may go on during a collection.
    pub fn gc(&self, grace: Duration) -> Result<GcReport> {
        {
            let _no_write_in_flight = self.writing.write();
            let mut sweep = self.sweep.lock();
            if sweep.active {
                return Err(Error::Engine("a collection is already running".into()));
            }
            sweep.active = true;
            sweep.written.clear();
        }
        let report = self.mark_and_sweep(grace);
        let mut sweep = self.sweep.lock();
        sweep.active = false;
        sweep.written.clear();
        report
    }

    fn mark_and_sweep(&self, grace: Duration) -> Result<GcReport> {
        let started = SystemTime::now();
        let mut live: HashSet<Hash> = HashSet::new();
        self.kv.scan(&[], &[], &mut |k, v| {
            if (self.selects)(k) && v.len() == REF_LEN && v[0] == REF {
                live.insert(v[1..].try_into().expect("32 bytes"));
            }
            Ok(true)
        })?;
        let listed = self.objects.list()?;
        let cutoff = started.checked_sub(grace).unwrap_or(SystemTime::UNIX_EPOCH);
        let mut report = GcReport {
            referenced: live.len() as u64,
            objects: listed.len() as u64,
            ..GcReport::default()
        };
        for obj in listed {
            if live.contains(&obj.hash) {
                continue;
            }
            let sweep = self.sweep.lock();
            if obj.modified > cutoff || sweep.written.contains(&obj.hash) {
                report.kept_recent += 1;
                continue;
            }
            self.cache.remove(&obj.hash);
            if let Some(disk) = &self.disk {
                disk.remove(&obj.hash);
            }
            self.objects.delete(&obj.hash)?;
            report.deleted += 1;
            report.deleted_bytes += obj.size;
        }
        Ok(report)
    }
}

impl KvStore for ContentStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let Some(v) = self.kv.get(key)? else {
            return Ok(None);
        };
        let mut one = [((self.selects)(key), v)];
        self.decode(&mut one)?;
        let [(_, v)] = one;
        Ok(Some(v))
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let mut b = WriteBatch::new();
        b.put(key, value);
        self.write(b)
    }

    fn delete(&self, key: &[u8]) -> Result<()> {
        self.kv.delete(key)
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        self.scan_ranges(&[(start.to_vec(), end.to_vec())], &mut |_, k, v| {
            visit(k, v)
        })
    }

    /// Gathers entries in chunks and resolves each chunk's references with one concurrent
    /// fetch, keeping the inner engine's order and consistency.
    fn scan_ranges(
        &self,
        ranges: &[(Vec<u8>, Vec<u8>)],
        visit: &mut dyn FnMut(usize, &[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let mut pending: Vec<(usize, Vec<u8>)> = Vec::new();
        let mut values: Vec<(bool, Vec<u8>)> = Vec::new();
        // Ranges whose visitor has answered `false`: their remaining entries are dropped.
        let mut stopped: HashSet<usize> = HashSet::new();
        // Chunks grow from one entry, so a scan that stops early fetches little it won't use.
        let mut chunk = 1;
        let mut flush = |pending: &mut Vec<(usize, Vec<u8>)>,
                         values: &mut Vec<(bool, Vec<u8>)>,
                         stopped: &mut HashSet<usize>|
         -> Result<()> {
            self.decode(values)?;
            for ((i, k), (_, v)) in pending.drain(..).zip(values.drain(..)) {
                if !stopped.contains(&i) && !visit(i, &k, &v)? {
                    stopped.insert(i);
                }
            }
            Ok(())
        };
        self.kv.scan_ranges(ranges, &mut |i, k, v| {
            if stopped.contains(&i) {
                return Ok(false);
            }
            pending.push((i, k.to_vec()));
            values.push(((self.selects)(k), v.to_vec()));
            if pending.len() >= chunk {
                flush(&mut pending, &mut values, &mut stopped)?;
                chunk = (chunk * 2).min(SCAN_CHUNK);
                return Ok(!stopped.contains(&i));
            }
            Ok(true)
        })?;
        flush(&mut pending, &mut values, &mut stopped)
    }

    fn write(&self, batch: WriteBatch) -> Result<()> {
        let _in_flight = self.writing.read();
        let (batch, objects) = self.encode(batch);
        self.upload(objects)?;
        self.kv.write(batch)
    }

    fn flush(&self) -> Result<()> {
        self.kv.flush()
    }

    fn sync(&self) -> Result<()> {
        self.kv.sync()
    }

    fn refresh(&self) -> Result<bool> {
        self.kv.refresh()
    }

    fn engine_name(&self) -> &'static str {
        self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;
    use crate::object::ObjectConfig;

    fn store(selects: Selector) -> (ContentStore, Arc<MemoryStore>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = url::Url::from_directory_path(dir.path()).unwrap();
        let objects = Objects::open(&ObjectConfig::new(url.as_str())).unwrap();
        let kv = Arc::new(MemoryStore::new());
        (
            ContentStore::new(kv.clone(), objects, selects, 1 << 20),
            kv,
            dir,
        )
    }

    fn blocks(k: &[u8]) -> bool {
        k.starts_with(b"b/")
    }

    #[test]
    fn selected_large_values_become_shared_objects() {
        let (s, kv, _dir) = store(blocks);
        let big = vec![9u8; 1000];
        s.put(b"b/1", &big).unwrap();
        s.put(b"b/2", &big).unwrap();
        s.put(b"i/1", &big).unwrap();
        s.put(b"b/small", b"tiny").unwrap();
        assert_eq!(kv.get(b"b/1").unwrap().unwrap().len(), REF_LEN);
        assert_eq!(kv.get(b"b/1").unwrap(), kv.get(b"b/2").unwrap());
        assert_eq!(kv.get(b"i/1").unwrap().unwrap(), big);
        assert_eq!(kv.get(b"b/small").unwrap().unwrap(), b"tiny");
        assert_eq!(s.objects.list().unwrap().len(), 1);
        assert_eq!((s.io().puts, s.io().put_bytes), (1, 1000));
        assert_eq!(s.get(b"b/1").unwrap().unwrap(), big);
        assert_eq!((s.io().gets, s.io().cache_hits), (0, 1));
        s.cache.clear();
        assert_eq!(s.get(b"b/2").unwrap().unwrap(), big);
        assert_eq!((s.io().gets, s.io().get_bytes), (1, 1000));
    }

    #[test]
    fn objects_read_once_are_served_from_the_disk_cache() {
        let (s, _kv, _dir) = store(blocks);
        let cache_dir = tempfile::tempdir().unwrap();
        let s = s.with_disk_cache(DiskCache::open(cache_dir.path(), 1 << 20).unwrap());
        let big = vec![4u8; 2000];
        s.put(b"b/1", &big).unwrap();
        s.cache.clear();
        assert_eq!(s.get(b"b/1").unwrap().unwrap(), big);
        assert_eq!((s.io().gets, s.io().disk_hits), (1, 0));
        // Gone from the object store and from memory, it is still read, from disk.
        s.objects.delete(&hash_of(&big)).unwrap();
        s.cache.clear();
        assert_eq!(s.get(b"b/1").unwrap().unwrap(), big);
        assert_eq!((s.io().gets, s.io().disk_hits), (1, 1));
    }

    #[test]
    fn inline_values_that_look_like_references_are_escaped() {
        let (s, kv, _dir) = store(blocks);
        for v in [vec![REF; 5], vec![ESCAPED], vec![REF; REF_LEN]] {
            s.put(b"b/x", &v).unwrap();
            assert_eq!(s.get(b"b/x").unwrap().unwrap(), v);
            assert_eq!(kv.get(b"b/x").unwrap().unwrap()[0], ESCAPED);
        }
    }

    #[test]
    fn gc_deletes_only_unreferenced_objects_past_the_grace_period() {
        let (s, _kv, _dir) = store(blocks);
        s.put(b"b/1", &[1u8; 100]).unwrap();
        s.put(b"b/2", &[2u8; 100]).unwrap();
        s.put(b"b/2", &[3u8; 100]).unwrap();
        s.delete(b"b/1").unwrap();
        let young = s.gc(Duration::from_secs(3600)).unwrap();
        assert_eq!((young.deleted, young.kept_recent), (0, 2));
        let r = s.gc(Duration::ZERO).unwrap();
        assert_eq!((r.referenced, r.objects, r.deleted), (1, 3, 2));
        assert_eq!(r.deleted_bytes, 200);
        assert_eq!(s.get(b"b/2").unwrap().unwrap(), vec![3u8; 100]);
        // A deleted object is uploaded again when a new write needs it.
        s.put(b"b/4", &[1u8; 100]).unwrap();
        s.cache.clear();
        assert_eq!(s.get(b"b/4").unwrap().unwrap(), vec![1u8; 100]);
    }

    #[test]
    fn collections_running_beside_writes_never_delete_a_live_object() {
        let (s, _kv, _dir) = store(blocks);
        let s = Arc::new(s);
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            let collector = scope.spawn(|| {
                let mut runs = 0;
                while !done.load(Ordering::Relaxed) {
                    s.gc(Duration::ZERO).unwrap();
                    runs += 1;
                }
                runs
            });
            // Values come back (the cache holds them, so writes skip their uploads) and go
            // (overwritten), while collections delete what is unreferenced.
            for round in 0..300u32 {
                let mut b = WriteBatch::new();
                for k in 0..4u32 {
                    let v = vec![((round + k) % 7) as u8; 100];
                    b.put(format!("b/{k}").into_bytes(), v);
                }
                s.write(b).unwrap();
            }
            done.store(true, Ordering::Relaxed);
            assert!(collector.join().unwrap() > 0);
        });
        s.cache.clear();
        for k in 0..4u32 {
            let want = vec![((299 + k) % 7) as u8; 100];
            assert_eq!(s.get(format!("b/{k}").as_bytes()).unwrap().unwrap(), want);
        }
    }

    #[test]
    fn a_tampered_object_is_reported_corrupt() {
        let (s, kv, dir) = store(blocks);
        s.put(b"b/1", &[1u8; 100]).unwrap();
        let r = kv.get(b"b/1").unwrap().unwrap();
        let name = crate::object::hex(&r[1..].try_into().unwrap());
        let path = dir.path().join("b3").join(&name[..2]).join(&name);
        std::fs::write(&path, [2u8; 100]).unwrap();
        s.cache.clear();
        assert!(matches!(s.get(b"b/1"), Err(Error::Corrupt(_))));
    }
}

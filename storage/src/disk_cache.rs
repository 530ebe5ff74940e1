//! A bounded cache of objects on local disk, between `ContentStore`'s memory cache and the
//! object store: hot blocks survive restarts and outgrow RAM without a request each.
//!
//! Objects are immutable and named by their hash, so an entry never goes stale: there is
//! nothing to invalidate, and a read checks the bytes against the name, so a torn or damaged
//! file is a miss (and removed), never a wrong answer. Each object is one file
//! `<dir>/<2 hex>/<64 hex>`, written under a temporary name and renamed, so a crash leaves
//! whole files or none. When the files pass the capacity, the least recently used go (reads
//! touch a file's modification time) until a tenth of the capacity is free again.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::object::{Hash, hash_of, hex};
use crate::{Error, Result};

pub struct DiskCache {
    dir: PathBuf,
    capacity: u64,
    used: AtomicU64,
    /// One eviction at a time.
    evicting: Mutex<()>,
    /// Temporary file names unique within the process.
    next_tmp: AtomicU64,
}

impl DiskCache {
    /// A cache of at most `capacity` bytes in `dir` (created), keeping what an earlier run
    /// left there.
    pub fn open(dir: &Path, capacity: u64) -> Result<DiskCache> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Config(format!("creating {}: {e}", dir.display())))?;
        let cache = DiskCache {
            dir: dir.to_path_buf(),
            capacity: capacity.max(1),
            used: AtomicU64::new(0),
            evicting: Mutex::new(()),
            next_tmp: AtomicU64::new(0),
        };
        let used = cache.files().iter().map(|f| f.1).sum();
        cache.used.store(used, Ordering::Relaxed);
        cache.evict_if_full();
        Ok(cache)
    }

    fn path(&self, h: &Hash) -> PathBuf {
        let name = hex(h);
        self.dir.join(&name[..2]).join(name)
    }

    /// The object's bytes, if cached and whole.
    pub fn get(&self, h: &Hash) -> Option<Bytes> {
        let path = self.path(h);
        let bytes = std::fs::read(&path).ok()?;
        if hash_of(&bytes) != *h {
            tracing::warn!("disk cache: {} is damaged; dropping it", path.display());
            self.remove(h);
            return None;
        }
        // Recently used: the last to be evicted.
        if let Ok(f) = std::fs::File::options().append(true).open(&path) {
            let _ = f.set_modified(SystemTime::now());
        }
        Some(Bytes::from(bytes))
    }

    /// Keeps a copy of an object (already checked against its hash). Failures only cost the
    /// copy: the cache is an optimization.
    pub fn put(&self, h: &Hash, bytes: &[u8]) {
        let path = self.path(h);
        if path.exists() {
            return;
        }
        let tmp = self.dir.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            self.next_tmp.fetch_add(1, Ordering::Relaxed)
        ));
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, &path));
        match written {
            Ok(()) => {
                self.used.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                self.evict_if_full();
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                tracing::warn!("disk cache: writing {}: {e}", path.display());
            }
        }
    }

    pub fn remove(&self, h: &Hash) {
        let path = self.path(h);
        if let Ok(meta) = std::fs::metadata(&path)
            && std::fs::remove_file(&path).is_ok()
        {
            self.used.fetch_sub(meta.len(), Ordering::Relaxed);
        }
    }

    /// Bytes the cached files hold.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Every cached file: (path, size, last use).
    fn files(&self) -> Vec<(PathBuf, u64, SystemTime)> {
        let mut out = Vec::new();
        let Ok(fans) = std::fs::read_dir(&self.dir) else {
            return out;
        };
        for fan in fans.flatten().filter(|e| e.path().is_dir()) {
            for f in std::fs::read_dir(fan.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                if let Ok(meta) = f.metadata() {
                    let used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                    out.push((f.path(), meta.len(), used));
                }
            }
        }
        out
    }

    fn evict_if_full(&self) {
        if self.used() <= self.capacity {
            return;
        }
        let Some(_one) = self.evicting.try_lock() else {
            return;
        };
        let mut files = self.files();
        files.sort_by_key(|f| f.2);
        let target = self.capacity - self.capacity / 10;
        let mut used: u64 = files.iter().map(|f| f.1).sum();
        for (path, size, _) in files {
            if used <= target {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                used -= size;
            }
        }
        self.used.store(used, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_whole_objects_drops_damaged_ones_and_evicts_the_least_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        let objects: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 1000]).collect();
        let hashes: Vec<Hash> = objects.iter().map(|o| hash_of(o)).collect();
        let cache = DiskCache::open(dir.path(), 5500).unwrap();
        for (h, o) in hashes.iter().zip(&objects).take(5) {
            cache.put(h, o);
        }
        assert_eq!(cache.used(), 5000);
        assert_eq!(cache.get(&hashes[2]).as_deref(), Some(&objects[2][..]));
        // Reopened, it keeps what it held.
        let cache = DiskCache::open(dir.path(), 5500).unwrap();
        assert_eq!(cache.used(), 5000);
        // Damage is a miss, and the file goes.
        std::fs::write(cache.path(&hashes[4]), b"torn").unwrap();
        assert_eq!(cache.get(&hashes[4]), None);
        assert!(!cache.path(&hashes[4]).exists());
        // Used most recently, object 3 outlives 0 and 1 when the cache fills.
        let old = SystemTime::now() - std::time::Duration::from_secs(60);
        for h in &hashes[..4] {
            let f = std::fs::File::options()
                .append(true)
                .open(cache.path(h))
                .unwrap();
            f.set_modified(old).unwrap();
        }
        assert!(cache.get(&hashes[3]).is_some());
        for (h, o) in hashes.iter().zip(&objects).skip(5).take(3) {
            cache.put(h, o);
        }
        assert!(
            cache.used() <= 5500,
            "evicted below the capacity: {}",
            cache.used()
        );
        assert!(cache.get(&hashes[3]).is_some());
        assert!(cache.get(&hashes[0]).is_none() && cache.get(&hashes[1]).is_none());
        assert!(cache.get(&hashes[7]).is_some());
    }
}

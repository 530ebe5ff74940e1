//! What a labelmap instance keeps in memory: its locks and the cached supervoxel → body
//! mapping of each version in use.
//!
//! Locking: writes that may touch any body (`POST raw`, `POST blocks`, index posts) hold
//! `writes` exclusively. Mutations hold it shared plus the locks of the bodies they change,
//! and splits the locks of the blocks they rewrite too, so mutations of different bodies run
//! in parallel and mutations of one body serialize. Bodies are always locked before blocks, so
//! two mutations never wait on each other in a cycle.
//!
//! Readers that must see one state across many reads (meshing a body) take no lock while they
//! read: both locks count their writers, so a reader that finds the same counts before and
//! after knows no write could have reached what it read.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Condvar, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use tessera_storage::VersionId;

use super::mapping::{Mapping, load_mapping};
use super::store::Labels;
use crate::Result;
use crate::datatype::DataCtx;

#[derive(Default)]
pub struct State {
    pub writes: Writes,
    pub bodies: LockSet,
    pub blocks: LockSet,
    /// Label allocation (max label, next label).
    pub alloc: Mutex<()>,
    mapping: Mutex<MappingCache>,
    /// Served meshes and the `KeepMeshes` worker.
    pub meshes: super::meshes::Cache,
    /// The last block-by-block meshing of each label, reused where an edit left it as it was.
    pub pieces: super::pieces::Cache,
}

#[derive(Default)]
struct MappingCache {
    /// Bumped by every mapping change, so a load that raced with one is not cached.
    generation: u64,
    by_version: HashMap<VersionId, Arc<Mapping>>,
}

pub fn state(ctx: &DataCtx) -> Arc<State> {
    ctx.services.instance_state(ctx.instance.id, State::default)
}

impl State {
    /// The mapping visible at the labels' version.
    pub fn mapping(&self, labels: &Labels) -> Result<Arc<Mapping>> {
        let v = labels.blocks.view.version;
        let generation = {
            let c = self.mapping.lock();
            if let Some(m) = c.by_version.get(&v) {
                return Ok(m.clone());
            }
            c.generation
        };
        let m = Arc::new(load_mapping(labels)?);
        let mut c = self.mapping.lock();
        if c.generation == generation {
            c.by_version.insert(v, m.clone());
        }
        Ok(m)
    }

    /// Records mapping changes that just committed at the labels' version. Other versions'
    /// cached mappings are dropped: an admin write to a committed node can change what its
    /// descendants see.
    pub fn mapping_changed(&self, labels: &Labels, changes: &HashMap<u64, u64>) {
        let v = labels.blocks.view.version;
        let mut c = self.mapping.lock();
        c.generation += 1;
        let current = c.by_version.remove(&v);
        c.by_version.clear();
        if let Some(current) = current {
            let mut m = (*current).clone();
            m.apply(changes);
            c.by_version.insert(v, Arc::new(m));
        }
    }
}

/// The instance-wide write lock: shared by mutations, exclusive for the writes that may change
/// any body (voxels, index and mapping posts). Every exclusive hold is counted.
#[derive(Default)]
pub struct Writes {
    lock: RwLock<()>,
    exclusive: AtomicU64,
}

impl Writes {
    pub fn read(&self) -> RwLockReadGuard<'_, ()> {
        self.lock.read()
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, ()> {
        let guard = self.lock.write();
        self.exclusive.fetch_add(1, Ordering::SeqCst);
        guard
    }

    /// The count of exclusive holds, once no exclusive write is in progress.
    pub fn settled(&self) -> u64 {
        let _shared = self.lock.read();
        self.generation()
    }

    /// The count of exclusive holds begun so far.
    pub fn generation(&self) -> u64 {
        self.exclusive.load(Ordering::SeqCst)
    }
}

/// A set of locked keys (labels or packed block coordinates). `lock` takes all its keys at
/// once, waiting until none is held. Every lock of a key is counted, in one of `SLOTS`
/// counters shared by hashing: a shared counter can only make a reader retry needlessly.
pub struct LockSet {
    inner: Mutex<Keys>,
    freed: Condvar,
}

struct Keys {
    held: HashSet<u64>,
    locks: Vec<u64>,
}

const SLOTS: usize = 1 << 10;

fn slot(key: u64) -> usize {
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SLOTS.trailing_zeros())) as usize
}

impl Default for LockSet {
    fn default() -> Self {
        LockSet {
            inner: Mutex::new(Keys {
                held: HashSet::new(),
                locks: vec![0; SLOTS],
            }),
            freed: Condvar::new(),
        }
    }
}

pub struct Held<'a> {
    set: &'a LockSet,
    keys: Vec<u64>,
}

impl LockSet {
    pub fn lock(&self, keys: impl IntoIterator<Item = u64>) -> Held<'_> {
        let mut keys: Vec<u64> = keys.into_iter().collect();
        keys.sort_unstable();
        keys.dedup();
        let mut inner = self.inner.lock();
        while keys.iter().any(|k| inner.held.contains(k)) {
            self.freed.wait(&mut inner);
        }
        for &k in &keys {
            inner.held.insert(k);
            inner.locks[slot(k)] += 1;
        }
        Held { set: self, keys }
    }

    /// How often `key` has been locked, once nobody holds it.
    pub fn settled(&self, key: u64) -> u64 {
        let mut inner = self.inner.lock();
        while inner.held.contains(&key) {
            self.freed.wait(&mut inner);
        }
        inner.locks[slot(key)]
    }

    /// How often `key` has been locked, whether or not it is held now.
    pub fn generation(&self, key: u64) -> u64 {
        self.inner.lock().locks[slot(key)]
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let mut inner = self.set.inner.lock();
        for k in &self.keys {
            inner.held.remove(k);
        }
        self.set.freed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_sets_exclude_overlaps_and_allow_disjoint_sets() {
        let set = Arc::new(LockSet::default());
        let a = set.lock([1, 2]);
        let _b = set.lock([3]);
        let waiter = {
            let set = set.clone();
            std::thread::spawn(move || {
                let _c = set.lock([2, 4]);
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!waiter.is_finished());
        drop(a);
        waiter.join().unwrap();
    }

    #[test]
    fn lock_sets_count_locks_and_settle_after_release() {
        let set = Arc::new(LockSet::default());
        let before = set.settled(7);
        let held = set.lock([7, 8]);
        assert_eq!(set.generation(7), before + 1);
        let reader = {
            let set = set.clone();
            std::thread::spawn(move || set.settled(7))
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!reader.is_finished(), "settled waits for the holder");
        drop(held);
        assert_eq!(reader.join().unwrap(), before + 1);

        let writes = Writes::default();
        let g = writes.settled();
        drop(writes.read());
        assert_eq!(writes.generation(), g, "shared holds are not counted");
        drop(writes.write());
        assert_eq!(writes.settled(), g + 1);
    }
}

//! What a labelmap instance keeps in memory: its locks and the cached supervoxel → body
//! mapping of each version in use.
//!
//! Locking: writes that may touch any body (`POST raw`, `POST blocks`, index posts) hold
//! `writes` exclusively. Mutations hold it shared plus the locks of the bodies they change,
//! and splits the locks of the blocks they rewrite too, so mutations of different bodies run
//! in parallel and mutations of one body serialize. Bodies are always locked before blocks, so
//! two mutations never wait on each other in a cycle.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex, RwLock};
use tessera_storage::VersionId;

use super::mapping::{Mapping, load_mapping};
use super::store::Labels;
use crate::Result;
use crate::datatype::DataCtx;

#[derive(Default)]
pub struct State {
    pub writes: RwLock<()>,
    pub bodies: LockSet,
    pub blocks: LockSet,
    /// Label allocation (max label, next label).
    pub alloc: Mutex<()>,
    mapping: Mutex<MappingCache>,
    /// Served meshes and the `KeepMeshes` worker.
    pub meshes: super::meshes::Cache,
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

/// A set of locked keys (labels or packed block coordinates). `lock` takes all its keys at
/// once, waiting until none is held.
#[derive(Default)]
pub struct LockSet {
    held: Mutex<HashSet<u64>>,
    freed: Condvar,
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
        let mut held = self.held.lock();
        while keys.iter().any(|k| held.contains(k)) {
            self.freed.wait(&mut held);
        }
        held.extend(keys.iter().copied());
        Held { set: self, keys }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let mut held = self.set.held.lock();
        for k in &self.keys {
            held.remove(k);
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
}

use std::collections::BTreeMap;
use std::ops::Bound;

use parking_lot::RwLock;

use crate::{KvStore, Result, WriteBatch, WriteOp};

/// An in-memory engine for tests: a B-tree behind a lock. Batches are atomic because they apply
/// under one write lock.
#[derive(Default)]
pub struct MemoryStore {
    map: RwLock<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

impl KvStore for MemoryStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.map.read().get(key).cloned())
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.map.write().insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    fn delete(&self, key: &[u8]) -> Result<()> {
        self.map.write().remove(key);
        Ok(())
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let upper = if end.is_empty() {
            Bound::Unbounded
        } else if start > end {
            // An empty range; `BTreeMap::range` would panic on it.
            return Ok(());
        } else {
            Bound::Excluded(end)
        };
        // Copy the range out first so a visitor may write to the store without deadlocking.
        let items: Vec<(Vec<u8>, Vec<u8>)> = self
            .map
            .read()
            .range::<[u8], _>((Bound::Included(start), upper))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (k, v) in items {
            if !visit(&k, &v)? {
                break;
            }
        }
        Ok(())
    }

    fn write(&self, batch: WriteBatch) -> Result<()> {
        let mut map = self.map.write();
        for op in batch.ops {
            match op {
                WriteOp::Put(k, v) => {
                    map.insert(k, v);
                }
                WriteOp::Delete(k) => {
                    map.remove(&k);
                }
            }
        }
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        Ok(())
    }

    fn engine_name(&self) -> &'static str {
        "memory"
    }
}

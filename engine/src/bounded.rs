//! Values kept in memory up to a budget of bytes, the least recently stored leaving first:
//! what the labelmap keeps of its meshes and of their pieces.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

use parking_lot::Mutex;

pub struct BoundedCache<K, V> {
    inner: Mutex<Inner<K, V>>,
    budget: usize,
    /// The largest value kept: one that would push out most of the others is not.
    largest: usize,
}

struct Inner<K, V> {
    entries: HashMap<K, (usize, V)>,
    order: VecDeque<K>,
    bytes: usize,
}

impl<K: Hash + Eq + Clone, V: Clone> BoundedCache<K, V> {
    pub fn new(budget: usize, largest: usize) -> Self {
        BoundedCache {
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                order: VecDeque::new(),
                bytes: 0,
            }),
            budget,
            largest: largest.min(budget),
        }
    }

    pub fn get(&self, key: &K) -> Option<V> {
        self.inner.lock().entries.get(key).map(|(_, v)| v.clone())
    }

    /// Keeps `value`, of `bytes` bytes, in place of whatever `key` held; a value larger than
    /// `largest` is not kept, and the key's old one goes all the same.
    pub fn put(&self, key: K, value: V, bytes: usize) {
        let mut c = self.inner.lock();
        c.remove(&key);
        if bytes > self.largest {
            return;
        }
        c.entries.insert(key.clone(), (bytes, value));
        c.order.push_back(key);
        c.bytes += bytes;
        while c.bytes > self.budget {
            let Some(k) = c.order.pop_front() else { break };
            if let Some((n, _)) = c.entries.remove(&k) {
                c.bytes -= n;
            }
        }
    }

    pub fn remove(&self, key: &K) {
        self.inner.lock().remove(key);
    }
}

impl<K: Hash + Eq, V> Inner<K, V> {
    fn remove(&mut self, key: &K) {
        if let Some((n, _)) = self.entries.remove(key) {
            self.bytes -= n;
            self.order.retain(|k| k != key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::BoundedCache;

    #[test]
    fn keeps_within_the_budget_oldest_stored_out_first() {
        let c = BoundedCache::new(10, 6);
        c.put(1, "a", 4);
        c.put(2, "b", 4);
        assert_eq!((c.get(&1), c.get(&2)), (Some("a"), Some("b")));
        // Storing 1 again makes it the newest: 2 leaves for 3.
        c.put(1, "A", 4);
        c.put(3, "c", 4);
        assert_eq!(
            (c.get(&1), c.get(&2), c.get(&3)),
            (Some("A"), None, Some("c"))
        );
        // Too large to keep: not kept, and the key's old value is gone.
        c.put(3, "C", 7);
        assert_eq!(c.get(&3), None);
        c.put(4, "d", 6);
        assert_eq!((c.get(&1), c.get(&4)), (Some("A"), Some("d")));
        c.remove(&1);
        c.put(5, "e", 4);
        assert_eq!(
            (c.get(&1), c.get(&4), c.get(&5)),
            (None, Some("d"), Some("e"))
        );
    }
}

use crate::Result;

/// One operation of an atomic write batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

/// When a write batch is durable: on disk for good, not only visible to readers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// When `write` returns (unless the store was opened without synced writes).
    #[default]
    Synced,
    /// Once a later synced write to the same store is (a write-ahead log is one sequence) or
    /// `KvStore::sync` returns; lost with the machine before that. For bookkeeping that a later
    /// write of the same request commits with (a mutation's label allocation), and for derived
    /// values that a crash only makes someone compute again (kept meshes).
    Lazy,
    /// Kept out of the write-ahead log: durable once `KvStore::sync` returns, which writes the
    /// engine's memory out; lost with the process before that. For large derived values that a
    /// crash only makes someone compute again (kept meshes of tens of MB): they reach the disk
    /// once, in their own files, rather than through the log first and then again.
    Unlogged,
}

/// A set of writes applied all-or-nothing by [`KvStore::write`].
#[derive(Debug, Default, Clone)]
pub struct WriteBatch {
    pub ops: Vec<WriteOp>,
    /// Engines whose every write is durable when it returns ignore it.
    pub durability: Durability,
}

impl WriteBatch {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(WriteOp::Put(key.into(), value.into()));
    }
    pub fn delete(&mut self, key: impl Into<Vec<u8>>) {
        self.ops.push(WriteOp::Delete(key.into()));
    }
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
    pub fn len(&self) -> usize {
        self.ops.len()
    }
    /// Adds `other`'s operations (this batch's `durability` stays as it was).
    pub fn append(&mut self, other: WriteBatch) {
        self.ops.extend(other.ops);
    }
}

/// An ordered key-value store: the one interface every engine implements.
///
/// Keys are compared bytewise. `scan` visits keys in `[start, end)` in ascending order and stops
/// early when the visitor returns `false`; an empty `end` means "to the end of the keyspace".
pub trait KvStore: Send + Sync {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    fn put(&self, key: &[u8], value: &[u8]) -> Result<()>;
    fn delete(&self, key: &[u8]) -> Result<()>;
    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()>;
    /// Visits several ranges in one call, in order, each as `scan` would (a visitor answering
    /// `false` ends its range); `visit` is told which range a key came from. Engines that can
    /// answer from one consistent read do (RocksDB: one iterator, one point-in-time view, re-seeked
    /// per range), which is what batched block reads rely on.
    fn scan_ranges(
        &self,
        ranges: &[(Vec<u8>, Vec<u8>)],
        visit: &mut dyn FnMut(usize, &[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        for (i, (start, end)) in ranges.iter().enumerate() {
            self.scan(start, end, &mut |k, v| visit(i, k, v))?;
        }
        Ok(())
    }
    fn write(&self, batch: WriteBatch) -> Result<()>;
    /// Makes every acknowledged write durable (called on shutdown).
    fn flush(&self) -> Result<()>;
    /// Makes every write so far durable, whatever its [`Durability`]: for a writer that made
    /// values visible first and must know them durable before it records that it wrote them.
    fn sync(&self) -> Result<()>;
    /// For a read replica's store: makes the writer's latest writes visible, answering whether
    /// anything changed. Stores that are their own writer have nothing to follow.
    fn refresh(&self) -> Result<bool> {
        Ok(false)
    }
    /// A short engine name for `info` responses ("rocksdb", "memory").
    fn engine_name(&self) -> &'static str;
}

//! `Metered`: a store that counts the bytes and operations passing through the store it wraps,
//! for the server's metrics. Counting reads only lengths, so values are never copied.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::{KvStore, Result, WriteBatch, WriteOp};

/// What went through a store since it was opened. Bytes are keys plus values: of the entries a
/// `get` found or a scan visited (read), of every put and of every delete's key (written).
/// Operations are calls: one `get`, `scan` or `scan_ranges` is one read; one `put`, `delete` or
/// `write` (however large its batch) is one write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreIo {
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub reads: u64,
    pub writes: u64,
}

pub struct Metered {
    inner: Arc<dyn KvStore>,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
    reads: AtomicU64,
    writes: AtomicU64,
}

impl Metered {
    pub fn new(inner: Arc<dyn KvStore>) -> Metered {
        Metered {
            inner,
            bytes_read: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            writes: AtomicU64::new(0),
        }
    }

    pub fn io(&self) -> StoreIo {
        StoreIo {
            bytes_read: self.bytes_read.load(Relaxed),
            bytes_written: self.bytes_written.load(Relaxed),
            reads: self.reads.load(Relaxed),
            writes: self.writes.load(Relaxed),
        }
    }

    fn read(&self, bytes: u64) {
        self.reads.fetch_add(1, Relaxed);
        self.bytes_read.fetch_add(bytes, Relaxed);
    }

    fn wrote(&self, bytes: u64) {
        self.writes.fetch_add(1, Relaxed);
        self.bytes_written.fetch_add(bytes, Relaxed);
    }
}

fn len(k: &[u8], v: &[u8]) -> u64 {
    (k.len() + v.len()) as u64
}

// Scans add up their entries locally and count once, so a long scan costs one atomic add,
// not one per entry; what was visited before an error still counts.
impl KvStore for Metered {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let v = self.inner.get(key)?;
        self.read(v.as_ref().map_or(0, |v| len(key, v)));
        Ok(v)
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.inner.put(key, value)?;
        self.wrote(len(key, value));
        Ok(())
    }

    fn delete(&self, key: &[u8]) -> Result<()> {
        self.inner.delete(key)?;
        self.wrote(key.len() as u64);
        Ok(())
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let mut n = 0;
        let r = self.inner.scan(start, end, &mut |k, v| {
            n += len(k, v);
            visit(k, v)
        });
        self.read(n);
        r
    }

    // Delegated, not left to the default: engines answer it from one consistent view.
    fn scan_ranges(
        &self,
        ranges: &[(Vec<u8>, Vec<u8>)],
        visit: &mut dyn FnMut(usize, &[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let mut n = 0;
        let r = self.inner.scan_ranges(ranges, &mut |i, k, v| {
            n += len(k, v);
            visit(i, k, v)
        });
        self.read(n);
        r
    }

    fn write(&self, batch: WriteBatch) -> Result<()> {
        let n = batch
            .ops
            .iter()
            .map(|op| match op {
                WriteOp::Put(k, v) => len(k, v),
                WriteOp::Delete(k) => k.len() as u64,
            })
            .sum();
        self.inner.write(batch)?;
        self.wrote(n);
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        self.inner.flush()
    }

    fn sync(&self) -> Result<()> {
        self.inner.sync()
    }

    fn refresh(&self) -> Result<bool> {
        self.inner.refresh()
    }

    fn engine_name(&self) -> &'static str {
        self.inner.engine_name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    #[test]
    fn counts_bytes_and_operations() {
        let s = Metered::new(Arc::new(MemoryStore::new()));
        assert_eq!(s.engine_name(), "memory");
        s.put(b"ab", b"123").unwrap();
        assert_eq!(s.get(b"ab").unwrap().as_deref(), Some(&b"123"[..]));
        assert_eq!(s.get(b"zz").unwrap(), None);
        let mut batch = WriteBatch::new();
        batch.put(b"cd".to_vec(), b"4567".to_vec());
        batch.delete(b"ab".to_vec());
        s.write(batch).unwrap();
        let mut seen = Vec::new();
        s.scan(b"", b"", &mut |k, _| {
            seen.push(k.to_vec());
            Ok(true)
        })
        .unwrap();
        assert_eq!(seen, [b"cd".to_vec()]);
        s.scan_ranges(&[(b"a".to_vec(), b"z".to_vec())], &mut |_, _, _| Ok(true))
            .unwrap();
        s.delete(b"cd").unwrap();
        assert_eq!(
            s.io(),
            StoreIo {
                // get hit 5, scan 6, scan_ranges 6; the miss reads nothing.
                bytes_read: 17,
                // put 5, batch 6 + 2, delete 2.
                bytes_written: 15,
                reads: 4,
                writes: 3,
            }
        );
        assert_eq!(s.get(b"cd").unwrap(), None);
    }
}

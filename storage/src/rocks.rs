use std::path::Path;

use rocksdb::{DB, Direction, IteratorMode, Options, ReadOptions, WriteOptions};

use crate::{KvStore, Result, WriteBatch, WriteOp};

/// The embedded default engine: one RocksDB database in one directory.
pub struct RocksStore {
    db: DB,
}

impl RocksStore {
    pub fn open(path: &Path) -> Result<Self> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        opts.increase_parallelism(2);
        let db = DB::open(&opts, path)?;
        Ok(Self { db })
    }
}

impl KvStore for RocksStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get(key)?)
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        Ok(self.db.put(key, value)?)
    }

    fn delete(&self, key: &[u8]) -> Result<()> {
        Ok(self.db.delete(key)?)
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let mut ro = ReadOptions::default();
        if !end.is_empty() {
            ro.set_iterate_upper_bound(end.to_vec());
        }
        let iter = self
            .db
            .iterator_opt(IteratorMode::From(start, Direction::Forward), ro);
        for item in iter {
            let (k, v) = item?;
            if !visit(&k, &v)? {
                break;
            }
        }
        Ok(())
    }

    fn scan_ranges(
        &self,
        ranges: &[(Vec<u8>, Vec<u8>)],
        visit: &mut dyn FnMut(usize, &[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        let snapshot = self.db.snapshot();
        let mut ro = ReadOptions::default();
        ro.set_snapshot(&snapshot);
        let mut it = self.db.raw_iterator_opt(ro);
        for (i, (start, end)) in ranges.iter().enumerate() {
            it.seek(start);
            while let (Some(k), Some(v)) = (it.key(), it.value()) {
                if (!end.is_empty() && k >= end.as_slice()) || !visit(i, k, v)? {
                    break;
                }
                it.next();
            }
            it.status()?;
        }
        Ok(())
    }

    fn write(&self, batch: WriteBatch) -> Result<()> {
        let mut wb = rocksdb::WriteBatch::default();
        for op in batch.ops {
            match op {
                WriteOp::Put(k, v) => wb.put(k, v),
                WriteOp::Delete(k) => wb.delete(k),
            }
        }
        Ok(self.db.write_opt(wb, &WriteOptions::default())?)
    }

    fn flush(&self) -> Result<()> {
        self.db.flush_wal(true)?;
        Ok(self.db.flush()?)
    }

    fn engine_name(&self) -> &'static str {
        "rocksdb"
    }
}

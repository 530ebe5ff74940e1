use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use rocksdb::{
    BlockBasedOptions, Cache, DB, DBCompressionType, Direction, IteratorMode, Options, ReadOptions,
    WriteOptions,
};

use crate::{Durability, KvStore, Result, WriteBatch, WriteOp};

/// Values at least this large are kept in blob files, out of the LSM tree's SST files.
const BLOB_MIN: u64 = 64 << 10;
/// RocksDB's block cache: label indices, mappings and hot blocks (its default is 32 MiB).
const BLOCK_CACHE: usize = 256 << 20;
/// How long `flush` waits for background compactions to finish.
const COMPACTION_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// The embedded default engine: one RocksDB database in one directory.
pub struct RocksStore {
    db: DB,
    sync: bool,
    /// Whether an `Unlogged` write may be in a memtable only, for `sync` to write out.
    unlogged: AtomicBool,
    /// A secondary instance following another process's database (a read replica).
    secondary: bool,
}

impl RocksStore {
    /// Opens (creating) the database; every write is synced to disk before it returns.
    pub fn open(path: &Path) -> Result<Self> {
        let db = DB::open(&Self::options(), path)?;
        Ok(Self {
            db,
            sync: true,
            unlogged: AtomicBool::new(false),
            secondary: false,
        })
    }

    /// Opens the database at `primary`, which another process (the writer) has open, as
    /// RocksDB's secondary instance: reads see the primary as of the last `refresh`, and
    /// writes fail. `scratch` holds the secondary's own info log. The primary's directory must
    /// be reachable (the same machine, or a shared file system).
    pub fn open_secondary(primary: &Path, scratch: &Path) -> Result<Self> {
        let mut opts = Self::options();
        opts.create_if_missing(false);
        // A secondary must keep every file open: the primary may delete them.
        opts.set_max_open_files(-1);
        let db = DB::open_as_secondary(&opts, primary, scratch)?;
        Ok(Self {
            db,
            sync: true,
            unlogged: AtomicBool::new(false),
            secondary: true,
        })
    }

    fn options() -> Options {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_compression_type(DBCompressionType::Lz4);
        opts.increase_parallelism(2);
        // Values of BLOB_MIN or more (kept meshes: tens of MB per body; large label indices)
        // go to blob files at flush, so compactions move only keys and small values, and the
        // SST files that every point read consults stay small. Measured on the edit-latency
        // bench, where kept meshes share the labelmap's store (docs/benchmarks.md).
        opts.set_enable_blob_files(true);
        opts.set_min_blob_size(BLOB_MIN);
        opts.set_blob_compression_type(DBCompressionType::Lz4);
        // No blob garbage collection: it relocates every live value in the oldest quarter of
        // blob files whenever a compaction passes their keys, and with kept meshes (one body's
        // mesh written again per edit, most bodies' never) that was the same static meshes
        // copied over and over: 10 GB rewritten and 72 s of CPU in a 5-minute edit bench.
        // Without it a blob file is freed once all its values are overwritten or deleted; a
        // kept mesh is flushed per edit, so its file goes when those bodies are edited again
        // (tests/blob_space.rs; the bench's store: 1,041 MiB against 985 with it on).
        opts.set_enable_blob_gc(false);
        // Write back in the background as files grow, so a flush is not one burst that the
        // next synced write's fsync waits behind.
        opts.set_bytes_per_sync(1 << 20);
        opts.set_wal_bytes_per_sync(1 << 20);
        let mut table = BlockBasedOptions::default();
        table.set_bloom_filter(10.0, false);
        table.set_block_cache(&Cache::new_lru_cache(BLOCK_CACHE));
        opts.set_block_based_table_factory(&table);
        opts
    }

    /// Whether a write returns only once its write-ahead-log entry is on disk (fsync), so an
    /// acknowledged write survives a power cut, not just a process crash (default: on).
    /// Off, a write is in the OS's page cache when it returns: a killed process loses
    /// nothing, a crashed machine may lose the last moments of writes, whole batches at a time.
    pub fn set_sync(&mut self, sync: bool) {
        self.sync = sync;
    }

    fn write_options(&self) -> WriteOptions {
        self.write_options_synced(self.sync)
    }

    fn write_options_synced(&self, sync: bool) -> WriteOptions {
        let mut o = WriteOptions::default();
        o.set_sync(sync);
        o
    }
}

impl KvStore for RocksStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get(key)?)
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        Ok(self.db.put_opt(key, value, &self.write_options())?)
    }

    fn delete(&self, key: &[u8]) -> Result<()> {
        Ok(self.db.delete_opt(key, &self.write_options())?)
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
        // One iterator, re-seeked per range: it reads one point-in-time view of the database
        // (RocksDB pins it when the iterator is made), which secondary instances allow where
        // they refuse explicit snapshots.
        let mut it = self.db.raw_iterator_opt(ReadOptions::default());
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
        let mut options =
            self.write_options_synced(self.sync && batch.durability == Durability::Synced);
        if batch.durability == Durability::Unlogged {
            // Set before the write, so a `sync` that runs after it returns sees the flag.
            self.unlogged.store(true, Ordering::SeqCst);
            options.disable_wal(true);
        }
        for op in batch.ops {
            match op {
                WriteOp::Put(k, v) => wb.put(k, v),
                WriteOp::Delete(k) => wb.delete(k),
            }
        }
        Ok(self.db.write_opt(wb, &options)?)
    }

    fn flush(&self) -> Result<()> {
        if self.secondary {
            return Ok(());
        }
        self.db.flush_wal(true)?;
        self.db.flush()?;
        // Let the flush's background compactions finish: a process that exits while one runs
        // (the server after its shutdown flush) has RocksDB's threads outlive its statics, and
        // aborts ("pthread lock: Invalid argument"). Bounded, so a shutdown cannot hang on it.
        let mut quiet = rocksdb::WaitForCompactOptions::default();
        quiet.set_timeout(COMPACTION_WAIT.as_micros() as u64);
        Ok(self.db.wait_for_compact(&quiet)?)
    }

    fn sync(&self) -> Result<()> {
        if self.secondary {
            return Ok(());
        }
        // Unlogged writes are in the memtables only, until a flush writes them to files.
        if self.unlogged.swap(false, Ordering::SeqCst) {
            self.db.flush()?;
        }
        // A store opened without synced writes promises no more than the page cache.
        if self.sync {
            self.db.flush_wal(true)?;
        }
        Ok(())
    }

    fn refresh(&self) -> Result<bool> {
        if !self.secondary {
            return Ok(false);
        }
        let before = self.db.latest_sequence_number();
        self.db.try_catch_up_with_primary()?;
        Ok(self.db.latest_sequence_number() != before)
    }

    fn engine_name(&self) -> &'static str {
        "rocksdb"
    }
}

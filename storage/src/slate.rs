//! SlateDB, an LSM tree kept on object storage, behind the `KvStore` trait: for when the ordered
//! keys (repo metadata, label indices, references to block objects) must leave the local disk
//! too. One process writes a database (SlateDB fences an older writer out); writes return once
//! SlateDB's write-ahead log is durable in the object store. Read replicas open it with
//! SlateDB's reader, which polls the writer's manifest and write-ahead log and holds a
//! checkpoint so the writer's compactions never delete what it reads. Like the object layer,
//! the engine runs on a private runtime that blocking callers wait on.

use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::object::{ObjectConfig, block_on, runtime, store_for};
use crate::{Error, KvStore, Result, WriteBatch, WriteOp};

/// Entries a scan takes from SlateDB per wait.
const SCAN_CHUNK: usize = 512;

/// SlateDB refuses an empty key, which the `KvStore` contract allows: every key is stored
/// behind this byte, which keeps their order.
const KEY_PREFIX: u8 = 0;

fn stored(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(KEY_PREFIX);
    k.extend_from_slice(key);
    k
}

type Job<T> = std::pin::Pin<Box<dyn Future<Output = Result<T>> + Send>>;

/// How often a reader looks for the writer's new writes.
const READER_POLL: Duration = Duration::from_secs(1);

#[derive(Clone)]
enum Handle {
    Writer(Arc<slatedb::Db>),
    Reader(Arc<slatedb::DbReader>),
}

pub struct SlateStore {
    db: Handle,
    rt: Option<tokio::runtime::Runtime>,
    /// A reader's last seen (durable sequence, manifest id), for `refresh`.
    seen: Mutex<(u64, u64)>,
}

fn slate_error(e: slatedb::Error) -> Error {
    let m = format!("slatedb: {e}");
    match e.kind() {
        slatedb::ErrorKind::Unavailable => Error::Unavailable(m),
        _ => Error::Engine(m),
    }
}

impl SlateStore {
    /// Opens (creating) the database under the URL's prefix, e.g. `s3://bucket/meta`.
    pub fn open(cfg: &ObjectConfig) -> Result<SlateStore> {
        let (store, prefix) = store_for(cfg)?;
        let rt = runtime("tessera-slatedb")?;
        let db = block_on(&rt, async move {
            slatedb::Db::open(prefix, store).await.map_err(slate_error)
        })?;
        Ok(SlateStore {
            db: Handle::Writer(Arc::new(db)),
            rt: Some(rt),
            seen: Mutex::new((0, 0)),
        })
    }

    /// Opens the database a writer keeps under the URL's prefix, read-only, following the
    /// writer's changes (see `refresh`).
    pub fn open_reader(cfg: &ObjectConfig) -> Result<SlateStore> {
        let (store, prefix) = store_for(cfg)?;
        let rt = runtime("tessera-slatedb")?;
        let options = slatedb::config::DbReaderOptions {
            manifest_poll_interval: READER_POLL,
            ..Default::default()
        };
        let reader = block_on(&rt, async move {
            slatedb::DbReader::open(
                prefix,
                store,
                slatedb::DbReaderMode::ManagedCheckpoint,
                options,
            )
            .await
            .map_err(slate_error)
        })?;
        let store = SlateStore {
            db: Handle::Reader(Arc::new(reader)),
            rt: Some(rt),
            seen: Mutex::new((0, 0)),
        };
        store.refresh()?;
        Ok(store)
    }

    /// Runs the future `f` makes from the database and waits for it.
    fn run<T: Send + 'static>(&self, f: impl FnOnce(Handle) -> Job<T>) -> Result<T> {
        block_on(
            self.rt.as_ref().expect("runtime until drop"),
            f(self.db.clone()),
        )
    }

    fn writer(&self) -> Result<Arc<slatedb::Db>> {
        match &self.db {
            Handle::Writer(db) => Ok(db.clone()),
            Handle::Reader(_) => Err(Error::Engine(
                "this SlateDB store is opened read-only (a read replica)".into(),
            )),
        }
    }
}

impl Drop for SlateStore {
    fn drop(&mut self) {
        let db = self.db.clone();
        if let Some(rt) = self.rt.take() {
            // Flushes the memtable and releases the writer (or the reader's checkpoint);
            // dropping the runtime inside another one would panic, so it is shut down in the
            // background after.
            let _ = block_on(&rt, async move {
                match db {
                    Handle::Writer(db) => db.close().await,
                    Handle::Reader(r) => r.close().await,
                }
                .map_err(slate_error)
            });
            rt.shutdown_background();
        }
    }
}

impl KvStore for SlateStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let key = stored(key);
        self.run(|db| {
            Box::pin(async move {
                let got = match db {
                    Handle::Writer(db) => db.get(&key).await,
                    Handle::Reader(r) => r.get(&key).await,
                };
                Ok(got.map_err(slate_error)?.map(|b| b.to_vec()))
            })
        })
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let mut b = WriteBatch::new();
        b.put(key, value);
        self.write(b)
    }

    fn delete(&self, key: &[u8]) -> Result<()> {
        let mut b = WriteBatch::new();
        b.delete(key);
        self.write(b)
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        visit: &mut dyn FnMut(&[u8], &[u8]) -> Result<bool>,
    ) -> Result<()> {
        if !end.is_empty() && end <= start {
            return Ok(());
        }
        let range = (
            Bound::Included(stored(start)),
            if end.is_empty() {
                Bound::Unbounded
            } else {
                Bound::Excluded(stored(end))
            },
        );
        let mut iter = Some(self.run(|db| {
            Box::pin(async move {
                match db {
                    Handle::Writer(db) => db.scan(range).await,
                    Handle::Reader(r) => r.scan(range).await,
                }
                .map_err(slate_error)
            })
        })?);
        loop {
            let it = iter.take().expect("an iterator between chunks");
            let (it, chunk) = self.run(move |_| {
                Box::pin(async move {
                    let mut it = it;
                    let mut chunk = Vec::with_capacity(SCAN_CHUNK);
                    while chunk.len() < SCAN_CHUNK {
                        match it.next().await.map_err(slate_error)? {
                            Some(kv) => chunk.push((kv.key, kv.value)),
                            None => break,
                        }
                    }
                    Ok((it, chunk))
                })
            })?;
            let done = chunk.len() < SCAN_CHUNK;
            for (k, v) in &chunk {
                if !visit(&k[1..], v)? {
                    return Ok(());
                }
            }
            if done {
                return Ok(());
            }
            iter = Some(it);
        }
    }

    fn write(&self, batch: WriteBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut b = slatedb::WriteBatch::new();
        for op in batch.ops {
            match op {
                WriteOp::Put(k, v) => b.put(stored(&k), v),
                WriteOp::Delete(k) => b.delete(stored(&k)),
            }
        }
        let db = self.writer()?;
        self.run(|_| {
            Box::pin(async move {
                db.write(b).await.map_err(slate_error)?;
                Ok(())
            })
        })
    }

    fn flush(&self) -> Result<()> {
        match self.writer() {
            Ok(db) => self.run(|_| Box::pin(async move { db.flush().await.map_err(slate_error) })),
            // A reader has nothing of its own to make durable.
            Err(_) => Ok(()),
        }
    }

    /// Every write waits for its durable upload (`await_durable`), lazy or not.
    fn sync(&self) -> Result<()> {
        Ok(())
    }

    /// For a reader: whether it saw writes (or a new manifest) since the last call. The reader
    /// polls the object store by itself; this only compares what it has seen.
    fn refresh(&self) -> Result<bool> {
        let Handle::Reader(r) = &self.db else {
            return Ok(false);
        };
        let status = r.status();
        let now = (status.durable_seq, status.current_manifest.id());
        let mut seen = self.seen.lock();
        let changed = *seen != now;
        *seen = now;
        Ok(changed)
    }

    fn engine_name(&self) -> &'static str {
        "slatedb"
    }
}

//! SlateDB, an LSM tree kept on object storage, behind the `KvStore` trait: for when the ordered
//! keys (repo metadata, label indices, references to block objects) must leave the local disk
//! too. One process writes a database (SlateDB fences an older writer out); writes return once
//! SlateDB's write-ahead log is durable in the object store. Like the object layer, the engine
//! runs on a private runtime that blocking callers wait on.

use std::ops::Bound;
use std::sync::Arc;

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

pub struct SlateStore {
    db: Arc<slatedb::Db>,
    rt: Option<tokio::runtime::Runtime>,
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
            db: Arc::new(db),
            rt: Some(rt),
        })
    }

    /// Runs the future `f` makes from the database and waits for it.
    fn run<T: Send + 'static>(&self, f: impl FnOnce(Arc<slatedb::Db>) -> Job<T>) -> Result<T> {
        block_on(
            self.rt.as_ref().expect("runtime until drop"),
            f(self.db.clone()),
        )
    }
}

impl Drop for SlateStore {
    fn drop(&mut self) {
        let db = self.db.clone();
        if let Some(rt) = self.rt.take() {
            // Flushes the memtable and releases the writer; dropping the runtime inside
            // another one would panic, so it is shut down in the background after.
            let _ = block_on(&rt, async move { db.close().await.map_err(slate_error) });
            rt.shutdown_background();
        }
    }
}

impl KvStore for SlateStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let key = stored(key);
        self.run(|db| {
            Box::pin(
                async move { Ok(db.get(&key).await.map_err(slate_error)?.map(|b| b.to_vec())) },
            )
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
        let mut iter = Some(
            self.run(|db| Box::pin(async move { db.scan(range).await.map_err(slate_error) }))?,
        );
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
        self.run(|db| {
            Box::pin(async move {
                db.write(b).await.map_err(slate_error)?;
                Ok(())
            })
        })
    }

    fn flush(&self) -> Result<()> {
        self.run(|db| Box::pin(async move { db.flush().await.map_err(slate_error) }))
    }

    fn engine_name(&self) -> &'static str {
        "slatedb"
    }
}

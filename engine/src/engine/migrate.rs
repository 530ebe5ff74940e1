//! Moving an instance to another store (`tessera store migrate`), with the server stopped:
//! every version of its data and its mutation log is copied in key order, the instance is
//! placed on the new store, and its keys are deleted from the old one. Each copied batch
//! records how far it got in the destination, in the same write, so an interrupted migration
//! resumes where it stopped and copies nothing twice.

use serde::{Deserialize, Serialize};
use tessera_storage::versioned::{prefix_end, space};
use tessera_storage::{KvStore, WriteBatch};

use super::Engine;
use crate::{Error, Result};

/// Keys copied per batch at most, and bytes (a batch is one atomic write).
const BATCH_KEYS: usize = 1024;
const BATCH_BYTES: usize = 16 << 20;

/// How far a migration got, kept in the destination store until it is done.
#[derive(Debug, Serialize, Deserialize)]
struct Progress {
    from: String,
    /// The last key copied; `None` before the first batch.
    last: Option<Vec<u8>>,
}

/// What one run moved.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Migrated {
    pub from: String,
    pub to: String,
    pub keys: u64,
    pub bytes: u64,
    /// Keys deleted from the old store.
    pub deleted: u64,
}

fn progress_key(data_uuid: &str) -> Vec<u8> {
    let mut k = b"\x00migrate\x00".to_vec();
    k.extend_from_slice(data_uuid.as_bytes());
    k
}

/// The key ranges holding an instance: its versioned data and its mutation log.
fn ranges(instance: u32) -> [(Vec<u8>, Vec<u8>); 2] {
    let data = [&[space::DATA][..], &instance.to_be_bytes()].concat();
    let log = [&[space::LOG][..], &instance.to_be_bytes()].concat();
    [
        (data.clone(), prefix_end(&data)),
        (log.clone(), prefix_end(&log)),
    ]
}

impl Engine {
    /// Moves instance `name` of the repo of `spec` to store `to`, calling `progress(keys,
    /// bytes)` after each batch. Blobs (`0x02`, shared by a store's instances) are copied and
    /// left in place. Refused while any sync subscription of the old store has events waiting:
    /// run the server until `GET /api/server/sync` says it caught up, then stop it.
    pub fn migrate_instance(
        &self,
        spec: &str,
        name: &str,
        to: &str,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<Migrated> {
        let dest = self
            .stores
            .get(to)
            .ok_or_else(|| Error::bad(format!("no store named {to:?} is configured")))?
            .clone();
        let meta = {
            let state = self.state.read();
            let (root, _) = super::match_uuid(&state, spec)?;
            state.repos[&root]
                .instances
                .get(name)
                .cloned()
                .ok_or_else(|| Error::bad(format!("no instance {name:?} in repo {spec}")))?
        };
        let pkey = progress_key(&meta.data_uuid);
        let saved: Option<Progress> = match dest.get(&pkey)? {
            Some(b) => Some(
                serde_json::from_slice(&b)
                    .map_err(|e| Error::Internal(format!("bad migration record: {e}")))?,
            ),
            None => None,
        };
        let from = match &saved {
            Some(p) => p.from.clone(),
            None if meta.store == to => {
                return Ok(Migrated {
                    from: to.into(),
                    to: to.into(),
                    ..Migrated::default()
                });
            }
            None => meta.store.clone(),
        };
        let source = self.stores[&from].clone();
        let mut out = Migrated {
            from: from.clone(),
            to: to.into(),
            ..Migrated::default()
        };
        if meta.store != to {
            refuse_pending_sync(source.as_ref(), &from)?;
            let mut last = saved.and_then(|p| p.last);
            for (start, end) in
                std::iter::once((vec![space::BLOB], vec![space::BLOB + 1])).chain(ranges(meta.id))
            {
                copy_range(
                    source.as_ref(),
                    dest.as_ref(),
                    (&start, &end),
                    (&pkey, &from, &mut last),
                    &mut out,
                    progress,
                )?;
            }
            self.place_instance(spec, name, to)?;
        }
        // Placed on `to`: what is left of the instance in the old store goes.
        for (start, end) in ranges(meta.id) {
            out.deleted += delete_range(source.as_ref(), &start, &end)?;
        }
        dest.delete(&pkey)?;
        Ok(out)
    }

    /// Records that instance `name` now lives in store `to`.
    fn place_instance(&self, spec: &str, name: &str, to: &str) -> Result<()> {
        self.modify(spec, |state, root, _| {
            let repo = state.repos.get_mut(&root).expect("matched repo exists");
            let meta = repo
                .instances
                .get_mut(name)
                .ok_or_else(|| Error::bad(format!("no instance {name:?}")))?;
            meta.store = to.to_string();
            repo.touch();
            Ok(())
        })
    }
}

fn refuse_pending_sync(source: &dyn KvStore, alias: &str) -> Result<()> {
    let mut pending = false;
    source.scan(&[space::OUTBOX], &[space::OUTBOX + 1], &mut |_, _| {
        pending = true;
        Ok(false)
    })?;
    if pending {
        return Err(Error::bad(format!(
            "store {alias:?} has sync events not yet applied: start the server, wait until \
             GET /api/server/sync reports CaughtUp, stop it, and migrate again"
        )));
    }
    Ok(())
}

/// Copies `[start, end)` from `source` to `dest`, past the key `last` already copied, in
/// batches that each also record their last key under `pkey`.
fn copy_range(
    source: &dyn KvStore,
    dest: &dyn KvStore,
    (start, end): (&[u8], &[u8]),
    (pkey, from, last): (&[u8], &str, &mut Option<Vec<u8>>),
    out: &mut Migrated,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<()> {
    let mut from_key = start.to_vec();
    if let Some(l) = last.as_ref().filter(|l| l.as_slice() >= start) {
        // The smallest key after `l`.
        from_key = [l.as_slice(), &[0]].concat();
    }
    loop {
        let mut batch = WriteBatch::new();
        let mut size = 0;
        let mut next = None;
        source.scan(&from_key, end, &mut |k, v| {
            if batch.len() == BATCH_KEYS || size >= BATCH_BYTES {
                next = Some(k.to_vec());
                return Ok(false);
            }
            size += k.len() + v.len();
            batch.put(k, v);
            Ok(true)
        })?;
        let Some(tessera_storage::WriteOp::Put(k, _)) = batch.ops.last() else {
            return Ok(());
        };
        *last = Some(k.clone());
        let record = Progress {
            from: from.to_string(),
            last: last.clone(),
        };
        let (keys, bytes) = (batch.len() as u64, size as u64);
        batch.put(
            pkey,
            serde_json::to_vec(&record).expect("progress serializes"),
        );
        dest.write(batch)?;
        out.keys += keys;
        out.bytes += bytes;
        progress(out.keys, out.bytes);
        match next {
            Some(k) => from_key = k,
            None => return Ok(()),
        }
    }
}

fn delete_range(kv: &dyn KvStore, start: &[u8], end: &[u8]) -> Result<u64> {
    let mut deleted = 0;
    loop {
        let mut batch = WriteBatch::new();
        kv.scan(start, end, &mut |k, _| {
            batch.delete(k);
            Ok(batch.len() < BATCH_KEYS)
        })?;
        if batch.is_empty() {
            return Ok(deleted);
        }
        deleted += batch.len() as u64;
        kv.write(batch)?;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;
    use tessera_storage::{MemoryStore, Result as StoreResult};

    use super::*;
    use crate::datatype::{Body, DataRequest, Method, Settings};
    use crate::engine::{Caller, EngineOptions};

    /// A memory store whose writes fail once `left` reaches zero (a migration cut off).
    struct Flaky {
        inner: MemoryStore,
        left: AtomicUsize,
    }

    impl KvStore for Flaky {
        fn get(&self, key: &[u8]) -> StoreResult<Option<Vec<u8>>> {
            self.inner.get(key)
        }
        fn put(&self, key: &[u8], value: &[u8]) -> StoreResult<()> {
            let mut b = WriteBatch::new();
            b.put(key, value);
            self.write(b)
        }
        fn delete(&self, key: &[u8]) -> StoreResult<()> {
            self.inner.delete(key)
        }
        fn scan(
            &self,
            start: &[u8],
            end: &[u8],
            visit: &mut dyn FnMut(&[u8], &[u8]) -> StoreResult<bool>,
        ) -> StoreResult<()> {
            self.inner.scan(start, end, visit)
        }
        fn write(&self, batch: WriteBatch) -> StoreResult<()> {
            if self
                .left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_err()
            {
                return Err(tessera_storage::Error::Engine("cut off".into()));
            }
            self.inner.write(batch)
        }
        fn flush(&self) -> StoreResult<()> {
            Ok(())
        }
        fn sync(&self) -> StoreResult<()> {
            Ok(())
        }
        fn engine_name(&self) -> &'static str {
            "flaky"
        }
    }

    fn key_count(kv: &dyn KvStore, instance: u32) -> usize {
        let mut n = 0;
        for (start, end) in ranges(instance) {
            kv.scan(&start, &end, &mut |_, _| {
                n += 1;
                Ok(true)
            })
            .unwrap();
        }
        n
    }

    fn call(engine: &Arc<Engine>, uuid: &str, method: Method, key: &str, body: &[u8]) -> Vec<u8> {
        let req = DataRequest {
            method,
            keyword: "key".into(),
            path: vec![key.into()],
            query: Default::default(),
            headers: Default::default(),
            body: Bytes::copy_from_slice(body),
            stream: None,
        };
        match engine
            .data_request(uuid, "kv", &req, &Caller::default())
            .unwrap()
            .body
        {
            Body::Full(b) => b.to_vec(),
            Body::Stream(_) => unreachable!("keyvalue answers whole"),
        }
    }

    #[test]
    fn an_interrupted_migration_resumes_without_copying_twice() {
        let flaky = Arc::new(Flaky {
            inner: MemoryStore::new(),
            left: AtomicUsize::new(usize::MAX),
        });
        let a: Arc<dyn KvStore> = Arc::new(MemoryStore::new());
        let mut opts = EngineOptions::single(a.clone());
        opts.stores = BTreeMap::from([("a".into(), a.clone()), ("b".into(), flaky.clone() as _)]);
        opts.backends = BTreeMap::from([("default".into(), "a".into())]);
        let engine = Engine::open(opts).unwrap();
        let root = engine.create_repo("m", "", None, "").unwrap();
        let mut settings = Settings::default();
        settings.set("typename", "keyvalue");
        settings.set("dataname", "kv");
        engine
            .create_instance(&root, &settings, &Caller::default())
            .unwrap();
        let n = 2 * BATCH_KEYS + 100;
        for i in 0..n {
            call(
                &engine,
                &root,
                Method::Post,
                &format!("k{i:05}"),
                format!("v{i}").as_bytes(),
            );
        }
        let id = engine.state.read().repos.values().next().unwrap().instances["kv"].id;
        let total = key_count(a.as_ref(), id);
        assert!(total >= n);

        // Cut off after two batches: the instance stays where it was, readable.
        flaky.left.store(2, Ordering::SeqCst);
        assert!(
            engine
                .migrate_instance(&root, "kv", "b", &mut |_, _| {})
                .is_err()
        );
        assert_eq!(call(&engine, &root, Method::Get, "k00007", b""), b"v7");
        flaky.left.store(usize::MAX, Ordering::SeqCst);
        let mut seen = 0;
        let done = engine
            .migrate_instance(&root, "kv", "b", &mut |keys, _| seen = keys)
            .unwrap();
        assert_eq!(
            done.keys as usize,
            total - 2 * BATCH_KEYS,
            "resumed past the cut"
        );
        assert_eq!((seen, done.deleted as usize), (done.keys, total));
        assert_eq!((done.from.as_str(), done.to.as_str()), ("a", "b"));
        assert_eq!(key_count(a.as_ref(), id), 0);
        assert_eq!(key_count(flaky.as_ref(), id), total);
        assert_eq!(call(&engine, &root, Method::Get, "k02047", b""), b"v2047");
        assert_eq!(engine.instances_by_store()["b"], vec![format!("{root}/kv")]);
        // Nothing left to do; and writes now land in the new store.
        let again = engine
            .migrate_instance(&root, "kv", "b", &mut |_, _| {})
            .unwrap();
        assert_eq!((again.keys, again.deleted), (0, 0));
        call(&engine, &root, Method::Post, "new", b"x");
        assert_eq!(key_count(a.as_ref(), id), 0);
        assert!(key_count(flaky.as_ref(), id) > total);
    }
}

//! The typed handle on a keyvalue instance, for datatypes and workers that keep derived values
//! in one (KeepMeshes' `<name>_meshes`).

use tessera_storage::Durability;

use super::handlers;
use super::keys::tkey;
use crate::Result;
use crate::datatype::{DataCtx, Handle};

/// Derived values this large skip the write-ahead log (`Durability::Unlogged`): a 10M-voxel
/// body's kept mesh is ~85 MB, which the log would write once and the memtable's flush again,
/// in the background, where the next edit's synced commit waited on it (docs/benchmarks.md,
/// edit latency). Smaller ones are logged, so a `sync` after only them is a log sync, not a
/// flush of the memtable into small table files.
const UNLOGGED_MIN: usize = 1 << 20;

/// A keyvalue instance at one version.
pub struct KeyValue {
    ctx: DataCtx,
}

impl Handle for KeyValue {
    const TYPE_NAME: &'static str = "keyvalue";

    fn from_ctx(ctx: DataCtx) -> Result<KeyValue> {
        Ok(KeyValue { ctx })
    }
}

impl KeyValue {
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.ctx.store.get(&self.ctx.view, &tkey(key))?)
    }

    /// Stores a value computed from other data (a kept mesh), recorded in the mutation log as
    /// `POST key` records it. Readers see it when this returns; it is durable once `sync`
    /// returns. A crash before that may lose it, so only a writer that computes it again after
    /// a crash (a subscriber, before it acknowledges its events) writes this way.
    pub fn put_derived(&self, key: &str, value: &[u8]) -> Result<()> {
        let durability = if value.len() >= UNLOGGED_MIN {
            Durability::Unlogged
        } else {
            Durability::Lazy
        };
        handlers::put(&self.ctx, key.as_bytes(), value, durability)
    }

    /// Deletes a key at this version, recorded as `DELETE key` records it, written as
    /// `put_derived` writes.
    pub fn delete_derived(&self, key: &str) -> Result<()> {
        handlers::delete(&self.ctx, key.as_bytes(), Durability::Lazy)
    }

    /// Makes this instance's derived writes durable.
    pub fn sync(&self) -> Result<()> {
        Ok(self.ctx.store.kv().sync()?)
    }
}

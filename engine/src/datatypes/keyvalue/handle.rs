//! The typed handle on a keyvalue instance, for datatypes and workers that keep derived values
//! in one (KeepMeshes' `<name>_meshes`).

use super::handlers;
use super::keys::tkey;
use crate::Result;
use crate::datatype::{DataCtx, Handle};

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

    /// Stores a value, recorded in the mutation log as `POST key` records it.
    pub fn put(&self, key: &str, value: &[u8]) -> Result<()> {
        handlers::put(&self.ctx, key.as_bytes(), value)
    }

    /// Deletes a key at this version, recorded as `DELETE key` records it.
    pub fn delete(&self, key: &str) -> Result<()> {
        handlers::delete(&self.ctx, key.as_bytes())
    }
}

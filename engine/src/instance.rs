//! Data instances: their persisted description and the context a datatype handler works in.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tessera_storage::{VersionId, VersionedStore, View, WriteBatch};

use crate::engine::Engine;
use crate::{Result, mutlog};

/// A data instance as persisted with its repo.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstanceMeta {
    pub name: String,
    pub type_name: String,
    pub data_uuid: String,
    /// Server-local id, the first field of every data key.
    pub id: u32,
    pub versioned: bool,
    /// Normalized compression setting, e.g. "lz4", "gzip:5", "none".
    pub compression: String,
    pub checksum: String,
    pub tags: BTreeMap<String, String>,
    /// DataUUIDs of the instances this one syncs to.
    pub syncs: Vec<String>,
    /// Alias of the store holding this instance's data.
    pub store: String,
    /// The datatype's own configuration, as returned by `Datatype::configure`.
    pub config: serde_json::Value,
}

/// Everything a datatype handler needs for one request: the instance, the version it reads and
/// writes (the repo root for unversioned instances), the store, and who is asking.
pub struct DataCtx {
    pub engine: Arc<Engine>,
    pub instance: InstanceMeta,
    /// The node UUID the request named (resolved from a prefix or branch spec).
    pub uuid: String,
    /// The version requests read and write: the node's, or the root's when unversioned.
    pub view: View,
    /// The version of the node the request named, even when `view` is the root's (unversioned
    /// instances): the version synced instances are read at.
    pub node: VersionId,
    pub store: VersionedStore,
    pub user: Option<String>,
    pub app: Option<String>,
    /// Whether the caller holds admin rights (admin-only endpoints check it).
    pub admin: bool,
}

impl DataCtx {
    pub fn version(&self) -> VersionId {
        self.view.version
    }

    /// Adds a mutation-log record for this instance at this version to `batch`, so it commits
    /// atomically with the mutation it describes. `u`/`app` are added as `User`/`App`.
    pub fn log_mutation(&self, batch: &mut WriteBatch, mut record: serde_json::Value) {
        if let Some(obj) = record.as_object_mut() {
            if let Some(u) = &self.user {
                obj.insert("User".into(), u.clone().into());
            }
            if let Some(a) = &self.app {
                obj.insert("App".into(), a.clone().into());
            }
        }
        let seq = self.engine.next_log_seq();
        mutlog::append(batch, self.instance.id, self.view.version, seq, &record);
    }

    /// The mutation-log records of this instance at this version, oldest first.
    pub fn mutations(&self) -> Result<Vec<Vec<u8>>> {
        mutlog::read(
            self.store.kv().as_ref(),
            self.instance.id,
            self.view.version,
        )
    }

    /// The records of every version from `begin` to `end` along `end`'s first-parent ancestry,
    /// oldest version first (`GET mutations-range`).
    pub fn mutations_range(&self, begin: &str, end: &str) -> Result<Vec<Vec<u8>>> {
        let versions = self.engine.version_path(&self.uuid, begin, end)?;
        let mut out = Vec::new();
        for v in versions {
            out.extend(mutlog::read(self.store.kv().as_ref(), self.instance.id, v)?);
        }
        Ok(out)
    }
}

//! Data instances as persisted with their repo.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::block::held::Held;

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
    /// On a partial replica, the blocks this server holds (`block::held`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<Held>,
    /// Set while a transfer writes the instance's data (`tessera push/pull`): requests answer
    /// 503 until the transfer finishes, so a half-received instance is never read as whole.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub receiving: bool,
}

//! Tessera's storage layer: an ordered key-value interface with interchangeable engines
//! (RocksDB embedded by default, in-memory for tests), a wrapper keeping large values as
//! content-addressed objects on object storage, and on top of them the versioned view that
//! resolves a key at a version through the version DAG.
//!
//! This crate knows bytes and versions, never voxels or HTTP.

// Scan visitors are spelled out (`&mut dyn FnMut(&[u8], &[u8]) -> Result<bool>`) so that every
// engine's signature reads the same; clippy's type_complexity lint flags exactly that.
#![allow(clippy::type_complexity)]

pub mod content;
pub mod disk_cache;
mod error;
pub mod faults;
mod kv;
mod memory;
pub mod metered;
pub mod object;
mod rocks;
mod slate;
pub mod versioned;

pub use content::{ContentStore, GcReport, ObjectIo};
pub use disk_cache::DiskCache;
pub use error::{Error, Result};
pub use kv::{Durability, KvStore, WriteBatch, WriteOp};
pub use memory::MemoryStore;
pub use metered::{Metered, StoreIo};
pub use object::{ObjectConfig, Objects};
pub use rocks::RocksStore;
pub use slate::SlateStore;
pub use versioned::{Dag, VersionId, VersionedStore, View};

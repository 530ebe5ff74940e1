//! Tessera's engine: repos and the version DAG, datatypes behind one trait, and the services
//! they share. It knows datatypes and blocks, not HTTP routing or storage engines.
//!
//! Layers, each using only those below it (`docs/architecture.md`):
//! 1. `error`, `repo` (the version DAG), `instance` (persisted descriptions), `compute`;
//! 2. services: `block`, `mutation`, `sync`, `services`, `mesh`;
//! 3. `datatype` (the trait, request, context, handles) and `datatypes`;
//! 4. `engine`, the facade the API calls.

pub mod block;
mod bounded;
pub mod compute;
pub mod datatype;
pub mod datatypes;
pub mod engine;
mod error;
pub mod instance;
pub mod mesh;
pub mod mutation;
pub mod precomputed;
pub mod priority;
pub mod remote;
pub mod repo;
pub mod services;
pub mod sync;
#[cfg(test)]
mod test_metrics;

pub use engine::Engine;
pub use error::{Error, Result};

//! Tessera's engine: repos and the version DAG, datatypes behind one trait, and the mutation
//! log. It knows datatypes and blocks, not HTTP routing or storage engines.

mod common;
pub mod compute;
pub mod datatype;
pub mod datatypes;
pub mod engine;
mod error;
pub mod instance;
pub mod mesh;
pub mod mutlog;
pub mod repo;
pub mod sync;

pub use engine::Engine;
pub use error::{Error, Result};

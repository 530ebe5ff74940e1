//! Offline commands: `tessera pyramid`, `tessera mesh`, `tessera bench kernels` and
//! `tessera bench gpu`;
//! `tessera load`, a client that ingests a volume into a running server; and `tessera demo`,
//! a server holding a demo dataset; `tessera store digest`, a hash of what the stores hold.

pub mod bench;
pub mod demo;
pub mod gpu_bench;
pub mod load;
pub mod mesh;
pub mod mount;
mod npy;
mod out;
pub mod pyramid;
pub mod shard;
pub mod store;
pub mod transfer;
mod zarr_out;

use std::sync::Arc;

use tessera_engine::compute::{self, Compute, Selection};

/// Opens the backend the user asked for; `gpu` fails loudly when there is no adapter.
fn open_compute(selection: &str) -> anyhow::Result<Arc<dyn Compute>> {
    let selection: Selection = selection.parse()?;
    Ok(compute::select(selection)?)
}

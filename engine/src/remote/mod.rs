//! Volumes kept elsewhere in chunked formats (neuroglancer precomputed, zarr v2/v3), read by
//! chunk from a local directory, object storage or HTTP: what `tessera load` ingests and what
//! `volumeproxy` instances serve.

pub mod chunked;
pub mod fetch;

pub use chunked::{ChunkedVolume, Dtype, open_precomputed, open_zarr};
pub use fetch::{Fetch, LocalDir, Remote};

use std::sync::Arc;

/// Opens the volume behind `fetch`: precomputed when it has an `info`, else zarr.
pub fn open(fetch: Arc<dyn Fetch>) -> anyhow::Result<ChunkedVolume> {
    let has_info = fetch.get(&["info".to_string()])?.pop().flatten().is_some();
    if has_info {
        open_precomputed(fetch)
    } else {
        open_zarr(fetch)
    }
}

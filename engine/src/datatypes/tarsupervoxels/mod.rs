//! The `tarsupervoxels` datatype (spec §4.9): one blob per supervoxel (e.g. a mesh), versioned
//! like keyvalue values, and per body a tar archive of its supervoxels' blobs, the body's
//! supervoxels read from the labelmap instance it syncs to.
//!
//! * [`config`] — the `Extension` creation setting;
//! * [`keys`] — TKeys and ids named in paths;
//! * [`archive`] — `POST load` and `GET tarfile` tar archives, pure functions over bytes;
//! * [`blobs`] — the read path every endpoint shares (where a supervoxel without stored data
//!   is decided) and the streamed archive;
//! * [`bodies`] — body → supervoxels through the synced labelmap;
//! * `handlers` — the endpoints.

pub mod archive;
pub mod blobs;
pub mod bodies;
pub mod config;
mod handlers;
pub mod keys;
#[cfg(test)]
mod tests;

use crate::Result;
use crate::datatype::DataCtx;
use crate::datatype::{DataRequest, DataResponse, Datatype, Description, Settings};
use blobs::Blobs;
use config::Config;

#[derive(Debug, Default, Clone, Copy)]
pub struct TarSupervoxelsType;

const KEYWORDS: &[&str] = &[
    "supervoxel",
    "tarfile",
    "missing",
    "exists",
    "load",
    "generate",
    "mutations",
    "mutations-range",
];

const HELP: &str = include_str!("help.txt");

static DESCRIPTION: Description = Description {
    name: "tarsupervoxels",
    url: "github.com/janelia-flyem/dvid/datatype/tarsupervoxels",
    version: "0.1",
    help: HELP,
    keywords: KEYWORDS,
    sync_targets: &["labelmap"],
    default_compression: "lz4",
};

impl Datatype for TarSupervoxelsType {
    fn description(&self) -> &'static Description {
        &DESCRIPTION
    }

    fn configure(&self, settings: &Settings) -> Result<serde_json::Value> {
        let cfg = Config::from_settings(settings)?;
        Ok(serde_json::to_value(cfg).expect("config serializes"))
    }

    fn extended_info(&self, ctx: &DataCtx) -> Result<serde_json::Value> {
        Ok(
            serde_json::to_value(Config::from_json(&ctx.instance.config)?)
                .expect("config serializes"),
        )
    }

    fn handle(&self, ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
        let cfg = Config::from_json(&ctx.instance.config)?;
        let mut blobs = Blobs::new(ctx, &cfg.extension);
        // Reads that may need a supervoxel's mesh, and POST generate, find the labelmap.
        let needs_labelmap = req.keyword != "load" && req.method != crate::datatype::Method::Delete;
        if cfg.generate && needs_labelmap {
            blobs = blobs.generating(blobs::Generator {
                labelmap: bodies::synced_labelmap(ctx)?,
                format: cfg.extension.parse().map_err(crate::Error::bad)?,
            });
        }
        handlers::handle(ctx, blobs, req)
    }
}

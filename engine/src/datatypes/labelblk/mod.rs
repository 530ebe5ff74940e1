//! The `labelblk` datatype (spec §4.3): uint64 labels in raw uint64 blocks (DVID's default 32³)
//! with no label index; sparse volumes and merges come from a labelvol synced to it.
//!
//! A labelblk is a `uint64blk` image with `labels` set in its configuration
//! (`imageblk::config::Config`): the image type stores and reads its blocks, serves `raw` and
//! `isotropic` (2-D slices as 16-bit RGBA PNGs of the labels' bytes, as labelmap's) and takes
//! `POST raw`, and its write path publishes `BLOCK_INGEST`/`BLOCK_MUTATE` with each block's
//! label sets for the labelvol to follow. This module adds what only labels have:
//! neuroglancer's compressed segmentation, `pseudocolor`, `label`, `labels`, and block records
//! in labelblk's codings (`voxels`, `blocks`); [`Labelblk`] is the typed handle a labelvol
//! reads and relabels it through.

mod blocks;
mod handle;
pub(crate) mod voxels;

use serde_json::json;

use crate::block::{Stored, extents};
use crate::datatype::{
    DataCtx, DataRequest, DataResponse, Datatype, Description, Method, Settings,
};
use crate::datatypes::imageblk::config::{Config, Kind};
use crate::datatypes::imageblk::image::Image;
use crate::datatypes::imageblk::voxels as image_voxels;
use crate::{Error, Result};
pub use handle::Labelblk;

#[derive(Debug, Default, Clone, Copy)]
pub struct LabelblkType;

const KEYWORDS: &[&str] = &[
    "raw",
    "isotropic",
    "pseudocolor",
    "label",
    "labels",
    "blocks",
];

const HELP: &str = include_str!("help.txt");

static DESCRIPTION: Description = Description {
    name: "labelblk",
    url: "github.com/janelia-flyem/dvid/datatype/labelblk",
    version: "0.1",
    help: HELP,
    keywords: KEYWORDS,
    sync_targets: &["labelvol"],
    default_compression: "lz4",
};

/// DVID's labelblk block size.
const DEFAULT_BLOCK: usize = 32;

impl Datatype for LabelblkType {
    fn description(&self) -> &'static Description {
        &DESCRIPTION
    }

    fn configure(&self, settings: &Settings) -> Result<serde_json::Value> {
        let mut s = settings.clone();
        if s.get("BlockSize").is_none() {
            s.set(
                "BlockSize",
                format!("{DEFAULT_BLOCK},{DEFAULT_BLOCK},{DEFAULT_BLOCK}"),
            );
        }
        let mut cfg = Config::from_settings(Kind::Uint64, &s)?;
        cfg.labels = true;
        Stored::labels_from_setting(
            &s.get("compression")
                .unwrap_or(self.default_compression())
                .to_ascii_lowercase(),
            cfg.block_shape(),
        )?;
        Ok(serde_json::to_value(cfg).expect("config serializes"))
    }

    fn extended_info(&self, ctx: &DataCtx) -> Result<serde_json::Value> {
        let image = Image::new(ctx)?;
        let cfg = &image.cfg;
        let b = &image.blocks;
        let mut info = extents::info(
            &b.store,
            &b.view,
            cfg.block_size,
            cfg.voxel_size,
            &cfg.voxel_units,
        )?;
        info.insert(
            "Values".into(),
            json!([{"DataType": "uint64", "Label": "labelblk"}]),
        );
        info.insert("Interpolable".into(), json!(false));
        Ok(info.into())
    }

    fn streams_body(&self, method: Method, keyword: &str) -> bool {
        method == Method::Post && keyword == "raw"
    }

    fn handle(&self, ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
        let image = Image::new(ctx)?;
        if let Some(roi) = req.query.get("roi") {
            return Err(Error::bad(format!(
                "roi={roi:?}: ROI masking needs the roi datatype, which this server doesn't have yet"
            )));
        }
        if let Some(s) = req.query.get("scale").filter(|s| *s != "0") {
            return Err(Error::bad(format!(
                "scale={s}: a labelblk holds one scale; lower resolutions are sibling instances"
            )));
        }
        match (req.method, req.keyword.as_str()) {
            (Method::Get | Method::Head, "raw" | "isotropic") => voxels::get(&image, req),
            (Method::Post, "raw") => {
                let lock = writes(ctx);
                let _writes = lock.lock();
                image_voxels::post(ctx, &image, req)
            }
            (Method::Get, "pseudocolor") => voxels::pseudocolor(&image, req),
            (Method::Get, "label") => voxels::label(&image, req),
            (Method::Get, "labels") => voxels::labels(&image, req),
            (Method::Get, "blocks") => blocks::get(&image, req),
            (Method::Post, "blocks") => {
                let lock = writes(ctx);
                let _writes = lock.lock();
                blocks::post(ctx, &image, req)
            }
            (m, kw) => Err(Error::bad(format!(
                "{} {kw} is not served by labelblk instances",
                m.as_str()
            ))),
        }
    }
}

/// The lock a labelblk's writes take: a labelvol's rewrite reads blocks and writes them back,
/// so a `POST raw` between the two would be lost.
pub(crate) fn writes(ctx: &DataCtx) -> std::sync::Arc<parking_lot::Mutex<()>> {
    ctx.services
        .instance_state(ctx.instance.id, parking_lot::Mutex::default)
}

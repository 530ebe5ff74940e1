//! The voxel-array datatypes (spec §4.2): uint8blk, uint16blk, uint32blk, uint64blk,
//! float32blk and rgba8blk — one generic implementation over the block layer, parameterized
//! by [`Kind`] (bytes per voxel, channels, whether JPEG applies).
//!
//! * [`config`] — kinds and creation settings; [`image`] — the data at a version: reading
//!   boxes, writing blocks;
//! * `voxels` — `raw`/`isotropic` 3-D and 2-D; `blocks` — `subvolblocks`, `specificblocks`,
//!   `blocks`; `meta` — `metadata`, `extents`, `resolution`, `rawkey`;
//! * [`downres`] — multiscale as sibling instances: `grayscale_1` synced to `grayscale` keeps
//!   itself the 2×2×2 mean of its source, after every write and in bulk (`POST resync`).

pub(crate) mod blocks;
pub mod config;
pub mod downres;
mod handle;
pub use handle::Grayscale;
pub mod image;
mod meta;
pub(crate) mod voxels;

use serde_json::json;

use crate::block::extents;
use crate::datatype::{
    DataCtx, DataRequest, DataResponse, Datatype, Description, Method, Settings,
};
use crate::datatypes::roi::Roi;
use crate::mutation::Subscription;
use crate::{Error, Result};
use config::Config;
pub use config::Kind;
use image::Image;

const KEYWORDS: &[&str] = &[
    "raw",
    "isotropic",
    "subvolblocks",
    "specificblocks",
    "blocks",
    "metadata",
    "extents",
    "resolution",
    "rawkey",
    "resync",
];

const HELP: &str = include_str!("help.txt");

macro_rules! description {
    ($name:literal, $syncs:expr) => {
        Description {
            name: $name,
            url: concat!("github.com/janelia-flyem/dvid/datatype/imageblk/", $name),
            version: "0.2",
            help: HELP,
            keywords: KEYWORDS,
            sync_targets: $syncs,
            default_compression: "lz4",
        }
    };
}

static DESCRIPTIONS: [Description; 6] = [
    // A lower-resolution grayscale level syncs to the level above it (see `downres`).
    description!("uint8blk", &["uint8blk"]),
    description!("uint16blk", &[]),
    description!("uint32blk", &[]),
    description!("uint64blk", &[]),
    description!("float32blk", &[]),
    description!("rgba8blk", &[]),
];

#[derive(Debug, Clone, Copy)]
pub struct ImageblkType(pub Kind);

impl Datatype for ImageblkType {
    fn description(&self) -> &'static Description {
        let i = Kind::ALL
            .iter()
            .position(|k| *k == self.0)
            .expect("every kind");
        &DESCRIPTIONS[i]
    }

    fn configure(&self, settings: &Settings) -> Result<serde_json::Value> {
        let cfg = Config::from_settings(self.0, settings)?;
        let stored = crate::block::Stored::from_setting(
            &settings
                .get("compression")
                .unwrap_or(self.default_compression())
                .to_ascii_lowercase(),
            cfg.block_shape(),
        )?;
        if stored.is_jpeg() {
            if self.0 != Kind::Uint8 {
                return Err(Error::bad(format!(
                    "{} blocks can't be stored as JPEG: only uint8blk (grayscale) can",
                    self.type_name()
                )));
            }
            let [x, y, z] = cfg.block_size;
            if y * z > crate::block::jpeg::MAX_SIDE {
                return Err(Error::bad(format!(
                    "a JPEG block is {x} pixels wide and {} tall, over JPEG's {}: use smaller blocks",
                    y * z,
                    crate::block::jpeg::MAX_SIDE
                )));
            }
        }
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
        info.insert("Values".into(), cfg.kind.values());
        info.insert("Interpolable".into(), json!(true));
        Ok(info.into())
    }

    fn streams_body(&self, method: Method, keyword: &str) -> bool {
        method == Method::Post && keyword == "raw"
    }

    fn subscriptions(&self, ctx: &DataCtx) -> Result<Vec<Subscription>> {
        downres::subscriptions(ctx)
    }

    fn handle(&self, ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
        let mut image = Image::new(ctx)?;
        let attenuation = match req.query.get("attenuation") {
            None => 0,
            Some(a) => {
                let n = a.parse::<u8>().ok().filter(|n| (1..=7).contains(n));
                match n {
                    Some(n) if image.cfg.kind == Kind::Uint8 => n,
                    Some(_) => {
                        return Err(Error::bad(format!(
                            "attenuation= applies to uint8blk only, not {}",
                            image.cfg.kind.type_name()
                        )));
                    }
                    None => {
                        return Err(Error::bad(format!(
                            "attenuation={a:?} must be an integer from 1 to 7"
                        )));
                    }
                }
            }
        };
        let roi = match req.query.get("roi") {
            Some(name) => Some(Roi::for_query(ctx, name)?),
            None if attenuation > 0 => {
                return Err(Error::bad(
                    "attenuation= dims the voxels outside an roi=, and no roi= was given",
                ));
            }
            None => None,
        };
        if let Some(roi) = roi {
            match (req.method, req.keyword.as_str()) {
                (Method::Get | Method::Head, "raw" | "isotropic") => {
                    image.mask = Some((roi, attenuation));
                }
                (Method::Post, "raw") if attenuation == 0 => {
                    return voxels::post_in_roi(ctx, &image, req, &roi);
                }
                (m, kw) => {
                    return Err(Error::bad(format!(
                        "roi= applies to GET raw/isotropic and POST raw (without attenuation), not {} {kw}",
                        m.as_str()
                    )));
                }
            }
        }
        if let Some(s) = req.query.get("scale").filter(|s| *s != "0") {
            return Err(Error::bad(format!(
                "scale={s}: image instances hold one scale; lower resolutions are the sibling instances <name>_1, <name>_2, …"
            )));
        }
        match (req.method, req.keyword.as_str()) {
            (Method::Get | Method::Head, "raw" | "isotropic") => voxels::get(&image, req),
            (Method::Post, "raw") => voxels::post(ctx, &image, req),
            (Method::Get, "subvolblocks") => blocks::subvolblocks(&image, req),
            (Method::Get, "specificblocks") => blocks::specific(&image, req),
            (Method::Get, "blocks") => blocks::get(&image, req),
            (Method::Post, "blocks") => blocks::post(ctx, &image, req),
            (Method::Get, "metadata") => meta::metadata(&image),
            (Method::Post, "extents") => meta::post_extents(ctx, &image, req),
            (Method::Post, "resolution") => meta::post_resolution(ctx, req),
            (Method::Get, "rawkey") => meta::rawkey(&image, req),
            (Method::Post, "resync") => downres::resync(ctx, req),
            (m, kw) => Err(Error::bad(format!(
                "{} {kw} is not served by {} instances",
                m.as_str(),
                self.type_name()
            ))),
        }
    }
}

//! The `imagetile` datatype (spec §4.10, DVID's "multiscale2d"): 2-D tiles in xy, xz and yz at
//! scales 0..N, generated on demand from the uint8blk it syncs to and cached per version, or
//! posted by clients, which then win.
//!
//! * `config` — creation settings (`Format`, `Placeholder`, `Source`);
//! * `keys` — tile requests and the instance's keys;
//! * `meta` — `metadata`, posted or derived from the source;
//! * `fresh` — the source and its level instances, and when a cached tile is still good;
//! * `tiles` — `tile` (GET, POST) and `tilekey`; `stitch` — `raw` and `isotropic`.

mod config;
mod fresh;
mod keys;
mod meta;
mod stitch;
mod tiles;

use serde_json::json;

use crate::datatype::{
    DataCtx, DataRequest, DataResponse, Datatype, Description, Method, Settings,
};
use crate::mutation::Subscription;
use crate::{Error, Result};
use config::Config;

#[derive(Debug, Default, Clone, Copy)]
pub struct ImagetileType;

const KEYWORDS: &[&str] = &["metadata", "tile", "tilekey", "raw", "isotropic"];

static DESCRIPTION: Description = Description {
    name: "imagetile",
    url: "github.com/janelia-flyem/dvid/datatype/imagetile",
    version: "0.1",
    help: include_str!("help.txt"),
    keywords: KEYWORDS,
    sync_targets: &["uint8blk"],
    default_compression: "none",
};

impl Datatype for ImagetileType {
    fn description(&self) -> &'static Description {
        &DESCRIPTION
    }

    fn configure(&self, settings: &Settings) -> Result<serde_json::Value> {
        Ok(serde_json::to_value(Config::from_settings(settings)?).expect("config serializes"))
    }

    fn extended_info(&self, ctx: &DataCtx) -> Result<serde_json::Value> {
        let cfg = Config::from_json(&ctx.instance.config)?;
        let src = fresh::source(ctx).ok().flatten();
        let source = src
            .as_ref()
            .map(|s| s.name().to_string())
            .or(cfg.source.clone())
            .unwrap_or_default();
        let meta = meta::current(ctx, src.as_ref()).ok().flatten();
        let (min, max, levels) = match &meta {
            Some(m) => {
                let j = m.to_json();
                (
                    j["MinTileCoord"].clone(),
                    j["MaxTileCoord"].clone(),
                    j["Levels"].clone(),
                )
            }
            None => (json!([0, 0, 0]), json!([0, 0, 0]), json!(null)),
        };
        Ok(json!({
            "Source": source,
            "MinTileCoord": min,
            "MaxTileCoord": max,
            "Levels": levels,
            "Placeholder": cfg.placeholder,
            "Encoding": cfg.format.dvid_code(),
            "Quality": config::JPEG_QUALITY,
        }))
    }

    fn subscriptions(&self, ctx: &DataCtx) -> Result<Vec<Subscription>> {
        fresh::subscriptions(ctx)
    }

    fn handle(&self, ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
        match (req.method, req.keyword.as_str()) {
            (Method::Get, "metadata") => meta::get(ctx, fresh::source(ctx)?.as_ref()),
            (Method::Post, "metadata") => meta::post(ctx, req),
            (Method::Get, "tile") => tiles::get(ctx, req),
            (Method::Post, "tile") => tiles::post(ctx, req),
            (Method::Get, "tilekey") => tiles::tilekey(req),
            (Method::Get, "raw" | "isotropic") => stitch::get(ctx, req),
            (Method::Post, "raw" | "isotropic") => Err(Error::bad(format!(
                "imagetile {:?} takes posted tiles (POST tile/...), not images",
                ctx.instance.name
            ))),
            (m, kw) => Err(Error::bad(format!(
                "{} {kw} is not served by imagetile instances",
                m.as_str()
            ))),
        }
    }
}

//! The `labelvol` datatype (spec §4.11, §6.1): the sparse-volume index of the labelblk it
//! syncs to. Its data is a labelmap label index (`labelmap::index`, kept in its own instance)
//! over the labelblk's raw uint64 blocks: `labelmap::store::Labels::with_source` reads the
//! labelblk's voxels through the index, so `sparsevol` and its family, `maxlabel`,
//! `nextlabel` and the sizes are labelmap's code paths.
//!
//! * [`sync`] — the durable subscriber of the labelblk's `BLOCK_INGEST`/`BLOCK_MUTATE`
//!   events that keeps the index, and the re-indexing of changed blocks every write shares;
//! * [`mutate`] — `merge`, `split`, `split-coarse`: the labelblk's voxels rewritten through
//!   its typed handle (`labelblk::Labelblk`), then the index updated before the reply.

mod mutate;
pub mod sync;

use crate::datatype::{
    DataCtx, DataRequest, DataResponse, Datatype, Description, Method, Settings,
};
use crate::datatypes::labelblk::Labelblk;
use crate::datatypes::labelmap::config::Config;
use crate::datatypes::labelmap::store::Labels;
use crate::datatypes::labelmap::{labels as lm_labels, log as lm_log, sparsevol};
use crate::mutation::Subscription;
use crate::{Error, Result};

#[derive(Debug, Default, Clone, Copy)]
pub struct LabelvolType;

const KEYWORDS: &[&str] = &[
    "sparsevol",
    "sparsevol-by-point",
    "sparsevol-coarse",
    "sparsevols-coarse",
    "sparsevol-size",
    "size",
    "sizes",
    "maxlabel",
    "nextlabel",
    "merge",
    "split",
    "split-coarse",
    "resync",
    "area",
    "mutations",
];

const HELP: &str = include_str!("help.txt");

static DESCRIPTION: Description = Description {
    name: "labelvol",
    url: "github.com/janelia-flyem/dvid/datatype/labelvol",
    version: "0.1",
    help: HELP,
    keywords: KEYWORDS,
    sync_targets: &["labelblk"],
    default_compression: "lz4",
};

/// DVID's labelvol (and labelblk) block size.
const DEFAULT_BLOCK: usize = 32;

impl Datatype for LabelvolType {
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
        for key in ["KeepMeshes", "MaxDownresLevel", "IndexedLabels"] {
            if s.get(key).is_some() {
                return Err(Error::bad(format!(
                    "{key} is not a labelvol setting: a labelvol indexes its labelblk at one scale"
                )));
            }
        }
        let mut cfg = Config::from_settings(&s)?;
        cfg.no_mapping = true;
        Ok(serde_json::to_value(cfg).expect("config serializes"))
    }

    fn extended_info(&self, ctx: &DataCtx) -> Result<serde_json::Value> {
        let cfg = Config::from_json(&ctx.instance.config)?;
        Ok(serde_json::json!({
            "BlockSize": cfg.block_size,
            "VoxelSize": cfg.voxel_size,
            "VoxelUnits": cfg.voxel_units,
        }))
    }

    fn admin_only(&self, method: Method, keyword: &str) -> bool {
        crate::datatypes::labelmap::LabelmapType.admin_only(method, keyword)
    }

    fn subscriptions(&self, ctx: &DataCtx) -> Result<Vec<Subscription>> {
        sync::subscriptions(ctx)
    }

    fn handle(&self, ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
        let blk = source(ctx)?;
        let labels = labels_over(ctx, &blk)?;
        match (req.method, req.keyword.as_str()) {
            (Method::Get, "sparsevol") => sparsevol::get(&labels, req),
            (Method::Head, "sparsevol") => sparsevol::head(&labels, req),
            (Method::Get, "sparsevol-by-point") => sparsevol::by_point(&labels, req),
            (Method::Get, "sparsevol-coarse") => sparsevol::coarse(&labels, req),
            (Method::Get, "sparsevols-coarse") => sparsevol::coarse_range(&labels, req),
            (Method::Post, "merge") => mutate::merge(ctx, &labels, &blk, req),
            (Method::Post, "split") => mutate::split(ctx, &labels, &blk, req, false),
            (Method::Post, "split-coarse") => mutate::split(ctx, &labels, &blk, req, true),
            (Method::Post, "resync") => mutate::resync(ctx, &labels, req),
            (Method::Delete, "area") => mutate::delete_area(ctx, &labels, req),
            (Method::Get, "mutations") => lm_log::handle(ctx, req),
            (_, "sparsevol-size" | "size" | "sizes" | "maxlabel" | "nextlabel") => {
                lm_labels::handle(ctx, &labels, req)
            }
            (m, kw) => Err(Error::bad(format!(
                "{} {kw} is not served by labelvol instances",
                m.as_str()
            ))),
        }
    }
}

/// The labelblk the labelvol of `ctx` indexes, at the node the request named.
fn source(ctx: &DataCtx) -> Result<Labelblk> {
    match ctx.instance.syncs.as_slice() {
        [one] => ctx.handle::<Labelblk>(one),
        [] => Err(Error::bad(format!(
            "labelvol {:?} is not synced to a labelblk yet: POST sync {{\"sync\": \"<labelblk>\"}}",
            ctx.instance.name
        ))),
        _ => Err(Error::bad(format!(
            "labelvol {:?} syncs to several instances; it indexes one labelblk (POST sync?replace=true)",
            ctx.instance.name
        ))),
    }
}

/// The labelvol's index over the labelblk's voxels, at the context's version.
pub(crate) fn labels_over(ctx: &DataCtx, blk: &Labelblk) -> Result<Labels> {
    let cfg = Config::from_json(&ctx.instance.config)?;
    if cfg.block_size != blk.block_size() {
        return Err(Error::bad(format!(
            "labelvol {:?} has blocks of {:?} but labelblk {:?} has {:?}: they must match",
            ctx.instance.name,
            cfg.block_size,
            blk.name(),
            blk.block_size()
        )));
    }
    Ok(Labels::with_source(ctx, cfg, blk.blocks().clone()))
}

//! The `labelmap` datatype (spec §4.4): 64-bit supervoxel blocks in DVID's compressed block
//! format, a label index kept exact on every write, and multiscale pyramids recomputed
//! through the compute engine (before a write returns; after an edit that rewrites blocks,
//! with reads of coarse scales waiting for them).
//!
//! * [`config`] — creation settings;
//! * [`store`] — keys besides blocks, and [`Labels`], the data at a version over the block
//!   layer (`crate::block`: geometry, block keys, storage wrapper, reads, pyramid writer);
//! * [`ingest`] — the write path: label index, extents and sync events around the block
//!   writer;
//! * [`index`] — the label index protobuf and its updates;
//! * [`pyramid`] — scales ≥ 1 rebuilt after a block-rewriting edit answered;
//! * `voxels`, `blocks`, `labels`, `sparsevol` — the endpoints (`compression=google` through
//!   `crate::block::cseg`).

mod blocks;
pub mod config;
mod handle;
pub mod index;
pub mod ingest;
pub(crate) mod labels;
pub(crate) mod log;
pub mod mapping;
pub mod meshes;
pub(crate) mod mutate;
mod pieces;
pub mod pyramid;
pub(crate) mod rewrite;
pub(crate) mod runs;
pub(crate) mod sparsevol;
pub(crate) mod state;
pub mod store;
#[cfg(test)]
mod tests;
pub(crate) mod voxels;

use serde_json::json;

use crate::datatype::DataCtx;
use crate::datatype::{DataRequest, DataResponse, Datatype, Description, Method, Query, Settings};
use crate::mutation::Subscription;
use crate::{Error, Result};
use config::Config;
pub use handle::Labelmap;
/// The split body parser (legacy RLE, the `rles` sparsevol encoding), for the fuzz tests.
pub use runs::parse_rles;
use store::Labels;

#[derive(Debug, Default, Clone, Copy)]
pub struct LabelmapType;

const KEYWORDS: &[&str] = &[
    "raw",
    "isotropic",
    "label",
    "labels",
    "blocks",
    "specificblocks",
    "ingest-supervoxels",
    "maxlabel",
    "nextlabel",
    "set-nextlabel",
    "size",
    "sizes",
    "sparsevol-size",
    "supervoxels",
    "supervoxel-sizes",
    "existing-labels",
    "listlabels",
    "index",
    "indices",
    "indices-compressed",
    "lastmod",
    "sparsevol",
    "sparsevol-by-point",
    "sparsevol-coarse",
    "sparsevols-coarse",
    "merge",
    "renumber",
    "cleave",
    "split",
    "split-supervoxel",
    "mapping",
    "mappings",
    "supervoxel-splits",
    "mutations",
    "mutations-range",
    "history",
    "mesh",
];

/// Endpoints that need the label index (spec §4.4: 400 when IndexedLabels is false).
const NEED_INDEX: &[&str] = &[
    "sparsevol",
    "sparsevol-by-point",
    "sparsevol-coarse",
    "sparsevols-coarse",
    "maxlabel",
    "nextlabel",
    "split-supervoxel",
    "split",
    "cleave",
    "merge",
    "renumber",
    "mesh",
    "split-coarse",
];

/// Endpoints of supervoxels and their mapping, which an instance without one (labelarray)
/// refuses.
const NEED_MAPPING: &[&str] = &[
    "ingest-supervoxels",
    "supervoxels",
    "supervoxel-sizes",
    "renumber",
    "cleave",
    "split-supervoxel",
    "mapping",
    "mappings",
    "supervoxel-splits",
    "history",
    "mesh",
];

const HELP: &str = include_str!("help.txt");

static DESCRIPTION: Description = Description {
    name: "labelmap",
    url: "github.com/janelia-flyem/dvid/datatype/labelmap",
    version: "0.1",
    help: HELP,
    keywords: KEYWORDS,
    sync_targets: &["labelmap", "labelvol"],
    // gzip like DVID, but at level 1: DVID's level 6 more than doubles the ingest time
    // (docs/benchmarks.md).
    default_compression: "gzip:1",
};

impl Datatype for LabelmapType {
    fn description(&self) -> &'static Description {
        &DESCRIPTION
    }

    fn configure(&self, settings: &Settings) -> Result<serde_json::Value> {
        let cfg = Config::from_settings(settings)?;
        crate::block::Stored::labels_from_setting(
            &settings
                .get("compression")
                .unwrap_or(self.default_compression())
                .to_ascii_lowercase(),
            cfg.block_shape(),
        )?;
        Ok(serde_json::to_value(cfg).expect("config serializes"))
    }

    fn extended_info(&self, ctx: &DataCtx) -> Result<serde_json::Value> {
        let labels = Labels::new(ctx)?;
        let cfg = &labels.cfg;
        let b = &labels.blocks;
        let mut info = crate::block::extents::info(
            &b.store,
            &b.view,
            cfg.block_size,
            cfg.voxel_size,
            &cfg.voxel_units,
        )?;
        let maxima = labels::version_max_labels(&labels)?;
        let repo_max = maxima.iter().map(|(_, m)| *m).max().unwrap_or(0);
        let per_version: serde_json::Map<String, serde_json::Value> = maxima
            .into_iter()
            .map(|(v, m)| (v.to_string(), json!(m)))
            .collect();
        let next = labels::next_label_setting(&labels)?;
        let more = json!({
            "Values": [{"DataType": "uint64", "Label": ctx.instance.type_name}],
            "Interpolable": false,
            "MaxLabel": per_version,
            "MaxRepoLabel": repo_max,
            "NextLabel": next,
            "IndexedLabels": cfg.indexed_labels,
            "MaxDownresLevel": cfg.max_downres_level,
        });
        if let serde_json::Value::Object(m) = more {
            info.extend(m);
        }
        Ok(info.into())
    }

    fn streams_body(&self, method: Method, keyword: &str) -> bool {
        method == Method::Post && keyword == "raw"
    }

    fn admin_only(&self, method: Method, keyword: &str) -> bool {
        method == Method::Post && matches!(keyword, "maxlabel" | "set-nextlabel")
    }

    fn subscriptions(&self, ctx: &DataCtx) -> Result<Vec<Subscription>> {
        let cfg = Config::from_json(&ctx.instance.config)?;
        let mut subs = Vec::new();
        if cfg.max_downres_level > 0 {
            subs.push(pyramid::subscription(ctx));
        }
        if cfg.keep_meshes {
            subs.push(meshes::subscription(ctx));
        }
        Ok(subs)
    }

    fn handle(&self, ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
        let labels = Labels::new(ctx)?;
        let no_mapping = labels.cfg.no_mapping;
        let labels = if no_mapping {
            // labelarray: what the blocks hold is the label.
            labels
        } else {
            let mapping = state::state(ctx).mapping(&labels)?;
            labels.with_mapping(mapping, req.query.flag("supervoxels")?)
        };
        let kw = req.keyword.as_str();
        let coarse = scale(&labels.cfg, &req.query).is_ok_and(|s| s > 0);
        if coarse && matches!(req.method, Method::Get | Method::Head) {
            pyramid::settle(ctx)?;
        }
        if no_mapping && NEED_MAPPING.contains(&kw) {
            return Err(Error::bad(format!(
                "{kw} needs a supervoxel mapping, which {} instance {:?} doesn't have",
                ctx.instance.type_name, ctx.instance.name
            )));
        }
        if !labels.cfg.indexed_labels && NEED_INDEX.contains(&kw) {
            return Err(Error::bad(format!(
                "{kw} needs label indexing, which instance {:?} has turned off (IndexedLabels=false)",
                ctx.instance.name
            )));
        }
        if let Some(name) = req.query.get("roi") {
            let roi = crate::datatypes::roi::Roi::for_query(ctx, name)?;
            return match (req.method, kw) {
                (Method::Get | Method::Head, "raw" | "isotropic") => {
                    voxels::get_masked(&labels, req, Some(&roi))
                }
                (m, kw) => Err(Error::bad(format!(
                    "roi= applies to GET raw and isotropic of {} instances, not {} {kw}",
                    ctx.instance.type_name,
                    m.as_str()
                ))),
            };
        }
        match (req.method, kw) {
            (Method::Get | Method::Head, "raw" | "isotropic") => voxels::get(&labels, req),
            (Method::Post, "raw") => voxels::post(ctx, labels, req),
            (Method::Get, "label") => voxels::label(&labels, req),
            (Method::Get, "labels") => voxels::labels(&labels, req),
            (Method::Get, "blocks") => blocks::get(labels, req),
            (Method::Get, "specificblocks") => blocks::specific(labels, req),
            (Method::Post, "blocks") => blocks::post(ctx, labels, req, false),
            (Method::Post, "ingest-supervoxels") => blocks::post(ctx, labels, req, true),
            (Method::Get, "mesh") => meshes::get(ctx, &labels, req),
            (Method::Get, "sparsevol") => sparsevol::get(&labels, req),
            (Method::Head, "sparsevol") => sparsevol::head(&labels, req),
            (Method::Get, "sparsevol-by-point") => sparsevol::by_point(&labels, req),
            (Method::Get, "sparsevol-coarse") => sparsevol::coarse(&labels, req),
            (Method::Get, "sparsevols-coarse") => sparsevol::coarse_range(&labels, req),
            (Method::Post, "merge") if no_mapping => mutate::relabel_merge(ctx, &labels, req),
            (Method::Post, "split") if no_mapping => {
                mutate::relabel_split(ctx, &labels, req, false)
            }
            (Method::Post, "split-coarse") if no_mapping => {
                mutate::relabel_split(ctx, &labels, req, true)
            }
            (Method::Post, "merge") => mutate::merge(ctx, &labels, req),
            (Method::Post, "renumber") => mutate::renumber(ctx, &labels, req),
            (Method::Post, "cleave") => mutate::cleave(ctx, &labels, req),
            (Method::Post, "split") => mutate::split(ctx, &labels, req),
            (Method::Post, "split-supervoxel") => mutate::split_supervoxel(ctx, &labels, req),
            (_, "mapping" | "mappings" | "supervoxel-splits") => mapping::handle(ctx, &labels, req),
            (Method::Get, "mutations" | "mutations-range" | "history") => log::handle(ctx, req),
            _ => labels::handle(ctx, &labels, req),
        }
    }
}

/// `scale=N`, checked against MaxDownresLevel.
pub fn scale(cfg: &Config, q: &Query) -> Result<u8> {
    let s = match q.get("scale") {
        None => 0,
        Some(v) => v
            .parse::<u8>()
            .map_err(|_| Error::bad(format!("scale {v:?} must be a small non-negative integer")))?,
    };
    cfg.check_scale(s)?;
    Ok(s)
}

/// The 404 of a label with no voxels (in the requested bounds).
pub fn no_voxels(label: u64) -> Error {
    Error::not_found(format!("label {label} has no voxels here"))
}

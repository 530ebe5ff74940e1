//! The `labelarray` datatype (spec §4.3): DVID's predecessor of labelmap. Its blocks, label
//! index, multiscale pyramid and endpoints are labelmap's, run with the configuration flag
//! `no_mapping` (`labelmap::config::Config`): there is no supervoxel → body mapping, reads
//! never map, and `merge`, `split` and `split-coarse` rewrite the voxels of the labels they
//! change through labelmap's block-rewrite path (`labelmap::mutate::relabel_*`). Mapping and
//! supervoxel endpoints are not offered.

use crate::datatype::{
    DataCtx, DataRequest, DataResponse, Datatype, Description, Method, Settings, pseudocolor,
};
use crate::datatypes::labelmap::store::Labels;
use crate::datatypes::labelmap::{self, LabelmapType};
use crate::{Error, Result};

#[derive(Debug, Default, Clone, Copy)]
pub struct LabelarrayType;

const KEYWORDS: &[&str] = &[
    "raw",
    "isotropic",
    "pseudocolor",
    "label",
    "labels",
    "blocks",
    "specificblocks",
    "maxlabel",
    "nextlabel",
    "set-nextlabel",
    "size",
    "sizes",
    "sparsevol-size",
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
    "split",
    "split-coarse",
    "mutations",
    "mutations-range",
];

const HELP: &str = include_str!("help.txt");

static DESCRIPTION: Description = Description {
    name: "labelarray",
    url: "github.com/janelia-flyem/dvid/datatype/labelarray",
    version: "0.1",
    help: HELP,
    keywords: KEYWORDS,
    sync_targets: &[],
    default_compression: "gzip:1",
};

impl Datatype for LabelarrayType {
    fn description(&self) -> &'static Description {
        &DESCRIPTION
    }

    fn configure(&self, settings: &Settings) -> Result<serde_json::Value> {
        if settings.bool("KeepMeshes")?.unwrap_or(false) {
            return Err(Error::bad(
                "KeepMeshes is a labelmap setting; labelarray keeps no meshes",
            ));
        }
        let mut cfg = LabelmapType.configure(settings)?;
        cfg["no_mapping"] = true.into();
        Ok(cfg)
    }

    fn extended_info(&self, ctx: &DataCtx) -> Result<serde_json::Value> {
        LabelmapType.extended_info(ctx)
    }

    fn streams_body(&self, method: Method, keyword: &str) -> bool {
        LabelmapType.streams_body(method, keyword)
    }

    fn admin_only(&self, method: Method, keyword: &str) -> bool {
        LabelmapType.admin_only(method, keyword)
    }

    fn handle(&self, ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
        if req.keyword == "pseudocolor" {
            return pseudocolor(ctx, req);
        }
        LabelmapType.handle(ctx, req)
    }
}

/// `GET pseudocolor/<dims>/<size>/<offset>[?scale=N]`: labelblk's hash-coloured slice of
/// labelmap's voxels.
fn pseudocolor(ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
    if req.method != Method::Get {
        return Err(Error::bad("pseudocolor is read with GET"));
    }
    let labels = Labels::new(ctx)?;
    let scale = labelmap::scale(&labels.cfg, &req.query)?;
    let (bx, a, b) = pseudocolor::slice(req)?;
    let voxels = labelmap::voxels::read_box(&labels, scale, &bx)?;
    pseudocolor::png(&voxels, bx.size[a], bx.size[b])
}

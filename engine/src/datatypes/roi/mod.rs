//! The `roi` datatype (spec §4.6): a region of interest as a set of blocks, stored per version
//! as runs `[z, y, x0, x1]` in block coordinates.
//!
//! * [`spans`] — parsing, normalizing, storing and querying runs,
//! * [`partition`] — DVID's simple subvolume partition,
//! * [`Roi`] — the typed handle image and label reads mask with (`roi=`).

mod handle;
pub mod partition;
pub mod spans;

use serde::Serialize;
use serde_json::json;

pub use handle::Roi;

use crate::block::volume::{Dims, check_whole, parse_geometry};
use crate::datatype::{
    DataCtx, DataRequest, DataResponse, Datatype, Description, Method, Settings,
};
use crate::{Error, Result};

/// The roi datatype.
#[derive(Debug, Default, Clone, Copy)]
pub struct RoiType;

const KEYWORDS: &[&str] = &["roi", "mask", "ptquery", "partition"];

/// Most points one `ptquery` may ask about.
const MAX_POINTS: usize = 10_000_000;

const HELP: &str = r#"
API for datatype "roi" (github.com/janelia-flyem/dvid/datatype/roi)
===================================================================

A region of interest: a set of blocks (BlockSize, default 32,32,32), stored per version as
runs [z, y, x0, x1] of blocks (x0..x1 inclusive). A version without its own ROI sees its
nearest ancestor's. Every path below is relative to /api/node/<UUID>/<data name>/.

Creation settings: BlockSize "x,y,z" (positive; default 32,32,32).

GET    roi        JSON [[z,y,x0,x1],...], sorted by z, y, x0, with overlapping and touching
                  runs of a row merged; [] when there is none.
POST   roi        Body: JSON [[z,y,x0,x1],...]. REPLACES the ROI at this version (as DVID's
                  POST does). Each run must be four integers, |coordinate| <= 1048575 and
                  x0 <= x1; anything else is a 400 and nothing is written.
DELETE roi        Deletes the ROI at this version (ancestors keep theirs; GET then gives []).

POST   ptquery    Body: JSON [[x,y,z],...] voxel points. Answers [true,false,...], whether
                  each point lies in the ROI, in order. Allowed on committed nodes.

GET    mask/0_1_2/<size>/<offset>
                  uint8 volume of the box (x fastest): 1 inside the ROI, 0 outside.

GET    partition?batchsize=N
                  Subvolumes of N×N×N blocks covering the ROI, DVID's simple partition:
                  {"NumTotalBlocks","NumActiveBlocks","NumSubvolumes",
                   "ROI":{"MinChunk","MaxChunk"},
                   "Subvolumes":[{"MinPoint","MaxPoint","MinChunk","MaxChunk",
                                  "TotalBlocks","ActiveBlocks"},...]}
                  optimized=true (DVID's variable-size partition) is not offered (400).

Other instances mask with an ROI by name: raw/isotropic reads of image and label instances
take roi=<name> (outside voxels read 0); image POST raw?roi=<name> writes only the voxels
inside.
"#;

static DESCRIPTION: Description = Description {
    name: "roi",
    url: "github.com/janelia-flyem/dvid/datatype/roi",
    version: "0.1",
    help: HELP,
    keywords: KEYWORDS,
    sync_targets: &[],
    default_compression: "none",
};

impl Datatype for RoiType {
    fn description(&self) -> &'static Description {
        &DESCRIPTION
    }

    fn configure(&self, settings: &Settings) -> Result<serde_json::Value> {
        let bs = settings.triple::<i32>("BlockSize")?.unwrap_or([32; 3]);
        if bs.iter().any(|&b| !(1..=4096).contains(&b)) {
            return Err(Error::bad(format!(
                "BlockSize {bs:?}: each size must be from 1 to 4096"
            )));
        }
        Ok(json!({ "BlockSize": bs }))
    }

    fn extended_info(&self, ctx: &DataCtx) -> Result<serde_json::Value> {
        let roi = Roi::load(ctx)?;
        let zs = roi.spans().iter().map(|s| s[0]);
        Ok(json!({
            "BlockSize": roi.block_size,
            "MinZ": zs.clone().min().unwrap_or(i32::MAX),
            "MaxZ": zs.max().unwrap_or(i32::MIN),
        }))
    }

    fn is_mutation(&self, method: Method, keyword: &str) -> bool {
        keyword != "ptquery" && matches!(method, Method::Post | Method::Put | Method::Delete)
    }

    fn handle(&self, ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
        match (req.keyword.as_str(), req.method) {
            ("roi", Method::Get) => Ok(DataResponse::json(&json!(Roi::load(ctx)?.spans()))),
            ("roi", Method::Post) => {
                let spans = spans::normalize(spans::parse(&req.body)?);
                handle::put(ctx, &spans)?;
                Ok(DataResponse::empty())
            }
            ("roi", Method::Delete) => {
                handle::delete(ctx)?;
                Ok(DataResponse::empty())
            }
            ("ptquery", Method::Post) => ptquery(ctx, req),
            ("mask", Method::Get) => mask(ctx, req),
            ("partition", Method::Get) => partition(ctx, req),
            (keyword, method) => Err(Error::bad(format!(
                "roi endpoint {keyword:?} does not support the {} method",
                method.as_str()
            ))),
        }
    }
}

fn ptquery(ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
    let points: Vec<serde_json::Value> = serde_json::from_slice(&req.body)
        .map_err(|e| Error::bad(format!("ptquery takes a JSON array of [x,y,z] points: {e}")))?;
    if points.len() > MAX_POINTS {
        return Err(Error::bad(format!(
            "ptquery takes at most {MAX_POINTS} points per request"
        )));
    }
    let roi = Roi::load(ctx)?;
    let answers = points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let bad = || Error::bad(format!("point {i} {p}: must be three integers [x,y,z]"));
            let a = p.as_array().filter(|a| a.len() == 3).ok_or_else(bad)?;
            let mut v = [0i64; 3];
            for (k, n) in a.iter().enumerate() {
                v[k] = n
                    .as_i64()
                    .filter(|n| i32::try_from(*n).is_ok())
                    .ok_or_else(bad)?;
            }
            Ok(roi.contains_voxel(v))
        })
        .collect::<Result<Vec<bool>>>()?;
    Ok(DataResponse::json(&json!(answers)))
}

fn mask(ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
    let (dims, bx) = parse_geometry(&req.path)?;
    if dims != Dims::Volume || req.path.len() != 3 {
        return Err(Error::bad(
            "only 3-D masks are served: mask/0_1_2/<size>/<offset>",
        ));
    }
    check_whole(&bx, 1)?;
    Ok(DataResponse::octets(Roi::load(ctx)?.mask_box(&bx)))
}

fn partition(ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
    let given = req.query.get("batchsize").unwrap_or("");
    let batch = given
        .parse::<i64>()
        .ok()
        .filter(|b| (1..=1 << 20).contains(b))
        .ok_or_else(|| {
            Error::bad(format!(
                "partition needs batchsize=N, a positive integer, not {given:?}"
            ))
        })?;
    if matches!(req.query.get("optimized"), Some("true" | "on")) {
        return Err(Error::bad(
            "optimized partitioning is not offered by this server; omit optimized= for the simple partition",
        ));
    }
    let roi = Roi::load(ctx)?;
    let p = partition::simple(roi.spans(), roi.block_size, batch);
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    p.serialize(&mut ser)
        .map_err(|e| Error::Internal(format!("partition: {e}")))?;
    Ok(DataResponse::bytes("application/json", out))
}

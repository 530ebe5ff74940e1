//! `volumeproxy`: a read-only instance serving a volume kept elsewhere — a neuroglancer
//! precomputed volume or a zarr v2/v3 array on object storage, an HTTP server or local disk —
//! through DVID's voxel endpoints, without copying it (DVID's googlevoxels, for today's
//! formats). Chunks are fetched concurrently as requests need them and kept, decoded, in a
//! per-instance cache, so a lab can put a public EM volume under its own segmentation.
//!
//! Settings: `Source` (required: `https://…`, `s3://…`, `gs://…`, `az://…`, `file:///…`; the
//! directory holding precomputed's `info` or the zarr array's metadata), `CacheMB` (default
//! 256), `RetrySecs` (how long a failing fetch is retried before a 503/504; default 30),
//! `VoxelSize` (`x,y,z`; default the precomputed resolution, else 1,1,1), and
//! `object_<option>` for the object store client (`object_endpoint`, `object_allow_http`, …).

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tessera_storage::ObjectConfig;

use crate::block::volume::{Dims, check_whole, parse_geometry};
use crate::datatype::{
    DataCtx, DataRequest, DataResponse, Datatype, Description, Method, Settings,
};
use crate::datatypes::imageblk::Kind;
use crate::datatypes::imageblk::voxels::{Format, image_bytes};
use crate::remote::{self, ChunkedVolume, Dtype, Fetch, LocalDir, Remote};
use crate::{Error, Result};

#[derive(Debug, Default, Clone, Copy)]
pub struct VolumeProxyType;

const KEYWORDS: &[&str] = &["raw"];

const HELP: &str = r#"
API for datatype "volumeproxy" (Tessera's; DVID's googlevoxels for today's formats)
====================================================================================

A read-only view of a neuroglancer precomputed volume (unsharded; raw, png, jpeg or
compressed_segmentation chunks, gzip-compressed or not; its first scale) or a zarr v2/v3 array (uncompressed, gzip or zlib) kept
on object storage, an HTTP server or local disk. Nothing is copied: chunks are fetched as reads
need them and cached.

POST /api/repo/<UUID>/instance  {"typename": "volumeproxy", "dataname": "em",
                                 "Source": "https://host/path/volume", "CacheMB": "256"}
    The source is opened at creation: a source that cannot be read is refused (400).
    RetrySecs (default 30): how long a failing fetch is retried before a 503/504.
    object_endpoint, object_region, object_allow_http, … configure an S3-compatible client.

GET  raw/0_1_2/<size>/<offset>[/nD]   Voxels, little-endian, x fastest (octet-stream).
GET  raw/<0_1|0_2|1_2>/<size>/<offset>[/png]   A 2-D slice as PNG.
    Coordinates are the volume's own (precomputed's voxel_offset is its first voxel);
    voxels outside the volume read as 0.
GET  info    Extended: Source, Format, DataType, BlockSize (the chunk), VoxelSize, MinPoint,
             MaxPoint, CacheMB.
"#;

static DESCRIPTION: Description = Description {
    name: "volumeproxy",
    url: "github.com/tessera/volumeproxy",
    version: "0.1",
    help: HELP,
    keywords: KEYWORDS,
    sync_targets: &[],
    default_compression: "none",
};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Config {
    source: String,
    cache_mb: u64,
    retry_secs: f64,
    voxel_size: Option<[f64; 3]>,
    options: BTreeMap<String, String>,
}

impl Config {
    fn fetch(&self) -> Result<Arc<dyn Fetch>> {
        if !self.source.contains("://") {
            return Ok(Arc::new(LocalDir(self.source.clone().into())));
        }
        let mut cfg = ObjectConfig::new(self.source.clone());
        cfg.options = self.options.clone();
        cfg.retry_timeout = std::time::Duration::from_secs_f64(self.retry_secs);
        let remote = Remote::open(&cfg).map_err(|e| remote_error(&self.source, e))?;
        Ok(Arc::new(remote))
    }

    fn open(&self) -> Result<ChunkedVolume> {
        let volume = remote::open(self.fetch()?).map_err(|e| remote_error(&self.source, e))?;
        Ok(volume.with_cache(self.cache_mb << 20))
    }
}

/// A failure reaching or reading the source: the store layer's 503/504 when it says so, else
/// a 400 naming the source (what it holds can't be served).
fn remote_error(source: &str, e: anyhow::Error) -> Error {
    match e.downcast::<tessera_storage::Error>() {
        Ok(s @ (tessera_storage::Error::Unavailable(_) | tessera_storage::Error::Timeout(_))) => {
            s.into()
        }
        Ok(other) => Error::bad(format!("volume source {source:?}: {other}")),
        Err(e) => Error::bad(format!("volume source {source:?}: {e:#}")),
    }
}

/// The opened volume of each instance, opened on first use.
#[derive(Default)]
struct State {
    volume: Mutex<Option<Arc<ChunkedVolume>>>,
}

fn volume(ctx: &DataCtx) -> Result<Arc<ChunkedVolume>> {
    let state = ctx.services.instance_state(ctx.instance.id, State::default);
    let mut slot = state.volume.lock();
    if let Some(v) = slot.as_ref() {
        return Ok(v.clone());
    }
    let v = Arc::new(config(ctx)?.open()?);
    *slot = Some(v.clone());
    Ok(v)
}

fn config(ctx: &DataCtx) -> Result<Config> {
    serde_json::from_value(ctx.instance.config.clone())
        .map_err(|e| Error::Internal(format!("volumeproxy config: {e}")))
}

fn kind(d: Dtype) -> Kind {
    match d {
        Dtype::U8 => Kind::Uint8,
        Dtype::U16 => Kind::Uint16,
        Dtype::U64 => Kind::Uint64,
    }
}

impl Datatype for VolumeProxyType {
    fn description(&self) -> &'static Description {
        &DESCRIPTION
    }

    fn configure(&self, settings: &Settings) -> Result<serde_json::Value> {
        let source = settings
            .get("source")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Error::bad("a volumeproxy needs a Source: the volume's URL"))?
            .to_string();
        let cache_mb = match settings.get("cachemb") {
            None => 256,
            Some(s) => s
                .parse()
                .map_err(|_| Error::bad(format!("CacheMB {s:?} is not a whole number")))?,
        };
        let retry_secs = match settings.get("retrysecs") {
            None => 30.0,
            Some(s) => s
                .parse::<f64>()
                .ok()
                .filter(|r| r.is_finite() && (0.0..=600.0).contains(r))
                .ok_or_else(|| Error::bad(format!("RetrySecs {s:?} must be 0 to 600 seconds")))?,
        };
        // Given, the shared VoxelSize rule; absent, the source's resolution (see `info`).
        let voxel_size = match settings.get("voxelsize") {
            Some(_) => Some(settings.voxel_size()?),
            None => None,
        };
        let options = settings
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("object_")?.to_string(), v.to_string())))
            .collect();
        let cfg = Config {
            source,
            cache_mb,
            retry_secs,
            voxel_size,
            options,
        };
        // Refuse a source that can't be served now rather than at every read.
        cfg.open()?;
        Ok(serde_json::to_value(cfg).expect("config serializes"))
    }

    fn extended_info(&self, ctx: &DataCtx) -> Result<serde_json::Value> {
        let cfg = config(ctx)?;
        let v = volume(ctx)?;
        let max: Vec<i64> = (0..3)
            .map(|a| v.origin[a] + v.shape[a] as i64 - 1)
            .collect();
        Ok(json!({
            "Source": cfg.source,
            "Format": v.kind,
            "DataType": v.dtype.name(),
            "BlockSize": v.chunk,
            "VoxelSize": cfg.voxel_size.or(v.resolution).unwrap_or([1.0; 3]),
            "MinPoint": v.origin,
            "MaxPoint": max,
            "CacheMB": cfg.cache_mb,
        }))
    }

    fn handle(&self, ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
        match (req.method, req.keyword.as_str()) {
            (Method::Get | Method::Head, "raw") => raw(ctx, req),
            (_, "raw") => Err(Error::bad(
                "a volumeproxy is read-only: its volume is served from its source",
            )),
            (_, k) => Err(Error::bad(format!("volumeproxy has no endpoint {k:?}"))),
        }
    }
}

fn raw(ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
    let (dims, bx) = parse_geometry(&req.path)?;
    let v = volume(ctx)?;
    check_whole(&bx, v.dtype.size())?;
    let lo: [i64; 3] = std::array::from_fn(|a| bx.min[a] - v.origin[a]);
    let source = config(ctx)?.source;
    let voxels = v
        .read_box(lo, bx.size)
        .map_err(|e| remote_error(&source, e))?;
    let format = req.path.get(3).map(String::as_str);
    match (dims, format) {
        (Dims::Volume, None | Some("nD" | "nd")) => Ok(DataResponse::octets(voxels)),
        (Dims::Slice(a, _), None | Some("png")) => Ok(DataResponse::bytes(
            "image/png",
            image_bytes(kind(v.dtype), &voxels, bx.size[a], Format::Png)?,
        )),
        (_, Some(f)) => Err(Error::bad(format!(
            "a volumeproxy serves volumes raw and slices as png, not {f:?}"
        ))),
    }
}

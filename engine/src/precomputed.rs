//! Any version of a labelmap or uint8blk instance as a neuroglancer precomputed volume, so
//! tools that speak no DVID (CloudVolume, tensorstore, neuroglancer's `precomputed://`) read
//! Tessera directly. Read-only; served under `/precomputed/<uuid>/<instance>/`:
//!
//! * `info` — `neuroglancer_multiscale_volume`: one scale per labelmap scale (`MaxDownresLevel`)
//!   or per grayscale level instance (`<name>_1`, `<name>_2`, … as neuroglancer finds them);
//!   bounds from the instance's extents at that version; 64³ chunks.
//! * `<key>/<x0>-<x1>_<y0>-<y1>_<z0>-<z1>` — one chunk (keys `s0`, `s1`, …).
//! * `mesh/info`, `mesh/<body>.index`, `mesh/<body>` — labelmap bodies in neuroglancer's
//!   multi-resolution format (`neuroglancer_multilod_draco`, as `tessera mesh` writes it): one
//!   level of detail per scale up to 2, fragments of 64-voxel cells; the data file answers
//!   HTTP `Range` requests, which is how clients read it.
//! * `provenance` — an empty record (CloudVolume asks for it).
//!
//! Chunks are encoded as the default for the type (labels: `compressed_segmentation`;
//! grayscale: `raw`), or as the encoding named by an extra first segment:
//! `/precomputed/<uuid>/<instance>/raw/…`, `…/jpeg/…` (grayscale only),
//! `…/compressed_segmentation/…` (labels only).

use serde_json::{Value, json};

use crate::block::cseg;
use crate::block::extents::Bounds;
use crate::block::geom::VoxelBox;
use crate::block::jpeg;
use crate::datatype::range::ranged;
use crate::datatype::{Caller, Catalog, DataResponse, Handle};
use crate::datatypes::imageblk::Grayscale;
use crate::datatypes::labelmap::Labelmap;
use crate::mesh::Mesh;
use crate::mesh::format::{precomputed_multires, precomputed_multires_info};
use crate::{Error, Result};

/// Chunk edge of every scale; DVID's default block size, so a chunk is one block's worth.
const CHUNK: usize = 64;
/// JPEG quality of `jpeg` chunks.
const JPEG_QUALITY: u8 = 90;
/// Mesh vertex quantization (neuroglancer takes 10 or 16).
const MESH_BITS: u32 = 10;
/// Coarsest scale meshed as a level of detail.
const MESH_LODS: u8 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Raw,
    Jpeg,
    CompressedSegmentation,
}

impl Encoding {
    fn parse(s: &str) -> Option<Encoding> {
        match s {
            "raw" => Some(Encoding::Raw),
            "jpeg" => Some(Encoding::Jpeg),
            "compressed_segmentation" => Some(Encoding::CompressedSegmentation),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Encoding::Raw => "raw",
            Encoding::Jpeg => "jpeg",
            Encoding::CompressedSegmentation => "compressed_segmentation",
        }
    }
}

/// What is served: a labelmap's scales, or a grayscale instance and its level instances.
enum Volume {
    Labels(Box<Labelmap>),
    Gray(Vec<Grayscale>),
}

/// One scale as the `info` describes it.
struct Scale {
    resolution: [f64; 3],
    /// Inclusive voxel bounds at this scale; `None` when nothing was written.
    bounds: Option<Bounds>,
}

/// Answers `GET /precomputed/<spec>/<name>/<path…>`; `range` is the request's `Range` header.
pub fn serve(
    catalog: &dyn Catalog,
    spec: &str,
    name: &str,
    path: &[String],
    range: Option<&str>,
    caller: &Caller,
) -> Result<DataResponse> {
    let ctx = catalog.ctx_at(spec, name, None, caller)?;
    let volume = match ctx.instance.type_name.as_str() {
        "labelmap" => Volume::Labels(Box::new(Labelmap::from_ctx(ctx)?)),
        "uint8blk" => {
            let mut levels = vec![Grayscale::from_ctx(ctx)?];
            for k in 1.. {
                match catalog.ctx_at(spec, &format!("{name}_{k}"), None, caller) {
                    Ok(c) if c.instance.type_name == "uint8blk" => {
                        levels.push(Grayscale::from_ctx(c)?)
                    }
                    _ => break,
                }
            }
            Volume::Gray(levels)
        }
        other => {
            return Err(Error::bad(format!(
                "instance {name:?} is a {other}; a precomputed view serves labelmap and uint8blk instances"
            )));
        }
    };
    let (encoding, rest) = match path.first().and_then(|s| Encoding::parse(s)) {
        Some(e) => (e, &path[1..]),
        None => (volume.default_encoding(), path),
    };
    volume.check_encoding(encoding)?;
    match rest
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["info"] => Ok(DataResponse::json(&volume.info(encoding)?)),
        ["provenance"] => Ok(DataResponse::json(
            &json!({"description": "", "owners": [], "processing": [], "sources": []}),
        )),
        ["mesh", file] => volume.mesh_file(file, range),
        [key, chunk] => volume.chunk(encoding, key, chunk),
        _ => Err(Error::not_found(format!(
            "no precomputed file {:?}: expected info, provenance, <scale>/<x0>-<x1>_<y0>-<y1>_<z0>-<z1> or mesh/…",
            rest.join("/")
        ))),
    }
}

impl Volume {
    fn default_encoding(&self) -> Encoding {
        match self {
            Volume::Labels(_) => Encoding::CompressedSegmentation,
            Volume::Gray(_) => Encoding::Raw,
        }
    }

    fn check_encoding(&self, e: Encoding) -> Result<()> {
        let ok = match self {
            Volume::Labels(_) => e != Encoding::Jpeg,
            Volume::Gray(_) => e != Encoding::CompressedSegmentation,
        };
        if ok {
            Ok(())
        } else {
            Err(Error::bad(format!(
                "{} chunks are not offered for this instance's type",
                e.name()
            )))
        }
    }

    fn scales(&self) -> Result<Vec<Scale>> {
        match self {
            Volume::Labels(lm) => {
                let bounds = lm.extents()?;
                Ok((0..=lm.max_scale())
                    .map(|k| Scale {
                        resolution: lm.voxel_size().map(|v| v * f64::from(1u32 << k)),
                        bounds: bounds.map(|b| downscaled(b, k)),
                    })
                    .collect())
            }
            // Level k halves level k-1 whatever voxel size its instance was given.
            Volume::Gray(levels) => levels
                .iter()
                .enumerate()
                .map(|(k, g)| {
                    Ok(Scale {
                        resolution: levels[0].voxel_size().map(|v| v * (1u64 << k) as f64),
                        bounds: g.extents()?,
                    })
                })
                .collect(),
        }
    }

    fn info(&self, encoding: Encoding) -> Result<Value> {
        let scales: Vec<Value> = self
            .scales()?
            .iter()
            .enumerate()
            .map(|(k, s)| {
                let (offset, size) = match s.bounds {
                    Some((lo, hi)) => (lo, std::array::from_fn::<i64, 3, _>(|a| hi[a] - lo[a] + 1)),
                    None => ([0; 3], [0; 3]),
                };
                let mut scale = json!({
                    "key": format!("s{k}"),
                    "resolution": s.resolution,
                    "voxel_offset": offset,
                    "size": size,
                    "chunk_sizes": [[CHUNK, CHUNK, CHUNK]],
                    "encoding": encoding.name(),
                });
                if encoding == Encoding::CompressedSegmentation {
                    scale["compressed_segmentation_block_size"] = json!([8, 8, 8]);
                }
                scale
            })
            .collect();
        let mut info = json!({
            "@type": "neuroglancer_multiscale_volume",
            "num_channels": 1,
            "scales": scales,
        });
        match self {
            Volume::Labels(_) => {
                info["type"] = json!("segmentation");
                info["data_type"] = json!("uint64");
                info["mesh"] = json!("mesh");
            }
            Volume::Gray(_) => {
                info["type"] = json!("image");
                info["data_type"] = json!("uint8");
            }
        }
        Ok(info)
    }

    fn chunk(&self, encoding: Encoding, key: &str, range: &str) -> Result<DataResponse> {
        let scales = self.scales()?;
        let k = key
            .strip_prefix('s')
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|&k| k < scales.len())
            .ok_or_else(|| {
                Error::not_found(format!(
                    "no scale {key:?} (s0 to s{})",
                    scales.len().saturating_sub(1)
                ))
            })?;
        let bx = parse_range(range)?;
        let Some((lo, hi)) = scales[k].bounds else {
            return Err(Error::not_found(format!("scale {key} holds no data")));
        };
        let end = bx.end();
        let inside = (0..3).all(|a| bx.min[a] >= lo[a] && end[a] <= hi[a] + 1);
        if !inside {
            return Err(Error::bad(format!(
                "chunk {range} is outside scale {key}'s bounds {lo:?} to {hi:?}"
            )));
        }
        let bytes = match self {
            Volume::Labels(lm) => {
                let v = lm.read(k as u8, &bx)?;
                match encoding {
                    Encoding::CompressedSegmentation => cseg::try_encode(&v, bx.size)
                        .ok_or_else(|| Error::bad("chunk too large for compressed_segmentation"))?,
                    _ => bytemuck::cast_slice(&v).to_vec(),
                }
            }
            Volume::Gray(levels) => {
                let v = levels[k].read(&bx)?;
                match encoding {
                    // A jpeg chunk is one image x wide and y·z tall.
                    Encoding::Jpeg => jpeg::encode(&v, bx.size[0], false, JPEG_QUALITY)?,
                    _ => v,
                }
            }
        };
        Ok(DataResponse::bytes("application/octet-stream", bytes))
    }

    fn mesh_file(&self, file: &str, range: Option<&str>) -> Result<DataResponse> {
        let Volume::Labels(lm) = self else {
            return Err(Error::not_found("grayscale has no meshes"));
        };
        if file == "info" {
            let identity = [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0];
            return Ok(DataResponse::bytes(
                "application/json",
                precomputed_multires_info(MESH_BITS, identity),
            ));
        }
        let (id, index) = match file.strip_suffix(".index") {
            Some(id) => (id, true),
            None => (file, false),
        };
        let body: u64 = id
            .parse()
            .map_err(|_| Error::bad(format!("mesh file {file:?}: {id:?} is not a label")))?;
        let mut lods: Vec<Mesh> = Vec::new();
        for scale in 0..=lm.max_scale().min(MESH_LODS) {
            // A body too thin for a coarse scale keeps its finer levels only.
            match lm.mesh_at(body, scale)? {
                Some(m) => lods.push(m),
                None => break,
            }
        }
        if lods.is_empty() {
            return Err(Error::not_found(format!("body {body} has no voxels")));
        }
        // Cells of 64 scale-0 voxels, anchored at the origin, as `tessera mesh` writes them.
        let chunk = lm.voxel_size().map(|v| (64.0 * v) as f32);
        let (manifest, data) = precomputed_multires(&lods, chunk, [0.0; 3], MESH_BITS);
        if index {
            Ok(DataResponse::bytes("application/octet-stream", manifest))
        } else {
            ranged(data.into(), range)
        }
    }
}

/// Scale-0 bounds at scale `k`: every voxel that any scale-0 voxel of `b` falls into.
fn downscaled((lo, hi): Bounds, k: u8) -> Bounds {
    let f = 1i64 << k;
    (lo.map(|v| v.div_euclid(f)), hi.map(|v| v.div_euclid(f)))
}

/// `<x0>-<x1>_<y0>-<y1>_<z0>-<z1>` (end exclusive) → the box.
fn parse_range(s: &str) -> Result<VoxelBox> {
    let bad = || {
        Error::bad(format!(
            "chunk name {s:?} is not <x0>-<x1>_<y0>-<y1>_<z0>-<z1>"
        ))
    };
    let parts: Vec<&str> = s.split('_').collect();
    if parts.len() != 3 {
        return Err(bad());
    }
    let mut min = [0i64; 3];
    let mut size = [0usize; 3];
    for (a, p) in parts.iter().enumerate() {
        let (x0, x1) = p.split_once('-').ok_or_else(bad)?;
        let (x0, x1): (i64, i64) = (
            x0.parse().map_err(|_| bad())?,
            x1.parse().map_err(|_| bad())?,
        );
        if x1 <= x0 || x1 - x0 > CHUNK as i64 {
            return Err(Error::bad(format!(
                "chunk {s:?}: each range must hold 1 to {CHUNK} voxels"
            )));
        }
        min[a] = x0;
        size[a] = (x1 - x0) as usize;
    }
    VoxelBox::new(min, size)
}

//! `metadata` (neuroglancer's nD description), `POST extents`, `POST resolution`, `rawkey`.

use serde_json::{Value, json};

use super::config::{Config, check_resolution};
use super::image::Image;
use crate::block::extents::{self, Bounds};
use crate::block::geom::check_block_coord;
use crate::block::keys::block_key;
use crate::datatype::{DataCtx, DataRequest, DataResponse};
use crate::{Error, Result};

/// `GET metadata`: the axes with their resolution, units and extent.
pub fn metadata(image: &Image) -> Result<DataResponse> {
    let cfg = &image.cfg;
    let ext = extents::read(&image.blocks.store, &image.blocks.view)?;
    let axes: Vec<Value> = ["X", "Y", "Z"]
        .iter()
        .enumerate()
        .map(|(a, label)| {
            let (size, offset) = match ext {
                Some((lo, hi)) => (hi[a] - lo[a] + 1, lo[a]),
                None => (0, 0),
            };
            json!({
                "Label": label,
                "Resolution": cfg.voxel_size[a],
                "Units": cfg.voxel_units[a],
                "Size": size,
                "Offset": offset,
            })
        })
        .collect();
    let body = json!({
        "Axes": axes,
        "Properties": {"Values": cfg.kind.values(), "Interpolable": true},
    });
    Ok(DataResponse::bytes(
        "application/vnd.dvid-nd-data+json",
        serde_json::to_vec(&body)?,
    ))
}

/// `POST extents` `{"MinPoint":[x,y,z],"MaxPoint":[x,y,z]}`: sets this version's extents (a
/// version's extents are still the union with its ancestors').
pub fn post_extents(ctx: &DataCtx, image: &Image, req: &DataRequest) -> Result<DataResponse> {
    let v: Value = serde_json::from_slice(&req.body)?;
    let point = |key: &str| -> Result<[i64; 3]> {
        let p: [i32; 3] = serde_json::from_value(v.get(key).cloned().unwrap_or(Value::Null))
            .map_err(|_| {
                Error::bad(format!(
                    "extents need {key} as three 32-bit integers, e.g. {{\"MinPoint\":[0,0,0],\"MaxPoint\":[511,511,511]}}"
                ))
            })?;
        Ok(p.map(i64::from))
    };
    let b: Bounds = (point("MinPoint")?, point("MaxPoint")?);
    if (0..3).any(|a| b.0[a] > b.1[a]) {
        return Err(Error::bad(format!(
            "MinPoint {:?} is above MaxPoint {:?}",
            b.0, b.1
        )));
    }
    let mut change = ctx.write();
    extents::put(&mut change.batch, &image.blocks.view, b);
    change.commit()?;
    Ok(DataResponse::empty())
}

/// `POST resolution` `[x, y, z]`: the voxel size in the instance's units.
pub fn post_resolution(ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
    let r: [f64; 3] = serde_json::from_slice(&req.body)
        .map_err(|_| Error::bad("resolution must be a JSON list of three numbers, e.g. [8,8,8]"))?;
    let mut cfg = Config::from_json(&ctx.instance.config)?;
    cfg.voxel_size = check_resolution(r)?;
    ctx.catalog.set_config(
        &ctx.uuid,
        &ctx.instance.name,
        serde_json::to_value(cfg).expect("config serializes"),
    )?;
    Ok(DataResponse::empty())
}

/// `GET rawkey?x=&y=&z=`: the hex of the block key of block (x, y, z) — the key inside the
/// instance's key space, before the version.
pub fn rawkey(_image: &Image, req: &DataRequest) -> Result<DataResponse> {
    let coord = |k: &str| -> Result<i32> {
        req.query
            .get(k)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| Error::bad(format!("rawkey needs {k}= as a 32-bit block coordinate")))
    };
    let c = [coord("x")?, coord("y")?, coord("z")?];
    check_block_coord(c)?;
    let hex: String = block_key(0, c).iter().map(|b| format!("{b:02x}")).collect();
    Ok(DataResponse::json(&json!({ "Key": hex })))
}

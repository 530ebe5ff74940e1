//! `metadata`: the tile levels (resolution and tile size per scale) and the tile-coordinate
//! bounds. What was posted (versioned), or else a default derived from the source: 512-pixel
//! tiles, the source's voxel size doubling per level, levels until the source's extent fits
//! one tile (DVID's `DefaultTileSpec`), and the scale-0 tiles covering the source's extents.

use serde_json::{Map, Value, json};
use tessera_storage::versioned::put_into;

use super::keys::{CLASS_METADATA, MAX_SCALE, Plane};
use crate::datatype::{DataCtx, DataRequest, DataResponse};
use crate::datatypes::imageblk::Grayscale;
use crate::{Error, Result};

/// DVID's default tile size.
pub const DEFAULT_TILE_SIZE: i64 = 512;

/// Largest tile side accepted in metadata.
pub const MAX_TILE_SIDE: i64 = 8192;

#[derive(Debug, Clone, PartialEq)]
pub struct Level {
    pub resolution: [f64; 3],
    pub tile_size: [i64; 3],
}

#[derive(Debug, Clone, PartialEq)]
pub struct Metadata {
    pub min_tile: [i32; 3],
    pub max_tile: [i32; 3],
    /// Levels 0, 1, …, in order.
    pub levels: Vec<Level>,
}

impl Metadata {
    pub fn to_json(&self) -> Value {
        let levels: Map<String, Value> = self
            .levels
            .iter()
            .enumerate()
            .map(|(s, l)| {
                (
                    s.to_string(),
                    json!({"Resolution": l.resolution, "TileSize": l.tile_size}),
                )
            })
            .collect();
        json!({
            "MinTileCoord": self.min_tile,
            "MaxTileCoord": self.max_tile,
            "Levels": levels,
        })
    }

    /// Parses and checks posted metadata.
    pub fn from_json(body: &[u8]) -> Result<Metadata> {
        let v: Value = serde_json::from_slice(body)?;
        let obj = v.as_object().ok_or_else(|| {
            Error::bad(r#"metadata must be a JSON object {"MinTileCoord":[x,y,z],"MaxTileCoord":[x,y,z],"Levels":{"0":{"Resolution":[f,f,f],"TileSize":[w,h,d]},…}}"#)
        })?;
        let coord = |key: &str| -> Result<[i32; 3]> {
            match obj.get(key) {
                None => Ok([0; 3]),
                Some(c) => serde_json::from_value(c.clone()).map_err(|_| {
                    Error::bad(format!(
                        "metadata {key} must be three 32-bit integers, got {c}"
                    ))
                }),
            }
        };
        let min_tile = coord("MinTileCoord")?;
        let max_tile = coord("MaxTileCoord")?;
        if (0..3).any(|a| min_tile[a] > max_tile[a]) {
            return Err(Error::bad(format!(
                "metadata MinTileCoord {min_tile:?} is above MaxTileCoord {max_tile:?}"
            )));
        }
        let given = obj
            .get("Levels")
            .and_then(Value::as_object)
            .filter(|l| !l.is_empty())
            .ok_or_else(|| {
                Error::bad(
                    r#"metadata needs "Levels": {"0":{"Resolution":[f,f,f],"TileSize":[w,h,d]},…}"#,
                )
            })?;
        if given.len() > MAX_SCALE as usize + 1 {
            return Err(Error::bad(format!(
                "metadata has {} levels; at most {} (scales 0 to {MAX_SCALE})",
                given.len(),
                MAX_SCALE as usize + 1
            )));
        }
        let mut levels: Vec<Option<Level>> = vec![None; given.len()];
        for (key, spec) in given {
            let s = key
                .parse::<usize>()
                .ok()
                .filter(|s| *s < levels.len() && key == &s.to_string())
                .ok_or_else(|| {
                    Error::bad(format!(
                        "metadata level {key:?}: levels must be the consecutive integers 0 to {}",
                        levels.len() - 1
                    ))
                })?;
            let resolution: [f64; 3] = spec
                .get("Resolution")
                .and_then(|r| serde_json::from_value(r.clone()).ok())
                .filter(|r: &[f64; 3]| r.iter().all(|f| f.is_finite() && *f > 0.0))
                .ok_or_else(|| {
                    Error::bad(format!(
                        "metadata level {key}: Resolution must be three positive numbers"
                    ))
                })?;
            let tile_size: [i64; 3] = spec
                .get("TileSize")
                .and_then(|t| serde_json::from_value(t.clone()).ok())
                .filter(|t: &[i64; 3]| t.iter().all(|n| (1..=MAX_TILE_SIDE).contains(n)))
                .ok_or_else(|| {
                    Error::bad(format!(
                        "metadata level {key}: TileSize must be three integers from 1 to {MAX_TILE_SIDE}"
                    ))
                })?;
            levels[s] = Some(Level {
                resolution,
                tile_size,
            });
        }
        let levels: Vec<Level> = levels
            .into_iter()
            .map(|l| l.expect("every level 0..n was given once"))
            .collect();
        // DVID's rule: each level's resolution is an integral magnification of the one below.
        for (s, pair) in levels.windows(2).enumerate() {
            for a in 0..3 {
                let mag = pair[1].resolution[a] / pair[0].resolution[a];
                if mag < 0.99 || (mag - mag.round()).abs() > 0.001 {
                    return Err(Error::bad(format!(
                        "metadata levels {s} and {}: the resolution must grow by an integral factor, not {mag}",
                        s + 1
                    )));
                }
            }
        }
        Ok(Metadata {
            min_tile,
            max_tile,
            levels,
        })
    }

    /// DVID's default over a source: see the module doc.
    pub fn default_for(src: &Grayscale) -> Result<Metadata> {
        let ts = DEFAULT_TILE_SIZE;
        let (min_tile, max_tile, n) = match src.extents()? {
            None => ([0; 3], [0; 3], 1),
            Some((lo, hi)) => {
                let lo_t: [i64; 3] = std::array::from_fn(|a| lo[a].div_euclid(ts));
                let hi_t: [i64; 3] = std::array::from_fn(|a| hi[a].div_euclid(ts));
                let n = (0..3)
                    .map(|a| {
                        let tiles = (hi_t[a] - lo_t[a] + 1) as u64;
                        // ceil(log2(tiles)) + 1
                        (u64::BITS - (tiles - 1).leading_zeros()) as usize + 1
                    })
                    .max()
                    .unwrap_or(1)
                    .min(MAX_SCALE as usize + 1);
                let clamp = |v: i64| v.clamp(i32::MIN as i64, i32::MAX as i64) as i32;
                (lo_t.map(clamp), hi_t.map(clamp), n)
            }
        };
        let vs = src.voxel_size();
        let levels = (0..n)
            .map(|s| Level {
                resolution: vs.map(|r| r * (1u64 << s) as f64),
                tile_size: [ts; 3],
            })
            .collect();
        Ok(Metadata {
            min_tile,
            max_tile,
            levels,
        })
    }

    /// The tile's width and height in pixels at `scale` in `plane`; a scale past the levels
    /// is refused.
    pub fn tile_dims(&self, plane: Plane, scale: u8) -> Result<(usize, usize)> {
        let level = self.levels.get(scale as usize).ok_or_else(|| {
            Error::bad(format!(
                "tile scale {scale} is beyond this imagetile's levels 0 to {}",
                self.levels.len() - 1
            ))
        })?;
        Ok((
            level.tile_size[plane.a] as usize,
            level.tile_size[plane.b] as usize,
        ))
    }
}

/// The posted metadata visible at this version.
pub fn posted(ctx: &DataCtx) -> Result<Option<Metadata>> {
    match ctx.store.get(&ctx.view, &[CLASS_METADATA])? {
        None => Ok(None),
        Some(v) => Metadata::from_json(&v)
            .map(Some)
            .map_err(|e| Error::Internal(format!("stored tile metadata: {e}"))),
    }
}

/// The metadata tiles are served by: posted, else derived from the source; `None` when
/// neither exists.
pub fn current(ctx: &DataCtx, src: Option<&Grayscale>) -> Result<Option<Metadata>> {
    if let Some(m) = posted(ctx)? {
        return Ok(Some(m));
    }
    src.map(Metadata::default_for).transpose()
}

/// Metadata or DVID's complaint that there is none.
pub fn required(ctx: &DataCtx, src: Option<&Grayscale>) -> Result<Metadata> {
    current(ctx, src)?.ok_or_else(|| {
        Error::bad(format!(
            "tile metadata for imagetile {:?} was not set: POST metadata, or sync it to a uint8blk source",
            ctx.instance.name
        ))
    })
}

pub fn get(ctx: &DataCtx, src: Option<&Grayscale>) -> Result<DataResponse> {
    Ok(DataResponse::json(&required(ctx, src)?.to_json()))
}

pub fn post(ctx: &DataCtx, req: &DataRequest) -> Result<DataResponse> {
    let m = Metadata::from_json(&req.body)?;
    let mut change = ctx.write();
    put_into(
        &mut change.batch,
        &ctx.view,
        &[CLASS_METADATA],
        &serde_json::to_vec(&m.to_json())?,
    );
    change.commit()?;
    Ok(DataResponse::empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<Metadata> {
        Metadata::from_json(&serde_json::to_vec(&v).unwrap())
    }

    #[test]
    fn metadata_round_trips_and_is_checked() {
        let good = json!({
            "MinTileCoord": [0, -1, 0],
            "MaxTileCoord": [5, 5, 4],
            "Levels": {
                "1": {"Resolution": [20.0, 20.0, 20.0], "TileSize": [256, 256, 256]},
                "0": {"Resolution": [10.0, 10.0, 10.0], "TileSize": [512, 512, 512]},
            }
        });
        let m = parse(good.clone()).unwrap();
        assert_eq!(m.levels.len(), 2);
        assert_eq!(m.levels[1].tile_size, [256; 3]);
        assert_eq!(m.tile_dims(Plane::XZ, 0).unwrap(), (512, 512));
        assert!(m.tile_dims(Plane::XY, 2).is_err());
        assert_eq!(parse(m.to_json()).unwrap(), m);
        for bad in [
            json!([]),
            json!({"Levels": {}}),
            json!({"Levels": {"1": {"Resolution": [1, 1, 1], "TileSize": [8, 8, 8]}}}),
            json!({"Levels": {"00": {"Resolution": [1, 1, 1], "TileSize": [8, 8, 8]}}}),
            json!({"Levels": {"0": {"Resolution": [1, 1], "TileSize": [8, 8, 8]}}}),
            json!({"Levels": {"0": {"Resolution": [1, 1, 0], "TileSize": [8, 8, 8]}}}),
            json!({"Levels": {"0": {"Resolution": [1, 1, 1], "TileSize": [8, -8, 8]}}}),
            json!({"Levels": {"0": {"Resolution": [1, 1, 1], "TileSize": [8, 8, 8]},
                              "1": {"Resolution": [1.5, 2, 2], "TileSize": [8, 8, 8]}}}),
            json!({"MinTileCoord": [1, 0, 0], "MaxTileCoord": [0, 0, 0],
                   "Levels": {"0": {"Resolution": [1, 1, 1], "TileSize": [8, 8, 8]}}}),
            json!({"MinTileCoord": "0_0_0",
                   "Levels": {"0": {"Resolution": [1, 1, 1], "TileSize": [8, 8, 8]}}}),
        ] {
            assert!(parse(bad.clone()).is_err(), "{bad}");
        }
    }
}

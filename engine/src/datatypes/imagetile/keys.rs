//! Tile requests (`<plane>/<scale>/<x_y_z>`) and the instance's keys:
//!
//! * a posted tile: DVID's 21-byte TKey, `3 ‖ 2 ‖ a ‖ b ‖ 0 0 0 ‖ scale ‖ 3 ‖ z ‖ y ‖ x` (the
//!   plane as DVID's DataShape bytes, coordinates u32 BE offset by 2^31) — what `tilekey`
//!   shows;
//! * a generated tile kept as a cache: [`CLASS_CACHE`] followed by the same bytes;
//! * a source's stamp (bumped after each of its writes): [`CLASS_STAMP`] ‖ its DataUUID;
//! * posted metadata: [`CLASS_METADATA`].

use crate::block::geom::parse_point;
use crate::{Error, Result};

pub const CLASS_CACHE: u8 = 0xE1;
pub const CLASS_STAMP: u8 = 0xE2;
pub const CLASS_METADATA: u8 = 0xE3;

/// Scales are 0 to `MAX_SCALE`: a tile at scale s spans 2^s times its size in voxels.
pub const MAX_SCALE: u8 = 31;

/// The plane of a tile: its two in-plane axes (x=0, y=1, z=2), horizontal first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plane {
    pub a: usize,
    pub b: usize,
}

impl Plane {
    pub const XY: Plane = Plane { a: 0, b: 1 };
    pub const XZ: Plane = Plane { a: 0, b: 2 };
    pub const YZ: Plane = Plane { a: 1, b: 2 };

    pub fn parse(s: &str) -> Result<Plane> {
        match s {
            "xy" | "0_1" => Ok(Plane::XY),
            "xz" | "0_2" => Ok(Plane::XZ),
            "yz" | "1_2" => Ok(Plane::YZ),
            _ => Err(Error::bad(format!(
                "tile plane {s:?} must be xy, xz or yz (or 0_1, 0_2, 1_2)"
            ))),
        }
    }

    /// The axis across the plane, whose coordinate a tile names in voxels.
    pub fn c(self) -> usize {
        3 - self.a - self.b
    }
}

/// One tile: plane, scale, and coordinate — tile indices along the plane's axes and a voxel
/// coordinate (at scale 0) across it, as DVID names tiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileReq {
    pub plane: Plane,
    pub scale: u8,
    pub coord: [i32; 3],
}

impl TileReq {
    /// `<plane>/<scale>/<x_y_z>` (a trailing slash tolerated).
    pub fn parse(keyword: &str, path: &[String]) -> Result<TileReq> {
        let segs = match path {
            [rest @ .., last] if last.is_empty() => rest,
            p => p,
        };
        let [plane, scale, coord] = segs else {
            return Err(Error::bad(format!(
                "expected {keyword}/<plane>/<scale>/<x_y_z>, e.g. {keyword}/xy/0/0_0_100"
            )));
        };
        let plane = Plane::parse(plane)?;
        let scale = scale
            .parse::<u8>()
            .ok()
            .filter(|s| *s <= MAX_SCALE)
            .ok_or_else(|| {
                Error::bad(format!(
                    "tile scale {scale:?} must be an integer from 0 to {MAX_SCALE}"
                ))
            })?;
        let c = parse_point(coord, "tile coordinate")?;
        Ok(TileReq {
            plane,
            scale,
            coord: c.map(|v| v as i32),
        })
    }

    /// DVID's TKey of the tile.
    pub fn tkey(&self) -> [u8; 21] {
        let mut k = [0u8; 21];
        k[0] = 3;
        k[1] = 2;
        k[2] = self.plane.a as u8;
        k[3] = self.plane.b as u8;
        k[7] = self.scale;
        k[8] = 3;
        for (i, axis) in [2, 1, 0].into_iter().enumerate() {
            let v = (self.coord[axis] as u32) ^ 0x8000_0000;
            k[9 + 4 * i..13 + 4 * i].copy_from_slice(&v.to_be_bytes());
        }
        k
    }

    pub fn cache_key(&self) -> Vec<u8> {
        let mut k = Vec::with_capacity(22);
        k.push(CLASS_CACHE);
        k.extend_from_slice(&self.tkey());
        k
    }
}

pub fn stamp_key(publisher: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(publisher.len() + 1);
    k.push(CLASS_STAMP);
    k.extend_from_slice(publisher.as_bytes());
    k
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(path: &[&str]) -> Result<TileReq> {
        let p: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        TileReq::parse("tile", &p)
    }

    #[test]
    fn tile_keys_are_dvids() {
        let t = req(&["xz", "2", "1_-1_3"]).unwrap();
        assert_eq!(t.plane, Plane::XZ);
        assert_eq!(t.plane.c(), 1);
        assert_eq!(hex(&t.tkey()), "030200020000000203800000037fffffff80000001");
        assert_eq!(req(&["0_1", "0", "0_0_0", ""]).unwrap().plane, Plane::XY);
    }

    #[test]
    fn bad_tile_requests() {
        for p in [
            &["xw", "0", "0_0_0"][..],
            &["xy", "-1", "0_0_0"],
            &["xy", "32", "0_0_0"],
            &["xy", "a", "0_0_0"],
            &["xy", "0", "0_0"],
            &["xy", "0", "0_0_x"],
            &["xy", "0"],
            &["xy", "0", "0_0_0", "png"],
        ] {
            assert!(req(p).is_err(), "{p:?}");
        }
    }
}

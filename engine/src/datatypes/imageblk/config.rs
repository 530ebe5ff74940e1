//! An image instance's kind (which voxel-array type) and configuration, fixed at creation
//! (`POST resolution` changes the voxel size).

use serde::{Deserialize, Serialize};

use crate::compute::Shape;
use crate::datatype::Settings;
use crate::{Error, Result};

/// The voxel-array types, one generic implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    Uint8,
    Uint16,
    Uint32,
    Uint64,
    Float32,
    Rgba8,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Uint8,
        Kind::Uint16,
        Kind::Uint32,
        Kind::Uint64,
        Kind::Float32,
        Kind::Rgba8,
    ];

    pub fn type_name(self) -> &'static str {
        match self {
            Kind::Uint8 => "uint8blk",
            Kind::Uint16 => "uint16blk",
            Kind::Uint32 => "uint32blk",
            Kind::Uint64 => "uint64blk",
            Kind::Float32 => "float32blk",
            Kind::Rgba8 => "rgba8blk",
        }
    }

    pub fn bytes_per_voxel(self) -> usize {
        match self {
            Kind::Uint8 => 1,
            Kind::Uint16 => 2,
            Kind::Uint32 | Kind::Float32 | Kind::Rgba8 => 4,
            Kind::Uint64 => 8,
        }
    }

    /// `Extended.Values` of `GET info`: one entry per channel.
    pub fn values(self) -> serde_json::Value {
        let one = |t: &str| serde_json::json!([{"DataType": t, "Label": t}]);
        match self {
            Kind::Uint8 => one("uint8"),
            Kind::Uint16 => one("uint16"),
            Kind::Uint32 => one("uint32"),
            Kind::Uint64 => one("uint64"),
            Kind::Float32 => one("float32"),
            Kind::Rgba8 => serde_json::json!(
                ["red", "green", "blue", "alpha"]
                    .iter()
                    .map(|c| serde_json::json!({"DataType": "uint8", "Label": c}))
                    .collect::<Vec<_>>()
            ),
        }
    }

    /// Gray or color images can be JPEG; other values would be destroyed by it.
    pub fn jpeg_ok(self) -> bool {
        matches!(self, Kind::Uint8 | Kind::Rgba8)
    }
}

/// Largest block edge (a JPEG block is `x` wide and `y·z` tall, at most 65535).
const MAX_BLOCK_EDGE: usize = 256;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    pub kind: Kind,
    pub block_size: [usize; 3],
    pub voxel_size: [f64; 3],
    pub voxel_units: [String; 3],
    /// The voxels are labels (labelblk, `Kind::Uint64`): writes publish `BLOCK_INGEST` /
    /// `BLOCK_MUTATE` with each block's label sets (`Delta::Blocks`) instead of the block list
    /// of an image (`Delta::Image`).
    #[serde(default)]
    pub labels: bool,
}

impl Config {
    pub fn from_settings(kind: Kind, s: &Settings) -> Result<Config> {
        let block_size = match s.triple::<usize>("BlockSize")? {
            // 64³ rather than DVID's 32³: neuroglancer asks for one 64³ block per request
            // and decodes the answer as exactly one block.
            None => [64; 3],
            Some(b) => {
                if b.iter().any(|&n| n < 2 || n % 2 != 0 || n > MAX_BLOCK_EDGE) {
                    return Err(Error::bad(format!(
                        "BlockSize {b:?}: each size must be even, from 2 to {MAX_BLOCK_EDGE}"
                    )));
                }
                b
            }
        };
        let voxel_size = s.voxel_size()?;
        let voxel_units = s.voxel_units()?;
        Ok(Config {
            kind,
            block_size,
            voxel_size,
            voxel_units,
            labels: false,
        })
    }

    pub fn from_json(v: &serde_json::Value) -> Result<Config> {
        serde_json::from_value(v.clone())
            .map_err(|e| Error::Internal(format!("bad image configuration: {e}")))
    }

    pub fn block_shape(&self) -> Shape {
        let [x, y, z] = self.block_size;
        Shape::new(x, y, z)
    }

    /// Bytes of one uncompressed block.
    pub fn block_bytes(&self) -> usize {
        self.block_size.iter().product::<usize>() * self.kind.bytes_per_voxel()
    }
}

/// Voxel sizes must be positive numbers.
pub fn check_resolution(r: [f64; 3]) -> Result<[f64; 3]> {
    if r.iter().any(|f| !f.is_finite() || *f <= 0.0) {
        return Err(Error::bad(format!(
            "voxel size {r:?}: sizes must be positive numbers"
        )));
    }
    Ok(r)
}

//! A labelmap instance's configuration: fixed at creation, kept with the instance.

use serde::{Deserialize, Serialize};

use crate::compute::Shape;
use crate::datatype::Settings;
use crate::{Error, Result};

/// Largest block edge: DVID's block format allows at most 32 sub-blocks of 8 per axis.
const MAX_BLOCK_EDGE: usize = 256;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    /// Block size in voxels (x, y, z), each a multiple of 16 so that every scale's half
    /// blocks are still whole 8³ sub-blocks.
    pub block_size: [usize; 3],
    pub voxel_size: [f64; 3],
    pub voxel_units: [String; 3],
    pub indexed_labels: bool,
    pub max_downres_level: u8,
    /// `KeepMeshes`: keep the keyvalue `<name>_meshes` holding `<body>.ngmesh` for every body
    /// a write or mutation changes (meshes.rs).
    #[serde(default)]
    pub keep_meshes: bool,
    /// `KeepMeshesScale`: the scale those meshes are made at (0, full resolution, by default).
    /// A coarser scale makes a mesh a quarter the size per level, so it is current sooner
    /// after each edit, at the cost of detail.
    #[serde(default)]
    pub keep_meshes_scale: u8,
    /// labelarray (spec §4.3): no supervoxel → body mapping. Reads never map, and merges and
    /// splits rewrite the voxels of the labels they change (mutate.rs, `relabel_*`).
    #[serde(default)]
    pub no_mapping: bool,
}

/// A scale setting `key`: an integer from 0 to `max` (`max_name` in the message), if given.
fn scale_setting(s: &Settings, key: &str, max: u8, max_name: &str) -> Result<Option<u8>> {
    let Some(v) = s.get(key) else {
        return Ok(None);
    };
    match v.trim().parse::<u8>() {
        Ok(scale) if scale <= max => Ok(Some(scale)),
        _ => Err(Error::bad(format!(
            "{key} {v:?} must be an integer from 0 to {max_name}"
        ))),
    }
}

impl Config {
    pub fn from_settings(s: &Settings) -> Result<Config> {
        let block_size = match s.triple::<usize>("BlockSize")? {
            None => [64; 3],
            Some(b) => {
                if b.iter()
                    .any(|&n| n == 0 || n % 16 != 0 || n > MAX_BLOCK_EDGE)
                {
                    return Err(Error::bad(format!(
                        "BlockSize {b:?}: each size must be a multiple of 16 from 16 to {MAX_BLOCK_EDGE}"
                    )));
                }
                b
            }
        };
        let voxel_size = s.voxel_size()?;
        let voxel_units = s.voxel_units()?;
        let indexed_labels = s.bool("IndexedLabels")?.unwrap_or(true);
        let keep_meshes = s.bool("KeepMeshes")?.unwrap_or(false);
        if keep_meshes && !indexed_labels {
            return Err(Error::bad(
                "KeepMeshes needs IndexedLabels: meshes are found through the label index",
            ));
        }
        let max_downres_level = scale_setting(s, "MaxDownresLevel", 16, "16")?.unwrap_or(0);
        let keep_meshes_scale = scale_setting(
            s,
            "KeepMeshesScale",
            max_downres_level,
            &format!("MaxDownresLevel ({max_downres_level})"),
        )?;
        if keep_meshes_scale.is_some() && !keep_meshes {
            return Err(Error::bad(
                "KeepMeshesScale needs KeepMeshes: it is the scale kept meshes are made at",
            ));
        }
        let keep_meshes_scale = keep_meshes_scale.unwrap_or(0);
        Ok(Config {
            block_size,
            voxel_size,
            voxel_units,
            indexed_labels,
            max_downres_level,
            keep_meshes,
            keep_meshes_scale,
            no_mapping: false,
        })
    }

    pub fn from_json(v: &serde_json::Value) -> Result<Config> {
        serde_json::from_value(v.clone())
            .map_err(|e| Error::Internal(format!("bad labelmap configuration: {e}")))
    }

    pub fn block_shape(&self) -> Shape {
        let [x, y, z] = self.block_size;
        Shape::new(x, y, z)
    }

    pub fn block_voxels(&self) -> usize {
        self.block_size.iter().product()
    }

    /// Checks a `scale=` query value against MaxDownresLevel.
    pub fn check_scale(&self, scale: u8) -> Result<()> {
        if scale > self.max_downres_level {
            return Err(Error::bad(format!(
                "scale {scale} is above this instance's MaxDownresLevel {}",
                self.max_downres_level
            )));
        }
        Ok(())
    }
}

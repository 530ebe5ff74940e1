//! The voxel bounds written at each version (`MinPoint`/`MaxPoint` of `GET info`): one record
//! per version under class byte 236; a version's extents are the union over its ancestry.

use tessera_storage::versioned::put_into;
use tessera_storage::{VersionedStore, View, WriteBatch};

use super::geom::BlockCoord;
use crate::{Error, Result};

pub const CLASS_EXTENTS: u8 = 236;

/// Inclusive voxel bounds (min, max).
pub type Bounds = ([i64; 3], [i64; 3]);

pub fn union(a: Option<Bounds>, b: Bounds) -> Bounds {
    match a {
        None => b,
        Some((l, h)) => (
            std::array::from_fn(|i| l[i].min(b.0[i])),
            std::array::from_fn(|i| h[i].max(b.1[i])),
        ),
    }
}

/// The voxels of block `c` of size `bs`.
pub fn of_block(c: BlockCoord, bs: [usize; 3]) -> Bounds {
    let lo: [i64; 3] = std::array::from_fn(|a| c[a] as i64 * bs[a] as i64);
    (lo, std::array::from_fn(|a| lo[a] + bs[a] as i64 - 1))
}

/// The extents at `view`: the union of the records of the version and its ancestors.
pub fn read(store: &VersionedStore, view: &View) -> Result<Option<Bounds>> {
    let mut out = None;
    for (ver, v) in store.entries(view.instance, &[CLASS_EXTENTS])? {
        let Some(v) = v else { continue };
        if ver != view.version && !view.dag.is_ancestor(ver, view.version) {
            continue;
        }
        if v.len() != 48 {
            return Err(Error::Internal("stored extents are malformed".into()));
        }
        let n: Vec<i64> = v
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        out = Some(union(out, ([n[0], n[1], n[2]], [n[3], n[4], n[5]])));
    }
    Ok(out)
}

/// Puts `b` as the version's record into `batch`.
pub fn put(batch: &mut WriteBatch, view: &View, b: Bounds) {
    let mut v = Vec::with_capacity(48);
    for x in b.0.iter().chain(&b.1) {
        v.extend_from_slice(&x.to_le_bytes());
    }
    put_into(batch, view, &[CLASS_EXTENTS], &v);
}

/// The geometry every block type's `GET info` reports in `Extended` (spec §4.0): block and
/// voxel size, units, and the extents at `view` as points and block indices (null before any
/// write), with DVID's fixed `Background`, `GridStore` and `ScaleLevel`.
pub fn info(
    store: &VersionedStore,
    view: &View,
    block_size: [usize; 3],
    voxel_size: [f64; 3],
    voxel_units: &[String; 3],
) -> Result<serde_json::Map<String, serde_json::Value>> {
    use serde_json::json;
    let index = |p: [i64; 3]| -> [i64; 3] {
        std::array::from_fn(|a| p[a].div_euclid(block_size[a] as i64))
    };
    let (min_point, max_point, min_index, max_index) = match read(store, view)? {
        Some((lo, hi)) => (json!(lo), json!(hi), json!(index(lo)), json!(index(hi))),
        None => (json!(null), json!(null), json!(null), json!(null)),
    };
    let v = json!({
        "BlockSize": block_size,
        "VoxelSize": voxel_size,
        "VoxelUnits": voxel_units,
        "MinPoint": min_point,
        "MaxPoint": max_point,
        "MinIndex": min_index,
        "MaxIndex": max_index,
        "Background": 0,
        "GridStore": "",
        "ScaleLevel": 0,
    });
    Ok(match v {
        serde_json::Value::Object(m) => m,
        _ => unreachable!("a JSON object literal"),
    })
}

/// Widens the version's extents by `b` (read, union, put).
pub fn widen(batch: &mut WriteBatch, store: &VersionedStore, view: &View, b: Bounds) -> Result<()> {
    let now = read(store, view)?;
    put(batch, view, union(now, b));
    Ok(())
}

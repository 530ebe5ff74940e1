//! Body → supervoxel lookups through the labelmap instance this one syncs to, read at the
//! version of the node the request named with the labelmap's own code.

use crate::datatype::{DataCtx, Handle};
use crate::datatypes::labelmap::Labelmap;
use crate::{Error, Result};

/// The synced labelmap at the request's node. 400 when no labelmap is synced, or more than
/// one (DVID would pick one at random).
pub fn synced_labelmap(ctx: &DataCtx) -> Result<Labelmap> {
    let mut found: Vec<DataCtx> = ctx
        .instance
        .syncs
        .iter()
        // A synced instance that no longer exists is no sync.
        .filter_map(|uuid| ctx.sibling(uuid).ok())
        .filter(|s| s.instance.type_name == Labelmap::TYPE_NAME)
        .collect();
    match found.len() {
        1 => Labelmap::open(found.remove(0)),
        0 => Err(Error::bad(format!(
            "data {:?} is not synced with any labelmap instance: POST sync {{\"sync\": \"<labelmap name>\"}} first",
            ctx.instance.name
        ))),
        _ => Err(Error::bad(format!(
            "data {:?} is synced with several labelmap instances ({}); POST sync?replace=true with one",
            ctx.instance.name,
            found
                .iter()
                .map(|s| s.instance.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// The supervoxels of `body` at the request's node, ascending. 400 when no body has that
/// label there, or the labelmap keeps no label index.
pub fn supervoxels(ctx: &DataCtx, body: u64) -> Result<Vec<u64>> {
    let lm = synced_labelmap(ctx)?;
    if !lm.indexed() {
        return Err(Error::bad(format!(
            "labelmap {:?} keeps no label index (IndexedLabels=false), so the supervoxels of body {body} are unknown",
            lm.name()
        )));
    }
    match lm.body_supervoxels(body)? {
        Some(svs) if !svs.is_empty() => Ok(svs),
        _ => Err(Error::bad(format!(
            "body {body} does not exist in labelmap {:?} at this version",
            lm.name()
        ))),
    }
}

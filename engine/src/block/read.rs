//! A block datatype's blocks at one version: single and batched reads, rows, and decoding.

use std::sync::Arc;

use rayon::prelude::*;
use tessera_storage::{VersionedStore, View};

use super::geom::BlockCoord;
use super::held::Held;
use super::keys::{block_key, block_key_coord};
use super::stored::{Stored, deserialize};
use super::voxel::Voxel;
use crate::Result;
use crate::compute::{Compute, Shape};
use crate::datatype::DataCtx;

/// A scan visitor: sees each key and value, returns whether to go on.
pub type KeyVisitor<'a> = dyn FnMut(&[u8], &[u8]) -> Result<bool> + 'a;

/// Visits the keys in `[lo, hi]` visible at `view`, in key order, until the visitor returns
/// false; a visitor error ends the scan and is returned.
pub fn scan_visible(
    store: &VersionedStore,
    view: &View,
    lo: &[u8],
    hi: &[u8],
    visit: &mut KeyVisitor<'_>,
) -> Result<()> {
    let mut err = None;
    store.range(view, lo, Some(hi), &mut |k, v| match visit(k, v) {
        Ok(more) => Ok(more),
        Err(e) => {
            err = Some(e);
            Ok(false)
        }
    })?;
    err.map_or(Ok(()), Err)
}

/// The blocks of one instance at one version, with how they are stored.
#[derive(Clone)]
pub struct Blocks {
    pub store: VersionedStore,
    pub view: View,
    /// Every scale's blocks have this shape.
    pub shape: Shape,
    pub stored: Stored,
    /// On a partial replica, the blocks it holds (with the instance's name, for messages):
    /// reads of others fail.
    pub held: Option<Arc<(String, Held)>>,
}

impl Blocks {
    /// The blocks of the instance and version of `ctx`.
    pub fn of(ctx: &DataCtx, shape: Shape, stored: Stored) -> Blocks {
        Blocks {
            store: ctx.store.clone(),
            view: ctx.view.clone(),
            shape,
            stored,
            held: ctx
                .instance
                .held
                .clone()
                .map(|h| Arc::new((ctx.instance.name.clone(), h))),
        }
    }

    /// A 404 when this server holds only part of the instance and not block `c`.
    fn check_held(&self, scale: u8, c: BlockCoord) -> Result<()> {
        match &self.held {
            Some(h) => {
                h.1.check(&h.0, scale, c, [self.shape.x, self.shape.y, self.shape.z])
            }
            None => Ok(()),
        }
    }

    /// The stored (serialized) block at `c`, if any.
    pub fn get(&self, scale: u8, c: BlockCoord) -> Result<Option<Vec<u8>>> {
        self.check_held(scale, c)?;
        Ok(self.store.get(&self.view, &block_key(scale, c))?)
    }

    /// The stored blocks at `coords`, in order, read in one storage call.
    pub fn get_many(&self, scale: u8, coords: &[BlockCoord]) -> Result<Vec<Option<Vec<u8>>>> {
        for c in coords {
            self.check_held(scale, *c)?;
        }
        let keys: Vec<[u8; 14]> = coords.iter().map(|c| block_key(scale, *c)).collect();
        let refs: Vec<&[u8]> = keys.iter().map(|k| &k[..]).collect();
        Ok(self.store.get_many(&self.view, &refs)?)
    }

    /// Visits the stored blocks of the row (z, y) with x in `x0..=x1`, in x order.
    pub fn row(
        &self,
        scale: u8,
        z: i32,
        y: i32,
        x0: i32,
        x1: i32,
        visit: &mut dyn FnMut(BlockCoord, &[u8]) -> Result<()>,
    ) -> Result<()> {
        if self.held.is_some() {
            for x in x0..=x1 {
                self.check_held(scale, [x, y, z])?;
            }
        }
        let (lo, hi) = (block_key(scale, [x0, y, z]), block_key(scale, [x1, y, z]));
        scan_visible(&self.store, &self.view, &lo, &hi, &mut |k, v| {
            visit(block_key_coord(k)?, v)?;
            Ok(true)
        })
    }

    /// How many blocks batch work decodes or gathers at once: 128 MiB of voxels.
    pub fn per_batch<V: Voxel>(&self) -> usize {
        ((128 << 20) / (self.shape.voxels() * size_of::<V>())).max(1)
    }

    /// Unwraps stored blocks (in parallel) into their payloads.
    pub fn payloads<S: AsRef<[u8]> + Sync>(stored: &[S]) -> Result<Vec<Vec<u8>>> {
        stored.par_iter().map(|s| deserialize(s.as_ref())).collect()
    }

    /// Decodes stored blocks into `out`, block after block.
    pub fn decode<V: Voxel>(
        &self,
        compute: &dyn Compute,
        stored: &[Vec<u8>],
        out: &mut [V],
    ) -> Result<()> {
        let raw = Self::payloads(stored)?;
        let refs: Vec<&[u8]> = raw.iter().map(Vec::as_slice).collect();
        V::decode(compute, &refs, self.shape, out)
    }
}

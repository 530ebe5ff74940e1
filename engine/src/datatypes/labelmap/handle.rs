//! The typed handle on a labelmap instance, for the datatypes that read one they sync to
//! (tarsupervoxels; annotation and labelsz next) and for its own workers.

use super::labels::index_for;
use super::state::state;
use super::store::Labels;
use super::{meshes, pyramid, voxels};
use crate::Result;
use crate::block::geom::VoxelBox;
use crate::datatype::{DataCtx, Handle};
use crate::mesh::Mesh;

/// A labelmap at one version, supervoxels mapped to their bodies.
pub struct Labelmap {
    ctx: DataCtx,
    labels: Labels,
}

impl Handle for Labelmap {
    const TYPE_NAME: &'static str = "labelmap";

    fn from_ctx(ctx: DataCtx) -> Result<Labelmap> {
        let labels = Labels::new(&ctx)?;
        let mapping = state(&ctx).mapping(&labels)?;
        let labels = labels.with_mapping(mapping, false);
        Ok(Labelmap { ctx, labels })
    }
}

impl Labelmap {
    pub fn name(&self) -> &str {
        &self.ctx.instance.name
    }

    /// Whether the instance keeps a label index (`IndexedLabels`).
    pub fn indexed(&self) -> bool {
        self.labels.cfg.indexed_labels
    }

    /// The body a supervoxel belongs to (0: retired).
    pub fn body(&self, sv: u64) -> u64 {
        self.labels.body(sv)
    }

    /// The supervoxels of `body`, ascending; `None` when no body has that label.
    pub fn body_supervoxels(&self, body: u64) -> Result<Option<Vec<u64>>> {
        Ok(index_for(&self.labels, body, false)?
            .map(|i| i.supervoxel_sizes().into_keys().collect()))
    }

    /// Whether supervoxel `sv` has voxels.
    pub fn supervoxel_exists(&self, sv: u64) -> Result<bool> {
        Ok(index_for(&self.labels, sv, true)?
            .is_some_and(|i| i.blocks.values().any(|c| c.counts.contains_key(&sv))))
    }

    pub fn block_size(&self) -> [usize; 3] {
        self.labels.cfg.block_size
    }

    /// The size of a scale-0 voxel, in VoxelUnits.
    pub fn voxel_size(&self) -> [f64; 3] {
        self.labels.cfg.voxel_size
    }

    /// The coarsest scale kept (`MaxDownresLevel`).
    pub fn max_scale(&self) -> u8 {
        self.labels.cfg.max_downres_level
    }

    /// The scale kept meshes are made at (`KeepMeshesScale`).
    pub fn kept_mesh_scale(&self) -> u8 {
        self.labels.cfg.keep_meshes_scale
    }

    /// The mesh of body `label` from its voxels at `scale` (coarser levels of detail), in
    /// physical units; `None` when it has no voxels there.
    pub fn mesh_at(&self, label: u64, scale: u8) -> Result<Option<Mesh>> {
        if scale > 0 {
            pyramid::settle(&self.ctx)?;
        }
        meshes::mesh(&self.ctx, &self.labels, label, scale, false)
    }

    /// The bodies in `bx` at `scale`, x fastest; unwritten space reads as 0.
    pub fn read(&self, scale: u8, bx: &VoxelBox) -> Result<Vec<u64>> {
        if scale > 0 {
            pyramid::settle(&self.ctx)?;
        }
        voxels::read_box(&self.labels, scale, bx)
    }

    /// The body at each voxel point (0 where no block is stored), decoding each block once.
    pub fn bodies_at(&self, points: &[[i32; 3]]) -> Result<Vec<u64>> {
        let points: Vec<[i64; 3]> = points.iter().map(|p| p.map(i64::from)).collect();
        self.labels.voxels_at(0, &points)
    }

    /// The labelmap's voxel bounds, if anything was written.
    pub fn extents(&self) -> Result<Option<crate::block::extents::Bounds>> {
        let b = &self.labels.blocks;
        crate::block::extents::read(&b.store, &b.view)
    }

    /// The mesh of a body (or, with `supervoxels`, of a supervoxel) at scale 0, as `GET mesh`
    /// serves it; `None` when it has no voxels.
    pub fn mesh(&self, label: u64, supervoxels: bool) -> Result<Option<Mesh>> {
        meshes::mesh(&self.ctx, &self.labels, label, 0, supervoxels)
    }
}

//! [`Annotation`]: an annotation instance at one version, for labelsz.

use super::element::Point;
use crate::datatype::{DataCtx, Handle};
use crate::{Error, Result};

/// An annotation instance at one version.
pub struct Annotation {
    ctx: DataCtx,
}

impl Handle for Annotation {
    const TYPE_NAME: &'static str = "annotation";

    fn from_ctx(ctx: DataCtx) -> Result<Annotation> {
        Ok(Annotation { ctx })
    }
}

impl Annotation {
    pub fn ctx(&self) -> &DataCtx {
        &self.ctx
    }

    /// The points whose voxel belongs to body `label` (as the sync last applied), in no
    /// particular order; empty when none.
    pub fn label_points(&self, _label: u64) -> Result<Vec<Point>> {
        Err(Error::Internal("annotation: label_points not yet implemented".into()))
    }

    /// Visits every label holding points, ascending, with its points; stops when `visit`
    /// returns false.
    pub fn for_each_label(
        &self,
        _visit: &mut dyn FnMut(u64, Vec<Point>) -> Result<bool>,
    ) -> Result<()> {
        Err(Error::Internal("annotation: for_each_label not yet implemented".into()))
    }
}

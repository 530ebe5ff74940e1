//! The typed handle on a uint8blk instance, for the datatypes that read grayscale (imagetile):
//! boxes of voxels, the voxel size and extents, the store its events' outboxes live in — and
//! the 2-D encodings `raw` uses, so a derived image is encoded the same way.

use std::sync::Arc;

use tessera_storage::KvStore;

use super::config::Kind;
use super::image::Image;
use super::voxels::{Format, image_bytes, is_jpeg, quality};
use crate::block::extents::{self, Bounds};
use crate::block::geom::VoxelBox;
use crate::datatype::{DataCtx, DataRequest, Handle};
use crate::{Error, Result};

/// A uint8blk instance at one version.
pub struct Grayscale {
    ctx: DataCtx,
    image: Image,
}

impl Handle for Grayscale {
    const TYPE_NAME: &'static str = "uint8blk";

    fn from_ctx(ctx: DataCtx) -> Result<Grayscale> {
        let image = Image::new(&ctx)?;
        if image.cfg.kind != Kind::Uint8 {
            return Err(Error::Internal(format!(
                "uint8blk {:?} is configured as {}",
                ctx.instance.name,
                image.cfg.kind.type_name()
            )));
        }
        Ok(Grayscale { ctx, image })
    }
}

impl Grayscale {
    pub fn name(&self) -> &str {
        &self.ctx.instance.name
    }

    pub fn data_uuid(&self) -> &str {
        &self.ctx.instance.data_uuid
    }

    /// The store holding the instance's data, where its subscribers' outboxes live.
    pub fn kv(&self) -> &Arc<dyn KvStore> {
        self.ctx.store.kv()
    }

    pub fn voxel_size(&self) -> [f64; 3] {
        self.image.cfg.voxel_size
    }

    pub fn block_size(&self) -> [usize; 3] {
        self.image.cfg.block_size
    }

    /// The bounds of what was written at this version (and its ancestors); `None` when empty.
    pub fn extents(&self) -> Result<Option<Bounds>> {
        extents::read(&self.image.blocks.store, &self.image.blocks.view)
    }

    /// The voxels of `bx`, x fastest; unwritten space reads as zeros.
    pub fn read(&self, bx: &VoxelBox) -> Result<Vec<u8>> {
        self.image.read(bx)
    }

    /// A `width`-wide gray PNG, as `raw` encodes one.
    pub fn png(pixels: &[u8], width: usize) -> Result<Vec<u8>> {
        image_bytes(Kind::Uint8, pixels, width, Format::Png)
    }

    /// A `width`-wide gray image in a `raw` format segment (`png` when `None`; `jpg`, `jpeg`
    /// with `:QUALITY` or `?quality=`): its content type and bytes.
    pub fn encode_2d(
        pixels: &[u8],
        width: usize,
        format: Option<&str>,
        req: &DataRequest,
    ) -> Result<(&'static str, Vec<u8>)> {
        let f = format.unwrap_or("png");
        if f == "png" {
            Ok(("image/png", Self::png(pixels, width)?))
        } else if is_jpeg(f) {
            let q = quality(f, req)?;
            Ok((
                "image/jpeg",
                image_bytes(Kind::Uint8, pixels, width, Format::Jpeg(q))?,
            ))
        } else {
            Err(Error::bad(format!(
                "image format {f:?} is not offered: use png or jpg (jpg:QUALITY or ?quality=)"
            )))
        }
    }
}

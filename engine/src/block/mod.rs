//! The block layer every block-shaped datatype builds on (labelmap, and uint8blk with its
//! siblings): block coordinates and boxes, block keys per scale, the storage wrapper,
//! batched reads at a version, and one writer whose pyramid is generic over the voxel type.
//!
//! * [`cseg`] — neuroglancer's compressed_segmentation, both ways;
//! * [`geom`] — voxel boxes, block coordinates, the label index's packed coordinates;
//! * [`keys`] — block keys in (scale, z, y, x) order; [`stored`] — gzip/lz4/none wrapper;
//! * [`read`] — [`Blocks`], one instance's blocks at one version;
//! * [`voxel`] — how each voxel type is stored and downsampled;
//! * [`pyramid`] and [`writer`] — the write path with its scales above.

pub mod cseg;
pub mod extents;
pub mod geom;
pub mod held;
pub mod jpeg;
pub mod keys;
pub mod pyramid;
pub mod read;
pub mod records;
pub mod stored;
pub mod volume;
pub mod voxel;
pub mod writer;

pub use geom::{BlockCoord, VoxelBox};
pub use keys::is_stored_block;
pub use read::Blocks;
pub use stored::Stored;
pub use voxel::Voxel;
pub use writer::Writer;

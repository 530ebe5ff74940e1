//! What the block layer needs to know of a voxel type: how a block of it is stored and how a
//! pyramid level is computed from it. Labels (u64) are stored in DVID's compressed label block
//! format and downsampled by mode; image voxels (u8) are stored raw and downsampled by mean.

use crate::Result;
use crate::compute::{Compute, Shape, codec};

pub trait Voxel: Copy + Default + Send + Sync + 'static {
    /// DVID's name of the value type, as `GET info` reports it.
    const TYPE_NAME: &'static str;

    /// One 2×2×2 level of a batch of blocks stacked along z (block sides are even, so no
    /// window straddles two blocks).
    fn downsample(compute: &dyn Compute, src: &[Self], stacked: Shape) -> Result<Vec<Self>>;

    /// Blocks (one after another) → their payloads, before the storage wrapper.
    fn encode(compute: &dyn Compute, voxels: &[Self], block: Shape) -> Result<Vec<Vec<u8>>>;

    /// Payloads of blocks of shape `block` → voxels, block after block, into `out`.
    fn decode(
        compute: &dyn Compute,
        payloads: &[&[u8]],
        block: Shape,
        out: &mut [Self],
    ) -> Result<()>;
}

impl Voxel for u64 {
    const TYPE_NAME: &'static str = "uint64";

    fn downsample(compute: &dyn Compute, src: &[u64], stacked: Shape) -> Result<Vec<u64>> {
        Ok(compute.downsample_mode(src, stacked)?)
    }

    fn encode(compute: &dyn Compute, voxels: &[u64], block: Shape) -> Result<Vec<Vec<u8>>> {
        Ok(compute.block_encode(voxels, block)?)
    }

    fn decode(
        compute: &dyn Compute,
        payloads: &[&[u8]],
        block: Shape,
        out: &mut [u64],
    ) -> Result<()> {
        if payloads.is_empty() {
            return Ok(());
        }
        let shape = codec::batch_shape(payloads)?;
        if shape != block {
            return Err(crate::Error::bad(format!(
                "a {shape} label block does not match this instance's block size {block}"
            )));
        }
        compute.block_decode_into(payloads, out)?;
        Ok(())
    }
}

impl Voxel for u8 {
    const TYPE_NAME: &'static str = "uint8";

    fn downsample(compute: &dyn Compute, src: &[u8], stacked: Shape) -> Result<Vec<u8>> {
        Ok(compute.downsample_mean(src, stacked)?)
    }

    fn encode(_: &dyn Compute, voxels: &[u8], block: Shape) -> Result<Vec<Vec<u8>>> {
        Ok(voxels
            .chunks_exact(block.voxels())
            .map(<[u8]>::to_vec)
            .collect())
    }

    fn decode(_: &dyn Compute, payloads: &[&[u8]], block: Shape, out: &mut [u8]) -> Result<()> {
        for (p, o) in payloads.iter().zip(out.chunks_exact_mut(block.voxels())) {
            if p.len() != o.len() {
                return Err(crate::Error::Internal(format!(
                    "a stored block of {} bytes is not a {block} uint8 block",
                    p.len()
                )));
            }
            o.copy_from_slice(p);
        }
        Ok(())
    }
}

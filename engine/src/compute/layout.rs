//! Rearranging a volume into the batch-of-blocks layout the block kernels take.

use super::{ComputeError, Result, Shape};

/// The (z, y, x) volume `data` of shape `shape` cut into blocks of shape `block`, stored one
/// after another in (z, y, x) block order, each in (z, y, x) voxel order. Every side of the
/// volume must be a multiple of the block's.
pub fn to_blocks<T: Copy>(data: &[T], shape: Shape, block: Shape) -> Result<Vec<T>> {
    shape.check_len(data.len(), "to blocks")?;
    block.check_len(block.voxels(), "to blocks")?;
    if !(shape.x.is_multiple_of(block.x)
        && shape.y.is_multiple_of(block.y)
        && shape.z.is_multiple_of(block.z))
    {
        return Err(ComputeError::BadInput(format!(
            "a {shape} volume is not a whole number of {block} blocks"
        )));
    }
    let mut out = Vec::with_capacity(data.len());
    for bz in (0..shape.z).step_by(block.z) {
        for by in (0..shape.y).step_by(block.y) {
            for bx in (0..shape.x).step_by(block.x) {
                for z in bz..bz + block.z {
                    for y in by..by + block.y {
                        let at = (z * shape.y + y) * shape.x + bx;
                        out.extend_from_slice(&data[at..at + block.x]);
                    }
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_blocks_in_zyx_order() {
        // A 4×2×2 volume holding its own index, cut into two 2×2×2 blocks along x.
        let data: Vec<u32> = (0..16).collect();
        let blocks = to_blocks(&data, Shape::new(4, 2, 2), Shape::cube(2)).unwrap();
        assert_eq!(
            blocks,
            [0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15]
        );
        assert!(to_blocks(&data, Shape::new(4, 2, 2), Shape::cube(4)).is_err());
        assert!(to_blocks(&data[1..], Shape::new(4, 2, 2), Shape::cube(2)).is_err());
    }
}

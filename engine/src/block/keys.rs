//! Block keys: `186 ‖ scale ‖ z ‖ y ‖ x`, each coordinate u32 BE with the sign bit flipped, so
//! key order is (scale, z, y, x) order and one (z, y) row of blocks is one key range. The class
//! byte is DVID's labelmap block class (spec §2.1); every block datatype uses the same layout
//! inside its own instance's key space.

use super::geom::BlockCoord;
use crate::{Error, Result};

pub const CLASS_BLOCK: u8 = 186;

fn flip(v: i32) -> [u8; 4] {
    ((v as u32) ^ 0x8000_0000).to_be_bytes()
}

fn unflip(b: &[u8]) -> i32 {
    (u32::from_be_bytes(b.try_into().expect("4 bytes")) ^ 0x8000_0000) as i32
}

pub fn block_key(scale: u8, c: BlockCoord) -> [u8; 14] {
    let mut k = [0u8; 14];
    k[0] = CLASS_BLOCK;
    k[1] = scale;
    k[2..6].copy_from_slice(&flip(c[2]));
    k[6..10].copy_from_slice(&flip(c[1]));
    k[10..14].copy_from_slice(&flip(c[0]));
    k
}

/// True for a raw store key holding a block of any instance, scale and version: the keys a
/// content-addressed store (`tessera_storage::content`) keeps as objects.
pub fn is_stored_block(raw_key: &[u8]) -> bool {
    tessera_storage::versioned::tkey_class(raw_key) == Some(CLASS_BLOCK)
}

pub fn block_key_coord(k: &[u8]) -> Result<BlockCoord> {
    if k.len() != 14 || k[0] != CLASS_BLOCK {
        return Err(Error::Internal("malformed block key".into()));
    }
    Ok([unflip(&k[10..14]), unflip(&k[6..10]), unflip(&k[2..6])])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_keys_sort_in_zyx_order_and_round_trip() {
        let coords = [
            [5, -1, -1],
            [-3, 0, -1],
            [0, 0, 0],
            [1, 0, 0],
            [-9, 1, 0],
            [0, 0, 2],
        ];
        let keys: Vec<[u8; 14]> = coords.iter().map(|c| block_key(0, *c)).collect();
        for w in keys.windows(2) {
            assert!(w[0] < w[1]);
        }
        for (c, k) in coords.iter().zip(&keys) {
            assert_eq!(block_key_coord(k).unwrap(), *c);
        }
        assert!(block_key(0, [9, 9, 9]) < block_key(1, [-9, -9, -9]));
    }

    #[test]
    fn stored_block_keys_are_recognised_at_every_instance_and_version() {
        use std::sync::Arc;
        use tessera_storage::versioned::{Dag, View, put_into, space};
        let mut b = tessera_storage::WriteBatch::new();
        for (instance, version) in [(1, 1), (0x00BA_0000, 7), (u32::MAX, u32::MAX)] {
            let view = View {
                instance,
                version,
                dag: Arc::new(Dag::new()),
            };
            put_into(&mut b, &view, &block_key(2, [-1, 0, 5]), b"x");
            put_into(&mut b, &view, &[187, 1, 2], b"x");
        }
        let keys: Vec<&Vec<u8>> = b
            .ops
            .iter()
            .map(|op| match op {
                tessera_storage::WriteOp::Put(k, _) => k,
                tessera_storage::WriteOp::Delete(k) => k,
            })
            .collect();
        let blocks: Vec<bool> = keys.iter().map(|k| is_stored_block(k)).collect();
        assert_eq!(blocks, [true, false, true, false, true, false]);
        assert!(!is_stored_block(&[space::META, 0, 0, 0, 1, CLASS_BLOCK]));
    }
}

//! Test-side label formats and references for the `labelmap` datatype, written from the DVID
//! specification (`shared/spec/dvid-api.md` §5.1–§5.5, §6.2), independently of the engine:
//!
//! * [`Volume`]: a dense uint64 label volume (ZYX order, x fastest) with fixtures and the
//!   per-label / per-block counts a label index must report;
//! * [`encode_block`], [`encode_block_full_table`], [`decode_block`]: the `labels.Block`
//!   serialization (§5.2);
//! * [`gzip`], [`gunzip`], [`lz4_decompress`], [`block_records`], [`records_body`]: block
//!   stream records (§5.3) and their payload codings;
//! * [`rles_voxels`], [`srles_voxels`], [`coarse_rles`], [`blocks_voxels`],
//!   [`sparsevols_coarse`]: sparse volume decoders (§5.1) into voxel sets;
//! * [`downres`], [`pyramid`]: the scalar downres reference (§6.2);
//! * [`pack_block_coord`], [`unpack_block_coord`]: label index block keys (§5.5);
//! * [`Seg`]: URL and request helpers for one labelmap instance on a test server;
//! * [`Model`], [`check_consistency`], [`EventStream`], …: proofreading mutations (merge,
//!   cleave, split, mapping; modules `proofread` (reference model) and `mutations` (requests
//!   and checks)); [`Oracle`], [`replay`], [`compare`]: replaying the mutation log of
//!   concurrent or interrupted edits (module `oracle`).

mod block;
mod client;
mod downres;
mod mutations;
mod oracle;
mod proofread;
mod rle;
mod volume;

pub use block::{decode_block, encode_block, encode_block_full_table};
pub use client::{
    Seg, block_records, gunzip, gzip, lz4_decompress, lz4_decompress_max, records_body,
    standard_settings, with_query,
};
pub use downres::{downres, pyramid};
pub use mutations::{
    EventStream, Http, SseEvent, SseParser, StreamMsg, check_consistency, check_consistency_settled,
};
pub use oracle::{
    Edit, Oracle, Outcome, Replayed, SentEdit, brief, choose_edit, compare, label_at, random_point,
    replay, send_edit,
};
pub use proofread::{
    Model, Rng, SplitIds, assert_mappings, parse_mappings_binary, parse_mappings_text, raw_rles,
    volume_diff, voxels_where,
};
pub use rle::{
    VoxelSet, blocks_voxels, coarse_rles, encode_rles, rles_voxels, sparsevols_coarse, srles_voxels,
};
pub use volume::{
    Coord, Volume, block_of, hash3, mixed_fixture, noise_fixture, spec_cubes_fixture,
};

/// Label index block key (§5.5): bits 0–19 |x|, bit 20 sign(x); bits 21–40 |y|, bit 41
/// sign(y); bits 42–61 |z|, bit 62 sign(z). Magnitudes must fit in 20 bits.
pub fn pack_block_coord(c: Coord) -> u64 {
    let mut key = 0u64;
    for (axis, &v) in c.iter().enumerate() {
        let mag = u64::from(v.unsigned_abs());
        assert!(
            mag < (1 << 20),
            "block coordinate {v} does not fit in 20 bits"
        );
        let sign = u64::from(v < 0);
        key |= (mag | (sign << 20)) << (21 * axis);
    }
    key
}

/// Inverse of [`pack_block_coord`].
pub fn unpack_block_coord(key: u64) -> Coord {
    let mut c = [0i32; 3];
    for (axis, v) in c.iter_mut().enumerate() {
        let field = (key >> (21 * axis)) & 0x1F_FFFF;
        let mag = (field & 0xF_FFFF) as i32;
        *v = if field & (1 << 20) != 0 { -mag } else { mag };
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_coord_packing_is_sign_magnitude() {
        assert_eq!(pack_block_coord([0, 0, 0]), 0);
        assert_eq!(pack_block_coord([1, 0, 0]), 1);
        assert_eq!(pack_block_coord([-1, 0, 0]), 1 | (1 << 20));
        assert_eq!(pack_block_coord([0, 1, 0]), 1 << 21);
        assert_eq!(pack_block_coord([0, -2, 0]), (2 << 21) | (1 << 41));
        assert_eq!(pack_block_coord([0, 0, 3]), 3 << 42);
        assert_eq!(pack_block_coord([0, 0, -3]), (3 << 42) | (1 << 62));
        assert_eq!(pack_block_coord([0xF_FFFF, 0, 0]), 0xF_FFFF);
        for c in [
            [0, 0, 0],
            [5, -7, 9],
            [-1, -1, -1],
            [0xF_FFFF, -0xF_FFFF, 12345],
            [-524_288, 524_287, 0],
        ] {
            assert_eq!(unpack_block_coord(pack_block_coord(c)), c, "{c:?}");
        }
    }

    #[test]
    #[should_panic(expected = "20 bits")]
    fn block_coord_packing_rejects_large_magnitudes() {
        pack_block_coord([1 << 20, 0, 0]);
    }
}

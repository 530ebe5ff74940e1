//! DVID's compressed label block (spec §5.2, `compute::codec`): `header`, `decode`,
//! `decode_into` and `VoxelReader` over arbitrary bytes, hostile headers and mutated encodings
//! of real blocks.

use std::sync::OnceLock;

use proptest::prelude::*;
use tessera_engine::compute::{LabelTable, Shape, codec};

use crate::support::{self, apply, bytes, edge_u32, edits, measure, within};

/// Bytes a failed parse may allocate (its error message).
const ERR: usize = 4096;

/// Valid blocks: crops of real labels at 8³ to 64³, and synthetic edge cases (solid, zero,
/// two labels, 512 labels in one sub-block, duplicate table entries are not canonical so are
/// left to mutation).
fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut out = Vec::new();
        for (_, cube) in support::real_cubes() {
            for (at, n) in [
                ([0, 0, 0], 8),
                ([24, 8, 40], 16),
                ([8, 16, 8], 16),
                ([32, 0, 16], 32),
                ([0, 0, 0], 64),
            ] {
                let v = support::crop(&cube, at, n);
                out.push(codec::encode(&v, Shape::new(n, n, n)).unwrap());
            }
        }
        let s = Shape::new(16, 8, 8);
        out.push(codec::encode(&vec![7; s.voxels()], s).unwrap());
        out.push(codec::encode(&vec![0; s.voxels()], s).unwrap());
        let two: Vec<u64> = (0..s.voxels() as u64).map(|i| i % 3 / 2).collect();
        out.push(codec::encode(&two, s).unwrap());
        let many: Vec<u64> = (0..s.voxels() as u64).map(|i| i * 0x9E37_79B9).collect();
        out.push(codec::encode(&many, s).unwrap());
        out
    })
}

/// Every property of one candidate block.
fn check(b: &[u8]) {
    let (h, u) = measure(|| codec::header(b));
    within(u, ERR, "header");
    let Ok(h) = h else {
        assert!(codec::decode(b).is_err());
        assert!(codec::VoxelReader::new(b).is_err());
        assert!(codec::decode_into(b, &mut [0u64; 512]).is_err());
        return;
    };
    let shape = h.shape();
    let voxels = shape.voxels();
    assert!(h.gx <= codec::MAX_SUBBLOCKS_PER_AXIS);

    let (reader, u) = measure(|| codec::VoxelReader::new(b));
    within(u, 24 * h.sub_blocks() + ERR, "VoxelReader::new");
    let reader = reader.expect("a block that passes header makes a reader");

    let (decoded, u) = measure(|| codec::decode(b));
    within(u, 8 * voxels + ERR, "decode");
    // A wrongly sized output is refused, never written past.
    assert!(codec::decode_into(b, &mut vec![0u64; voxels - 1]).is_err());

    let probes = [
        [0, 0, 0],
        [shape.x - 1, shape.y - 1, shape.z - 1],
        [shape.x / 2, shape.y / 3, shape.z - 1],
        [7, 0, shape.z / 2],
    ];
    match decoded {
        Err(_) => {
            // Only a packed index past its sub-block's labels is left to decoding; the reader
            // may meet it or not, but never panics.
            for p in probes {
                let _ = reader.get(p);
                let _ = reader.row(p, &mut vec![0; shape.x - p[0]]);
            }
        }
        Ok((s, v)) => {
            assert_eq!(s, shape);
            assert_eq!(v.len(), voxels);
            for p in probes {
                let at = (p[2] * shape.y + p[1]) * shape.x + p[0];
                assert_eq!(reader.get(p).unwrap(), v[at], "{p:?}");
                let mut row = vec![0; shape.x - p[0]];
                reader.row(p, &mut row).unwrap();
                assert_eq!(row, v[at..at + row.len()], "row from {p:?}");
            }
            assert!(reader.get([shape.x, 0, 0]).is_err());
            let mut into = vec![1u64; voxels];
            assert_eq!(codec::decode_into(b, &mut into).unwrap(), shape);
            assert_eq!(into, v);
            // Round trip: the canonical encoding decodes to the same voxels, and is a fixed
            // point of decode → encode.
            let enc = codec::encode(&v, s).unwrap();
            let (s2, v2) = codec::decode(&enc).unwrap();
            assert_eq!((s2, &v2), (s, &v));
            assert_eq!(codec::encode(&v2, s2).unwrap(), enc);
            // Renaming two of its labels in the table decodes as relabelling its voxels.
            let table = LabelTable::new([(v[0], !v[0]), (v[voxels - 1], v[voxels - 1] ^ 1)]);
            if let Ok(table) = table
                && let Some(renamed) = codec::rename_labels(b, &table).unwrap()
            {
                let want: Vec<u64> = v.iter().map(|l| table.get(*l).unwrap_or(*l)).collect();
                assert_eq!(codec::decode(&renamed).unwrap(), (s, want));
            }
        }
    }
}

/// A 16-byte header of edge values followed by arbitrary bytes.
fn hostile() -> impl Strategy<Value = Vec<u8>> {
    (prop::array::uniform4(edge_u32()), bytes(1024)).prop_map(|(h, tail)| {
        let mut b: Vec<u8> = h.iter().flat_map(|v| v.to_le_bytes()).collect();
        b.extend_from_slice(&tail);
        b
    })
}

proptest! {
    #![proptest_config(support::config(256))]

    #[test]
    fn codec_arbitrary_bytes(b in bytes(4096)) {
        check(&b);
    }

    #[test]
    fn codec_hostile_headers(b in hostile()) {
        check(&b);
    }

    #[test]
    fn codec_mutated_real_blocks(i in any::<prop::sample::Index>(), e in edits(4)) {
        let seeds = seeds();
        check(&apply(&seeds[i.index(seeds.len())], &e));
    }
}

#[test]
fn codec_seeds_round_trip() {
    for s in seeds() {
        check(s);
        assert!(codec::decode(s).is_ok());
    }
}

/// A 24-byte solid block may declare the largest shape (256³): decoding allocates its declared
/// output (128 MiB) and no more; the header alone allocates nothing.
#[test]
fn codec_largest_declared_shape_allocates_its_output_only() {
    let mut b = Vec::new();
    for v in [32u32, 32, 32, 1] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(&5u64.to_le_bytes());
    let (h, u) = measure(|| codec::header(&b));
    assert_eq!(h.unwrap().shape().voxels(), 1 << 24);
    within(u, 0, "header");
    let (r, u) = measure(|| codec::decode(&b).map(|(_, v)| v.len()));
    assert_eq!(r.unwrap(), 1 << 24);
    within(u, 8 << 24, "decode");
    // One sub-block more along an axis is refused before any allocation.
    b[0] = 33;
    let (r, u) = measure(|| codec::decode(&b).is_err());
    assert!(r);
    within(u, ERR, "decode of 33 sub-blocks");
}

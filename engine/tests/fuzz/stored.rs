//! The storage wrapper (`block::stored`, spec §2.2: none, gzip, LZ4, JPEG) and the JPEG
//! decoder behind it and behind tile uploads (`block::jpeg`).

use std::sync::OnceLock;

use proptest::prelude::*;
use tessera_engine::block::jpeg;
use tessera_engine::block::stored::{self, Stored, deserialize, deserialize_into, jpeg_payload};
use tessera_engine::compute::{Shape, codec};

use crate::support::{self, apply, bytes, edits, measure, within};

const ERR: usize = 4096;
/// The gzip and JPEG decoders' own state.
const SLACK: usize = 1 << 18;

fn seeds() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut out = Vec::new();
        for (_, cube) in support::real_cubes() {
            let small = support::crop(&cube, [8, 8, 8], 16);
            let block = codec::encode(&small, Shape::new(16, 16, 16)).unwrap();
            for s in [Stored::None, Stored::Gzip(6), Stored::Lz4] {
                out.push(s.serialize(&block).unwrap());
            }
            // A gray image of label bytes, as a uint8blk block is stored.
            let gray: Vec<u8> = cube[..64 * 64].iter().map(|&l| (l % 251) as u8).collect();
            let j = Stored::Jpeg {
                quality: 80,
                width: 64,
            };
            out.push(j.serialize(&gray).unwrap());
        }
        out
    })
}

fn check(b: &[u8]) {
    let bound = match b.first() {
        // LZ4: the declared size.
        Some(0x80) if b.len() >= 5 => {
            u32::from_le_bytes(b[1..5].try_into().unwrap()) as usize + ERR
        }
        // gzip: deflate inflates at most 1032:1.
        Some(0x40) => 2 * 1032 * b.len() + 4 * b.len() + SLACK,
        // JPEG: the pixels the header declares, at most 2^30.
        Some(0xA0) => (1 << 30) + SLACK,
        _ => b.len() + ERR,
    };
    let (r, u) = measure(|| deserialize(b));
    within(u, bound, "deserialize");
    if let Ok(raw) = &r {
        // Round trip through every lossless form.
        for s in [Stored::None, Stored::Gzip(1), Stored::Lz4] {
            assert_eq!(&deserialize(&s.serialize(raw).unwrap()).unwrap(), raw);
        }
        let mut into = vec![0u8; raw.len()];
        if jpeg_payload(b).is_none() {
            deserialize_into(b, &mut into).unwrap();
            assert_eq!(&into, raw);
        }
        assert!(deserialize_into(b, &mut vec![0u8; raw.len() + 1]).is_err());
    }
    // As `compression=blocks` serves it.
    if let Ok(raw) = r {
        let gz = stored::gzip_payload(b).unwrap();
        assert_eq!(stored::gunzip(&gz, usize::MAX).unwrap(), raw);
    }
}

fn check_jpeg(b: &[u8]) {
    let (r, u) = measure(|| jpeg::decode_gray_image(b, None));
    within(u, (1 << 30) + ERR, "decode_gray_image");
    if let Ok((w, h, px)) = r {
        assert_eq!(px.len(), w * h);
        assert!(jpeg::decode_gray(b, Some(w * h + 1)).is_err());
        let mut out = vec![0u8; w * h];
        jpeg::decode_gray_into(b, &mut out).unwrap();
        assert_eq!(out, px);
    }
}

proptest! {
    #![proptest_config(support::config(256))]

    #[test]
    fn stored_arbitrary_bytes(b in bytes(1024)) {
        check(&b);
    }

    #[test]
    fn stored_mutated_real_values(i in any::<prop::sample::Index>(), e in edits(4)) {
        let seeds = seeds();
        check(&apply(&seeds[i.index(seeds.len())], &e));
    }

    #[test]
    fn jpeg_mutated(i in 0usize..3, e in edits(4)) {
        let seeds = seeds();
        let j = jpeg_payload(&seeds[4 * i + 3]).unwrap();
        check_jpeg(&apply(j, &e));
    }
}

#[test]
fn stored_seeds_round_trip() {
    for s in seeds() {
        check(s);
        assert!(deserialize(s).is_ok());
    }
    // The most compressible values (LZ4's 255:1 ratio) still read back.
    for n in [0, 1, 15, 16, 17, 300, 1 << 22] {
        let zeros = vec![0u8; n];
        assert_eq!(deserialize(&stored::lz4_serialize(&zeros)).unwrap(), zeros);
    }
}

/// An LZ4 value whose 4-byte header claims 4 GiB but holds a few bytes is refused before its
/// claim is allocated.
#[test]
fn lz4_claiming_more_than_its_payload_can_hold_is_refused() {
    let mut b = stored::lz4_serialize(b"abcabcabcabc");
    b[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
    let (r, u) = measure(|| deserialize(&b));
    assert!(r.is_err());
    within(u, ERR, "deserialize");
}

//! neuroglancer compressed_segmentation (`block::cseg::decode`), which volumeproxy and
//! `tessera load` run on chunks fetched from elsewhere: arbitrary bytes and mutated encodings
//! of real labels never panic, allocate no more than the volume decoded, and the encodings
//! themselves decode back exactly.

use std::sync::OnceLock;

use proptest::prelude::*;
use tessera_engine::block::cseg;

use crate::support::{self, apply, bytes, edits, measure, within};

type Seed = ([usize; 3], Vec<u64>, Vec<u8>);

/// Real label crops and their encodings, with the crop's size.
fn seeds() -> &'static [Seed] {
    static SEEDS: OnceLock<Vec<Seed>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut out = Vec::new();
        for (_, cube) in support::real_cubes() {
            for (at, n) in [([0, 0, 0], 8), ([24, 8, 40], 16), ([8, 16, 8], 24)] {
                let v = support::crop(&cube, at, n);
                let enc = cseg::encode(&v, [n; 3]);
                out.push(([n; 3], v, enc));
            }
        }
        out
    })
}

fn check(b: &[u8], size: [usize; 3], block: [usize; 3]) {
    let voxels = size.iter().product::<usize>();
    let (got, u) = measure(|| cseg::decode(b, size, block));
    // The words it reads, the voxels it writes, and an error message.
    within(u, 4 * b.len() + 8 * voxels + 4096, "cseg::decode");
    if let Ok(v) = got {
        assert_eq!(v.len(), voxels);
    }
}

proptest! {
    #![proptest_config(support::config(256))]

    #[test]
    fn cseg_arbitrary_bytes(
        b in bytes(2048),
        size in prop::array::uniform3(1usize..20),
        block in prop::array::uniform3(0usize..10),
    ) {
        check(&b, size, block);
    }

    #[test]
    fn cseg_mutated_real_chunks(i in any::<prop::sample::Index>(), e in edits(4)) {
        let seeds = seeds();
        let (size, _, enc) = &seeds[i.index(seeds.len())];
        check(&apply(enc, &e), *size, [8; 3]);
    }
}

#[test]
fn cseg_seeds_round_trip() {
    for (size, v, enc) in seeds() {
        assert_eq!(&cseg::decode(enc, *size, [8; 3]).unwrap(), v);
    }
}

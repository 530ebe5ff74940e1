//! labelmap multiscale (spec §6.2): lower scales are computed before a write returns, with the
//! rule "most frequent non-zero label of the 2×2×2 children, ties → smallest, all zero → 0";
//! every block of every level is checked against the scalar reference (level s =
//! downres(level s−1)). Also `scale=` on reads, partial updates (only the changed octant of a
//! lower block changes), `POST blocks?downres=true`, and scale > MaxDownresLevel → 400.

use tessera_tests::labels::*;
use tessera_tests::*;

fn start(max_downres: u32) -> (Server, String) {
    let srv = Server::start();
    let root = srv.create_repo("downres");
    srv.create_instance_with(&root, "labelmap", "seg", &standard_settings(max_downres));
    (srv, root)
}

fn seg<'a>(srv: &'a Server, root: &str) -> Seg<'a> {
    Seg::open(srv, root, "seg")
}

/// The block-aligned box covering a level (origin at 0).
fn hull(v: &Volume, bs: [usize; 3]) -> [usize; 3] {
    [
        v.size[0].div_ceil(bs[0]) * bs[0],
        v.size[1].div_ceil(bs[1]) * bs[1],
        v.size[2].div_ceil(bs[2]) * bs[2],
    ]
}

/// Checks scales 1..=levels against the reference pyramid of `level0` (origin 0): the raw
/// voxels of every block of the level, and the `blocks` stream at that scale.
#[track_caller]
fn check_pyramid(seg: &Seg, level0: &Volume, levels: usize) -> Vec<Volume> {
    let p = pyramid(level0, levels);
    for (s, level) in p.iter().enumerate().skip(1) {
        let size = hull(level, seg.bs);
        let want = level.region([0; 3], size);
        let got = seg.raw([0; 3], size, &format!("scale={s}"));
        assert!(
            got == want,
            "scale {s} voxels: {}",
            volume_diff(&got, &want)
        );
        let recs = seg.blocks([0; 3], size, &format!("compression=blocks&scale={s}"));
        let required = want.nonempty_blocks(seg.bs);
        let allowed: Vec<Coord> = (0..(size[2] / 64) as i32)
            .flat_map(|z| {
                (0..(size[1] / 64) as i32)
                    .flat_map(move |y| (0..(size[0] / 64) as i32).map(move |x| [x, y, z]))
            })
            .collect();
        seg.check_records(&recs, "blocks", &want, &allowed, &required);
    }
    p
}

#[test]
fn spec_example_cubes_at_every_scale() {
    let (srv, root) = start(3);
    let seg = seg(&srv, &root);
    let vol = spec_cubes_fixture();
    seg.write(&vol);
    check_pyramid(&seg, &vol, 3);
    // the cubes, halved and quartered (spec §6.2 example)
    assert_eq!(seg.label_at([20, 20, 20], "scale=1"), 1);
    assert_eq!(seg.label_at([39, 39, 39], "scale=1"), 1);
    assert_eq!(seg.label_at([19, 20, 20], "scale=1"), 0);
    assert_eq!(seg.label_at([25, 25, 45], "scale=1"), 2);
    assert_eq!(seg.label_at([45, 25, 25], "scale=1"), 13);
    assert_eq!(seg.label_at([25, 45, 25], "scale=1"), 209);
    assert_eq!(seg.label_at([45, 45, 25], "scale=1"), 311);
    assert_eq!(seg.label_at([10, 10, 10], "scale=2"), 1);
    assert_eq!(seg.label_at([22, 22, 12], "scale=2"), 311);
    assert_eq!(seg.label_at([5, 5, 5], "scale=3"), 1);
    let pts = json!([[20, 20, 20], [25, 25, 45], [0, 0, 0], [45, 45, 25]]);
    seg.get_with_body("labels?scale=1", serde_json::to_vec(&pts).unwrap())
        .expect(200)
        .expect_body("[1,2,0,311]");
    for bad in [
        "raw/0_1_2/64_64_64/0_0_0?scale=4",
        "label/0_0_0?scale=4",
        "blocks/64_64_64/0_0_0?scale=4",
        "specificblocks?blocks=0,0,0&scale=4",
        "sparsevol/1?scale=4",
    ] {
        seg.get(bad).expect(400);
    }
}

#[test]
fn noise_pyramid_is_exact() {
    let (srv, root) = start(3);
    let seg = seg(&srv, &root);
    // frequent zeros (which never vote) and few labels: every tie pattern occurs
    let vol = noise_fixture([128; 3], 2024, &[0, 0, 0, 1, 2, 3, 4, 1000, u64::MAX - 1]);
    seg.write(&vol);
    let p = check_pyramid(&seg, &vol, 3);
    // unaligned reads at a lower scale
    for (off, size) in [([3, 5, 7], [40, 33, 21]), ([30, 0, 31], [2, 64, 3])] {
        let got = seg.raw(off, size, "scale=1");
        let want = p[1].region(off, size);
        assert!(
            got == want,
            "scale 1 {size:?}@{off:?}: {}",
            volume_diff(&got, &want)
        );
    }
    let r = seg.get("specificblocks?blocks=0,0,0&scale=2").expect(200);
    let recs = block_records(&r.body);
    let lvl2 = p[2].region([0; 3], [64; 3]);
    seg.check_records(&recs, "blocks", &lvl2, &[[0, 0, 0]], &[[0, 0, 0]]);
}

#[test]
fn overwriting_one_block_updates_only_its_octant() {
    let (srv, root) = start(3);
    let seg = seg(&srv, &root);
    let mut vol = Volume::zeros([192, 128, 128]);
    vol.paste(&noise_fixture([128; 3], 7, &[0, 0, 1, 2, 3, 5]));
    seg.write(&vol.region([0; 3], [128; 3]));
    check_pyramid(&seg, &vol, 3);
    let before = seg.raw([0; 3], [64; 3], "scale=1");

    // octant (1,0,1) of scale-1 block (0,0,0) comes from scale-0 block (1,0,1)
    let octants: Vec<Coord> = (0..8).map(|i| [i & 1, (i >> 1) & 1, i >> 2]).collect();
    let octant = |v: &Volume, o: Coord| v.region([o[0] * 32, o[1] * 32, o[2] * 32], [32; 3]);
    let check_octants = |changed: Coord, after: &Volume, what: &str| {
        for &o in &octants {
            if o != changed {
                assert!(
                    octant(after, o) == octant(&before, o),
                    "{what}: octant {o:?} changed although its block was not written"
                );
            }
        }
    };

    let mixed = Volume::from_fn([64, 0, 64], [64; 3], |x, y, z| {
        if (x / 4 + y / 4 + z / 4) % 2 == 0 {
            7
        } else {
            hash3(x, y, z, 1) % 4
        }
    });
    seg.write(&mixed);
    vol.paste(&mixed);
    check_pyramid(&seg, &vol, 3);
    let after = seg.raw([0; 3], [64; 3], "scale=1");
    check_octants([1, 0, 1], &after, "mixed overwrite");
    assert!(
        octant(&after, [1, 0, 1]) != octant(&before, [1, 0, 1]),
        "octant (1,0,1) must change"
    );

    // a solid non-zero block: only its octant becomes solid
    let mut solid = Volume::filled([64; 3], 55);
    solid.origin = [64, 0, 64];
    seg.write(&solid);
    vol.paste(&solid);
    check_pyramid(&seg, &vol, 3);
    let after = seg.raw([0; 3], [64; 3], "scale=1");
    check_octants([1, 0, 1], &after, "solid overwrite");
    assert!(octant(&after, [1, 0, 1]).data.iter().all(|&l| l == 55));

    // a block beyond the old extent starts scale-1 block (1,0,0) with one octant
    let far = Volume::from_fn([128, 0, 0], [64; 3], |x, y, z| 1 + hash3(x, y, z, 5) % 3);
    seg.write(&far);
    vol.paste(&far);
    let p = check_pyramid(&seg, &vol, 3);
    let lo = seg.raw([64, 0, 0], [64; 3], "scale=1");
    assert!(lo == p[1].region([64, 0, 0], [64; 3]));
    assert!(
        octant(&seg.raw([0; 3], [64; 3], "scale=1"), [1, 0, 1])
            .data
            .iter()
            .all(|&l| l == 55),
        "unrelated lower block kept"
    );
}

#[test]
fn post_blocks_downres_true_builds_lower_scales() {
    let (srv, root) = start(2);
    let seg = seg(&srv, &root);
    let vol = mixed_fixture();
    let recs: Vec<(Coord, Vec<u8>)> = (0..8)
        .map(|i| {
            let c = [i & 1, (i >> 1) & 1, i >> 2];
            (c, gzip(&encode_block(&vol.block(c, seg.bs))))
        })
        .collect();
    seg.post("blocks?downres=true", records_body(&recs))
        .expect(200);
    check_pyramid(&seg, &vol, 2);
    assert_eq!(seg.size_of(7), Some(vol.label_counts()[&7]));

    // without downres=true the lower scales are left alone
    srv.create_instance_with(&root, "labelmap", "nodown", &standard_settings(2));
    let other = Seg::open(&srv, &root, "nodown");
    other.post("blocks", records_body(&recs)).expect(200);
    assert!(other.raw([0; 3], [128; 3], "") == vol);
    assert!(
        other
            .raw([0; 3], [64; 3], "scale=1")
            .data
            .iter()
            .all(|&l| l == 0),
        "POST blocks without downres=true computed scale 1"
    );
}

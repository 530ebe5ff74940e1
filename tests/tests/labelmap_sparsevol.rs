//! labelmap sparse volumes (spec §4.4 "Sparse volumes", §5.1): sparsevol in the rles, srles
//! and blocks formats, lz4/gzip compression, bounds with exact clipping, HEAD,
//! sparsevol-by-point, sparsevol-coarse, sparsevols-coarse, and sparsevols at lower scales.
//! Sparse volumes are compared as voxel sets (run order and splitting are unspecified).

use std::collections::BTreeMap;

use tessera_tests::labels::*;
use tessera_tests::*;

const MISSING: u64 = 424_242;
const WIDE: u64 = 4_294_967_301;
/// Labels of the mixed fixture with interesting shapes: a ball crossing 8 blocks, a diagonal
/// slab, a thin slab, a single voxel, a line, a scattered noise label.
const LABELS: [u64; 6] = [7, WIDE, 3, 9, 11, 5123];

/// A server with the mixed fixture written to instance "seg" (MaxDownresLevel 2).
fn setup() -> (Server, String, Volume) {
    let srv = Server::start();
    let root = srv.create_repo("sparsevol");
    let vol = mixed_fixture();
    Seg::create(&srv, &root, "seg", &standard_settings(2)).write(&vol);
    (srv, root, vol)
}

fn seg<'a>(srv: &'a Server, root: &str) -> Seg<'a> {
    Seg::open(srv, root, "seg")
}

#[track_caller]
fn rles(r: &Response) -> VoxelSet {
    rles_voxels(&r.body).unwrap_or_else(|e| panic!("{}: {e}", r.what))
}

/// Summarises a set difference for assertion messages.
fn diff(got: &VoxelSet, want: &VoxelSet) -> String {
    let extra: Vec<_> = got.difference(want).take(5).collect();
    let missing: Vec<_> = want.difference(got).take(5).collect();
    format!(
        "got {} voxels, want {}; extra {extra:?}, missing {missing:?}",
        got.len(),
        want.len()
    )
}

#[test]
fn sparsevol_formats_match_voxel_sets() {
    let (srv, root, vol) = setup();
    let seg = seg(&srv, &root);
    for l in LABELS {
        let want = vol.voxel_set(l);
        assert!(!want.is_empty());
        for q in ["", "?format=rles", "?supervoxels=true"] {
            let got = rles(&seg.get(&format!("sparsevol/{l}{q}")).expect(200));
            assert!(got == want, "sparsevol/{l}{q}: {}", diff(&got, &want));
        }
        let r = seg.get(&format!("sparsevol/{l}?format=srles")).expect(200);
        let got = srles_voxels(&r.body).unwrap_or_else(|e| panic!("{}: {e}", r.what));
        assert!(got == want, "srles {l}: {}", diff(&got, &want));
        let r = seg.get(&format!("sparsevol/{l}?format=blocks")).expect(200);
        let (label, got) = blocks_voxels(&r.body).unwrap_or_else(|e| panic!("{}: {e}", r.what));
        assert_eq!(label, l, "blocks format header label");
        assert_eq!(
            &r.body[..12],
            &[8, 0, 0, 0, 8, 0, 0, 0, 8, 0, 0, 0],
            "sub-blocks per block"
        );
        assert!(got == want, "blocks {l}: {}", diff(&got, &want));
    }
}

#[test]
fn sparsevol_compression() {
    let (srv, root, vol) = setup();
    let seg = seg(&srv, &root);
    for l in [7, WIDE, 9] {
        let want = vol.voxel_set(l);
        let r = seg
            .get(&format!("sparsevol/{l}?compression=lz4"))
            .expect(200);
        let bytes = lz4_decompress_max(&r.body, 12 + 16 * want.len())
            .unwrap_or_else(|e| panic!("{}: not a raw LZ4 block: {e}", r.what));
        let got = rles_voxels(&bytes).unwrap_or_else(|e| panic!("{}: {e}", r.what));
        assert!(got == want, "lz4 {l}: {}", diff(&got, &want));
        let r = seg
            .get(&format!("sparsevol/{l}?compression=gzip"))
            .expect(200);
        let bytes = gunzip(&r.body).unwrap_or_else(|e| panic!("{}: {e}", r.what));
        let got = rles_voxels(&bytes).unwrap_or_else(|e| panic!("{}: {e}", r.what));
        assert!(got == want, "gzip {l}: {}", diff(&got, &want));
    }
}

#[test]
fn sparsevol_bounds_clip_exactly() {
    let (srv, root, vol) = setup();
    let seg = seg(&srv, &root);
    let cases: [(u64, [Option<i32>; 6]); 6] = [
        (7, [Some(30), Some(50), None, None, None, None]),
        (
            7,
            [Some(20), Some(60), Some(35), Some(70), Some(10), Some(41)],
        ),
        (7, [None, None, None, None, Some(64), None]),
        (
            7,
            [Some(17), Some(17), Some(40), Some(40), Some(40), Some(40)],
        ),
        (WIDE, [None, Some(63), Some(64), None, None, Some(100)]),
        (
            5123,
            [Some(70), Some(120), Some(65), Some(127), Some(64), Some(90)],
        ),
    ];
    let names = ["minx", "maxx", "miny", "maxy", "minz", "maxz"];
    for (l, b) in cases {
        let q: Vec<String> = names
            .iter()
            .zip(b)
            .filter_map(|(n, v)| v.map(|v| format!("{n}={v}")))
            .collect();
        let q = q.join("&");
        let inside = |p: &Coord| {
            (0..3).all(|a| {
                b[2 * a].is_none_or(|lo| p[a] >= lo) && b[2 * a + 1].is_none_or(|hi| p[a] <= hi)
            })
        };
        let want: VoxelSet = vol.voxel_set(l).into_iter().filter(inside).collect();
        assert!(!want.is_empty(), "case {l} {q} should keep voxels");
        let got = rles(&seg.get(&format!("sparsevol/{l}?{q}")).expect(200));
        assert!(got == want, "sparsevol/{l}?{q}: {}", diff(&got, &want));
        let r = seg
            .get(&format!("sparsevol/{l}?format=srles&{q}"))
            .expect(200);
        let got = srles_voxels(&r.body).unwrap_or_else(|e| panic!("{}: {e}", r.what));
        assert!(got == want, "srles {l}?{q}: {}", diff(&got, &want));
    }
    // no block of the label intersects the bounds → 404
    seg.get("sparsevol/7?minx=200").expect(404);
    seg.get("sparsevol/9?maxx=63").expect(404);
    // blocks intersect but no voxel survives: DVID answers an empty 200; a 404 is accepted
    let r = seg.get("sparsevol/9?minx=64&maxx=100");
    match r.status {
        200 => assert!(
            r.body.is_empty() || rles(&r).is_empty(),
            "{}: clipped to nothing but returned voxels",
            r.what
        ),
        404 => {}
        s => panic!("{}: expected 200 (empty) or 404, got {s}", r.what),
    }
}

#[test]
fn missing_sparsevol_and_head() {
    let (srv, root, _) = setup();
    let seg = seg(&srv, &root);
    seg.get(&format!("sparsevol/{MISSING}")).expect(404);
    seg.get(&format!("sparsevol/{MISSING}?format=blocks"))
        .expect(404);
    seg.head("sparsevol/7").expect(200);
    seg.head(&format!("sparsevol/{WIDE}")).expect(200);
    seg.head(&format!("sparsevol/{MISSING}")).expect(204);
    seg.head("sparsevol/7?minx=1000").expect(204);
    seg.head("sparsevol/7?minx=0&maxx=70&minz=20").expect(200);
    seg.head("sparsevol/7?supervoxels=true").expect(200);
}

#[test]
fn sparsevol_by_point() {
    let (srv, root, vol) = setup();
    let seg = seg(&srv, &root);
    let noisy = vol
        .voxels()
        .find(|&(p, l)| l != 0 && p.iter().all(|&c| c >= 80))
        .expect("a labelled voxel in the noisy block")
        .0;
    for p in [
        [40, 40, 40],
        [127, 0, 0],
        [60, 60, 40],
        noisy,
        [3, 120, 120],
    ] {
        let l = vol.get(p);
        assert_ne!(l, 0, "fixture sanity at {p:?}");
        let got = rles(
            &seg.get(&format!("sparsevol-by-point/{}_{}_{}", p[0], p[1], p[2]))
                .expect(200),
        );
        let want = vol.voxel_set(l);
        assert!(
            got == want,
            "sparsevol-by-point {p:?} (label {l}): {}",
            diff(&got, &want)
        );
    }
    seg.get("sparsevol-by-point/0_0_0").expect(400);
}

#[test]
fn sparsevol_coarse_and_sparsevols_coarse() {
    let (srv, root, vol) = setup();
    let seg = seg(&srv, &root);
    let per_block = vol.block_counts(seg.bs);
    let blocks_of = |l: u64| -> VoxelSet { per_block[&l].keys().copied().collect() };
    for l in LABELS {
        for q in ["", "?supervoxels=true"] {
            let r = seg.get(&format!("sparsevol-coarse/{l}{q}")).expect(200);
            let got = coarse_rles(&r.body).unwrap_or_else(|e| panic!("{}: {e}", r.what));
            assert_eq!(
                got,
                blocks_of(l),
                "sparsevol-coarse/{l}{q} (block coordinates)"
            );
        }
    }
    assert_eq!(blocks_of(9), VoxelSet::from([[1, 0, 0]]));
    seg.get(&format!("sparsevol-coarse/{MISSING}")).expect(404);

    // inclusive label range; per label its block runs
    let r = seg.get("sparsevols-coarse/3/11").expect(200);
    let recs = sparsevols_coarse(&r.body).unwrap_or_else(|e| panic!("{}: {e}", r.what));
    let got: BTreeMap<u64, VoxelSet> = recs.iter().cloned().collect();
    assert_eq!(recs.len(), got.len(), "a label listed twice");
    let want: BTreeMap<u64, VoxelSet> = [3, 7, 9, 11]
        .into_iter()
        .map(|l| (l, blocks_of(l)))
        .collect();
    assert_eq!(got, want, "sparsevols-coarse/3/11");
    let r = seg.get("sparsevols-coarse/5000/5009").expect(200);
    let got: BTreeMap<u64, VoxelSet> = sparsevols_coarse(&r.body)
        .unwrap_or_else(|e| panic!("{}: {e}", r.what))
        .into_iter()
        .collect();
    let want: BTreeMap<u64, VoxelSet> = (5000..=5009).map(|l| (l, blocks_of(l))).collect();
    assert_eq!(got, want, "sparsevols-coarse/5000/5009");
}

#[test]
fn sparsevol_at_lower_scales() {
    let (srv, root, vol) = setup();
    let seg = seg(&srv, &root);
    let levels = pyramid(&vol, 2);
    for (s, level) in levels.iter().enumerate().skip(1) {
        for l in [7, WIDE, 3] {
            let want = level.voxel_set(l);
            assert!(!want.is_empty(), "label {l} survives scale {s}");
            let got = rles(&seg.get(&format!("sparsevol/{l}?scale={s}")).expect(200));
            assert!(
                got == want,
                "sparsevol/{l}?scale={s}: {}",
                diff(&got, &want)
            );
        }
    }
    seg.get("sparsevol/7?scale=3").expect(400);
}

#[test]
fn sparsevols_follow_overwrites() {
    let (srv, root, mut vol) = setup();
    let seg = seg(&srv, &root);
    // the ball's block (0,0,0) is replaced: label 7 keeps only its voxels outside that block
    let b = Volume::from_fn(
        [0; 3],
        [64; 3],
        |x, y, z| if x + y + z < 20 { 3 } else { 0 },
    );
    seg.write(&b);
    vol.paste(&b);
    for l in [7, 3, WIDE] {
        let want = vol.voxel_set(l);
        let got = rles(&seg.get(&format!("sparsevol/{l}")).expect(200));
        assert!(
            got == want,
            "sparsevol/{l} after overwrite: {}",
            diff(&got, &want)
        );
        let r = seg.get(&format!("sparsevol-coarse/{l}")).expect(200);
        let got = coarse_rles(&r.body).unwrap_or_else(|e| panic!("{}: {e}", r.what));
        let want: VoxelSet = vol.block_counts(seg.bs)[&l].keys().copied().collect();
        assert_eq!(got, want, "sparsevol-coarse/{l} after overwrite");
    }
    // label 9 vanishes when its block is zeroed except for another label
    let b = Volume::from_fn([64, 0, 0], [64; 3], |x, _, _| if x == 64 { 3 } else { 0 });
    seg.write(&b);
    seg.get("sparsevol/9").expect(404);
    seg.head("sparsevol/9").expect(204);
    seg.get("sparsevol-coarse/9").expect(404);
}

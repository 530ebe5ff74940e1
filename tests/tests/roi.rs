//! roi datatype (spec §4.6) and `roi=` masking of image and label reads and writes (§4.1,
//! §4.2): spans round trip normalized, POST replaces, DELETE, versions, ptquery (also on a
//! committed node), mask and masked reads against an independent computation, DVID's simple
//! partition, attenuation, and bad input refused with nothing written.

use tessera_tests::*;

fn url(uuid: &str, rest: &str) -> String {
    format!("/api/node/{uuid}/{rest}")
}

fn setup() -> (Server, String) {
    let srv = Server::start();
    let root = srv.create_repo("roitest");
    srv.create_instance_with(&root, "roi", "r", &json!({"BlockSize": "16,16,16"}));
    (srv, root)
}

fn spans(srv: &Server, uuid: &str) -> Value {
    srv.get(&url(uuid, "r/roi")).expect(200).json()
}

/// The test's own membership: is voxel p in one of `spans` (block size 16)?
fn inside(spans: &[[i64; 4]], p: [i64; 3]) -> bool {
    let b = p.map(|c| c.div_euclid(16));
    spans
        .iter()
        .any(|s| s[0] == b[2] && s[1] == b[1] && s[2] <= b[0] && b[0] <= s[3])
}

const ROI: [[i64; 4]; 3] = [[0, 0, 0, 0], [0, 1, 1, 2], [1, 0, -1, 0]];

#[test]
fn spans_round_trip_normalized_and_post_replaces() {
    let (srv, root) = setup();
    assert_eq!(spans(&srv, &root), json!([]));
    srv.post(
        &url(&root, "r/roi"),
        "[[1,0,3,4],[0,2,4,7],[0,2,1,3],[0,2,8,8],[0,1,9,9]]",
    )
    .expect(200);
    assert_eq!(
        spans(&srv, &root),
        json!([[0, 1, 9, 9], [0, 2, 1, 8], [1, 0, 3, 4]])
    );
    // DVID's POST replaces the ROI at this version.
    srv.post(&url(&root, "r/roi"), "[[5,5,5,5]]").expect(200);
    assert_eq!(spans(&srv, &root), json!([[5, 5, 5, 5]]));
    srv.delete(&url(&root, "r/roi")).expect(200);
    assert_eq!(spans(&srv, &root), json!([]));
}

#[test]
fn versions_keep_their_own_roi() {
    let (srv, root) = setup();
    srv.post(&url(&root, "r/roi"), "[[0,0,0,1]]").expect(200);
    srv.commit(&root);
    let child = srv.branch(&root, "edit");
    assert_eq!(spans(&srv, &child), json!([[0, 0, 0, 1]]));
    srv.post(&url(&child, "r/roi"), "[[2,2,2,2]]").expect(200);
    assert_eq!(spans(&srv, &child), json!([[2, 2, 2, 2]]));
    assert_eq!(spans(&srv, &root), json!([[0, 0, 0, 1]]));
    srv.delete(&url(&child, "r/roi")).expect(200);
    assert_eq!(spans(&srv, &child), json!([]));
    assert_eq!(spans(&srv, &root), json!([[0, 0, 0, 1]]));
    // The committed root refuses writes but answers ptquery.
    srv.post(&url(&root, "r/roi"), "[[9,9,9,9]]").expect_4xx();
    let r = srv
        .post(
            &url(&root, "r/ptquery"),
            "[[0,0,0],[31,15,15],[32,0,0],[-1,0,0]]",
        )
        .expect(200);
    assert_eq!(r.json(), json!([true, true, false, false]));
}

#[test]
fn ptquery_and_mask_match_an_independent_computation() {
    let (srv, root) = setup();
    srv.post(&url(&root, "r/roi"), serde_json::to_vec(&ROI).unwrap())
        .expect(200);
    let pts: Vec<[i64; 3]> = (-20i64..50)
        .step_by(7)
        .flat_map(|x| {
            (-5..40)
                .step_by(9)
                .map(move |y| [x, y, (x + y).rem_euclid(40) - 4])
        })
        .collect();
    let got = srv
        .post(&url(&root, "r/ptquery"), serde_json::to_vec(&pts).unwrap())
        .expect(200)
        .json();
    let want: Vec<bool> = pts.iter().map(|p| inside(&ROI, *p)).collect();
    assert_eq!(got, json!(want));

    let (size, at) = ([45usize, 37, 35], [-20i64, -3, -2]);
    let mask = srv
        .get(&url(&root, "r/mask/0_1_2/45_37_35/-20_-3_-2"))
        .expect(200)
        .body;
    assert_eq!(mask.len(), size.iter().product::<usize>());
    let mut i = 0;
    for z in 0..size[2] as i64 {
        for y in 0..size[1] as i64 {
            for x in 0..size[0] as i64 {
                let p = [at[0] + x, at[1] + y, at[2] + z];
                assert_eq!(mask[i] == 1, inside(&ROI, p), "{p:?}");
                assert!(mask[i] <= 1);
                i += 1;
            }
        }
    }
}

#[test]
fn partition_has_dvids_shape() {
    let (srv, root) = setup();
    srv.post(&url(&root, "r/roi"), "[[0,0,1,3],[1,1,2,2]]")
        .expect(200);
    let p = srv
        .get(&url(&root, "r/partition?batchsize=2"))
        .expect(200)
        .json();
    assert_eq!(
        p,
        json!({
            "NumTotalBlocks": 16,
            "NumActiveBlocks": 4,
            "NumSubvolumes": 2,
            "ROI": {"MinChunk": [0, 0, 0], "MaxChunk": [3, 1, 1]},
            "Subvolumes": [
                {"MinPoint": [16, 0, 0], "MaxPoint": [47, 31, 31],
                 "MinChunk": [1, 0, 0], "MaxChunk": [2, 1, 1],
                 "TotalBlocks": 8, "ActiveBlocks": 3},
                {"MinPoint": [48, 0, 0], "MaxPoint": [79, 31, 31],
                 "MinChunk": [3, 0, 0], "MaxChunk": [4, 1, 1],
                 "TotalBlocks": 8, "ActiveBlocks": 1},
            ]
        })
    );
    srv.get(&url(&root, "r/partition")).expect(400);
    srv.get(&url(&root, "r/partition?batchsize=0")).expect(400);
}

#[test]
fn bad_spans_are_refused_and_write_nothing() {
    let (srv, root) = setup();
    srv.post(&url(&root, "r/roi"), "[[0,0,0,1]]").expect(200);
    for bad in [
        "[[0,0,2,1]]",
        "[[0,0,1.5,2]]",
        "[[0,0,1]]",
        "[[0,0,0,\"1\"]]",
        "[[0,0,0,99999999]]",
        "{\"a\":1}",
        "not json",
        "[[1,1,1,1],[0,0,3,2]]",
    ] {
        srv.post(&url(&root, "r/roi"), bad).expect(400);
    }
    assert_eq!(spans(&srv, &root), json!([[0, 0, 0, 1]]));
    srv.post(&url(&root, "r/ptquery"), "[[0,0]]").expect(400);
    srv.get(&url(&root, "r/mask/0_1/10_10/0_0_0")).expect(400);
}

fn gray(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8 + 1).collect()
}

/// The test's own masking of a volume at `at` of `size`.
fn masked<T: Copy>(v: &[T], at: [i64; 3], size: [usize; 3], out: impl Fn(T) -> T) -> Vec<T> {
    let mut i = 0;
    let mut r = Vec::with_capacity(v.len());
    for z in 0..size[2] as i64 {
        for y in 0..size[1] as i64 {
            for x in 0..size[0] as i64 {
                let p = [at[0] + x, at[1] + y, at[2] + z];
                r.push(if inside(&ROI, p) { v[i] } else { out(v[i]) });
                i += 1;
            }
        }
    }
    r
}

#[test]
fn uint8_reads_mask_attenuate_and_posts_write_inside_only() {
    let (srv, root) = setup();
    srv.post(&url(&root, "r/roi"), serde_json::to_vec(&ROI).unwrap())
        .expect(200);
    srv.create_instance_with(&root, "uint8blk", "img", &json!({"BlockSize": "16,16,16"}));
    let size = [48usize, 32, 32];
    let at = [-16i64, 0, 0];
    let vol = gray(size.iter().product());
    srv.post(&url(&root, "img/raw/0_1_2/48_32_32/-16_0_0"), vol.clone())
        .expect(200);
    let plain = srv
        .get(&url(&root, "img/raw/0_1_2/48_32_32/-16_0_0"))
        .expect(200)
        .body;
    assert_eq!(plain, vol);
    let got = srv
        .get(&url(&root, "img/raw/0_1_2/48_32_32/-16_0_0?roi=r"))
        .expect(200)
        .body;
    assert_eq!(got, masked(&vol, at, size, |_| 0));
    let got = srv
        .get(&url(
            &root,
            "img/raw/0_1_2/48_32_32/-16_0_0?roi=r&attenuation=2",
        ))
        .expect(200)
        .body;
    assert_eq!(got, masked(&vol, at, size, |v| v >> 2));
    // Unaligned read too.
    let got = srv
        .get(&url(&root, "img/raw/0_1_2/20_10_30/-3_9_1?roi=r"))
        .expect(200)
        .body;
    let sub = srv
        .get(&url(&root, "img/raw/0_1_2/20_10_30/-3_9_1"))
        .expect(200)
        .body;
    assert_eq!(got, masked(&sub, [-3, 9, 1], [20, 10, 30], |_| 0));

    // POST raw?roi= writes only the voxels inside; outside keep what was stored.
    let new: Vec<u8> = vec![250; vol.len()];
    srv.post(&url(&root, "img/raw/0_1_2/48_32_32/-16_0_0?roi=r"), new)
        .expect(200);
    let after = srv
        .get(&url(&root, "img/raw/0_1_2/48_32_32/-16_0_0"))
        .expect(200)
        .body;
    let mut i = 0;
    for z in 0..32i64 {
        for y in 0..32i64 {
            for x in 0..48i64 {
                let p = [x - 16, y, z];
                let want = if inside(&ROI, p) { 250 } else { vol[i] };
                assert_eq!(after[i], want, "{p:?}");
                i += 1;
            }
        }
    }

    srv.get(&url(&root, "img/raw/0_1_2/8_8_8/0_0_0?roi=nosuch"))
        .expect(400);
    let r = srv.get(&url(&root, "img/raw/0_1_2/8_8_8/0_0_0?roi=nosuch"));
    assert!(r.text().contains("nosuch"), "{}", r.text());
    srv.get(&url(&root, "img/raw/0_1_2/8_8_8/0_0_0?roi=r&attenuation=9"))
        .expect(400);
    srv.get(&url(&root, "img/raw/0_1_2/8_8_8/0_0_0?attenuation=2"))
        .expect(400);
}

#[test]
fn labelmap_reads_mask_outside_voxels() {
    let (srv, root) = setup();
    srv.post(&url(&root, "r/roi"), serde_json::to_vec(&ROI).unwrap())
        .expect(200);
    srv.create_instance(&root, "labelmap", "seg");
    let size = [64usize, 64, 64];
    let labels: Vec<u64> = (0..size.iter().product::<usize>())
        .map(|i| (i / 1000) as u64 + 1)
        .collect();
    let bytes: Vec<u8> = labels.iter().flat_map(|l| l.to_le_bytes()).collect();
    srv.post(&url(&root, "seg/raw/0_1_2/64_64_64/-64_0_0"), bytes)
        .expect(200);
    let got = srv
        .get(&url(&root, "seg/raw/0_1_2/64_64_64/-64_0_0?roi=r"))
        .expect(200)
        .body;
    let got: Vec<u64> = got
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(got, masked(&labels, [-64, 0, 0], size, |_| 0));
    srv.get(&url(&root, "seg/raw/0_1_2/8_8_8/0_0_0?roi=nosuch"))
        .expect(400);
}

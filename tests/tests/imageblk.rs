//! The voxel-array datatypes (spec §4.2): uint8blk and its siblings through one generic
//! implementation. Volumes round-trip at negative and unaligned boxes, unwritten space reads
//! as zeros, 2-D PNG and JPEG slices, the block endpoints (records, spans, JPEG passed through
//! and decoded by an independent decoder), metadata/extents/resolution/rawkey, versioned
//! writes, and bad input refused with nothing written.

use tessera_tests::*;

/// A deterministic smooth-ish image (EM-like: JPEG keeps it close).
fn gray(size: [usize; 3], seed: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(size.iter().product());
    for z in 0..size[2] {
        for y in 0..size[1] {
            for x in 0..size[0] {
                v.push(((x * 3 + y * 2 + z + seed) % 200 + 20) as u8);
            }
        }
    }
    v
}

fn raw_path(inst: &str, size: [usize; 3], at: [i64; 3]) -> String {
    format!(
        "{inst}/raw/0_1_2/{}_{}_{}/{}_{}_{}",
        size[0], size[1], size[2], at[0], at[1], at[2]
    )
}

fn setup(typename: &str, settings: Value) -> (Server, String) {
    let srv = Server::start();
    let root = srv.create_repo("images");
    srv.create_instance_with(&root, typename, "img", &settings);
    (srv, root)
}

/// The region `at`+`size` of a volume `vsize` placed at `vat`, zeros outside it.
fn region(
    vol: &[u8],
    vat: [i64; 3],
    vsize: [usize; 3],
    at: [i64; 3],
    size: [usize; 3],
    bpv: usize,
) -> Vec<u8> {
    let mut out = vec![0u8; size.iter().product::<usize>() * bpv];
    for z in 0..size[2] {
        for y in 0..size[1] {
            for x in 0..size[0] {
                let p = [at[0] + x as i64, at[1] + y as i64, at[2] + z as i64];
                let inside = (0..3).all(|a| p[a] >= vat[a] && p[a] < vat[a] + vsize[a] as i64);
                if inside {
                    let l: Vec<usize> = (0..3).map(|a| (p[a] - vat[a]) as usize).collect();
                    let src = ((l[2] * vsize[1] + l[1]) * vsize[0] + l[0]) * bpv;
                    let dst = ((z * size[1] + y) * size[0] + x) * bpv;
                    out[dst..dst + bpv].copy_from_slice(&vol[src..src + bpv]);
                }
            }
        }
    }
    out
}

fn psnr(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    let mse: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    10.0 * (255.0f64 * 255.0 / mse.max(1e-9)).log10()
}

/// Two JPEG decoders may differ by a rounding step (their IDCTs differ); more is a bug.
#[track_caller]
fn same_decode(a: &[u8], b: &[u8]) {
    assert_eq!(a.len(), b.len());
    let worst = a
        .iter()
        .zip(b)
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0);
    assert!(worst <= 2, "decoders disagree by up to {worst}");
}

fn decode_jpeg(bytes: &[u8]) -> (usize, usize, Vec<u8>) {
    let mut d = jpeg_decoder::Decoder::new(bytes);
    let px = d.decode().expect("an independent decoder reads the JPEG");
    let info = d.info().unwrap();
    (info.width as usize, info.height as usize, px)
}

/// (coord, payload) of a record stream.
fn records(body: &[u8]) -> Vec<([i32; 3], Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < body.len() {
        let int =
            |i: usize| i32::from_le_bytes(body[at + 4 * i..at + 4 * i + 4].try_into().unwrap());
        let n = int(3) as usize;
        out.push((
            [int(0), int(1), int(2)],
            body[at + 16..at + 16 + n].to_vec(),
        ));
        at += 16 + n;
    }
    out
}

#[test]
fn uint8_volumes_round_trip_at_negative_and_unaligned_boxes() {
    let (srv, root) = setup("uint8blk", json!({"BlockSize": "32,32,32"}));
    let info = srv
        .get(&format!("/api/node/{root}/img/info"))
        .expect(200)
        .json();
    assert_eq!(info["Base"]["TypeName"], "uint8blk");
    assert_eq!(info["Extended"]["BlockSize"], json!([32, 32, 32]));
    assert_eq!(info["Extended"]["Values"][0]["DataType"], "uint8");
    assert_eq!(info["Extended"]["MinPoint"], Value::Null);
    let (at, size) = ([-32i64, 0, 32], [64usize, 32, 64]);
    let vol = gray(size, 0);
    srv.post(
        &format!("/api/node/{root}/{}", raw_path("img", size, at)),
        vol.clone(),
    )
    .expect(200);
    // The same box back, then an unaligned box straddling written and unwritten space.
    let got = srv
        .get(&format!("/api/node/{root}/{}", raw_path("img", size, at)))
        .expect(200);
    assert_eq!(got.body, vol);
    let (qat, qsize) = ([-40i64, 5, 20], [50usize, 40, 30]);
    let got = srv
        .get(&format!("/api/node/{root}/{}", raw_path("img", qsize, qat)))
        .expect(200);
    assert_eq!(got.body, region(&vol, at, size, qat, qsize, 1));
    // libdvid/dvision append /nD; gzip and lz4 reads are the same voxels.
    let nd = srv
        .get(&format!(
            "/api/node/{root}/{}/nD",
            raw_path("img", qsize, qat)
        ))
        .expect(200);
    assert_eq!(nd.body, got.body);
    let lz = srv
        .get(&format!(
            "/api/node/{root}/{}?compression=lz4",
            raw_path("img", qsize, qat)
        ))
        .expect(200);
    assert_eq!(
        lz4_flex::block::decompress(&lz.body, got.body.len()).unwrap(),
        got.body
    );
    let info = srv
        .get(&format!("/api/node/{root}/img/info"))
        .expect(200)
        .json();
    assert_eq!(info["Extended"]["MinPoint"], json!([-32, 0, 32]));
    assert_eq!(info["Extended"]["MaxPoint"], json!([31, 31, 95]));
    // Unwritten space reads as zeros.
    let far = srv
        .get(&format!(
            "/api/node/{root}/{}",
            raw_path("img", [8, 8, 8], [1000, 1000, 1000])
        ))
        .expect(200);
    assert_eq!(far.body, vec![0u8; 512]);
}

#[test]
fn every_voxel_type_round_trips_through_the_same_code() {
    for (typename, bpv) in [
        ("uint16blk", 2),
        ("uint32blk", 4),
        ("uint64blk", 8),
        ("float32blk", 4),
        ("rgba8blk", 4),
    ] {
        let (srv, root) = setup(typename, json!({"BlockSize": "16,16,16"}));
        let size = [32usize, 16, 16];
        let vol: Vec<u8> = (0..size.iter().product::<usize>() * bpv)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        srv.post(
            &format!("/api/node/{root}/{}", raw_path("img", size, [16, 0, -16])),
            vol.clone(),
        )
        .expect(200);
        let (qat, qsize) = ([10i64, 3, -20], [30usize, 9, 12]);
        let got = srv
            .get(&format!("/api/node/{root}/{}", raw_path("img", qsize, qat)))
            .expect(200);
        assert_eq!(
            got.body,
            region(&vol, [16, 0, -16], size, qat, qsize, bpv),
            "{typename}"
        );
        // Wrong length for this type → 400.
        srv.post(
            &format!(
                "/api/node/{root}/{}",
                raw_path("img", [16, 16, 16], [0, 0, 0])
            ),
            vec![0u8; 4096],
        )
        .expect_4xx();
        // PNG slices for every type; JPEG only where it keeps the values' meaning.
        let png = srv
            .get(&format!("/api/node/{root}/img/raw/xy/30_9/10_3_-20/png"))
            .expect(200);
        assert_eq!(&png.body[1..4], b"PNG", "{typename}");
        let jpg = srv.get(&format!("/api/node/{root}/img/raw/xy/30_9/10_3_-20/jpg"));
        assert_eq!(
            jpg.status == 200,
            typename == "rgba8blk",
            "{typename}: {}",
            jpg.text()
        );
        // JPEG storage is for grayscale only.
        let e = srv.post_json(
            &format!("/api/repo/{root}/instance"),
            &json!({"typename": typename, "dataname": "j", "Compression": "jpeg"}),
        );
        assert_eq!(e.status, 400, "{typename}");
    }
}

#[test]
fn uint16_png_slices_read_back_as_values() {
    let (srv, root) = setup("uint16blk", json!({"BlockSize": "16,16,16"}));
    let vals: Vec<u16> = (0..16 * 16 * 16).map(|i| (i * 97 % 65536) as u16).collect();
    let bytes: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
    srv.post(
        &format!(
            "/api/node/{root}/{}",
            raw_path("img", [16, 16, 16], [0, 0, 0])
        ),
        bytes,
    )
    .expect(200);
    let png = srv
        .get(&format!("/api/node/{root}/img/raw/xz/16_16/0_3_0"))
        .expect(200);
    let dec = png::Decoder::new(std::io::Cursor::new(png.body));
    let mut r = dec.read_info().unwrap();
    let mut buf = vec![0u8; r.output_buffer_size().unwrap()];
    let frame = r.next_frame(&mut buf).unwrap();
    assert_eq!((frame.width, frame.height), (16, 16));
    assert_eq!(frame.bit_depth, png::BitDepth::Sixteen);
    for z in 0..16 {
        for x in 0..16 {
            let at = (z * 16 + x) * 2;
            let v = u16::from_be_bytes([buf[at], buf[at + 1]]);
            assert_eq!(v, vals[(z * 16 + 3) * 16 + x]);
        }
    }
}

#[test]
fn jpeg_storage_serves_neuroglancers_requests_within_a_stated_error() {
    let (srv, root) = setup("uint8blk", json!({"Compression": "jpeg:90"}));
    let info = srv
        .get(&format!("/api/node/{root}/img/info"))
        .expect(200)
        .json();
    assert!(
        info["Base"]["Compression"]
            .as_str()
            .unwrap()
            .contains("jpeg")
    );
    let size = [128usize, 64, 64];
    let vol = gray(size, 5);
    srv.post(
        &format!("/api/node/{root}/{}", raw_path("img", size, [0, 0, 0])),
        vol.clone(),
    )
    .expect(200);
    let back = srv
        .get(&format!(
            "/api/node/{root}/{}",
            raw_path("img", size, [0, 0, 0])
        ))
        .expect(200);
    let p = psnr(&back.body, &vol);
    assert!(
        p > 30.0,
        "JPEG at quality 90 reads back at {p:.1} dB PSNR, want > 30"
    );
    // Neuroglancer: one 64³ block, drops the 16-byte header, decodes 64 × 4096 gray pixels.
    let r = srv
        .get(&format!(
            "/api/node/{root}/img/subvolblocks/64_64_64/64_0_0?app=Neuroglancer"
        ))
        .expect(200);
    let (w, h, px) = decode_jpeg(&r.body[16..]);
    assert_eq!((w, h), (64, 4096));
    same_decode(
        &px,
        &region(&back.body, [0; 3], size, [64, 0, 0], [64, 64, 64], 1),
    );
    assert_eq!(records(&r.body)[0].0, [1, 0, 0]);
    // A never-written block: an empty 200.
    let empty = srv
        .get(&format!(
            "/api/node/{root}/img/subvolblocks/64_64_64/0_0_640"
        ))
        .expect(200);
    assert!(empty.body.is_empty());
    // Uncompressed records and specificblocks give the decoded voxels.
    let recs = records(
        &srv.get(&format!(
            "/api/node/{root}/img/subvolblocks/128_64_64/0_0_0?compression=uncompressed"
        ))
        .expect(200)
        .body,
    );
    assert_eq!(recs.len(), 2);
    same_decode(&recs[1].1, &px);
    let spec = records(
        &srv.get(&format!(
            "/api/node/{root}/img/specificblocks?blocks=1,0,0,5,5,5,0,0,0"
        ))
        .expect(200)
        .body,
    );
    assert_eq!(
        spec.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![[1, 0, 0], [0, 0, 0]]
    );
    assert_eq!(
        decode_jpeg(&spec[0].1).2,
        px,
        "the stored JPEG, passed through"
    );
    // Neuroglancer's other path: a volume as one JPEG.
    let j = srv
        .get(&format!(
            "/api/node/{root}/img/raw/0_1_2/64_64_64/64_0_0/jpeg?app=Neuroglancer"
        ))
        .expect(200);
    let (w, h, vpx) = decode_jpeg(&j.body);
    assert_eq!((w, h), (64, 4096));
    assert!(psnr(&vpx, &px) > 30.0);
    // 2-D JPEG with a quality; out of range → 400.
    let slice = srv
        .get(&format!(
            "/api/node/{root}/img/raw/xy/100_50/3_4_5/jpg?quality=95"
        ))
        .expect(200);
    let (w, h, spx) = decode_jpeg(&slice.body);
    assert_eq!((w, h), (100, 50));
    assert!(
        psnr(
            &spx,
            &region(&vol, [0; 3], size, [3, 4, 5], [100, 50, 1], 1)
        ) > 30.0
    );
    srv.get(&format!(
        "/api/node/{root}/img/raw/xy/100_50/3_4_5/jpg?quality=0"
    ))
    .expect_4xx();
    srv.get(&format!("/api/node/{root}/img/raw/xy/100_50/3_4_5/jpg:101"))
        .expect_4xx();
    srv.get(&format!("/api/node/{root}/img/raw/xy/100_50/3_4_5/gif"))
        .expect_4xx();
}

#[test]
fn block_spans_metadata_and_keys() {
    let (srv, root) = setup(
        "uint8blk",
        json!({"BlockSize": "16,16,16", "VoxelSize": "4,4,40"}),
    );
    let blocks = gray([48, 16, 16], 9);
    // Three blocks along x as three concatenated block arrays.
    let mut body = Vec::new();
    for i in 0..3 {
        body.extend(region(
            &blocks,
            [0; 3],
            [48, 16, 16],
            [16 * i, 0, 0],
            [16, 16, 16],
            1,
        ));
    }
    srv.post(
        &format!("/api/node/{root}/img/blocks/-1_2_0/3"),
        body.clone(),
    )
    .expect(200);
    let got = srv
        .get(&format!("/api/node/{root}/img/blocks/-2_2_0/5"))
        .expect(200);
    assert_eq!(got.body.len(), 5 * 4096);
    assert_eq!(&got.body[..4096], &[0u8; 4096][..]);
    assert_eq!(&got.body[4096..4 * 4096], &body[..]);
    let vol = srv
        .get(&format!(
            "/api/node/{root}/{}",
            raw_path("img", [48, 16, 16], [-16, 32, 0])
        ))
        .expect(200);
    assert_eq!(vol.body, blocks);
    srv.post(
        &format!("/api/node/{root}/img/blocks/0_0_0/2"),
        vec![0u8; 4096],
    )
    .expect_4xx();
    srv.get(&format!("/api/node/{root}/img/blocks/0_0_0/0"))
        .expect_4xx();

    let md = srv
        .get(&format!("/api/node/{root}/img/metadata"))
        .expect(200);
    assert_eq!(
        md.header("content-type").unwrap(),
        "application/vnd.dvid-nd-data+json"
    );
    let md = md.json();
    assert_eq!(md["Axes"][0]["Offset"], -16);
    assert_eq!(md["Axes"][0]["Size"], 48);
    assert_eq!(md["Axes"][2]["Resolution"], 40.0);
    srv.post(&format!("/api/node/{root}/img/resolution"), "[8, 8, 30]")
        .expect(200);
    let info = srv
        .get(&format!("/api/node/{root}/img/info"))
        .expect(200)
        .json();
    assert_eq!(info["Extended"]["VoxelSize"], json!([8.0, 8.0, 30.0]));
    srv.post(&format!("/api/node/{root}/img/resolution"), "[8, -1, 30]")
        .expect_4xx();
    srv.post(
        &format!("/api/node/{root}/img/extents"),
        r#"{"MinPoint":[-100,0,0],"MaxPoint":[500,600,700]}"#,
    )
    .expect(200);
    let info = srv
        .get(&format!("/api/node/{root}/img/info"))
        .expect(200)
        .json();
    assert_eq!(info["Extended"]["MinPoint"], json!([-100, 0, 0]));
    assert_eq!(info["Extended"]["MaxPoint"], json!([500, 600, 700]));
    srv.post(
        &format!("/api/node/{root}/img/extents"),
        r#"{"MinPoint":[5,0,0],"MaxPoint":[1,1,1]}"#,
    )
    .expect_4xx();
    let k = srv
        .get(&format!("/api/node/{root}/img/rawkey?x=1&y=-2&z=3"))
        .expect(200)
        .json();
    assert_eq!(k["Key"].as_str().unwrap().len(), 28);
    srv.get(&format!("/api/node/{root}/img/rawkey?x=1&y=2"))
        .expect_4xx();
}

#[test]
fn versions_keep_their_own_voxels() {
    let (srv, root) = setup("uint8blk", json!({"BlockSize": "16,16,16"}));
    let a = gray([16, 16, 16], 1);
    srv.post(
        &format!("/api/node/{root}/{}", raw_path("img", [16; 3], [0; 3])),
        a.clone(),
    )
    .expect(200);
    srv.commit(&root);
    let child = srv.newversion(&root);
    let b = gray([16, 16, 16], 77);
    srv.post(
        &format!("/api/node/{child}/{}", raw_path("img", [16; 3], [0; 3])),
        b.clone(),
    )
    .expect(200);
    assert_eq!(
        srv.get(&format!(
            "/api/node/{root}/{}",
            raw_path("img", [16; 3], [0; 3])
        ))
        .expect(200)
        .body,
        a
    );
    assert_eq!(
        srv.get(&format!(
            "/api/node/{child}/{}",
            raw_path("img", [16; 3], [0; 3])
        ))
        .expect(200)
        .body,
        b
    );
    // A committed node takes no writes.
    srv.post(
        &format!("/api/node/{root}/{}", raw_path("img", [16; 3], [0; 3])),
        b,
    )
    .expect_4xx();
}

#[test]
fn bad_input_is_refused_and_writes_nothing() {
    let (srv, root) = setup("uint8blk", json!({"BlockSize": "16,16,16"}));
    let p = |s: &str| format!("/api/node/{root}/img/{s}");
    // Unaligned, short, long, unknown compression.
    srv.post(&p("raw/0_1_2/16_16_16/1_0_0"), vec![1u8; 4096])
        .expect_4xx();
    srv.post(&p("raw/0_1_2/16_16_16/0_0_0"), vec![1u8; 4095])
        .expect_4xx();
    srv.post(&p("raw/0_1_2/16_16_32/0_0_0"), vec![1u8; 8193])
        .expect_4xx();
    srv.post(
        &p("raw/0_1_2/16_16_16/0_0_0?compression=zstd"),
        vec![1u8; 4096],
    )
    .expect_4xx();
    srv.post(&p("raw/0_1/16_16/0_0_0"), vec![1u8; 256])
        .expect_4xx();
    srv.post(&p("isotropic/0_1_2/16_16_16/0_0_0"), vec![1u8; 4096])
        .expect_4xx();
    srv.get(&p("raw/0_1_2/16_16/0_0_0")).expect_4xx();
    srv.get(&p("raw/0_1_2/16_16_16/0_0_x")).expect_4xx();
    srv.get(&p("raw/0_1_2/16_16_16/0_0_0/tif")).expect_4xx();
    srv.get(&p("subvolblocks/16_16_16/1_0_0")).expect_4xx();
    srv.get(&p("subvolblocks/16_16_16/0_0_0?compression=jpeg"))
        .expect_4xx();
    srv.get(&p("specificblocks?blocks=1,2")).expect_4xx();
    srv.get(&p("raw/0_1_2/16_16_16/0_0_0?roi=LH")).expect_4xx();
    srv.get(&p("raw/0_1_2/16_16_16/0_0_0?scale=1")).expect_4xx();
    srv.get(&p("nosuchkeyword")).expect_4xx();
    let info = srv.get(&p("info")).expect(200).json();
    assert_eq!(
        info["Extended"]["MinPoint"],
        Value::Null,
        "nothing was written"
    );
    assert_eq!(
        srv.get(&p("raw/0_1_2/16_16_16/0_0_0")).expect(200).body,
        vec![0u8; 4096]
    );
    // Bad creation settings.
    for bad in [
        json!({"BlockSize": "15,16,16"}),
        json!({"BlockSize": "16,16"}),
        json!({"Compression": "jpeg:0"}),
        json!({"Compression": "jpeg:101"}),
        json!({"Compression": "zip"}),
        json!({"VoxelSize": "1,0,1"}),
    ] {
        let mut s = bad.clone();
        s["typename"] = json!("uint8blk");
        s["dataname"] = json!("bad");
        let r = srv.post_json(&format!("/api/repo/{root}/instance"), &s);
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
    }
    // Labels are never JPEG.
    let r = srv.post_json(
        &format!("/api/repo/{root}/instance"),
        &json!({"typename": "labelmap", "dataname": "seg", "Compression": "jpeg"}),
    );
    assert_eq!(r.status, 400);
}

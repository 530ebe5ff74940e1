//! labelmap datatype (spec §4.1, §4.4, §5.2, §5.3): instance creation and info, voxel I/O
//! (`raw` 3-D and 2-D, compressions), point queries, block streams (`blocks`, `specificblocks`,
//! `POST blocks`, `ingest-supervoxels`) and versioning. Label indices, sparse volumes, downres
//! and the neuroglancer encoding have their own files (labelmap_*.rs).

use tessera_tests::labels::*;
use tessera_tests::*;

const BIG: u64 = (1 << 60) + 3;

fn start() -> (Server, String) {
    let srv = Server::start();
    let root = srv.create_repo("labelmap");
    (srv, root)
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap_or_else(|| panic!("not a number: {x}")))
        .collect()
}

/// Every 64³ block of the 128³ fixture.
fn fixture_blocks() -> Vec<Coord> {
    let mut v = Vec::new();
    for z in 0..2 {
        for y in 0..2 {
            for x in 0..2 {
                v.push([x, y, z]);
            }
        }
    }
    v
}

// ------------------------------------------------------------------ creation and info

#[test]
fn create_with_settings_and_info() {
    let (srv, root) = start();
    let seg = Seg::create(&srv, &root, "seg", &standard_settings(3));
    let info = seg.info();
    assert_eq!(info["Base"]["TypeName"], "labelmap", "{info}");
    assert_eq!(info["Base"]["Name"], "seg");
    let ext = &info["Extended"];
    assert_eq!(ext["BlockSize"], json!([64, 64, 64]), "{ext}");
    assert_eq!(floats(&ext["VoxelSize"]), vec![8.0, 8.0, 8.0]);
    assert_eq!(
        ext["VoxelUnits"],
        json!(["nanometers", "nanometers", "nanometers"])
    );
    assert_eq!(ext["MaxDownresLevel"], 3);
    assert_eq!(ext["IndexedLabels"], true);
    assert!(
        ext["MinPoint"].is_null(),
        "MinPoint before any write: {ext}"
    );
    assert!(
        ext["MaxPoint"].is_null(),
        "MaxPoint before any write: {ext}"
    );
    for key in ["MaxLabel", "MaxRepoLabel", "NextLabel"] {
        assert!(ext.get(key).is_some(), "Extended lacks {key}: {ext}");
    }
    assert_eq!(
        srv.repo_info(&root)["DataInstances"]["seg"]["Base"]["TypeName"],
        "labelmap"
    );

    // one block at voxel (64, 0, 128): labels 1..=42
    let blk = Volume::from_fn([64, 0, 128], [64; 3], |x, y, z| {
        1 + (x + 2 * y + 3 * z) as u64 % 42
    });
    seg.write(&blk);
    let ext = seg.info()["Extended"].clone();
    assert_eq!(ext["MinPoint"], json!([64, 0, 128]), "{ext}");
    assert_eq!(ext["MaxPoint"], json!([127, 63, 191]), "{ext}");
    assert_eq!(ext["MaxRepoLabel"], 42, "{ext}");
    let per_version = ext["MaxLabel"]
        .as_object()
        .unwrap_or_else(|| panic!("MaxLabel is a version → label map: {ext}"));
    assert!(
        per_version.values().any(|v| v == 42),
        "MaxLabel {per_version:?}"
    );

    // a second block widens the extents
    let mut b2 = Volume::filled([64; 3], 5);
    b2.origin = [0, 64, 0];
    seg.write(&b2);
    let ext = seg.info()["Extended"].clone();
    assert_eq!(ext["MinPoint"], json!([0, 0, 0]), "{ext}");
    assert_eq!(ext["MaxPoint"], json!([127, 127, 191]), "{ext}");
    assert_eq!(ext["MaxRepoLabel"], 42, "{ext}");
}

#[test]
fn defaults_and_block_size_validation() {
    let (srv, root) = start();
    let seg = Seg::create(&srv, &root, "plain", &json!({}));
    let ext = seg.info()["Extended"].clone();
    assert_eq!(ext["BlockSize"], json!([64, 64, 64]), "{ext}");
    assert_eq!(ext["MaxDownresLevel"], 0, "{ext}");
    assert_eq!(ext["IndexedLabels"], true, "{ext}");
    seg.write(&Volume::filled([64; 3], 3));
    seg.get("raw/0_1_2/64_64_64/0_0_0?scale=1").expect(400);
    seg.get("label/0_0_0?scale=1").expect(400);

    for bad in ["60,64,64", "64,64,40", "8,8,8", "0,0,0"] {
        srv.post_json(
            &format!("/api/repo/{root}/instance"),
            &json!({"typename": "labelmap", "dataname": "bad", "BlockSize": bad}),
        )
        .expect(400);
    }
    assert!(
        srv.repo_info(&root)["DataInstances"].get("bad").is_none(),
        "a refused creation must not create the instance"
    );

    // 32³ blocks are fine (multiples of 16); blocks then have 4×4×4 sub-blocks
    let small = Seg::create(&srv, &root, "small", &json!({"BlockSize": "32,32,32"}));
    assert_eq!(small.bs, [32; 3]);
    assert_eq!(small.info()["Extended"]["BlockSize"], json!([32, 32, 32]));
    let vol = noise_fixture([64; 3], 9, &[0, 1, 2, 3, 1 << 40]);
    small.write(&vol);
    assert_eq!(small.raw([0; 3], [64; 3], ""), vol);
    let recs = small.blocks([0; 3], [64; 3], "compression=blocks");
    let all: Vec<Coord> = (0..8).map(|i| [i & 1, (i >> 1) & 1, i >> 2]).collect();
    small.check_records(&recs, "blocks", &vol, &all, &all);
}

// ------------------------------------------------------------------ raw voxel I/O

#[test]
fn raw_roundtrip_and_unaligned_reads() {
    let (srv, root) = start();
    let seg = Seg::create(&srv, &root, "seg", &standard_settings(0));
    let vol = mixed_fixture();
    seg.write(&vol);
    let got = seg.raw([0; 3], [128; 3], "");
    assert!(got == vol, "full read differs");
    let r = seg.get("raw/0_1_2/128_128_128/0_0_0").expect(200);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/octet-stream")
    );
    for (off, size) in [
        ([10, 60, 100], [37, 50, 21]),
        ([63, 63, 63], [2, 2, 2]),
        ([0, 0, 0], [1, 1, 1]),
        ([100, 100, 100], [50, 50, 50]),
        ([-5, -7, -9], [20, 20, 20]),
        ([500, 500, 500], [16, 16, 16]),
        ([64, 0, 0], [64, 128, 1]),
    ] {
        let got = seg.raw(off, size, "");
        assert!(
            got == vol.region(off, size),
            "raw {size:?} at {off:?} differs (unwritten voxels must read 0)"
        );
    }
}

#[test]
fn raw_post_must_be_block_aligned_with_exact_length() {
    let (srv, root) = start();
    let seg = Seg::create(&srv, &root, "seg", &standard_settings(1));
    let mut shifted = Volume::filled([64; 3], 5);
    shifted.origin = [32, 0, 0];
    seg.post_raw(&shifted, "").expect(400);
    let thin = Volume::filled([32, 64, 64], 5);
    seg.post_raw(&thin, "").expect(400);
    let ok = Volume::filled([64; 3], 5);
    let bytes = ok.to_le_bytes();
    let path = "raw/0_1_2/64_64_64/0_0_0";
    seg.post(path, bytes[..bytes.len() - 8].to_vec())
        .expect(400);
    let mut long = bytes.clone();
    long.extend_from_slice(&[5, 0, 0, 0, 0, 0, 0, 0]);
    seg.post(path, long).expect(400);
    seg.post(path, Vec::new()).expect(400);
    seg.post("raw/0_1_2/64_64/0_0_0", bytes.clone()).expect(400);
    seg.post("raw/0_1/64_64/0_0_0", bytes).expect(400);

    // nothing was written
    assert!(
        seg.raw([-64, -64, -64], [192, 192, 192], "")
            .data
            .iter()
            .all(|&l| l == 0),
        "a refused POST raw wrote voxels"
    );
    assert_eq!(seg.size_of(5), None, "a refused POST raw indexed label 5");
    seg.get("maxlabel").expect(400);
    assert!(seg.info()["Extended"]["MinPoint"].is_null());
    assert!(
        seg.raw([0; 3], [64; 3], "scale=1")
            .data
            .iter()
            .all(|&l| l == 0),
        "a refused POST raw wrote a lower scale"
    );
}

#[test]
fn raw_get_compression_lz4_and_gzip() {
    let (srv, root) = start();
    let seg = Seg::create(&srv, &root, "seg", &standard_settings(0));
    let vol = mixed_fixture();
    seg.write(&vol);
    for (off, size) in [([0, 0, 0], [128, 128, 128]), ([5, 70, 33], [61, 17, 90])] {
        let want = vol.region(off, size).to_le_bytes();
        let base = format!(
            "raw/0_1_2/{}_{}_{}/{}_{}_{}",
            size[0], size[1], size[2], off[0], off[1], off[2]
        );
        let r = seg.get(&format!("{base}?compression=lz4")).expect(200);
        let got = lz4_decompress(&r.body, want.len())
            .unwrap_or_else(|e| panic!("{}: not a raw LZ4 block: {e}", r.what));
        assert!(got == want, "{}: lz4 payload differs", r.what);
        let r = seg.get(&format!("{base}?compression=gzip")).expect(200);
        let got = gunzip(&r.body).unwrap_or_else(|e| panic!("{}: {e}", r.what));
        assert!(got == want, "{}: gzip payload differs", r.what);
    }
}

/// Decodes a label PNG: must be 16-bit RGBA; each pixel's 8 sample bytes (as stored in the
/// file, big-endian samples) are the label's little-endian bytes.
fn png_labels(r: &Response) -> (u32, u32, Vec<u64>) {
    let mut dec = png::Decoder::new(std::io::Cursor::new(&r.body[..]));
    dec.set_transformations(png::Transformations::IDENTITY);
    let mut reader = dec
        .read_info()
        .unwrap_or_else(|e| panic!("{}: not a PNG: {e}", r.what));
    let (w, h, ct, bd) = {
        let info = reader.info();
        (info.width, info.height, info.color_type, info.bit_depth)
    };
    assert_eq!(ct, png::ColorType::Rgba, "{}: PNG color type", r.what);
    assert_eq!(bd, png::BitDepth::Sixteen, "{}: PNG bit depth", r.what);
    let mut buf = vec![0; reader.output_buffer_size().expect("buffer size")];
    let frame = reader
        .next_frame(&mut buf)
        .unwrap_or_else(|e| panic!("{}: PNG data: {e}", r.what));
    let bytes = &buf[..frame.buffer_size()];
    assert_eq!(bytes.len(), (w * h * 8) as usize);
    let labels = bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8")))
        .collect();
    (w, h, labels)
}

#[test]
fn raw_2d_slices_are_16_bit_rgba_png() {
    let (srv, root) = start();
    let seg = Seg::create(&srv, &root, "seg", &standard_settings(0));
    let vol = mixed_fixture();
    seg.write(&vol);
    // (dims, width, height, offset, voxel of pixel (i, j))
    type Px = fn([i32; 3], i32, i32) -> Coord;
    let cases: [(&str, u32, u32, Coord, Px); 3] = [
        ("0_1", 100, 70, [10, 20, 65], |o, i, j| {
            [o[0] + i, o[1] + j, o[2]]
        }),
        ("0_2", 50, 40, [30, 64, 20], |o, i, j| {
            [o[0] + i, o[1], o[2] + j]
        }),
        ("1_2", 40, 60, [70, 10, 30], |o, i, j| {
            [o[0], o[1] + i, o[2] + j]
        }),
    ];
    for (dims, w, h, o, px) in cases {
        let r = seg
            .get(&format!("raw/{dims}/{w}_{h}/{}_{}_{}", o[0], o[1], o[2]))
            .expect(200);
        assert!(
            r.header("content-type")
                .is_some_and(|c| c.starts_with("image/png")),
            "{}: content-type {:?}",
            r.what,
            r.header("content-type")
        );
        let (gw, gh, labels) = png_labels(&r);
        assert_eq!((gw, gh), (w, h), "{}: image size", r.what);
        let mut nonzero = 0;
        for j in 0..h as i32 {
            for i in 0..w as i32 {
                let want = vol.get(px(o, i, j));
                let got = labels[(j as u32 * w + i as u32) as usize];
                assert_eq!(got, want, "{}: pixel ({i},{j})", r.what);
                nonzero += usize::from(want != 0);
            }
        }
        assert!(
            nonzero > 0,
            "{dims}: test slice should cross labelled voxels"
        );
    }
}

// ------------------------------------------------------------------ point queries

#[test]
fn label_and_labels_point_queries() {
    let (srv, root) = start();
    let seg = Seg::create(&srv, &root, "seg", &standard_settings(0));
    let vol = mixed_fixture();
    seg.write(&vol);
    let mut big = Volume::filled([64; 3], BIG);
    big.origin = [128, 0, 0];
    seg.write(&big);
    seg.get("label/40_40_40")
        .expect(200)
        .expect_body(r#"{"Label": 7}"#);
    seg.get("label/127_0_0")
        .expect(200)
        .expect_body(r#"{"Label": 9}"#);
    seg.get("label/1000_1000_1000")
        .expect(200)
        .expect_body(r#"{"Label": 0}"#);
    seg.get("label/130_5_60")
        .expect(200)
        .expect_body(&format!(r#"{{"Label": {BIG}}}"#));
    for p in [[80, 80, 80], [100, 64, 127], [60, 60, 60], [5, 110, 3]] {
        assert_eq!(seg.label_at(p, ""), vol.get(p), "label at {p:?}");
    }
    let pts = [
        [40, 40, 40],
        [127, 0, 0],
        [1000, 0, 0],
        [-1, 0, 0],
        [150, 1, 1],
        [0, 101, 9],
    ];
    let r = seg
        .get_with_body("labels", serde_json::to_vec(&json!(pts)).unwrap())
        .expect(200);
    let want: Vec<u64> = pts
        .iter()
        .map(|&p| if big.get(p) != 0 { BIG } else { vol.get(p) })
        .collect();
    assert_eq!(want[5], 3, "fixture sanity");
    let got: Vec<u64> = serde_json::from_value(r.json()).expect("labels is a JSON array of u64");
    assert_eq!(got, want);
    let exact = format!(
        "[{}]",
        want.iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    );
    seg.get_with_body("labels", serde_json::to_vec(&json!(pts)).unwrap())
        .expect(200)
        .expect_body(&exact);
    seg.get_with_body("labels", b"[[1,2]".to_vec()).expect_4xx();
}

// ------------------------------------------------------------------ block streams (GET)

#[test]
fn get_blocks_in_every_compression() {
    let (srv, root) = start();
    let seg = Seg::create(&srv, &root, "seg", &standard_settings(0));
    let mut vol = Volume::zeros([256, 128, 128]);
    vol.paste(&mixed_fixture());
    let far = Volume::from_fn([192, 0, 0], [64; 3], |x, y, z| hash3(x, y, z, 4) % 3);
    seg.write(&vol.region([0; 3], [128; 3]));
    seg.write(&far);
    vol.paste(&far);
    let mut written = fixture_blocks();
    written.push([3, 0, 0]);
    for comp in ["blocks", "uncompressed", "lz4", "gzip"] {
        let recs = seg.blocks([0; 3], [256, 128, 128], &format!("compression={comp}"));
        seg.check_records(&recs, comp, &vol, &written, &written);
    }
    // lz4 is the default
    let recs = seg.blocks([0; 3], [256, 128, 128], "");
    seg.check_records(&recs, "lz4", &vol, &written, &written);
    // a sub-range returns only its blocks
    let recs = seg.blocks([64, 64, 64], [64; 3], "compression=blocks");
    seg.check_records(&recs, "blocks", &vol, &[[1, 1, 1]], &[[1, 1, 1]]);
    let recs = seg.blocks([64, 0, 0], [192, 64, 64], "compression=uncompressed");
    let want = [[1, 0, 0], [3, 0, 0]];
    seg.check_records(
        &recs,
        "uncompressed",
        &vol,
        &[[1, 0, 0], [2, 0, 0], [3, 0, 0]],
        &want,
    );
    // no stored block in range → empty stream
    let r = seg
        .get("blocks/64_64_64/640_0_0?compression=blocks")
        .expect(200);
    assert!(r.body.is_empty(), "{}: {} bytes", r.what, r.body.len());
    // must be block aligned
    seg.get("blocks/64_64_64/32_0_0").expect(400);
    seg.get("blocks/60_64_64/0_0_0").expect(400);
}

#[test]
fn specificblocks_lists_existing_blocks_only() {
    let (srv, root) = start();
    let seg = Seg::create(&srv, &root, "seg", &standard_settings(0));
    let vol = mixed_fixture();
    seg.write(&vol);
    let r = seg
        .get("specificblocks?blocks=0,0,0,1,1,1,5,5,5,1,0,0")
        .expect(200);
    let recs = block_records(&r.body);
    let want = [[0, 0, 0], [1, 1, 1], [1, 0, 0]];
    seg.check_records(&recs, "blocks", &vol, &want, &want);
    for comp in ["uncompressed", "gzip", "lz4", "blocks"] {
        let r = seg
            .get(&format!(
                "specificblocks?blocks=0,1,1,-1,0,0&compression={comp}"
            ))
            .expect(200);
        let recs = block_records(&r.body);
        seg.check_records(&recs, comp, &vol, &[[0, 1, 1]], &[[0, 1, 1]]);
    }
}

// ------------------------------------------------------------------ POST blocks

fn blocks_body(vol: &Volume, bs: [usize; 3], blocks: &[Coord], full_table: bool) -> Vec<u8> {
    let recs: Vec<(Coord, Vec<u8>)> = blocks
        .iter()
        .map(|&c| {
            let b = vol.block(c, bs);
            let enc = if full_table {
                encode_block_full_table(&b)
            } else {
                encode_block(&b)
            };
            (c, gzip(&enc))
        })
        .collect();
    records_body(&recs)
}

#[test]
fn post_blocks_roundtrip_and_indexing() {
    let (srv, root) = start();
    let seg = Seg::create(&srv, &root, "seg", &standard_settings(0));
    let mut vol = Volume::zeros([192, 128, 128]);
    vol.paste(&mixed_fixture());
    let mut solid = Volume::filled([64; 3], 77);
    solid.origin = [128, 0, 0];
    vol.paste(&solid);
    // half the blocks DVID-style, half with whole-table sub-blocks, one solid 24-byte block
    let blocks = fixture_blocks();
    let mut body = blocks_body(&vol, seg.bs, &blocks[..4], false);
    body.extend(blocks_body(&vol, seg.bs, &blocks[4..], true));
    body.extend(blocks_body(&vol, seg.bs, &[[2, 0, 0]], false));
    seg.post("blocks", body).expect(200);
    assert!(
        seg.raw([0; 3], [192, 128, 128], "") == vol,
        "raw after POST blocks"
    );
    let mut written = blocks.clone();
    written.push([2, 0, 0]);
    let recs = seg.blocks([0; 3], [192, 128, 128], "compression=blocks");
    seg.check_records(&recs, "blocks", &vol, &written, &written);
    let counts = vol.label_counts();
    for l in [3, 7, 9, 11, 77, 4_294_967_301, 5000, 5999] {
        assert_eq!(
            seg.size_of(l),
            Some(counts[&l]),
            "size of {l} after POST blocks"
        );
    }
    assert_eq!(seg.maxlabel(), 4_294_967_301);
}

#[test]
fn post_blocks_scale_and_noindexing() {
    let (srv, root) = start();
    let seg = Seg::create(&srv, &root, "seg", &standard_settings(2));
    let vol = noise_fixture([64; 3], 12, &[0, 21, 22, 23]);
    seg.post(
        "blocks?scale=1",
        blocks_body(&vol, seg.bs, &[[0, 0, 0]], false),
    )
    .expect(200);
    assert!(seg.raw([0; 3], [64; 3], "scale=1") == vol, "scale 1 block");
    assert!(
        seg.raw([0; 3], [64; 3], "").data.iter().all(|&l| l == 0),
        "a scale-1 POST must not write scale 0"
    );
    seg.post(
        "blocks?scale=3",
        blocks_body(&vol, seg.bs, &[[0, 0, 0]], false),
    )
    .expect(400);

    let other = Seg::create(&srv, &root, "noidx", &standard_settings(0));
    other
        .post(
            "blocks?noindexing=true",
            blocks_body(&vol, other.bs, &[[0, 0, 0]], false),
        )
        .expect(200);
    assert!(
        other.raw([0; 3], [64; 3], "") == vol,
        "noindexing still writes blocks"
    );
    assert_eq!(other.size_of(21), None, "noindexing must not index");
    other.get("index/21").expect(404);
    other.get("sparsevol/21").expect(404);
}

/// A valid first record, then `bad` appended: the whole POST must fail and write nothing.
#[test]
fn post_blocks_bad_records_write_nothing() {
    let (srv, root) = start();
    let seg = Seg::create(&srv, &root, "seg", &standard_settings(1));
    let good_vol = noise_fixture([64; 3], 3, &[0, 5, 6]);
    let good = records_body(&[([0, 0, 0], gzip(&encode_block(&good_vol)))]);
    let mut truncated_block = encode_block(&noise_fixture([64; 3], 4, &[5, 6, 7]));
    truncated_block.truncate(truncated_block.len() - 10);
    let mut zero_n = encode_block(&Volume::filled([64; 3], 5));
    zero_n[12..16].copy_from_slice(&0u32.to_le_bytes());
    let mut header_lies = records_body(&[([1, 0, 0], vec![0; 10])]);
    header_lies[12..16].copy_from_slice(&1000i32.to_le_bytes());
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated record header", vec![1, 0, 0, 0, 0, 0, 0, 0]),
        ("payload shorter than its length", header_lies),
        ("zero-length payload", records_body(&[([1, 0, 0], vec![])])),
        (
            "payload not gzip",
            records_body(&[([1, 0, 0], b"not gzip at all".to_vec())]),
        ),
        (
            "gzip of garbage",
            records_body(&[([1, 0, 0], gzip(b"garbage, not a labels.Block"))]),
        ),
        (
            "truncated labels.Block",
            records_body(&[([1, 0, 0], gzip(&truncated_block))]),
        ),
        (
            "label table N = 0",
            records_body(&[([1, 0, 0], gzip(&zero_n))]),
        ),
        (
            "32³ block in a 64³ instance",
            records_body(&[([1, 0, 0], gzip(&encode_block(&Volume::filled([32; 3], 5))))]),
        ),
    ];
    for (what, bad) in cases {
        let mut body = good.clone();
        body.extend_from_slice(&bad);
        let r = seg.post("blocks", body);
        assert_eq!(
            r.status,
            400,
            "{what}: expected 400, got {} {:?}",
            r.status,
            r.text()
        );
        let raw = seg.raw([0; 3], [128, 64, 64], "");
        assert!(
            raw.data.iter().all(|&l| l == 0),
            "{what}: voxels were written"
        );
        assert_eq!(seg.size_of(5), None, "{what}: label 5 was indexed");
        seg.get("maxlabel").expect(400);
    }
    seg.post("blocks", good).expect(200);
    assert!(seg.raw([0; 3], [64; 3], "") == good_vol);
}

// ------------------------------------------------------------------ ingest-supervoxels

#[test]
fn ingest_supervoxels_writes_blocks_only() {
    let (srv, root) = start();
    let seg = Seg::create(&srv, &root, "seg", &standard_settings(1));
    let vol = mixed_fixture();
    seg.post(
        "ingest-supervoxels",
        blocks_body(&vol, seg.bs, &fixture_blocks(), false),
    )
    .expect(200);
    assert!(seg.raw([0; 3], [128; 3], "") == vol, "ingested voxels");
    assert_eq!(seg.size_of(7), None, "ingest-supervoxels must not index");
    seg.get("sparsevol/7").expect(404);
    assert_eq!(seg.get("existing-labels").expect(200).json(), json!([]));
    seg.get("maxlabel").expect(400);
    assert!(
        seg.raw([0; 3], [64; 3], "scale=1")
            .data
            .iter()
            .all(|&l| l == 0),
        "ingest-supervoxels must not downres"
    );
    // scale=N writes that level directly
    let lo = noise_fixture([64; 3], 8, &[0, 31, 32]);
    seg.post(
        "ingest-supervoxels?scale=1",
        blocks_body(&lo, seg.bs, &[[0, 0, 0]], true),
    )
    .expect(200);
    assert!(seg.raw([0; 3], [64; 3], "scale=1") == lo);
    seg.post("ingest-supervoxels", records_body(&[([3, 0, 0], vec![])]))
        .expect(400);
}

// ------------------------------------------------------------------ versions

#[test]
fn child_writes_are_invisible_in_the_parent_and_locked_nodes_refuse_writes() {
    let (srv, root) = start();
    let seg = Seg::create(&srv, &root, "seg", &standard_settings(1));
    let vol = mixed_fixture();
    seg.write(&vol);
    srv.commit(&root);
    let child_uuid = srv.newversion(&root);
    let child = seg.at(&child_uuid);
    let mut over = Volume::filled([64; 3], 99);
    over.origin = [0, 0, 0];
    child.write(&over);
    let mut child_vol = vol.clone();
    child_vol.paste(&over);

    assert!(
        seg.raw([0; 3], [128; 3], "") == vol,
        "parent changed by a child write"
    );
    assert!(child.raw([0; 3], [128; 3], "") == child_vol, "child view");
    assert_eq!(seg.label_at([40, 40, 40], ""), 7);
    assert_eq!(child.label_at([40, 40, 40], ""), 99);
    assert_eq!(seg.size_of(99), None);
    assert_eq!(child.size_of(99), Some(64 * 64 * 64));
    assert_eq!(seg.size_of(7), Some(vol.label_counts()[&7]));
    assert_eq!(child.size_of(7), child_vol.label_counts().get(&7).copied());
    let lo_parent = seg.raw([0; 3], [64; 3], "scale=1");
    let lo_child = child.raw([0; 3], [64; 3], "scale=1");
    assert!(
        lo_parent == downres(&vol).region([0; 3], [64; 3]),
        "parent scale 1"
    );
    assert!(
        lo_child == downres(&child_vol).region([0; 3], [64; 3]),
        "child scale 1"
    );

    // the committed parent refuses writes of every kind
    let mut other = Volume::filled([64; 3], 55);
    other.origin = [0, 0, 0];
    seg.post_raw(&other, "").expect_4xx();
    seg.post("blocks", blocks_body(&other, seg.bs, &[[0, 0, 0]], false))
        .expect_4xx();
    seg.post(
        "ingest-supervoxels",
        blocks_body(&other, seg.bs, &[[0, 0, 0]], false),
    )
    .expect_4xx();
    assert!(
        seg.raw([0; 3], [128; 3], "") == vol,
        "locked parent was written"
    );
    assert_eq!(seg.size_of(55), None);
}

#[test]
fn negative_coordinates() {
    let (srv, root) = start();
    let seg = Seg::create(&srv, &root, "seg", &standard_settings(1));
    let vol = Volume::from_fn([-64, -64, 0], [128, 64, 64], |x, y, z| {
        if x < 0 && (x + y + z) % 3 == 0 {
            17
        } else if x >= 0 {
            18
        } else {
            0
        }
    });
    seg.write(&vol);
    assert!(seg.raw([-64, -64, 0], [128, 64, 64], "") == vol);
    assert!(seg.raw([-10, -10, 5], [20, 20, 20], "") == vol.region([-10, -10, 5], [20, 20, 20]));
    assert_eq!(vol.get([-64, -64, 2]), 17, "fixture sanity");
    assert_eq!(seg.label_at([-64, -64, 2], ""), 17);
    assert_eq!(seg.label_at([-64, -64, 0], ""), 0);
    assert_eq!(seg.label_at([0, -1, 63], ""), 18);
    let ext = seg.info()["Extended"].clone();
    assert_eq!(ext["MinPoint"], json!([-64, -64, 0]), "{ext}");
    assert_eq!(ext["MaxPoint"], json!([63, -1, 63]), "{ext}");
    let recs = block_records(&seg.get("specificblocks?blocks=-1,-1,0").expect(200).body);
    seg.check_records(&recs, "blocks", &vol, &[[-1, -1, 0]], &[[-1, -1, 0]]);
    let recs = seg.blocks([-64, -64, 0], [128, 64, 64], "compression=uncompressed");
    seg.check_records(
        &recs,
        "uncompressed",
        &vol,
        &[[-1, -1, 0], [0, -1, 0]],
        &[[-1, -1, 0], [0, -1, 0]],
    );
    assert!(seg.raw([-32, -32, 0], [64, 32, 32], "scale=1") == downres(&vol));
    assert_eq!(seg.size_of(17), Some(vol.label_counts()[&17]));
}

/// `POST raw` streams its body: a large body of the wrong length is answered 400 (the rest of
/// the body is drained, so the client reads the answer instead of a reset), a body past the
/// server's limit 413, and neither writes anything; a compressed body is accepted.
#[test]
fn streamed_raw_post_refusals_and_compressed_bodies() {
    let srv = Server::start_with_config("[server]\nmax_body_mb = 8\n");
    let root = srv.create_repo("stream");
    srv.create_instance_with(&root, "labelmap", "seg", &standard_settings(1));
    let path = |size: &str, q: &str| format!("/api/node/{root}/seg/raw/0_1_2/{size}/0_0_0{q}");
    // 128×128×64 wants 8 MiB; send 6 MiB.
    let r = srv
        .post(&path("128_128_64", ""), vec![1u8; 6 << 20])
        .expect(400);
    assert!(r.text().contains("8388608 bytes"), "{}", r.text());
    // 128×128×128 wants 16 MiB, past the 8 MiB limit.
    srv.post(&path("128_128_128", ""), vec![1u8; 16 << 20])
        .expect(413);
    srv.get(&format!("/api/node/{root}/seg/maxlabel"))
        .expect(400);
    let vol = Volume::filled([64, 64, 64], 42);
    let packed = gzip(&vol.to_le_bytes());
    srv.post(&path("64_64_64", "?compression=gzip"), packed)
        .expect(200);
    let seg = Seg::open(&srv, &root, "seg");
    assert_eq!(seg.raw([0, 0, 0], [64, 64, 64], ""), vol);
    assert_eq!(seg.size_of(42), Some(64 * 64 * 64));
}

//! labelblk datatype (spec §4.3): uint64 labels in raw blocks, no index. Round trips at
//! unaligned and negative boxes, neuroglancer's googlegzip reads, PNG and pseudocolor slices,
//! label/labels, block records both ways, versions, bad input.

use tessera_tests::labels::*;
use tessera_tests::*;

/// 64³ voxels from (-32, -32, -32): eight of labelblk's default 32³ blocks.
const ORIGIN: Coord = [-32, -32, -32];
const SIZE: [usize; 3] = [64, 64, 64];
const BIG: u64 = (1 << 50) + 17;

fn fixture() -> Volume {
    Volume::from_fn(ORIGIN, SIZE, |x, y, z| {
        if x < -10 {
            1
        } else if x < 10 && y < 0 {
            2
        } else if x < 10 {
            BIG
        } else if z < 5 {
            4
        } else {
            hash3(x, y, z, 3) % 3
        }
    })
}

fn setup(srv: &Server) -> (String, Seg<'_>) {
    let root = srv.create_repo("labelblk");
    let blk = Seg::create_typed(srv, &root, "labelblk", "blk", &json!({}));
    let blk = Seg { bs: [32; 3], ..blk };
    blk.write(&fixture());
    (root, blk)
}

/// A PNG's pixels: (width, height, color type, bit depth, bytes).
fn png_pixels(r: &Response) -> (u32, u32, png::ColorType, png::BitDepth, Vec<u8>) {
    let mut dec = png::Decoder::new(std::io::Cursor::new(&r.body[..]));
    dec.set_transformations(png::Transformations::IDENTITY);
    let mut reader = dec
        .read_info()
        .unwrap_or_else(|e| panic!("{}: not a PNG: {e}", r.what));
    let mut buf = vec![0; reader.output_buffer_size().expect("buffer size")];
    let frame = reader
        .next_frame(&mut buf)
        .unwrap_or_else(|e| panic!("{}: PNG data: {e}", r.what));
    buf.truncate(frame.buffer_size());
    (
        frame.width,
        frame.height,
        frame.color_type,
        frame.bit_depth,
        buf,
    )
}

/// MurmurHash3 x86 32-bit, seed 0, of 8 bytes (two blocks, no tail), written from the
/// published algorithm.
fn murmur3_8(data: [u8; 8]) -> u32 {
    let mut h: u32 = 0;
    for i in 0..2 {
        let mut k = u32::from_le_bytes(data[4 * i..4 * i + 4].try_into().unwrap());
        k = k.wrapping_mul(0xcc9e_2d51);
        k = k.rotate_left(15);
        k = k.wrapping_mul(0x1b87_3593);
        h ^= k;
        h = h.rotate_left(13);
        h = h.wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    h ^= 8;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

#[test]
fn create_and_info() {
    let srv = Server::start();
    let (root, blk) = setup(&srv);
    let info = blk.info();
    assert_eq!(info["Base"]["TypeName"], "labelblk", "{info}");
    assert_eq!(
        info["Base"]["TypeURL"],
        "github.com/janelia-flyem/dvid/datatype/labelblk"
    );
    let ext = &info["Extended"];
    assert_eq!(
        ext["BlockSize"],
        json!([32, 32, 32]),
        "DVID's default: {ext}"
    );
    assert_eq!(ext["Values"][0]["DataType"], "uint64");
    assert_eq!(ext["Values"][0]["Label"], "labelblk");
    assert_eq!(ext["MinPoint"], json!([-32, -32, -32]));
    assert_eq!(ext["MaxPoint"], json!([31, 31, 31]));
    // No index endpoints: those are labelvol's.
    blk.get("sparsevol/1").expect(400);
    blk.get("maxlabel").expect(400);
    blk.post("merge", "[1, 2]").expect(400);
    // JPEG storage of labels is refused.
    srv.post_json(
        &format!("/api/repo/{root}/instance"),
        &json!({"typename": "labelblk", "dataname": "jpg", "Compression": "jpeg"}),
    )
    .expect_4xx();
}

#[test]
fn round_trips_at_unaligned_negative_boxes() {
    let srv = Server::start();
    let (root, blk) = setup(&srv);
    let vol = fixture();
    for (offset, size) in [
        ([-17, -5, -29], [41, 23, 37]),
        ([-32, -32, -32], [64, 64, 64]),
        ([-40, 20, -1], [30, 30, 3]),
        ([100, 100, 100], [5, 5, 5]),
    ] {
        assert!(
            blk.raw(offset, size, "") == vol.region(offset, size),
            "raw at {offset:?} size {size:?}"
        );
        let path = format!(
            "raw/0_1_2/{}_{}_{}/{}_{}_{}",
            size[0], size[1], size[2], offset[0], offset[1], offset[2]
        );
        let gz = blk.get(&format!("{path}?compression=gzip")).expect(200);
        let got = Volume::from_le_bytes(offset, size, &gunzip(&gz.body).unwrap());
        assert!(got == vol.region(offset, size), "gzip at {offset:?}");
        let lz = blk.get(&format!("{path}?compression=lz4")).expect(200);
        let n = size.iter().product::<usize>() * 8;
        let got = Volume::from_le_bytes(offset, size, &lz4_decompress(&lz.body, n).unwrap());
        assert!(got == vol.region(offset, size), "lz4 at {offset:?}");
    }
    assert_eq!(blk.label_at([-20, -20, -20], ""), 1);
    assert_eq!(blk.label_at([0, 5, 0], ""), BIG);
    assert_eq!(blk.label_at([500, 0, 0], ""), 0);
    let r = blk
        .get_with_body(
            "labels",
            "[[-20,-20,-20],[0,5,0],[12,0,-3],[400,0,0],[0,-1,0]]",
        )
        .expect(200)
        .json();
    assert_eq!(r, json!([1, BIG, 4, 0, 2]));
    blk.get_with_body("labels", "[[1,2]]").expect(400);

    // neuroglancer asks a labelblk for googlegzip without scale: the same bytes a labelmap
    // holding the same voxels answers.
    let mut settings = standard_settings(1);
    settings["BlockSize"] = json!("32,32,32");
    let map = Seg::create(&srv, &root, "map", &settings);
    map.write(&vol);
    for (q, offset) in [
        ("compression=google", "-32_-32_-32"),
        ("compression=googlegzip", "-32_-32_-32"),
        ("compression=googlegzip", "-20_-7_3"),
    ] {
        let path = format!("raw/0_1_2/40_40_24/{offset}?{q}");
        let a = blk.get(&path).expect(200);
        let m = map.get(&path).expect(200);
        assert!(a.body == m.body, "{path}: labelblk and labelmap differ");
        if q.ends_with("googlegzip") {
            assert_eq!(a.header("content-encoding").as_deref(), Some("gzip"));
        }
    }
    blk.get("raw/0_1/32_32/0_0_0?compression=google")
        .expect(400);

    // 2-D slices: 16-bit RGBA of the labels' bytes, as labelmap's.
    for path in [
        "raw/0_1/40_30/-20_-10_3",
        "raw/xz/17_9/-3_2_-30",
        "raw/1_2/20_20/5_-10_-10/png",
    ] {
        let a = png_pixels(&blk.get(path).expect(200));
        let m = png_pixels(&map.get(path).expect(200));
        assert_eq!(a.2, png::ColorType::Rgba, "{path}");
        assert_eq!(a.3, png::BitDepth::Sixteen, "{path}");
        assert!(a == m, "{path}: labelblk and labelmap slices differ");
    }
    blk.get("raw/0_1/40_30/-20_-10_3/jpg").expect(400);
}

#[test]
fn pseudocolor_hashes_labels() {
    let srv = Server::start();
    let (_root, blk) = setup(&srv);
    let vol = fixture();
    let (w, h) = (40usize, 30usize);
    let r = blk.get("pseudocolor/0_1/40_30/-20_-10_3").expect(200);
    assert_eq!(r.header("content-type").as_deref(), Some("image/png"));
    let (pw, ph, ct, bd, px) = png_pixels(&r);
    assert_eq!((pw, ph), (w as u32, h as u32));
    assert_eq!(ct, png::ColorType::Rgba);
    assert_eq!(bd, png::BitDepth::Eight);
    for y in 0..h {
        for x in 0..w {
            let l = vol.get([-20 + x as i32, -10 + y as i32, 3]);
            let c = murmur3_8(l.to_le_bytes()).to_be_bytes();
            let i = 4 * (y * w + x);
            assert_eq!(
                &px[i..i + 4],
                &[c[0], c[1], c[2], 255],
                "pixel ({x}, {y}) of label {l}"
            );
        }
    }
    blk.get("pseudocolor/0_1_2/8_8_8/0_0_0").expect(400);
}

#[test]
fn block_records_both_ways() {
    let srv = Server::start();
    let (root, blk) = setup(&srv);
    let vol = fixture();
    let blocks = vol.nonempty_blocks(blk.bs);
    assert_eq!(blocks.len(), 8);
    // Default LZ4, as DVID sends them; uncompressed and gzip on request.
    let lz4 = blk.blocks(ORIGIN, SIZE, "");
    blk.check_records(&lz4, "lz4", &vol, &blocks, &blocks);
    for c in ["uncompressed", "gzip", "lz4"] {
        let recs = blk.blocks(ORIGIN, SIZE, &format!("compression={c}"));
        blk.check_records(&recs, c, &vol, &blocks, &blocks);
    }
    // Part of the box: only its blocks.
    let part = blk.blocks([0, 0, -32], [32, 32, 64], "compression=uncompressed");
    blk.check_records(
        &part,
        "uncompressed",
        &vol,
        &[[0, 0, -1], [0, 0, 0]],
        &[[0, 0, -1], [0, 0, 0]],
    );
    blk.get("blocks/33_32_32/0_0_0").expect(400);

    // POST the records into another labelblk: the same voxels.
    let other = Seg::create_typed(&srv, &root, "labelblk", "other", &json!({}));
    let other = Seg {
        bs: [32; 3],
        ..other
    };
    other.post("blocks", records_body(&lz4)).expect(200);
    assert!(other.raw(ORIGIN, SIZE, "") == vol, "blocks posted as lz4");
    let gz = blk.blocks(ORIGIN, SIZE, "compression=gzip");
    let third = Seg::create_typed(&srv, &root, "labelblk", "third", &json!({}));
    let third = Seg {
        bs: [32; 3],
        ..third
    };
    third
        .post("blocks?compression=gzip", records_body(&gz))
        .expect(200);
    assert!(third.raw(ORIGIN, SIZE, "") == vol, "blocks posted as gzip");

    // Bad records store nothing: a short block, a duplicate, an unknown coding.
    let empty = Seg::create_typed(&srv, &root, "labelblk", "empty", &json!({}));
    let mut bad = lz4.clone();
    bad.push((bad[0].0, bad[0].1.clone()));
    empty.post("blocks", records_body(&bad)).expect(400);
    let short = vec![([5, 5, 5], vec![0u8; 100])];
    empty
        .post("blocks?compression=uncompressed", records_body(&short))
        .expect(400);
    empty
        .post("blocks?compression=jpeg", records_body(&lz4))
        .expect(400);
    empty.post("blocks", vec![1u8, 2, 3]).expect(400);
    assert!(empty.info()["Extended"]["MinPoint"].is_null());
    assert!(empty.blocks(ORIGIN, SIZE, "").is_empty());
}

#[test]
fn versions_and_bad_writes() {
    let srv = Server::start();
    let (root, blk) = setup(&srv);
    let vol = fixture();
    srv.commit(&root);
    let child = srv.newversion(&root);
    let blk_child = blk.at(&child);
    let patch = Volume::from_fn([0, 0, 0], [32, 32, 32], |_, _, _| 77);
    blk_child.write(&patch);
    let mut want = vol.clone();
    want.paste(&patch);
    assert!(blk_child.raw(ORIGIN, SIZE, "") == want, "child");
    assert!(blk.raw(ORIGIN, SIZE, "") == vol, "root unchanged");
    blk.write_expect_locked(&patch);

    // Unaligned, wrong length, 2-D: 400 and nothing written.
    let bad = Volume::from_fn([1, 0, 0], [32, 32, 32], |_, _, _| 5);
    blk_child.post_raw(&bad, "").expect(400);
    blk_child
        .post("raw/0_1_2/32_32_32/32_0_0", vec![0u8; 10])
        .expect(400);
    blk_child
        .post("raw/0_1/32_32/32_0_0", vec![0u8; 32 * 32 * 8])
        .expect_4xx();
    blk_child.get("raw/0_1_2/8_8_8/0_0_0?scale=1").expect(400);
    assert!(blk_child.raw(ORIGIN, SIZE, "") == want, "after bad writes");
    assert_eq!(blk_child.label_at([33, 0, 0], ""), 0);
}

trait Locked {
    fn write_expect_locked(&self, vol: &Volume);
}

impl Locked for Seg<'_> {
    /// A write to a committed node is refused.
    fn write_expect_locked(&self, vol: &Volume) {
        self.post_raw(vol, "").expect_4xx();
    }
}

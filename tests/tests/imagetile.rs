//! imagetile (spec §4.10): 2-D tiles generated from a uint8blk source, compared with an
//! independent computation here (the source region, and its in-plane 2×2 mean at scale 1) in
//! every plane; JPEG and lz4 formats; metadata (derived and posted); noblanks; posted tiles
//! winning over generation; cached tiles following source writes and versions; level
//! instances (`grayscale_1`) as the source of scale 1; stitched raw/isotropic images; keys;
//! bad input refused with nothing written.

use tessera_tests::*;

/// A volume at `at` of `size` voxels (x fastest); zeros outside.
#[derive(Clone)]
struct Vol {
    at: [i64; 3],
    size: [usize; 3],
    v: Vec<u8>,
}

impl Vol {
    fn new(at: [i64; 3], size: [usize; 3], f: impl Fn([i64; 3]) -> u8) -> Vol {
        let mut v = Vec::with_capacity(size.iter().product());
        for z in 0..size[2] as i64 {
            for y in 0..size[1] as i64 {
                for x in 0..size[0] as i64 {
                    v.push(f([at[0] + x, at[1] + y, at[2] + z]));
                }
            }
        }
        Vol { at, size, v }
    }

    /// Rough values: a tile's mean differs from its samples.
    fn noise(at: [i64; 3], size: [usize; 3], seed: i64) -> Vol {
        Vol::new(at, size, |p| {
            let h = (p[0] * 73 + p[1] * 151 + p[2] * 37 + seed * 101).rem_euclid(1009);
            (h * h % 251) as u8 + 1
        })
    }

    /// Smooth values, which JPEG keeps close.
    fn smooth(at: [i64; 3], size: [usize; 3]) -> Vol {
        Vol::new(at, size, |p| {
            (128.0 + 60.0 * ((p[0] as f64) / 9.0).sin() * ((p[1] + p[2]) as f64 / 13.0).cos()) as u8
        })
    }

    fn get(&self, p: [i64; 3]) -> u8 {
        if (0..3).any(|a| p[a] < self.at[a] || p[a] >= self.at[a] + self.size[a] as i64) {
            return 0;
        }
        let l: Vec<usize> = (0..3).map(|a| (p[a] - self.at[a]) as usize).collect();
        self.v[(l[2] * self.size[1] + l[1]) * self.size[0] + l[0]]
    }

    /// Later writes over earlier ones.
    fn over(&self, top: &Vol) -> Vol {
        let mut out = self.clone();
        for z in 0..self.size[2] as i64 {
            for y in 0..self.size[1] as i64 {
                for x in 0..self.size[0] as i64 {
                    let p = [self.at[0] + x, self.at[1] + y, self.at[2] + z];
                    let inside =
                        (0..3).all(|a| p[a] >= top.at[a] && p[a] < top.at[a] + top.size[a] as i64);
                    if inside {
                        let i =
                            ((z as usize * self.size[1] + y as usize) * self.size[0]) + x as usize;
                        out.v[i] = top.get(p);
                    }
                }
            }
        }
        out
    }

    fn path(&self, inst: &str) -> String {
        let (s, a) = (self.size, self.at);
        format!(
            "{inst}/raw/0_1_2/{}_{}_{}/{}_{}_{}",
            s[0], s[1], s[2], a[0], a[1], a[2]
        )
    }

    fn post(&self, srv: &Server, node: &str, inst: &str) {
        srv.post(
            &format!("/api/node/{node}/{}", self.path(inst)),
            self.v.clone(),
        )
        .expect(200);
    }
}

/// The in-plane axes of a plane name.
fn axes(plane: &str) -> (usize, usize) {
    match plane {
        "xy" => (0, 1),
        "xz" => (0, 2),
        "yz" => (1, 2),
        p => panic!("plane {p}"),
    }
}

/// The tile DVID names `plane/scale/coord` of `w`×`h` pixels, computed from `vol`: each pixel
/// the mean of its 2^s×2^s window in the plane, rounded half up.
fn expected_tile(
    vol: &Vol,
    plane: &str,
    scale: u32,
    coord: [i64; 3],
    w: usize,
    h: usize,
) -> Vec<u8> {
    let (a, b) = axes(plane);
    let c = 3 - a - b;
    let f = 1i64 << scale;
    let n = (f * f) as u32;
    let mut out = Vec::with_capacity(w * h);
    for j in 0..h as i64 {
        for i in 0..w as i64 {
            let mut sum = 0u32;
            for dj in 0..f {
                for di in 0..f {
                    let mut p = [0i64; 3];
                    p[a] = coord[a] * w as i64 * f + i * f + di;
                    p[b] = coord[b] * h as i64 * f + j * f + dj;
                    p[c] = coord[c];
                    sum += vol.get(p) as u32;
                }
            }
            out.push(((sum + n / 2) / n) as u8);
        }
    }
    out
}

fn decode_png(bytes: &[u8]) -> (usize, usize, Vec<u8>) {
    let dec = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut r = dec.read_info().expect("a PNG");
    let mut buf = vec![0u8; r.output_buffer_size().unwrap()];
    let info = r.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Grayscale);
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    buf.truncate(info.width as usize * info.height as usize);
    (info.width as usize, info.height as usize, buf)
}

fn encode_png(w: usize, h: usize, px: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w as u32, h as u32);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    let mut wr = enc.write_header().unwrap();
    wr.write_image_data(px).unwrap();
    wr.finish().unwrap();
    out
}

fn decode_jpeg(bytes: &[u8]) -> (usize, usize, Vec<u8>) {
    let mut d = jpeg_decoder::Decoder::new(bytes);
    let px = d.decode().expect("an independent decoder reads the JPEG");
    let info = d.info().unwrap();
    (info.width as usize, info.height as usize, px)
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

fn caught_up(srv: &Server) {
    let s = srv.get("/api/server/sync?wait=120").expect(200).json();
    assert_eq!(s["CaughtUp"], json!(true), "sync not caught up: {s}");
}

/// Small, non-square tiles so requests cross several, and a wrong axis order shows.
fn small_levels() -> Value {
    json!({
        "MinTileCoord": [-1, 0, 0],
        "MaxTileCoord": [2, 3, 2],
        "Levels": {
            "0": {"Resolution": [8.0, 8.0, 8.0], "TileSize": [32, 16, 24]},
            "1": {"Resolution": [16.0, 16.0, 16.0], "TileSize": [32, 16, 24]},
            "2": {"Resolution": [32.0, 32.0, 32.0], "TileSize": [32, 16, 24]},
        }
    })
}

/// A repo with uint8blk `grayscale` (32³ blocks) holding `vol`, and imagetile `tiles`
/// (`settings`) synced to it.
fn setup(settings: Value, vol: &Vol) -> (Server, String) {
    let srv = Server::start();
    let root = srv.create_repo("tiles");
    srv.create_instance_with(
        &root,
        "uint8blk",
        "grayscale",
        &json!({"BlockSize": "32,32,32"}),
    );
    vol.post(&srv, &root, "grayscale");
    srv.create_instance_with(&root, "imagetile", "tiles", &settings);
    srv.post_json(
        &format!("/api/node/{root}/tiles/sync"),
        &json!({"sync": "grayscale"}),
    )
    .expect(200);
    (srv, root)
}

fn tile_dims(plane: &str) -> (usize, usize) {
    let ts = [32, 16, 24];
    let (a, b) = axes(plane);
    (ts[a], ts[b])
}

/// GETs a PNG tile and compares it with the independent computation.
#[track_caller]
fn check_tile(srv: &Server, node: &str, vol: &Vol, plane: &str, scale: u32, coord: [i64; 3]) {
    let (w, h) = tile_dims(plane);
    let r = srv
        .get(&format!(
            "/api/node/{node}/tiles/tile/{plane}/{scale}/{}_{}_{}",
            coord[0], coord[1], coord[2]
        ))
        .expect(200);
    assert_eq!(r.header("content-type").as_deref(), Some("image/png"));
    let (gw, gh, px) = decode_png(&r.body);
    assert_eq!((gw, gh), (w, h), "{plane}/{scale}/{coord:?}");
    let want = expected_tile(vol, plane, scale, coord, w, h);
    let bad = px.iter().zip(&want).filter(|(a, b)| a != b).count();
    assert_eq!(bad, 0, "{plane}/{scale}/{coord:?}: {bad} pixels differ");
}

/// Tiles that cross the volume's edges and negative space, in every plane at scales 0 and 1.
const TILES: &[(&str, [i64; 3])] = &[
    ("xy", [-1, 0, 5]),
    ("xy", [0, 1, 40]),
    ("xy", [1, 3, 63]),
    ("xz", [-1, 7, 0]),
    ("xz", [1, 33, 1]),
    ("yz", [-20, 0, 0]),
    ("yz", [50, 1, 2]),
];

#[test]
fn tiles_at_scales_0_and_1_match_the_source_in_every_plane() {
    let vol = Vol::noise([-32, 0, 0], [96, 64, 64], 0);
    let (srv, root) = setup(json!({}), &vol);
    srv.post_json(&format!("/api/node/{root}/tiles/metadata"), &small_levels())
        .expect(200);
    for scale in [0, 1] {
        for (plane, coord) in TILES {
            check_tile(&srv, &root, &vol, plane, scale, *coord);
        }
    }
    // The same again, from the cache, byte for byte.
    let p = format!("/api/node/{root}/tiles/tile/xz/1/1_33_1");
    let first = srv.get(&p).expect(200).body;
    assert_eq!(srv.get(&p).expect(200).body, first);
    check_tile(&srv, &root, &vol, "xz", 1, [1, 33, 1]);
    // 0_1-style planes name the same tiles.
    assert_eq!(
        srv.get(&format!("/api/node/{root}/tiles/tile/0_2/1/1_33_1"))
            .expect(200)
            .body,
        first
    );
    let info = srv
        .get(&format!("/api/node/{root}/tiles/info"))
        .expect(200)
        .json();
    assert_eq!(info["Base"]["TypeName"], "imagetile");
    assert_eq!(info["Extended"]["Source"], "grayscale");
    assert_eq!(info["Extended"]["Encoding"], 1);
    assert_eq!(
        info["Extended"]["Levels"]["1"]["TileSize"],
        json!([32, 16, 24])
    );
}

#[test]
fn jpg_tiles_decode_close_and_lz4_tiles_are_png() {
    let vol = Vol::smooth([0, 0, 0], [64, 64, 64]);
    let (srv, root) = setup(json!({"Format": "jpg"}), &vol);
    srv.create_instance_with(&root, "imagetile", "lz4tiles", &json!({"Format": "lz4"}));
    srv.post_json(
        &format!("/api/node/{root}/lz4tiles/sync"),
        &json!({"sync": "grayscale"}),
    )
    .expect(200);
    for inst in ["tiles", "lz4tiles"] {
        srv.post_json(
            &format!("/api/node/{root}/{inst}/metadata"),
            &small_levels(),
        )
        .expect(200);
    }
    for scale in [0, 1] {
        for (plane, coord) in [("xy", [0i64, 1, 9]), ("xz", [1, 20, 1]), ("yz", [33, 1, 0])] {
            let (w, h) = tile_dims(plane);
            let want = expected_tile(&vol, plane, scale, coord, w, h);
            let tail = format!(
                "tile/{plane}/{scale}/{}_{}_{}",
                coord[0], coord[1], coord[2]
            );
            let r = srv
                .get(&format!("/api/node/{root}/tiles/{tail}"))
                .expect(200);
            assert_eq!(r.header("content-type").as_deref(), Some("image/jpeg"));
            let (gw, gh, px) = decode_jpeg(&r.body);
            assert_eq!((gw, gh), (w, h));
            let q = psnr(&px, &want);
            assert!(q > 30.0, "{tail}: PSNR {q:.1} dB");
            let r = srv
                .get(&format!("/api/node/{root}/lz4tiles/{tail}"))
                .expect(200);
            assert_eq!(r.header("content-type").as_deref(), Some("image/png"));
            assert_eq!(decode_png(&r.body), (w, h, want), "lz4 {tail}");
        }
    }
    // A posted lz4 tile is a PNG in, a PNG out.
    let px: Vec<u8> = (0..32 * 16).map(|i| (i % 251) as u8).collect();
    srv.post(
        &format!("/api/node/{root}/lz4tiles/tile/xy/0/5_5_5"),
        encode_png(32, 16, &px),
    )
    .expect(200);
    let r = srv
        .get(&format!("/api/node/{root}/lz4tiles/tile/xy/0/5_5_5"))
        .expect(200);
    assert_eq!(decode_png(&r.body), (32, 16, px));
    let info = srv
        .get(&format!("/api/node/{root}/lz4tiles/info"))
        .expect(200)
        .json();
    assert_eq!(info["Extended"]["Encoding"], 0);
}

#[test]
fn metadata_is_derived_from_the_source_until_posted() {
    let srv = Server::start();
    let root = srv.create_repo("tiles");
    srv.create_instance_with(
        &root,
        "uint8blk",
        "grayscale",
        &json!({"BlockSize": "32,32,32", "VoxelSize": "4,4,40"}),
    );
    srv.create_instance_with(&root, "imagetile", "tiles", &json!({}));
    let p = |s: &str| format!("/api/node/{root}/tiles/{s}");
    // Neither posted nor a source: DVID's "not set".
    let r = srv.get(&p("metadata")).expect(400);
    assert!(r.text().contains("metadata"), "{}", r.text());
    srv.post_json(&p("sync"), &json!({"sync": "grayscale"}))
        .expect(200);
    // An empty source: one level.
    assert_eq!(
        srv.get(&p("metadata")).expect(200).json(),
        json!({
            "MinTileCoord": [0, 0, 0],
            "MaxTileCoord": [0, 0, 0],
            "Levels": {"0": {"Resolution": [4.0, 4.0, 40.0], "TileSize": [512, 512, 512]}},
        })
    );
    // Data spanning three 512-voxel tiles in x: levels until it fits one.
    let a = Vol::noise([0, 0, 0], [32, 32, 32], 1);
    let b = Vol::noise([1056, 0, 0], [32, 32, 32], 2);
    a.post(&srv, &root, "grayscale");
    b.post(&srv, &root, "grayscale");
    let derived = json!({
        "MinTileCoord": [0, 0, 0],
        "MaxTileCoord": [2, 0, 0],
        "Levels": {
            "0": {"Resolution": [4.0, 4.0, 40.0], "TileSize": [512, 512, 512]},
            "1": {"Resolution": [8.0, 8.0, 80.0], "TileSize": [512, 512, 512]},
            "2": {"Resolution": [16.0, 16.0, 160.0], "TileSize": [512, 512, 512]},
        },
    });
    assert_eq!(srv.get(&p("metadata")).expect(200).json(), derived);
    // Default 512-pixel tiles, and scales only as far as the levels go.
    let r = srv.get(&p("tile/xy/0/2_0_7")).expect(200);
    let (w, h, px) = decode_png(&r.body);
    assert_eq!((w, h), (512, 512));
    assert_eq!(px, expected_tile(&b, "xy", 0, [2, 0, 7], 512, 512));
    let r = srv.get(&p("tile/xy/2/0_0_7")).expect(200);
    let (_, _, px) = decode_png(&r.body);
    let both = |q: [i64; 3]| if q[0] < 512 { a.get(q) } else { b.get(q) };
    let whole = Vol::new([0, 0, 7], [1088, 32, 1], both);
    assert_eq!(px, expected_tile(&whole, "xy", 2, [0, 0, 7], 512, 512));
    let r = srv.get(&p("tile/xy/3/0_0_7")).expect(400);
    assert!(r.text().contains("beyond"), "{}", r.text());
    // Posted metadata wins, per version.
    srv.post_json(&p("metadata"), &small_levels()).expect(200);
    assert_eq!(srv.get(&p("metadata")).expect(200).json(), small_levels());
    srv.commit(&root);
    let child = srv.newversion(&root);
    let other = json!({"Levels": {"0": {"Resolution": [1.0, 1.0, 1.0], "TileSize": [8, 8, 8]}}});
    srv.post_json(&format!("/api/node/{child}/tiles/metadata"), &other)
        .expect(200);
    let got = srv
        .get(&format!("/api/node/{child}/tiles/metadata"))
        .expect(200)
        .json();
    assert_eq!(got["Levels"], other["Levels"]);
    assert_eq!(got["MinTileCoord"], json!([0, 0, 0]));
    assert_eq!(srv.get(&p("metadata")).expect(200).json(), small_levels());
    let r = srv
        .get(&format!("/api/node/{child}/tiles/tile/xy/0/0_0_3"))
        .expect(200);
    assert_eq!(decode_png(&r.body).0, 8);
}

#[test]
fn noblanks_blank_tiles_and_placeholders() {
    let vol = Vol::noise([0, 0, 0], [32, 32, 32], 3);
    let (srv, root) = setup(json!({}), &vol);
    srv.post_json(&format!("/api/node/{root}/tiles/metadata"), &small_levels())
        .expect(200);
    let p = |s: &str| format!("/api/node/{root}/tiles/{s}");
    // A tile where nothing was written: blank, or 404 with noblanks.
    let r = srv.get(&p("tile/xy/4_4_4")).expect_4xx();
    assert_eq!(r.status, 400, "{}", r.text());
    let blank = srv.get(&p("tile/xy/0/4_4_4")).expect(200);
    assert_eq!(decode_png(&blank.body), (32, 16, vec![0u8; 32 * 16]));
    srv.get(&p("tile/xy/0/4_4_4?noblanks=true")).expect(404);
    srv.get(&p("tile/xy/1/4_4_4?noblanks=true")).expect(404);
    srv.get(&p("tile/xy/0/0_0_4?noblanks=true")).expect(200);
    srv.get(&p("tile/xy/1/0_0_4?noblanks=true")).expect(200);
    // Without a source: posted tiles only, blank or placeholders for the rest.
    for (name, settings) in [
        ("stored", json!({})),
        ("holder", json!({"Placeholder": "true"})),
    ] {
        srv.create_instance_with(&root, "imagetile", name, &settings);
        let q = |s: &str| format!("/api/node/{root}/{name}/{s}");
        srv.get(&q("tile/xy/0/0_0_0")).expect(400);
        srv.post_json(&q("metadata"), &small_levels()).expect(200);
        srv.get(&q("tile/xy/0/0_0_0?noblanks=true")).expect(404);
        let (w, h, px) = decode_png(&srv.get(&q("tile/xz/0/0_0_0")).expect(200).body);
        assert_eq!((w, h), (32, 24));
        let values: std::collections::BTreeSet<u8> = px.iter().copied().collect();
        if name == "holder" {
            assert!(values.len() > 1, "a placeholder is patterned");
        } else {
            assert_eq!(values, [0u8].into(), "a missing tile is blank");
        }
        let posted: Vec<u8> = vec![9u8; 32 * 16];
        srv.post(&q("tile/xy/0/0_0_0"), encode_png(32, 16, &posted))
            .expect(200);
        let r = srv.get(&q("tile/xy/0/0_0_0?noblanks=true")).expect(200);
        assert_eq!(decode_png(&r.body).2, posted);
    }
}

#[test]
fn posted_tiles_win_and_appear_in_stitched_images() {
    let vol = Vol::noise([0, 0, 0], [64, 64, 64], 4);
    let (srv, root) = setup(json!({}), &vol);
    srv.post_json(&format!("/api/node/{root}/tiles/metadata"), &small_levels())
        .expect(200);
    let p = |s: &str| format!("/api/node/{root}/tiles/{s}");
    check_tile(&srv, &root, &vol, "xy", 0, [1, 1, 5]);
    let tile: Vec<u8> = (0..32 * 16).map(|i| (i % 7 * 30) as u8).collect();
    let png = encode_png(32, 16, &tile);
    srv.post(&p("tile/xy/0/1_1_5"), png.clone()).expect(200);
    assert_eq!(srv.get(&p("tile/xy/0/1_1_5")).expect(200).body, png);
    check_tile(&srv, &root, &vol, "xy", 0, [0, 1, 5]);
    check_tile(&srv, &root, &vol, "xy", 0, [1, 1, 6]);
    // A stitched image over four tiles: the source, with the posted tile laid over it.
    let (w, h, at) = (48usize, 24usize, [16i64, 8, 5]);
    let r = srv.get(&p("raw/xy/48_24/16_8_5")).expect(200);
    assert_eq!(r.header("content-type").as_deref(), Some("image/png"));
    let (gw, gh, px) = decode_png(&r.body);
    assert_eq!((gw, gh), (w, h));
    for y in 0..h as i64 {
        for x in 0..w as i64 {
            let (vx, vy) = (at[0] + x, at[1] + y);
            let want = if (32..64).contains(&vx) && (16..32).contains(&vy) {
                tile[((vy - 16) * 32 + vx - 32) as usize]
            } else {
                vol.get([vx, vy, 5])
            };
            assert_eq!(px[(y * w as i64 + x) as usize], want, "pixel {vx},{vy}");
        }
    }
    // Format segment and JPEG.
    let r = srv.get(&p("raw/0_1/48_24/16_8_5/jpg:90")).expect(200);
    assert_eq!(r.header("content-type").as_deref(), Some("image/jpeg"));
    assert_eq!(decode_jpeg(&r.body).0, 48);
    // isotropic xz over anisotropic voxels is the source's own isotropic image.
    srv.post_json(
        &format!("/api/node/{root}/grayscale/resolution"),
        &json!([4, 4, 8]),
    )
    .expect(200);
    let iso = "isotropic/xz/40_20/3_9_2";
    let mine = decode_png(&srv.get(&p(iso)).expect(200).body);
    let theirs = decode_png(
        &srv.get(&format!("/api/node/{root}/grayscale/{iso}"))
            .expect(200)
            .body,
    );
    assert_eq!(mine, theirs);
    assert_eq!((mine.0, mine.1), (40, 20));
    // Tiles that don't fit are refused, and change nothing.
    srv.post(&p("tile/xy/0/1_1_5"), encode_png(16, 32, &tile))
        .expect(400);
    srv.post(&p("tile/xy/0/1_1_5"), b"not a png".to_vec())
        .expect(400);
    let jpeg = jpeg_encoder_bytes(32, 16, &tile);
    srv.post(&p("tile/xy/0/1_1_5"), jpeg).expect(400);
    srv.post(&p("tile/xy/3/1_1_5"), png.clone()).expect(400);
    assert_eq!(srv.get(&p("tile/xy/0/1_1_5")).expect(200).body, png);
}

fn jpeg_encoder_bytes(w: usize, h: usize, px: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 90)
        .encode(px, w as u16, h as u16, jpeg_encoder::ColorType::Luma)
        .unwrap();
    out
}

#[test]
fn cached_tiles_follow_source_writes() {
    let mut vol = Vol::noise([0, 0, 0], [64, 64, 64], 5);
    let (srv, root) = setup(json!({}), &vol);
    srv.post_json(&format!("/api/node/{root}/tiles/metadata"), &small_levels())
        .expect(200);
    let watch: &[(&str, u32, [i64; 3])] = &[
        ("xy", 0, [0, 1, 20]),
        ("xy", 1, [0, 0, 20]),
        ("xz", 1, [0, 20, 0]),
        ("yz", 0, [20, 1, 0]),
    ];
    for (plane, scale, coord) in watch {
        check_tile(&srv, &root, &vol, plane, *scale, *coord);
    }
    // Each write is seen by the very next request, cached or not.
    for k in 0..4 {
        let patch = Vol::noise([0, 0, 0], [32, 32, 32], 10 + k);
        patch.post(&srv, &root, "grayscale");
        vol = vol.over(&patch);
        for (plane, scale, coord) in watch {
            check_tile(&srv, &root, &vol, plane, *scale, *coord);
        }
    }
}

#[test]
fn versions_keep_their_own_tiles() {
    let vol = Vol::noise([0, 0, 0], [64, 64, 64], 6);
    let (srv, root) = setup(json!({}), &vol);
    srv.post_json(&format!("/api/node/{root}/tiles/metadata"), &small_levels())
        .expect(200);
    for (plane, coord) in TILES {
        check_tile(&srv, &root, &vol, plane, 1, *coord);
    }
    srv.commit(&root);
    let child = srv.newversion(&root);
    // The child sees the parent's tiles until it writes.
    check_tile(&srv, &child, &vol, "xy", 0, [0, 1, 40]);
    let patch = Vol::noise([32, 0, 32], [32, 64, 32], 7);
    patch.post(&srv, &child, "grayscale");
    let newer = vol.over(&patch);
    for scale in [0, 1] {
        for (plane, coord) in TILES {
            check_tile(&srv, &child, &newer, plane, scale, *coord);
            check_tile(&srv, &root, &vol, plane, scale, *coord);
        }
    }
    // A tile posted in the child stays there.
    let posted = encode_png(32, 16, &[200u8; 32 * 16]);
    srv.post(
        &format!("/api/node/{child}/tiles/tile/xy/0/0_1_40"),
        posted.clone(),
    )
    .expect(200);
    assert_eq!(
        srv.get(&format!("/api/node/{child}/tiles/tile/xy/0/0_1_40"))
            .expect(200)
            .body,
        posted
    );
    check_tile(&srv, &root, &vol, "xy", 0, [0, 1, 40]);
}

#[test]
fn level_instances_are_the_source_of_their_scale() {
    let vol = Vol::noise([0, 0, 0], [64, 64, 64], 8);
    let (srv, root) = setup(json!({}), &vol);
    srv.post_json(&format!("/api/node/{root}/tiles/metadata"), &small_levels())
        .expect(200);
    // No level yet: the in-plane mean.
    check_tile(&srv, &root, &vol, "xy", 1, [0, 0, 21]);
    // grayscale_1, built from grayscale: scale-1 tiles are its voxels, at z 21 >> 1.
    srv.create_instance_with(
        &root,
        "uint8blk",
        "grayscale_1",
        &json!({"BlockSize": "32,32,32"}),
    );
    srv.post_json(
        &format!("/api/node/{root}/grayscale_1/sync"),
        &json!({"sync": "grayscale"}),
    )
    .expect(200);
    srv.post_empty(&format!("/api/node/{root}/grayscale_1/resync"))
        .expect(200);
    caught_up(&srv);
    let level_tile = |srv: &Server| {
        let slice = srv
            .get(&format!(
                "/api/node/{root}/grayscale_1/raw/0_1_2/32_16_1/0_0_10"
            ))
            .expect(200)
            .body;
        let r = srv
            .get(&format!("/api/node/{root}/tiles/tile/xy/1/0_0_21"))
            .expect(200);
        let (w, h, px) = decode_png(&r.body);
        assert_eq!((w, h), (32, 16));
        assert_eq!(px, slice, "scale 1 is grayscale_1's plane 10");
        px
    };
    let before = level_tile(&srv);
    // A write to the source reaches the level, and the tile follows the level.
    Vol::noise([0, 0, 0], [64, 64, 64], 9).post(&srv, &root, "grayscale");
    caught_up(&srv);
    let after = level_tile(&srv);
    assert_ne!(before, after);
    // Scale 0 still comes from the source.
    check_tile(
        &srv,
        &root,
        &Vol::noise([0, 0, 0], [64, 64, 64], 9),
        "xy",
        0,
        [0, 0, 21],
    );
}

#[test]
fn source_setting_names_the_source() {
    let srv = Server::start();
    let root = srv.create_repo("tiles");
    srv.create_instance_with(
        &root,
        "uint8blk",
        "grayscale",
        &json!({"BlockSize": "32,32,32"}),
    );
    let vol = Vol::noise([0, 0, 0], [32, 32, 32], 11);
    vol.post(&srv, &root, "grayscale");
    srv.create_instance_with(&root, "imagetile", "tiles", &json!({"Source": "grayscale"}));
    srv.post_json(&format!("/api/node/{root}/tiles/metadata"), &small_levels())
        .expect(200);
    check_tile(&srv, &root, &vol, "yz", 1, [3, 0, 0]);
    let info = srv
        .get(&format!("/api/node/{root}/tiles/info"))
        .expect(200)
        .json();
    assert_eq!(info["Extended"]["Source"], "grayscale");
}

#[test]
fn tilekey_is_dvids_tile_key() {
    let vol = Vol::noise([0, 0, 0], [32, 32, 32], 12);
    let (srv, root) = setup(json!({}), &vol);
    let r = srv
        .get(&format!("/api/node/{root}/tiles/tilekey/xz/2/1_-1_3"))
        .expect(200)
        .json();
    assert_eq!(
        r,
        json!({"key": "030200020000000203800000037fffffff80000001"})
    );
}

#[test]
fn bad_input_is_refused_and_writes_nothing() {
    let vol = Vol::noise([0, 0, 0], [32, 32, 32], 13);
    let (srv, root) = setup(json!({}), &vol);
    let p = |s: &str| format!("/api/node/{root}/tiles/{s}");
    srv.post_json(&p("metadata"), &small_levels()).expect(200);
    let good = srv.get(&p("tile/xy/0/0_0_3")).expect(200).body;
    let refuse = |r: Response, needle: &str| {
        assert_eq!(r.status, 400, "{}: {}", r.what, r.text());
        assert!(
            r.text().to_lowercase().contains(needle),
            "{}: {:?} lacks {needle:?}",
            r.what,
            r.text()
        );
    };
    for kw in ["tile", "tilekey"] {
        refuse(srv.get(&p(&format!("{kw}/xw/0/0_0_0"))), "plane");
        refuse(srv.get(&p(&format!("{kw}/xy/-1/0_0_0"))), "scale");
        refuse(srv.get(&p(&format!("{kw}/xy/a/0_0_0"))), "scale");
        refuse(srv.get(&p(&format!("{kw}/xy/0/0_0"))), "coordinate");
        refuse(srv.get(&p(&format!("{kw}/xy/0/0_x_0"))), "coordinate");
        refuse(srv.get(&p(&format!("{kw}/xy/0"))), "expected");
    }
    refuse(srv.get(&p("tile/xy/3/0_0_0")), "beyond");
    refuse(srv.get(&p("raw/0_1_2/8_8_8/0_0_0")), "2-d");
    refuse(srv.get(&p("raw/xy/8_8/0_0_0/gif")), "format");
    refuse(srv.get(&p("raw/xy/8_-8/0_0_0")), "size");
    refuse(srv.post(&p("raw/xy/8_8/0_0_0"), vec![0u8; 64]), "tiles");
    refuse(
        srv.post(&p("tile/xw/0/0_0_3"), encode_png(32, 16, &[1; 512])),
        "plane",
    );
    refuse(srv.post(&p("tile/xy/0/0_0_3"), b"GIF89a".to_vec()), "png");
    // Bad metadata changes nothing.
    for bad in [
        json!({"Levels": {}}),
        json!({"Levels": {"0": {"Resolution": [8, 8, 8], "TileSize": [32, 0, 32]}}}),
        json!({"Levels": {"1": {"Resolution": [8, 8, 8], "TileSize": [32, 32, 32]}}}),
        json!({"Levels": {"0": {"Resolution": [8, 8], "TileSize": [32, 32, 32]}}}),
        json!([1, 2, 3]),
    ] {
        refuse(srv.post_json(&p("metadata"), &bad), "metadata");
    }
    refuse(srv.post(&p("metadata"), b"{".to_vec()), "json");
    assert_eq!(srv.get(&p("metadata")).expect(200).json(), small_levels());
    assert_eq!(srv.get(&p("tile/xy/0/0_0_3")).expect(200).body, good);
    // Settings, syncs.
    for (bad, needle) in [
        (json!({"Format": "gif"}), "format"),
        (json!({"Placeholder": "maybe"}), "placeholder"),
        (
            json!({"Format": "png", "Compression": "gzip"}),
            "compression",
        ),
    ] {
        let mut s = bad.clone();
        s["typename"] = json!("imagetile");
        s["dataname"] = json!("bad");
        refuse(
            srv.post_json(&format!("/api/repo/{root}/instance"), &s),
            needle,
        );
    }
    srv.create_instance(&root, "keyvalue", "kv");
    refuse(srv.post_json(&p("sync"), &json!({"sync": "kv"})), "sync");
    srv.create_instance_with(&root, "uint8blk", "other", &json!({}));
    srv.post_json(&p("sync"), &json!({"sync": "other"}))
        .expect(200);
    refuse(srv.get(&p("tile/xy/0/0_0_3")), "syncs to 2");
    srv.post_json(&p("sync?replace=true"), &json!({"sync": "grayscale"}))
        .expect(200);
    assert_eq!(srv.get(&p("tile/xy/0/0_0_3")).expect(200).body, good);
    // Past 2^26 voxels a scale needs its level instance.
    let big = json!({"Levels": {
        "0": {"Resolution": [8.0, 8.0, 8.0], "TileSize": [8192, 8192, 8192]},
        "1": {"Resolution": [16.0, 16.0, 16.0], "TileSize": [8192, 8192, 8192]},
    }});
    srv.post_json(&p("metadata"), &big).expect(200);
    refuse(srv.get(&p("tile/xy/1/0_0_3")), "grayscale_1");
}

#[test]
fn cached_tiles_stay_current_across_a_restart() {
    let vol = Vol::noise([0, 0, 0], [32, 32, 32], 14);
    let (mut srv, root) = setup(json!({}), &vol);
    srv.post_json(&format!("/api/node/{root}/tiles/metadata"), &small_levels())
        .expect(200);
    check_tile(&srv, &root, &vol, "xz", 0, [0, 4, 0]);
    check_tile(&srv, &root, &vol, "xz", 1, [0, 4, 0]);
    srv.restart();
    // The subscription is back before any request: the first write is seen.
    let newer = Vol::noise([0, 0, 0], [32, 32, 32], 15);
    newer.post(&srv, &root, "grayscale");
    check_tile(&srv, &root, &newer, "xz", 0, [0, 4, 0]);
    check_tile(&srv, &root, &newer, "xz", 1, [0, 4, 0]);
    srv.restart();
    check_tile(&srv, &root, &newer, "xz", 1, [0, 4, 0]);
}

#[test]
fn a_write_is_seen_before_its_event_is_applied() {
    // Sync workers held: stamps can't move, so only the pending-event check keeps the cache
    // from serving what the write replaced.
    let mut srv = Server::builder().env("TESSERA_SYNC_HOLD", "1").start();
    let root = srv.create_repo("tiles");
    srv.create_instance_with(
        &root,
        "uint8blk",
        "grayscale",
        &json!({"BlockSize": "32,32,32"}),
    );
    let vol = Vol::noise([0, 0, 0], [32, 32, 32], 16);
    vol.post(&srv, &root, "grayscale");
    srv.create_instance_with(&root, "imagetile", "tiles", &json!({}));
    srv.post_json(
        &format!("/api/node/{root}/tiles/sync"),
        &json!({"sync": "grayscale"}),
    )
    .expect(200);
    srv.post_json(&format!("/api/node/{root}/tiles/metadata"), &small_levels())
        .expect(200);
    check_tile(&srv, &root, &vol, "xy", 0, [0, 0, 3]);
    check_tile(&srv, &root, &vol, "xy", 0, [0, 0, 3]);
    let newer = Vol::noise([0, 0, 0], [32, 32, 32], 17);
    newer.post(&srv, &root, "grayscale");
    check_tile(&srv, &root, &newer, "xy", 0, [0, 0, 3]);
    // Released, the worker stamps the write and the tile is cached again.
    srv.remove_env("TESSERA_SYNC_HOLD");
    srv.restart();
    caught_up(&srv);
    check_tile(&srv, &root, &newer, "xy", 0, [0, 0, 3]);
    check_tile(&srv, &root, &newer, "xy", 0, [0, 0, 3]);
}

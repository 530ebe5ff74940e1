//! `tessera load`, run as a user would against a real server: every input kind is loaded into
//! an image instance and read back with `GET raw/0_1_2`, byte for byte.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tessera_tests::mesh::write_npy;
use tessera_tests::{Server, binary_path, json};

/// x, y, z.
type Dims = [usize; 3];

fn load(srv: &Server, uuid: &str, instance: &str, input: &Path, extra: &[&str]) -> Output {
    Command::new(binary_path())
        .arg("load")
        .arg(input)
        .args(["--server", srv.base_url(), "--uuid", uuid])
        .args(["--instance", instance, "--quiet"])
        .args(extra)
        .output()
        .expect("running tessera load")
}

#[track_caller]
fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "tessera load failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[track_caller]
fn fails(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "expected a failure mentioning {needle:?}, got success: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.contains(needle),
        "stderr {stderr:?} does not mention {needle:?}"
    );
}

/// `GET raw/0_1_2/<size>/<offset>`.
#[track_caller]
fn get_raw(srv: &Server, uuid: &str, inst: &str, size: Dims, offset: [i64; 3]) -> Vec<u8> {
    let r = srv
        .get(&format!(
            "/api/node/{uuid}/{inst}/raw/0_1_2/{}_{}_{}/{}_{}_{}",
            size[0], size[1], size[2], offset[0], offset[1], offset[2]
        ))
        .expect(200);
    r.body
}

/// Deterministic bytes that vary in every direction, none of them zero.
fn pattern(n: usize, seed: u64) -> Vec<u8> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % 255) as u8 + 1
        })
        .collect()
}

fn voxels(d: Dims) -> usize {
    d.iter().product()
}

fn npy_u8(path: &Path, d: Dims, data: &[u8]) {
    write_npy(path, "|u1", [d[2], d[1], d[0]], data);
}

fn start(alias: &str) -> (Server, String) {
    let srv = Server::start();
    let uuid = srv.create_repo(alias);
    (srv, uuid)
}

fn block_size(srv: &Server, uuid: &str, inst: &str) -> serde_json::Value {
    srv.get(&format!("/api/node/{uuid}/{inst}/info"))
        .expect(200)
        .json()["Extended"]["BlockSize"]
        .clone()
}

#[test]
fn npy_uint8_of_unaligned_size_round_trips_at_an_offset() {
    let (srv, uuid) = start("npy8");
    let dir = tempfile::tempdir().unwrap();
    let d = [100, 70, 50];
    let data = pattern(voxels(d), 1);
    let input = dir.path().join("vol.npy");
    npy_u8(&input, d, &data);
    let args = [
        "--block-size",
        "32",
        "--offset",
        "10,20,30",
        "--compression",
        "lz4",
    ];
    let stdout = ok(&load(&srv, &uuid, "grayscale", &input, &args));
    assert!(stdout.contains("0 slabs skipped"), "{stdout}");
    assert!(
        !dir.path().join("vol.npy.tessera-load").exists(),
        "the resume file is removed on success"
    );
    let info = srv
        .get(&format!("/api/node/{uuid}/grayscale/info"))
        .expect(200)
        .json();
    assert_eq!(info["Base"]["TypeName"], "uint8blk");
    assert_eq!(info["Extended"]["BlockSize"], json!([32, 32, 32]));
    assert_eq!(get_raw(&srv, &uuid, "grayscale", d, [10, 20, 30]), data);
    // The padding of the slabs' boxes (0..128, 0..96, 0..96) reads as zeros.
    let all = get_raw(&srv, &uuid, "grayscale", [128, 96, 96], [0, 0, 0]);
    let inside = |x: usize, y: usize, z: usize| {
        (10..110).contains(&x) && (20..90).contains(&y) && (30..80).contains(&z)
    };
    for (i, &v) in all.iter().enumerate() {
        let (x, y, z) = (i % 128, i / 128 % 96, i / (128 * 96));
        if inside(x, y, z) {
            assert_eq!(v, data[((z - 30) * 70 + y - 20) * 100 + x - 10]);
        } else {
            assert_eq!(v, 0, "padding at ({x}, {y}, {z})");
        }
    }
}

#[test]
fn wide_slabs_go_as_bands_of_block_rows() {
    let (srv, uuid) = start("bands");
    let dir = tempfile::tempdir().unwrap();
    // Slabs of 224×160×32 voxels (1.1 MiB) over a 1 MiB request limit: bands of 4 block rows
    // (224×128×32) and 1 (224×32×32).
    let d = [200, 150, 40];
    let data = pattern(voxels(d), 11);
    let input = dir.path().join("wide.npy");
    npy_u8(&input, d, &data);
    let args = ["--block-size", "32", "--max-request-mb", "1"];
    let stdout = ok(&load(&srv, &uuid, "wide", &input, &args));
    assert!(stdout.contains("2 slabs (4 requests)"), "{stdout}");
    assert_eq!(get_raw(&srv, &uuid, "wide", d, [0, 0, 0]), data);
}

#[test]
fn npy_uint16_creates_a_uint16blk() {
    let (srv, uuid) = start("npy16");
    let dir = tempfile::tempdir().unwrap();
    let d = [40, 30, 20];
    let vals: Vec<u16> = pattern(voxels(d) * 2, 2)
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let raw: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
    let input = dir.path().join("vol16.npy");
    write_npy(&input, "<u2", [d[2], d[1], d[0]], &raw);
    ok(&load(&srv, &uuid, "em16", &input, &["--block-size", "16"]));
    let info = srv
        .get(&format!("/api/node/{uuid}/em16/info"))
        .expect(200)
        .json();
    assert_eq!(info["Base"]["TypeName"], "uint16blk");
    assert_eq!(get_raw(&srv, &uuid, "em16", d, [0, 0, 0]), raw);
}

fn write_png(path: &Path, w: usize, h: usize, pixels: &[u8]) {
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut enc = png::Encoder::new(file, w as u32, h as u32);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().unwrap();
    writer.write_image_data(pixels).unwrap();
    writer.finish().unwrap();
}

fn write_tiff16(path: &Path, w: usize, h: usize, pixels: &[u16]) {
    let file = std::fs::File::create(path).unwrap();
    let mut enc = tiff::encoder::TiffEncoder::new(file).unwrap();
    enc.write_image::<tiff::encoder::colortype::Gray16>(w as u32, h as u32, pixels)
        .unwrap();
}

fn write_tiff8(path: &Path, w: usize, h: usize, pixels: &[u8]) {
    let file = std::fs::File::create(path).unwrap();
    let mut enc = tiff::encoder::TiffEncoder::new(file).unwrap();
    enc.write_image::<tiff::encoder::colortype::Gray8>(w as u32, h as u32, pixels)
        .unwrap();
}

#[test]
fn png_slices_load_in_file_name_order() {
    let (srv, uuid) = start("png");
    let dir = tempfile::tempdir().unwrap();
    let slices = dir.path().join("slices");
    std::fs::create_dir(&slices).unwrap();
    let d = [50, 40, 20];
    let data = pattern(voxels(d), 3);
    let plane = d[0] * d[1];
    // Written out of order; names sort as z.
    for z in (0..d[2]).rev() {
        let p = slices.join(format!("slice_{z:04}.png"));
        write_png(&p, d[0], d[1], &data[z * plane..(z + 1) * plane]);
    }
    std::fs::write(slices.join("README.txt"), "not a slice").unwrap();
    ok(&load(&srv, &uuid, "gray", &slices, &["--block-size", "16"]));
    assert_eq!(get_raw(&srv, &uuid, "gray", d, [0, 0, 0]), data);
    assert!(!dir.path().join("slices.tessera-load").exists());
}

#[test]
fn tiff_slices_of_8_and_16_bits() {
    let (srv, uuid) = start("tiff");
    let dir = tempfile::tempdir().unwrap();
    let d = [33, 17, 12];
    let plane = d[0] * d[1];
    let s8 = dir.path().join("t8");
    let s16 = dir.path().join("t16");
    std::fs::create_dir(&s8).unwrap();
    std::fs::create_dir(&s16).unwrap();
    let data8 = pattern(voxels(d), 4);
    let data16: Vec<u16> = pattern(voxels(d), 5)
        .iter()
        .zip(pattern(voxels(d), 6))
        .map(|(&a, b)| u16::from_le_bytes([a, b]))
        .collect();
    for z in 0..d[2] {
        write_tiff8(
            &s8.join(format!("{z:03}.tif")),
            d[0],
            d[1],
            &data8[z * plane..(z + 1) * plane],
        );
        write_tiff16(
            &s16.join(format!("{z:03}.tiff")),
            d[0],
            d[1],
            &data16[z * plane..(z + 1) * plane],
        );
    }
    ok(&load(&srv, &uuid, "t8", &s8, &["--block-size", "16"]));
    assert_eq!(get_raw(&srv, &uuid, "t8", d, [0, 0, 0]), data8);
    ok(&load(&srv, &uuid, "t16", &s16, &["--block-size", "16"]));
    let want: Vec<u8> = data16.iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(get_raw(&srv, &uuid, "t16", d, [0, 0, 0]), want);
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Writes a raw-encoded precomputed volume: chunks of `chunk` voxels, every other one gzipped
/// (alternately with and without a `.gz` suffix).
fn write_precomputed(dir: &Path, d: Dims, offset: [i64; 3], chunk: Dims, data: &[u8]) {
    std::fs::write(
        dir.join("info"),
        json!({
            "@type": "neuroglancer_multiscale_volume", "type": "image",
            "data_type": "uint8", "num_channels": 1,
            "scales": [
                {"key": "8_8_8", "size": d, "voxel_offset": offset, "resolution": [8, 8, 8],
                 "chunk_sizes": [chunk], "encoding": "raw"},
                {"key": "16_16_16", "size": [d[0] / 2, d[1] / 2, d[2] / 2],
                 "voxel_offset": [0, 0, 0], "resolution": [16, 16, 16],
                 "chunk_sizes": [chunk], "encoding": "raw"}
            ]
        })
        .to_string(),
    )
    .unwrap();
    let scale = dir.join("8_8_8");
    std::fs::create_dir(&scale).unwrap();
    let mut n = 0;
    for z0 in (0..d[2]).step_by(chunk[2]) {
        for y0 in (0..d[1]).step_by(chunk[1]) {
            for x0 in (0..d[0]).step_by(chunk[0]) {
                let hi = [
                    (x0 + chunk[0]).min(d[0]),
                    (y0 + chunk[1]).min(d[1]),
                    (z0 + chunk[2]).min(d[2]),
                ];
                let mut bytes = Vec::new();
                for z in z0..hi[2] {
                    for y in y0..hi[1] {
                        let at = (z * d[1] + y) * d[0];
                        bytes.extend_from_slice(&data[at + x0..at + hi[0]]);
                    }
                }
                let name = format!(
                    "{}-{}_{}-{}_{}-{}",
                    offset[0] + x0 as i64,
                    offset[0] + hi[0] as i64,
                    offset[1] + y0 as i64,
                    offset[1] + hi[1] as i64,
                    offset[2] + z0 as i64,
                    offset[2] + hi[2] as i64
                );
                match n % 3 {
                    0 => std::fs::write(scale.join(name), bytes),
                    1 => std::fs::write(scale.join(format!("{name}.gz")), gzip(&bytes)),
                    _ => std::fs::write(scale.join(name), gzip(&bytes)),
                }
                .unwrap();
                n += 1;
            }
        }
    }
}

#[test]
fn precomputed_raw_loads_at_its_voxel_offset() {
    let (srv, uuid) = start("precomputed");
    let dir = tempfile::tempdir().unwrap();
    let vol = dir.path().join("vol");
    std::fs::create_dir(&vol).unwrap();
    let d = [70, 45, 40];
    let offset = [16, 32, 8];
    let data = pattern(voxels(d), 7);
    write_precomputed(&vol, d, offset, [32, 32, 24], &data);
    let stdout = ok(&load(&srv, &uuid, "ng", &vol, &["--block-size", "32"]));
    assert!(stdout.contains("precomputed"), "{stdout}");
    assert_eq!(get_raw(&srv, &uuid, "ng", d, offset), data);
}

#[test]
fn precomputed_jpeg_chunks_decode() {
    let (srv, uuid) = start("jpeg");
    let dir = tempfile::tempdir().unwrap();
    let vol = dir.path().join("vol");
    std::fs::create_dir_all(vol.join("s0")).unwrap();
    // Constant 8×8 tiles, which JPEG at quality 100 keeps (to within a level).
    let (d, chunk) = ([64, 48, 16], [32, 24, 8]);
    let tile = pattern(8 * 6 * 16, 12);
    let data: Vec<u8> = (0..voxels(d))
        .map(|i| {
            let (x, y, z) = (i % 64, i / 64 % 48, i / (64 * 48));
            tile[(z * 6 + y / 8) * 8 + x / 8]
        })
        .collect();
    std::fs::write(
        vol.join("info"),
        json!({
            "type": "image", "data_type": "uint8", "num_channels": 1,
            "scales": [{"key": "s0", "size": d, "voxel_offset": [0, 0, 0],
                "resolution": [4, 4, 40], "chunk_sizes": [chunk], "encoding": "jpeg"}]
        })
        .to_string(),
    )
    .unwrap();
    for z0 in (0..d[2]).step_by(chunk[2]) {
        for y0 in (0..d[1]).step_by(chunk[1]) {
            for x0 in (0..d[0]).step_by(chunk[0]) {
                // One image chunk[0] wide and chunk[1]·chunk[2] tall.
                let mut px = Vec::new();
                for z in z0..z0 + chunk[2] {
                    for y in y0..y0 + chunk[1] {
                        let at = (z * d[1] + y) * d[0] + x0;
                        px.extend_from_slice(&data[at..at + chunk[0]]);
                    }
                }
                let mut jpeg = Vec::new();
                jpeg_encoder::Encoder::new(&mut jpeg, 100)
                    .encode(
                        &px,
                        chunk[0] as u16,
                        (chunk[1] * chunk[2]) as u16,
                        jpeg_encoder::ColorType::Luma,
                    )
                    .unwrap();
                let name = format!(
                    "{x0}-{}_{y0}-{}_{z0}-{}",
                    x0 + chunk[0],
                    y0 + chunk[1],
                    z0 + chunk[2]
                );
                std::fs::write(vol.join("s0").join(name), jpeg).unwrap();
            }
        }
    }
    ok(&load(&srv, &uuid, "ngj", &vol, &["--block-size", "16"]));
    let got = get_raw(&srv, &uuid, "ngj", d, [0, 0, 0]);
    for (i, (&g, &w)) in got.iter().zip(&data).enumerate() {
        assert!(g.abs_diff(w) <= 1, "voxel {i}: {g}, the JPEG held {w}");
    }
}

fn zarr_chunks(d: Dims, chunk: Dims, data: &[u8], mut put: impl FnMut([usize; 3], Vec<u8>)) {
    for cz in 0..d[2].div_ceil(chunk[2]) {
        for cy in 0..d[1].div_ceil(chunk[1]) {
            for cx in 0..d[0].div_ceil(chunk[0]) {
                // C order over (z, y, x), padded to whole chunks.
                let mut bytes = Vec::new();
                for z in cz * chunk[2]..(cz + 1) * chunk[2] {
                    for y in cy * chunk[1]..(cy + 1) * chunk[1] {
                        for x in cx * chunk[0]..(cx + 1) * chunk[0] {
                            bytes.push(if x < d[0] && y < d[1] && z < d[2] {
                                data[(z * d[1] + y) * d[0] + x]
                            } else {
                                0
                            });
                        }
                    }
                }
                put([cz, cy, cx], bytes);
            }
        }
    }
}

#[test]
fn zarr_v2_and_v3_arrays_load() {
    let (srv, uuid) = start("zarr");
    let dir = tempfile::tempdir().unwrap();
    let d = [45, 38, 30];
    let chunk = [20, 16, 12];
    let data = pattern(voxels(d), 8);

    let v2 = dir.path().join("v2.zarr");
    std::fs::create_dir(&v2).unwrap();
    std::fs::write(
        v2.join(".zarray"),
        json!({
            "zarr_format": 2, "shape": [d[2], d[1], d[0]],
            "chunks": [chunk[2], chunk[1], chunk[0]], "dtype": "|u1",
            "compressor": {"id": "gzip", "level": 1}, "fill_value": 0, "order": "C",
            "filters": null
        })
        .to_string(),
    )
    .unwrap();
    zarr_chunks(d, chunk, &data, |[z, y, x], bytes| {
        std::fs::write(v2.join(format!("{z}.{y}.{x}")), gzip(&bytes)).unwrap();
    });
    ok(&load(&srv, &uuid, "z2", &v2, &["--block-size", "16"]));
    assert_eq!(get_raw(&srv, &uuid, "z2", d, [0, 0, 0]), data);

    // v3 with a leading channel axis of 1, default "c/…" keys, uncompressed chunks.
    let v3 = dir.path().join("v3.zarr");
    std::fs::create_dir(&v3).unwrap();
    std::fs::write(
        v3.join("zarr.json"),
        json!({
            "zarr_format": 3, "node_type": "array", "shape": [1, d[2], d[1], d[0]],
            "data_type": "uint8",
            "chunk_grid": {"name": "regular",
                "configuration": {"chunk_shape": [1, chunk[2], chunk[1], chunk[0]]}},
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
            "fill_value": 0, "codecs": [{"name": "bytes"}]
        })
        .to_string(),
    )
    .unwrap();
    zarr_chunks(d, chunk, &data, |[z, y, x], bytes| {
        let p = v3.join(format!("c/0/{z}/{y}"));
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join(x.to_string()), bytes).unwrap();
    });
    ok(&load(
        &srv,
        &uuid,
        "z3",
        &v3,
        &["--block-size", "16", "--offset", "-16,0,32"],
    ));
    assert_eq!(get_raw(&srv, &uuid, "z3", d, [-16, 0, 32]), data);
}

/// One 2×2×2 mean level of a volume of `d` voxels (even sizes): `(sum + 4) / 8`, the
/// engine's rounding of full windows.
fn mean_level(v: &[u8], d: Dims) -> Vec<u8> {
    let h = [d[0] / 2, d[1] / 2, d[2] / 2];
    let mut out = Vec::with_capacity(voxels(h));
    for z in 0..h[2] {
        for y in 0..h[1] {
            for x in 0..h[0] {
                let mut sum = 0u32;
                for (dx, dy, dz) in (0..8).map(|i| (i & 1, (i >> 1) & 1, i >> 2)) {
                    sum += v[((2 * z + dz) * d[1] + 2 * y + dy) * d[0] + 2 * x + dx] as u32;
                }
                out.push(((sum + 4) / 8) as u8);
            }
        }
    }
    out
}

#[test]
fn pyramid_levels_are_means_of_the_padded_level_below() {
    let (srv, uuid) = start("pyramid");
    let dir = tempfile::tempdir().unwrap();
    let d = [100, 70, 50];
    let offset = [40usize, 8, 16];
    let data = pattern(voxels(d), 9);
    let input = dir.path().join("gray.npy");
    npy_u8(&input, d, &data);
    let args = [
        "--block-size",
        "32",
        "--offset",
        "40,8,16",
        "--pyramid",
        "2",
        "--compute",
        "cpu",
    ];
    ok(&load(&srv, &uuid, "grayscale", &input, &args));
    // Level 0 over a region holding every written block (0..160, 0..96, 0..96), zeros
    // around the volume; each level down is the mean of the one above over the whole region.
    let region = [256, 128, 128];
    let mut level = vec![0u8; voxels(region)];
    for z in 0..d[2] {
        for y in 0..d[1] {
            let at = ((z + offset[2]) * region[1] + y + offset[1]) * region[0] + offset[0];
            level[at..at + d[0]].copy_from_slice(&data[(z * d[1] + y) * d[0]..][..d[0]]);
        }
    }
    let mut dims = region;
    for k in 0..=2 {
        let name = if k == 0 {
            "grayscale".to_string()
        } else {
            format!("grayscale_{k}")
        };
        if k > 0 {
            level = mean_level(&level, dims);
            dims = [dims[0] / 2, dims[1] / 2, dims[2] / 2];
            assert_eq!(block_size(&srv, &uuid, &name), json!([32, 32, 32]));
        }
        let got = get_raw(&srv, &uuid, &name, dims, [0, 0, 0]);
        if let Some(i) = (0..got.len()).find(|&i| got[i] != level[i]) {
            let (x, y, z) = (i % dims[0], i / dims[0] % dims[1], i / (dims[0] * dims[1]));
            panic!(
                "{name}: voxel ({x}, {y}, {z}) is {}, the mean of the level below is {}",
                got[i], level[i]
            );
        }
    }
}

#[test]
fn client_levels_equal_the_levels_a_server_sync_keeps() {
    let (srv, uuid) = start("sync");
    let dir = tempfile::tempdir().unwrap();
    let d = [90, 60, 70];
    let data = pattern(voxels(d), 13);
    let input = dir.path().join("gray.npy");
    npy_u8(&input, d, &data);
    // The server keeps synced_1 and synced_2 the means of synced, as it is written ...
    let bs = json!({"BlockSize": "32,32,32"});
    for name in ["synced", "synced_1", "synced_2"] {
        srv.create_instance_with(&uuid, "uint8blk", name, &bs);
    }
    for (level, source) in [("synced_1", "synced"), ("synced_2", "synced_1")] {
        srv.post_json(
            &format!("/api/node/{uuid}/{level}/sync"),
            &json!({"sync": source}),
        )
        .expect(200);
    }
    let at = ["--offset", "-20,33,7", "--block-size", "32"];
    ok(&load(&srv, &uuid, "synced", &input, &at));
    // ... and the loader computes them itself.
    let mut args = at.to_vec();
    args.extend_from_slice(&["--pyramid", "2", "--compute", "cpu"]);
    ok(&load(&srv, &uuid, "client", &input, &args));
    let s = srv.get("/api/server/sync?wait=120").expect(200).json();
    assert_eq!(s["CaughtUp"], json!(true), "sync not caught up: {s}");
    for k in 1..=2 {
        let region = [256 >> k, 256 >> k, 256 >> k];
        let corner = [-128 >> k, -128 >> k, -128 >> k];
        let server = get_raw(&srv, &uuid, &format!("synced_{k}"), region, corner);
        let client = get_raw(&srv, &uuid, &format!("client_{k}"), region, corner);
        assert!(server.iter().any(|&v| v != 0), "level {k} is empty");
        assert!(
            server == client,
            "level {k}: the loader's means differ from the server's"
        );
    }
}

/// The key a resume file must carry for this load: asked of `tessera load` itself, by
/// handing it a resume file of another load.
fn resume_key(srv: &Server, uuid: &str, inst: &str, input: &Path, extra: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other");
    std::fs::write(&other, "tessera-load 1 server=elsewhere\n").unwrap();
    let mut args = vec!["--resume-file", other.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = load(srv, uuid, inst, input, &args);
    fails(&out, "belongs to a different load");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("this is: "))
        .unwrap_or_else(|| panic!("no key in {stderr:?}"))
        .to_string()
}

#[test]
fn a_rerun_skips_the_slabs_the_resume_file_holds() {
    let (srv, uuid) = start("resume");
    let dir = tempfile::tempdir().unwrap();
    let d = [64, 64, 96];
    let data = pattern(voxels(d), 10);
    let input = dir.path().join("vol.npy");
    npy_u8(&input, d, &data);
    srv.create_instance_with(&uuid, "uint8blk", "gray", &json!({"BlockSize": "32,32,32"}));
    // Slab 0 (z 0..32) already holds other data, which the resume file says is loaded.
    let sevens = vec![7u8; 64 * 64 * 32];
    srv.post(
        &format!("/api/node/{uuid}/gray/raw/0_1_2/64_64_32/0_0_0"),
        sevens.clone(),
    )
    .expect(200);
    let key = resume_key(&srv, &uuid, "gray", &input, &[]);
    let resume = PathBuf::from(format!("{}.tessera-load", input.display()));
    std::fs::write(&resume, format!("tessera-load 1 {key}\nslab 0 0\n")).unwrap();
    let stdout = ok(&load(&srv, &uuid, "gray", &input, &[]));
    assert!(stdout.contains("1 slabs skipped"), "{stdout}");
    assert!(!resume.exists(), "removed after the load");
    let got = get_raw(&srv, &uuid, "gray", d, [0, 0, 0]);
    let plane = 64 * 64;
    assert!(
        got[..32 * plane] == sevens[..],
        "the skipped slab was written"
    );
    assert!(
        got[32 * plane..] == data[32 * plane..],
        "slabs 1 and 2 differ"
    );
}

#[test]
fn bad_inputs_fail_clearly() {
    let (srv, uuid) = start("bad");
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);

    write_npy(&p("flat.npy"), "|u1", [1, 4, 4], &[1; 16]);
    let mut two_d = std::fs::read(p("flat.npy")).unwrap();
    let at = two_d.windows(9).position(|w| w == b"(1, 4, 4)").unwrap();
    two_d.splice(at..at + 9, *b"(4, 4)   ");
    std::fs::write(p("2d.npy"), two_d).unwrap();
    fails(&load(&srv, &uuid, "g", &p("2d.npy"), &[]), "3 dimensions");
    write_npy(&p("f4.npy"), "<f4", [1, 2, 2], &[0; 16]);
    fails(&load(&srv, &uuid, "g", &p("f4.npy"), &[]), "dtype");
    write_npy(&p("u4.npy"), "<u4", [1, 2, 2], &[0; 16]);
    fails(
        &load(&srv, &uuid, "g", &p("u4.npy"), &[]),
        "uint32 arrays cannot be loaded",
    );

    std::fs::write(p("notes.txt"), "hello").unwrap();
    fails(
        &load(&srv, &uuid, "g", &p("notes.txt"), &[]),
        "unknown input kind",
    );
    std::fs::create_dir(p("empty")).unwrap();
    fails(
        &load(&srv, &uuid, "g", &p("empty"), &[]),
        "unknown input kind",
    );

    std::fs::create_dir(p("mixed")).unwrap();
    write_png(&p("mixed/a.png"), 8, 8, &[5; 64]);
    write_png(&p("mixed/b.png"), 8, 6, &[5; 48]);
    fails(&load(&srv, &uuid, "g", &p("mixed"), &[]), "the same size");

    std::fs::create_dir(p("blosc.zarr")).unwrap();
    std::fs::write(
        p("blosc.zarr/.zarray"),
        r#"{"zarr_format": 2, "shape": [2, 2, 2], "chunks": [2, 2, 2], "dtype": "|u1",
            "compressor": {"id": "blosc", "cname": "lz4"}, "fill_value": 0, "order": "C",
            "filters": null}"#,
    )
    .unwrap();
    fails(
        &load(&srv, &uuid, "g", &p("blosc.zarr"), &[]),
        "compressor blosc is not supported",
    );

    write_npy(&p("u2.npy"), "<u2", [2, 2, 2], &[0; 16]);
    fails(
        &load(&srv, &uuid, "g", &p("u2.npy"), &["--pyramid", "1"]),
        "--pyramid needs uint8",
    );
    fails(
        &load(&srv, &uuid, "g", &p("u2.npy"), &["--type", "uint8blk"]),
        "--type uint8blk takes uint8",
    );

    // An instance of another type keeps its type: the load refuses it.
    write_npy(&p("u8.npy"), "|u1", [2, 2, 2], &[1; 8]);
    srv.create_instance(&uuid, "uint16blk", "sixteen");
    fails(
        &load(&srv, &uuid, "sixteen", &p("u8.npy"), &[]),
        "is uint16blk",
    );

    // The server's own message comes through.
    let out = load(
        &srv,
        "0123456789abcdef0123456789abcdef",
        "g",
        &p("u8.npy"),
        &[],
    );
    fails(&out, "the server answered 400");
    assert!(
        !p("u8.npy.tessera-load").exists(),
        "no resume file before anything was loaded"
    );
}

//! Any version as neuroglancer precomputed (`/precomputed/<uuid>/<instance>/…`): the `info`
//! describes every scale; CloudVolume and tensorstore (PyPI, in `tests/python/
//! check_precomputed.py` under `$TESSERA_PYTHON`, made by `bash scripts/pyenv.sh`) read
//! cutouts that equal `GET raw` for labels (compressed_segmentation and raw chunks, every
//! scale, a parent and a child version that differ by a merge) and grayscale (raw and jpeg
//! chunks, a level instance); CloudVolume reads a body's mesh; bad requests are refused.

use std::process::Command;

use tessera_tests::labels::*;
use tessera_tests::mesh::python;
use tessera_tests::*;

/// 128×128×64 voxels of 32³ cubes labelled 1..=32.
fn cubes() -> Volume {
    Volume::from_fn([0; 3], [128, 128, 64], |x, y, z| {
        1 + (x / 32) as u64 + 4 * (y / 32) as u64 + 16 * (z / 32) as u64
    })
}

/// 128×128×64 grayscale with smooth structure (JPEG keeps it close).
fn gray() -> Vec<u8> {
    let mut v = Vec::with_capacity(128 * 128 * 64);
    for z in 0..64usize {
        for y in 0..128usize {
            for x in 0..128usize {
                let f = (x as f64 / 9.0).sin() + (y as f64 / 13.0).cos() + z as f64 / 40.0;
                v.push((128.0 + 50.0 * f).clamp(0.0, 255.0) as u8);
            }
        }
    }
    v
}

fn run_checker(srv: &Server, cases: Value) -> Vec<Value> {
    let py = python();
    assert!(
        py.is_file(),
        "the precomputed checks need Python with cloud-volume and tensorstore, but {} does not \
         exist. Create it with `bash scripts/pyenv.sh` (or point TESSERA_PYTHON at one).",
        py.display()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = dir.path().join("spec.json");
    let body = json!({"server": srv.base_url().trim_end_matches('/'), "cases": cases});
    std::fs::write(&spec, serde_json::to_vec(&body).unwrap()).expect("write spec");
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("python/check_precomputed.py");
    let out = Command::new(&py)
        .arg(&script)
        .arg(&spec)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "check_precomputed.py failed ({}):\n{stdout}{stderr}\n--- server log ---\n{}",
        out.status,
        srv.log()
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line per case"))
        .collect()
}

fn case(view: &str, mip: u32, bx: [i64; 6], raw: &str, query: &str, dtype: &str) -> Value {
    json!({"view": view, "mip": mip, "box": bx, "raw": raw, "raw_query": query,
           "dtype": dtype, "tolerance": 0, "mesh": null})
}

#[test]
fn cloudvolume_and_tensorstore_read_every_version_and_scale() {
    let srv = Server::start();
    let root = srv.create_repo("precomputed");
    let seg = Seg::create(&srv, &root, "seg", &standard_settings(2));
    seg.write(&cubes());
    for name in ["grayscale", "grayscale_1"] {
        srv.create_instance_with(&root, "uint8blk", name, &json!({"VoxelSize": "8,8,8"}));
    }
    srv.post_json(
        &format!("/api/node/{root}/grayscale_1/sync"),
        &json!({"sync": "grayscale"}),
    )
    .expect(200);
    srv.post(
        &format!("/api/node/{root}/grayscale/raw/0_1_2/128_128_64/0_0_0"),
        gray(),
    )
    .expect(200);
    let s = srv.get("/api/server/sync?wait=120").expect(200).json();
    assert_eq!(s["CaughtUp"], json!(true), "{s}");
    srv.commit(&root);
    let child = srv.newversion(&root);
    seg.at(&child).merge_ok(&[1, 2], "");

    // The info, as neuroglancer reads it.
    let info = srv
        .get(&format!("/precomputed/{root}/seg/info"))
        .expect(200)
        .json();
    assert_eq!(info["@type"], "neuroglancer_multiscale_volume");
    assert_eq!(info["type"], "segmentation");
    assert_eq!(info["data_type"], "uint64");
    assert_eq!(info["mesh"], "mesh");
    let scales = info["scales"].as_array().expect("scales");
    assert_eq!(scales.len(), 3);
    for (k, s) in scales.iter().enumerate() {
        let f = 1 << k;
        assert_eq!(s["key"], format!("s{k}"));
        assert_eq!(s["size"], json!([128 / f, 128 / f, 64 / f]));
        assert_eq!(
            s["resolution"],
            json!([8.0 * f as f64, 8.0 * f as f64, 8.0 * f as f64])
        );
        assert_eq!(s["encoding"], "compressed_segmentation");
    }
    let ginfo = srv
        .get(&format!("/precomputed/{root}/grayscale/jpeg/info"))
        .expect(200)
        .json();
    assert_eq!(ginfo["type"], "image");
    assert_eq!(ginfo["scales"].as_array().map(Vec::len), Some(2));
    assert_eq!(ginfo["scales"][1]["encoding"], "jpeg");

    let seg_raw = |uuid: &str| format!("/api/node/{uuid}/seg/raw/0_1_2");
    let mut cases = vec![
        // Across chunk boundaries, not aligned.
        case(
            &format!("/precomputed/{root}/seg"),
            0,
            [10, 5, 3, 120, 100, 60],
            &seg_raw(&root),
            "",
            "uint64",
        ),
        case(
            &format!("/precomputed/{root}/seg/raw"),
            0,
            [40, 0, 0, 128, 70, 64],
            &seg_raw(&root),
            "",
            "uint64",
        ),
        case(
            &format!("/precomputed/{root}/seg"),
            1,
            [0, 0, 0, 64, 64, 32],
            &seg_raw(&root),
            "?scale=1",
            "uint64",
        ),
        case(
            &format!("/precomputed/{root}/seg"),
            2,
            [3, 0, 1, 32, 32, 16],
            &seg_raw(&root),
            "?scale=2",
            "uint64",
        ),
        // The child sees its merge, the parent does not (compared with each one's GET raw).
        case(
            &format!("/precomputed/{child}/seg"),
            0,
            [0, 0, 0, 100, 64, 64],
            &seg_raw(&child),
            "",
            "uint64",
        ),
        case(
            &format!("/precomputed/{root}/grayscale"),
            0,
            [7, 9, 11, 128, 128, 64],
            &format!("/api/node/{root}/grayscale/raw/0_1_2"),
            "",
            "uint8",
        ),
        case(
            &format!("/precomputed/{root}/grayscale"),
            1,
            [0, 0, 0, 64, 64, 32],
            &format!("/api/node/{root}/grayscale_1/raw/0_1_2"),
            "",
            "uint8",
        ),
    ];
    let mut jpeg = case(
        &format!("/precomputed/{root}/grayscale/jpeg"),
        0,
        [0, 0, 0, 128, 128, 64],
        &format!("/api/node/{root}/grayscale/raw/0_1_2"),
        "",
        "uint8",
    );
    jpeg["tolerance"] = json!(24);
    cases.push(jpeg);
    let mut mesh = case(
        &format!("/precomputed/{child}/seg"),
        0,
        [0, 0, 0, 64, 64, 64],
        &seg_raw(&child),
        "",
        "uint64",
    );
    mesh["mesh"] = json!(1);
    cases.push(mesh);
    let n = cases.len();
    let reports = run_checker(&srv, json!(cases));
    assert_eq!(reports.len(), n);
    // The merged body 1 spans both cubes (x 0..64) in the child: its mesh does too.
    let m = &reports[n - 1];
    let (lo, hi) = (&m["mesh_bounds"][0], &m["mesh_bounds"][1]);
    assert!(
        lo[0].as_f64().unwrap() <= 8.0 && hi[0].as_f64().unwrap() >= 56.0 * 8.0,
        "{m}"
    );
    // The parent's and the child's chunks differ where the merge relabelled.
    let chunk = "s0/0-64_0-64_0-64";
    let a = srv
        .get(&format!("/precomputed/{root}/seg/raw/{chunk}"))
        .expect(200);
    let b = srv
        .get(&format!("/precomputed/{child}/seg/raw/{chunk}"))
        .expect(200);
    assert_ne!(a.body, b.body, "the child's merge shows in its chunks");
    // The mesh data file answers byte ranges, as neuroglancer and CloudVolume read it.
    let mesh = format!("/precomputed/{child}/seg/mesh/1");
    let whole = srv.get(&mesh).expect(200);
    assert!(
        whole.body.len() > 100,
        "mesh data of {} bytes",
        whole.body.len()
    );
    let part = srv
        .get_with_headers(&mesh, &[("Range", "bytes=10-49")])
        .expect(206);
    assert_eq!(part.body, whole.body[10..50]);
    assert_eq!(
        part.header("content-range").as_deref(),
        Some(format!("bytes 10-49/{}", whole.body.len()).as_str())
    );
}

#[test]
fn bad_requests_are_refused() {
    let srv = Server::start();
    let root = srv.create_repo("precomputed");
    let seg = Seg::create(&srv, &root, "seg", &standard_settings(1));
    seg.write(&cubes());
    srv.create_instance(&root, "keyvalue", "kv");
    let p = |rest: &str| format!("/precomputed/{root}/{rest}");
    srv.get(&p("seg/s0/0-64_0-64_0-64")).expect(200);
    for (path, code) in [
        (p("seg/nothing"), 404),
        (p("seg/s9/0-64_0-64_0-64"), 404),
        (p("seg/s0/0-65_0-64_0-64"), 400),
        (p("seg/s0/64-0_0-64_0-64"), 400),
        (p("seg/s0/0-64_0-64"), 400),
        (p("seg/s0/x-64_0-64_0-64"), 400),
        (p("seg/s0/100-164_0-64_0-64"), 400),
        (p("seg/jpeg/info"), 400),
        (p("seg/mesh/999.index"), 404),
        (p("seg/mesh/abc.index"), 400),
        (p("kv/info"), 400),
        (p("nope/info"), 400),
        ("/precomputed/ffffffff/seg/info".to_string(), 400),
    ] {
        let r = srv.get(&path);
        assert_eq!(r.status, code, "{path}: {}", r.text());
        assert!(!r.text().is_empty(), "{path}: the refusal says why");
    }
}

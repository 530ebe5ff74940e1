//! The offline commands, run as a user would: `tessera pyramid`, `tessera bench kernels` and
//! `tessera bench gpu`; `tessera pyramid` and `tessera mesh` on a mapped input against the
//! same input read.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tessera_tests::binary_path;
use tessera_tests::mesh::write_npy;

/// Reads a .npy file written by tessera: (descr, shape, raw data).
fn read_npy(path: &Path) -> (String, Vec<usize>, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (
            u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize,
            12,
        ),
    };
    let header = std::str::from_utf8(&bytes[start..start + len]).unwrap();
    let descr = header
        .split("'descr': '")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap();
    let shape = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    let shape = shape
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().unwrap())
        .collect();
    assert!(header.contains("'fortran_order': False"));
    (descr.to_string(), shape, bytes[start + len..].to_vec())
}

fn tessera(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(binary_path());
    cmd.args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("running tessera")
}

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "tessera failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn fails(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "expected a failure, got {:?}",
        out.stdout
    );
    assert!(
        stderr.contains(needle),
        "stderr {stderr:?} does not mention {needle:?}"
    );
}

/// Mode of the children that exist (zeros never vote, ties to the smallest).
fn mode(c: &[u64]) -> u64 {
    let mut best = (0, 0);
    for &v in c.iter().filter(|&&v| v != 0) {
        let n = c.iter().filter(|&&o| o == v).count();
        if n > best.0 || (n == best.0 && v < best.1) {
            best = (n, v);
        }
    }
    best.1
}

fn level_down(v: &[u64], [z, y, x]: [usize; 3]) -> (Vec<u64>, [usize; 3]) {
    let h = [z.div_ceil(2), y.div_ceil(2), x.div_ceil(2)];
    let mut out = Vec::new();
    for oz in 0..h[0] {
        for oy in 0..h[1] {
            for ox in 0..h[2] {
                let mut c = Vec::new();
                for zz in 2 * oz..(2 * oz + 2).min(z) {
                    for yy in 2 * oy..(2 * oy + 2).min(y) {
                        for xx in 2 * ox..(2 * ox + 2).min(x) {
                            c.push(v[(zz * y + yy) * x + xx]);
                        }
                    }
                }
                out.push(mode(&c));
            }
        }
    }
    (out, h)
}

/// `labels(shape)` as `<dir>/labels.npy` (uint64).
fn labels_npy(dir: &Path, shape: [usize; 3]) -> PathBuf {
    let input = dir.join("labels.npy");
    let raw: Vec<u8> = labels(shape).iter().flat_map(|v| v.to_le_bytes()).collect();
    write_npy(&input, "<u8", shape, &raw);
    input
}

fn labels(shape: [usize; 3]) -> Vec<u64> {
    let n = shape.iter().product::<usize>();
    let mut s = 7u64;
    (0..n)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            // Few labels and some zeros, so windows have ties, majorities and zero votes.
            if i % 5 == 0 {
                0
            } else {
                (s % 4) * 0x1_0000_0001 + 1
            }
        })
        .collect()
}

#[test]
fn pyramid_of_odd_labels_matches_repeated_mode() {
    let dir = tempfile::tempdir().unwrap();
    let shape = [7, 5, 9];
    let vol = labels(shape);
    let input = dir.path().join("in.npy");
    let raw: Vec<u8> = vol.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_npy(&input, "<u8", shape, &raw);
    let out_dir = dir.path().join("out");
    let args = [
        "pyramid",
        "--input",
        input.to_str().unwrap(),
        "--levels",
        "3",
        "--out-dir",
        out_dir.to_str().unwrap(),
        "--compute",
        "cpu",
    ];
    let stdout = ok(&tessera(&args, &[]));
    assert!(stdout.starts_with("pyramid: "), "{stdout}");
    assert!(
        stdout.contains("Gvox/s") && stdout.contains("backend cpu"),
        "{stdout}"
    );
    let (mut want, mut s) = (vol, shape);
    for level in 1..=3 {
        (want, s) = level_down(&want, s);
        let (descr, got_shape, data) = read_npy(&out_dir.join(format!("s{level}.npy")));
        assert_eq!(descr, "<u8");
        assert_eq!(got_shape, s.to_vec(), "level {level}");
        let got: Vec<u64> = data
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(got, want, "level {level}");
    }
    assert!(!out_dir.join("s4.npy").exists());
}

/// `raw` (C order) as a .npy whose header is padded so the data starts at byte `data_at`.
fn write_npy_at(path: &Path, descr: &str, shape: [usize; 3], raw: &[u8], data_at: usize) {
    let mut dict = format!(
        "{{'descr': '{descr}', 'fortran_order': False, 'shape': ({}, {}, {}), }}",
        shape[0], shape[1], shape[2]
    );
    while 10 + dict.len() + 1 < data_at {
        dict.push(' ');
    }
    dict.push('\n');
    assert_eq!(10 + dict.len(), data_at);
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.extend_from_slice(raw);
    std::fs::write(path, out).unwrap();
}

/// Every file of a directory, by name.
fn files(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn mapped_and_read_inputs_give_the_same_files() {
    // numpy pads the header so the data starts at byte 64 or 128: such a file is mapped. At
    // byte 130 the elements are misaligned for uint64 and uint32: it is read into memory.
    let dir = tempfile::tempdir().unwrap();
    let shape = [21, 30, 19];
    let vol = labels(shape);
    let narrow: Vec<u32> = vol.iter().map(|&v| v as u32).collect();
    let raws: [(&str, Vec<u8>); 2] = [
        ("<u8", vol.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ("<u4", narrow.iter().flat_map(|v| v.to_le_bytes()).collect()),
    ];
    for (descr, raw) in &raws {
        let mut outputs = Vec::new();
        for (at, how) in [(128, "mapped"), (130, "read into memory")] {
            let input = dir.path().join(format!("in-{at}.npy"));
            write_npy_at(&input, descr, shape, raw, at);
            let (i, name) = (input.to_str().unwrap(), format!("{descr}-{at}"));
            let pyramid = dir.path().join(format!("pyramid-{name}"));
            let stdout = ok(&tessera(
                &[
                    "pyramid",
                    "--input",
                    i,
                    "--levels",
                    "3",
                    "--out-dir",
                    pyramid.to_str().unwrap(),
                    "--compute",
                    "cpu",
                ],
                &[],
            ));
            assert!(stdout.contains(&format!("{how};")), "{stdout}");
            let mesh = dir.path().join(format!("mesh-{name}"));
            let stdout = ok(&tessera(
                &[
                    "mesh",
                    "--input",
                    i,
                    "--out-dir",
                    mesh.to_str().unwrap(),
                    "--compute",
                    "cpu",
                ],
                &[],
            ));
            let how = how.trim_start_matches("read ");
            assert!(stdout.contains(&format!(" s {how},")), "{stdout}");
            outputs.push((files(&pyramid), files(&mesh)));
        }
        let (pyramid, mesh) = &outputs[0];
        assert_eq!(pyramid.len(), 3, "{:?}", pyramid.keys());
        assert!(mesh.len() > 3, "{:?}", mesh.keys());
        assert!(outputs[0] == outputs[1], "{descr}: mapped and read differ");
    }
}

#[test]
fn gpu_and_cpu_pyramids_are_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let shape = [33, 40, 24];
    let vol: Vec<u32> = labels(shape).iter().map(|&v| v as u32).collect();
    let input = dir.path().join("in.npy");
    write_npy(
        &input,
        "<u4",
        shape,
        &vol.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>(),
    );
    let mut outputs = Vec::new();
    for backend in ["cpu", "gpu"] {
        let out_dir = dir.path().join(backend);
        let args = [
            "pyramid",
            "--input",
            input.to_str().unwrap(),
            "--levels",
            "2",
            "--out-dir",
            out_dir.to_str().unwrap(),
            "--compute",
            backend,
        ];
        let stdout = ok(&tessera(&args, &[("TESSERA_GPU_ALLOW_SOFTWARE", "1")]));
        assert!(stdout.contains(&format!("backend {backend}")), "{stdout}");
        outputs.push([1, 2].map(|l| std::fs::read(out_dir.join(format!("s{l}.npy"))).unwrap()));
    }
    assert_eq!(read_npy(&dir.path().join("cpu/s1.npy")).0, "<u4");
    assert!(
        outputs[0] == outputs[1],
        "the GPU pyramid differs from the CPU one"
    );
}

#[test]
fn gray_pyramid_takes_the_rounded_mean() {
    let dir = tempfile::tempdir().unwrap();
    // 2×2×3: the first window is full (values 1..=8 → mean 4.5 → 5), the second has the four
    // children of the odd last column (9..=12 → 10.5 → 11).
    let vol: Vec<u8> = vec![1, 2, 9, 3, 4, 10, 5, 6, 11, 7, 8, 12];
    let input = dir.path().join("gray.npy");
    write_npy(&input, "|u1", [2, 2, 3], &vol);
    let out_dir = dir.path().join("out");
    let args = [
        "pyramid",
        "--input",
        input.to_str().unwrap(),
        "--out-dir",
        out_dir.to_str().unwrap(),
        "--compute",
        "cpu",
    ];
    let stdout = ok(&tessera(&args, &[]));
    assert!(stdout.contains("gray"), "{stdout}");
    let (descr, shape, data) = read_npy(&out_dir.join("s1.npy"));
    assert_eq!(
        (descr.as_str(), shape, data),
        ("|u1", vec![1, 1, 2], vec![5, 11])
    );
}

/// Runs `tessera ARGS --shard I/N` for every I at once, as the tasks of a job array do.
fn run_sharded(args: &[&str], n: usize) {
    let children: Vec<_> = (0..n)
        .map(|i| {
            Command::new(binary_path())
                .args(args)
                .args(["--shard", &format!("{i}/{n}")])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawning tessera")
        })
        .collect();
    for c in children {
        ok(&c.wait_with_output().unwrap());
    }
}

#[test]
fn sharded_jobs_write_the_same_files_as_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let shape = [37, 30, 33];
    let vol = labels(shape);
    let input = dir.path().join("in.npy");
    let raw: Vec<u8> = vol.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_npy(&input, "<u8", shape, &raw);
    let i = input.to_str().unwrap();
    for (job, extra) in [
        ("pyramid", &["--levels", "3"][..]),
        ("mesh", &["--format", "precomputed"][..]),
        ("mesh", &["--format", "obj"][..]),
    ] {
        let out = |name: &str| dir.path().join(format!("{job}-{}-{name}", extra[1]));
        let (whole, sharded) = (out("whole"), out("sharded"));
        let args = |o: &Path| {
            let mut a = vec![job, "--input", i, "--compute", "cpu", "--out-dir"];
            a.push(o.to_str().unwrap());
            a.extend_from_slice(extra);
            a.iter().map(|s| s.to_string()).collect::<Vec<_>>()
        };
        let whole_args = args(&whole);
        ok(&tessera(
            &whole_args.iter().map(String::as_str).collect::<Vec<_>>(),
            &[],
        ));
        let sharded_args = args(&sharded);
        let sharded_args: Vec<&str> = sharded_args.iter().map(String::as_str).collect();
        run_sharded(&sharded_args, 4);
        let want = files(&whole);
        assert!(want.len() > 2, "{job}: {:?}", want.keys());
        assert!(
            files(&sharded) == want,
            "{job} {extra:?}: 4 shards differ from one process"
        );
        // A rerun of one worker after the job finished changes nothing.
        let mut again = sharded_args.clone();
        again.extend(["--shard", "2/4"]);
        ok(&tessera(&again, &[]));
        assert!(
            files(&sharded) == want,
            "{job} {extra:?}: a rerun changed the files"
        );
    }
}

#[test]
fn pyramid_rejects_bad_requests() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.npy");
    write_npy(&input, "<u8", [2, 2, 2], &[0u8; 64]);
    let out = dir.path().join("out");
    let (i, o) = (input.to_str().unwrap(), out.to_str().unwrap());
    fails(
        &tessera(
            &[
                "pyramid",
                "--input",
                i,
                "--out-dir",
                o,
                "--levels",
                "0",
                "--compute",
                "cpu",
            ],
            &[],
        ),
        "--levels",
    );
    fails(
        &tessera(
            &[
                "pyramid",
                "--input",
                i,
                "--out-dir",
                o,
                "--kind",
                "gray",
                "--compute",
                "cpu",
            ],
            &[],
        ),
        "uint8",
    );
    let missing = dir.path().join("missing.npy");
    fails(
        &tessera(
            &[
                "pyramid",
                "--input",
                missing.to_str().unwrap(),
                "--out-dir",
                o,
                "--compute",
                "cpu",
            ],
            &[],
        ),
        "missing.npy",
    );
    let floats = dir.path().join("floats.npy");
    write_npy(&floats, "<f4", [2, 2, 2], &[0u8; 32]);
    fails(
        &tessera(
            &[
                "pyramid",
                "--input",
                floats.to_str().unwrap(),
                "--out-dir",
                o,
                "--compute",
                "cpu",
            ],
            &[],
        ),
        "uint64",
    );
    let truncated = dir.path().join("short.npy");
    write_npy(&truncated, "<u8", [4, 4, 4], &[0u8; 64]);
    fails(
        &tessera(
            &[
                "pyramid",
                "--input",
                truncated.to_str().unwrap(),
                "--out-dir",
                o,
                "--compute",
                "cpu",
            ],
            &[],
        ),
        "short.npy",
    );
    assert!(!out.join("s1.npy").exists(), "a failed run wrote output");
}

#[test]
fn gpu_without_an_adapter_fails_loudly() {
    // With software adapters refused and no hardware GPU here, `--compute gpu` must fail.
    let out = tessera(
        &["bench", "kernels", "--compute", "gpu", "--repeats", "1"],
        &[("TESSERA_GPU_ALLOW_SOFTWARE", "0")],
    );
    if out.status.success() {
        // A hardware adapter exists on this machine: then it must have been used.
        assert!(String::from_utf8_lossy(&out.stdout).contains("backend gpu"));
    } else {
        fails(&out, "compute device");
    }
}

#[test]
fn bench_kernels_reports_every_kernel() {
    let dir = tempfile::tempdir().unwrap();
    let input = labels_npy(dir.path(), [64, 64, 128]);
    let stdout = ok(&tessera(
        &[
            "bench",
            "kernels",
            "--input",
            input.to_str().unwrap(),
            "--compute",
            "cpu",
            "--repeats",
            "1",
            "--json",
        ],
        &[],
    ));
    let kernels: Vec<String> = stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert!(v["gvox_s"].as_f64().unwrap() > 0.0, "{l}");
            assert_eq!(v["backend"], "cpu");
            v["kernel"].as_str().unwrap().to_string()
        })
        .collect();
    for k in [
        "relabel_1000_to_1",
        "split_apply",
        "downsample_mode",
        "pyramid_mode_5",
        "downsample_mean",
        "pyramid_mean_5",
        "label_counts",
        "block_encode",
        "block_decode",
        "block_decode_fresh",
        "surface",
    ] {
        assert!(
            kernels.iter().any(|g| g == k),
            "{k} missing from {kernels:?}"
        );
    }
}

#[test]
fn bench_kernels_only_times_the_kernels_named() {
    let dir = tempfile::tempdir().unwrap();
    let input = labels_npy(dir.path(), [64, 64, 64]);
    let path = input.to_str().unwrap();
    let args = |only: &'static str| {
        [
            "bench",
            "kernels",
            "--input",
            path,
            "--compute",
            "cpu",
            "--repeats",
            "1",
            "--json",
            "--only",
            only,
        ]
    };
    let stdout = ok(&tessera(&args("label_counts,surface"), &[]));
    let kernels: Vec<String> = stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["kernel"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(kernels, ["surface", "label_counts"]);
    fails(&tessera(&args("surfaces"), &[]), "no kernel \"surfaces\"");
}

#[test]
fn bench_gpu_reports_every_kernel_the_same_on_both_backends() {
    // On lavapipe (CI) this checks the command and its GPU = CPU comparison, not speed.
    let dir = tempfile::tempdir().unwrap();
    let input = labels_npy(dir.path(), [64, 64, 128]);
    let json = dir.path().join("report.json");
    let stdout = ok(&tessera(
        &[
            "bench",
            "gpu",
            "--input",
            input.to_str().unwrap(),
            "--repeats",
            "1",
            "--json",
            json.to_str().unwrap(),
        ],
        &[("TESSERA_GPU_ALLOW_SOFTWARE", "1")],
    ));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert!(report["roofline"]["copy_gb_s"].as_f64().unwrap() > 0.0);
    let timed = report["roofline"]["clock"] == "device timestamps";
    let kernels = report["kernels"].as_array().unwrap();
    for name in [
        "relabel_1000_to_1",
        "split_apply",
        "downsample_mode",
        "pyramid_mode_5",
        "downsample_mean",
        "pyramid_mean_5",
        "surface",
        "label_counts",
        "block_encode",
        "block_decode",
        "batch_edit",
        "batch_ingest",
    ] {
        let k = kernels
            .iter()
            .find(|k| k["kernel"] == name)
            .unwrap_or_else(|| panic!("{name} missing from the report:\n{stdout}"));
        assert_eq!(k["equal"], true, "{name}: GPU and CPU differ");
        assert!(k["gpu_wall_gvox_s"].as_f64().unwrap() > 0.0, "{k}");
        assert!(k["cpu_gvox_s"].as_f64().unwrap() > 0.0, "{k}");
        assert!(k["bus_bytes"].as_f64().unwrap() > 0.0, "{k}");
        assert_eq!(k["gpu_device_s"].is_f64(), timed, "{k}");
        assert!(
            stdout.contains(name),
            "{name} missing from the table:\n{stdout}"
        );
    }
    // The fused edit moves compressed blocks, the levels and indexed meshes over the bus, not
    // u64 voxels both ways: within half again of that model (compressed blocks in and out,
    // the levels, and the meshes as 12-byte vertices and triangles), whatever the surface.
    let edit = kernels
        .iter()
        .find(|k| k["kernel"] == "batch_edit")
        .unwrap();
    let (bus, model) = (edit["bus_bytes"].as_f64(), edit["model_bytes"].as_f64());
    assert!(bus.unwrap() <= 1.5 * model.unwrap(), "{edit}");
}

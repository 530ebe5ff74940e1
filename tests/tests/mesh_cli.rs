//! `tessera mesh --input labels.npy --out-dir DIR [--format ngmesh|obj|ply]
//! [--compute cpu|gpu|auto] [--voxel-size x,y,z]`: one file `<label>.<format>` per non-zero label
//! of a (z, y, x) uint8/uint32/uint64 array, each a valid label mesh (closed at the array's
//! edge), and one summary line `meshed <L> labels: … <T> triangles … <V> vertices …` on
//! stdout. The GPU = CPU comparison is in `mesh_gpu.rs`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;

use tessera_tests::labels::*;
use tessera_tests::mesh::*;

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "tessera mesh failed ({}): {stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Non-zero exit and a message on stderr (or stdout) mentioning one of `needles`
/// (case-insensitive).
#[track_caller]
fn fails(out: &Output, needles: &[&str]) {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    )
    .to_lowercase();
    assert!(
        !out.status.success(),
        "expected a failure, got success: {text:?}"
    );
    assert!(
        needles.iter().any(|n| text.contains(&n.to_lowercase())),
        "the error {text:?} names none of {needles:?}"
    );
}

/// `tessera mesh` on `input` into `out` with extra arguments; returns stdout.
fn mesh(input: &Path, out: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "mesh",
        "--input",
        input.to_str().expect("utf-8"),
        "--out-dir",
        out.to_str().expect("utf-8"),
    ];
    args.extend_from_slice(extra);
    ok(&run_tessera(&args, &[]))
}

/// Parses the summary line: (labels, triangles, vertices).
#[track_caller]
fn summary(stdout: &str) -> (u64, u64, u64) {
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "want one summary line on stdout, got {stdout:?}"
    );
    let line = lines[0];
    let rest = line
        .strip_prefix("meshed ")
        .unwrap_or_else(|| panic!("summary {line:?} does not start with `meshed `"));
    let labels: u64 = rest
        .split(" labels:")
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("summary {line:?} is not `meshed <L> labels: …`"));
    let before = |word: &str| -> u64 {
        let words: Vec<&str> = line.split_whitespace().collect();
        let at = words
            .iter()
            .position(|w| w.trim_end_matches([',', ';', '.']) == word)
            .unwrap_or_else(|| panic!("summary {line:?} has no `<n> {word}`"));
        assert!(at > 0, "summary {line:?}: nothing before {word}");
        words[at - 1].parse().unwrap_or_else(|_| {
            panic!(
                "summary {line:?}: {:?} before {word} is not a count",
                words[at - 1]
            )
        })
    };
    (labels, before("triangles"), before("vertices"))
}

/// A (z, y, x) = (80, 92, 64) array cut from the mesh fixture so that labels run into every
/// face of the array (the hollow ball 1 and the ball 2 inside it whole, the ball 3 and the noise
/// labels 12–14 cut by the edges), plus 4294967301 in the corner (0,0,0).
fn cli_volume() -> Volume {
    let mut vol = mesh_fixture().region([36, 36, 36], [64, 92, 80]);
    vol.origin = [0; 3];
    for x in 0..3 {
        for y in 0..3 {
            for z in 0..3 {
                vol.set([x, y, z], 4_294_967_301);
            }
        }
    }
    vol
}

/// Every file valid against `vol` with this voxel size; the set of files is exactly the
/// non-zero labels. Returns label → (bytes, mesh).
#[track_caller]
fn check_files(
    dir: &Path,
    format: &str,
    vol: &Volume,
    voxel: [f64; 3],
) -> BTreeMap<u64, (Vec<u8>, Mesh)> {
    let files = mesh_files(dir, format);
    let by = voxels_by_label(vol);
    assert_eq!(
        files.keys().copied().collect::<Vec<_>>(),
        by.keys().copied().collect::<Vec<_>>(),
        "{}: one file per non-zero label",
        dir.display()
    );
    files
        .into_iter()
        .map(|(l, bytes)| {
            let m = decode_as(format, &bytes)
                .unwrap_or_else(|e| panic!("{}/{l}.{format}: {e}", dir.display()));
            check_label_mesh_voxels(&m, vol, l, &by[&l], voxel)
                .unwrap_or_else(|e| panic!("{}/{l}.{format}: {e}", dir.display()));
            (l, (bytes, m))
        })
        .collect()
}

#[test]
fn meshes_every_label_of_a_uint64_array() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vol = cli_volume();
    let input = dir.path().join("labels.npy");
    write_volume_npy(&input, &vol, "u64");
    let out = dir.path().join("meshes");
    let stdout = mesh(
        &input,
        &out,
        &["--voxel-size", "4,6,40", "--compute", "cpu"],
    );
    let files = check_files(&out, "ngmesh", &vol, [4.0, 6.0, 40.0]);
    assert!(files.contains_key(&4_294_967_301));
    let (labels, tris, verts) = summary(&stdout);
    assert_eq!(labels, files.len() as u64, "summary label count: {stdout}");
    let want_t: u64 = files.values().map(|(_, m)| m.triangles.len() as u64).sum();
    let want_v: u64 = files.values().map(|(_, m)| m.vertices.len() as u64).sum();
    assert_eq!((tris, verts), (want_t, want_v), "summary totals: {stdout}");
    // independent reader, on a few of them
    let pick: Vec<(String, Vec<u8>, Mesh)> = [1u64, 3, 12, 4_294_967_301]
        .iter()
        .map(|l| {
            let (b, m) = files[l].clone();
            (format!("{l}.ngmesh"), b, m)
        })
        .collect();
    let tdir = tempfile::tempdir().expect("tempdir");
    assert_trimesh_agrees(tdir.path(), &pick);
    // the same run again writes the same bytes
    let again = dir.path().join("again");
    mesh(
        &input,
        &again,
        &["--voxel-size", "4,6,40", "--compute", "cpu"],
    );
    assert!(
        mesh_files(&again, "ngmesh") == mesh_files(&out, "ngmesh"),
        "two runs wrote different files"
    );
}

#[test]
fn formats_dtypes_and_the_default_voxel_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    // uint8 and uint32 arrays of a few labels: noise with diagonal contacts, touching every
    // face of the array
    let mut vol = noise_fixture([23, 17, 11], 5, &[0, 0, 0, 1, 2, 3, 3, 200]);
    vol.set([22, 16, 10], 255);
    let mut reference: Option<BTreeMap<u64, Vec<[[i64; 3]; 3]>>> = None;
    for dtype in ["u8", "u32"] {
        let input = dir.path().join(format!("labels-{dtype}.npy"));
        write_volume_npy(&input, &vol, dtype);
        for format in ["ngmesh", "obj", "ply"] {
            // nested, not yet existing output directory
            let out = dir.path().join(dtype).join(format).join("deep");
            let stdout = if format == "ngmesh" {
                mesh(&input, &out, &["--compute", "cpu"]) // default format, default voxel size
            } else {
                mesh(&input, &out, &["--format", format, "--compute", "cpu"])
            };
            let files = check_files(&out, format, &vol, [1.0; 3]);
            let (labels, tris, _) = summary(&stdout);
            assert_eq!(labels, 5, "{stdout}");
            assert_eq!(
                tris,
                files
                    .values()
                    .map(|(_, m)| m.triangles.len() as u64)
                    .sum::<u64>(),
                "{stdout}"
            );
            let canon: BTreeMap<u64, Vec<[[i64; 3]; 3]>> = files
                .iter()
                .map(|(&l, (_, m))| (l, canonical_triangles(m, [1.0; 3])))
                .collect();
            match &reference {
                None => reference = Some(canon),
                Some(r) => assert!(
                    *r == canon,
                    "{dtype} {format}: another surface than the first run's"
                ),
            }
            if format != "ngmesh" && dtype == "u8" {
                let tdir = tempfile::tempdir().expect("tempdir");
                let all: Vec<(String, Vec<u8>, Mesh)> = files
                    .into_iter()
                    .map(|(l, (b, m))| (format!("{l}.{format}"), b, m))
                    .collect();
                assert_trimesh_agrees(tdir.path(), &all);
            }
        }
    }
}

#[test]
fn rejects_bad_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.npy");
    let mut vol = Volume::zeros([4, 4, 4]);
    vol.set([1, 1, 1], 3);
    write_volume_npy(&good, &vol, "u64");
    let out = dir.path().join("out");
    let (g, o) = (good.to_str().unwrap(), out.to_str().unwrap());
    let run = |args: &[&str]| {
        let mut a = vec!["mesh"];
        a.extend_from_slice(args);
        run_tessera(&a, &[])
    };
    let missing = dir.path().join("missing-labels.npy");
    fails(
        &run(&["--input", missing.to_str().unwrap(), "--out-dir", o]),
        &["missing-labels.npy"],
    );
    let floats = dir.path().join("floats.npy");
    write_npy(&floats, "<f4", [2, 2, 2], &[0u8; 32]);
    fails(
        &run(&["--input", floats.to_str().unwrap(), "--out-dir", o]),
        &["f4", "float", "dtype"],
    );
    for bad in ["0,1,1", "a,b,c", "1,1", "1,-2,1"] {
        fails(
            &run(&["--input", g, "--out-dir", o, "--voxel-size", bad]),
            &["voxel"],
        );
    }
    fails(
        &run(&["--input", g, "--out-dir", o, "--format", "stl"]),
        &["stl", "format"],
    );
    // and the good input works
    mesh(&good, &out, &["--compute", "cpu"]);
    check_files(&out, "ngmesh", &vol, [1.0; 3]);
}

/// neuroglancer precomputed directories: the legacy one holds, per label, a manifest naming
/// one fragment that is the label's full mesh; the multi-resolution one an `info` of type
/// `neuroglancer_multilod_draco` and, per label, a manifest whose fragment sizes add up to the
/// data file (the Draco fragments themselves are checked against DracoPy in the engine's
/// format tests).
#[test]
fn writes_neuroglancer_precomputed_directories() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vol = cli_volume();
    let input = dir.path().join("labels.npy");
    write_volume_npy(&input, &vol, "u64");
    let voxel = [4.0, 6.0, 40.0];
    let by = voxels_by_label(&vol);

    let legacy = dir.path().join("legacy");
    mesh(
        &input,
        &legacy,
        &["--format", "precomputed-legacy", "--voxel-size", "4,6,40"],
    );
    let info = std::fs::read_to_string(legacy.join("info")).expect("legacy info");
    assert!(info.contains("neuroglancer_legacy_mesh"), "{info}");
    for (&l, voxels) in &by {
        let manifest = std::fs::read_to_string(legacy.join(format!("{l}:0"))).expect("manifest");
        let v: serde_json::Value = serde_json::from_str(&manifest).expect("manifest JSON");
        let fragments = v["fragments"].as_array().expect("fragments list");
        assert_eq!(fragments.len(), 1, "{manifest}");
        let name = fragments[0].as_str().expect("fragment name");
        let bytes = std::fs::read(legacy.join(name)).expect("fragment");
        let m = decode_ngmesh(&bytes).expect("fragment is ngmesh");
        check_label_mesh_voxels(&m, &vol, l, voxels, voxel)
            .unwrap_or_else(|e| panic!("legacy {l}: {e}"));
    }

    let multi = dir.path().join("multires");
    mesh(
        &input,
        &multi,
        &["--format", "precomputed", "--voxel-size", "4,6,40"],
    );
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(multi.join("info")).expect("info")).expect("JSON");
    assert_eq!(info["@type"], "neuroglancer_multilod_draco", "{info}");
    for &l in by.keys() {
        let index = std::fs::read(multi.join(format!("{l}.index"))).expect("manifest");
        let data = std::fs::read(multi.join(l.to_string())).expect("data file");
        let word = |i: usize| u32::from_le_bytes(index[4 * i..4 * i + 4].try_into().unwrap());
        let lods = word(6) as usize;
        assert!(
            (1..=3).contains(&lods),
            "label {l}: {lods} levels of detail"
        );
        let counts_at = 7 + lods + 3 * lods;
        let counts: Vec<usize> = (0..lods).map(|k| word(counts_at + k) as usize).collect();
        let mut at = counts_at + lods;
        let mut total = 0u64;
        for &n in &counts {
            at += 3 * n;
            total += (0..n).map(|i| word(at + i) as u64).sum::<u64>();
            at += n;
        }
        assert_eq!(4 * at, index.len(), "label {l}: manifest length");
        assert!(counts[0] > 0, "label {l}: no full-resolution fragment");
        assert_eq!(
            total,
            data.len() as u64,
            "label {l}: fragment sizes vs data file"
        );
    }
}

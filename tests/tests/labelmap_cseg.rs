//! Neuroglancer's labelmap chunk request (spec §5.4, dvid-clients §4.2):
//! `GET raw/0_1_2/64_64_64/<x>_<y>_<z>?compression=googlegzip&scale=L&app=Neuroglancer` must be
//! gzip with `Content-Encoding: gzip`, and the inflated body must be neuroglancer
//! compressed_segmentation (uint64, 8³ blocks, leading channel-offset word, x fastest) that
//! the `compressed-segmentation` PyPI package decodes to exactly what `GET raw` returns.
//!
//! The decoding runs in `tests/python/check_cseg.py` under `$TESSERA_PYTHON` (default
//! `~/.cache/tessera/pyenv/bin/python`, created by `bash scripts/pyenv.sh`). A missing
//! interpreter or package fails the test: it is never skipped.

use std::path::PathBuf;
use std::process::Command;

use tessera_tests::labels::*;
use tessera_tests::mesh::python;
use tessera_tests::*;

/// Runs check_cseg.py on a manifest; panics with its output unless every case matches.
fn run_checker(manifest: &std::path::Path) {
    let py = python();
    assert!(
        py.is_file(),
        "the neuroglancer compressed_segmentation check needs Python with numpy and \
         compressed-segmentation, but {} does not exist. Create it with `bash scripts/pyenv.sh` \
         (or point TESSERA_PYTHON at such an interpreter).",
        py.display()
    );
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/check_cseg.py");
    let out = Command::new(&py)
        .arg(&script)
        .arg(manifest)
        .output()
        .unwrap_or_else(|e| panic!("running {} {}: {e}", py.display(), script.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if text.contains("ModuleNotFoundError") {
        panic!(
            "{} lacks numpy or compressed-segmentation; run `bash scripts/pyenv.sh`:\n{text}",
            py.display()
        );
    }
    assert!(
        out.status.success(),
        "compressed_segmentation check failed ({}):\n{text}",
        out.status
    );
}

#[test]
fn python_checker_is_available() {
    // Fails (does not skip) when the interpreter is missing, with the fix in the message.
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = dir.path().join("empty.json");
    std::fs::write(&manifest, "[]").expect("write manifest");
    run_checker(&manifest);
}

#[test]
fn neuroglancer_googlegzip_chunks_decode_to_raw() {
    let srv = Server::start();
    let root = srv.create_repo("neuroglancer");
    let seg = Seg::create(&srv, &root, "seg", &standard_settings(2));
    let vol = mixed_fixture();
    seg.write(&vol);

    let dir = tempfile::tempdir().expect("tempdir");
    let mut cases = Vec::new();
    // (scale, chunk offset in that scale's voxels, compression)
    let chunks: [(u32, Coord, &str); 8] = [
        (0, [0, 0, 0], "googlegzip"),
        (0, [64, 0, 0], "googlegzip"),
        (0, [64, 64, 64], "googlegzip"),
        (0, [0, 64, 64], "googlegzip"),
        (0, [32, 16, 48], "googlegzip"),
        (1, [0, 0, 0], "googlegzip"),
        (2, [0, 0, 0], "googlegzip"),
        (0, [64, 64, 64], "google"),
    ];
    for (i, (scale, o, comp)) in chunks.into_iter().enumerate() {
        let path = seg.path(&format!(
            "raw/0_1_2/64_64_64/{}_{}_{}?compression={comp}&scale={scale}&app=Neuroglancer",
            o[0], o[1], o[2]
        ));
        // like the browser: it advertises gzip; the harness client never inflates by itself
        let r = srv
            .get_with_headers(&path, &[("Accept-Encoding", "gzip, deflate")])
            .expect(200);
        let body = if comp == "googlegzip" {
            assert_eq!(
                r.header("content-encoding")
                    .map(|s| s.to_ascii_lowercase())
                    .as_deref(),
                Some("gzip"),
                "{}: googlegzip needs Content-Encoding: gzip",
                r.what
            );
            gunzip(&r.body).unwrap_or_else(|e| panic!("{}: body is not gzip: {e}", r.what))
        } else {
            assert!(
                r.header("content-encoding").is_none(),
                "{}: plain google compression must not claim a content encoding",
                r.what
            );
            r.body.clone()
        };
        assert!(
            body.len() >= 4 && body[..4] == 1u32.to_le_bytes(),
            "{}: channel-offset word",
            r.what
        );
        let raw = seg.raw(o, [64; 3], &format!("scale={scale}"));
        let want = pyramid(&vol, scale as usize)[scale as usize].region(o, [64; 3]);
        assert!(
            raw == want,
            "GET raw scale {scale} at {o:?} differs from the reference"
        );
        assert!(
            raw.data.iter().any(|&l| l != 0),
            "chunk {o:?} should hold labels"
        );
        let cseg = dir.path().join(format!("case{i}.cseg"));
        let rawp = dir.path().join(format!("case{i}.raw"));
        std::fs::write(&cseg, &body).expect("write cseg");
        std::fs::write(&rawp, raw.to_le_bytes()).expect("write raw");
        cases.push(json!({
            "name": format!("{comp} scale {scale} chunk {o:?}"),
            "cseg": cseg,
            "raw": rawp,
            "size": [64, 64, 64],
        }));
    }
    let manifest = dir.path().join("manifest.json");
    std::fs::write(&manifest, serde_json::to_vec_pretty(&json!(cases)).unwrap()).expect("manifest");
    run_checker(&manifest);
}

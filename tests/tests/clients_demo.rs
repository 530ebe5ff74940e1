//! Real client libraries, unmodified, against `tessera demo`: dvidtools 0.6.0 (`import dvid`:
//! every read function the clients doc lists and its annotation/bookmark writes) and
//! dvid-point-cloud 0.1.3 (sampling and its DVIDClient reads). Each check compares with an
//! oracle built from the voxels and stored elements (`tests/python/dvidtools_suite.py`,
//! `tests/python/point_cloud_suite.py`, run under `$TESSERA_PYTHON`, made by
//! `bash scripts/pyenv.sh`). A missing interpreter or package fails the test.

use std::process::Command;

use tessera_tests::demo::Demo;
use tessera_tests::mesh::python;
use tessera_tests::*;

/// Runs one suite script; returns its JSON lines, asserting every check passed.
fn suite(script: &str, args: &[&str], at_least: usize) -> Vec<Value> {
    let py = python();
    assert!(
        py.is_file(),
        "the client suites need Python with the client packages; run `bash scripts/pyenv.sh`"
    );
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(script);
    let out = Command::new(&py)
        .arg(&path)
        .args(args)
        .env("TQDM_DISABLE", "1")
        .output()
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let results: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let failed: Vec<&Value> = results.iter().filter(|r| r["ok"] != json!(true)).collect();
    eprintln!(
        "{script}: {} checks, {} passed, {} failed",
        results.len(),
        results.len() - failed.len(),
        failed.len()
    );
    assert!(
        out.status.success() && failed.is_empty() && results.len() >= at_least,
        "{script} ({}): {failed:#?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    results
}

#[test]
fn dvidtools_and_dvid_point_cloud_work_on_the_demo_dataset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let demo = Demo::start(dir.path());
    let (root, child) = demo.nodes();
    suite("dvidtools_suite.py", &[&demo.base, &root, &child], 25);
    suite("point_cloud_suite.py", &[&demo.base, &child], 6);
    demo.stop();
}

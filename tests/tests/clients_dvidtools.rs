//! dvidtools (PyPI `dvidtools` 0.6.0, `import dvid`), unmodified, against `tessera demo`: every
//! read function the clients doc lists and its write helpers (body annotations, bookmarks),
//! each checked against an oracle built from the voxels and stored elements
//! (`tests/python/dvidtools_suite.py`, run under `$TESSERA_PYTHON`, made by
//! `bash scripts/pyenv.sh`). A missing interpreter or package fails the test.

use std::process::Command;

use tessera_tests::demo::Demo;
use tessera_tests::mesh::python;
use tessera_tests::*;

#[test]
fn dvidtools_reads_and_writes_the_demo_dataset() {
    let py = python();
    assert!(
        py.is_file(),
        "the dvidtools suite needs Python with dvidtools; create it with `bash scripts/pyenv.sh`"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let demo = Demo::start(dir.path());
    let (root, child) = demo.nodes();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("python/dvidtools_suite.py");
    let out = Command::new(&py)
        .arg(&script)
        .args([demo.base.as_str(), root.as_str(), child.as_str()])
        .env("TQDM_DISABLE", "1")
        .output()
        .expect("run dvidtools_suite.py");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let results: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let failed: Vec<&Value> = results.iter().filter(|r| r["ok"] != json!(true)).collect();
    eprintln!(
        "dvidtools suite: {} checks, {} passed, {} failed",
        results.len(),
        results.len() - failed.len(),
        failed.len()
    );
    assert!(
        out.status.success() && failed.is_empty() && results.len() >= 24,
        "dvidtools suite ({}): {failed:#?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    demo.stop();
}

//! dvision (PyPI 0.1.1), unmodified, in its own numpy<2 venv (`bash scripts/pyenv.sh`;
//! `$TESSERA_PYTHON_DVISION` overrides): repos and instances made through it, uint8blk and
//! labelblk volumes written and read back through its array interface, an ROI's mask and
//! partition (`tests/python/dvision_suite.py`). A missing interpreter fails the test.

use std::path::PathBuf;
use std::process::Command;

use tessera_tests::*;

fn dvision_python() -> PathBuf {
    if let Some(p) = std::env::var_os("TESSERA_PYTHON_DVISION") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").expect("HOME is not set (or set TESSERA_PYTHON_DVISION)");
    PathBuf::from(home).join(".cache/tessera/pyenv-dvision/bin/python")
}

#[test]
fn dvision_writes_and_reads_volumes_and_rois() {
    let py = dvision_python();
    assert!(
        py.is_file(),
        "the dvision suite needs {}; create it with `bash scripts/pyenv.sh`",
        py.display()
    );
    let srv = Server::start();
    let port = srv
        .base_url()
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .expect("a port")
        .to_string();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("python/dvision_suite.py");
    let out = Command::new(&py)
        .arg(&script)
        .arg(&port)
        .output()
        .expect("run dvision_suite.py");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let results: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let failed: Vec<&Value> = results.iter().filter(|r| r["ok"] != json!(true)).collect();
    eprintln!(
        "dvision suite: {} checks, {} passed, {} failed",
        results.len(),
        results.len() - failed.len(),
        failed.len()
    );
    assert!(
        out.status.success() && failed.is_empty() && results.len() == 4,
        "dvision suite ({}): {failed:#?}\n{stdout}\n{}\n--- server log ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        srv.log()
    );
}

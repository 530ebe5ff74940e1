//! The requests neuclease's `neuclease.dvid` functions make, as neuclease makes and parses them
//! (`tests/python/neuclease_suite.py`, our own code written from neuclease's source, since
//! neuclease is not on PyPI): its integration scenario of five 1×3×3 supervoxels merged into
//! one, gzipped labels.Block ingest with downres, block streams decoded by an independent
//! decoder, mappings, sizes, sparsevol headers, cleave, split-supervoxel, renumber, label
//! allocation, mutations across versions, roi, annotation with labelsz, and neuronjson.

use std::process::Command;

use tessera_tests::mesh::python;
use tessera_tests::*;

#[test]
fn neuclease_shaped_requests_get_neuclease_shaped_answers() {
    let py = python();
    assert!(
        py.is_file(),
        "the neuclease suite needs Python with numpy; create it with `bash scripts/pyenv.sh`"
    );
    let srv = Server::start();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("python/neuclease_suite.py");
    let out = Command::new(&py)
        .arg(&script)
        .arg(srv.base_url())
        .output()
        .expect("run neuclease_suite.py");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let results: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let failed: Vec<&Value> = results.iter().filter(|r| r["ok"] != json!(true)).collect();
    eprintln!(
        "neuclease suite: {} call groups, {} passed, {} failed",
        results.len(),
        results.len() - failed.len(),
        failed.len()
    );
    assert!(
        out.status.success() && failed.is_empty() && results.len() >= 13,
        "neuclease suite ({}): {failed:#?}\n{stdout}\n{}\n--- server log ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        srv.log()
    );
}

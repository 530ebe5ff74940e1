//! dvision (PyPI 0.1.1), unmodified, in its own numpy<2 venv (`bash scripts/pyenv.sh`;
//! `$TESSERA_PYTHON_DVISION` overrides): repos and instances made through it, uint8blk and
//! labelblk volumes written and read back through its array interface, an ROI's mask and
//! partition (`tests/python/dvision_suite.py`). A missing interpreter fails the test.

use std::path::PathBuf;

use tessera_tests::Server;
use tessera_tests::clients::run_suite;

fn dvision_python() -> PathBuf {
    if let Some(p) = std::env::var_os("TESSERA_PYTHON_DVISION") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").expect("HOME is not set (or set TESSERA_PYTHON_DVISION)");
    PathBuf::from(home).join(".cache/tessera/pyenv-dvision/bin/python")
}

#[test]
fn dvision_writes_and_reads_volumes_and_rois() {
    let srv = Server::start();
    let port = srv
        .base_url()
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .expect("a port")
        .to_string();
    let log = || format!("--- server log ---\n{}", srv.log());
    run_suite(&dvision_python(), "dvision_suite.py", &[&port], 4, &log);
}

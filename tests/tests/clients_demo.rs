//! Real client libraries, unmodified, against `tessera demo`: dvidtools 0.6.0 (`import dvid`:
//! every read function the clients doc lists and its annotation/bookmark writes) and
//! dvid-point-cloud 0.1.3 (sampling and its DVIDClient reads). Each check compares with an
//! oracle built from the voxels and stored elements (`tests/python/dvidtools_suite.py`,
//! `tests/python/point_cloud_suite.py`, run under `$TESSERA_PYTHON`, made by
//! `bash scripts/pyenv.sh`). A missing interpreter or package fails the test.

use tessera_tests::clients::run_suite;
use tessera_tests::demo::Demo;
use tessera_tests::mesh::python;

#[test]
fn dvidtools_and_dvid_point_cloud_work_on_the_demo_dataset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let demo = Demo::start(dir.path());
    let (root, child) = demo.nodes();
    let py = python();
    let log = || {
        format!(
            "--- demo log ---\n{}",
            std::fs::read_to_string(&demo.log).unwrap_or_default()
        )
    };
    run_suite(
        &py,
        "dvidtools_suite.py",
        &[&demo.base, &root, &child],
        25,
        &log,
    );
    run_suite(&py, "point_cloud_suite.py", &[&demo.base, &child], 6, &log);
    demo.stop();
}

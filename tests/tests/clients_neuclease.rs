//! The requests neuclease's `neuclease.dvid` functions make, as neuclease makes and parses them
//! (`tests/python/neuclease_suite.py`, our own code written from neuclease's source, since
//! neuclease is not on PyPI): its integration scenario of five 1×3×3 supervoxels merged into
//! one, gzipped labels.Block ingest with downres, block streams decoded by an independent
//! decoder, mappings, sizes, sparsevol headers, cleave, split-supervoxel, renumber, label
//! allocation, mutations across versions, roi, annotation with labelsz, and neuronjson.

use tessera_tests::clients::run_suite;
use tessera_tests::mesh::python;
use tessera_tests::*;

#[test]
fn neuclease_shaped_requests_get_neuclease_shaped_answers() {
    let srv = Server::start();
    let log = || format!("--- server log ---\n{}", srv.log());
    run_suite(&python(), "neuclease_suite.py", &[srv.base_url()], 13, &log);
}

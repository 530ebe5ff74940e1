//! Criterion benchmarks for Tessera. The benchmarks live in `benches/benches/`; run one with
//! `cargo bench --bench <name>` from the workspace root (see `docs/benchmarks.md`).

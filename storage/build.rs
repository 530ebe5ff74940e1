// Empty on purpose: this crate has a build script only so that its [build-dependencies] can pin
// the host-side features RocksDB's build script sees (see storage/Cargo.toml).
fn main() {}

#!/usr/bin/env bash
# Blocks on object storage against the embedded default, in one run: the labelmap HTTP bench
# (benches/labelmap/bench.py: 512³ real labels, ingest with pyramid and index, raw and
# specificblocks read-back) against
#   1. rocksdb        — the default store;
#   2. s3, no cache   — blocks as objects on SeaweedFS on loopback, object_cache_mb = 0: every
#                       block read is an S3 request;
#   3. s3, cache      — the same with the default 256 MiB object cache.
#   bash benches/objects/run.sh [bench.py args, e.g. --repeats 3]
# Environment: TESSERA_BIN (skip the release build), PERF_VENV, PERF_DATA as for
# benches/labelmap/run.sh; TESSERA_WEED (default ~/.cache/tessera/seaweedfs/bin/weed, installed
# by scripts/pyenv.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ -z "${TESSERA_BIN:-}" ]; then
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tessera/target-rel}"
    cargo build --release --workspace --bin tessera
    export TESSERA_BIN="$CARGO_TARGET_DIR/release/tessera"
fi
source benches/objects/weed.sh
start_weed

s3_config() { # CACHE_MB
    cat <<EOF
[store.default]
engine = "rocksdb"
path = "@WORK@/keys"
objects = "s3://tessera/bench-$1-$RANDOM"
object_cache_mb = $1

[store.default.object_options]
endpoint = "http://127.0.0.1:$B"
allow_http = "true"
region = "us-east-1"
access_key_id = "bench"
secret_access_key = "bench-secret"
EOF
}
s3_config 0 >"$WORK/s3-nocache.toml"
s3_config 256 >"$WORK/s3-cache.toml"

echo "== rocksdb"
bash benches/labelmap/run.sh "$@"
echo "== s3, no cache"
TESSERA_CONFIG="$WORK/s3-nocache.toml" bash benches/labelmap/run.sh "$@"
echo "== s3, cache 256 MiB"
TESSERA_CONFIG="$WORK/s3-cache.toml" bash benches/labelmap/run.sh "$@"

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
WEED="${TESSERA_WEED:-$HOME/.cache/tessera/seaweedfs/bin/weed}"
[ -x "$WEED" ] || bash scripts/pyenv.sh

WORK="$(mktemp -d "${TMPDIR:-/tmp}/tessera-objects.XXXXXX")"
B=$((20000 + RANDOM % 10000))
WEED_PID=
stop_weed() {
    [ -n "$WEED_PID" ] && kill "$WEED_PID" 2>/dev/null && wait "$WEED_PID" 2>/dev/null || true
    echo "seaweedfs data: $(du -sh "$WORK/weed" 2>/dev/null | cut -f1) in $WORK/weed; log $WORK/weed.log"
}
trap stop_weed EXIT
mkdir -p "$WORK/weed"
AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret "$WEED" -logdir="$WORK" mini \
    -dir="$WORK/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 -admin.ui=false -webdav=false \
    -s3.localSocket="$WORK/s3.sock" -filer.localSocket="$WORK/filer.sock" \
    -s3.port.iceberg=0 -s3.port.lance=0 \
    -bucket=tessera -s3.port=$B -s3.port.grpc=$((B + 1)) -master.port=$((B + 2)) \
    -master.port.grpc=$((B + 3)) -volume.port=$((B + 4)) -volume.port.grpc=$((B + 5)) \
    -filer.port=$((B + 6)) -filer.port.grpc=$((B + 7)) -webdav.port=$((B + 8)) \
    -admin.port=$((B + 9)) -admin.port.grpc=$((B + 10)) -debug.port=$((B + 11)) \
    >"$WORK/weed.log" 2>&1 &
WEED_PID=$!
for _ in $(seq 300); do
    curl -sf -o /dev/null "http://127.0.0.1:$((B + 6))/buckets/tessera/" && break
    sleep 0.2
done

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

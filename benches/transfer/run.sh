#!/usr/bin/env bash
# Push between two servers on loopback (docs/distribution.md): the 512³ real labelmap with 5
# pyramid levels pushed whole into fresh receivers, then 10 merges and a split, then the
# incremental push, for both merge workloads (random labels; the 20 largest).
#   bash benches/transfer/run.sh [--repeats 5]
# Environment: TESSERA_BIN (skip the release build), PERF_VENV, PERF_DATA as for
# benches/labelmap/run.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PERF_DATA="${PERF_DATA:-/tmp/perf/data}"
VENV="${PERF_VENV:-/tmp/perf/venv}"
source benches/labelmap/server.sh
ensure_venv
if [ ! -f "$PERF_DATA/real512.npy" ]; then
    mkdir -p "$PERF_DATA"
    cp ../shared/data/pinky40-512.ckl.gz "$PERF_DATA/connectomics.npy.ckl.gz"
    (cd ../shared/perf && "$VENV/bin/python" -c 'import common; common.load("real")')
fi
if [ -z "${TESSERA_BIN:-}" ]; then
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tessera/target-rel}"
    cargo build --release --workspace --bin tessera
    TESSERA_BIN="$CARGO_TARGET_DIR/release/tessera"
fi
for merges in random largest; do
    echo "== merges: $merges"
    "$VENV/bin/python" -u benches/transfer/bench.py --bin "$TESSERA_BIN" \
        --data-dir "$PERF_DATA" --merges "$merges" "$@"
done

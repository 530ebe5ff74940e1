#!/usr/bin/env bash
# `tessera pyramid --levels 5` of the real 512³ labels as one process, and as N workers started
# together (`--shard I/N`, as a job array runs them) writing into one directory: wall time of
# the whole job, median of R runs, and a check that both give the same bytes.
#   bash benches/jobs/shards.sh [N=4] [R=5] [dir|s3]
# With s3 the levels go straight into SeaweedFS on loopback as zarr arrays
# (`--out-dir s3://…`), each run under a fresh prefix; the bytes are checked by
# tests/tests/object_store.rs instead.
# Environment: TESSERA_BIN (skip the release build), PERF_DATA (default /tmp/perf/data, holding
# real512.npy as benches/labelmap/run.sh makes it).
set -euo pipefail
cd "$(dirname "$0")/../.."
N="${1:-4}" R="${2:-5}" DEST="${3:-dir}"
if [ -z "${TESSERA_BIN:-}" ]; then
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tessera/target-rel}"
    cargo build --release --workspace --bin tessera
    TESSERA_BIN="$CARGO_TARGET_DIR/release/tessera"
fi
INPUT="${PERF_DATA:-/tmp/perf/data}/real512.npy"
[ -f "$INPUT" ] || { echo "no $INPUT: run benches/labelmap/run.sh once to make it" >&2; exit 1; }
if [ "$DEST" = s3 ]; then
    source benches/objects/weed.sh
    start_weed
    export AWS_ENDPOINT="http://127.0.0.1:$B" AWS_ALLOW_HTTP=true AWS_REGION=us-east-1 \
        AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret
    out() { echo "s3://tessera/$1-$RUN"; }
else
    WORK="$(mktemp -d)"
    trap 'rm -rf "$WORK"' EXIT
    out() { echo "$WORK/$1"; }
fi

one() { "$TESSERA_BIN" pyramid --input "$INPUT" --levels 5 --compute cpu --out-dir "$(out one)" >/dev/null; }
sharded() {
    for i in $(seq 0 $((N - 1))); do
        "$TESSERA_BIN" pyramid --input "$INPUT" --levels 5 --compute cpu --out-dir "$(out sharded)" \
            --shard "$i/$N" >/dev/null &
    done
    wait
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
time_of() { local t0 t1; t0=$(date +%s.%N); "$@"; t1=$(date +%s.%N); echo "$t1 - $t0" | bc; }

one_times=() shard_times=()
for RUN in $(seq "$R"); do
    [ "$DEST" = s3 ] || rm -rf "$WORK/one" "$WORK/sharded"
    one_times+=("$(time_of one)")
    shard_times+=("$(time_of sharded)")
done
cmp_ok="checked by tests/tests/object_store.rs"
if [ "$DEST" != s3 ]; then
    cmp_ok=yes
    for f in "$WORK"/one/*.npy; do cmp -s "$f" "$WORK/sharded/$(basename "$f")" || cmp_ok=NO; done
fi
m1=$(printf '%s\n' "${one_times[@]}" | median)
mn=$(printf '%s\n' "${shard_times[@]}" | median)
echo "into $DEST, cpus $(nproc); one process: median ${m1} s (${one_times[*]}); $N shards: median ${mn} s (${shard_times[*]}); ratio $(echo "scale=2; $m1 / $mn" | bc); same bytes: $cmp_ok"

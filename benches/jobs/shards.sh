#!/usr/bin/env bash
# `tessera pyramid --levels 5` of the real 512³ labels as one process, and as N workers started
# together (`--shard I/N`, as a job array runs them) writing into one directory: wall time of
# the whole job, median of R runs, and a check that both give the same bytes.
#   bash benches/jobs/shards.sh [N=4] [R=5]
# Environment: TESSERA_BIN (skip the release build), PERF_DATA (default /tmp/perf/data, holding
# real512.npy as benches/labelmap/run.sh makes it).
set -euo pipefail
cd "$(dirname "$0")/../.."
N="${1:-4}" R="${2:-5}"
if [ -z "${TESSERA_BIN:-}" ]; then
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tessera/target-rel}"
    cargo build --release --workspace --bin tessera
    TESSERA_BIN="$CARGO_TARGET_DIR/release/tessera"
fi
INPUT="${PERF_DATA:-/tmp/perf/data}/real512.npy"
[ -f "$INPUT" ] || { echo "no $INPUT: run benches/labelmap/run.sh once to make it" >&2; exit 1; }
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

one() { "$TESSERA_BIN" pyramid --input "$INPUT" --levels 5 --compute cpu --out-dir "$WORK/one" >/dev/null; }
sharded() {
    for i in $(seq 0 $((N - 1))); do
        "$TESSERA_BIN" pyramid --input "$INPUT" --levels 5 --compute cpu --out-dir "$WORK/sharded" \
            --shard "$i/$N" >/dev/null &
    done
    wait
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
time_of() { local t0 t1; t0=$(date +%s.%N); "$@"; t1=$(date +%s.%N); echo "$t1 - $t0" | bc; }

one_times=() shard_times=()
for _ in $(seq "$R"); do
    rm -rf "$WORK/one" "$WORK/sharded"
    one_times+=("$(time_of one)")
    shard_times+=("$(time_of sharded)")
done
cmp_ok=yes
for f in "$WORK"/one/*.npy; do cmp -s "$f" "$WORK/sharded/$(basename "$f")" || cmp_ok=NO; done
m1=$(printf '%s\n' "${one_times[@]}" | median)
mn=$(printf '%s\n' "${shard_times[@]}" | median)
echo "cpus $(nproc); one process: median ${m1} s (${one_times[*]}); $N shards: median ${mn} s (${shard_times[*]}); ratio $(echo "scale=2; $m1 / $mn" | bc); same bytes: $cmp_ok"

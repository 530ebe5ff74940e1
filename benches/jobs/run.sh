#!/usr/bin/env bash
# Whole jobs as a user runs them: `tessera pyramid` and `tessera mesh` on the real 512³ labels
# beside the scripts a user would write with tinybrain and zmesh, each a whole process timed by
# hyperfine (--warmup 1, median of $RUNS), on all cores and with RAYON_NUM_THREADS=1 (the
# scripts are single-threaded).
#   bash benches/jobs/run.sh            # TESSERA_BIN=… to time another binary,
#                                       # TESSERA_BEFORE=… to time a second one beside it,
#                                       # JOBS_LIST="pyramid" for one job, RUNS=5
# Needs ../shared beside the clone and `hyperfine` (apt-get install -y hyperfine); the peers'
# venv and data go under /tmp/perf as benches/peers/run.sh makes them.
set -euo pipefail
cd "$(dirname "$0")/../.."
JOBS="$(pwd)/benches/jobs"
SHARED_PERF="$(realpath ../shared/perf)"
PERF_DATA="${PERF_DATA:-/tmp/perf/data}"
VENV="${PERF_VENV:-/tmp/perf/venv}"
RUNS="${RUNS:-5}"
OUT="${JOBS_OUT:-/tmp/jobs-out}"
export PERF_DATA
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q -r "$SHARED_PERF/requirements.txt"
fi
mkdir -p "$PERF_DATA" "$OUT"
if [ ! -f "$PERF_DATA/real512.npy" ]; then
    cp ../shared/data/pinky40-512.ckl.gz "$PERF_DATA/connectomics.npy.ckl.gz"
    (cd "$SHARED_PERF" && "$VENV/bin/python" -c 'import common; common.load("real")')
fi
if [ -z "${TESSERA_BIN:-}" ]; then
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tessera/target-rel}"
    cargo build --release --workspace --bins
    TESSERA_BIN="$CARGO_TARGET_DIR/release/tessera"
fi
IN="$PERF_DATA/real512.npy"
PY="$VENV/bin/python"

# name, command line (with DIR for its output directory), for each job and thread count
pyramid() { echo "$1 pyramid --input $IN --levels 5 --out-dir DIR --compute cpu"; }
mesh() { echo "$1 mesh --input $IN --out-dir DIR --compute cpu"; }
peer_pyramid="$PY $JOBS/tinybrain_pyramid.py $IN DIR 5"
peer_mesh="$PY $JOBS/zmesh_meshes.py $IN DIR"

# bench NAME THREADS: hyperfine over tessera (and the before binary), and the peer script
bench() {
    local job=$1 threads=$2 args=() i=0
    local -a names=("tessera $job") cmds=("$($job "$TESSERA_BIN")")
    if [ -n "${TESSERA_BEFORE:-}" ]; then
        names+=("tessera-before $job"); cmds+=("$($job "$TESSERA_BEFORE")")
    fi
    local peer_var="peer_$job"
    names+=("$( [ "$job" = pyramid ] && echo tinybrain || echo zmesh ) script")
    cmds+=("${!peer_var}")
    for i in "${!cmds[@]}"; do
        local dir="$OUT/$job-$i"
        local cmd="${cmds[$i]//DIR/$dir}"
        local env=""
        [ "$threads" = 1 ] && env="RAYON_NUM_THREADS=1 "
        args+=(-n "${names[$i]}" --prepare "rm -rf $dir" "${env}$cmd")
        # One untimed run for the summary line the command prints (its phase split).
        if [[ "${names[$i]}" == tessera* ]]; then
            rm -rf "$dir"
            echo "  ${names[$i]} (threads: $threads): $(env ${env} $cmd 2>/dev/null)"
        fi
    done
    hyperfine --warmup 1 --runs "$RUNS" --shell=bash --style basic \
        --export-json "$OUT/$job-$threads.json" "${args[@]}" | grep -v '^ *$' || true
}

echo "tessera: $TESSERA_BIN; before: ${TESSERA_BEFORE:-none}; input: $IN; cores: $(nproc); runs: $RUNS"
for threads in all 1; do
    for job in ${JOBS_LIST:-pyramid mesh}; do
        echo "== $job, threads: $threads"
        bench "$job" "$threads"
    done
done
"$PY" "$JOBS/summary.py" "$OUT"

#!/usr/bin/env bash
# `tessera pyramid` and `tessera mesh` beside Igneous (seung-lab's task pipeline over
# tinybrain and zmesh) doing the same job on a precomputed layer of the real 512³ labels, run
# by its LocalTaskQueue with as many processes as cores, then with one; tessera on all cores,
# then with RAYON_NUM_THREADS=1. Whole processes, hyperfine (--warmup 1, median of $RUNS); each
# run starts from the bare layer or an empty output directory (untimed).
#   bash benches/jobs/igneous.sh       # TESSERA_BIN=…, RUNS=5, JOBS_LIST="pyramid mesh"
# Needs ../shared beside the clone and hyperfine; Igneous goes into its own venv
# ($IGNEOUS_VENV, default /tmp/perf/igneous), the data under /tmp/perf as benches/jobs/run.sh
# makes it. igneous_jobs.py says how the layer and the tasks are set up.
set -euo pipefail
cd "$(dirname "$0")/../.."
JOBS="$(pwd)/benches/jobs"
PERF_DATA="${PERF_DATA:-/tmp/perf/data}"
VENV="${IGNEOUS_VENV:-/tmp/perf/igneous}"
RUNS="${RUNS:-5}"
OUT="${JOBS_OUT:-/tmp/jobs-out}/igneous"
IN="$PERF_DATA/real512.npy"
if [ ! -f "$IN" ]; then
    echo "no $IN: run benches/jobs/run.sh first, which makes it" >&2
    exit 2
fi
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q igneous-pipeline
fi
if [ -z "${TESSERA_BIN:-}" ]; then
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tessera/target-rel}"
    cargo build --release -p tessera-api --bin tessera
    TESSERA_BIN="$CARGO_TARGET_DIR/release/tessera"
fi
PY="$VENV/bin/python"
LAYER="$OUT/layer"
mkdir -p "$OUT"
"$PY" "$JOBS/igneous_jobs.py" setup "$LAYER" "$IN"
ign="$PY $JOBS/igneous_jobs.py"
cores=$(nproc)

echo "tessera: $TESSERA_BIN; igneous $("$PY" -c 'import importlib.metadata as m; print(m.version("igneous-pipeline"))'); input: $IN; cores: $cores; runs: $RUNS"
for job in ${JOBS_LIST:-pyramid mesh}; do
    case $job in
        pyramid) t="pyramid --input $IN --levels 5 --compute cpu"; i="pyramid $LAYER 5" ;;
        mesh) t="mesh --input $IN --compute cpu"; i="mesh $LAYER" ;;
    esac
    for threads in all 1; do
        procs=$([ "$threads" = all ] && echo "$cores" || echo 1)
        env=$([ "$threads" = 1 ] && echo "RAYON_NUM_THREADS=1 " || true)
        echo "== $job, threads: $threads"
        hyperfine --warmup 1 --runs "$RUNS" --shell=bash --style basic \
            --export-json "$OUT/$job-$threads.json" \
            -n "tessera $job" --prepare "rm -rf $OUT/tessera" "${env}$TESSERA_BIN $t --out-dir $OUT/tessera" \
            -n "igneous $job" --prepare "$ign reset $LAYER" "$ign $i $procs > /dev/null 2>&1" \
            | grep -v '^ *$' || true
    done
done
"$PY" - "$OUT" <<'EOF'
import json, pathlib, statistics, sys
out = pathlib.Path(sys.argv[1])
print("| job | threads | tessera s | igneous s | ratio |\n|---|---|---:|---:|---:|")
for f in sorted(out.glob("*.json")):
    job, threads = f.stem.split("-")
    r = {x["command"].split()[0]: statistics.median(x["times"]) for x in json.loads(f.read_text())["results"]}
    print(f"| {job} | {threads} | {r['tessera']:.2f} | {r['igneous']:.2f} | {r['igneous'] / r['tessera']:.2f}× |")
EOF

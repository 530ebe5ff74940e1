#!/usr/bin/env bash
# Edit latency under load, and HTTP ingest, against a `tessera serve` (release) started on a
# free loopback port with a throwaway store, stopped on exit (benches/labelmap/server.sh).
#   bash benches/latency/run.sh edit [ARGS]     # edit_latency.py: merge/cleave/split/split-sv
#                                               # p50/p99 on 1M/10M/100M-voxel bodies, 4 readers
#   bash benches/latency/run.sh ingest [ARGS]   # ingest.py: POST raw and POST blocks, Mvox/s
# ARGS go to the script (`python benches/latency/edit_latency.py --help`).
# Environment:
#   TESSERA_BIN=PATH   serve with this binary (default: the release build in
#                      $HOME/.cache/tessera/target-rel when there, else server.sh builds it)
#   PERF_VENV, PERF_DATA   the peers' venv and volumes (default /tmp/perf/venv, /tmp/perf/data),
#                          made from ../shared/perf when missing, as benches/labelmap/run.sh does
set -euo pipefail
cd "$(dirname "$0")/../.."
export PERF_DATA="${PERF_DATA:-/tmp/perf/data}"
VENV="${PERF_VENV:-/tmp/perf/venv}"

case "${1:-}" in
    edit) script=benches/latency/edit_latency.py ;;
    ingest) script=benches/latency/ingest.py ;;
    *) echo "usage: $0 edit|ingest [ARGS]" >&2; exit 2 ;;
esac
shift

rel="$HOME/.cache/tessera/target-rel/release/tessera"
if [ -z "${TESSERA_BIN:-}" ] && [ -x "$rel" ]; then
    export TESSERA_BIN="$rel"
fi

source benches/labelmap/server.sh
ensure_venv
mkdir -p "$PERF_DATA"
if [ ! -f "$PERF_DATA/real512.npy" ]; then
    # common.load("real") decodes the crackle file into real512.npy.
    cp ../shared/data/pinky40-512.ckl.gz "$PERF_DATA/connectomics.npy.ckl.gz"
    (cd ../shared/perf && "$VENV/bin/python" -c 'import common; common.load("real")')
fi

start_server latency
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

"$VENV/bin/python" -u "$script" --url "$URL" --server-pid "$SERVER_PID" --server-log "$LOG" \
    --data-dir "$PERF_DATA" "$@"

#!/usr/bin/env bash
# HTTP benchmark of the labelmap datatype: builds `tessera` (release), starts `tessera serve` on a
# free loopback port with a throwaway store, and runs bench.py against it from another process.
#   bash benches/labelmap/run.sh                     # pinky40 512³ cutout, 3 repeats
#   bash benches/labelmap/run.sh --data synthetic --repeats 5
# Arguments go to bench.py (see `python benches/labelmap/bench.py --help`).
# Environment:
#   TESSERA_BIN=PATH   serve with this binary and skip the build
#   PERF_VENV, PERF_DATA   the peers' venv and volumes (default /tmp/perf/venv, /tmp/perf/data),
#                          made from ../shared/perf when missing, as benches/peers/run.sh does
set -euo pipefail
cd "$(dirname "$0")/../.."
export PERF_DATA="${PERF_DATA:-/tmp/perf/data}"
VENV="${PERF_VENV:-/tmp/perf/venv}"

# The volume bench.py will load (its --data), so that only that one is prepared.
data=real prev=
for a in "$@"; do
    case "$a" in --data=*) data="${a#--data=}" ;; esac
    [ "$prev" = --data ] && data="$a"
    prev="$a"
done

# Venv and data: the same steps as benches/peers/run.sh, which can't be sourced (it also builds
# everything and runs the peers).
source benches/labelmap/server.sh
ensure_venv
mkdir -p "$PERF_DATA"
if [ "$data" = synthetic ] && [ ! -f "$PERF_DATA/labels512.npy" ]; then
    "$VENV/bin/python" ../shared/perf/gen_data.py "$PERF_DATA"    # ~4 min
fi
if [ "$data" = real ] && [ ! -f "$PERF_DATA/real512.npy" ]; then
    # common.load("real") decodes the crackle file into real512.npy.
    cp ../shared/data/pinky40-512.ckl.gz "$PERF_DATA/connectomics.npy.ckl.gz"
    (cd ../shared/perf && "$VENV/bin/python" -c 'import common; common.load("real")')
fi

start_server bench

"$VENV/bin/python" -u benches/labelmap/bench.py --url "$URL" --server-pid "$SERVER_PID" \
    --server-log "$LOG" --data-dir "$PERF_DATA" "$@"

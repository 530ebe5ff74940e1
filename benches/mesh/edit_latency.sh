#!/usr/bin/env bash
# Mesh-after-edit benchmark of the labelmap datatype (GET mesh/<label> of ~1M-voxel bodies right
# after a merge or a split, cold and warm): builds `tessera` (release), starts
# `tessera serve --compute cpu` on a free loopback port with a throwaway store, and runs
# edit_latency.py against it from another process.
#   bash benches/mesh/edit_latency.sh                   # 30 iterations of each measure
#   bash benches/mesh/edit_latency.sh --iterations 5    # a quick look
# Arguments go to edit_latency.py (see `python benches/mesh/edit_latency.py --help`).
# Exit status: edit_latency.py's (2 when it couldn't run or a mesh response was invalid).
# Environment:
#   TESSERA_BIN=PATH   serve with this binary and skip the build
#   PERF_VENV          the peers' venv, for numpy (default /tmp/perf/venv, made from
#                      ../shared/perf/requirements.txt when missing, as run.sh does)
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${PERF_VENV:-/tmp/perf/venv}"

source benches/labelmap/server.sh
ensure_venv
start_server mesh

"$VENV/bin/python" -u benches/mesh/edit_latency.py --url "$URL" --server-pid "$SERVER_PID" \
    --server-log "$LOG" "$@"

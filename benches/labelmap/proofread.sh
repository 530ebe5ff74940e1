#!/usr/bin/env bash
# Proofreading benchmark of the labelmap datatype (merge and split latency, read-your-writes):
# builds `tessera` (release), starts `tessera serve` on a free loopback port with a throwaway
# store, and runs proofread.py against it from another process.
#   bash benches/labelmap/proofread.sh                          # 200 merges, 200 splits
#   bash benches/labelmap/proofread.sh --merges 20 --splits 20  # a quick look
# Arguments go to proofread.py (see `python benches/labelmap/proofread.py --help`).
# Exit status: proofread.py's (1 on read-your-writes violations, 2 when it couldn't run).
# Environment:
#   TESSERA_BIN=PATH   serve with this binary and skip the build
#   PERF_VENV          the peers' venv, for numpy (default /tmp/perf/venv, made from
#                      ../shared/perf/requirements.txt when missing, as run.sh does)
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${PERF_VENV:-/tmp/perf/venv}"

source benches/labelmap/server.sh
ensure_venv
start_server proofread

"$VENV/bin/python" -u benches/labelmap/proofread.py --url "$URL" --server-pid "$SERVER_PID" \
    --server-log "$LOG" "$@"

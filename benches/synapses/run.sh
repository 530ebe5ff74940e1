#!/usr/bin/env bash
# Synapse benchmark (labelmap → annotation → labelsz): builds `tessera` (release), starts
# `tessera serve` on a free loopback port with a throwaway store, and runs bench.py against it
# from another process.
#   bash benches/synapses/run.sh                              # 1M elements, 7 merges
#   bash benches/synapses/run.sh --elements 100000 --repeats 3  # a quick look
# Arguments go to bench.py (see `python benches/synapses/bench.py --help`).
# Environment:
#   TESSERA_BIN=PATH   serve with this binary and skip the build
#   PERF_VENV          the peers' venv, for numpy (default /tmp/perf/venv, made from
#                      ../shared/perf/requirements.txt when missing)
#   CPUS=LIST          pin the server to these cores (taskset -c), e.g. CPUS=0 for one core
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${PERF_VENV:-/tmp/perf/venv}"

source benches/labelmap/server.sh
ensure_venv
start_server synapses
if [ -n "${CPUS:-}" ]; then
    taskset -a -p -c "$CPUS" "$SERVER_PID" >/dev/null
    echo "server pinned to cores $CPUS"
fi

"$VENV/bin/python" -u benches/synapses/bench.py --url "$URL" --server-pid "$SERVER_PID" \
    --server-log "$LOG" "$@"

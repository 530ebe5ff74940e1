#!/usr/bin/env bash
# HTTP benchmark of grayscale ingest and serving (benches/grayscale/bench.py): builds `tessera`
# (release) unless TESSERA_BIN is set, starts it on a throwaway store, and runs the script.
#   bash benches/grayscale/run.sh [--size 1024,1024,512] [--levels 5] [--repeats 3]
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${GRAY_VENV:-/tmp/perf/gray-venv}"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q numpy requests
fi
source benches/labelmap/server.sh
start_server gray
"$VENV/bin/python" -u benches/grayscale/bench.py --url "$URL" "$@"

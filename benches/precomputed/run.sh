#!/usr/bin/env bash
# Read rate of the precomputed view (CloudVolume, tensorstore) beside GET raw: builds `tessera`
# (release), starts `tessera serve` on a free loopback port with a throwaway store, and runs
# bench.py from another process with the test venv (cloud-volume, tensorstore).
#   bash benches/precomputed/run.sh [--repeats 5] [--parallel 1]
# Environment: TESSERA_BIN=PATH serves with this binary and skips the build.
set -euo pipefail
cd "$(dirname "$0")/../.."

bash scripts/pyenv.sh >/dev/null
PY="${TESSERA_PYTHON:-$HOME/.cache/tessera/pyenv/bin/python}"
source benches/labelmap/server.sh
start_server precomputed
"$PY" -u benches/precomputed/bench.py --url "$URL" "$@"

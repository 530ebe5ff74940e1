#!/usr/bin/env bash
# `tessera load --pyramid 5` beside the same ingest scripted in Python (python_ingest.py), each as
# a whole process, against one server, on a 1024x1024x512 EM-like uint8 volume with JPEG storage.
#   bash benches/grayscale/load_vs_python.sh [repeats]
set -euo pipefail
cd "$(dirname "$0")/../.."
REPEATS="${1:-3}"
VENV="${GRAY_VENV:-/tmp/perf/gray-venv}"
[ -x "$VENV/bin/python" ] || { python3 -m venv "$VENV"; "$VENV/bin/pip" install -q numpy requests; }
NPY="${GRAY_NPY:-/tmp/perf/gray1024x1024x512.npy}"
if [ ! -f "$NPY" ]; then
    "$VENV/bin/python" - "$NPY" <<'PY'
import sys, numpy as np
sys.path.insert(0, "benches/grayscale")
from bench import em_like
slabs = em_like((1024, 1024, 512))
np.save(sys.argv[1], np.frombuffer(b"".join(slabs), np.uint8).reshape(512, 1024, 1024))
PY
fi
source benches/labelmap/server.sh
start_server load
for i in $(seq "$REPEATS"); do
    root=$(curl -s -X POST "$URL/api/repos" -d "{\"alias\":\"t$i\"}" | sed 's/.*"root": *"\([^"]*\)".*/\1/')
    t0=$(date +%s.%N)
    "$TESSERA_BIN" load --server "$URL" --uuid "$root" --instance grayscale --compression jpeg \
        --block-size 64 --pyramid 5 --compute cpu --quiet "$NPY"
    t1=$(date +%s.%N)
    root=$(curl -s -X POST "$URL/api/repos" -d "{\"alias\":\"p$i\"}" | sed 's/.*"root": *"\([^"]*\)".*/\1/')
    "$VENV/bin/python" benches/grayscale/python_ingest.py --url "$URL" --uuid "$root" "$NPY"
    t2=$(date +%s.%N)
    echo "run $i: tessera load $(echo "$t1 - $t0" | bc) s, python $(echo "$t2 - $t1" | bc) s"
done

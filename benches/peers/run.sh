#!/usr/bin/env bash
# Runs Tessera's kernels and the peer libraries on the same 512³ volumes in one run, on one core
# and on all cores, beside the memory-bandwidth roofline (see compare.py's docstring).
#   bash benches/peers/run.sh
#   TESSERA_BIN=/path/to/tessera PERF_DATASETS=real PERF_KERNELS=downsample_mode,relabel_1000_to_1 \
#     PERF_MODES=single PERF_REPEATS=1 bash benches/peers/run.sh     # a quick subset, no build
# Needs ../shared/perf beside the clone (the peers' venv and data go under /tmp/perf).
set -euo pipefail
cd "$(dirname "$0")/../.."
SHARED_PERF="$(realpath ../shared/perf)"
export SHARED_PERF PERF_DATA="${PERF_DATA:-/tmp/perf/data}"
VENV="${PERF_VENV:-/tmp/perf/venv}"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q -r "$SHARED_PERF/requirements.txt"
fi
[ -f "$PERF_DATA/labels512.npy" ] || "$VENV/bin/python" "$SHARED_PERF/gen_data.py" "$PERF_DATA"
if [ ! -f "$PERF_DATA/real512.npy" ]; then
    cp ../shared/data/pinky40-512.ckl.gz "$PERF_DATA/connectomics.npy.ckl.gz"
    (cd "$SHARED_PERF" && "$VENV/bin/python" -c 'import common; common.load("real")')
fi
if [ -z "${TESSERA_BIN:-}" ]; then
    # The project's one release build (same target dir and feature set for everyone).
    CARGO_TARGET_DIR="$HOME/.cache/tessera/target-rel" cargo build --release --workspace --bins
    TESSERA_BIN="$HOME/.cache/tessera/target-rel/release/tessera"
fi
export TESSERA_BIN
"$VENV/bin/python" benches/peers/compare.py

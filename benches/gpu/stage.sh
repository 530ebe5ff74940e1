#!/usr/bin/env bash
# Stages `tessera bench gpu` for a GPU machine that has no toolchain and no network:
# the release binary and the Vulkan loader (../shared/gpu/stage.sh), and the real 512³ labels
# as gzipped uint32 .npy (17 MB; the labels fit in 32 bits), into .gpu-stage/, compressed.
#   bash benches/gpu/stage.sh        # then, there: bash benches/gpu/run.sh
# Needs /tmp/perf/data/real512.npy (bash benches/peers/run.sh makes it) and its venv.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tessera/target-rel}"
[ -n "${TESSERA_BIN:-}" ] || cargo build --release --workspace --bins
bash ../shared/gpu/stage.sh "${TESSERA_BIN:-$CARGO_TARGET_DIR/release/tessera}"
# The working tree that travels is capped (64 MiB): the binary goes compressed.
gzip -f .gpu-stage/bin/tessera
if [ ! -f .gpu-stage/real512_u32.npy.gz ]; then
    "${PERF_VENV:-/tmp/perf/venv}/bin/python" -c '
import numpy as np, sys
a = np.load(sys.argv[1], mmap_mode="r")
assert a.max() < 2**32
np.save(sys.argv[2], a.astype(np.uint32))' "${PERF_DATA:-/tmp/perf/data}/real512.npy" /tmp/real512_u32.npy
    gzip -c /tmp/real512_u32.npy > .gpu-stage/real512_u32.npy.gz
fi
du -sh .gpu-stage

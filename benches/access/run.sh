#!/usr/bin/env bash
# What access control, metrics and the request log cost per request: the same small reads
# (a keyvalue value, a labelmap label) against `tessera serve` with auth off and with
# `[auth] enforce = "token"` (a signed token on every request), one client connection.
#   bash benches/access/run.sh [--requests 3000]
# Environment: TESSERA_BIN=PATH uses this binary and skips the release build.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ -z "${TESSERA_BIN:-}" ]; then
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tessera/target-rel}"
    cargo build --release --workspace --bin tessera
    TESSERA_BIN="$CARGO_TARGET_DIR/release/tessera"
fi
bash scripts/pyenv.sh >/dev/null
PY="${TESSERA_PYTHON:-$HOME/.cache/tessera/pyenv/bin/python}"
"$PY" -u benches/access/bench.py --bin "$TESSERA_BIN" "$@"

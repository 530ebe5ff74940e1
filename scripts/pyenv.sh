#!/usr/bin/env bash
# Creates the Python virtual environment the black-box tests use to check neuroglancer's
# compressed_segmentation output (tests/python/check_cseg.py, tests/tests/labelmap_cseg.rs):
# numpy + the `compressed-segmentation` PyPI package. Idempotent: does nothing when the venv
# already imports both.
#   bash scripts/pyenv.sh            # venv in $TESSERA_PYENV, default ~/.cache/tessera/pyenv
# The tests run $TESSERA_PYTHON, default ~/.cache/tessera/pyenv/bin/python.
set -euo pipefail

VENV="${TESSERA_PYENV:-$HOME/.cache/tessera/pyenv}"
PY="$VENV/bin/python"
CHECK="import compressed_segmentation, numpy"

if [ -x "$PY" ] && "$PY" -c "$CHECK" >/dev/null 2>&1; then
    echo "pyenv: $VENV ready (compressed_segmentation, numpy)"
    exit 0
fi

if ! command -v python3 >/dev/null 2>&1; then
    echo "pyenv: python3 not found; install python3 and python3-venv" >&2
    exit 1
fi

echo "pyenv: creating $VENV"
mkdir -p "$(dirname "$VENV")"
if [ ! -x "$PY" ]; then
    python3 -m venv "$VENV"
fi
"$PY" -m pip install --quiet --disable-pip-version-check compressed-segmentation numpy
"$PY" -c "$CHECK"
echo "pyenv: $VENV ready (compressed_segmentation, numpy)"

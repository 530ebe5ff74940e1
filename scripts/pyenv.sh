#!/usr/bin/env bash
# Creates the Python virtual environment the black-box tests use as independent readers:
# neuroglancer's compressed_segmentation output (tests/python/check_cseg.py,
# tests/tests/labelmap_cseg.rs) and meshes in ngmesh/OBJ/PLY (tests/python/check_mesh.py,
# tests/tests/mesh*.rs): numpy + the `compressed-segmentation` and `trimesh` PyPI packages;
# the precomputed readers that tests/tests/precomputed.rs drives (`cloud-volume`,
# `tensorstore`), dvidtools and dvid-point-cloud (tests/tests/clients_demo.rs) — clients, pinned, whose
# behaviour the tests depend on. pandas stays below 3: dvidtools 0.6.0's get_adjacency fails
# under pandas 3 (it fills string-typed columns with 0).
# Idempotent: does nothing when the venv already imports all three; installs only what an
# existing venv lacks otherwise.
#   bash scripts/pyenv.sh            # venv in $TESSERA_PYENV, default ~/.cache/tessera/pyenv
# The tests run $TESSERA_PYTHON, default ~/.cache/tessera/pyenv/bin/python.
set -euo pipefail

VENV="${TESSERA_PYENV:-$HOME/.cache/tessera/pyenv}"
PY="$VENV/bin/python"
CHECK="import compressed_segmentation, numpy, trimesh, cloudvolume, tensorstore, dvid, dvid_point_cloud, pandas; assert int(pandas.__version__.split('.')[0]) < 3"
PACKAGES=(compressed-segmentation numpy trimesh cloud-volume==12.15.2 tensorstore==0.1.86
          dvidtools==0.6.0 dvid-point-cloud==0.1.3 "pandas<3")

if [ -x "$PY" ] && "$PY" -c "$CHECK" >/dev/null 2>&1; then
    echo "pyenv: $VENV ready (${PACKAGES[*]})"
    exit 0
fi

if ! command -v python3 >/dev/null 2>&1; then
    echo "pyenv: python3 not found; install python3 and python3-venv" >&2
    exit 1
fi

echo "pyenv: creating or completing $VENV"
mkdir -p "$(dirname "$VENV")"
if [ ! -x "$PY" ]; then
    python3 -m venv "$VENV"
fi
"$PY" -m pip install --quiet --disable-pip-version-check "${PACKAGES[@]}"
"$PY" -c "$CHECK"
echo "pyenv: $VENV ready (${PACKAGES[*]})"

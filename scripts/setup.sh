#!/usr/bin/env bash
# Installs the system packages Tessera needs to build and test. Idempotent: does nothing when
# they are already present.
#   libclang-dev                     bindgen needs it to build RocksDB's bindings
#   clang                            compiles RocksDB's C++ (.cargo/config.toml), faster than g++
#   mesa-vulkan-drivers libvulkan1   lavapipe, the software Vulkan adapter used for GPU tests in CI
#   libturbojpeg0-dev pkg-config     libjpeg-turbo, the JPEG codec of grayscale blocks
#   python3 python3-venv             the client-library checks (scripts/pyenv.sh)
# Arguments name more packages to install the same way (scripts/browser.sh: chromium, …).
set -euo pipefail

PACKAGES=(libclang-dev clang libturbojpeg0-dev pkg-config mesa-vulkan-drivers libvulkan1 python3 python3-venv "$@")

missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "setup: system packages present (${PACKAGES[*]})"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: missing ${missing[*]}, and apt-get is not available; install them by hand" >&2
    exit 1
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    echo "setup: missing ${missing[*]}; run as root or install sudo" >&2
    exit 1
fi

echo "setup: installing ${missing[*]}"
"${SUDO[@]}" apt-get update
DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y --no-install-recommends "${missing[@]}"

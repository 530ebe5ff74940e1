#!/usr/bin/env bash
# What the neuroglancer test (tests/tests/neuroglancer.rs) needs: Debian chromium, node and
# npm, and in $TESSERA_BROWSER (default ~/.cache/tessera/browser) neuroglancer's standalone
# build with playwright-core and pngjs. Idempotent.
#
# The viewer is npm @janelia-flyem/neuroglancer's dist/min, fetched with `npm pack`: installing
# the package would pull a GitHub dependency that no package registry serves.
set -euo pipefail
cd "$(dirname "$0")/.."

extra=(chromium)
command -v node >/dev/null 2>&1 || extra+=(nodejs)
command -v npm >/dev/null 2>&1 || extra+=(npm)
bash scripts/setup.sh "${extra[@]}"

DIR="${TESSERA_BROWSER:-$HOME/.cache/tessera/browser}"
NG=2.37.5 PLAYWRIGHT=1.57.0 PNGJS=7.0.0
READY="$DIR/ready-$NG-$PLAYWRIGHT-$PNGJS"
if [ -f "$READY" ]; then
    echo "browser: $DIR ready (neuroglancer $NG, playwright-core $PLAYWRIGHT, pngjs $PNGJS)"
    exit 0
fi
mkdir -p "$DIR"
cd "$DIR"
npm pack --silent "@janelia-flyem/neuroglancer@$NG" >/dev/null
rm -rf package
tar xzf "janelia-flyem-neuroglancer-$NG.tgz"
rm "janelia-flyem-neuroglancer-$NG.tgz"
[ -f package.json ] || echo '{"private": true}' > package.json
npm install --silent --no-audit --no-fund "playwright-core@$PLAYWRIGHT" "pngjs@$PNGJS"
touch "$READY"
echo "browser: $DIR ready (neuroglancer $NG, playwright-core $PLAYWRIGHT, pngjs $PNGJS)"

#!/usr/bin/env bash
# Builds (release) and runs the server. Arguments go to `tessera serve`, e.g.
#   bash scripts/serve.sh                         # http://127.0.0.1:8000, data in ./tessera-data
#   bash scripts/serve.sh --config tessera.toml
#   bash scripts/serve.sh --addr 0.0.0.0:8000 --data /srv/tessera
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tessera/target}"
exec cargo run --release -p tessera-api --bin tessera -- serve "$@"

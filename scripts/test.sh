#!/usr/bin/env bash
# Builds the workspace and runs every test (one profile: dev).
#   bash scripts/test.sh [args for every test binary, e.g. a filter or --test-threads=2]
# TESSERA_TEST_JOBS=N: test binaries run at once (default: the CPUs; scripts/run_tests.py).
set -euo pipefail
cd "$(dirname "$0")/.."

# nats-server: tests/tests/mutation_stream.rs starts a real JetStream server.
bash scripts/setup.sh nats-server
bash scripts/pyenv.sh
bash scripts/browser.sh

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tessera/target}"
if [ "${CI:-}" = "true" ]; then
    export CARGO_INCREMENTAL=0
fi

echo "test: CARGO_TARGET_DIR=$CARGO_TARGET_DIR"
# The black-box tests in tests/ run the real `tessera` binary, so build the binaries first.
echo "+ cargo build --workspace --all-targets"
cargo build --workspace --all-targets
echo "+ python3 scripts/run_tests.py $*"
python3 scripts/run_tests.py "$@"

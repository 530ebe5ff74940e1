#!/usr/bin/env bash
# Proofreading benchmark of the labelmap datatype (merge and split latency, read-your-writes):
# builds `tessera` (release), starts `tessera serve` on a free loopback port with a throwaway
# store, and runs proofread.py against it from another process.
#   bash benches/labelmap/proofread.sh                          # 200 merges, 200 splits
#   bash benches/labelmap/proofread.sh --merges 20 --splits 20  # a quick look
# Arguments go to proofread.py (see `python benches/labelmap/proofread.py --help`).
# Exit status: proofread.py's (1 on read-your-writes violations, 2 when it couldn't run).
# Environment:
#   TESSERA_BIN=PATH   serve with this binary and skip the build
#   PERF_VENV          the peers' venv, for numpy (default /tmp/perf/venv, made from
#                      ../shared/perf/requirements.txt when missing, as run.sh does)
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${PERF_VENV:-/tmp/perf/venv}"

if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q -r ../shared/perf/requirements.txt
fi

if [ -z "${TESSERA_BIN:-}" ]; then
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tessera/target-rel}"
    cargo build --release --workspace --bin tessera
    TESSERA_BIN="$CARGO_TARGET_DIR/release/tessera"
fi

# From here on, the same server start as run.sh: the store lives in a temporary directory
# removed on exit; the server's stderr goes to a file beside it that is kept.
WORK="$(mktemp -d "${TMPDIR:-/tmp}/tessera-labelmap-proofread.XXXXXX")"
LOG="$WORK.server.log"
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID"
        # Graceful shutdown flushes the store; don't wait forever on it.
        for _ in $(seq 60); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.5; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
    echo "server log: $LOG"
}
trap cleanup EXIT

# NO_COLOR keeps ANSI escapes out of the log; RUST_LOG=info is the server's default, made explicit.
NO_COLOR=1 RUST_LOG="${RUST_LOG:-info}" "$TESSERA_BIN" serve --addr 127.0.0.1:0 \
    --data "$WORK/store" --compute cpu >"$WORK/stdout" 2>"$LOG" &
SERVER_PID=$!

# Port 0 lets the server pick a free port; it prints "tessera listening on http://ADDR" when ready.
URL=
for _ in $(seq 120); do
    URL="$(sed -n 's/^tessera listening on \(http:\/\/[^ ]*\).*/\1/p' "$WORK/stdout" | head -n1)"
    [ -n "$URL" ] && break
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "proofread.sh: the server exited before listening:" >&2
        tail -n 20 "$LOG" >&2
        exit 1
    fi
    sleep 0.5
done
if [ -z "$URL" ]; then
    echo "proofread.sh: the server didn't print its address within 60 s" >&2
    exit 1
fi
echo "server $TESSERA_BIN (pid $SERVER_PID) at $URL, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"

"$VENV/bin/python" -u benches/labelmap/proofread.py --url "$URL" --server-pid "$SERVER_PID" \
    --server-log "$LOG" "$@"

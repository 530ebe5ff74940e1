#!/usr/bin/env bash
# HTTP benchmark of the labelmap datatype: builds `tessera` (release), starts `tessera serve` on a
# free loopback port with a throwaway store, and runs bench.py against it from another process.
#   bash benches/labelmap/run.sh                     # pinky40 512³ cutout, 3 repeats
#   bash benches/labelmap/run.sh --data synthetic --repeats 5
# Arguments go to bench.py (see `python benches/labelmap/bench.py --help`).
# Environment:
#   TESSERA_BIN=PATH   serve with this binary and skip the build
#   PERF_VENV, PERF_DATA   the peers' venv and volumes (default /tmp/perf/venv, /tmp/perf/data),
#                          made from ../shared/perf when missing, as benches/peers/run.sh does
set -euo pipefail
cd "$(dirname "$0")/../.."
export PERF_DATA="${PERF_DATA:-/tmp/perf/data}"
VENV="${PERF_VENV:-/tmp/perf/venv}"

# The volume bench.py will load (its --data), so that only that one is prepared.
data=real prev=
for a in "$@"; do
    case "$a" in --data=*) data="${a#--data=}" ;; esac
    [ "$prev" = --data ] && data="$a"
    prev="$a"
done

# Venv and data: the same steps as benches/peers/run.sh, which can't be sourced (it also builds
# everything and runs the peers).
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q -r ../shared/perf/requirements.txt
fi
mkdir -p "$PERF_DATA"
if [ "$data" = synthetic ] && [ ! -f "$PERF_DATA/labels512.npy" ]; then
    "$VENV/bin/python" ../shared/perf/gen_data.py "$PERF_DATA"    # ~4 min
fi
if [ "$data" = real ] && [ ! -f "$PERF_DATA/real512.npy" ]; then
    # common.load("real") decodes the crackle file into real512.npy.
    cp ../shared/data/pinky40-512.ckl.gz "$PERF_DATA/connectomics.npy.ckl.gz"
    (cd ../shared/perf && "$VENV/bin/python" -c 'import common; common.load("real")')
fi

if [ -z "${TESSERA_BIN:-}" ]; then
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tessera/target-rel}"
    cargo build --release --workspace --bin tessera
    TESSERA_BIN="$CARGO_TARGET_DIR/release/tessera"
fi

# The store lives in a temporary directory removed on exit; the server's stderr (its INFO log,
# where each ingest reports its phase split) goes to a file beside it that is kept.
WORK="$(mktemp -d "${TMPDIR:-/tmp}/tessera-labelmap-bench.XXXXXX")"
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
        echo "run.sh: the server exited before listening:" >&2
        tail -n 20 "$LOG" >&2
        exit 1
    fi
    sleep 0.5
done
if [ -z "$URL" ]; then
    echo "run.sh: the server didn't print its address within 60 s" >&2
    exit 1
fi
echo "server $TESSERA_BIN (pid $SERVER_PID) at $URL, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"

"$VENV/bin/python" -u benches/labelmap/bench.py --url "$URL" --server-pid "$SERVER_PID" \
    --server-log "$LOG" --data-dir "$PERF_DATA" "$@"

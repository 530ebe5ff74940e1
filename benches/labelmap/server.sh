# Sourced by run.sh and proofread.sh (after `cd` to the repository root, with VENV set).
#   ensure_venv         makes the peers' venv (numpy, …) when missing
#   start_server NAME   builds `tessera` (release) unless TESSERA_BIN is set and starts
#                       `tessera serve --compute cpu` on a free loopback port with a throwaway
#                       store, stopped on exit; leaves URL, SERVER_PID and LOG (its stderr)
#   TESSERA_CONFIG=FILE serve with this TOML config instead (e.g. stores and placement to
#                       compare); "@WORK@" in it becomes the throwaway directory
ensure_venv() {
    if [ ! -x "$VENV/bin/python" ]; then
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install -q -r ../shared/perf/requirements.txt
    fi
}

start_server() {
    if [ -z "${TESSERA_BIN:-}" ]; then
        export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tessera/target-rel}"
        cargo build --release --workspace --bin tessera
        TESSERA_BIN="$CARGO_TARGET_DIR/release/tessera"
    fi

    # The store lives in a temporary directory removed on exit; the server's stderr goes to a
    # file beside it that is kept.
    WORK="$(mktemp -d "${TMPDIR:-/tmp}/tessera-labelmap-$1.XXXXXX")"
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
        # RocksDB's own LOG of each store (write stalls, flushes, compactions) is kept too.
        for rlog in $(find "$WORK" -name LOG 2>/dev/null); do
            cp "$rlog" "$WORK.$(basename "$(dirname "$rlog")").rocksdb.LOG"
        done
        # What the store came to on disk: the space its engine's garbage collection left.
        echo "store on disk: $(du -sm "$WORK" | cut -f1) MiB"
        rm -rf "$WORK"
        echo "server log: $LOG"
    }
    trap cleanup EXIT

    # NO_COLOR keeps ANSI escapes out of the log; RUST_LOG=info is the server's default, made explicit.
    local config=()
    if [ -n "${TESSERA_CONFIG:-}" ]; then
        sed "s|@WORK@|$WORK|g" "$TESSERA_CONFIG" >"$WORK/config.toml"
        config=(--config "$WORK/config.toml")
    fi
    NO_COLOR=1 RUST_LOG="${RUST_LOG:-info}" "$TESSERA_BIN" serve --addr 127.0.0.1:0 \
        --data "$WORK/store" --compute cpu "${config[@]}" >"$WORK/stdout" 2>"$LOG" &
    SERVER_PID=$!

    # Port 0 lets the server pick a free port; it prints "tessera listening on http://ADDR" when ready.
    URL=
    for _ in $(seq 120); do
        URL="$(sed -n 's/^tessera listening on \(http:\/\/[^ ]*\).*/\1/p' "$WORK/stdout" | head -n1)"
        [ -n "$URL" ] && break
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "$1: the server exited before listening:" >&2
            tail -n 20 "$LOG" >&2
            exit 1
        fi
        sleep 0.5
    done
    if [ -z "$URL" ]; then
        echo "$1: the server didn't print its address within 60 s" >&2
        exit 1
    fi
    echo "server $TESSERA_BIN (pid $SERVER_PID) at $URL, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
}

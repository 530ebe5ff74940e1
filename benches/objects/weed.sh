# Sourced by the benches that need an S3 server (after `cd` to the repository root):
#   start_weed   starts SeaweedFS (`weed mini`, bucket "tessera", keys bench / bench-secret) on a
#                block of free loopback ports in a temporary directory, stopped on exit; leaves
#                WORK (the directory), B (the S3 port) and WEED_PID.
# Environment: TESSERA_WEED (default ~/.cache/tessera/seaweedfs/bin/weed, installed by
# scripts/pyenv.sh).
start_weed() {
    WEED="${TESSERA_WEED:-$HOME/.cache/tessera/seaweedfs/bin/weed}"
    [ -x "$WEED" ] || bash scripts/pyenv.sh

    WORK="$(mktemp -d "${TMPDIR:-/tmp}/tessera-objects.XXXXXX")"
    B=$((20000 + RANDOM % 10000))
    WEED_PID=
    stop_weed() {
        [ -n "$WEED_PID" ] && kill "$WEED_PID" 2>/dev/null && wait "$WEED_PID" 2>/dev/null || true
        echo "seaweedfs data: $(du -sh "$WORK/weed" 2>/dev/null | cut -f1) in $WORK/weed; log $WORK/weed.log"
    }
    trap stop_weed EXIT
    mkdir -p "$WORK/weed"
    AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret "$WEED" -logdir="$WORK" mini \
        -dir="$WORK/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 -admin.ui=false -webdav=false \
        -s3.localSocket="$WORK/s3.sock" -filer.localSocket="$WORK/filer.sock" \
        -s3.port.iceberg=0 -s3.port.lance=0 \
        -bucket=tessera -s3.port=$B -s3.port.grpc=$((B + 1)) -master.port=$((B + 2)) \
        -master.port.grpc=$((B + 3)) -volume.port=$((B + 4)) -volume.port.grpc=$((B + 5)) \
        -filer.port=$((B + 6)) -filer.port.grpc=$((B + 7)) -webdav.port=$((B + 8)) \
        -admin.port=$((B + 9)) -admin.port.grpc=$((B + 10)) -debug.port=$((B + 11)) \
        >"$WORK/weed.log" 2>&1 &
    WEED_PID=$!
    for _ in $(seq 300); do
        curl -sf -o /dev/null "http://127.0.0.1:$((B + 6))/buckets/tessera/" && break
        sleep 0.2
    done
}

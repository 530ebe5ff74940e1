#!/usr/bin/env python3
"""HTTP benchmark of the labelmap datatype against a running `tessera serve`.

Started by benches/labelmap/run.sh, which builds and starts the server; run by hand as
    python bench.py --url http://127.0.0.1:PORT --server-pid PID --server-log STDERR_FILE

Measures, over a persistent stdlib HTTP connection from this (separate) process:
  1. ingest: POST raw/0_1_2/512_512_512/0_0_0 of a 512³ uint64 volume into fresh labelmap
     instances (and, reported apart, as an overwrite of the same instance) -> Mvox/s;
  2. serving: GET raw 256³ subvolumes -> MB/s, GET specificblocks with 64 blocks per request
     -> blocks/s, and one 64³ neuroglancer-style googlegzip request -> latency;
  3. memory: the server's peak RSS (VmHWM) after ingest and during serving.
Prints a markdown table and one JSON line (for docs/benchmarks.md).
"""
import argparse
import http.client
import json
import os
import platform
import re
import statistics
import struct
import sys
import time
import urllib.parse

import numpy as np

N = 512          # edge of the ingested volume
BLOCK = 64       # labelmap's default block edge
SUB = 256        # edge of the served raw subvolumes
NG = 64          # edge of the neuroglancer-style request
MB = 1e6

BARS = {  # the bars: (comparison, value)
    "ingest_fresh_mvox_s": (">=", 100),
    "ingest_overwrite_mvox_s": (">=", 100),
    "raw256_mb_s": (">=", 500),
    "specificblocks_blocks_s": (">=", 1000),
    "peak_rss_mib": ("<", 2048),
}


def die(msg):
    print(f"\nbench.py: FAILED: {msg}", file=sys.stderr, flush=True)
    sys.exit(2)


# ---------------------------------------------------------------- data

def load_volume(kind, data_dir):
    """The volume as a C-order uint64 array indexed [z][y][x], i.e. x fastest in memory,
    which is the byte order DVID's raw POST expects."""
    if kind == "real":
        # real512.npy is np.ascontiguousarray(crackle.decompress(...)) (../shared/perf/common.py):
        # crackle returns arrays indexed [x][y][z] (its header says sx, sy, sz, Fortran order),
        # so the file is C-order [x][y][z] — z fastest. Transpose to [z][y][x].
        a = np.load(os.path.join(data_dir, "real512.npy"), mmap_mode="r")
        vol = np.ascontiguousarray(a.T)
    elif kind == "synthetic":
        # gen_data.py builds labels[z][y][x] directly (its outer loop is over z).
        vol = np.load(os.path.join(data_dir, "labels512.npy"))
    else:
        die(f"unknown --data {kind!r} (real or synthetic)")
    if vol.shape != (N, N, N):
        die(f"expected a {N}³ volume, got {vol.shape}")
    return np.ascontiguousarray(vol.astype("<u8", copy=False))


# ---------------------------------------------------------------- HTTP

class Client:
    """One persistent HTTP/1.1 connection; reconnects if the server closed it."""

    def __init__(self, url):
        u = urllib.parse.urlsplit(url)
        self.host, self.port = u.hostname, u.port
        self.conn = None

    def request(self, method, path, body=None, into=None):
        """Returns (status, body bytes). With `into` (a writable buffer), the body is read into
        it and its length returned instead of bytes, so large GETs don't allocate per request."""
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=900)
            try:
                headers = {"Content-Type": "application/octet-stream"} if body is not None else {}
                self.conn.request(method, path, body=body, headers=headers)
                resp = self.conn.getresponse()
                if into is not None and resp.status == 200:
                    data = read_into(resp, into)
                else:
                    data = resp.read()
                if resp.will_close:
                    self.close()
                return resp.status, data
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as e:
                # A keep-alive connection the server dropped: retry once on a new one.
                self.close()
                if attempt:
                    die(f"{method} {path.split('?')[0]}: connection lost ({e!r}); did the server "
                        "refuse the body (size limit) or crash? See its log.")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def json(self, method, path, obj=None):
        status, data = self.request(method, path, None if obj is None else json.dumps(obj).encode())
        return status, data


def read_into(resp, buf):
    """Reads the whole response body into buf; returns the byte count (fails if it overflows)."""
    view = memoryview(buf)
    n = 0
    while True:
        k = resp.readinto(view[n:])
        if k == 0:
            break
        n += k
        if n == len(view):
            if resp.read(1):
                die("response body larger than the expected size")
            break
    return n


def expect_ok(status, data, what):
    if status != 200:
        text = data[:500].decode("utf-8", "replace") if isinstance(data, (bytes, bytearray)) else data
        die(f"{what}: HTTP {status}: {text}")


# ---------------------------------------------------------------- server side

class Server:
    """What we can see of the server process: its memory and its stderr log."""

    def __init__(self, pid, log_path):
        self.pid, self.log_path, self.log_pos = pid, log_path, 0

    def status_kib(self, field):
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        return int(line.split()[1])
        except (OSError, TypeError):
            pass
        return None

    def peak_mib(self):
        k = self.status_kib("VmHWM")
        return None if k is None else round(k / 1024, 1)

    def rss_mib(self):
        k = self.status_kib("VmRSS")
        return None if k is None else round(k / 1024, 1)

    def reset_peak(self):
        """Resets VmHWM to the current RSS (Linux ≥ 4.0), so the serving peak is measured
        apart from the ingest peak. Returns False where not permitted."""
        try:
            with open(f"/proc/{self.pid}/clear_refs", "w") as f:
                f.write("5")
            return True
        except (OSError, TypeError):
            return False

    def new_log_lines(self, pattern="ingest", wait=1.0):
        """Lines of the server's stderr written since the last call that contain `pattern`
        (case-insensitive). The log format isn't fixed, so this only greps; it waits up to
        `wait` seconds for a matching line in case the log is written after the response."""
        if not self.log_path:
            return []
        deadline = time.time() + wait
        found = []
        while True:
            with open(self.log_path, "rb") as f:
                f.seek(self.log_pos)
                chunk = f.read()
            # Keep a partial last line for the next call.
            end = chunk.rfind(b"\n") + 1
            self.log_pos += end
            for line in chunk[:end].decode("utf-8", "replace").splitlines():
                line = re.sub(r"\x1b\[[0-9;]*m", "", line)  # in case colours weren't turned off
                if pattern.lower() in line.lower():
                    found.append(line)
            if found or time.time() >= deadline:
                return found
            time.sleep(0.1)


# ---------------------------------------------------------------- measurements

def stats(xs):
    return {"median": round(statistics.median(xs), 3), "min": round(min(xs), 3),
            "max": round(max(xs), 3), "n": len(xs), "runs": [round(x, 3) for x in xs]}


def create_instance(cli, uuid, name, compression=None):
    settings = {"typename": "labelmap", "dataname": name, "MaxDownresLevel": "5"}
    if compression:
        settings["Compression"] = compression
    status, data = cli.json("POST", f"/api/repo/{uuid}/instance", settings)
    if status != 200:
        die(f"creating labelmap instance {name!r} failed (HTTP {status}): "
            f"{data[:300].decode('utf-8', 'replace').strip()}\n"
            "  -> is the labelmap datatype compiled into this server? "
            "(`tessera serve` must know typename \"labelmap\")")


def ingest(cli, server, uuid, name, body):
    path = f"/api/node/{uuid}/{name}/raw/0_1_2/{N}_{N}_{N}/0_0_0"
    t0 = time.perf_counter()
    status, data = cli.request("POST", path, body=body)
    dt = time.perf_counter() - t0
    expect_ok(status, data, f"POST {path}")
    rate = N ** 3 / dt / 1e6
    print(f"  {name}: {dt:7.3f} s  {rate:8.1f} Mvox/s   server peak RSS {server.peak_mib()} MiB",
          flush=True)
    for line in server.new_log_lines("ingest"):
        print(f"    server: {line}", flush=True)
    return rate


def get_raw(cli, uuid, name, vol, offsets, repeats, check):
    buf = bytearray(SUB ** 3 * 8)
    nbytes = len(buf)
    for (x, y, z) in offsets:  # untimed first pass: warm-up, and checks the bytes served
        path = f"/api/node/{uuid}/{name}/raw/0_1_2/{SUB}_{SUB}_{SUB}/{x}_{y}_{z}"
        status, n = cli.request("GET", path, into=buf)
        expect_ok(status, n, f"GET {path}")
        if n != nbytes:
            die(f"GET {path}: {n} bytes, expected {nbytes}")
        if check:
            got = np.frombuffer(buf, "<u8").reshape(SUB, SUB, SUB)
            if not np.array_equal(got, vol[z:z + SUB, y:y + SUB, x:x + SUB]):
                die(f"GET {path}: the voxels differ from those posted")
    rates = []
    for _ in range(repeats):
        for (x, y, z) in offsets:
            path = f"/api/node/{uuid}/{name}/raw/0_1_2/{SUB}_{SUB}_{SUB}/{x}_{y}_{z}"
            t0 = time.perf_counter()
            status, n = cli.request("GET", path, into=buf)
            dt = time.perf_counter() - t0
            expect_ok(status, n, f"GET {path}")
            rates.append(n / dt / MB)
    return rates


def parse_blocks(data):
    """specificblocks' stream: per block, int32 x, y, z, int32 byte count, then the bytes."""
    coords, pos = [], 0
    while pos + 16 <= len(data):
        x, y, z, n = struct.unpack_from("<iiii", data, pos)
        coords.append((x, y, z))
        pos += 16 + n
    return coords if pos == len(data) else None


def get_specificblocks(cli, uuid, name, per_request, repeats, rng):
    nb = N // BLOCK
    allblocks = [(x, y, z) for z in range(nb) for y in range(nb) for x in range(nb)]
    order = rng.permutation(len(allblocks))  # scattered, as a viewer's requests are
    groups = [[allblocks[i] for i in order[k:k + per_request]]
              for k in range(0, len(order), per_request)]

    def fetch(group):
        q = ",".join(f"{x},{y},{z}" for x, y, z in group)
        path = f"/api/node/{uuid}/{name}/specificblocks?blocks={q}&compression=blocks"
        t0 = time.perf_counter()
        status, data = cli.request("GET", path)
        dt = time.perf_counter() - t0
        expect_ok(status, data, f"GET specificblocks ({len(group)} blocks)")
        return dt, data

    for g in groups:  # untimed pass: warm-up, and checks every requested block comes back
        _, data = fetch(g)
        got = parse_blocks(data)
        if got is None:
            die("specificblocks: the response isn't a sequence of (x,y,z,nbytes,bytes) records")
        if sorted(got) != sorted(g):
            die(f"specificblocks: asked for {len(g)} blocks, got {len(got)} (or other coordinates)")
    rates = []
    for _ in range(repeats):
        for g in groups:
            dt, _ = fetch(g)
            rates.append(len(g) / dt)
    return rates


def get_neuroglancer(cli, uuid, name, count, rng):
    """Single block-aligned 64³ requests as neuroglancer makes them; latency in ms."""
    nb = N // NG
    lat = []
    for i in range(count + 1):
        x, y, z = (int(v) * NG for v in rng.integers(0, nb, size=3))
        path = (f"/api/node/{uuid}/{name}/raw/0_1_2/{NG}_{NG}_{NG}/{x}_{y}_{z}"
                "?compression=googlegzip&scale=0")
        t0 = time.perf_counter()
        status, data = cli.request("GET", path)
        dt = time.perf_counter() - t0
        expect_ok(status, data, f"GET {path}")
        if not data:
            die(f"GET {path}: empty body")
        if i:  # the first is a warm-up
            lat.append(dt * 1e3)
    return lat


# ---------------------------------------------------------------- report

def met(key, value):
    if key not in BARS or value is None:
        return ""
    op, bar = BARS[key]
    ok = value >= bar if op == ">=" else value < bar
    return "ok" if ok else "**MISSED**"


def store_metrics(cli):
    """The server's store and object-store counters after the run (docs/observability.md)."""
    status, data = cli.request("GET", "/metrics")
    expect_ok(status, data, "GET /metrics")
    out = {}
    for line in data.decode().splitlines():
        if line.startswith(("tessera_store_", "tessera_object_")):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def report(res):
    rows = [
        ("ingest 512³, fresh instance", "ingest_fresh_mvox_s", "Mvox/s"),
        ("ingest 512³, overwrite", "ingest_overwrite_mvox_s", "Mvox/s"),
        (f"GET raw {SUB}³ (128 MiB)", "raw256_mb_s", "MB/s"),
        (f"GET specificblocks, {res['blocks_per_request']}/request", "specificblocks_blocks_s",
         "blocks/s"),
        (f"GET raw {NG}³ googlegzip (latency)", "ng64_latency_ms", "ms"),
    ]
    print("\n| measure | median | min | max | n | unit | bar | |")
    print("|---|---|---|---|---|---|---|---|")
    for label, key, unit in rows:
        s = res[key]
        bar = " ".join(map(str, BARS[key])) if key in BARS else "—"
        print(f"| {label} | {s['median']:.1f} | {s['min']:.1f} | {s['max']:.1f} | {s['n']} | "
              f"{unit} | {bar} | {met(key, s['median'])} |")
    mem = res["peak_rss_mib"]
    serving = (("server peak RSS while serving", "serving") if mem["serving"] is not None
               else ("server peak RSS after serving (since start)", "overall"))
    for label, key in (("server peak RSS after ingest", "after_ingest"), serving):
        v = mem.get(key)
        print(f"| {label} | {v if v is not None else '?'} | | | | MiB | < 2048 | "
              f"{met('peak_rss_mib', v)} |")
    for name, value in res["store_metrics"].items():
        if name.startswith("tessera_object_"):
            print(f"| {name} | {value:.0f} | | | | | | |")
    print("\nJSON:")
    print(json.dumps(res), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--url", required=True, help="server base URL, e.g. http://127.0.0.1:8000")
    ap.add_argument("--server-pid", type=int, help="server pid, for its peak RSS from /proc")
    ap.add_argument("--server-log", help="file holding the server's stderr, grepped for 'ingest'")
    ap.add_argument("--data", default="real", choices=["real", "synthetic"],
                    help="real: pinky40 cutout (real512.npy); synthetic: gen_data.py's labels512.npy")
    ap.add_argument("--data-dir", default=os.environ.get("PERF_DATA", "/tmp/perf/data"))
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats of each measure (≥ 3)")
    ap.add_argument("--blocks-per-request", type=int, default=64)
    ap.add_argument("--ng-requests", type=int, default=30, help="64³ neuroglancer-style requests")
    ap.add_argument("--compression", help="the instance's Compression setting (default: the server's)")
    ap.add_argument("--no-check", action="store_true", help="skip comparing served voxels to the posted ones")
    args = ap.parse_args()

    rng = np.random.default_rng(20251124)
    t0 = time.time()
    vol = load_volume(args.data, args.data_dir)
    # The POST body is the array's own memory (x fastest, little-endian): no copy.
    body = memoryview(vol.reshape(-1).view(np.uint8))
    print(f"data: {args.data}, {N}³ uint64, {len(np.unique(vol[::4, ::4, ::4]))}+ labels "
          f"(sampled), loaded in {time.time() - t0:.1f} s", flush=True)

    cli = Client(args.url)
    server = Server(args.server_pid, args.server_log)
    status, data = cli.json("POST", "/api/repos", {"alias": "bench"})
    expect_ok(status, data, "POST /api/repos")
    uuid = json.loads(data)["root"]
    res = {"bench": "labelmap-http", "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
           "host": platform.node(), "cpus": os.cpu_count(), "data": args.data,
           "repeats": args.repeats, "blocks_per_request": args.blocks_per_request,
           "loadavg_before": float(open("/proc/loadavg").read().split()[0])}

    # 1. Ingest: each repeat into a new instance (the cost of a first write: no old blocks),
    #    then the same volume again over the first instance (the index must drop old labels).
    print(f"\ningest into fresh instances ({args.repeats}):", flush=True)
    names = [f"seg{i}" for i in range(args.repeats)]
    fresh = []
    for name in names:
        create_instance(cli, uuid, name, args.compression)
        fresh.append(ingest(cli, server, uuid, name, body))
    print(f"\ningest as an overwrite of {names[0]} ({args.repeats}):", flush=True)
    over = [ingest(cli, server, uuid, names[0], body) for _ in range(args.repeats)]
    res["ingest_fresh_mvox_s"] = stats(fresh)
    res["ingest_overwrite_mvox_s"] = stats(over)
    mem = {"after_ingest": server.peak_mib(), "rss_after_ingest": server.rss_mib()}

    # 2. Serving, from the instance written last. The serving peak is measured apart from the
    #    ingest peak where the kernel lets us reset VmHWM.
    reset = server.reset_peak()
    offsets = [(0, 0, 0), (256, 0, 0), (0, 256, 0), (0, 0, 256), (128, 128, 128), (256, 256, 256)]
    print(f"\nGET raw {SUB}³ at {len(offsets)} offsets x {args.repeats}:", flush=True)
    res["raw256_mb_s"] = stats(get_raw(cli, uuid, names[0], vol, offsets, args.repeats,
                                       not args.no_check))
    print(f"  median {res['raw256_mb_s']['median']:.1f} MB/s", flush=True)
    print(f"GET specificblocks, {args.blocks_per_request} blocks/request x {args.repeats} passes:",
          flush=True)
    res["specificblocks_blocks_s"] = stats(get_specificblocks(
        cli, uuid, names[0], args.blocks_per_request, args.repeats, rng))
    print(f"  median {res['specificblocks_blocks_s']['median']:.1f} blocks/s", flush=True)
    print(f"GET raw {NG}³ googlegzip x {args.ng_requests}:", flush=True)
    res["ng64_latency_ms"] = stats(get_neuroglancer(cli, uuid, names[0], args.ng_requests, rng))
    print(f"  median {res['ng64_latency_ms']['median']:.2f} ms", flush=True)

    # 3. Memory.
    peak = server.peak_mib()
    if reset:
        mem["serving"] = peak
        mem["overall"] = None if peak is None else max(peak, mem["after_ingest"] or 0)
    else:  # VmHWM couldn't be reset: it's the peak since the server started
        mem["serving"] = None
        mem["overall"] = peak
    mem["rss_after_serving"] = server.rss_mib()
    res["peak_rss_mib"] = mem
    res["store_metrics"] = store_metrics(cli)
    cli.close()
    report(res)


if __name__ == "__main__":
    main()

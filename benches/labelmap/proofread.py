#!/usr/bin/env python3
"""Proofreading benchmark of the labelmap datatype against a running `tessera serve`.

Started by benches/labelmap/proofread.sh, which builds and starts the server; run by hand as
    python proofread.py --url http://127.0.0.1:PORT --server-pid PID --server-log STDERR_FILE

Setup: one labelmap instance (MaxDownresLevel 5) holding a grid of 100³ cubes, one body
(= one supervoxel) each, ~1M voxels a body; 2 bodies per merge plus 1 per split.
Measures, over a persistent stdlib HTTP connection from this (separate) process:
  1. POST merge [target, other] of two ~1M-voxel bodies, disjoint pairs -> latency;
  2. POST split/<label> of a 100×100×10 slab (100,000 voxels, 10 %) off a ~1M-voxel body,
     each on its own body; every split rewrites blocks and recomputes 5 pyramid levels -> latency;
  3. read-your-writes right after each mutation (untimed): the merged-away body reads as the
     target, the split-off voxels read as the new label with the right sizes -> violations;
  4. the server's peak RSS (VmHWM) during setup and during the mutations.
Prints a markdown table and one JSON line (for docs/benchmarks.md). Exit status: 0 when every
read-your-writes check passed (missed latency bars are only reported), 1 on violations,
2 when the benchmark couldn't run.
"""
import argparse
import json
import math
import os
import platform
import statistics
import struct
import sys
import time

import numpy as np

# The persistent HTTP connection and the /proc reader of the throughput benchmark beside this file.
from bench import Client, Server

EDGE = 100                # cube (body) edge: 100³ = 1M voxels
GRID = 10                 # cubes per row in x and y: 1000 voxels of the 1024-wide volume
PER_LAYER = GRID * GRID   # bodies per 100-voxel layer in z
BODY = EDGE ** 3
SPLIT_DEPTH = 10          # the split takes the cube's first 10 z planes: 10 % of its voxels
SPLIT = EDGE * EDGE * SPLIT_DEPTH
XY = 1024                 # volume edge in x and y (16 blocks)
BLOCK = 64                # labelmap's default block edge
PIECE = 512               # POST raw in pieces of at most 512³ (1 GiB): the server's body limit

BARS = {  # the issue's bars, milliseconds
    "merge": {"p50": 20, "p99": 100},
    "split": {"p50": 250},
}


def die(msg):
    print(f"\nproofread.py: FAILED: {msg}", file=sys.stderr, flush=True)
    sys.exit(2)


# ---------------------------------------------------------------- the volume

def body_origin(label):
    """Lower corner (x, y, z) of body `label`'s cube; labels are 1 + ix + 10·iy + 100·iz."""
    i = label - 1
    return (i % GRID * EDGE, i // GRID % GRID * EDGE, i // PER_LAYER * EDGE)


def piece(x0, y0, z0, sx, sy, sz, zmax):
    """The labels of the block-aligned box at (x0, y0, z0) of size (sx, sy, sz), as a C-order
    uint64 array [z][y][x] (x fastest, as POST raw wants). Cubes fill x, y < 1000 and z < zmax;
    the rest is background 0. The filled part of each axis is a prefix of the piece."""
    out = np.zeros((sz, sy, sx), "<u8")
    nx = min(max(GRID * EDGE - x0, 0), sx)
    ny = min(max(GRID * EDGE - y0, 0), sy)
    nz = min(max(zmax - z0, 0), sz)
    if nx and ny and nz:
        lx = 1 + np.arange(x0, x0 + nx, dtype="<u8") // EDGE
        ly = GRID * (np.arange(y0, y0 + ny, dtype="<u8") // EDGE)
        lz = PER_LAYER * (np.arange(z0, z0 + nz, dtype="<u8") // EDGE)
        # Written in place: no second full-size temporary.
        np.add((lz[:, None] + ly[None, :])[:, :, None], lx, out=out[:nz, :ny, :nx])
    return out


def split_rle(label):
    """DVID's legacy RLE (spec §5.1) of the cube's first SPLIT_DEPTH z planes: a 12-byte header
    (binary payload, 3 dims, runs along x, reserved, u32 0, u32 #runs), then per run int32 LE
    x, y, z, length. One run per (y, z) row of the slab."""
    ox, oy, oz = body_origin(label)
    runs = [(ox, oy + y, oz + z, EDGE) for z in range(SPLIT_DEPTH) for y in range(EDGE)]
    head = struct.pack("<BBBBII", 0, 3, 0, 0, 0, len(runs))
    return head + b"".join(struct.pack("<iiii", *r) for r in runs)


# ---------------------------------------------------------------- HTTP helpers

def text(data):
    return data[:500].decode("utf-8", "replace").strip()


def post_json(cli, path, obj, what):
    status, data = cli.json("POST", path, obj)
    if status != 200:
        die(f"{what}: HTTP {status}: {text(data)}")
    return json.loads(data) if data.strip() else None


def mutate(cli, path, body):
    """One timed mutation request; returns (milliseconds, decoded JSON answer)."""
    t0 = time.perf_counter()
    status, data = cli.request("POST", path, body=body)
    ms = (time.perf_counter() - t0) * 1e3
    if status != 200:
        die(f"POST {path}: HTTP {status}: {text(data)}")
    try:
        return ms, json.loads(data)
    except ValueError:
        die(f"POST {path}: the answer isn't JSON: {text(data)!r}")


def probe(cli, base):
    """Fails fast (before the setup's ingest) when the server routes merge or split to
    DVID's "Bad API call" 400, i.e. doesn't implement them. The probes are invalid requests
    (an empty merge list, an empty split body) that an implementation must refuse without
    touching anything; only the kind of refusal matters here."""
    for kw, path, body in (("merge", f"{base}/merge", b"[]"), ("split", f"{base}/split/1", b"")):
        status, data = cli.request("POST", path, body=body)
        if status == 400 and b"Bad API call" in data:
            die(f"this server doesn't implement labelmap POST {kw} yet: it answers "
                f"400 {text(data)!r}.\n  -> build a tessera that has the mutation endpoints "
                "(or point TESSERA_BIN at one).")


def get_label(cli, base, xyz):
    status, data = cli.request("GET", f"{base}/label/{'_'.join(map(str, xyz))}")
    return json.loads(data).get("Label") if status == 200 else f"HTTP {status}"


def get_size(cli, base, label):
    status, data = cli.request("GET", f"{base}/size/{label}")
    return json.loads(data).get("voxels") if status == 200 else f"HTTP {status}"


class Checks:
    """Read-your-writes checks: counts them and keeps the violations."""

    def __init__(self):
        self.n, self.bad = 0, []

    def expect(self, what, got, want):
        self.n += 1
        if got != want:
            self.bad.append(f"{what}: got {got}, expected {want}")


# ---------------------------------------------------------------- measurements

def setup(cli, server, base, bodies):
    """POSTs the grid of cubes in block-aligned pieces; returns the volume's (x, y, z) size."""
    zmax = math.ceil(bodies / PER_LAYER) * EDGE   # whole layers: a few spare bodies at most
    zsize = math.ceil(zmax / BLOCK) * BLOCK
    print(f"setup: {XY}×{XY}×{zsize} volume, {zmax // EDGE * PER_LAYER} bodies of {BODY:,} "
          f"voxels, posted in pieces of ≤ {PIECE}³", flush=True)
    t0 = time.perf_counter()
    for z0 in range(0, zsize, PIECE):
        for y0 in range(0, XY, PIECE):
            for x0 in range(0, XY, PIECE):
                sz = min(PIECE, zsize - z0)
                vol = piece(x0, y0, z0, PIECE, PIECE, sz, zmax)
                path = f"{base}/raw/0_1_2/{PIECE}_{PIECE}_{sz}/{x0}_{y0}_{z0}"
                t1 = time.perf_counter()
                body = memoryview(vol.reshape(-1).view(np.uint8))  # x fastest, LE: no copy
                status, data = cli.request("POST", path, body=body)
                if status != 200:
                    die(f"POST {path}: HTTP {status}: {text(data)}")
                dt = time.perf_counter() - t1
                print(f"  {path.split('/raw/')[1]}: {dt:6.2f} s  {vol.size / dt / 1e6:6.1f} Mvox/s",
                      flush=True)
                del vol, body
    # The volume must read back as laid out, or every check below would be meaningless.
    for label in (1, bodies):
        ox, oy, oz = body_origin(label)
        got = (get_label(cli, base, (ox + EDGE // 2, oy + EDGE // 2, oz + EDGE // 2)),
               get_size(cli, base, label))
        if got != (label, BODY):
            die(f"after setup, body {label} reads as (label, size) {got}, expected {(label, BODY)}")
    secs = time.perf_counter() - t0
    print(f"setup done in {secs:.1f} s, server peak RSS {server.peak_mib()} MiB", flush=True)
    return (XY, XY, zsize), secs


def merges(cli, base, count, checks):
    """Merges bodies 2i+2 into 2i+1 (x-adjacent cubes) for i < count; latencies in ms."""
    lat = []
    for i in range(count):
        target, other = 2 * i + 1, 2 * i + 2
        ms, ans = mutate(cli, f"{base}/merge", json.dumps([target, other]).encode())
        if "MutationID" not in ans:
            die(f"POST merge answered {ans}, expected {{\"MutationID\": n}}")
        lat.append(ms)
        ox, oy, oz = body_origin(other)
        centre = (ox + EDGE // 2, oy + EDGE // 2, oz + EDGE // 2)
        what = f"merge {other}->{target}"
        checks.expect(f"{what}: label at {centre}", get_label(cli, base, centre), target)
        checks.expect(f"{what}: size/{target}", get_size(cli, base, target), 2 * BODY)
        if len(lat) % 50 == 0:
            print(f"  {len(lat)} merges, median {statistics.median(lat):.1f} ms", flush=True)
    return lat


def splits(cli, base, first, count, checks):
    """Splits the first SPLIT_DEPTH planes off bodies first .. first+count-1; latencies in ms."""
    lat = []
    for label in range(first, first + count):
        ms, ans = mutate(cli, f"{base}/split/{label}", split_rle(label))
        new = ans.get("label")
        if not isinstance(new, int) or "MutationID" not in ans:
            die(f"POST split/{label} answered {ans}, expected {{\"label\": n, \"MutationID\": m}}")
        lat.append(ms)
        ox, oy, oz = body_origin(label)
        inside = (ox + EDGE // 2, oy + EDGE // 2, oz + SPLIT_DEPTH // 2)
        outside = (ox + EDGE // 2, oy + EDGE // 2, oz + EDGE // 2)
        what = f"split {label}->{new}"
        checks.expect(f"{what}: label at {inside}", get_label(cli, base, inside), new)
        checks.expect(f"{what}: size/{new}", get_size(cli, base, new), SPLIT)
        checks.expect(f"{what}: label at {outside}", get_label(cli, base, outside), label)
        checks.expect(f"{what}: size/{label}", get_size(cli, base, label), BODY - SPLIT)
        if len(lat) % 50 == 0:
            print(f"  {len(lat)} splits, median {statistics.median(lat):.1f} ms", flush=True)
    return lat


def summary(ms):
    """p50 (median) and p99 by nearest rank: the smallest latency that at least 99 % of the
    operations didn't exceed (with 200 operations, the second largest)."""
    s = sorted(ms)
    return {"p50": round(statistics.median(s), 2), "p99": round(s[math.ceil(0.99 * len(s)) - 1], 2),
            "max": round(s[-1], 2), "min": round(s[0], 2), "mean": round(statistics.fmean(s), 2),
            "n": len(s)}


# ---------------------------------------------------------------- report

def verdict(kind, s):
    ok = all(s[q] < bar for q, bar in BARS[kind].items())
    return ok, ", ".join(f"{q} < {bar} ms" for q, bar in BARS[kind].items())


def report(res, checks):
    print("\n| measure | p50 | p99 | max | n | bar | |")
    print("|---|---|---|---|---|---|---|")
    rows = (("merge", "`POST merge` of two 1M-voxel bodies, ms"),
            ("split", f"`POST split` of {SPLIT:,} voxels off a 1M-voxel body (5 levels), ms"))
    for kind, label in rows:
        s = res[f"{kind}_ms"]
        ok, bar = verdict(kind, s)
        print(f"| {label} | {s['p50']:.1f} | {s['p99']:.1f} | {s['max']:.1f} | {s['n']} | {bar} | "
              f"{'ok' if ok else '**MISSED**'} |")
    v = res["read_your_writes"]["violations"]
    print(f"| read-your-writes violations | {v} | | | {checks.n} checks | 0 | "
          f"{'ok' if v == 0 else '**MISSED**'} |")
    for key, label in (("setup", "server peak RSS during setup, MiB"),
                       ("mutations", "server peak RSS during the mutations, MiB"),
                       ("overall", "server peak RSS since start (VmHWM not resettable), MiB")):
        val = res["peak_rss_mib"].get(key)
        if val is not None:
            print(f"| {label} | {val} | | | | — | |")
    for line in checks.bad[:10]:
        print(f"  violation: {line}")
    if len(checks.bad) > 10:
        print(f"  ... and {len(checks.bad) - 10} more")
    print("\nJSON:")
    print(json.dumps(res), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--url", required=True, help="server base URL, e.g. http://127.0.0.1:8000")
    ap.add_argument("--server-pid", type=int, help="server pid, for its peak RSS from /proc")
    ap.add_argument("--server-log", help="file holding the server's stderr (its path is reported)")
    ap.add_argument("--merges", type=int, default=200, help="timed merges (2 bodies each)")
    ap.add_argument("--splits", type=int, default=200, help="timed splits (1 body each)")
    args = ap.parse_args()
    if args.merges < 1 or args.splits < 1:
        die("--merges and --splits must be at least 1")

    cli = Client(args.url)
    server = Server(args.server_pid, args.server_log)
    status, data = cli.json("POST", "/api/repos", {"alias": "proofread"})
    if status != 200:
        die(f"POST /api/repos: HTTP {status}: {text(data)}")
    uuid = json.loads(data)["root"]
    post_json(cli, f"/api/repo/{uuid}/instance",
              {"typename": "labelmap", "dataname": "seg", "MaxDownresLevel": "5"},
              "creating the labelmap instance")
    base = f"/api/node/{uuid}/seg"
    probe(cli, base)

    bodies = 2 * args.merges + args.splits
    res = {"bench": "labelmap-proofread", "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
           "host": platform.node(), "cpus": os.cpu_count(),
           "loadavg_before": float(open("/proc/loadavg").read().split()[0]),
           "body_voxels": BODY, "split_voxels": SPLIT, "max_downres_level": 5}
    res["volume"], res["setup_s"] = setup(cli, server, base, bodies)
    res["setup_s"] = round(res["setup_s"], 1)
    mem = {"setup": server.peak_mib()}
    # Measure the mutations' peak apart from the ingest's, where the kernel lets us reset VmHWM.
    reset = server.reset_peak()

    checks = Checks()
    print(f"\n{args.merges} merges of disjoint pairs of bodies:", flush=True)
    res["merge_ms"] = summary(merges(cli, base, args.merges, checks))
    print(f"{args.splits} splits of {SPLIT:,} voxels, one per body:", flush=True)
    res["split_ms"] = summary(splits(cli, base, 2 * args.merges + 1, args.splits, checks))

    mem["mutations" if reset else "overall"] = server.peak_mib()
    res["peak_rss_mib"] = mem
    res["read_your_writes"] = {"checks": checks.n, "violations": len(checks.bad),
                               "examples": checks.bad[:10]}
    res["bars_ok"] = {k: verdict(k, res[f"{k}_ms"])[0] for k in BARS}
    cli.close()
    report(res, checks)
    if checks.bad:
        print(f"\nproofread.py: {len(checks.bad)} read-your-writes violations", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

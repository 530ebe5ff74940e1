#!/usr/bin/env python3
"""Mesh-after-edit benchmark of the labelmap datatype against a running `tessera serve`:
the mesh of a ~1M-voxel body after an edit, end to end over HTTP (bar: under 300 ms, CPU path).

Started by benches/mesh/edit_latency.sh, which builds and starts the server:
    bash benches/mesh/edit_latency.sh [--iterations 30]
run by hand as
    python benches/mesh/edit_latency.py --url http://127.0.0.1:PORT --server-pid PID \\
        --server-log STDERR_FILE [--iterations 30]

Setup: proofread.py's volume, one labelmap instance (MaxDownresLevel 5) holding a grid of 100³
cubes, one body (= one supervoxel) each, ~1M voxels a body; 4 bodies per iteration.
Per iteration, each on its own bodies, over a persistent stdlib HTTP connection from this
(separate) process, after 2 untimed warm-up iterations:
  1. merge+mesh: POST merge [target, other] of two x-adjacent bodies, then GET mesh/<target>
     (2M voxels) -> the GET alone, and merge + GET;
  2. split+mesh: POST split/<label> of a 100×100×10 slab (proofread.py's), then GET mesh of
     the remaining body and of the new one -> each GET, and split + both GETs;
  3. cold: GET mesh/<label> of a never-meshed body; warm: the same GET again (a cache hit).
Before an edit the edited bodies are meshed (untimed), as a viewer showing them would have, so
the cache holds meshes the edit must replace. "+" figures are sums of the requests' own times.
Every mesh must be HTTP 200 and parse as neuroglancer's legacy ngmesh (u32le vertex count,
f32le xyz, u32le triangle indices all below the count) with vertices and triangles, and must span
the body's box (so a stale mesh from before the edit fails too). The bar is checked on the
p50 of the after-edit measures. Prints a markdown table and one JSON line. Exit status: 0 when
it ran (missed bars are only reported), 2 when it couldn't run or a response was invalid.
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

# The Client/Server helpers and proofread.py's volume, split body and request helpers.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "labelmap"))
import bench  # noqa: E402
import proofread  # noqa: E402
from proofread import (  # noqa: E402
    BODY, EDGE, SPLIT, SPLIT_DEPTH, body_origin, mutate, split_rle, text)

BAR_MS = 300
WARMUP = 2
VOXEL = 8.0        # the instance's default VoxelSize: ngmesh vertices are in nanometres
SLACK = 2          # voxels a mesh's extent may differ from its body's box (surface placement)

# (key, label, after an edit: checked against the bar)
MEASURES = (
    ("merge_get", "GET mesh/<target> after `POST merge` (2M voxels)", True),
    ("merge_total", "`POST merge` + GET mesh/<target>", True),
    ("split_get_rest", f"GET mesh/<label> after `POST split` ({BODY - SPLIT:,} voxels)", True),
    ("split_get_new", f"GET mesh/<new label> after `POST split` ({SPLIT:,} voxels)", True),
    ("split_total", "`POST split` + both GETs", True),
    ("merge_post", "`POST merge` alone", False),
    ("split_post", "`POST split` alone", False),
    ("cold", "GET mesh of a never-meshed 1M-voxel body", False),
    ("warm", "the same GET again (cache hit)", False),
)


def die(msg):
    print(f"\nedit_latency.py: FAILED: {msg}", file=sys.stderr, flush=True)
    sys.exit(2)


# The shared helpers fail through their own module's die(): report as this script.
bench.die = proofread.die = die


# ---------------------------------------------------------------- meshes

def get_mesh(cli, base, label):
    """One timed GET mesh/<label>; returns (milliseconds, bytes). Checked later, untimed."""
    path = f"{base}/mesh/{label}"
    t0 = time.perf_counter()
    status, data = cli.request("GET", path)
    ms = (time.perf_counter() - t0) * 1e3
    if status != 200:
        die(f"GET {path}: HTTP {status}: {text(data)}")
    return ms, data


def check_mesh(what, data, box):
    """Fails unless `data` is an ngmesh with triangles whose vertices span `box` (x, y, z
    voxels, ± SLACK); returns its vertex count, triangle count and size."""
    if len(data) < 4:
        die(f"{what}: {len(data)} bytes, not an ngmesh")
    n = struct.unpack_from("<I", data)[0]
    end = 4 + 12 * n
    if n == 0 or len(data) < end or (len(data) - end) % 12:
        die(f"{what}: {len(data)} bytes don't parse as an ngmesh of {n} vertices and whole "
            "triangles")
    idx = np.frombuffer(data, "<u4", offset=end)
    if idx.size == 0 or idx.max() >= n:
        die(f"{what}: {idx.size // 3} triangles, largest index {idx.max() if idx.size else '-'}, "
            f"{n} vertices")
    xyz = np.frombuffer(data, "<f4", count=3 * n, offset=4).reshape(n, 3)
    if not np.isfinite(xyz).all():
        die(f"{what}: non-finite vertices")
    span = (xyz.max(0) - xyz.min(0)) / VOXEL
    if np.abs(span - box).max() > SLACK:
        die(f"{what}: the mesh spans {span.round(1).tolist()} voxels (x, y, z), expected {box}: "
            "stale or wrong mesh")
    return {"vertices": n, "triangles": idx.size // 3, "bytes": len(data)}


# ---------------------------------------------------------------- one iteration

CUBE = (EDGE, EDGE, EDGE)


def iteration(cli, base, first):
    """Bodies first, first+1 (x-adjacent: first is odd), first+2 (split), first+3 (cold).
    Returns ({measure: ms}, {mesh: size})."""
    ms, sizes = {}, {}
    target, other, body, cold = first, first + 1, first + 2, first + 3
    assert body_origin(other)[0] == body_origin(target)[0] + EDGE

    # 1. merge+mesh
    for label in (target, other):
        check_mesh(f"mesh/{label} before the merge", get_mesh(cli, base, label)[1], CUBE)
    ms["merge_post"], ans = mutate(cli, f"{base}/merge", json.dumps([target, other]).encode())
    if "MutationID" not in ans:
        die(f"POST merge answered {ans}, expected {{\"MutationID\": n}}")
    ms["merge_get"], data = get_mesh(cli, base, target)
    ms["merge_total"] = ms["merge_post"] + ms["merge_get"]
    sizes["merged"] = check_mesh(f"mesh/{target} after merging {other}", data,
                                 (2 * EDGE, EDGE, EDGE))

    # 2. split+mesh
    check_mesh(f"mesh/{body} before the split", get_mesh(cli, base, body)[1], CUBE)
    ms["split_post"], ans = mutate(cli, f"{base}/split/{body}", split_rle(body))
    new = ans.get("label")
    if not isinstance(new, int):
        die(f"POST split/{body} answered {ans}, expected {{\"label\": n, \"MutationID\": m}}")
    ms["split_get_rest"], rest = get_mesh(cli, base, body)
    ms["split_get_new"], slab = get_mesh(cli, base, new)
    ms["split_total"] = ms["split_post"] + ms["split_get_rest"] + ms["split_get_new"]
    sizes["split_rest"] = check_mesh(f"mesh/{body} after the split", rest,
                                     (EDGE, EDGE, EDGE - SPLIT_DEPTH))
    sizes["split_new"] = check_mesh(f"mesh/{new} split off {body}", slab, (EDGE, EDGE, SPLIT_DEPTH))

    # 3. cold, then warm: a cache hit must serve the same bytes.
    ms["cold"], data = get_mesh(cli, base, cold)
    ms["warm"], again = get_mesh(cli, base, cold)
    sizes["cube"] = check_mesh(f"mesh/{cold}", data, CUBE)
    if again != data:
        die(f"mesh/{cold}: a second GET served other bytes ({len(again)} vs {len(data)})")
    return ms, sizes


# ---------------------------------------------------------------- report

def summary(ms):
    """p50 (median); p90, p99 by nearest rank (with 30 runs, p99 is the max)."""
    s = sorted(ms)
    rank = lambda q: s[math.ceil(q * len(s)) - 1]  # noqa: E731
    return {"p50": round(statistics.median(s), 2), "p90": round(rank(0.9), 2),
            "p99": round(rank(0.99), 2), "max": round(s[-1], 2), "min": round(s[0], 2),
            "mean": round(statistics.fmean(s), 2), "n": len(s)}


def report(res):
    print("\n| measure | p50 | p90 | p99 | max | n | bar | |")
    print("|---|---|---|---|---|---|---|---|")
    for key, label, edit in MEASURES:
        s = res["ms"][key]
        bar, ok = "—", ""
        if edit:
            bar, ok = f"p50 < {BAR_MS} ms", "ok" if s["p50"] < BAR_MS else "**MISS**"
        print(f"| {label}, ms | {s['p50']:.1f} | {s['p90']:.1f} | {s['p99']:.1f} | "
              f"{s['max']:.1f} | {s['n']} | {bar} | {ok} |")
    for key, val in res["peak_rss_mib"].items():
        print(f"| server peak RSS ({key}), MiB | {val} | | | | | — | |")
    print("\nJSON:")
    print(json.dumps(res), flush=True)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            return next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), None)
    except OSError:
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--url", required=True, help="server base URL, e.g. http://127.0.0.1:8000")
    ap.add_argument("--server-pid", type=int, help="server pid, for its peak RSS from /proc")
    ap.add_argument("--server-log", help="file holding the server's stderr (its path is reported)")
    ap.add_argument("--iterations", type=int, default=30, help="timed iterations (4 bodies each)")
    args = ap.parse_args()
    if args.iterations < 1:
        die("--iterations must be at least 1")

    cli = bench.Client(args.url)
    server = bench.Server(args.server_pid, args.server_log)
    status, data = cli.json("POST", "/api/repos", {"alias": "mesh-edit"})
    if status != 200:
        die(f"POST /api/repos: HTTP {status}: {text(data)}")
    uuid = json.loads(data)["root"]
    proofread.post_json(cli, f"/api/repo/{uuid}/instance",
                        {"typename": "labelmap", "dataname": "seg", "MaxDownresLevel": "5"},
                        "creating the labelmap instance")
    base = f"/api/node/{uuid}/seg"
    proofread.probe(cli, base)
    # Fail before the ingest, too, when GET mesh isn't routed (DVID's "Bad API call").
    status, data = cli.request("GET", f"{base}/mesh/1")
    if status == 400 and b"Bad API call" in data:
        die(f"this server doesn't implement labelmap GET mesh: it answers 400 {text(data)!r}")

    runs = WARMUP + args.iterations
    res = {"bench": "mesh-edit-latency", "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
           "host": platform.node(), "cpus": os.cpu_count(), "cpu": cpu_model(),
           "loadavg_before": float(open("/proc/loadavg").read().split()[0]),
           "body_voxels": BODY, "split_voxels": SPLIT, "max_downres_level": 5,
           "iterations": args.iterations, "warmup": WARMUP, "bar_ms": BAR_MS}
    res["volume"], setup_s = proofread.setup(cli, server, base, 4 * runs)
    res["setup_s"] = round(setup_s, 1)
    mem = {"setup": server.peak_mib()}
    # Measure the meshing's peak apart from the ingest's, where the kernel lets us reset VmHWM.
    reset = server.reset_peak()

    print(f"\n{WARMUP} warm-up + {args.iterations} timed iterations (ms):", flush=True)
    lat = {key: [] for key, _, _ in MEASURES}
    for i in range(runs):
        ms, sizes = iteration(cli, base, 4 * i + 1)
        print(f"  {'warm-up' if i < WARMUP else f'{i - WARMUP + 1:7d}'}: " +
              "  ".join(f"{k} {v:.1f}" for k, v in ms.items()), flush=True)
        if i >= WARMUP:
            for k, v in ms.items():
                lat[k].append(v)

    mem["meshing" if reset else "overall"] = server.peak_mib()
    res["ms"] = {k: summary(v) for k, v in lat.items()}
    res["mesh_sizes"] = sizes  # of the last iteration's meshes
    res["peak_rss_mib"] = mem
    res["bars_ok"] = {k: res["ms"][k]["p50"] < BAR_MS for k, _, edit in MEASURES if edit}
    cli.close()
    report(res)


if __name__ == "__main__":
    main()

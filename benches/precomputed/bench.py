#!/usr/bin/env python3
"""Read rate of Tessera's precomputed view (CloudVolume, tensorstore) beside DVID's `GET raw`,
against a running `tessera serve`. Started by benches/precomputed/run.sh.

Setup: a labelmap of 512×512×256 voxels (64³ blocks, no pyramid) holding 16³ supervoxel cubes
with a sprinkle of background. Each repeat reads the same 256³ cutout (aligned to chunks, 16.8M
voxels) in four ways and checks all four give the same array:
  raw      GET raw/0_1_2/256_256_256/... (one request, uncompressed)
  cv       CloudVolume over /precomputed/<uuid>/seg (compressed_segmentation chunks)
  cv-raw   CloudVolume over /precomputed/<uuid>/seg/raw (raw chunks)
  ts       tensorstore over /precomputed/<uuid>/seg
CloudVolume fetches 64 chunks; `--parallel` sets its threads (1 = one connection at a time).
Prints a markdown table of median Mvox/s and one JSON line.
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time
import urllib.request

import numpy as np
import tensorstore as ts
from cloudvolume import CloudVolume

SIZE = (512, 512, 256)   # x, y, z
CUT = 256


def die(msg):
    print(f"precomputed/bench.py: FAILED: {msg}", file=sys.stderr, flush=True)
    sys.exit(2)


def request(url, body=None):
    req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    with urllib.request.urlopen(req, timeout=900) as r:
        return r.read()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--parallel", type=int, default=1, help="CloudVolume threads")
    args = ap.parse_args()
    url = args.url.rstrip("/")

    uuid = json.loads(request(f"{url}/api/repos", json.dumps({"alias": "pc"}).encode()))["root"]
    request(f"{url}/api/repo/{uuid}/instance", json.dumps(
        {"typename": "labelmap", "dataname": "seg", "MaxDownresLevel": "0"}).encode())
    z = np.arange(SIZE[2], dtype="<u8")[:, None, None]
    y = np.arange(SIZE[1], dtype="<u8")[None, :, None]
    x = np.arange(SIZE[0], dtype="<u8")[None, None, :]
    vol = 1 + x // 16 + 32 * (y // 16) + 1024 * (z // 16)
    vol = vol * ((x * 7 + y * 13 + z * 3) % 11 != 0)   # some background voxels
    request(f"{url}/api/node/{uuid}/seg/raw/0_1_2/{SIZE[0]}_{SIZE[1]}_{SIZE[2]}/0_0_0",
            vol.astype("<u8").tobytes())
    lo = (128, 128, 0)
    want = vol[lo[2]:lo[2] + CUT, lo[1]:lo[1] + CUT, lo[0]:lo[0] + CUT].transpose(2, 1, 0)
    del vol
    view = f"{url}/precomputed/{uuid}/seg"
    sl = np.s_[lo[0]:lo[0] + CUT, lo[1]:lo[1] + CUT, lo[2]:lo[2] + CUT]

    def raw():
        b = request(f"{url}/api/node/{uuid}/seg/raw/0_1_2/{CUT}_{CUT}_{CUT}/"
                    f"{lo[0]}_{lo[1]}_{lo[2]}")
        return np.frombuffer(b, dtype="<u8").reshape(CUT, CUT, CUT).transpose(2, 1, 0)

    def cv(path):
        c = CloudVolume("precomputed://" + path, progress=False, use_https=False,
                        parallel=args.parallel, cache=False, fill_missing=False)
        return lambda: np.asarray(c[sl])[..., 0]

    store = ts.open({"driver": "neuroglancer_precomputed", "kvstore": view + "/",
                     "context": {"cache_pool": {"total_bytes_limit": 0}}}).result()
    ways = {"raw": raw, "cv": cv(view), "cv-raw": cv(view + "/raw"),
            "ts": lambda: store[sl].read().result()[..., 0]}
    res = {"machine": f"{platform.machine()}, {os.cpu_count()} cpus", "voxels": CUT ** 3,
           "parallel": args.parallel}
    for name, read in ways.items():
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            got = read()
            times.append(time.perf_counter() - t0)
            if not np.array_equal(got, want):
                die(f"{name} read a different array")
        res[name] = {"mvox_s": round(CUT ** 3 / statistics.median(times) / 1e6, 1),
                     "median_s": round(statistics.median(times), 3)}
    print("| read of a 256³ uint64 cutout | median | Mvox/s | vs GET raw |")
    print("|---|---|---|---|")
    for name in ways:
        r = res[name]
        print(f"| {name} | {r['median_s']} s | {r['mvox_s']} | "
              f"{r['mvox_s'] / res['raw']['mvox_s']:.2f}× |")
    print(json.dumps(res))


if __name__ == "__main__":
    main()

"""HTTP benchmark of grayscale (uint8blk) ingest and serving, the way labs script it today with
`requests`: a volume POSTed as block-aligned slabs to `grayscale`, levels `grayscale_1..N`
kept by the server's sync (mean 2x2x2), then neuroglancer-style `subvolblocks` reads.

Prints one JSON line per measurement (medians over --repeats)."""

import argparse
import concurrent.futures as cf
import json
import random
import statistics
import time

import numpy as np
import requests


def em_like(size, seed=0):
    """A synthetic EM-like uint8 volume (z, y, x): smooth membranes-and-cytoplasm texture plus
    noise, so JPEG and LZ4 see realistic entropy. Returned as a list of 64-plane slabs."""
    x, y, z = size
    rng = np.random.default_rng(seed)
    xs = np.arange(x, dtype=np.float32)
    ys = np.arange(y, dtype=np.float32)[:, None]
    base = 128 + 40 * np.sin(xs / 9.0) * np.cos(ys / 13.0)
    slabs = []
    for z0 in range(0, z, 64):
        zs = np.arange(z0, z0 + 64, dtype=np.float32)[:, None, None]
        v = base[None] + 25 * np.sin(zs / 6.0 + xs / 17.0) + rng.normal(0, 12, (64, y, x))
        slabs.append(np.clip(v, 0, 255).astype(np.uint8).tobytes())
    return slabs


def wait_synced(url):
    for _ in range(10):
        r = requests.get(f"{url}/api/server/sync?wait=600", timeout=700)
        r.raise_for_status()
        if r.json()["CaughtUp"]:
            return
    raise RuntimeError(f"levels not caught up: {r.text}")


def ingest(url, slabs, size, compression, levels, tag):
    s = requests.Session()
    root = s.post(f"{url}/api/repos", json={"alias": tag}).json()["root"]
    names = ["grayscale"] + [f"grayscale_{i}" for i in range(1, levels + 1)]
    for n in names:
        r = s.post(f"{url}/api/repo/{root}/instance",
                   json={"typename": "uint8blk", "dataname": n, "BlockSize": "64,64,64",
                         "Compression": compression})
        r.raise_for_status()
    for i in range(1, levels + 1):
        s.post(f"{url}/api/node/{root}/{names[i]}/sync", json={"sync": names[i - 1]}).raise_for_status()
    x, y, _ = size
    t0 = time.perf_counter()
    for k, slab in enumerate(slabs):
        r = s.post(f"{url}/api/node/{root}/grayscale/raw/0_1_2/{x}_{y}_64/0_0_{64 * k}", data=slab)
        r.raise_for_status()
    t_level0 = time.perf_counter() - t0
    wait_synced(url)
    t_all = time.perf_counter() - t0
    return root, t_level0, t_all


def serve(url, root, size, n, threads):
    x, y, z = size
    coords = [(random.randrange(x // 64), random.randrange(y // 64), random.randrange(z // 64))
              for _ in range(n)]
    local = __import__("threading").local()

    def get(c):
        if not hasattr(local, "s"):
            local.s = requests.Session()
        r = local.s.get(f"{url}/api/node/{root}/grayscale/subvolblocks/64_64_64/"
                        f"{64 * c[0]}_{64 * c[1]}_{64 * c[2]}?app=Neuroglancer")
        r.raise_for_status()
        assert len(r.content) > 16
        return len(r.content)

    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(threads) as ex:
        sizes = list(ex.map(get, coords))
    return n / (time.perf_counter() - t0), statistics.mean(sizes)


def serve_curl(url, root, size, n, parallel):
    """The same reads by curl (`-Z`, one process, `parallel` connections): what the server
    sustains when the client isn't a Python interpreter, as with a browser's parallel fetches."""
    import subprocess
    import tempfile
    x, y, z = size
    with tempfile.NamedTemporaryFile("w", suffix=".cfg", delete=False) as f:
        for _ in range(n):
            c = (random.randrange(x // 64), random.randrange(y // 64), random.randrange(z // 64))
            f.write(f'url = "{url}/api/node/{root}/grayscale/subvolblocks/64_64_64/'
                    f'{64 * c[0]}_{64 * c[1]}_{64 * c[2]}?app=Neuroglancer"\noutput = "/dev/null"\n')
    t0 = time.perf_counter()
    subprocess.run(["curl", "-sf", "--no-progress-meter", "-Z", "--parallel-max", str(parallel), "-K", f.name], check=True)
    return n / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--size", default="1024,1024,512")
    ap.add_argument("--levels", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--blocks", type=int, default=4000)
    a = ap.parse_args()
    size = tuple(int(v) for v in a.size.split(","))
    voxels = size[0] * size[1] * size[2]
    slabs = em_like(size)
    for compression in ["jpeg", "lz4"]:
        runs = [ingest(a.url, slabs, size, compression, a.levels, f"{compression}{i}")
                for i in range(a.repeats)]
        l0 = statistics.median(r[1] for r in runs)
        full = statistics.median(r[2] for r in runs)
        print(json.dumps({"op": "ingest", "compression": compression, "levels": a.levels,
                          "voxels": voxels, "level0_s": round(l0, 2), "with_pyramid_s": round(full, 2),
                          "level0_mvox_s": round(voxels / l0 / 1e6, 1),
                          "with_pyramid_mvox_s": round(voxels / full / 1e6, 1)}), flush=True)
        if compression == "jpeg":
            root = runs[-1][0]
            for threads in [1, 4]:
                rates = [serve(a.url, root, size, a.blocks, threads) for _ in range(a.repeats)]
                print(json.dumps({"op": "subvolblocks 64^3 jpeg", "client": "requests",
                                  "threads": threads,
                                  "blocks_per_s": round(statistics.median(r[0] for r in rates)),
                                  "mean_bytes": round(rates[0][1])}), flush=True)
            for parallel in [1, 8]:
                rates = [serve_curl(a.url, root, size, a.blocks, parallel) for _ in range(a.repeats)]
                print(json.dumps({"op": "subvolblocks 64^3 jpeg", "client": "curl -Z",
                                  "connections": parallel,
                                  "blocks_per_s": round(statistics.median(rates))}), flush=True)


if __name__ == "__main__":
    main()

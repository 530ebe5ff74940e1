"""Grayscale ingest scripted in Python the way labs do it today: numpy loads the .npy, `requests`
POSTs block-aligned slabs, and each pyramid level (2x2x2 mean, rounded half up) is computed in
numpy and POSTed to `<name>_k`. The baseline `tessera load` is compared against."""

import argparse
import time

import numpy as np
import requests


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--uuid", required=True)
    ap.add_argument("--instance", default="grayscale")
    ap.add_argument("--levels", type=int, default=5)
    ap.add_argument("npy")
    a = ap.parse_args()
    t0 = time.perf_counter()
    vol = np.load(a.npy)  # (z, y, x) uint8
    s = requests.Session()
    for level in range(a.levels + 1):
        name = a.instance if level == 0 else f"{a.instance}_{level}"
        s.post(f"{a.url}/api/repo/{a.uuid}/instance",
               json={"typename": "uint8blk", "dataname": name, "BlockSize": "64,64,64",
                     "Compression": "jpeg"})  # 400 when it exists
        z, y, x = vol.shape
        pz, py, px = (-(-d // 64) * 64 for d in (z, y, x))
        padded = np.zeros((pz, py, px), np.uint8)
        padded[:z, :y, :x] = vol
        for z0 in range(0, pz, 64):
            r = s.post(f"{a.url}/api/node/{a.uuid}/{name}/raw/0_1_2/{px}_{py}_64/0_0_{z0}",
                       data=padded[z0:z0 + 64].tobytes())
            r.raise_for_status()
        if level < a.levels:
            v = padded.astype(np.uint16)
            v = v.reshape(pz // 2, 2, py // 2, 2, px // 2, 2).sum(axis=(1, 3, 5))
            vol = ((v + 4) // 8).astype(np.uint8)
    print(f"python ingest: {time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()

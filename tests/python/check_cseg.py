#!/usr/bin/env python3
"""Checks neuroglancer compressed_segmentation chunks against raw uint64 label arrays.

Usage: check_cseg.py MANIFEST.json

MANIFEST is a JSON list of cases {"name": str, "cseg": path, "raw": path, "size": [x, y, z]}:
  cseg  the (already inflated) body of GET raw/0_1_2/...?compression=googlegzip — one channel
        of uint64 compressed_segmentation with 8x8x8 encoding blocks, starting with the
        channel-offset word (1), voxels x fastest;
  raw   the uint64 LE array of the same box from GET raw (ZYX order, x fastest).

The chunk must decode with the `compressed-segmentation` PyPI package to exactly the raw
voxels. The header is also checked by hand first (the package does not bounds-check).
Exit status 0 when every case matches, 1 otherwise (one line per case on stdout).
"""

import json
import sys

import numpy as np
import compressed_segmentation as cseg

BLOCK = (8, 8, 8)


def check_structure(data, size):
    """Validates the channel header and every block header against the stream length."""
    if len(data) % 4 != 0:
        return f"length {len(data)} is not a multiple of 4"
    words = np.frombuffer(data, dtype="<u4")
    if len(words) < 1 or words[0] != 1:
        return f"channel-offset word is {words[0] if len(words) else None}, want 1"
    base = 1
    grid = [-(-s // b) for s, b in zip(size, BLOCK)]
    nblocks = grid[0] * grid[1] * grid[2]
    if len(words) < base + 2 * nblocks:
        return f"{len(words)} words cannot hold {nblocks} block headers"
    for i in range(nblocks):
        h0 = int(words[base + 2 * i])
        h1 = int(words[base + 2 * i + 1])
        table, bits, values = h0 & 0xFFFFFF, h0 >> 24, h1
        if bits not in (0, 1, 2, 4, 8, 16, 32):
            return f"block {i}: encoded bits {bits} invalid"
        nvalues = (512 * bits + 31) // 32
        if base + values + nvalues > len(words):
            return f"block {i}: values at word {values} (+{nvalues}) past the end"
        if base + table + 2 > len(words):
            return f"block {i}: lookup table at word {table} past the end"
        if table < 2 * nblocks:
            return f"block {i}: lookup table at word {table} overlaps the block headers"
    return None


def check(case):
    size = tuple(case["size"])
    with open(case["cseg"], "rb") as f:
        data = f.read()
    with open(case["raw"], "rb") as f:
        raw = np.frombuffer(f.read(), dtype="<u8")
    n = size[0] * size[1] * size[2]
    if raw.size != n:
        return f"raw file holds {raw.size} voxels, want {n}"
    err = check_structure(data, size)
    if err:
        return "bad compressed_segmentation stream: " + err
    try:
        vol = cseg.decompress(data, size, np.uint64, BLOCK, order="F")
    except Exception as e:  # noqa: BLE001 - report whatever the decoder raises
        return f"decompress failed: {type(e).__name__}: {e}"
    vol = np.asarray(vol).reshape(size, order="F")
    got = vol.ravel(order="F")
    if np.array_equal(got, raw):
        return None
    bad = np.nonzero(got != raw)[0]
    i = int(bad[0])
    x, y, z = i % size[0], (i // size[0]) % size[1], i // (size[0] * size[1])
    return (
        f"{bad.size} of {n} voxels differ; first at voxel offset ({x},{y},{z}): "
        f"decoded {int(got[i])}, raw {int(raw[i])}"
    )


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1]) as f:
        cases = json.load(f)
    failed = 0
    for case in cases:
        err = check(case)
        if err:
            failed += 1
            print(f"FAIL {case['name']}: {err}")
        else:
            print(f"ok   {case['name']}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

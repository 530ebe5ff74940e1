"""Independent check of a grayscale pyramid kept by a Tessera (or DVID) server: reads a box of
`<name>` and of each `<name>_k` over HTTP and asserts that level k is the 2x2x2 mean of level
k-1, rounded half up, computed here with numpy.

    python check_gray_pyramid.py URL NODE NAME LEVELS X0,Y0,Z0 SX,SY,SZ

The box is in level-0 voxels and must be aligned to 2**LEVELS."""

import sys
import urllib.request

import numpy as np


def read(url, node, name, size, offset):
    path = (f"{url}/api/node/{node}/{name}/raw/0_1_2/{size[0]}_{size[1]}_{size[2]}/"
            f"{offset[0]}_{offset[1]}_{offset[2]}")
    with urllib.request.urlopen(path) as r:
        data = r.read()
    return np.frombuffer(data, np.uint8).reshape(size[2], size[1], size[0])


def main():
    url, node, name, levels = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    offset = [int(v) for v in sys.argv[5].split(",")]
    size = [int(v) for v in sys.argv[6].split(",")]
    prev = read(url, node, name, size, offset)
    for k in range(1, levels + 1):
        offset = [o // 2 for o in offset]
        size = [s // 2 for s in size]
        z, y, x = prev.shape
        sums = prev.astype(np.uint32).reshape(z // 2, 2, y // 2, 2, x // 2, 2).sum(axis=(1, 3, 5))
        want = ((sums + 4) // 8).astype(np.uint8)
        got = read(url, node, f"{name}_{k}", size, offset)
        bad = int((got != want).sum())
        if bad:
            print(f"level {k}: {bad} of {want.size} voxels differ from the numpy mean")
            sys.exit(1)
        print(f"level {k}: {want.size} voxels equal the numpy mean")
        prev = got


if __name__ == "__main__":
    main()

"""Bodies of chosen sizes built from the real volume's supervoxels, and the pieces the timed
edits move in and out of them. Local numpy work only: no HTTP here.

A body is grown from a seed supervoxel by adding, one at a time, the untaken neighbour with the
largest contact area (face-adjacent voxel pairs), skipping neighbours that would overshoot the
target by more than 5 %, as an agglomeration would merge them; when the seed's component runs
out it continues from the largest untaken supervoxel that still fits, so a body may have more
than one connected piece (reported).
"""
import heapq
import struct
from collections import defaultdict

import fastremap
import numpy as np
from scipy import ndimage


class Volume:
    """The labels ([z][y][x], uint64) with dense ids (0 = background), voxel counts per dense
    id, each id's bounding box and the contact areas between ids."""

    def __init__(self, vol):
        self.shape = vol.shape
        dense, remap = fastremap.renumber(vol, preserve_zero=True, in_place=False)
        self.dense = dense
        self.sv = np.zeros(max(remap.values()) + 1, "<u8")  # dense id -> supervoxel id
        for label, d in remap.items():
            self.sv[d] = label
        self.dense_of = {int(label): int(d) for label, d in remap.items()}
        self.counts = np.bincount(dense.ravel(), minlength=len(self.sv))
        self.boxes = ndimage.find_objects(dense)  # boxes[d - 1] for dense id d
        self.contact = self._contacts()

    def _contacts(self):
        """{dense id: {neighbour dense id: face-adjacent voxel pairs}}, background excluded."""
        k = np.uint64(len(self.sv))
        keys, areas = [], []
        for axis in range(3):
            lo = [slice(None)] * 3
            hi = [slice(None)] * 3
            lo[axis], hi[axis] = slice(None, -1), slice(1, None)
            a, b = self.dense[tuple(lo)], self.dense[tuple(hi)]
            m = (a != b) & (a != 0) & (b != 0)
            a, b = a[m].astype("<u8"), b[m].astype("<u8")
            u, c = np.unique(np.minimum(a, b) * k + np.maximum(a, b), return_counts=True)
            keys.append(u)
            areas.append(c)
        u, inv = np.unique(np.concatenate(keys), return_inverse=True)
        area = np.bincount(inv, weights=np.concatenate(areas)).astype(np.int64)
        graph = defaultdict(dict)
        for key, n in zip(u.tolist(), area.tolist()):
            a, b = divmod(key, int(k))
            graph[a][b] = n
            graph[b][a] = n
        return graph

    def size(self, d):
        return int(self.counts[d])

    def mask(self, d, zrange=None):
        """(z0, y0, x0) and the bool mask of dense id d inside its bounding box, optionally
        restricted to absolute z in [zrange[0], zrange[1])."""
        box = self.boxes[d - 1]
        m = self.dense[box] == d
        z0, y0, x0 = (s.start for s in box)
        if zrange is not None:
            z = np.arange(z0, z0 + m.shape[0])
            m &= ((z >= zrange[0]) & (z < zrange[1]))[:, None, None]
        return (z0, y0, x0), m


def grow(vol, target, taken, seed=None):
    """A set of dense ids of about `target` voxels (within ±5 % where the sizes allow),
    disjoint from `taken`, none larger than a fifth of it (so every body has pieces to split
    off); returns (ids, voxels, pieces: how many times it had to reseed)."""
    cap = target / 5
    free = lambda d: d != 0 and d not in taken and d not in body and vol.counts[d] <= cap  # noqa: E731
    body, size, pieces = set(), 0, 0
    heap, touch = [], defaultdict(int)
    while size < 0.95 * target:
        if not heap:
            # (Re)seed: the given seed, else the largest free supervoxel that fits.
            room = 1.05 * target - size
            cands = [d for d in range(1, len(vol.sv)) if free(d) and vol.counts[d] <= room]
            if seed is not None and free(seed) and not body:
                d = seed
            elif cands:
                d = max(cands, key=lambda c: vol.counts[c])
            else:
                break
            pieces += 1
            heap = [(0, d)]
        _, d = heapq.heappop(heap)
        if not free(d) or size + vol.counts[d] > 1.05 * target:
            continue
        body.add(d)
        size += vol.size(d)
        for nb, area in vol.contact[d].items():
            if free(nb):
                touch[nb] += area
                heapq.heappush(heap, (-touch[nb], nb))
    return body, size, pieces


def runs_of(origin, mask):
    """DVID's legacy RLE (spec §5.1) of a mask's voxels: header (binary, 3 dims, runs along x,
    reserved, u32 0, u32 #runs), then int32 LE x, y, z, length per run."""
    z0, y0, x0 = origin
    pad = np.zeros(mask.shape[:2] + (mask.shape[2] + 2,), np.int8)
    pad[:, :, 1:-1] = mask
    d = np.diff(pad, axis=2)
    zs, ys, xs = np.nonzero(d == 1)
    _, _, xe = np.nonzero(d == -1)  # same (z, y) rows in the same C order
    runs = np.stack([xs + x0, ys + y0, zs + z0, xe - xs], axis=1).astype("<i4")
    return struct.pack("<BBBBII", 0, 3, 0, 0, 0, len(runs)) + runs.tobytes()


def slabs(vol, d, k):
    """Splits dense id d into k + 1 parts by z (equal voxel counts where the planes allow):
    returns the first k as (voxels, RLE) for successive split-supervoxel edits; the last part
    stays, so the supervoxel never empties."""
    origin, m = vol.mask(d)
    per_plane = m.sum(axis=(1, 2))
    cum = np.cumsum(per_plane)
    total = int(cum[-1])
    cuts = [0]
    for j in range(1, k + 1):
        cuts.append(int(np.searchsorted(cum, total * j / (k + 1))) + 1)
    out = []
    for a, b in zip(cuts, cuts[1:]):
        if b <= a:
            return None  # too thin in z for k slabs
        sub = np.zeros_like(m)
        sub[a:b] = m[a:b]
        n = int(sub.sum())
        if n == 0:
            return None
        out.append((n, runs_of(origin, sub)))
    return out

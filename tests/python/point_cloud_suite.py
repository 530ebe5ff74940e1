#!/usr/bin/env python3
"""dvid-point-cloud (PyPI 0.1.3), unmodified, against `tessera demo`'s dataset
(tests/tests/clients_point_cloud.rs).

    point_cloud_suite.py SERVER CHILD

Expected values come from `GET raw` of the whole child volume (bodies and supervoxels).
Prints one JSON line per check: {"fn", "ok", "detail"}; exits 1 if any failed.
"""
import struct
import sys
import urllib.request

import numpy as np

import dvid_point_cloud as dpc

from suite import check, expect, run

SERVER, CHILD = sys.argv[1].rstrip("/"), sys.argv[2]
SIZE = (192, 192, 128)


def raw(query=""):
    url = (f"{SERVER}/api/node/{CHILD}/segmentation/raw/0_1_2/"
           f"{SIZE[0]}_{SIZE[1]}_{SIZE[2]}/0_0_0{query}")
    with urllib.request.urlopen(url, timeout=120) as r:
        return np.frombuffer(r.read(), "<u8").reshape(SIZE[2], SIZE[1], SIZE[0])


BODIES, SVS = raw(), raw("?supervoxels=true")
B = int(BODIES[64, 96, 96])
OTHER = int(BODIES[10, 10, 10])
CLIENT = dpc.DVIDClient(SERVER)


def inside(points, body):
    p = np.asarray(points, dtype=np.int64)
    return bool((BODIES[p[:, 2], p[:, 1], p[:, 0]] == body).all())


@check
def uniform_sample():
    pts = dpc.uniform_sample(SERVER, CHILD, B, 500, instance="segmentation")
    expect(pts.shape == (500, 3) and inside(pts, B), pts[:3])


@check
def uniform_auto_scale():
    pts = dpc.uniform_auto_scale(SERVER, CHILD, B, 300, instance="segmentation")
    expect(pts is not None and len(pts) == 300, pts)


@check
def sample_for_bodies():
    out = dpc.sample_for_bodies(SERVER, CHILD, "segmentation", [B, OTHER], 100)
    expect(set(out) == {B, OTHER}, sorted(out))
    for body, pts in out.items():
        expect(len(pts) == 100 and inside(pts, body), body)


@check
def client_reads():
    info = CLIENT.get_info(CHILD, "segmentation")
    expect(info["Extended"]["MaxDownresLevel"] >= 3, info["Extended"])
    expect(CLIENT.get_label(CHILD, "segmentation", (96, 96, 64)) == B, "label")
    expect(CLIENT.get_label(CHILD, "segmentation", (96, 96, 64), supervoxels=True)
           == int(SVS[64, 96, 96]), "supervoxel label")
    pts = [[5, 6, 7], [100, 50, 20], [191, 191, 127]]
    expect(list(CLIENT.get_labels(CHILD, "segmentation", pts))
           == [int(BODIES[z, y, x]) for x, y, z in pts], "labels")
    svs = sorted(int(s) for s in CLIENT.get_supervoxels(CHILD, "segmentation", B))
    expect(svs == sorted(np.unique(SVS[BODIES == B]).tolist()), svs)
    stats = CLIENT.get_sparse_vol_stats(CHILD, "segmentation", B)
    voxels = getattr(stats, "voxels", None) or getattr(stats, "num_voxels", None)
    expect(voxels == int((BODIES == B).sum()), stats)


@check
def sparse_vol_rles():
    rle = CLIENT.get_sparse_vol(CHILD, "segmentation", B, format="rles")
    starts, lengths = dpc.parse.parse_rles(rle)
    expect(int(lengths.sum()) == int((BODIES == B).sum()), f"{lengths.sum()} voxels")
    z, y, x = starts[:, 0], starts[:, 1], starts[:, 2]
    expect(bool((BODIES[z, y, x] == B).all()), "every run starts inside the body")


@check
def get_label_blocks():
    data = CLIENT.get_label_blocks(CHILD, "segmentation", "0,0,0,1,0,0")
    coords, at = [], 0
    while at < len(data):
        bx, by, bz, n = struct.unpack_from("<iiii", data, at)
        coords.append((bx, by, bz))
        at += 16 + n
    expect(sorted(coords) == [(0, 0, 0), (1, 0, 0)], coords)


if __name__ == "__main__":
    run()

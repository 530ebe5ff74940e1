#!/usr/bin/env python3
"""Reads Tessera's precomputed view with CloudVolume and tensorstore and compares every cutout
with what DVID's `GET raw` returns for the same box (tests/tests/precomputed.rs).

    check_precomputed.py SPEC.json

SPEC: {"server": "http://127.0.0.1:PORT", "cases": [{
    "view": "/precomputed/<uuid>/<instance>[/<encoding>]",   # the precomputed volume
    "mip": k,                                                 # scale to read
    "box": [x0, y0, z0, x1, y1, z1],                          # voxels at that scale, end exclusive
    "raw": "/api/node/<uuid>/<name>/raw/0_1_2",               # the DVID read to compare with
    "raw_query": "?scale=k" or "",
    "dtype": "uint64" | "uint8",
    "tolerance": max |difference| allowed (0 but for jpeg),
    "mesh": body id or null                                   # also read its mesh with CloudVolume
}]}
Prints one JSON line per case; exits 1 when any case differs.
"""
import json
import sys
import urllib.request

import numpy as np
import tensorstore as ts
from cloudvolume import CloudVolume


def dvid_raw(server, case):
    x0, y0, z0, x1, y1, z1 = case["box"]
    size = (x1 - x0, y1 - y0, z1 - z0)
    url = (f"{server}{case['raw']}/{size[0]}_{size[1]}_{size[2]}/{x0}_{y0}_{z0}"
           f"{case.get('raw_query', '')}")
    data = urllib.request.urlopen(url).read()
    dtype = np.dtype("<u8" if case["dtype"] == "uint64" else "u1")
    return np.frombuffer(data, dtype=dtype).reshape(size[::-1]).transpose(2, 1, 0)


def check(server, case):
    x0, y0, z0, x1, y1, z1 = case["box"]
    want = dvid_raw(server, case)
    url = server + case["view"]
    cv = CloudVolume("precomputed://" + url, mip=case["mip"], progress=False,
                     fill_missing=False, use_https=False, cache=False)
    got_cv = np.asarray(cv[x0:x1, y0:y1, z0:z1])[..., 0]
    store = ts.open({"driver": "neuroglancer_precomputed", "kvstore": url + "/",
                     "scale_index": case["mip"]}).result()
    got_ts = store[x0:x1, y0:y1, z0:z1].read().result()[..., 0]
    tol = case.get("tolerance", 0)
    out = {"view": case["view"], "mip": case["mip"], "box": case["box"], "errors": []}
    for name, got in (("cloudvolume", got_cv), ("tensorstore", got_ts)):
        if got.shape != want.shape:
            out["errors"].append(f"{name}: shape {got.shape}, want {want.shape}")
            continue
        diff = np.abs(got.astype(np.int64) - want.astype(np.int64))
        if diff.max() > tol:
            out["errors"].append(f"{name}: max |difference| {int(diff.max())} > {tol} "
                                 f"at {np.unravel_index(diff.argmax(), diff.shape)}")
    if case.get("mesh") is not None:
        mesh = cv.mesh.get(case["mesh"])
        mesh = mesh[case["mesh"]] if isinstance(mesh, dict) else mesh
        out["mesh_vertices"] = len(mesh.vertices)
        out["mesh_faces"] = len(mesh.faces)
        if len(mesh.vertices) == 0 or len(mesh.faces) == 0:
            out["errors"].append(f"mesh of {case['mesh']} is empty")
        else:
            out["mesh_bounds"] = [mesh.vertices.min(axis=0).tolist(),
                                  mesh.vertices.max(axis=0).tolist()]
    out["voxels"] = int(want.size)
    return out


def main():
    spec = json.load(open(sys.argv[1]))
    failed = False
    for case in spec["cases"]:
        r = check(spec["server"], case)
        failed |= bool(r["errors"])
        print(json.dumps(r), flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

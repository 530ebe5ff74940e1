#!/usr/bin/env python3
"""What a lab running Igneous does instead of `tessera pyramid` and `tessera mesh`: tasks over a
neuroglancer precomputed layer on local disk, run by Igneous's LocalTaskQueue with P processes.

    python igneous_jobs.py setup LAYER INPUT.npy   # untimed: the (z, y, x) .npy as a layer
    python igneous_jobs.py reset LAYER             # untimed: back to scale 0 only, no meshes
    python igneous_jobs.py pyramid LAYER LEVELS P  # create_downsampling_tasks, 2x2x2, executed
    python igneous_jobs.py mesh LAYER P            # create_meshing_tasks + manifests, executed

The layer is the peer's cheapest input: raw encoding, uncompressed, 64^3 chunks, so reading it
costs Igneous about what mapping the .npy costs tessera. Its outputs keep Igneous's defaults but
for compression, turned off like tessera's .npy and ngmesh files; meshes are not simplified
(tessera's are not). Everything else (task shapes, memory target) is what a user gets by default.
"""
import json
import os
import shutil
import sys


# The layer's files that Igneous rewrites: its scales, and a provenance log it appends to.
KEPT = ["info", "provenance"]


def layer_url(path):
    return "file://" + os.path.abspath(path)


def setup(layer, src):
    import numpy as np
    from cloudvolume import CloudVolume

    a = np.load(src, mmap_mode="r")
    shutil.rmtree(layer, ignore_errors=True)
    # CloudVolume is (x, y, z); the transpose of a C-order (z, y, x) array is that, in F order.
    CloudVolume.from_numpy(
        np.asarray(a).T,
        vol_path=layer_url(layer),
        resolution=(1, 1, 1),
        chunk_size=(64, 64, 64),
        layer_type="segmentation",
        encoding="raw",
        compress=False,
    )
    for name in KEPT:
        shutil.copy(os.path.join(layer, name), os.path.join(layer, name + ".scale0"))


def reset(layer):
    for name in KEPT:
        shutil.copy(os.path.join(layer, name + ".scale0"), os.path.join(layer, name))
    with open(os.path.join(layer, "info")) as f:
        keep = {s["key"] for s in json.load(f)["scales"]}
    for name in os.listdir(layer):
        path = os.path.join(layer, name)
        if os.path.isdir(path) and name not in keep:
            shutil.rmtree(path)


def execute(tasks, parallel):
    from taskqueue import LocalTaskQueue

    LocalTaskQueue(parallel=parallel, progress=False).insert_all(tasks)


def scales(layer):
    with open(os.path.join(layer, "info")) as f:
        return json.load(f)["scales"]


def pyramid(layer, levels, parallel):
    import igneous.task_creation as tc

    # Within its default memory target Igneous builds 3 levels of a 512^3 uint64 volume per
    # pass (it says so); a user runs passes from the top level until there are enough. Levels
    # smaller than the 64^3 chunks get chunks the size of the last level.
    while (have := len(scales(layer)) - 1) < levels:
        last = [max(n >> levels, 1) for n in scales(layer)[0]["size"]]
        tasks = tc.create_downsampling_tasks(
            layer_url(layer),
            mip=have,
            num_mips=levels - have,
            factor=(2, 2, 2),
            compress=False,
            chunk_size=None if have == 0 else last,
        )
        execute(tasks, parallel)
        if len(scales(layer)) - 1 == have:
            sys.exit(f"Igneous made no level above {have}")


def mesh(layer, parallel):
    import igneous.task_creation as tc

    url = layer_url(layer)
    execute(tc.create_meshing_tasks(url, mip=0, simplification=False, compress=False), parallel)
    execute(tc.create_mesh_manifest_tasks(url), parallel)


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "setup":
        setup(*args)
    elif cmd == "reset":
        reset(*args)
    elif cmd == "pyramid":
        pyramid(args[0], int(args[1]), int(args[2]))
    elif cmd == "mesh":
        mesh(args[0], int(args[1]))
    else:
        sys.exit(__doc__)

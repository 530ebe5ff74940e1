#!/usr/bin/env python3
"""Loads mesh files with trimesh and reports whether each is a sound closed surface.

Usage: check_mesh.py FILE...

  *.ngmesh          neuroglancer legacy mesh (u32le vertex count, f32le xyz per vertex,
                    u32le triangle indices to the end), parsed here with numpy; so is any
                    file without an .obj/.ply extension (e.g. precomputed legacy fragments
                    such as `42:0:0`).
  *.obj, *.ply      loaded with trimesh.load(path, process=False).

Prints one JSON line per file:
  {"file": ..., "vertices": n, "faces": m, "watertight": bool,
   "winding_consistent": bool, "volume": float}
(volume is signed: positive when triangles wind counter-clockwise seen from outside).
Exits 1, with a message on stderr, at the first file it cannot read; 0 otherwise.
The checks are reported, not enforced: callers decide what they require.
"""

import json
import os
import sys

import numpy as np
import trimesh


def load_ngmesh(path):
    data = open(path, "rb").read()
    if len(data) < 4:
        raise ValueError(f"{len(data)} bytes is too short for the vertex count")
    n = int(np.frombuffer(data, dtype="<u4", count=1)[0])
    end = 4 + 12 * n
    if end > len(data):
        raise ValueError(f"{n} vertices need {end} bytes, file has {len(data)}")
    if (len(data) - end) % 12 != 0:
        raise ValueError(f"{len(data) - end} index bytes are not whole triangles")
    vertices = np.frombuffer(data, dtype="<f4", count=3 * n, offset=4).reshape(-1, 3)
    faces = np.frombuffer(data, dtype="<u4", offset=end).reshape(-1, 3)
    if faces.size and int(faces.max()) >= n:
        raise ValueError(f"triangle index {int(faces.max())} >= vertex count {n}")
    return trimesh.Trimesh(vertices=vertices.astype(np.float64), faces=faces.astype(np.int64), process=False)


def load(path):
    ext = os.path.splitext(path)[1].lower()
    if ext in (".obj", ".ply"):
        mesh = trimesh.load(path, process=False, force="mesh")
        if not isinstance(mesh, trimesh.Trimesh):
            raise ValueError(f"not a triangle mesh ({type(mesh).__name__})")
        return mesh
    return load_ngmesh(path)


def main(paths):
    if not paths:
        print(__doc__, file=sys.stderr)
        return 2
    for path in paths:
        try:
            mesh = load(path)
        except Exception as e:  # any failure to read is the same verdict: unreadable
            print(f"check_mesh: cannot read {path}: {e}", file=sys.stderr)
            return 1
        report = {
            "file": path,
            "vertices": int(len(mesh.vertices)),
            "faces": int(len(mesh.faces)),
            "watertight": bool(mesh.is_watertight),
            "winding_consistent": bool(mesh.is_winding_consistent),
            "volume": float(mesh.volume) if len(mesh.faces) else 0.0,
        }
        print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

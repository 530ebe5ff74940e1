#!/usr/bin/env python3
"""The script a user would write instead of `tessera mesh` (default format, ngmesh): load the
(z, y, x) .npy, mesh every label with zmesh, write OUT/<label>.ngmesh for each.

    python zmesh_meshes.py INPUT.npy OUT_DIR

zmesh is single-threaded. As in tessera: x is the array's last axis (zmesh gets the (x, y, z)
Fortran-order view, no copy), voxel size 1,1,1, surfaces closed at the array's edge
(close=True), no simplification, no normals, and each file is the neuroglancer legacy "ngmesh"
(u32 vertex count, f32 x y z vertices, u32 triangle indices: zmesh's to_precomputed()). What
differs: zmesh's vertices, triangles and their order are its own (its marching cubes puts
vertices at voxel corners and edge midpoints like tessera's, but triangulates and numbers them
differently), so files are the same format and surfaces but not the same bytes; label 0 is
background in both."""
import os
import sys

import numpy as np
import zmesh

src, out_dir = sys.argv[1], sys.argv[2]
a = np.load(src)
os.makedirs(out_dir, exist_ok=True)
mesher = zmesh.Mesher((1, 1, 1))
mesher.mesh(a.T, close=True)
for label in mesher.ids():
    m = mesher.get(label, normals=False, reduction_factor=0)
    with open(os.path.join(out_dir, f"{label}.ngmesh"), "wb") as f:
        f.write(m.to_precomputed())
    mesher.erase(label)
mesher.clear()

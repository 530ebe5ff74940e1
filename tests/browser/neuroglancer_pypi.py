#!/usr/bin/env python3
"""Upstream neuroglancer (PyPI `neuroglancer`, its Python-served build) pointed at a running
Tessera (tests/tests/neuroglancer.rs): serves a viewer on loopback showing grayscale under the
segmentation with one body forced magenta, prints the viewer's URL, and serves until stdin
closes. The browser side is tests/browser/neuroglancer.mjs in `url` mode.

    neuroglancer_pypi.py TESSERA_URL NODE BODY X,Y,Z

This build asks its Python server for credentials for every `dvid://` source and fails the
layer when there are none; DVID_CREDENTIALS gives it a dummy one for Tessera's URL, which
(having no token) makes the browser send requests without Authorization.
"""
import os
import sys

TESSERA, NODE, BODY, POS = sys.argv[1].rstrip("/"), sys.argv[2], int(sys.argv[3]), sys.argv[4]
os.environ["DVID_CREDENTIALS"] = f"{TESSERA}=dummy"

import neuroglancer  # noqa: E402  (reads DVID_CREDENTIALS)

neuroglancer.set_server_bind_address("127.0.0.1", 0)
viewer = neuroglancer.Viewer()
with viewer.txn() as s:
    s.dimensions = neuroglancer.CoordinateSpace(names=["x", "y", "z"], units="nm",
                                                scales=[8, 8, 8])
    s.position = [float(v) for v in POS.split(",")]
    s.cross_section_scale = 0.5
    s.layers["grayscale"] = neuroglancer.ImageLayer(source=f"dvid://{TESSERA}/{NODE}/grayscale")
    s.layers["segmentation"] = neuroglancer.SegmentationLayer(
        source=f"dvid://{TESSERA}/{NODE}/segmentation", segments=[BODY],
        segment_colors={BODY: "#ff00ff"}, selected_alpha=1.0, not_selected_alpha=0.0)
    s.layout = "xy"
    s.show_axis_lines = False
    s.show_scale_bar = False
print(viewer.get_viewer_url(), flush=True)
sys.stdin.read()

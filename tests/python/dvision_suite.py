#!/usr/bin/env python3
"""dvision (PyPI, 2017, needs numpy<2: its own venv, made by scripts/pyenv.sh) unmodified
against a running Tessera (tests/tests/clients_dvision.rs).

    dvision_suite.py PORT

Writes volumes through dvision's array interface and reads them back through it; reads an
ROI's mask and partition. Expected values are the arrays this script wrote and the ROI
spans it posted. Prints one JSON line per check: {"fn", "ok", "detail"}; exits 1 if any failed.
"""
import json
import sys
import urllib.request

import numpy as np

import dvision
from dvision import DVIDConnection, DVIDDataInstance, DVIDRegionOfInterest

from suite import check, expect, run

PORT = int(sys.argv[1])
# dvision's module-level requester only POSTs to the hosts it whitelists.
dvision.dvid_requester.whitelist.append("127.0.0.1")
STATE = {}


@check
def create_repo():
    repo = DVIDConnection("127.0.0.1", PORT).create_repo("dvision", "dvision suite")
    expect(len(repo.root_uuid) == 32, repo.root_uuid)
    STATE["repo"] = repo


@check
def uint8blk_round_trip():
    inst = STATE["repo"].create_data_instance("img", "uint8blk")
    a = np.random.default_rng(3).integers(0, 256, (64, 64, 128), dtype=np.uint8)  # z, y, x
    inst[0:64, 0:64, 0:128] = a
    expect(np.array_equal(inst[0:64, 0:64, 0:128], a), "whole read")
    expect(np.array_equal(inst[10:20, 5:50, 60:100], a[10:20, 5:50, 60:100]), "part read")
    # A fresh handle: dvision caches `info` from before the write.
    shape = DVIDDataInstance("127.0.0.1", PORT, STATE["repo"].root_uuid, "img").shape
    expect(shape == (64, 64, 128), shape)


@check
def labelblk_round_trip():
    inst = STATE["repo"].create_data_instance("labels", "labelblk")
    z, y, x = np.mgrid[0:64, 0:64, 0:64]
    a = (1 + x // 16 + 4 * (y // 16) + 16 * (z // 16)).astype(np.uint64) * (2 ** 40 + 1)
    inst[0:64, 0:64, 0:64] = a
    expect(np.array_equal(inst[0:64, 0:64, 0:64], a), "labels read back")


@check
def roi_mask_and_partition():
    uuid = STATE["repo"].root_uuid
    base = f"http://127.0.0.1:{PORT}/api"
    body = json.dumps({"typename": "roi", "dataname": "roi"}).encode()
    urllib.request.urlopen(urllib.request.Request(f"{base}/repo/{uuid}/instance", body, method="POST"))
    spans = [[0, 0, 0, 1], [1, 1, 1, 2]]  # z, y, x0, x1 in 32³ blocks
    urllib.request.urlopen(urllib.request.Request(
        f"{base}/node/{uuid}/roi/roi", json.dumps(spans).encode(), method="POST"))
    roi = DVIDRegionOfInterest("127.0.0.1", PORT, uuid, "roi")
    mask = roi[0:64, 0:64, 0:96]
    want = np.zeros((64, 64, 96), np.uint8)
    want[0:32, 0:32, 0:64] = 1
    want[32:64, 32:64, 32:96] = 1
    expect(np.array_equal(mask, want), f"mask holds {int(mask.sum())} voxels")
    expect(not roi.is_masked((slice(0, 32), slice(0, 32), slice(0, 32))), "inside")
    expect(roi.is_masked((slice(0, 32), slice(32, 64), slice(0, 32))), "outside")
    parts = roi.get_partition(batchsize=1)
    expect(len(parts) == 4, [p.slices for p in parts])


if __name__ == "__main__":
    run()

#!/usr/bin/env python3
"""The requests neuclease's `neuclease.dvid` functions make, issued as neuclease issues them
(same paths, query strings, bodies and parsing), against a running Tessera
(tests/tests/clients_neuclease.rs). neuclease is not on PyPI; this is our own code, written
from its source (`neuclease/dvid/labelmap/_labelmap.py`, `node.py`, `annotation.py`, …).

    neuclease_suite.py SERVER

The scenario is neuclease's own integration fixture: a labelmap with neuclease's creation
settings, four 64³ octant supervoxels 11..14 and a row of five 1×3×3 supervoxels 1..5 carved
out of 11, written as gzipped labels.Block records (our encoder) with `downres=true`; then
merge 1←2..5, cleave, split-supervoxel, renumber; roi, annotation, labelsz, neuronjson and
node calls. Expected values come from the numpy volume this script wrote.
Prints one JSON line per call group: {"fn", "ok", "detail"}; exits 1 if any failed.
"""
import gzip
import json
import struct
import sys
import urllib.error
import urllib.request

import numpy as np

from suite import check, expect, run

SERVER = sys.argv[1].rstrip("/")
SHAPE = (64, 128, 128)  # z, y, x


def request(method, path, body=None, expect=200):
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(f"{SERVER}/api/{path}", data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            status, out = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, out = e.code, e.read()
    if expect is not None and status != expect:
        raise AssertionError(f"{method} {path}: {status} {out[:300]!r}")
    return status, out


def getj(path, body=None):
    return json.loads(request("GET", path, body)[1])


def postj(path, body):
    out = request("POST", path, body)[1]
    return json.loads(out) if out.strip() else None


# ------------------------------------------------------------------ labels.Block codec (ours)

def index_bits(n):
    return 0 if n <= 1 else int(np.ceil(np.log2(n)))


def encode_block(vol):
    """DVID's compressed labels.Block of a 64³ (z, y, x) uint64 array."""
    table, inverse = np.unique(vol, return_inverse=True)
    inverse = inverse.reshape(vol.shape)
    head = struct.pack("<IIII", 8, 8, 8, len(table)) + table.astype("<u8").tobytes()
    if len(table) == 1:
        return head
    ns, idx, values = [], [], []
    for sz in range(8):
        for sy in range(8):
            for sx in range(8):
                sub = inverse[sz * 8:sz * 8 + 8, sy * 8:sy * 8 + 8, sx * 8:sx * 8 + 8].ravel()
                local, packed = np.unique(sub, return_inverse=True)
                ns.append(len(local))
                idx.extend(local.tolist())
                bits = index_bits(len(local))
                if bits:
                    b = (packed[:, None] >> np.arange(bits - 1, -1, -1)) & 1
                    values.append(np.packbits(b.ravel().astype(np.uint8)).tobytes())
    return (head + struct.pack(f"<{len(ns)}H", *ns) + struct.pack(f"<{len(idx)}I", *idx)
            + b"".join(values))


def decode_block(b):
    gx, gy, gz, n = struct.unpack_from("<IIII", b, 0)
    table = np.frombuffer(b, "<u8", n, 16)
    out = np.zeros((gz * 8, gy * 8, gx * 8), "<u8")
    if n == 1:
        out[:] = table[0]
        return out
    at = 16 + 8 * n
    nsb = gx * gy * gz
    ns = np.frombuffer(b, "<u2", nsb, at)
    at += 2 * nsb
    idx = np.frombuffer(b, "<u4", int(ns.sum()), at)
    at += 4 * int(ns.sum())
    k = 0
    for s in range(nsb):
        sz, sy, sx = s // (gx * gy), s // gx % gy, s % gx
        local = table[idx[k:k + ns[s]]]
        k += ns[s]
        bits = index_bits(int(ns[s]))
        if bits == 0:
            vals = np.full(512, local[0] if ns[s] else 0, "<u8")
        else:
            raw = np.unpackbits(np.frombuffer(b, np.uint8, 64 * bits, at))
            at += 64 * bits
            packed = raw.reshape(512, bits).dot(1 << np.arange(bits - 1, -1, -1))
            vals = local[packed]
        out[sz * 8:sz * 8 + 8, sy * 8:sy * 8 + 8, sx * 8:sx * 8 + 8] = vals.reshape(8, 8, 8)
    return out


def block_records(data):
    out, at = {}, 0
    while at < len(data):
        bx, by, bz, n = struct.unpack_from("<iiii", data, at)
        at += 16
        out[(bx, by, bz)] = data[at:at + n]
        at += n
    return out


# ------------------------------------------------------------------ the fixture

def fixture():
    v = np.zeros(SHAPE, "<u8")
    for i, (z, y, x) in enumerate([(0, 0, 0), (0, 0, 64), (0, 64, 0), (0, 64, 64)]):
        v[z:z + 64, y:y + 64, x:x + 64] = 11 + i
    for sv in range(1, 6):  # neuclease's row of five 1×3×3 supervoxels
        v[0, 0:3, 3 * (sv - 1):3 * sv] = sv
    return v


TRUTH = fixture()


class S:
    """What the scenario has made so far."""
    root = None
    node = None
    seg = None


def setup():
    S.root = postj("repos", {"alias": "neuclease-scenario", "description": "neuclease shapes"})["root"]
    S.node = S.root
    postj(f"repo/{S.root}/instance", {
        "typename": "labelmap", "dataname": "segmentation", "BlockSize": "64,64,64",
        "VoxelSize": "8.0,8.0,8.0", "VoxelUnits": "nanometers,nanometers,nanometers",
        "IndexedLabels": "true", "CountLabels": "true", "MaxDownresLevel": "2"})
    S.seg = f"node/{S.root}/segmentation"
    body = b""
    for bz in range(1):
        for by in range(2):
            for bx in range(2):
                blk = TRUTH[bz * 64:bz * 64 + 64, by * 64:by * 64 + 64, bx * 64:bx * 64 + 64]
                payload = gzip.compress(encode_block(blk))
                body += struct.pack("<iiii", bx, by, bz, len(payload)) + payload
    request("POST", f"{S.seg}/blocks?downres=true", body)


@check
def fetch_label_and_labels():
    expect(getj(f"{S.seg}/label/4_1_0") == {"Label": 2}, "label")
    pts = [[1, 1, 0], [70, 5, 5], [5, 70, 30], [100, 100, 10], [14, 2, 0]]
    got = getj(f"{S.seg}/labels", pts)
    expect(got == [int(TRUTH[z, y, x]) for x, y, z in pts], got)


@check
def fetch_sizes_supervoxels_listlabels():
    svs = [1, 2, 11, 12, 999]
    got = getj(f"{S.seg}/sizes?supervoxels=true", svs)
    expect(got == [int((TRUTH == s).sum()) for s in svs], got)
    expect(getj(f"{S.seg}/size/12?supervoxels=true") == {"voxels": 64 ** 3}, "size")
    _, raw = request("GET", f"{S.seg}/listlabels?start=0&number=100")
    labels = np.frombuffer(raw, "<u8").tolist()
    expect(labels == sorted(set(np.unique(TRUTH).tolist()) - {0}), labels)


@check
def fetch_labelmap_voxels_blocks():
    _, data = request("GET", f"{S.seg}/blocks/128_128_64/0_0_0?compression=blocks")
    recs = block_records(data)
    expect(set(recs) == {(0, 0, 0), (1, 0, 0), (0, 1, 0), (1, 1, 0)}, sorted(recs))
    for (bx, by, bz), payload in recs.items():
        got = decode_block(gzip.decompress(payload))
        want = TRUTH[bz * 64:bz * 64 + 64, by * 64:by * 64 + 64, bx * 64:bx * 64 + 64]
        expect(np.array_equal(got, want), f"block {bx},{by},{bz}")
    # specificblocks: a block that does not exist is simply absent.
    _, data = request("GET", f"{S.seg}/specificblocks?blocks=0,0,0,5,5,5&compression=blocks")
    expect(set(block_records(data)) == {(0, 0, 0)}, "specificblocks")
    # scale 1 exists after downres=true
    _, data = request("GET", f"{S.seg}/blocks/64_64_64/0_0_0?compression=blocks&scale=1")
    expect(len(block_records(data)) == 1, "scale 1 block")


@check
def fetch_sparsevol():
    _, rle = request("GET", f"{S.seg}/sparsevol/12?supervoxels=true")
    expect(rle[0] == 0 and rle[1] == 3 and rle[2] == 0, rle[:4])
    runs = struct.unpack_from("<I", rle, 8)[0]
    expect(len(rle) == 12 + 16 * runs, f"{runs} runs in {len(rle)} bytes")
    total = sum(struct.unpack_from("<iiii", rle, 12 + 16 * i)[3] for i in range(runs))
    expect(total == 64 ** 3, total)
    expect(request("HEAD", f"{S.seg}/sparsevol/12", expect=None)[0] == 200, "HEAD 200")
    expect(request("HEAD", f"{S.seg}/sparsevol/999", expect=None)[0] == 204, "HEAD 204")
    _, coarse = request("GET", f"{S.seg}/sparsevol-coarse/12?supervoxels=true")
    expect(struct.unpack_from("<I", coarse, 8)[0] >= 1, "coarse runs")


@check
def merge_and_mapping():
    mid = postj(f"{S.seg}/merge?u=tester&app=neuclease", [1, 2, 3, 4, 5])
    expect(mid["MutationID"] > 0, mid)
    got = getj(f"{S.seg}/mapping", [1, 2, 3, 4, 5, 11, 999])
    expect(got == [1, 1, 1, 1, 1, 11, 0], got)
    expect(getj(f"{S.seg}/supervoxels/1") == [1, 2, 3, 4, 5], "supervoxels")
    _, raw = request("GET", f"{S.seg}/mappings?format=binary")
    pairs = np.frombuffer(raw, "<u8").reshape(-1, 2).tolist()
    expect(sorted(pairs) == [[2, 1], [3, 1], [4, 1], [5, 1]], pairs)
    lastmod = getj(f"{S.seg}/lastmod/1")
    expect({"mutation id", "last mod user", "last mod app", "last mod time"} <= set(lastmod)
           and lastmod["last mod user"] == "tester", lastmod)


@check
def commit_and_newversion():
    postj(f"node/{S.root}/commit", {"note": "merged", "log": []})
    S.node = postj(f"node/{S.root}/newversion", {"note": "edits"})["child"]
    S.seg = f"node/{S.node}/segmentation"
    info = getj(f"repo/{S.root}/info")
    expect(S.node in info["DAG"]["Nodes"], "child in DAG")


@check
def cleave():
    out = postj(f"{S.seg}/cleave/1?u=tester", [4, 5])
    c = out["CleavedLabel"]
    expect(getj(f"{S.seg}/supervoxels/{c}") == [4, 5] and getj(f"{S.seg}/supervoxels/1") == [1, 2, 3], out)


@check
def split_supervoxel():
    # The x < 32 half of supervoxel 13 (z 0..64, y 64..128, x 0..64), as RLE runs along x.
    runs = [(0, y, z, 32) for z in range(64) for y in range(64, 128)]
    body = struct.pack("<BBBBII", 0, 3, 0, 0, 0, len(runs)) + b"".join(
        struct.pack("<iiii", *r) for r in runs)
    out = postj(f"{S.seg}/split-supervoxel/13?u=tester", body)
    split, remain = out["SplitSupervoxel"], out["RemainSupervoxel"]
    sizes = getj(f"{S.seg}/sizes?supervoxels=true", [split, remain, 13])
    expect(sizes == [64 * 64 * 32, 64 * 64 * 32, 0], sizes)
    expect(getj(f"{S.seg}/mapping", [split, remain]) == [13, 13], "both still in body 13")


@check
def renumber_and_labels():
    postj(f"{S.seg}/renumber?u=tester", [5000, 14])
    expect(getj(f"{S.seg}/label/100_100_10") == {"Label": 5000}, "renumbered")
    m = getj(f"{S.seg}/maxlabel")["maxlabel"]
    n = getj(f"{S.seg}/nextlabel")["nextlabel"]
    expect(n > m >= 13, (m, n))
    got = json.loads(request("POST", f"{S.seg}/nextlabel/5")[1])
    expect(got["end"] - got["start"] + 1 == 5, got)


@check
def mutations_and_history():
    child = [m["Action"] for m in getj(f"{S.seg}/mutations")]
    expect(child == ["cleave-complete", "split-supervoxel-complete", "renumber-complete"], child)
    root = [m["Action"] for m in getj(f"node/{S.root}/segmentation/mutations")]
    expect("merge-complete" in root, root)


@check
def roi():
    postj(f"repo/{S.node}/instance", {"typename": "roi", "dataname": "roi"})
    ranges = [[0, 0, 0, 1], [0, 1, 0, 0], [1, 0, 2, 3]]
    request("POST", f"node/{S.node}/roi/roi", json.dumps(ranges).encode())
    expect(getj(f"node/{S.node}/roi/roi") == ranges, "roi ranges")
    got = json.loads(request("POST", f"node/{S.node}/roi/ptquery",
                             json.dumps([[5, 5, 5], [500, 5, 5]]).encode())[1])
    expect(got == [True, False], got)


@check
def annotation_and_labelsz():
    postj(f"repo/{S.node}/instance", {"typename": "annotation", "dataname": "synapses"})
    request("POST", f"node/{S.node}/synapses/sync", json.dumps({"sync": "segmentation"}).encode())
    postj(f"repo/{S.node}/instance", {"typename": "labelsz", "dataname": "synapses_labelsz"})
    request("POST", f"node/{S.node}/synapses_labelsz/sync", json.dumps({"sync": "synapses"}).encode())
    els = [{"Pos": [70, 10, 10], "Kind": "PreSyn", "Tags": ["t"], "Prop": {},
            "Rels": [{"Rel": "PreSynTo", "To": [10, 70, 10]}]},
           {"Pos": [10, 70, 10], "Kind": "PostSyn", "Tags": [], "Prop": {},
            "Rels": [{"Rel": "PostSynTo", "To": [70, 10, 10]}]}]
    request("POST", f"node/{S.node}/synapses/elements", json.dumps(els).encode())
    got = getj(f"node/{S.node}/synapses/label/12?relationships=true")
    expect([e["Pos"] for e in got] == [[70, 10, 10]] and got[0]["Rels"], got)
    expect([e["Pos"] for e in getj(f"node/{S.node}/synapses/tag/t")] == [[70, 10, 10]], "tag")
    expect(getj(f"node/{S.node}/synapses_labelsz/count/12/PreSyn") == {"Label": 12, "PreSyn": 1}, "count")
    top = getj(f"node/{S.node}/synapses_labelsz/top/2/AllSyn")
    expect(sorted(t["Label"] for t in top) == [12, 13], top)
    request("DELETE", f"node/{S.node}/synapses/element/10_70_10")
    got = getj(f"node/{S.node}/synapses/elements/128_128_64/0_0_0")
    expect(len(got) == 1 and got[0]["Rels"] == [], got)


@check
def neuronjson():
    postj(f"repo/{S.node}/instance", {"typename": "neuronjson", "dataname": "segmentation_annotations"})
    base = f"node/{S.node}/segmentation_annotations"
    request("POST", f"{base}/key/12?u=tester", json.dumps({"bodyid": 12, "status": "Traced"}).encode())
    request("POST", f"{base}/key/13?u=tester", json.dumps({"bodyid": 13, "status": "Anchor"}).encode())
    rec = getj(f"{base}/key/12?show=user")
    expect(rec["status"] == "Traced" and rec.get("status_user") == "tester", rec)
    q = json.loads(request("POST", f"{base}/query", json.dumps({"status": "Anchor"}).encode())[1])
    expect([r["bodyid"] for r in q] == [13], q)
    expect(sorted(getj(f"{base}/keys")) == ["12", "13"], "keys")


if __name__ == "__main__":
    run(before=setup)

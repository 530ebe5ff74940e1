#!/usr/bin/env python3
"""dvidtools (PyPI 0.6.0, `import dvid`), unmodified, against `tessera demo`'s dataset
(tests/tests/clients_dvidtools.rs starts the demo and runs this).

    dvidtools_suite.py SERVER ROOT CHILD

Every expected value comes from an oracle built here from the voxels (`GET raw` of the whole
child volume) and the stored elements (`all-elements`), never from the endpoint dvidtools calls.
Prints one JSON line per dvidtools function: {"fn", "ok", "detail"}; exits 1 if any failed.
"""
import json
import sys
import urllib.request

import numpy as np

import dvid as dv

from suite import check, expect, run

SERVER, ROOT, CHILD = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3]
SIZE = (192, 192, 128)  # x, y, z of the demo volume


def get(path):
    with urllib.request.urlopen(f"{SERVER}{path}", timeout=120) as r:
        return r.read()


def getj(path):
    return json.loads(get(path))


# ------------------------------------------------------------------ the oracle

raw = get(f"/api/node/{CHILD}/segmentation/raw/0_1_2/{SIZE[0]}_{SIZE[1]}_{SIZE[2]}/0_0_0")
VOL = np.frombuffer(raw, dtype="<u8").reshape(SIZE[2], SIZE[1], SIZE[0])  # z, y, x


def body_at(p):
    return int(VOL[p[2], p[1], p[0]])


ELEMENTS = [e for block in getj(f"/api/node/{CHILD}/synapses/all-elements").values()
            for e in block]
BODY_PRE, BODY_POST = {}, {}
for e in ELEMENTS:
    b = body_at(e["Pos"])
    table = BODY_PRE if e["Kind"] == "PreSyn" else BODY_POST
    table.setdefault(b, []).append(e)

# The body under the volume's centre, and the body with the most PreSyn.
B = body_at([96, 96, 64])
SYN = max(BODY_PRE, key=lambda b: (len(BODY_PRE[b]), -b))
MUTATIONS = getj(f"/api/node/{CHILD}/segmentation/mutations")
MERGE = next(m for m in MUTATIONS if m["Action"] == "merge-complete")


def voxels_of(b):
    z, y, x = np.nonzero(VOL == b)
    return np.stack([x, y, z], axis=1)


def blocks_of(b):
    return {tuple(v) for v in (voxels_of(b) // 64).tolist()}


def connectivity(b):
    """(partner body, relation) → synapse count, from the stored elements and the voxels."""
    out = {}
    for e in BODY_PRE.get(b, []):
        for r in e.get("Rels", []):
            key = (body_at(r["To"]), "downstream")
            out[key] = out.get(key, 0) + 1
    for e in BODY_POST.get(b, []):
        for r in e.get("Rels", []):
            key = (body_at(r["To"]), "upstream")
            out[key] = out.get(key, 0) + 1
    return out


# ------------------------------------------------------------------ the checks


@check
def get_segmentation_info():
    ext = dv.get_segmentation_info()["Extended"]
    expect(ext["MaxDownresLevel"] >= 3 and list(ext["BlockSize"]) == [64, 64, 64]
           and list(ext["VoxelSize"]) == [8, 8, 8], ext)


@check
def locs_to_ids():
    rng = np.random.default_rng(1)
    pts = np.stack([rng.integers(0, s, 50) for s in SIZE], axis=1)
    got = list(dv.locs_to_ids(pts.tolist()))
    want = [body_at(p) for p in pts.tolist()]
    expect(got == want, f"{got[:5]} vs {want[:5]}")


@check
def get_sizes():
    got = list(dv.get_sizes([B, SYN, 999999999]))
    want = [int((VOL == B).sum()), int((VOL == SYN).sum()), 0]
    expect(got == want, f"{got} vs {want}")


@check
def ids_exist():
    expect(list(dv.ids_exist([B, 999999999])) == [True, False], "exists")


@check
def get_sparsevol_size():
    s = dv.get_sparsevol_size(B)
    expect(s["voxels"] == int((VOL == B).sum()) and s["numblocks"] == len(blocks_of(B)), s)


@check
def get_sparsevol():
    want = {tuple(v) for v in voxels_of(B).tolist()}
    got = {tuple(v) for v in np.asarray(dv.get_sparsevol(B, scale=0)).tolist()}
    expect(got == want, f"{len(got)} voxels vs {len(want)}")
    coarse = {tuple(v) for v in np.asarray(dv.get_sparsevol(B, scale="COARSE")).tolist()}
    expect(coarse == blocks_of(B), f"coarse {sorted(coarse)} vs {sorted(blocks_of(B))}")
    lo = voxels_of(B).min(axis=0)
    box = [lo[0], lo[0] + 20, lo[1], lo[1] + 20, lo[2], lo[2] + 20]
    clipped = {tuple(v) for v in np.asarray(dv.get_sparsevol(B, scale=0, bbox=box)).tolist()}
    inside = {v for v in want if all(box[2 * a] <= v[a] <= box[2 * a + 1] for a in range(3))}
    expect(clipped == inside, f"bbox: {len(clipped)} vs {len(inside)}")


@check
def mesh_neuron():
    m = dv.mesh_neuron(B, scale=1)
    v = voxels_of(B)
    lo, hi = v.min(axis=0) * 8, (v.max(axis=0) + 1) * 8
    expect(len(m.faces) > 0 and (m.bounds[0] >= lo - 24).all() and (m.bounds[1] <= hi + 24).all(),
           f"{m.bounds} vs {lo}..{hi}")


@check
def get_meshes():
    m = dv.get_meshes(int(B), output="trimesh")
    m = m[0] if isinstance(m, list) else m
    v = voxels_of(B)
    lo, hi = v.min(axis=0) * 8, (v.max(axis=0) + 1) * 8
    expect(len(m.faces) > 0 and (m.bounds[0] >= lo - 8).all() and (m.bounds[1] <= hi + 8).all(),
           f"{m.bounds} vs {lo}..{hi}")


@check
def has_mesh():
    expect(list(dv.has_mesh([int(B), 999999999])) == [True, False], "has_mesh")


SKELETON = int(getj(f"/api/node/{CHILD}/segmentation_skeletons/keys")[0].split("_")[0])


@check
def has_skeleton():
    expect(list(dv.has_skeleton([SKELETON, int(B)])) == [True, SKELETON == B], "has_skeleton")


@check
def get_skeletons():
    s = dv.get_skeletons(SKELETON, output="swc")
    s = s[0] if isinstance(s, list) else s
    expect(len(s) > 10, f"{len(s)} nodes")
    expect(dv.get_skeleton_mutation(SKELETON) == 0, "mutation id from the SWC header")


@check
def annotations():
    key = int(getj(f"/api/node/{CHILD}/segmentation_annotations/keys")[0])
    before = dv.get_annotation(key)
    expect(before["bodyid"] == key, before)
    dv.edit_annotation(key, {"status": "Orphan"})
    after = dv.get_annotation(key)
    expect(after["status"] == "Orphan" and after["type"] == before["type"], after)


@check
def get_n_synapses():
    n = dv.get_n_synapses(SYN)
    want = {"pre": len(BODY_PRE.get(SYN, [])), "post": len(BODY_POST.get(SYN, []))}
    expect({"pre": n["pre"], "post": n["post"]} == want, f"{n} vs {want}")


@check
def get_synapses():
    s = dv.get_synapses(SYN, with_details=True)
    want = len(BODY_PRE.get(SYN, [])) + len(BODY_POST.get(SYN, []))
    expect(len(s) == want, f"{len(s)} vs {want}")


@check
def get_connectivity():
    cn = dv.get_connectivity(SYN)
    got = {(int(r.bodyid), r.relation): int(r.n_synapses) for r in cn.itertuples()}
    want = {k: v for k, v in connectivity(SYN).items() if k[0] != SYN}
    expect(got == want, f"{got} vs {want}")


@check
def get_adjacency():
    partners = sorted({b for (b, rel) in connectivity(SYN) if rel == "downstream" and b != SYN})[:3]
    adj = dv.get_adjacency([SYN], partners)
    for p in partners:
        want = connectivity(SYN).get((p, "downstream"), 0)
        expect(int(adj.loc[str(SYN), str(p)]) == want, f"{SYN}->{p}: {adj}")


@check
def bookmarks():
    dv.setup(server=SERVER, node=CHILD, user="demo")
    before = dv.get_user_bookmarks()
    expect(len(before) == 5, f"{len(before)} bookmarks")
    body = str(body_at([11, 12, 13]))
    dv.add_bookmarks([{"Pos": [11, 12, 13], "Kind": "Note", "Tags": ["user:demo"],
                       "Prop": {"body ID": body, "comment": "added by dvidtools", "custom": "1",
                                "status": "", "time": "", "type": "Other", "user": "demo"}}])
    expect(len(dv.get_user_bookmarks()) == 6, "added")


@check
def rois():
    expect(list(dv.get_available_rois()) == ["roi"], dv.get_available_rois())
    spans = np.asarray(dv.get_roi("roi", form="BLOCKS")).tolist()
    expect(spans == getj(f"/api/node/{CHILD}/roi/roi"), spans)
    mesh = dv.get_roi("roi")
    expect(len(mesh.vertices) == 8, f"{len(mesh.vertices)} vertices")


@check
def get_labels_in_area():
    todo = dv.get_labels_in_area([0, 0, 0], [64, 64, 64])
    expect(todo is not None and len(todo) == 4, todo)


@check
def get_assignment_status():
    s = dv.get_assignment_status([96, 96, 64])
    expect(s is not None, s)
    s = dv.get_assignment_status([95, 95, 63], window=[5, 5, 5])
    expect(s is not None and len(s) >= 1, s)


@check
def get_last_mod():
    target = MERGE["Target"]
    m = dv.get_last_mod(target)
    expect(m["last mod user"] == "demo" and m["last mod app"] == "tessera-demo"
           and m["mutation id"] > 0, m)


@check
def repo_helpers():
    projects = dv.list_projects()
    expect("tessera-demo" in list(projects.Alias), projects)
    expect(dv.get_master_node(ROOT) == CHILD, dv.get_master_node(ROOT))
    expect(list(dv.get_branch_history(CHILD)) == [CHILD, ROOT], dv.get_branch_history(CHILD))


@check
def snap_to_body():
    # A point on another body snaps to a voxel of B.
    far = next(p for p in ([5, 5, 5], [180, 180, 120], [5, 180, 5]) if body_at(p) != B)
    pos = np.asarray(dv.snap_to_body(B, [far])).reshape(-1, 3)[0]
    expect(body_at(pos.tolist()) == B, pos)


@check
def get_body_position():
    # dvidtools 0.6.0 erodes the voxels it fetched and can land just off the body (its own
    # tests mark this function broken); what it must get from the server is the body's
    # coarse blocks and their voxels, so the answer lies within the body's bounding box.
    pos = np.asarray(dv.get_body_position(B))
    v = voxels_of(B)
    expect(pos.shape == (3,) and (pos >= v.min(axis=0)).all() and (pos <= v.max(axis=0)).all(),
           f"{pos} outside {v.min(axis=0)}..{v.max(axis=0)}")


@check
def lost_ids():
    merged = [lab for lab in MERGE["Labels"] if lab != MERGE["Target"]][0]
    found = list(dv.find_lost_ids([merged]))
    expect(found == [ROOT], f"{found} for {merged}")
    updated = dv.update_ids([merged], scale=1)
    rows = [list(r) for r in updated.itertuples(index=False)]
    expect(any(MERGE["Target"] in r for r in rows), f"{rows}")


if __name__ == "__main__":
    dv.setup(server=SERVER, node=CHILD, user="demo")
    run()

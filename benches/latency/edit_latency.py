#!/usr/bin/env python3
"""Edit latency under load: merge, cleave, split and split-supervoxel of bodies of about 1M,
10M and 100M voxels, end to end over HTTP, while reader clients load the server.

Started by benches/latency/run.sh, which starts a release `tessera serve` with a throwaway
store:
    bash benches/latency/run.sh edit [--iterations 20,20,10] [--readers 4]
run by hand as
    python benches/latency/edit_latency.py --url http://127.0.0.1:PORT --server-pid PID

Setup: the real pinky40 512³ labels (../shared/data, decoded as ../shared/perf/common.py does)
go into one labelmap instance (MaxDownresLevel 5, KeepMeshes) with POST raw; bodies of the
target sizes are then grown from its supervoxels by contact area (bodies.py) and made with one
POST merge each. Per iteration, on each body B (one untimed warm-up iteration first):
  merge        POST merge [B, X]: X a small supervoxel body outside, touching B
  cleave       POST cleave/B [X]: X back out, into a new body
  split        POST split/B with the RLE of one of B's supervoxels (about 5 % of B)
  merge back   POST merge [B, N]: the split-off body N back in (B keeps its size)
  split-sv     POST split-supervoxel/V with the RLE of a z-slab of V, one of B's supervoxels
Each edit is timed from sending it until
  ack       its answer arrived;
  server    (not from the client's clock) the server's own time for it, from its access log
            (`tessera::access ... ms=`, the request's entry into the router until the answer
            was ready): what the answer spent outside it is the HTTP round trip and waiting
            for a core, the client's or the server's, which shows where a slow answer went;
  index     GET size/<label> of every body (or supervoxel) it changed equals the voxel count
            the edit implies (counted from the volume here);
  pyramid   a scale-5 read (mapped, and supervoxels=true) shows the edit: a merged or cleaved
            supervoxel's coarse voxels read the new body, exactly; a split body's new label
            or the split piece's new supervoxel ids appear; a split supervoxel's old id is gone;
  current   `seg_meshes_mutid/<body>` holds the edit's MutationID for every changed body (the
            worker writes it after the body's mesh in `seg_meshes`, and a reader sees both at
            once): index, pyramid and mesh are all current, as dvidtools' readers would find
            them. A split-supervoxel leaves its body's voxels and mesh as they were, so it has
            no mesh to wait for;
  synced    GET /api/server/sync?wait= says the KeepMeshes worker applied it: the kept meshes
            are also durable (the worker syncs them before it acknowledges its events).
The checks run in that order after the answer, each polled until it holds (docs/compatibility.md
says index and pyramid commit with the edit, so the first read should see them: counted).
The readers (readers.py) run through all the timed edits. Prints a markdown table and one JSON
line. Exit status: 0 when it ran (missed goals are only reported), 1 when an edit never
became current, 2 when it couldn't run.
"""
import argparse
import json
import math
import os
import platform
import re
import statistics
import struct
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "labelmap"))
import bench  # noqa: E402
import bodies  # noqa: E402
from readers import OPS, Readers  # noqa: E402

SCALE = 5
KINDS = ("merge", "cleave", "split", "merge-back", "split-sv")
LABELS = {
    "merge": "merge (small body in)",
    "cleave": "cleave (it out again)",
    "split": "split (~5 % of the body)",
    "merge-back": "merge (split piece back)",
    "split-sv": "split-supervoxel (a z-slab)",
}
STAGES = ("ack", "server", "index", "pyramid", "current", "synced")
POLL_S = 30          # how long a check may take before the edit counts as never current
SYNC_WAIT_S = 300


def die(msg):
    print(f"\nedit_latency.py: FAILED: {msg}", file=sys.stderr, flush=True)
    sys.exit(2)


bench.die = die


def text(data):
    return bytes(data[:500]).decode("utf-8", "replace").strip()


class Api:
    """The requests this benchmark makes, on one persistent connection."""

    def __init__(self, url, uuid=None):
        self.cli = bench.Client(url)
        self.uuid = uuid

    def call(self, method, path, body=None, ok=(200,)):
        status, data = self.cli.request(method, path, body=body)
        if status not in ok:
            die(f"{method} {path.split('?')[0]}: HTTP {status}: {text(data)}")
        return status, data

    def json(self, method, path, obj=None):
        _, data = self.call(method, path, None if obj is None else json.dumps(obj).encode())
        return json.loads(data) if data.strip() else None

    @property
    def base(self):
        return f"/api/node/{self.uuid}/seg"

    def size(self, label, supervoxels=False):
        q = "?supervoxels=true" if supervoxels else ""
        status, data = self.call("GET", f"{self.base}/size/{label}{q}", ok=(200, 404))
        return json.loads(data)["voxels"] if status == 200 else 0

    def coarse(self, shape, supervoxels):
        """The whole volume at scale 5, [z][y][x] uint64."""
        e = [s >> SCALE for s in shape]
        q = f"?scale={SCALE}" + ("&supervoxels=true" if supervoxels else "")
        _, data = self.call("GET", f"{self.base}/raw/0_1_2/{e[2]}_{e[1]}_{e[0]}/0_0_0{q}")
        return np.frombuffer(data, "<u8").reshape(e)

    def sync(self):
        """Waits for every sync worker; True when they caught up."""
        ans = self.json("GET", f"/api/server/sync?wait={SYNC_WAIT_S}")
        return bool(ans.get("CaughtUp"))

    def mesh_mutid(self, body):
        status, data = self.call("GET", f"/api/node/{self.uuid}/seg_meshes_mutid/key/{body}",
                                 ok=(200, 404))
        return int(data) if status == 200 else None

    def kept_mesh(self, body):
        """The `seg_meshes/<body>.ngmesh` kept by the worker: (vertices, triangles)."""
        _, data = self.call("GET", f"/api/node/{self.uuid}/seg_meshes/key/{body}.ngmesh")
        n = struct.unpack_from("<I", data)[0] if len(data) >= 4 else 0
        rest = len(data) - 4 - 12 * n
        if n == 0 or rest <= 0 or rest % 12:
            die(f"seg_meshes/{body}.ngmesh: {len(data)} bytes aren't an ngmesh with triangles")
        return n, rest // 12


# ---------------------------------------------------------------- setup

def setup(api, vol, shape, targets, setup_wait, mesh_scale):
    """Ingests the volume, grows and merges the bodies; returns their descriptions."""
    res = api.json("POST", "/api/repos", {"alias": "latency"})
    api.uuid = res["root"]
    api.json("POST", f"/api/repo/{api.uuid}/instance",
             {"typename": "labelmap", "dataname": "seg", "MaxDownresLevel": str(SCALE),
              "KeepMeshes": "true", "KeepMeshesScale": str(mesh_scale)})
    # The worker records each body's MutationID here when the instance exists.
    api.json("POST", f"/api/repo/{api.uuid}/instance",
             {"typename": "keyvalue", "dataname": "seg_meshes_mutid"})

    z, y, x = shape
    t0 = time.perf_counter()
    raw = np.ascontiguousarray(vol)
    api.call("POST", f"{api.base}/raw/0_1_2/{x}_{y}_{z}/0_0_0",
             body=memoryview(raw.reshape(-1).view(np.uint8)))
    ingest_s = time.perf_counter() - t0
    print(f"setup: POST raw {x}×{y}×{z} in {ingest_s:.1f} s", flush=True)

    t0 = time.perf_counter()
    v = bodies.Volume(vol)
    print(f"setup: {len(v.sv) - 1} supervoxels, contact graph in {time.perf_counter() - t0:.1f} s",
          flush=True)
    taken, made = set(), []
    for target in sorted(targets, reverse=True):   # the largest first: it needs the most
        fit = [d for d in range(1, len(v.sv)) if d not in taken and v.counts[d] <= target / 5]
        if not fit:
            die(f"no supervoxel left to seed a body of {target:,.0f} voxels")
        seed = max(fit, key=lambda d: v.counts[d])
        ids, size, pieces = bodies.grow(v, target, taken, seed)
        if size < 0.9 * target:
            die(f"could only grow a body of {size:,} voxels towards {target:,.0f}")
        taken |= ids
        label = int(v.sv[seed])
        others = [int(v.sv[d]) for d in ids if d != seed]
        t0 = time.perf_counter()
        api.json("POST", f"{api.base}/merge", [label] + others)
        print(f"setup: body {label}: {len(ids)} supervoxels, {size:,} voxels "
              f"({pieces} connected piece(s)), merged in {time.perf_counter() - t0:.2f} s",
              flush=True)
        made.append({"target": target, "label": label, "voxels": size, "dense": ids,
                     "supervoxels": len(ids), "pieces": pieces})
    t0 = time.perf_counter()
    while not api.sync():   # meshing every body of the volume: minutes on a debug build
        if time.perf_counter() - t0 > setup_wait:
            die(f"the KeepMeshes worker didn't catch up with the setup in {setup_wait} s")
    print(f"setup: meshes kept current after {time.perf_counter() - t0:.1f} s", flush=True)
    for b in made:
        got = api.size(b["label"])
        if got != b["voxels"]:
            die(f"body {b['label']}: size {got}, expected {b['voxels']}")
    return v, made, taken, ingest_s


def choose_pieces(v, body, taken, used, visible, iterations):
    """Merge pieces (outside, touching, small), split pieces (~5 % of the body) and
    split-supervoxel slabs, each visible at scale 5 so the coarse read can show the edit."""
    s, seed = body["voxels"], v.dense_of[body["label"]]
    vis = lambda d: visible.get(int(v.sv[d]), 0)  # noqa: E731
    near = lambda d: abs(math.log(v.counts[d] / (s / 20)))  # noqa: E731
    touch = lambda d: sum(v.contact[d].get(b, 0) for b in body["dense"])  # noqa: E731
    small = max(2000, min(s // 10, 200_000))
    outside = [d for d in range(1, len(v.sv))
               if d not in taken and d not in used and vis(d) and 1000 <= v.counts[d] <= small]
    outside.sort(key=lambda d: (-touch(d), -v.counts[d]))
    merge = outside[:3]
    inside = sorted((d for d in body["dense"] if d != seed and vis(d) >= 2 and d not in used),
                    key=near)
    split = inside[:min(3, max(1, len(inside) // 2))]   # leave some for split-supervoxel
    per = math.ceil(iterations / 3)
    svsplit = []
    for d in sorted((d for d in body["dense"] if d != seed and vis(d) and d not in split
                     and d not in used and v.counts[d] >= 5000), key=near):
        sl = bodies.slabs(v, d, per)
        if sl:
            svsplit.append((d, sl))
        if len(svsplit) == 3:
            break
    if not merge or not split or not svsplit:
        die(f"body {body['label']}: too few pieces visible at scale {SCALE} "
            f"(merge {len(merge)}, split {len(split)}, split-supervoxel {len(svsplit)})")
    used.update(merge + split + [d for d, _ in svsplit])
    return merge, split, svsplit


# ---------------------------------------------------------------- one timed edit

class Edits:
    def __init__(self, api, shape, log_path=None, pause=0.0):
        self.api, self.shape, self.log_path, self.pause = api, shape, log_path, pause
        self.first_read = {"index": [0, 0], "pyramid": [0, 0], "mesh": [0, 0]}   # current at first read, all
        self.never = []

    def poll(self, stage, what, check, t0):
        """Polls `check` (None when it holds, else what's wrong) until it holds; returns the
        seconds since t0."""
        tries = 0
        while True:
            wrong = check()
            tries += 1
            now = time.perf_counter()
            if wrong is None:
                self.first_read[stage][0] += tries == 1
                self.first_read[stage][1] += 1
                return now - t0
            if now - t0 > POLL_S:
                self.never.append(f"{what}: {stage} not current after {POLL_S} s: {wrong}")
                self.first_read[stage][1] += 1
                return math.nan
            time.sleep(0.001)

    def run(self, what, path, payload, expect):
        """One timed edit. `expect(answer, M0, S0)` gives the sizes the index must show
        ([(label, supervoxels, voxels)]), a check of the coarse reads (M1, S1) -> None or what
        is wrong, and the bodies whose kept meshes must be current. Returns (answer, times)."""
        api = self.api
        time.sleep(self.pause)
        m0, s0 = api.coarse(self.shape, False), api.coarse(self.shape, True)
        log_at = os.path.getsize(self.log_path) if self.log_path else None
        t0 = time.perf_counter()
        status, data = api.cli.request("POST", path, body=payload)
        ack = time.perf_counter() - t0
        if status != 200:
            die(f"{what}: POST {path}: HTTP {status}: {text(data)}")
        ans = json.loads(data)
        sizes, coarse_ok, meshes = expect(ans, m0, s0)

        def index():
            got = [api.size(lb, sv) for lb, sv, _ in sizes]
            want = [n for _, _, n in sizes]
            return None if got == want else f"sizes {got}, expected {want}"

        def pyramid():
            return coarse_ok(api.coarse(self.shape, False), api.coarse(self.shape, True))

        t = {"ack": ack}
        t["index"] = self.poll("index", what, index, t0)
        t["pyramid"] = self.poll("pyramid", what, pyramid, t0)
        mutid = ans["MutationID"]
        t["current"] = self.poll(
            "mesh", what, lambda: None if all(api.mesh_mutid(b) == mutid for b in meshes)
            else f"seg_meshes_mutid of {meshes} isn't {mutid}", t0)
        caught = api.sync()
        t["synced"] = time.perf_counter() - t0
        t["server"] = self.server_seconds(log_at, path)
        if not caught:
            self.never.append(f"{what}: the sync workers did not catch up in {SYNC_WAIT_S} s")
        for b in meshes:
            api.kept_mesh(b)
        return ans, {k: 1e3 * s for k, s in t.items()}

    def server_seconds(self, log_at, path):
        """The server's time for the first POST of `path` logged after offset `log_at` of its
        log (the access line is written once the answer is ready, long before the polls end);
        NaN without a log or the line."""
        if log_at is None:
            return math.nan
        with open(self.log_path, "rb") as f:
            f.seek(log_at)
            for line in f.read().decode(errors="replace").splitlines():
                if "tessera::access" in line and f" method=POST uri={path} " in line:
                    m = re.search(r" ms=([0-9.]+)", line)
                    if m:
                        return float(m.group(1)) / 1e3
        return math.nan


def same(m1, want):
    bad = int((m1 != want).sum())
    return None if bad == 0 else f"{bad} coarse voxels differ from the expected ones"


def body_iterations(edits, v, body, pieces, iterations, warmup, lat):
    """Runs warm-up + timed iterations on one body, appending ms to lat[kind][stage]."""
    api, B = edits.api, body["label"]
    merge, split, svsplit = pieces
    size = body["voxels"]
    xbody = {d: int(v.sv[d]) for d in merge}             # current body of each merge piece
    vcur = {d: (int(v.sv[d]), v.size(d), 0) for d, _ in svsplit}   # (sv id, voxels, next slab)

    for it in range(warmup + iterations):
        rec = {}
        # merge X in
        d = merge[it % len(merge)]
        X, nx = xbody[d], v.size(d)

        def exp_merge(ans, m0, s0, X=X, n=nx):
            if not (m0 == X).any():
                die(f"body {X} isn't visible at scale {SCALE} before the merge")
            return ([(B, False, size + n), (X, False, 0)],
                    lambda m1, s1: same(m1, np.where(m0 == X, B, m0)), [B])
        _, rec["merge"] = edits.run(f"merge [{B}, {X}]", f"{api.base}/merge",
                                    json.dumps([B, X]).encode(), exp_merge)

        # cleave it out
        xs = int(v.sv[d])

        def exp_cleave(ans, m0, s0, n=nx):
            c = ans["CleavedLabel"]
            return ([(c, False, n), (B, False, size)],
                    lambda m1, s1: same(m1, np.where(s0 == xs, c, m0)), [B, c])
        ans, rec["cleave"] = edits.run(f"cleave {B} [{xs}]", f"{api.base}/cleave/{B}",
                                       json.dumps([xs]).encode(), exp_cleave)
        xbody[d] = ans["CleavedLabel"]

        # split a supervoxel's voxels off, then merge them back
        d = split[it % len(split)]
        n = v.size(d)

        def exp_split(ans, m0, s0, n=n):
            new = ans["label"]
            return ([(new, False, n), (B, False, size - n)],
                    # The piece's supervoxels get new ids: where the coarse level showed them
                    # it must change (mode ties may hide the new body itself).
                    lambda m1, s1: None if (m1 == new).any() or (s1 != s0).any()
                    else f"scale {SCALE} shows neither body {new} nor new supervoxels",
                    [B, new])
        ans, rec["split"] = edits.run(f"split {B} ({n} voxels)", f"{api.base}/split/{B}",
                                      bodies.runs_of(*v.mask(d)), exp_split)
        N = ans["label"]

        def exp_back(ans, m0, s0, N=N, n=n):
            return ([(B, False, size), (N, False, 0)],
                    lambda m1, s1: same(m1, np.where(m0 == N, B, m0)), [B])
        _, rec["merge-back"] = edits.run(f"merge [{B}, {N}]", f"{api.base}/merge",
                                         json.dumps([B, N]).encode(), exp_back)

        # split a z-slab off a supervoxel
        d, slabs = svsplit[it % len(svsplit)]
        sv, nv, j = vcur[d]
        ns, rle = slabs[j]

        def exp_svsplit(ans, m0, s0, sv=sv, nv=nv, ns=ns):
            a, r = ans["SplitSupervoxel"], ans["RemainSupervoxel"]
            # The body keeps its voxels, so its kept mesh stays as it was: no mesh to wait for.
            return ([(a, True, ns), (r, True, nv - ns), (B, False, size)],
                    lambda m1, s1: None if not (s1 == sv).any()
                    else f"supervoxel {sv} still at scale {SCALE}", [])
        ans, rec["split-sv"] = edits.run(f"split-supervoxel {sv} ({ns} voxels)",
                                         f"{api.base}/split-supervoxel/{sv}", rle, exp_svsplit)
        vcur[d] = (ans["RemainSupervoxel"], nv - ns, j + 1)

        tag = "warm-up" if it < warmup else f"{it - warmup + 1:7d}"
        print(f"  {tag}: " + "  ".join(f"{k} {r['ack']:.1f}/{r['current']:.1f}/{r['synced']:.1f}"
                                       for k, r in rec.items()), flush=True)
        if it >= warmup:
            for k, r in rec.items():
                for st, ms in r.items():
                    lat[k][st].append(ms)
    return {"merge_voxels": [v.size(d) for d in merge], "split_voxels": [v.size(d) for d in split],
            "split_sv_voxels": [sl[0][0] for _, sl in svsplit]}


# ---------------------------------------------------------------- report

def summary(ms):
    """p50 (median) and p99 by nearest rank (with fewer than 100 edits, p99 is the max)."""
    s = sorted(x for x in ms if not math.isnan(x))
    if not s:
        return None
    p50 = statistics.median(s)
    p99 = s[math.ceil(0.99 * len(s)) - 1]
    return {"p50": round(p50, 2), "p99": round(p99, 2), "ratio": round(p99 / p50, 2) if p50 else None,
            "max": round(s[-1], 2), "n": len(s), "missing": len(ms) - len(s)}


def goal(kind, target, s):
    """The issue's goals on one stage's figures `s`: merge p50 < 10 ms, split p50 < 100 ms at
    10M voxels, p99 < 3× p50. The report judges both the answer and "current" (the kept mesh
    included), since the issue names the edit and what follows it."""
    out = []
    if kind in ("merge", "merge-back"):
        out.append(("p50 < 10 ms", s["p50"] < 10))
    if kind == "split" and target == 10e6:
        out.append(("p50 < 100 ms", s["p50"] < 100))
    out.append(("p99 < 3× p50", s["p99"] < 3 * s["p50"]))
    return ", ".join(f"{g} {'ok' if ok else '**miss**'}" for g, ok in out)


def report(res):
    print("\n| edit | body voxels | n | ack p50 | ack p99 | p99/p50 | server p50 | server p99 |"
          " current p50 | current p99 | p99/p50 | synced p50 | goal (ack) | goal (current) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for b in res["bodies"]:
        for kind in KINDS:
            a, sv, c, y = (b["ms"][kind][st] for st in ("ack", "server", "current", "synced"))
            if a is None or c is None:
                continue
            srv = f"{sv['p50']:.1f} | {sv['p99']:.1f}" if sv else "– | –"
            print(f"| {LABELS[kind]} | {b['voxels'] / 1e6:.1f}M | {a['n']} | {a['p50']:.1f} | "
                  f"{a['p99']:.1f} | {a['ratio']:.1f} | {srv} | {c['p50']:.1f} | {c['p99']:.1f} | "
                  f"{c['ratio']:.1f} | {y['p50']:.1f} | {goal(kind, b['target'], a)} | "
                  f"{goal(kind, b['target'], c)} |")
    r = res["readers"]
    if r["clients"]:
        print(f"\nreaders: {r['clients']} clients, {r['requests_s']:.0f} requests/s over "
              f"{r['seconds']:.0f} s, errors {r['errors']}; " + ", ".join(
                  f"{op} p50 {r['ms'][op]['p50']:.1f} ms p99 {r['ms'][op]['p99']:.1f} ms"
                  for op in OPS if r["ms"][op]))
    f = res["first_read_current"]
    print(f"index current at the first read after the answer: {f['index'][0]}/{f['index'][1]}; "
          f"pyramid: {f['pyramid'][0]}/{f['pyramid'][1]}; never current: {len(res['never'])}")
    for line in res["never"][:10]:
        print(f"  {line}")
    print("\nJSON:")
    print(json.dumps(res), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--url", required=True, help="server base URL, e.g. http://127.0.0.1:8000")
    ap.add_argument("--server-pid", type=int, help="server pid, for its peak RSS from /proc")
    ap.add_argument("--server-log", help="file holding the server's stderr (its path is reported)")
    ap.add_argument("--data-dir", default=os.environ.get("PERF_DATA", "/tmp/perf/data"))
    ap.add_argument("--crop", type=int, default=512,
                    help="use the first CROP³ voxels (a multiple of 64; smaller for a debug server)")
    ap.add_argument("--sizes", default="1e6,10e6,100e6", help="body sizes in voxels")
    ap.add_argument("--iterations", default="20,20,10",
                    help="timed iterations per body (one number, or one per size)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed iterations per body first")
    ap.add_argument("--readers", type=int, default=4, help="reader clients during the edits")
    ap.add_argument("--pause", type=float, default=0,
                    help="seconds between one edit's sync and the next edit (default 0: at once)")
    ap.add_argument("--mesh-scale", type=int, default=0,
                    help="the instance's KeepMeshesScale: the scale kept meshes are made at")
    ap.add_argument("--setup-wait", type=float, default=1800,
                    help="seconds the KeepMeshes worker may take to mesh the ingested volume")
    args = ap.parse_args()

    targets = [float(s) for s in args.sizes.split(",")]
    iters = [int(s) for s in args.iterations.split(",")]
    iters = iters * len(targets) if len(iters) == 1 else iters
    if len(iters) != len(targets) or min(iters) < 1 or args.crop % 64:
        die("--iterations needs one count or one per size (each ≥ 1); --crop a multiple of 64")

    t0 = time.perf_counter()
    vol = bench.load_volume("real", args.data_dir)[:args.crop, :args.crop, :args.crop]
    vol = np.ascontiguousarray(vol)
    print(f"data: real {vol.shape}, loaded in {time.perf_counter() - t0:.1f} s", flush=True)

    api = Api(args.url)
    server = bench.Server(args.server_pid, args.server_log)
    res = {"bench": "edit-latency", "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
           "host": platform.node(), "cpus": os.cpu_count(),
           "loadavg_before": float(open("/proc/loadavg").read().split()[0]),
           "volume": list(vol.shape[::-1]), "max_downres_level": SCALE,
           "kept_mesh_scale": args.mesh_scale,
           "readers": {"clients": args.readers}, "warmup": args.warmup}
    v, made, taken, res["setup_ingest_s"] = setup(api, vol, vol.shape, targets, args.setup_wait,
                                                   args.mesh_scale)
    del vol
    visible = dict(zip(*np.unique(api.coarse(v.shape, True), return_counts=True)))
    visible = {int(k): int(n) for k, n in visible.items()}

    edits = Edits(api, v.shape, args.server_log, args.pause)
    readers = Readers(args.readers, args.url, api.base, v.shape)
    used = set()
    plans = [(b, choose_pieces(v, b, taken, used, visible, args.warmup + n), n)
             for b, n in sorted(zip(made, iters), key=lambda p: p[0]["target"])]
    mem = {"setup": server.peak_mib()}
    reset = server.reset_peak()
    print(f"\n{args.readers} readers running; per iteration, ack/current/synced ms:", flush=True)
    readers.start()
    res["bodies"] = []
    for b, pieces, n in plans:
        print(f"body {b['label']} ({b['voxels']:,} voxels), {args.warmup} warm-up + {n}:",
              flush=True)
        lat = {k: {st: [] for st in STAGES} for k in KINDS}
        sizes = body_iterations(edits, v, b, pieces, n, args.warmup, lat)
        res["bodies"].append({
            "target": b["target"], "label": b["label"], "voxels": b["voxels"],
            "supervoxels": b["supervoxels"], "connected_pieces": b["pieces"], "pieces": sizes,
            "ms": {k: {st: summary(x) for st, x in lat[k].items()} for k in KINDS}})
    rl, errors, secs = readers.stop()
    mem["edits" if reset else "overall"] = server.peak_mib()
    res["readers"].update({
        "seconds": round(secs, 1), "errors": errors,
        "requests_s": round(sum(len(x) for x in rl.values()) / secs, 1) if secs else 0,
        "ms": {op: summary(x) for op, x in rl.items()}})
    res["first_read_current"] = edits.first_read
    res["never"] = edits.never
    res["peak_rss_mib"] = mem
    res["loadavg_after"] = float(open("/proc/loadavg").read().split()[0])
    api.cli.close()
    report(res)
    if edits.never:
        sys.exit(1)


if __name__ == "__main__":
    main()

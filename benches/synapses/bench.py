#!/usr/bin/env python3
"""Synapse benchmark of the labelmap → annotation → labelsz chain against a running
`tessera serve`.

Started by benches/synapses/run.sh, which builds and starts the server; run by hand as
    python bench.py --url http://127.0.0.1:PORT --server-pid PID --server-log STDERR_FILE

Setup: a labelmap "seg" tiled with supervoxel cubes, one body each (--layout sparse: 4096×4096×512
voxels of 64³ cubes, 32,768 bodies; dense: 512×512×128 of 8³ cubes, 65,536 bodies), an
annotation "syn" synced to it and a labelsz "sz" synced to "syn".
Measures, over a persistent stdlib HTTP connection from this (separate) process:
  1. ingest of `--elements` (default 1,000,000) synapse elements (PreSyn/PostSyn pairs 3 voxels
     apart in x, each with its partner relationship) by POST elements in batches of
     `--batch`, until labelsz has counted them -> elements/s and the server's peak RSS (VmHWM)
     before and after;
  2. labelsz GET top/100/PreSyn and a threshold page -> latency;
  3. annotation GET label/<body> of a ~10k-synapse body -> latency;
  4. POST merge of two ~10k-synapse bodies (each built in the setup by merging 8³ cubes) followed
     by the labelsz count of the merged body, which answers only once annotation and labelsz
     have applied the merge -> latency of the merge alone and of merge + exact count.
Every count read is checked against the counts this script computes from the positions it
placed. Prints a markdown table and one JSON line. Exit status: 0 when every check passed
(missed bars are only reported), 1 on a wrong count, 2 when the benchmark couldn't run.
"""
import argparse
import gzip
import json
import os
import platform
import statistics
import struct
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "labelmap"))
from bench import Client, Server  # noqa: E402  (persistent connection, /proc reader)

BIG = 10_000                    # synapses (AllSyn) per big body
BARS = {"top": 50, "merge_count": 100}  # milliseconds, the bars

# Layouts: (volume size x, y, z; supervoxel cube edge). "sparse" has ~30 elements per 64³
# annotation block at 1M elements, closer to real tissue (hemibrain: under one per block on
# average); "dense" packs them ~250× tighter, which shows how edits scale with block density.
LAYOUTS = {"sparse": ((4096, 4096, 512), 64), "dense": ((512, 512, 128), 8)}
SIZE, CUBE = LAYOUTS["sparse"]


def die(msg):
    print(f"\nsynapses/bench.py: FAILED: {msg}", file=sys.stderr, flush=True)
    sys.exit(2)


def grid():
    return tuple(s // CUBE for s in SIZE)


def sv_of(x, y, z):
    """Supervoxel (= initial body) of voxel (x, y, z); numpy arrays work too."""
    nx, ny, _ = grid()
    return 1 + x // CUBE + nx * (y // CUBE) + nx * ny * (z // CUBE)


def write_labelmap(cli, node):
    """The supervoxel cubes: POST raw in slabs for small cubes; POST blocks of solid 64³ blocks
    (DVID's labels.Block with one label, gzipped) when a cube is a block."""
    if CUBE != 64:
        for z0 in range(0, SIZE[2], 64):
            z = np.arange(z0, z0 + 64, dtype="<u8")[:, None, None]
            y = np.arange(SIZE[1], dtype="<u8")[None, :, None]
            x = np.arange(SIZE[0], dtype="<u8")[None, None, :]
            vol = sv_of(x, y, z).astype("<u8")
            timed(cli, "POST", f"{node}/seg/raw/0_1_2/{SIZE[0]}_{SIZE[1]}_64/0_0_{z0}",
                  vol.tobytes())
        return
    nx, ny, nz = grid()
    for bz in range(nz):
        records = []
        for by in range(ny):
            for bx in range(nx):
                label = sv_of(bx * 64, by * 64, bz * 64)
                block = gzip.compress(struct.pack("<IIIIQ", 8, 8, 8, 1, label), 1)
                records.append(struct.pack("<iiii", bx, by, bz, len(block)) + block)
        timed(cli, "POST", f"{node}/seg/blocks", b"".join(records))


def positions(n_pairs, seed):
    """Distinct PreSyn positions whose PostSyn partner (x + 3) is distinct from every other
    point: PreSyn x is ≡ 0..2 (mod 6), so a partner never lands on another PreSyn."""
    rng = np.random.default_rng(seed)
    need, got = n_pairs, np.empty((0, 3), dtype=np.int64)
    while len(got) < n_pairs:
        k = int(need * 1.2) + 1000
        x = rng.integers(0, (SIZE[0] - 3) // 6, k) * 6 + rng.integers(0, 3, k)
        p = np.stack([x, rng.integers(0, SIZE[1], k), rng.integers(0, SIZE[2], k)], axis=1)
        got = np.unique(np.concatenate([got, p]), axis=0)
        need = n_pairs - len(got)
    rng.shuffle(got)
    return got[:n_pairs]


def elements_json(pre):
    """The POST elements body for PreSyn points `pre` and their PostSyn partners."""
    out = []
    for x, y, z in pre.tolist():
        out.append({"Pos": [x, y, z], "Kind": "PreSyn", "Tags": [], "Prop": {},
                    "Rels": [{"Rel": "PreSynTo", "To": [x + 3, y, z]}]})
        out.append({"Pos": [x + 3, y, z], "Kind": "PostSyn", "Tags": [], "Prop": {},
                    "Rels": [{"Rel": "PostSynTo", "To": [x, y, z]}]})
    return json.dumps(out).encode()


def timed(cli, method, path, body=None, what=None):
    t0 = time.perf_counter()
    status, data = cli.request(method, path, body=body)
    ms = (time.perf_counter() - t0) * 1e3
    if status != 200:
        die(f"{what or method + ' ' + path}: HTTP {status}: {data[:300]!r}")
    return ms, data


def wait_synced(cli):
    """Until every sync subscriber has applied everything acknowledged."""
    while True:
        _, data = timed(cli, "GET", "/api/server/sync?wait=600")
        if json.loads(data)["CaughtUp"]:
            return


def med(xs):
    return round(statistics.median(xs), 2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--server-pid", type=int)
    ap.add_argument("--server-log")
    ap.add_argument("--elements", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=50_000, help="elements per POST elements")
    ap.add_argument("--repeats", type=int, default=7, help="timed merges (2 big bodies each)")
    ap.add_argument("--reads", type=int, default=25, help="timed reads of each kind")
    ap.add_argument("--layout", choices=sorted(LAYOUTS), default="sparse")
    args = ap.parse_args()
    global SIZE, CUBE
    SIZE, CUBE = LAYOUTS[args.layout]
    cli = Client(args.url)
    srv = Server(args.server_pid, args.server_log)
    res = {"machine": f"{platform.machine()}, {os.cpu_count()} cpus", "elements": args.elements,
           "layout": args.layout}

    status, data = cli.json("POST", "/api/repos", {"alias": "synapses"})
    if status != 200:
        die(f"POST /api/repos: {status} {data[:200]!r}")
    uuid = json.loads(data)["root"]
    node = f"/api/node/{uuid}"
    for typ, name, extra in (("labelmap", "seg", {"BlockSize": "64,64,64"}),
                             ("annotation", "syn", {}), ("labelsz", "sz", {})):
        body = {"typename": typ, "dataname": name, **extra}
        status, data = cli.json("POST", f"/api/repo/{uuid}/instance", body)
        if status != 200:
            die(f"create {typ} {name}: {status} {data[:200]!r}")
    for name, source in (("syn", "seg"), ("sz", "syn")):
        timed(cli, "POST", f"{node}/{name}/sync", json.dumps({"sync": source}).encode())

    print(f"writing the labelmap ({args.layout}: {SIZE} voxels, {CUBE}³ supervoxels) ...",
          flush=True)
    write_labelmap(cli, node)
    # The labelmap's ingest peak is not the annotation's: measure the element ingest apart.
    res["rss_labelmap_peak_mib"] = srv.peak_mib()
    if not srv.reset_peak():
        print("warning: can't reset VmHWM; peaks include the labelmap ingest", flush=True)
    res["rss_before_mib"] = srv.rss_mib()

    n_pairs = args.elements // 2
    pre = positions(n_pairs, 7)
    post = pre + np.array([3, 0, 0])
    pre_sv = sv_of(pre[:, 0], pre[:, 1], pre[:, 2])
    post_sv = sv_of(post[:, 0], post[:, 1], post[:, 2])
    n_sv = int(np.prod(grid())) + 1
    pre_count = np.bincount(pre_sv, minlength=n_sv)
    post_count = np.bincount(post_sv, minlength=n_sv)

    print(f"posting {2 * n_pairs} elements ...", flush=True)
    per = args.batch // 2
    bodies = [elements_json(pre[i:i + per]) for i in range(0, n_pairs, per)]
    t0 = time.perf_counter()
    for b in bodies:
        timed(cli, "POST", f"{node}/syn/elements", b, "POST elements")
    t_post = time.perf_counter() - t0
    wait_synced(cli)
    t_all = time.perf_counter() - t0
    del bodies
    res["ingest_s"] = round(t_post, 1)
    res["ingest_counted_s"] = round(t_all, 1)
    res["ingest_elements_per_s"] = round(2 * n_pairs / t_all)
    res["rss_after_ingest_mib"] = srv.peak_mib()

    # Correctness: top/100/PreSyn equals the ranking of the placed points.
    want = sorted(((int(pre_count[s]), s) for s in range(1, n_sv) if pre_count[s]),
                  key=lambda c: (-c[0], c[1]))[:100]
    _, data = timed(cli, "GET", f"{node}/sz/top/100/PreSyn")
    got = [(c["Size"], c["Label"]) for c in json.loads(data)]
    if got != want:
        print(f"wrong top/100/PreSyn: got {got[:5]}…, want {want[:5]}…", file=sys.stderr)
        sys.exit(1)
    tops = [timed(cli, "GET", f"{node}/sz/top/100/PreSyn")[0] for _ in range(args.reads)]
    thr = [timed(cli, "GET", f"{node}/sz/threshold/10/AllSyn?offset=1000&n=1000")[0]
           for _ in range(args.reads)]
    res["top100_ms"] = med(tops)
    res["threshold_page_ms"] = med(thr)

    # Big bodies: runs of consecutive supervoxels holding ≥ BIG synapses, merged in the setup.
    allsyn = pre_count + post_count
    groups, cur, total = [], [], 0
    for s in range(1, n_sv):
        cur.append(s)
        total += int(allsyn[s])
        if total >= BIG:
            groups.append((cur, total))
            cur, total = [], 0
            if len(groups) == 2 * args.repeats + 1:
                break
    if len(groups) < 2 * args.repeats + 1:
        die("too few elements for the big bodies; raise --elements")
    print(f"building {len(groups)} bodies of ~{BIG} synapses ...", flush=True)
    for svs, _ in groups:
        timed(cli, "POST", f"{node}/seg/merge", json.dumps(svs).encode())
    wait_synced(cli)

    body, n = groups[-1][0][0], groups[-1][1]
    label_ms = []
    for _ in range(args.reads):
        ms, data = timed(cli, "GET", f"{node}/syn/label/{body}")
        label_ms.append(ms)
    if len(json.loads(data)) != n:
        print(f"label/{body} has {len(json.loads(data))} points, want {n}", file=sys.stderr)
        sys.exit(1)
    res["label_read_ms"] = med(label_ms)
    res["label_read_points"] = n

    print("timing merges ...", flush=True)
    merge_ms, chain_ms = [], []
    for i in range(args.repeats):
        (a, na), (b, nb) = groups[2 * i], groups[2 * i + 1]
        t0 = time.perf_counter()
        timed(cli, "POST", f"{node}/seg/merge", json.dumps([a[0], b[0]]).encode())
        t1 = time.perf_counter()
        _, data = timed(cli, "GET", f"{node}/sz/count/{a[0]}/AllSyn")
        t2 = time.perf_counter()
        got = json.loads(data)["AllSyn"]
        if got != na + nb:
            print(f"count/{a[0]}/AllSyn after the merge: {got}, want {na + nb}", file=sys.stderr)
            sys.exit(1)
        merge_ms.append((t1 - t0) * 1e3)
        chain_ms.append((t2 - t0) * 1e3)
    res["merge_ms"] = med(merge_ms)
    res["merge_count_ms"] = med(chain_ms)
    res["merge_count_runs"] = [round(x, 1) for x in chain_ms]
    res["rss_peak_mib"] = srv.peak_mib()

    bar = lambda v, b: f"< {b} ms " + ("ok" if v < b else "MISSED")  # noqa: E731
    print()
    print("| measure | median | n | bar |")
    print("|---|---|---|---|")
    print(f"| ingest of {args.elements:,} elements ({args.batch:,} per POST) until counted "
          f"| {res['ingest_counted_s']} s ({res['ingest_elements_per_s']:,}/s) | 1 | |")
    print(f"| labelsz `top/100/PreSyn` | {res['top100_ms']} ms | {args.reads} "
          f"| {bar(res['top100_ms'], BARS['top'])} |")
    print(f"| labelsz `threshold/10/AllSyn?offset=1000&n=1000` | {res['threshold_page_ms']} ms "
          f"| {args.reads} | |")
    print(f"| annotation `label/<body>` of {n:,} points | {res['label_read_ms']} ms "
          f"| {args.reads} | |")
    print(f"| `POST merge` of two ~10k-synapse bodies | {res['merge_ms']} ms | {args.repeats} | |")
    print(f"| merge + labelsz count of the merged body (exact) | {res['merge_count_ms']} ms "
          f"| {args.repeats} | {bar(res['merge_count_ms'], BARS['merge_count'])} |")
    print(f"| server RSS: labelmap ingest peak / before the elements / peak during element "
          f"ingest / peak to the end | {res['rss_labelmap_peak_mib']} / {res['rss_before_mib']} / "
          f"{res['rss_after_ingest_mib']} / {res['rss_peak_mib']} MiB | | |")
    print()
    print(json.dumps(res))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""HTTP ingest of the real pinky40 512³ labels into fresh labelmap instances (MaxDownresLevel
5, label index on), as POST raw and as POST blocks, in Mvox/s.

Started by benches/latency/run.sh (bash benches/latency/run.sh ingest [--repeats 3]); run by
hand as
    python benches/latency/ingest.py --url http://127.0.0.1:PORT --server-pid PID

  raw     POST raw/0_1_2/512_512_512/0_0_0 of the uint64 volume (1 GiB) in one request;
  blocks  POST blocks?downres=true of the volume's 512 blocks as DVID's block records
          (spec §5.3: gzip of the labels.Block encoding), which is how a volume is copied
          between DVID servers. The records are read once, untimed, with GET
          blocks/512_512_512/0_0_0?compression=blocks&supervoxels=true from the first raw
          instance.
Each is timed until the answer: Tessera commits a write's pyramid and label index with it
(docs/compatibility.md), and this script checks that they are complete when the answer
arrives (untimed): GET size/<label> of the 5 largest and 5 random labels equals the count in
the volume, and the instance's scale-5 level equals the raw instance's. Prints a markdown
table and one JSON line.
"""
import argparse
import json
import os
import platform
import struct
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "labelmap"))
import bench  # noqa: E402
from bench import N, Client, Server, expect_ok, stats  # noqa: E402

SCALE = 5


def die(msg):
    print(f"\ningest.py: FAILED: {msg}", file=sys.stderr, flush=True)
    sys.exit(2)


bench.die = die


def instance(cli, uuid, name):
    status, data = cli.json("POST", f"/api/repo/{uuid}/instance",
                            {"typename": "labelmap", "dataname": name,
                             "MaxDownresLevel": str(SCALE)})
    expect_ok(status, data, f"creating labelmap {name}")


def coarse(cli, uuid, name):
    e = N >> SCALE
    status, data = cli.request(
        "GET", f"/api/node/{uuid}/{name}/raw/0_1_2/{e}_{e}_{e}/0_0_0?scale={SCALE}&supervoxels=true")
    expect_ok(status, data, f"GET {name} scale {SCALE}")
    return np.frombuffer(data, "<u8")


def check(cli, uuid, name, sample, reference):
    """The index and pyramid are complete: sizes of the sampled labels, the scale-5 level."""
    for label, count in sample:
        status, data = cli.request("GET", f"/api/node/{uuid}/{name}/size/{label}")
        got = json.loads(data)["voxels"] if status == 200 else f"HTTP {status}"
        if got != count:
            die(f"{name}: size/{label} is {got} right after the answer, expected {count}")
    level = coarse(cli, uuid, name)
    if reference is not None and not np.array_equal(level, reference):
        die(f"{name}: its scale-{SCALE} level differs from the raw instance's")
    if not level.any():
        die(f"{name}: its scale-{SCALE} level is empty")
    return level


def records(data):
    """Block coordinates of a §5.3 record stream."""
    out, pos = [], 0
    while pos + 16 <= len(data):
        x, y, z, n = struct.unpack_from("<iiii", data, pos)
        out.append((x, y, z))
        pos += 16 + n
    return out if pos == len(data) else None


def timed_post(cli, server, path, body, what):
    t0 = time.perf_counter()
    status, data = cli.request("POST", path, body=body)
    dt = time.perf_counter() - t0
    expect_ok(status, data, f"POST {path}")
    rate = N ** 3 / dt / 1e6
    print(f"  {what}: {dt:7.3f} s  {rate:7.1f} Mvox/s   server peak RSS {server.peak_mib()} MiB",
          flush=True)
    return rate


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--url", required=True)
    ap.add_argument("--server-pid", type=int)
    ap.add_argument("--server-log")
    ap.add_argument("--data-dir", default=os.environ.get("PERF_DATA", "/tmp/perf/data"))
    ap.add_argument("--repeats", type=int, default=3, help="fresh instances per format")
    args = ap.parse_args()

    vol = bench.load_volume("real", args.data_dir)
    labels, counts = np.unique(vol, return_counts=True)
    keep = labels != 0
    labels, counts = labels[keep], counts[keep]
    rng = np.random.default_rng(22)
    pick = list(np.argsort(-counts)[:5]) + list(rng.choice(len(labels), 5, replace=False))
    sample = [(int(labels[i]), int(counts[i])) for i in pick]
    body = memoryview(vol.reshape(-1).view(np.uint8))

    cli = Client(args.url)
    server = Server(args.server_pid, args.server_log)
    status, data = cli.json("POST", "/api/repos", {"alias": "ingest"})
    expect_ok(status, data, "POST /api/repos")
    uuid = json.loads(data)["root"]
    res = {"bench": "labelmap-ingest", "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
           "host": platform.node(), "cpus": os.cpu_count(), "data": "real pinky40 512³",
           "voxels": N ** 3, "max_downres_level": SCALE, "repeats": args.repeats,
           "loadavg_before": float(open("/proc/loadavg").read().split()[0])}

    print(f"POST raw 512³ into {args.repeats} fresh instances:", flush=True)
    raw, reference = [], None
    for i in range(args.repeats):
        name = f"raw{i}"
        instance(cli, uuid, name)
        raw.append(timed_post(cli, server, f"/api/node/{uuid}/{name}/raw/0_1_2/{N}_{N}_{N}/0_0_0",
                              body, name))
        reference = check(cli, uuid, name, sample, reference)

    t0 = time.perf_counter()
    status, blocks = cli.request(
        "GET", f"/api/node/{uuid}/raw0/blocks/{N}_{N}_{N}/0_0_0?compression=blocks&supervoxels=true")
    expect_ok(status, blocks, "GET blocks")
    got = records(blocks)
    if got is None or len(got) != (N // 64) ** 3:
        die(f"GET blocks: {len(got) if got else 'unparseable'} records, expected {(N // 64) ** 3}")
    print(f"GET blocks (untimed): {len(got)} records, {len(blocks) / 2**20:.1f} MiB, "
          f"{time.perf_counter() - t0:.1f} s", flush=True)

    print(f"POST blocks?downres=true into {args.repeats} fresh instances:", flush=True)
    blk = []
    for i in range(args.repeats):
        name = f"blocks{i}"
        instance(cli, uuid, name)
        blk.append(timed_post(cli, server, f"/api/node/{uuid}/{name}/blocks?downres=true",
                              blocks, name))
        check(cli, uuid, name, sample, reference)

    res["raw_mvox_s"] = stats(raw)
    res["blocks_mvox_s"] = stats(blk)
    res["blocks_mib"] = round(len(blocks) / 2**20, 1)
    res["peak_rss_mib"] = server.peak_mib()
    res["loadavg_after"] = float(open("/proc/loadavg").read().split()[0])
    cli.close()
    print("\n| ingest of 512³ real labels (pyramid 5 levels + label index) | median Mvox/s | "
          "min | max | n |")
    print("|---|---|---|---|---|")
    for key, label in (("raw_mvox_s", "POST raw (1 GiB uint64, one request)"),
                       ("blocks_mvox_s", f"POST blocks?downres=true ({res['blocks_mib']} MiB "
                                         "of gzip'd label blocks)")):
        s = res[key]
        print(f"| {label} | {s['median']:.1f} | {s['min']:.1f} | {s['max']:.1f} | {s['n']} |")
    print(f"server peak RSS {res['peak_rss_mib']} MiB")
    print("\nJSON:")
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()

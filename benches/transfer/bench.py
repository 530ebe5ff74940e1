"""Push of the 512³ real labelmap between two servers on loopback, then an incremental push.

Run it through benches/transfer/run.sh, which builds the release binary and prepares the data.

1. Sender: POST the volume as raw labels into a labelmap with 5 pyramid levels (index built),
   commit the root, open a child.
2. Full push into an empty receiver: bytes sent, wire bytes, seconds, MB/s (median of
   --repeats fresh receivers).
3. 10 merges and a split on the sender's child, then the incremental push into the first
   receiver: bytes and seconds as a fraction of the full push.

    python benches/transfer/bench.py --bin target/release/tessera --data-dir /tmp/perf/data
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np

N = 512


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, binary, work, name):
        self.dir = os.path.join(work, name)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(self.dir + ".log", "wb")
        self.proc = subprocess.Popen(
            [binary, "serve", "--addr", f"127.0.0.1:{self.port}", "--data", self.dir,
             "--compute", "cpu"], stdout=subprocess.DEVNULL, stderr=self.log)
        for _ in range(300):
            try:
                urllib.request.urlopen(self.url + "/api/heartbeat", timeout=1)
                return
            except OSError:
                time.sleep(0.1)
        sys.exit(f"{name} did not start; see {self.dir}.log")

    def call(self, method, path, body=None):
        data = body if isinstance(body, (bytes, bytearray)) or body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        with urllib.request.urlopen(req, timeout=900) as r:
            return r.read()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=60)


def push(binary, a, b, root):
    out = subprocess.run([binary, "push", root, "--from", a.url, "--to", b.url, "--quiet"],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--data-dir", default=os.environ.get("PERF_DATA", "/tmp/perf/data"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--merges", choices=["largest", "random"], default="random")
    args = ap.parse_args()
    vol = np.load(os.path.join(args.data_dir, "real512.npy")).astype(np.uint64)
    assert vol.shape == (N, N, N), vol.shape
    work = tempfile.mkdtemp(prefix="tessera-transfer-")
    servers = []
    try:
        a = Server(args.bin, work, "sender")
        servers.append(a)
        root = json.loads(a.call("POST", "/api/repos", {"alias": "bench"}))["root"]
        a.call("POST", f"/api/repo/{root}/instance",
               {"typename": "labelmap", "dataname": "seg", "MaxDownresLevel": "5"})
        t0 = time.perf_counter()
        a.call("POST", f"/api/node/{root}/seg/raw/0_1_2/{N}_{N}_{N}/0_0_0", vol.tobytes())
        # Sync work (none for a lone labelmap today) gets time to settle before the snapshot.
        time.sleep(2)
        print(f"ingest with pyramid: {time.perf_counter() - t0:.2f} s", flush=True)
        a.call("POST", f"/api/node/{root}/commit", {"note": "ingested"})
        child = json.loads(a.call("POST", f"/api/node/{root}/newversion", {}))["child"]

        fulls = []
        first = None
        for i in range(args.repeats):
            b = Server(args.bin, work, f"receiver{i}")
            servers.append(b)
            r = push(args.bin, a, b, root)
            fulls.append(r)
            first = first or b
            print(f"full push {i}: {r['bytes_sent'] / 1e6:.1f} MB in {r['records_sent']} records, "
                  f"wire {r['wire_bytes'] / 1e6:.1f} MB, {r['seconds']:.2f} s", flush=True)

        # 10 merges and a split of one voxel off a label. `largest` merges the 20 largest labels
        # pairwise (the worst case: their label indices, rewritten whole, are the largest);
        # `random` merges random pairs of labels, as proofreading fragments into bodies does.
        labels, counts = np.unique(vol[::4, ::4, ::4], return_counts=True)
        order = np.argsort(-counts) if args.merges == "largest" else \
            np.random.default_rng(7).permutation(len(labels))
        picked = [int(labels[i]) for i in order if labels[i] != 0][:22]
        for k in range(10):
            a.call("POST", f"/api/node/{child}/seg/merge", [picked[2 * k], picked[2 * k + 1]])
        target = picked[21]
        z, y, x = (int(c) for c in np.argwhere(vol == target)[0])
        # DVID's RLE: 0, 3 dimensions, runs along x, reserved; voxels (0: unknown); spans.
        body = (bytes([0, 3, 0, 0]) + np.array([0, 1], dtype="<u4").tobytes()
                + np.array([x, y, z, 1], dtype="<i4").tobytes())
        a.call("POST", f"/api/node/{child}/seg/split/{target}", body)
        time.sleep(2)
        inc = push(args.bin, a, first, root)
        full_bytes = statistics.median(r["bytes_sent"] for r in fulls)
        full_wire = statistics.median(r["wire_bytes"] for r in fulls)
        full_s = statistics.median(r["seconds"] for r in fulls)
        print(json.dumps({
            "merges": args.merges,
            "full": {"bytes_sent": full_bytes, "wire_bytes": full_wire, "seconds": full_s,
                     "MB_per_s": round(full_bytes / full_s / 1e6, 1),
                     "records": fulls[0]["records_sent"], "runs": [r["seconds"] for r in fulls]},
            "incremental": inc,
            "incremental_bytes_ratio": round(inc["bytes_sent"] / full_bytes, 4),
            "incremental_wire_ratio": round(inc["wire_bytes"] / full_wire, 4),
            "incremental_seconds_ratio": round(inc["seconds"] / full_s, 4),
        }, indent=1))
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

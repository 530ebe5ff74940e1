#!/usr/bin/env python3
"""Per-request cost of the request gate (benches/access/run.sh): the same GETs against a server
with access control off and on, each request carrying a signed token when it is on. Reports the
median and p99 latency and requests per second of each, and the ratio."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import requests

SECRET = "a benchmark secret that is 32 bytes or more"
ADMIN = "bench-admin"


def start(binary, config_text, work):
    cfg = os.path.join(work, "tessera.toml")
    with open(cfg, "w") as f:
        f.write(config_text)
    out = open(os.path.join(work, "stdout"), "w+")
    err = open(os.path.join(work, "stderr"), "w")
    p = subprocess.Popen([binary, "serve", "--addr", "127.0.0.1:0", "--data", os.path.join(work, "data"),
                          "--config", cfg, "--compute", "cpu"], stdout=out, stderr=err,
                         env={**os.environ, "NO_COLOR": "1"})
    for _ in range(240):
        out.seek(0)
        for line in out:
            if line.startswith("tessera listening on "):
                return p, line.split()[-1]
        if p.poll() is not None:
            sys.exit(f"the server exited: see {work}/stderr")
        time.sleep(0.25)
    sys.exit("the server did not start")


def token(binary, config, user, repo, role):
    return subprocess.run([binary, "token", "new", "--config", config, "--user", user, "--repo", repo,
                           "--role", role], check=True, capture_output=True, text=True).stdout.strip()


def measure(url, paths, headers, n):
    s = requests.Session()
    s.headers.update(headers)
    for p in paths:  # warm-up
        s.get(url + p).raise_for_status()
    lat = []
    t0 = time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        r = s.get(url + paths[i % len(paths)])
        lat.append(time.perf_counter() - t)
        if r.status_code != 200:
            sys.exit(f"GET {paths[i % len(paths)]}: {r.status_code} {r.text}")
    wall = time.perf_counter() - t0
    lat.sort()
    return {"median_ms": statistics.median(lat) * 1e3, "p99_ms": lat[int(len(lat) * 0.99)] * 1e3,
            "req_per_s": n / wall}


def run(binary, enforce, n):
    work = tempfile.mkdtemp(prefix="tessera-access-bench-")
    text = f'[auth]\nenforce = "{"token" if enforce else "none"}"\njwt_secret = "{SECRET}"\nadmin_token = "{ADMIN}"\n'
    p, url = start(binary, text, work)
    try:
        admin = {"Authorization": f"Bearer {ADMIN}"}
        root = requests.post(url + "/api/repos", json={"alias": "bench"}, headers=admin).json()["root"]
        requests.post(f"{url}/api/repo/{root}/instance", json={"typename": "keyvalue", "dataname": "kv"},
                      headers=admin).raise_for_status()
        requests.post(f"{url}/api/node/{root}/kv/key/k", data=b"v" * 100, headers=admin).raise_for_status()
        requests.post(f"{url}/api/repo/{root}/instance", json={"typename": "labelmap", "dataname": "seg",
                      "BlockSize": "64,64,64"}, headers=admin).raise_for_status()
        vol = bytes(64 * 64 * 64 * 8)
        requests.post(f"{url}/api/node/{root}/seg/raw/0_1_2/64_64_64/0_0_0", data=vol,
                      headers=admin).raise_for_status()
        headers = {}
        if enforce:
            headers = {"Authorization": "Bearer " + token(binary, os.path.join(work, "tessera.toml"),
                                                          "reader", root, "read")}
        paths = [f"/api/node/{root}/kv/key/k", f"/api/node/{root}/seg/label/5_5_5"]
        return measure(url, paths, headers, n)
    finally:
        p.terminate()
        p.wait(timeout=60)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--requests", type=int, default=3000)
    a = ap.parse_args()
    off = run(a.bin, False, a.requests)
    on = run(a.bin, True, a.requests)
    for name, r in [("auth off", off), ("auth on (token)", on)]:
        print(f"{name:18} median {r['median_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms  {r['req_per_s']:.0f} req/s")
    print(f"median ratio on/off: {on['median_ms'] / off['median_ms']:.2f}")
    print(json.dumps({"off": off, "on": on}))


if __name__ == "__main__":
    main()

"""What fsyncing every write costs: keyvalue POSTs of 100 bytes against a real server, with
[server] sync_writes on and off, from 1 and 4 client threads (median and p99 latency, posts/s).

    python3 benches/reliability/sync_writes.py [path/to/tessera]   (default target/release/tessera)
"""
import json, subprocess, sys, time, threading, urllib.request, statistics, tempfile, os

BIN = sys.argv[1] if len(sys.argv) > 1 else "target/release/tessera"
def run(sync, n=300, threads=1):
    d = tempfile.mkdtemp(dir=None)
    cfg = os.path.join(d, "t.toml"); open(cfg, "w").write(f"[server]\nsync_writes = {str(sync).lower()}\n")
    p = subprocess.Popen([BIN, "serve", "--config", cfg, "--addr", "127.0.0.1:0", "--data", d + "/data"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    base = p.stdout.readline().strip().split()[-1]
    def req(m, path, body=None):
        r = urllib.request.Request(base + path, data=body, method=m); return urllib.request.urlopen(r).read()
    root = json.loads(req("POST", "/api/repos", b'{"alias":"b"}'))["root"]
    req("POST", f"/api/repo/{root}/instance", b'{"typename":"keyvalue","dataname":"kv"}')
    lat = []
    def work(t):
        for i in range(n // threads):
            s = time.perf_counter(); req("POST", f"/api/node/{root}/kv/key/k{t}_{i}", b"x" * 100); lat.append(time.perf_counter() - s)
    s = time.perf_counter()
    ts = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    [t.start() for t in ts]; [t.join() for t in ts]
    wall = time.perf_counter() - s
    p.terminate(); p.wait()
    return statistics.median(lat) * 1000, sorted(lat)[int(len(lat) * 0.99)] * 1000, n / wall
for threads in (1, 4):
    for sync in (False, True):
        med, p99, rate = run(sync, threads=threads)
        print(f"threads={threads} sync_writes={sync}: median {med:.2f} ms, p99 {p99:.2f} ms, {rate:.0f} posts/s")

"""Reader clients that load the server while edits are timed: separate processes (so their
Python never holds the timing process's interpreter lock), each on its own persistent HTTP
connection, cycling without pause through what a viewer and an analysis script ask for:
  raw64     GET raw 64³ at a random block-aligned offset (scale 0, 2 MiB)
  blocks8   GET specificblocks of 8 random blocks (compression=blocks)
  label     GET label/<x_y_z> at a random voxel
"""
import multiprocessing as mp
import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "labelmap"))
from bench import Client  # noqa: E402

OPS = ("raw64", "blocks8", "label")
BLOCK = 64


def _path(op, base, shape, rng):
    nz, ny, nx = (s // BLOCK for s in shape)
    if op == "raw64":
        x, y, z = (rng.randrange(n) * BLOCK for n in (nx, ny, nz))
        return f"{base}/raw/0_1_2/64_64_64/{x}_{y}_{z}"
    if op == "blocks8":
        q = ",".join(f"{rng.randrange(nx)},{rng.randrange(ny)},{rng.randrange(nz)}"
                     for _ in range(8))
        return f"{base}/specificblocks?blocks={q}&compression=blocks"
    z, y, x = (rng.randrange(s) for s in shape)
    return f"{base}/label/{x}_{y}_{z}"


def _run(url, base, shape, seed, stop, out):
    cli = Client(url)
    rng = random.Random(seed)
    lat = {op: [] for op in OPS}
    errors = 0
    i = seed
    while not stop.is_set():
        op = OPS[i % len(OPS)]
        i += 1
        path = _path(op, base, shape, rng)
        t0 = time.perf_counter()
        status, _ = cli.request("GET", path)
        ms = (time.perf_counter() - t0) * 1e3
        if status == 200:
            lat[op].append(ms)
        else:
            errors += 1
    cli.close()
    out.put((lat, errors))


class Readers:
    """`n` reader processes; start() and stop() bracket the timed part."""

    def __init__(self, n, url, base, shape):
        self.ctx = mp.get_context("spawn")
        self.n, self.args = n, (url, base, tuple(shape))
        self.procs, self.t0, self.secs = [], None, 0.0

    def start(self):
        self.stop_ev, self.out = self.ctx.Event(), self.ctx.Queue()
        self.procs = [self.ctx.Process(target=_run, args=self.args + (i, self.stop_ev, self.out),
                                       daemon=True) for i in range(self.n)]
        for p in self.procs:
            p.start()
        self.t0 = time.perf_counter()

    def stop(self):
        """Stops them; returns {op: latencies in ms}, error count and seconds they ran."""
        if not self.procs:
            return {op: [] for op in OPS}, 0, 0.0
        self.stop_ev.set()
        secs = time.perf_counter() - self.t0
        lat, errors = {op: [] for op in OPS}, 0
        for _ in self.procs:
            got, err = self.out.get(timeout=120)
            errors += err
            for op in OPS:
                lat[op] += got[op]
        for p in self.procs:
            p.join(timeout=30)
        self.procs = []
        return lat, errors, secs

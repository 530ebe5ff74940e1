#!/usr/bin/env python3
"""Medians and ratios from the hyperfine exports benches/jobs/run.sh writes: OUT/<job>-<threads>.json."""
import json
import os
import statistics
import sys

out = sys.argv[1]
print(f"{'job':8} {'threads':7} {'command':26} {'median s':>9} {'min s':>7} {'max s':>7} {'peer/this':>9}")
for threads in ("all", "1"):
    for job in ("pyramid", "mesh"):
        path = os.path.join(out, f"{job}-{threads}.json")
        if not os.path.exists(path):
            continue
        rows = json.load(open(path))["results"]
        peer = statistics.median(rows[-1]["times"])
        for r in rows:
            med = statistics.median(r["times"])
            print(f"{job:8} {threads:7} {r['command']:26} {med:9.2f} {min(r['times']):7.2f} "
                  f"{max(r['times']):7.2f} {peer / med:8.2f}x")

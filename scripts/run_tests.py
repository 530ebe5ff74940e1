#!/usr/bin/env python3
"""Runs the workspace's test binaries JOBS at a time (what `cargo test --workspace` runs, one
after another), then the doctests.

Most binaries keep one core busy (a debug `tessera serve` plus the test's own client), so on
a 2-core CI machine two at a time cut the suite's wall time by about a third. Each binary runs
as cargo would run it (from its package's directory, with CARGO_MANIFEST_DIR set); its output
is printed whole when it ends, and a table of wall times closes the run: what took the time.

    python3 scripts/run_tests.py [--jobs N] [ARGS passed to every test binary]

Environment: CARGO_TARGET_DIR as for cargo; TESSERA_TEST_JOBS overrides --jobs' default
(the number of CPUs). Exit status 1 when any binary failed.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor


def test_binaries():
    """(name, executable, package directory) of every test binary, built if needed."""
    out = subprocess.run(
        ["cargo", "test", "--workspace", "--no-run", "--message-format=json"],
        stdout=subprocess.PIPE, check=True, text=True)
    found = []
    for line in out.stdout.splitlines():
        try:
            m = json.loads(line)
        except json.JSONDecodeError:
            continue
        if m.get("reason") == "compiler-artifact" and m.get("executable") \
                and m["profile"]["test"]:
            pkg_dir = os.path.dirname(m["manifest_path"])
            kind = m["target"]["kind"][0]
            name = f'{os.path.basename(pkg_dir)}: {kind} {m["target"]["name"]}'
            found.append((name, m["executable"], pkg_dir))
    return found


def run_one(name, exe, pkg_dir, args):
    env = dict(os.environ, CARGO_MANIFEST_DIR=pkg_dir)
    with tempfile.TemporaryFile() as log:
        t0 = time.monotonic()
        rc = subprocess.call([exe, *args], cwd=pkg_dir, env=env, stdout=log,
                             stderr=subprocess.STDOUT)
        seconds = time.monotonic() - t0
        log.seek(0)
        text = log.read().decode(errors="replace")
    return name, rc, seconds, text


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int,
                    default=int(os.environ.get("TESSERA_TEST_JOBS", os.cpu_count() or 1)))
    ap.add_argument("args", nargs=argparse.REMAINDER,
                    help="passed to every test binary (filters, --test-threads=N, …)")
    opts = ap.parse_args()
    binaries = test_binaries()
    print(f"run_tests: {len(binaries)} test binaries, {opts.jobs} at a time", flush=True)
    started = time.monotonic()
    results = []
    with ThreadPoolExecutor(max_workers=max(1, opts.jobs)) as pool:
        futures = [pool.submit(run_one, name, exe, d, opts.args) for name, exe, d in binaries]
        for f in futures:
            name, rc, seconds, text = f.result()
            results.append((name, rc, seconds))
            print(f"\n==== {name}: {'ok' if rc == 0 else f'FAILED (exit {rc})'}, {seconds:.1f} s")
            print(text, end="", flush=True)
    t0 = time.monotonic()
    doc = subprocess.call(["cargo", "test", "--workspace", "--doc", *opts.args])
    results.append(("doctests", doc, time.monotonic() - t0))

    print(f"\nrun_tests: wall {time.monotonic() - started:.0f} s; slowest binaries:")
    for name, rc, seconds in sorted(results, key=lambda r: -r[2])[:12]:
        print(f"  {seconds:7.1f} s  {name}")
    failed = [name for name, rc, _ in results if rc != 0]
    if failed:
        print(f"run_tests: FAILED: {', '.join(failed)}")
        return 1
    print(f"run_tests: all {len(results)} passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

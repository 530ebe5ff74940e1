#!/usr/bin/env python3
"""Tessera's CPU kernels beside the peer libraries, on the same 512^3 volumes, in one run.

    bash benches/peers/run.sh            # builds tessera (release), sets up the peers, runs this

Peers are timed with ../shared/perf/common.py's `bench` (median of PERF_REPEATS after a warm-up,
waiting for a quiet machine); tessera with `tessera bench kernels --json` (median of --repeats
after a warm-up). Prints one table of medians and ratios against the issue's bars, and appends
the raw rows to $PERF_RESULTS.
"""
import json, os, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED_PERF = os.environ.get("SHARED_PERF", os.path.join(HERE, "../../../shared/perf"))
sys.path.insert(0, SHARED_PERF)
import numpy as np  # noqa: E402
import tinybrain, fastremap, zmesh  # noqa: E402
import compressed_segmentation as cseg  # noqa: E402
from common import bench, load, available, DATA  # noqa: E402

TESSERA = os.environ.get("TESSERA_BIN", "target/release/tessera")
REPEATS = int(os.environ.get("PERF_REPEATS", 3))


def gvox(n, stats):
    return n / stats["median_s"] / 1e9


def peers(name):
    """Input voxels per second of each peer on dataset `name`, single thread, best layout."""
    lab = load(name)
    n = lab.size
    out = {}
    st, _ = bench(lambda: tinybrain.downsample_segmentation(lab.T, (2, 2, 2), num_mips=1))
    out["downsample_mode"] = ("tinybrain mode, 1 level (F-order)", gvox(n, st))
    st, _ = bench(lambda: tinybrain.downsample_segmentation(lab.T, (2, 2, 2), num_mips=5))
    out["pyramid_mode_5"] = ("tinybrain mode, 5 levels (F-order)", gvox(n, st))
    uniq = fastremap.unique(lab)
    nz = uniq[uniq != 0]
    table = {int(k): 1 for k in nz[:1000]}
    buf = np.empty_like(lab)
    st, _ = bench(lambda: fastremap.remap(buf, table, preserve_missing_labels=True, in_place=True),
                  setup=lambda: np.copyto(buf, lab))
    out["relabel_1000_to_1"] = ("fastremap remap in place", gvox(n, st))
    st, enc = bench(lambda: cseg.compress(lab, block_size=(8, 8, 8), order="C"))
    out["block_encode"] = ("compressed_segmentation encode", gvox(n, st))
    st, _ = bench(lambda: cseg.decompress(enc, lab.shape, lab.dtype, block_size=(8, 8, 8), order="C"))
    out["block_decode"] = ("compressed_segmentation decode", gvox(n, st))
    out["block_decode_fresh"] = out["block_decode"]
    st, _ = bench(lambda: zmesh_all(lab), repeats=min(REPEATS, 3))
    out["surface"] = ("zmesh marching cubes + get every label, no simplification", gvox(n, st))
    return out


def zmesh_all(lab):
    """zmesh's whole job: marching cubes over the volume, then every label's mesh (float
    vertices, faces). close=False, as ../shared/perf/bench_mesh.py measures it: open meshes at
    the volume's edge are a little less work than Tessera's closed ones."""
    m = zmesh.Mesher((1, 1, 1))
    m.mesh(lab, close=False)
    meshes = [m.get(i, normals=False, reduction_factor=0, max_error=0) for i in m.ids()]
    m.clear()
    return len(meshes)


def gray_peer():
    gray = load("gray")
    st, _ = bench(lambda: tinybrain.downsample_with_averaging(gray.T, (2, 2, 2), num_mips=1))
    return {"downsample_mean": ("tinybrain mean u8, 1 level (F-order)", gvox(gray.size, st))}


def tessera_kernels(path):
    gray = os.path.join(DATA, "gray512.npy")
    cmd = [TESSERA, "bench", "kernels", "--compute", "cpu", "--json", "--repeats", str(REPEATS),
           "--input", path, "--gray", gray]
    res = subprocess.run(cmd, check=True, capture_output=True, text=True)
    rows = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    return {r["kernel"]: r for r in rows}


def tessera_pyramid(path, levels=5):
    """Wall time and summary line of one `tessera pyramid` command (read, compute, write). The
    summary reports the command's own peak RSS (VmHWM); rusage of a child forked from this
    large Python process would include the parent's pages."""
    out_dir = os.path.join(DATA, "pyramid-out")
    cmd = [TESSERA, "pyramid", "--input", path, "--levels", str(levels), "--out-dir", out_dir,
           "--compute", "cpu"]
    t = time.perf_counter()
    line = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()
    return time.perf_counter() - t, line


BARS = {  # kernel: (bar as a multiple of the peer's rate, or None) / absolute floor Gvox/s
    "downsample_mode": (2.0, None),
    "pyramid_mode_5": (2.0, None),
    "relabel_1000_to_1": (2.0, None),
    "block_encode": (None, 0.4),
    "block_decode": (None, 1.0),
    "downsample_mean": (1.0, None),
    "surface": (3.0, None),
}


def main():
    names = available(["labels", "real"])
    print(f"tessera: {TESSERA}; data: {DATA}; repeats {REPEATS}; cores {os.cpu_count()}")
    print(f"{'data':7} {'kernel':20} {'tessera Gvox/s':>15} {'peer Gvox/s':>12} {'ratio':>7} {'bar':>8}  peer")
    gray = gray_peer()
    for name in names:
        path = os.path.join(DATA, "labels512.npy" if name == "labels" else "real512.npy")
        mine = tessera_kernels(path)
        theirs = peers(name)
        theirs.update(gray)
        for kernel, row in mine.items():
            peer_name, peer_rate = theirs.get(kernel, ("-", None))
            ratio = row["gvox_s"] / peer_rate if peer_rate else None
            mult, floor = BARS.get(kernel, (None, None))
            bar = f">={mult:g}x" if mult else (f">={floor:g}G" if floor else "-")
            met = ""
            if mult and ratio is not None:
                met = " ok" if ratio >= mult else " MISS"
            elif floor:
                met = " ok" if row["gvox_s"] >= floor else " MISS"
            print(f"{name:7} {kernel:20} {row['gvox_s']:15.3f} "
                  f"{peer_rate if peer_rate else float('nan'):12.3f} "
                  f"{ratio if ratio else float('nan'):7.2f} {bar:>8}{met:5} {peer_name}", flush=True)
        wall, line = tessera_pyramid(path)
        size = os.path.getsize(path) / 2**30
        print(f"{name:7} tessera pyramid 5 levels, whole command {wall:.2f} s, input {size:.2f} GiB:"
              f"\n        {line}", flush=True)


if __name__ == "__main__":
    main()

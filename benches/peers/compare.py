#!/usr/bin/env python3
"""Tessera's CPU kernels beside the peer libraries, on the same 512^3 volumes, in one run, on one
core and on all cores, each against the machine's memory bandwidth.

    bash benches/peers/run.sh            # builds tessera (release), sets up the peers, runs this

Two modes, one markdown table each:
  single  Tessera with RAYON_NUM_THREADS=1 against the peer library called once on the whole
          volume in this (single-threaded) Python process.
  all     Tessera with RAYON_NUM_THREADS=N against the peer run as N worker processes over N
          z-slabs, N = os.cpu_count() (PERF_PROCS overrides): what a user scripting tinybrain,
          fastremap or zmesh does with multiprocessing.
How the peers' all-core time is taken: a fork pool of N workers is started once per dataset,
before any timing, after the volumes are loaded; the workers inherit the volumes (read-only,
copy-on-write pages never copied) and, for relabel, a MAP_SHARED buffer they remap in place.
The time is one `pool.map` over the N slabs (z boundaries on multiples of 32, so a 5-level
pyramid of a slab is exactly that slab of the whole pyramid): it includes sending the tasks,
each worker's compute, and the small return values coming back; it excludes starting the pool
and loading or sharing the input. Each worker keeps its output (downsampled levels, encoded
bytes, decoded voxels, meshes) and returns only a count -- nothing is gathered into the parent,
and zmesh's slabs (one voxel of overlap, so every cube is meshed once) are not stitched -- so
the peers' all-core figures are a lower bound on what a user's full job would take. The codec's
per-slab encodings for the decode runs are made in the parent before the pool starts.

Peers are timed with ../shared/perf/common.py's `bench` (median of PERF_REPEATS after a
warm-up, waiting briefly for a quiet machine); Tessera with `tessera bench kernels --json`
(median of --repeats after a warm-up). The roofline is a 1 GiB numpy copy measured in the same
run (read + write bytes per second, as ../shared/perf/bench_membw.py counts them) on one thread
and on N threads; each kernel's achieved GB/s is its Gvox/s times the bytes it must move per
input voxel (BYTES below). The raw rows are appended to $PERF_RESULTS.

Knobs (defaults): PERF_DATASETS=labels,real; PERF_KERNELS=every name in ALL_KERNELS
(`pyramid_command` is one whole `tessera pyramid` run per dataset; `tessera bench kernels`
always times all its kernels, the knob picks the rows and the peers run); PERF_MODES=single,all;
PERF_PROCS=os.cpu_count(); PERF_REPEATS=3; TESSERA_BIN=target/release/tessera. With more than
16 cores a 512-deep volume gives only 16 slabs of 32, so some workers idle.
"""
import json, mmap, os, resource, subprocess, sys, time
import multiprocessing as mp
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED_PERF = os.environ.get("SHARED_PERF", os.path.join(HERE, "../../../shared/perf"))
sys.path.insert(0, SHARED_PERF)
import numpy as np  # noqa: E402
import tinybrain, fastremap, zmesh  # noqa: E402
import compressed_segmentation as cseg  # noqa: E402
import common  # noqa: E402
from common import bench, load, available, record, DATA  # noqa: E402

TESSERA = os.environ.get("TESSERA_BIN", "target/release/tessera")
REPEATS = int(os.environ.get("PERF_REPEATS", 3))
NPROC = int(os.environ.get("PERF_PROCS") or os.cpu_count() or 1)
ALL_KERNELS = ["relabel_1000_to_1", "downsample_mode", "pyramid_mode_5", "downsample_mean",
               "block_encode", "block_decode", "block_decode_fresh", "surface", "pyramid_command"]
KERNELS = [k for k in os.environ.get("PERF_KERNELS", ",".join(ALL_KERNELS)).split(",") if k]
DATASETS = [d for d in os.environ.get("PERF_DATASETS", "labels,real").split(",") if d]
MODES = [m for m in os.environ.get("PERF_MODES", "single,all").split(",") if m]
SLAB_ALIGN = 32  # 2^5: slab boundaries that keep a 5-level pyramid (and 8^3 codec blocks) exact
CSEG_BLOCK = (8, 8, 8)

# Bytes each kernel must move per input voxel: its input read once and its output written once,
# nothing for intermediates (a perfect kernel keeps them in cache). `enc` is the compressed size
# per voxel; compressed_segmentation's is used for both sides (Tessera's 64^3-block format is of
# the same family and either is well under 1 B/voxel, so the 8 B of raw labels dominate).
BYTES = {
    "relabel_1000_to_1": lambda enc: 8 + 8,  # u64 read, u64 written back in place
    "downsample_mode": lambda enc: 8 + 8 / 8,  # u64 in, one u64 per 8 voxels out
    "pyramid_mode_5": lambda enc: 8 + 8 * sum(8.0 ** -k for k in range(1, 6)),  # ~9.14
    "downsample_mean": lambda enc: 1 + 1 / 8,  # u8 in, u8 per 8 voxels out
    "block_encode": lambda enc: 8 + enc,
    "block_decode": lambda enc: enc + 8,
    "block_decode_fresh": lambda enc: enc + 8,
    # Labels read once; the meshes written (a few % of the input here) are left out, so the
    # % of roofline shown for meshing is a slight underestimate -- meshing is compute-bound.
    "surface": lambda enc: 8,
}

# kernel: (bar as a multiple of the peer's rate), issue 22: per core, mode 1-level / 5-level
# pyramid / relabel >= 2x the peer; meshing >= 5x zmesh; the codec keeps its lead (>= 1x).
BARS = {
    "downsample_mode": 2.0,
    "pyramid_mode_5": 2.0,
    "relabel_1000_to_1": 2.0,
    "surface": 5.0,
    "block_encode": 1.0,
    "block_decode": 1.0,
    "block_decode_fresh": 1.0,
    "downsample_mean": 1.0,
}

PEER_NAMES = {
    "relabel_1000_to_1": "fastremap.remap in place, 1000 labels -> 1",
    "downsample_mode": "tinybrain mode, 1 level (F-order view)",
    "pyramid_mode_5": "tinybrain mode, 5 levels (F-order view)",
    "downsample_mean": "tinybrain mean u8, 1 level (F-order view), on gray512",
    "block_encode": "compressed_segmentation encode, 8^3 blocks",
    "block_decode": "compressed_segmentation decode (fresh output)",
    "block_decode_fresh": "compressed_segmentation decode (fresh output)",
    "surface": "zmesh marching cubes + every label's mesh, no simplification, close=False",
}


def gvox(n, stats):
    return n / stats["median_s"] / 1e9


# ---- the peers' work on one array (the whole volume, or one worker's slab) ----------------
def zmesh_all(lab):
    """zmesh's whole job: marching cubes over the volume, then every label's mesh (float
    vertices, faces). close=False, as ../shared/perf/bench_mesh.py measures it: open meshes at
    the volume's edge are a little less work than Tessera's closed ones."""
    m = zmesh.Mesher((1, 1, 1))
    m.mesh(lab, close=False)
    meshes = [m.get(i, normals=False, reduction_factor=0, max_error=0) for i in m.ids()]
    m.clear()
    return len(meshes)


def peer_kernel(kernel, lab, buf, gray, table, enc):
    """Runs the peer's `kernel` once; returns something small. `lab`, `buf` and `gray` are the
    (slab of the) labels, the relabel buffer and the grayscale; `enc` the encoded labels."""
    if kernel == "relabel_1000_to_1":
        fastremap.remap(buf, table, preserve_missing_labels=True, in_place=True)
        return buf.shape
    if kernel == "downsample_mode":
        return len(tinybrain.downsample_segmentation(lab.T, (2, 2, 2), num_mips=1))
    if kernel == "pyramid_mode_5":
        return len(tinybrain.downsample_segmentation(lab.T, (2, 2, 2), num_mips=5))
    if kernel == "downsample_mean":
        return len(tinybrain.downsample_with_averaging(gray.T, (2, 2, 2), num_mips=1))
    if kernel == "block_encode":
        return len(cseg.compress(lab, block_size=CSEG_BLOCK, order="C"))
    if kernel in ("block_decode", "block_decode_fresh"):
        return cseg.decompress(enc, lab.shape, lab.dtype, block_size=CSEG_BLOCK, order="C").shape
    if kernel == "surface":
        return zmesh_all(lab)
    raise KeyError(kernel)


# ---- the all-core peers: N forked workers over N z-slabs --------------------------------
_W = {}  # set in the parent before the pool forks; the workers inherit it


def slabs(nz, n, align=SLAB_ALIGN):
    """n z-ranges covering 0..nz with inner boundaries on multiples of `align` (fewer if the
    volume is too thin to give every worker one)."""
    cuts = sorted({min(nz, round(nz * i / n / align) * align) for i in range(n + 1)} | {0, nz})
    return [(a, b) for a, b in zip(cuts, cuts[1:]) if b > a]


def _slab_task(args):
    kernel, i = args
    if kernel == "downsample_mean":
        g0, g1 = _W["gray_slabs"][i]
        return peer_kernel(kernel, None, None, _W["gray"][g0:g1], None, None)
    z0, z1 = _W["slabs"][i]
    if kernel == "surface":  # one plane of overlap: the cubes between two slabs are meshed once
        z1 = min(z1 + 1, _W["lab"].shape[0])
    enc = _W["enc"][i] if _W["enc"] else None
    return peer_kernel(kernel, _W["lab"][z0:z1], _W["buf"][z0:z1], None, _W["table"], enc)


class SlabPool:
    """N forked workers that see the dataset's arrays; `run` maps one kernel over the slabs."""

    def __init__(self, lab, buf, gray, table, encode):
        sl = slabs(lab.shape[0], NPROC)
        enc = [cseg.compress(lab[a:b], block_size=CSEG_BLOCK, order="C") for a, b in sl] \
            if encode else None
        _W.update(lab=lab, buf=buf, gray=gray, table=table, slabs=sl,
                  gray_slabs=slabs(gray.shape[0], NPROC), enc=enc)
        self.pool = mp.get_context("fork").Pool(NPROC)

    def run(self, kernel):
        n = len(_W["gray_slabs" if kernel == "downsample_mean" else "slabs"])
        return self.pool.map(_slab_task, [(kernel, i) for i in range(n)], chunksize=1)

    def close(self):
        self.pool.close()
        self.pool.join()


# ---- the roofline ---------------------------------------------------------------------
def roofline():
    """GB/s (read + write) of a 1 GiB numpy copy on one thread and on NPROC threads (numpy
    releases the GIL while copying), as ../shared/perf/bench_membw.py measures it."""
    n = 512 ** 3
    src = np.arange(n, dtype=np.uint64)
    dst = np.full_like(src, 1)  # pages faulted in before timing
    cuts = np.linspace(0, n, NPROC + 1).astype(int)
    out = {}
    with ThreadPoolExecutor(NPROC) as ex:
        def copy_n():
            list(ex.map(lambda i: np.copyto(dst[cuts[i]:cuts[i + 1]], src[cuts[i]:cuts[i + 1]]),
                        range(NPROC)))
        for mode, threads, fn in (("single", 1, lambda: np.copyto(dst, src)),
                                  ("all", NPROC, copy_n)):
            st, _ = bench(fn, repeats=max(REPEATS, 5))
            out[mode] = 2 * src.nbytes / st["median_s"] / 1e9
            record("compare roofline: memcpy 1GiB (np.copyto)", "numpy", threads, "u64 1GiB", n,
                   st, GBps_rw=round(out[mode], 2))
    return out


# ---- Tessera --------------------------------------------------------------------------
def tessera_kernels(path, threads):
    """`tessera bench kernels` rows by kernel, with RAYON_NUM_THREADS=threads, and the
    process's CPU time over its wall time (about `threads` while the kernels run; reading the
    input is single-threaded)."""
    gray = os.path.join(DATA, "gray512.npy")
    only = ",".join(k for k in KERNELS if k in BYTES)
    cmd = [TESSERA, "bench", "kernels", "--compute", "cpu", "--json", "--repeats", str(REPEATS),
           "--input", path, "--gray", gray, "--only", only]
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    res = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    rows = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    return {r["kernel"]: r for r in rows}, cpu / wall


def tessera_pyramid(path, levels=5):
    """Wall time and summary line of one `tessera pyramid` command (read, compute, write), on
    all cores. The summary reports the command's own peak RSS (VmHWM); rusage of a child forked
    from this large Python process would include the parent's pages."""
    out_dir = os.path.join(DATA, "pyramid-out")
    cmd = [TESSERA, "pyramid", "--input", path, "--levels", str(levels), "--out-dir", out_dir,
           "--compute", "cpu"]
    t = time.perf_counter()
    line = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()
    return time.perf_counter() - t, line


# ---- one dataset ----------------------------------------------------------------------
def shared_like(a):
    """A zeroed array shaped like `a` in a MAP_SHARED anonymous mapping, so forked workers
    write into the parent's memory."""
    buf = mmap.mmap(-1, a.nbytes)
    return np.frombuffer(buf, dtype=a.dtype).reshape(a.shape)


def run_dataset(name, roof, results):
    path = os.path.join(DATA, "labels512.npy" if name == "labels" else "real512.npy")
    kernels = [k for k in KERNELS if k in BYTES]
    lab = load(name)
    gray = load("gray") if "downsample_mean" in kernels else np.zeros((0, 0, 0), np.uint8)
    uniq = fastremap.unique(lab)
    nz = uniq[uniq != 0]
    table = {int(k): 1 for k in nz[:1000]}  # the 1000 smallest non-zero labels, as Tessera's
    buf = shared_like(lab)
    codec = any(k.startswith("block_") for k in kernels)
    enc = cseg.compress(lab, block_size=CSEG_BLOCK, order="C") if codec else b""
    enc_per_voxel = len(enc) / lab.size
    for mode in MODES:
        threads = 1 if mode == "single" else NPROC
        common.wait_quiet()
        mine, cpu_per_wall = tessera_kernels(path, threads)
        print(f"== {name}, {mode}: tessera RAYON_NUM_THREADS={threads}, process cpu/wall "
              f"{cpu_per_wall:.2f}; load {common.loadavg():.2f}", flush=True)
        pool = SlabPool(lab, buf, gray, table, codec) if mode == "all" else None
        for kernel in kernels:
            nvox = gray.size if kernel == "downsample_mean" else lab.size
            setup = (lambda: np.copyto(buf, lab)) if kernel == "relabel_1000_to_1" else None
            reps = min(REPEATS, 3) if kernel == "surface" else None
            if pool is None:
                st, _ = bench(lambda: peer_kernel(kernel, lab, buf, gray, table, enc),
                              repeats=reps, setup=setup)
            else:
                st, _ = bench(lambda: pool.run(kernel), repeats=reps, setup=setup)
            bpv = BYTES[kernel](enc_per_voxel)
            peer = gvox(nvox, st)
            lib = PEER_NAMES[kernel] + ("" if pool is None else f", {NPROC} procs over z-slabs")
            extra = {} if pool is None else {"cpu_s_of": "the parent process only"}
            record(f"compare {kernel}", lib, threads, name, nvox, st, mode=mode, **extra,
                   bytes_per_voxel=round(bpv, 3), GBps=round(peer * bpv, 2),
                   roofline_pct=round(100 * peer * bpv / roof[mode], 1))
            row = mine.get(kernel)
            t_rate = None
            if row is not None:
                t_rate = row["gvox_s"]
                tst = {"median_s": row["median_s"], "min_s": min(row["seconds"]),
                       "runs_s": row["seconds"], "cpu_s": float("nan")}
                record(f"compare {kernel}", "tessera", threads, name, row["voxels"], tst,
                       mode=mode, bytes_per_voxel=round(bpv, 3), GBps=round(t_rate * bpv, 2),
                       roofline_pct=round(100 * t_rate * bpv / roof[mode], 1),
                       process_cpu_per_wall=round(cpu_per_wall, 2))
            results[mode].append((name, kernel, t_rate, peer, bpv, common.loadavg()))
        if pool is not None:
            pool.close()
    if "pyramid_command" in KERNELS:
        wall, line = tessera_pyramid(path)
        size = os.path.getsize(path) / 2**30
        results["pyramid_command"].append(
            f"{name}: tessera pyramid 5 levels, whole command {wall:.2f} s, input {size:.2f} GiB: "
            f"{line}")
    common._cache.pop(name, None)


# ---- the tables -----------------------------------------------------------------------
def table(mode, rows, roof):
    head = {"single": "Single core: Tessera RAYON_NUM_THREADS=1, the peer in one process",
            "all": f"All cores: Tessera RAYON_NUM_THREADS={NPROC}, the peer as {NPROC} processes "
                   f"over {NPROC} z-slabs"}[mode]
    out = [f"### {head}", "",
           f"Roofline: numpy copy of 1 GiB, {1 if mode == 'single' else NPROC} thread(s): "
           f"{roof[mode]:.1f} GB/s (read + write). Load average during the rows: "
           f"{min(r[5] for r in rows):.1f}-{max(r[5] for r in rows):.1f}.", "",
           "| data | kernel | Tessera Gvox/s | peer Gvox/s | ratio | Tessera % roofline "
           "| peer % roofline | bar |",
           "|---|---|---:|---:|---:|---:|---:|---|"]
    for name, kernel, t, p, bpv, _ in rows:
        def pct(rate):
            return f"{100 * rate * bpv / roof[mode]:.0f} % ({rate * bpv:.1f} GB/s)"
        ratio = t / p if t is not None else None
        bar = BARS.get(kernel)
        verdict = "-" if bar is None or ratio is None else \
            f"≥{bar:g}× {'ok' if ratio >= bar else 'MISS'}"
        out.append(f"| {name} | {kernel} | {t if t is not None else float('nan'):.3f} | {p:.3f} | "
                   f"{ratio if ratio is not None else float('nan'):.2f}× | "
                   f"{pct(t) if t is not None else '-'} | {pct(p)} | {verdict} |")
    return "\n".join(out)


def main():
    names = available([d for d in DATASETS])
    print(f"tessera: {TESSERA}; data: {DATA}; repeats {REPEATS}; cores {os.cpu_count()}, "
          f"peer processes {NPROC}; kernels {','.join(KERNELS)}; modes {','.join(MODES)}",
          flush=True)
    roof = roofline()
    results = {"single": [], "all": [], "pyramid_command": []}
    for name in names:
        run_dataset(name, roof, results)
    print()
    for mode in MODES:
        if results[mode]:
            print(table(mode, results[mode], roof) + "\n")
    print("Peers: " + "; ".join(f"{k}: {v}" for k, v in PEER_NAMES.items()
                                if k in KERNELS and k != "block_decode_fresh"))
    print("Bytes moved per input voxel (input read once + output written once): " +
          ", ".join(f"{k} {BYTES[k](0):.3g}" + ("+enc" if k.startswith("block_") else "")
                    for k in KERNELS if k in BYTES))
    for line in results["pyramid_command"]:
        print(line)


if __name__ == "__main__":
    main()

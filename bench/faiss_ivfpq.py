#!/usr/bin/env python3
"""Reference run of FAISS's IVF-PQ index: build time, add speed, recall, QPS.

Shelf's IVF-PQ index is measured against the numbers this script prints for
the same files, so both sides read the same .fvecs/.ivecs inputs and report
recall with the same definitions (internal/groundtruth).

Usage (Debian's FAISS, not a pip wheel, hence the explicit interpreter):

    apt-get install -y python3-faiss python3-numpy
    /usr/bin/python3 bench/faiss_ivfpq.py --base base.fvecs \\
        --queries queries.fvecs --gt gt.ivecs [--factory IVF256,PQ16] \\
        [--metric l2|ip] [--nprobe 1,8,32] [--k 10] [--threads N] \\
        [--train-size N] [--seed S] [--search-reps R] \\
        [--save-centroids centroids.fvecs] [--blas auto|system|DIR] [--json]

Inputs: .fvecs, .bvecs or .npy (float32/uint8) vectors; .ivecs or .npy
ground truth (nq rows of at least --k neighbour ids, best first).  Without
--gt the ground truth is computed exactly with a flat index.

What is timed:
  train_s   index.train on the first --train-size base vectors (all when 0):
            coarse k-means, residual PQ training and, unless --no-polysemous
            or a factory string ending in "np", IndexIVFPQ's default
            polysemous training, which only renumbers the PQ centroids (search
            results do not change while polysemous_ht is 0, the default) but
            can dominate the training time.
  add_s     index.add of the whole base (coarse assignment + PQ encoding);
            add_vps = n / add_s.
  qps       nq / the fastest of --search-reps searches of all queries in
            one index.search call at the given nprobe.

Recall (same definitions as internal/groundtruth):
  recall1        1-recall@1: fraction of queries whose true nearest
                 neighbour gt[q, 0] is the first result.
  recallk        1-recall@k: fraction of queries whose gt[q, 0] is among
                 the first k results (FAISS's "R@k" columns).
  inter_recallk  k-recall@k: |results[:k] & gt[:k]| / k, averaged over
                 queries (the ann-benchmarks definition).

Seeds: --seed is written to the coarse quantizer's and the PQ's
ClusteringParameters.seed (FAISS 1.7.3 default 1234), which fixes k-means
initialisation; with several OpenMP threads the floating-point reductions,
and so the exact centroids, may still differ run to run.

--save-centroids writes the trained coarse centroids as .fvecs so that a Go
test can start from FAISS's exact coarse quantizer.

Output: one JSON object per nprobe with --json, otherwise a table.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

faiss = None  # imported in main, after the BLAS is chosen

# Debian's FAISS calls BLAS through libblas.so.3, which the alternatives
# system may point at the unoptimised reference BLAS: k-means and PQ training
# then run about 10x slower than with OpenBLAS, which no real deployment
# would use. --blas auto re-executes the script with OpenBLAS first on the
# library path when it is installed.
OPENBLAS_DIR = "/usr/lib/x86_64-linux-gnu/openblas-openmp"
REEXEC_ENV = "FAISS_IVFPQ_BLAS_CHOSEN"


def choose_blas(mode):
    if mode == "system" or os.environ.get(REEXEC_ENV):
        return
    libdir = OPENBLAS_DIR if mode == "auto" else mode
    if not os.path.exists(os.path.join(libdir, "libblas.so.3")):
        if mode != "auto":
            sys.exit(f"--blas {mode}: no libblas.so.3 there")
        return
    env = dict(os.environ)
    env[REEXEC_ENV] = "1"
    env["LD_LIBRARY_PATH"] = libdir + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    os.execve(sys.executable, [sys.executable] + sys.argv, env)


def loaded_blas():
    """The BLAS library this process mapped, as the report names it."""
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1]
                if "blas" in os.path.basename(path) or "/blas/" in path:
                    return os.path.realpath(path)
    except OSError:
        pass
    return "unknown"


def _vecs(path, dtype, elem):
    """Reads .fvecs/.ivecs/.bvecs: every row is an int32 dimension, then
    that many values. All rows must have the dimension of the first."""
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0:
        sys.exit(f"{path}: empty file")
    if raw.size < 4:
        sys.exit(f"{path}: truncated: {raw.size} bytes")
    d = int(raw[:4].view("<i4")[0])
    if d <= 0 or d > 1 << 20:
        sys.exit(f"{path}: bad dimension {d} in row 0")
    row = 4 + d * elem
    if raw.size % row:
        sys.exit(f"{path}: truncated: last row has {raw.size % row} of {row} bytes")
    rows = raw.reshape(-1, row)
    dims = rows[:, :4].copy().view("<i4").ravel()
    bad = np.nonzero(dims != d)[0]
    if bad.size:
        sys.exit(f"{path}: row {bad[0]} has dimension {dims[bad[0]]}, first row {d}")
    return np.ascontiguousarray(rows[:, 4:]).view(dtype)


def read_vectors(path):
    if path.endswith(".fvecs"):
        x = _vecs(path, "<f4", 4)
    elif path.endswith(".bvecs"):
        x = _vecs(path, np.uint8, 1)
    elif path.endswith(".npy"):
        x = np.load(path)
    else:
        sys.exit(f"{path}: unknown extension (want .fvecs, .bvecs or .npy)")
    if x.ndim != 2:
        sys.exit(f"{path}: want a 2-D array, got shape {x.shape}")
    return np.ascontiguousarray(x, dtype=np.float32)


def read_ids(path):
    if path.endswith(".ivecs"):
        g = _vecs(path, "<i4", 4)
    elif path.endswith(".npy"):
        g = np.load(path)
        if g.ndim == 1:
            g = g.reshape(-1, 1)
    else:
        sys.exit(f"{path}: unknown extension (want .ivecs or .npy)")
    return g.astype(np.int64)


def write_fvecs(path, x):
    x = np.ascontiguousarray(x, dtype="<f4")
    n, d = x.shape
    out = np.empty((n, d + 1), dtype="<f4")
    out[:, 0] = np.array([d], dtype="<i4").view("<f4")[0]
    out[:, 1:] = x
    tmp = path + ".tmp"
    out.tofile(tmp)
    os.replace(tmp, path)


def recall_at(I, gt, at):
    """1-recall@at: fraction of queries whose gt[:, 0] is in I[:, :at]."""
    valid = gt[:, 0] >= 0
    hit = (I[:, :at] == gt[:, :1]).any(axis=1)
    return float(hit[valid].mean()) if valid.any() else 0.0


def intersection_recall(I, gt, k, block=1024):
    """k-recall@k: |I[q, :k] & gt[q, :k]| / k averaged over queries; padding
    ids (-1) in gt count in neither numerator nor denominator."""
    total, counted = 0.0, 0
    for lo in range(0, I.shape[0], block):
        f = I[lo:lo + block, :k]
        g = gt[lo:lo + block, :k]
        valid = g >= 0
        # Each gt id matched by any result: counts a repeated result once.
        hits = ((g[:, :, None] == f[:, None, :]).any(axis=2) & valid).sum(axis=1)
        denom = valid.sum(axis=1)
        keep = denom > 0
        total += float((hits[keep] / denom[keep]).sum())
        counted += int(keep.sum())
    return total / counted if counted else 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True)
    ap.add_argument("--queries", required=True)
    ap.add_argument("--gt", help="ground truth; computed with a flat index if omitted")
    ap.add_argument("--factory", default="IVF256,PQ16")
    ap.add_argument("--metric", choices=["l2", "ip"], default="l2")
    ap.add_argument("--nprobe", default="1,8,32", help="comma-separated list")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--train-size", type=int, default=0, help="0: the whole base")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--search-reps", type=int, default=1)
    ap.add_argument("--no-polysemous", action="store_true",
                    help="skip IndexIVFPQ's polysemous training (as the factory suffix 'np' does)")
    ap.add_argument("--save-centroids")
    ap.add_argument("--blas", default="auto",
                    help="auto (OpenBLAS if installed), system, or a directory holding libblas.so.3")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    choose_blas(a.blas)
    global faiss
    try:
        import faiss
    except ImportError:
        sys.exit("faiss not found: apt-get install -y python3-faiss python3-numpy, "
                 "then run with /usr/bin/python3")
    try:
        nprobes = [int(p) for p in a.nprobe.split(",") if p]
    except ValueError:
        sys.exit(f"--nprobe {a.nprobe!r}: want comma-separated integers")
    if a.k <= 0 or a.threads <= 0 or a.search_reps <= 0 or not nprobes:
        sys.exit("--k, --threads, --search-reps and --nprobe must be positive")

    faiss.omp_set_num_threads(a.threads)
    metric = faiss.METRIC_L2 if a.metric == "l2" else faiss.METRIC_INNER_PRODUCT
    xb = read_vectors(a.base)
    xq = read_vectors(a.queries)
    n, d = xb.shape
    nq = xq.shape[0]
    if xq.shape[1] != d:
        sys.exit(f"base has dimension {d}, queries {xq.shape[1]}")

    if a.gt:
        gt = read_ids(a.gt)
        if gt.shape[0] != nq:
            sys.exit(f"{a.gt}: {gt.shape[0]} rows for {nq} queries")
    else:
        flat = faiss.IndexFlat(d, metric)
        flat.add(xb)
        _, gt = flat.search(xq, a.k)
    kgt = gt.shape[1]
    if kgt < a.k:
        sys.exit(f"ground truth has {kgt} neighbours per query, --k is {a.k}")

    index = faiss.index_factory(d, a.factory, metric)
    ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
    ivf.cp.seed = a.seed
    if hasattr(ivf, "pq"):
        ivf.pq.cp.seed = a.seed
    if a.no_polysemous and hasattr(ivf, "do_polysemous_training"):
        ivf.do_polysemous_training = False
    polysemous = bool(getattr(ivf, "do_polysemous_training", False))

    ntrain = n if a.train_size <= 0 else min(a.train_size, n)
    t0 = time.perf_counter()
    index.train(xb[:ntrain])
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    index.add(xb)
    add_s = time.perf_counter() - t0

    if a.save_centroids:
        write_fvecs(a.save_centroids, ivf.quantizer.reconstruct_n(0, ivf.nlist))

    blas = loaded_blas()
    sizes = np.array([ivf.invlists.list_size(i) for i in range(ivf.nlist)])
    imbalance = float(ivf.invlists.imbalance_factor())
    params = faiss.ParameterSpace()
    rows = []
    for nprobe in nprobes:
        params.set_index_parameter(index, "nprobe", nprobe)
        best = float("inf")
        for _ in range(a.search_reps):
            t0 = time.perf_counter()
            _, I = index.search(xq, a.k)
            best = min(best, time.perf_counter() - t0)
        rows.append({
            "engine": "faiss",
            "factory": a.factory,
            "metric": a.metric,
            "n": n,
            "d": d,
            "nq": nq,
            "nlist": ivf.nlist,
            "nprobe": nprobe,
            "k": a.k,
            "recall1": round(recall_at(I, gt, 1), 6),
            "recallk": round(recall_at(I, gt, a.k), 6),
            "inter_recallk": round(intersection_recall(I, gt, a.k), 6),
            "qps": round(nq / best, 1),
            "threads": a.threads,
            "train_n": ntrain,
            "train_s": round(train_s, 4),
            "add_s": round(add_s, 4),
            "add_vps": round(n / add_s, 1),
            "polysemous_training": polysemous,
            "imbalance": round(imbalance, 4),
            "max_list": int(sizes.max()),
            "blas": blas,
            "faiss_version": faiss.__version__,
        })

    if a.json:
        for r in rows:
            print(json.dumps(r), flush=True)
        return
    r0 = rows[0]
    print(f"FAISS {r0['faiss_version']}  {a.factory}  metric={a.metric}  n={n} d={d} nq={nq}  "
          f"threads={a.threads}  blas={blas}")
    print(f"train {ntrain} vectors{' (with polysemous training)' if polysemous else ''}: {train_s:.2f} s   add: {add_s:.2f} s ({n / add_s:,.0f} vectors/s)   "
          f"list imbalance {imbalance:.2f}, largest list {r0['max_list']}")
    print(f"{'nprobe':>7} {'R@1':>7} {'R@' + str(a.k):>7} {str(a.k) + '-R@' + str(a.k):>8} {'QPS':>10}")
    for r in rows:
        print(f"{r['nprobe']:>7} {r['recall1']:>7.4f} {r['recallk']:>7.4f} {r['inter_recallk']:>8.4f} "
              f"{r['qps']:>10,.0f}")


if __name__ == "__main__":
    main()

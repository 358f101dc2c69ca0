#!/usr/bin/env python3
"""Searches a FAISS index file (an IVF-PQ exported by `shelf export-faiss`,
its lists inline or in an OnDiskInvertedLists file, which FAISS maps) the
way `shelf search --json` does, and prints one JSON line per nprobe with
the same fields: qps, recall1, recallk, and with --batch p50_ms, p99_ms.

    /usr/bin/python3 bench/faiss_search.py --index F --queries Q.fvecs
        [--gt GT.ivecs] [--k 10] [--nprobe 1,16,64] [--batch 0] [--threads 0]
        [--repeat 1]

--batch N searches N queries per call (1: one per call; 0: all at once).
FAISS 1.7.3 as Debian ships it, or the AVX2 build of ../shared/faiss-avx2.sh
when PYTHONPATH points at it (bench/bigsearch does).
"""
import argparse
import json
import sys
import time

import faiss
import numpy as np


def read_vecs(path, dtype):
    raw = np.fromfile(path, dtype=np.int32)
    d = int(raw[0])
    rows = raw.reshape(-1, d + 1)[:, 1:]
    return np.ascontiguousarray(rows.view(dtype))


def recall(found, gt, at):
    # Share of queries whose true nearest neighbour is among the first `at`.
    return float(np.mean([gt[i, 0] in found[i, :at] for i in range(len(gt))]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--index", required=True)
    ap.add_argument("--queries", required=True)
    ap.add_argument("--gt")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--nprobe", default="16")
    ap.add_argument("--batch", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=1)
    a = ap.parse_args()
    if a.threads > 0:
        faiss.omp_set_num_threads(a.threads)
    index = faiss.read_index(a.index)
    ivf = faiss.extract_index_ivf(index)
    q = read_vecs(a.queries, np.float32)
    gt = read_vecs(a.gt, np.int32) if a.gt else None
    nq = len(q)
    batch = nq if a.batch <= 0 else min(a.batch, nq)
    for nprobe in [int(x) for x in a.nprobe.split(",")]:
        ivf.nprobe = nprobe
        best = None
        for _ in range(a.repeat):
            lat = []
            ids = np.empty((nq, a.k), dtype=np.int64)
            t0 = time.perf_counter()
            for lo in range(0, nq, batch):
                t = time.perf_counter()
                _, ids[lo:lo + batch] = index.search(q[lo:lo + batch], a.k)
                lat.append(time.perf_counter() - t)
            el = time.perf_counter() - t0
            if best is None or el < best[0]:
                best = (el, lat, ids)
        el, lat, ids = best
        row = {"engine": "faiss", "nprobe": nprobe, "k": a.k, "qps": round(nq / el), "nq": nq,
               "threads": faiss.omp_get_max_threads()}
        if gt is not None:
            row["recall1"] = recall(ids, gt, 1)
            row["recallk"] = recall(ids, gt, a.k)
        if batch < nq:
            lat_ms = np.sort(np.array(lat)) * 1000
            row["batch"] = batch
            row["p50_ms"] = round(float(lat_ms[int(np.ceil(0.50 * len(lat_ms))) - 1]), 3)
            row["p99_ms"] = round(float(lat_ms[int(np.ceil(0.99 * len(lat_ms))) - 1]), 3)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    sys.exit(main())

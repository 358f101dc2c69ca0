#!/usr/bin/env python3
"""FAISS side of the FAISS file tests (faissio/faissio_test.go, tools/faiss_test.go).

Builds FAISS IVF indexes and writes them with faiss.write_index, and reads
index files (FAISS's own or Shelf's exports) and searches them, so that the
Go tests can compare both engines on the same files.

Usage (Debian's FAISS, hence the explicit interpreter):

    /usr/bin/python3 bench/faiss_io.py tasks.json

tasks.json is a list of tasks run in order; paths are used as given
(relative ones against the working directory):

    {"op": "build", "base": "b.fvecs", "ids": "ids.npy" | null,
     "factory": "IVF64,PQ8", "metric": "l2" | "ip", "by_residual": true,
     "seed": 1, "add_n": 100 | null, "out": "x.index", "ondisk": "x.ivfdata" | null}
        trains on the base, adds it, or its first add_n rows (add_with_ids
        when ids are given), and writes out; with ondisk the lists go to
        an OnDiskInvertedLists data file through
        faiss.contrib.ondisk.merge_ondisk, and the index file stores that
        name as given. by_residual is applied to IVF-PQ and IVF-RQ
        factories.

    {"op": "search", "index": "x.index", "queries": "q.fvecs", "k": 10,
     "nprobe": 8, "dist": "d.npy", "labels": "i.npy"}
        reads the index with faiss.read_index, searches, and writes the
        distances (float32) and ids (int64) as .npy, nq x k.

    {"op": "rewrite", "index": "x.index", "out": "y.index"}
        faiss.read_index, then faiss.write_index: FAISS's own serialization
        of what it read.

    {"op": "rq", "train": "x.fvecs", "M": 4, "beam": 5, "train_type": 1,
     "encode": "y.fvecs", "codebooks": "cb.npy", "codes": "c.npy",
     "out": "rq.json"}
        trains a faiss.ResidualQuantizer of M 8-bit layers with that beam
        (train_type: FAISS's, default its own), or, without "train",
        takes the codebooks from the codebooks file; writes the codebooks
        (M*256 x d), the layer codes of the encode vectors (n x M uint8)
        and, in out, their reconstruction MSE and the training seconds
        ("threads": N sets FAISS's threads for this task, 0 every CPU).

    {"op": "info", "index": "x.index", "out": "info.json"}
        writes what faiss.read_index found: type, d, nlist, ntotal,
        metric, code size, is_trained, the quantizer's size and metric, and
        for an IndexIVFResidualQuantizer "rq": M, search_type,
        max_beam_size, train_type, by_residual.
"""

import json
import os
import sys
import tempfile
import time

import numpy as np

import faiss
from faiss.contrib.ondisk import merge_ondisk


def read_fvecs(path):
    raw = np.fromfile(path, dtype="int32")
    if raw.size == 0:
        return np.zeros((0, 0), dtype="float32")
    d = int(raw[0])
    return raw.reshape(-1, d + 1)[:, 1:].copy().view("float32")


def metric_of(name):
    return {"l2": faiss.METRIC_L2, "ip": faiss.METRIC_INNER_PRODUCT}[name]


def build(t):
    x = read_fvecs(t["base"])
    d = x.shape[1]
    index = faiss.index_factory(d, t["factory"], metric_of(t.get("metric", "l2")))
    try:
        ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
    except RuntimeError:
        ivf = None  # not an IVF index (the unsupported-type tests)
    if ivf is not None:
        seed = int(t.get("seed", 1))
        ivf.cp.seed = seed
        if isinstance(ivf, faiss.IndexIVFPQ):
            if "by_residual" in t:
                ivf.by_residual = bool(t["by_residual"])
            ivf.pq.cp.seed = seed
            # Polysemous training only renumbers the codes (same search
            # results) and takes most of the training time.
            ivf.do_polysemous_training = False
        elif isinstance(ivf, faiss.IndexIVFResidualQuantizer) and "by_residual" in t:
            ivf.by_residual = bool(t["by_residual"])
    index.train(x)
    ids = None
    if t.get("ids"):
        ids = np.load(t["ids"]).astype("int64")
    elif ivf is None:
        ids = np.arange(x.shape[0], dtype="int64")  # IndexIDMap needs ids
    if t.get("add_n") is not None:
        x = x[: int(t["add_n"])]
        if ids is not None:
            ids = ids[: int(t["add_n"])]
    if not t.get("ondisk"):
        if ids is None:
            index.add(x)
        else:
            index.add_with_ids(x, ids)
        faiss.write_index(index, t["out"])
        return
    # On-disk lists, as FAISS's billion-scale recipe: a trained empty
    # index, a shard holding the vectors, merged into an ivfdata file.
    with tempfile.TemporaryDirectory() as tmp:
        trained = os.path.join(tmp, "trained.index")
        shard = os.path.join(tmp, "shard.index")
        faiss.write_index(index, trained)
        if ids is None:
            index.add(x)
        else:
            index.add_with_ids(x, ids)
        faiss.write_index(index, shard)
        empty = faiss.read_index(trained)
        merge_ondisk(empty, [shard], t["ondisk"])
        faiss.write_index(empty, t["out"])


def search(t):
    index = faiss.read_index(t["index"])
    faiss.extract_index_ivf(index).nprobe = int(t["nprobe"])
    q = read_fvecs(t["queries"])
    D, I = index.search(q, int(t["k"]))
    np.save(t["dist"], D.astype("float32"))
    np.save(t["labels"], I.astype("int64"))


def rq(t):
    m, beam = int(t["M"]), int(t["beam"])
    if "threads" in t:  # 0: every CPU (benchmarks); tests keep one
        faiss.omp_set_num_threads(int(t["threads"]) or os.cpu_count())
    train_s = 0.0
    if t.get("train"):
        x = read_fvecs(t["train"])
        q = faiss.ResidualQuantizer(x.shape[1], m, 8)
        q.max_beam_size = beam
        if "train_type" in t:
            q.train_type = int(t["train_type"])
        q.cp.seed = int(t.get("seed", 1234))
        t0 = time.time()
        q.train(x)
        train_s = time.time() - t0
        np.save(t["codebooks"], faiss.vector_to_array(q.codebooks).reshape(m * 256, -1))
    else:
        cb = np.load(t["codebooks"]).astype("float32")
        q = faiss.ResidualQuantizer(cb.shape[1], m, 8)
        q.max_beam_size = beam
        faiss.copy_array_to_vector(cb.ravel(), q.codebooks)
        q.is_trained = True
    y = read_fvecs(t["encode"])
    codes = q.compute_codes(y)
    np.save(t["codes"], codes.astype("uint8"))
    mse = float(((y - q.decode(codes)) ** 2).sum(1).mean())
    with open(t["out"], "w") as f:
        json.dump({"mse": mse, "train_s": train_s}, f)


def rewrite(t):
    faiss.write_index(faiss.read_index(t["index"]), t["out"])


def info(t):
    index = faiss.read_index(t["index"])
    ivf = faiss.extract_index_ivf(index)
    out = {
        "type": type(index).__name__,
        "d": index.d,
        "nlist": ivf.nlist,
        "ntotal": index.ntotal,
        "metric": "ip" if index.metric_type == faiss.METRIC_INNER_PRODUCT else "l2",
        "code_size": ivf.code_size,
        "is_trained": bool(index.is_trained),
        "quantizer_ntotal": ivf.quantizer.ntotal,
        "quantizer_metric": "ip" if ivf.quantizer.metric_type == faiss.METRIC_INNER_PRODUCT else "l2",
    }
    ivf = faiss.downcast_index(ivf)
    if isinstance(ivf, faiss.IndexIVFResidualQuantizer):
        out["rq"] = {"M": ivf.rq.M, "search_type": ivf.rq.search_type, "max_beam_size": ivf.rq.max_beam_size,
                     "train_type": ivf.rq.train_type, "by_residual": bool(ivf.by_residual)}
    with open(t["out"], "w") as f:
        json.dump(out, f)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    faiss.omp_set_num_threads(1)
    with open(sys.argv[1]) as f:
        tasks = json.load(f)
    ops = {"build": build, "search": search, "rewrite": rewrite, "info": info, "rq": rq}
    for t in tasks:
        ops[t["op"]](t)


if __name__ == "__main__":
    main()

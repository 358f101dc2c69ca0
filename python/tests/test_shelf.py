"""Tests of the Python package: the FAISS tutorial's steps, results equal
to the shelf command's and to FAISS's on the same files, the parallel
build, errors and Ctrl-C.

Run from python/ after python/build.sh:

    /usr/bin/python3 -m unittest

The shelf command is built into a temporary directory (go build), or
taken from $SHELF_BIN. FAISS is Debian's python3-faiss; without it the
FAISS comparisons fail, unless SHELF_SKIP_FAISS=1.
"""

import atexit
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest
import warnings

import numpy as np

import shelf

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(PYTHON_DIR)

D = 32
NB, NQ, NT = 20000, 200, 20000
FACTORY = "IVF64,PQ8"
K = 10


def clustered(n, d, seed, nc=40):
    """n points of a seeded Gaussian mixture (fixed centres), float32."""
    centres = np.random.RandomState(1234).randn(nc, d).astype(np.float32) * 2
    rs = np.random.RandomState(seed)
    lab = rs.randint(nc, size=n)
    return (centres[lab] + rs.randn(n, d).astype(np.float32)).astype(np.float32)


def exact_knn(xb, xq, k, metric):
    """Exact k nearest (ids) by numpy: squared L2, or largest inner product
    / cosine similarity."""
    if metric == "cosine":
        xb = xb / np.linalg.norm(xb, axis=1, keepdims=True)
        xq = xq / np.linalg.norm(xq, axis=1, keepdims=True)
    ip = xq.astype(np.float64) @ xb.T.astype(np.float64)
    if metric == "l2":
        score = (xb.astype(np.float64) ** 2).sum(1)[None, :] - 2 * ip
    else:
        score = -ip
    return np.argsort(score, axis=1, kind="stable")[:, :k]


def recall(I, gt, k):
    """k-recall@k: the share of the true k nearest among the k found."""
    return np.mean([len(set(I[i, :k]) & set(gt[i, :k])) / k for i in range(len(gt))])


def recall1(I, gt, k):
    """1-recall@k: the share of queries whose nearest is among the k found."""
    return np.mean([gt[i, 0] in I[i, :k] for i in range(len(gt))])


DATA = {}


def data():
    if not DATA:
        DATA["xb"] = clustered(NB, D, 1)
        DATA["xq"] = clustered(NQ, D, 2)
        DATA["xt"] = DATA["xb"]
    return DATA["xb"], DATA["xq"]


_SHELF_BIN = []


def shelf_bin():
    """The shelf command: $SHELF_BIN, or built once into a temporary
    directory."""
    if not _SHELF_BIN:
        path = os.environ.get("SHELF_BIN")
        if not path:
            out = tempfile.mkdtemp(prefix="shelf-bin-")
            atexit.register(shutil.rmtree, out, True)
            path = os.path.join(out, "shelf")
            subprocess.run(["go", "build", "-o", path, "./tools/shelf"], cwd=REPO, check=True)
        _SHELF_BIN.append(path)
    return _SHELF_BIN[0]


def run_shelf(*args):
    r = subprocess.run([shelf_bin(), *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError(f"shelf {' '.join(args)}: exit {r.returncode}: {r.stderr}")
    return r.stdout


def read_ivecs(path):
    raw = np.fromfile(path, dtype=np.int32)
    d = int(raw[0])
    return raw.reshape(-1, d + 1)[:, 1:]


def import_faiss_module():
    # Debian's FAISS 1.7.3 loader uses distutils' LooseVersion.
    warnings.filterwarnings("ignore", "distutils Version classes are deprecated", DeprecationWarning)
    try:
        import faiss
    except ImportError:
        if os.environ.get("SHELF_SKIP_FAISS") == "1":
            raise unittest.SkipTest("faiss missing and SHELF_SKIP_FAISS=1")
        raise
    # One thread: these indexes are small, and OpenMP's waiting threads
    # make FAISS's training several times slower on a busy machine.
    faiss.omp_set_num_threads(1)
    return faiss


class Tmp(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="shelf-py-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def path(self, *p):
        return os.path.join(self.tmp, *p)

    def build(self, name, metric="l2", factory=FACTORY, add=True):
        xb, _ = data()
        ix = shelf.create(self.path(name), factory, D, metric=metric)
        self.addCleanup(ix.close)
        ix.train(xb)
        if add:
            ix.add(xb)
        return ix

    def assertSameResults(self, sD, sI, fD, fI, k, what, rtol=1e-4):
        """Shelf's and FAISS's results of kk >= k columns: distances close
        at every rank below k, and the same ids, except that ids of tied
        distances may come in any order: every group of tied results that
        starts before rank k and ends before the last column holds the
        same ids."""
        kk = sI.shape[1]
        close = lambda a, b, tol: abs(float(a) - float(b)) <= tol * max(1.0, abs(float(a)), abs(float(b)))
        for q in range(sI.shape[0]):
            for j in range(k):
                if sI[q, j] == -1 or fI[q, j] == -1:
                    self.assertEqual(sI[q, j], fI[q, j], f"{what}: query {q} rank {j}")
                    continue
                self.assertTrue(close(sD[q, j], fD[q, j], rtol),
                                f"{what}: query {q} rank {j}: Shelf {sD[q, j]}, FAISS {fD[q, j]}")
            j = 0
            while j < k:
                e = j + 1
                while e < kk and sI[q, e] != -1 and close(sD[q, e], sD[q, e - 1], 2e-6):
                    e += 1
                if e < kk or sI[q, kk - 1] == -1:
                    self.assertEqual(sorted(sI[q, j:e]), sorted(fI[q, j:e]),
                                     f"{what}: query {q} ranks {j}..{e - 1}: Shelf {sI[q, j:e]} {sD[q, j:e]}, "
                                     f"FAISS {fI[q, j:e]} {fD[q, j:e]}")
                j = e


class TestTutorial(Tmp):
    """FAISS's tutorial steps: train, add, search; write and read back;
    recall against the exact neighbours."""

    def test_l2(self):
        xb, xq = data()
        ix = self.build("idx")
        self.assertEqual((ix.ntotal, ix.d, ix.metric), (NB, D, "l2"))
        Dd, I = ix.search(xq, K, nprobe=16)
        self.assertEqual((Dd.dtype, I.dtype, Dd.shape, I.shape), (np.float32, np.int64, (NQ, K), (NQ, K)))
        self.assertTrue(np.all(np.diff(Dd, axis=1) >= 0), "distances not sorted ascending")
        gt = exact_knn(xb, xq, K, "l2")
        r1, rk = recall1(I, gt, K), recall(I, gt, K)
        self.assertGreater(r1, 0.9, "1-recall@10")
        self.assertGreater(rk, 0.5, "10-recall@10")
        # More lists probed: no worse.
        _, I64 = ix.search(xq, K, nprobe=64)
        self.assertGreaterEqual(recall(I64, gt, K) + 1e-9, rk)

        # Sanity check of FAISS's tutorial: a base vector finds itself first
        # (up to PQ ties).
        D0, I0 = ix.search(xb[:5], 4, nprobe=16)
        for i in range(5):
            self.assertIn(i, I0[i][D0[i] <= D0[i, 0] + 1e-6])

        # Written and read back: the same results, read-only and read-write.
        ix.close()
        with shelf.open(self.path("idx"), read_only=True) as ro:
            self.assertEqual(ro.ntotal, NB)
            D2, I2 = ro.search(xq, K, nprobe=16)
            np.testing.assert_array_equal(I2, I)
            np.testing.assert_array_equal(D2, Dd)
            st = ro.stats()
            self.assertTrue(st["read_only"])
            self.assertIsNone(st["pending_bytes"])
        with shelf.open(self.path("idx")) as rw:
            first = rw.add(xq)
            self.assertEqual(first, NB)
            self.assertEqual(rw.ntotal, NB + NQ)
            _, I3 = rw.search(xq, 1, nprobe=16)
            self.assertGreater(np.mean(I3[:, 0] == np.arange(NB, NB + NQ)), 0.9)

    def test_memory_budget(self):
        """An index opened with a memory budget reads its lists from disk
        into that many bytes of buffers: the same results as the mapped
        search, reads counted, and a budget too small for one list's
        buffers is an error that says so."""
        xb, xq = data()
        self.build("mem").close()
        with shelf.open(self.path("mem"), read_only=True) as ro:
            D, I = ro.search(xq, K, nprobe=16)
            self.assertEqual(ro.stats()["disk_reads"], 0)
        with shelf.open(self.path("mem"), read_only=True, memory=256 << 10) as ro:
            D2, I2 = ro.search(xq, K, nprobe=16)
            np.testing.assert_array_equal(I2, I)
            np.testing.assert_array_equal(D2, D)
            st = ro.stats()
            self.assertEqual(st["memory_budget"], 256 << 10)
            self.assertGreater(st["disk_reads"], 0)
            self.assertGreater(st["disk_read_bytes"], 0)
        with shelf.open(self.path("mem"), memory=4096) as small:
            with self.assertRaisesRegex(shelf.Error, "memory budget of 4096 bytes"):
                small.search(xq, K, nprobe=16)
        for bad in (0, -1):
            with self.assertRaisesRegex(ValueError, "memory must be a positive"):
                shelf.open(self.path("mem"), memory=bad)

    def test_cosine(self):
        """Cosine: Shelf normalizes vectors and queries itself and returns
        cosine similarities; the exact neighbours are those of the
        normalized vectors."""
        xb, xq = data()
        ix = self.build("cos", metric="cosine")
        Dd, I = ix.search(xq, K, nprobe=16)
        self.assertTrue(np.all(np.diff(Dd, axis=1) <= 0), "similarities not sorted descending")
        self.assertTrue(np.all(Dd <= 1.0001))
        gt = exact_knn(xb, xq, K, "cosine")
        self.assertGreater(recall1(I, gt, K), 0.9)
        self.assertGreater(recall(I, gt, K), 0.5)
        # The FAISS recipe (normalize, then inner product) on the exact
        # neighbours: the similarity Shelf reports is the cosine of the
        # query with the stored (approximated) vector, close to the true one.
        xbn = xb / np.linalg.norm(xb, axis=1, keepdims=True)
        xqn = xq / np.linalg.norm(xq, axis=1, keepdims=True)
        true = np.sum(xqn[:, None, :] * xbn[I], axis=2)
        self.assertLess(np.abs(true - Dd).mean(), 0.05)
        ix.close()
        with shelf.open(self.path("cos"), read_only=True) as ro:
            self.assertEqual(ro.metric, "cosine")
            D2, I2 = ro.search(xq, K, nprobe=16)
            np.testing.assert_array_equal(I2, I)

    def test_padding_like_faiss(self):
        """k beyond what the probed lists hold: id -1 and FAISS's
        +-3.4028235e38 in the empty slots."""
        xb, xq = data()
        for metric, pad in (("l2", np.float32(3.4028235e38)), ("ip", np.float32(-3.4028235e38))):
            ix = self.build("pad-" + metric, metric=metric, add=False)
            ix.add(xb[:50])
            Dd, I = ix.search(xq[:3], 100, nprobe=1)
            self.assertTrue((I == -1).any())
            self.assertTrue(np.all(Dd[I == -1] == pad))
            self.assertFalse(np.any(np.isinf(Dd)))

    def test_no_copy_and_inputs(self):
        """C-contiguous float32 arrays go in as they are; others are
        converted; 1-D arrays are refused."""
        xb, xq = data()
        ix = self.build("in", add=False)
        ix.add(np.asfortranarray(xb[:1000]))  # converted
        ix.add(xb[1000:2000].astype(np.float64))  # converted
        ix.add(xb[2000:3000], ids=np.arange(2000, 3000, dtype=np.int32))  # ids converted
        self.assertEqual(ix.ntotal, 3000)
        self.assertIs(np.ascontiguousarray(xq, dtype=np.float32), xq)  # what search passes on
        D1, I1 = ix.search(xq, 5, nprobe=8)
        D2, I2 = ix.search(xq.astype(np.float64), 5, nprobe=8)
        np.testing.assert_array_equal(I1, I2)
        with self.assertRaises(ValueError):
            ix.search(xq[0], 5)
        empty_D, empty_I = ix.search(xq[:0], 5)
        self.assertEqual(empty_I.shape, (0, 5))


class TestSameAsShelfCommand(Tmp):
    """The Python package and the shelf command read and write the same
    index directories and give the same results."""

    def test_python_index_shelf_search(self):
        xb, xq = data()
        ix = self.build("py")
        ix.close()
        np.save(self.path("q.npy"), xq)
        for nprobe in (4, 16):
            out = self.path(f"ids{nprobe}.ivecs")
            run_shelf("search", "--index", self.path("py"), "--queries", self.path("q.npy"), "--k", str(K),
                      "--nprobe", str(nprobe), "--out", out, "--repeat", "1")
            with shelf.open(self.path("py"), read_only=True) as ro:
                _, I = ro.search(xq, K, nprobe=nprobe)
            np.testing.assert_array_equal(read_ivecs(out), I, f"nprobe {nprobe}")

    def test_shelf_build_python_search(self):
        xb, xq = data()
        np.save(self.path("b.npy"), xb)
        np.save(self.path("q.npy"), xq)
        run_shelf("build", "--data", self.path("b.npy"), "--index", self.path("cmd"), "--factory", FACTORY,
                  "--metric", "cosine", "--quiet")
        out = self.path("ids.ivecs")
        run_shelf("search", "--index", self.path("cmd"), "--queries", self.path("q.npy"), "--k", str(K),
                  "--nprobe", "8", "--out", out, "--repeat", "1")
        with shelf.open(self.path("cmd")) as ix:
            self.assertEqual((ix.ntotal, ix.metric), (NB, "cosine"))
            _, I = ix.search(xq, K, nprobe=8)
            np.testing.assert_array_equal(read_ivecs(out), I)
            st = json.loads(run_shelf("stats", "--index", self.path("cmd"), "--json"))
            mine = ix.stats()
            for key in ("ntotal", "nlist", "factory", "metric", "file_bytes", "used_bytes", "data_bytes", "free_bytes"):
                self.assertEqual(mine[key], st[key], key)


class TestSameAsFAISS(Tmp):
    """The same calls on FAISS: an index built by Shelf and exported, and
    one built by FAISS and imported, return the same ids in both (ties
    aside) and distances within 1e-4."""

    def test_shelf_export_searched_by_faiss(self):
        faiss = import_faiss_module()
        xb, xq = data()
        kk = K + 5
        for metric in ("l2", "ip", "cosine"):
            for ondisk in (False, True):
                what = f"{metric}{' ondisk' if ondisk else ''}"
                with self.subTest(what):
                    if not ondisk:
                        ix = self.build("exp-" + metric, metric=metric)
                    fi = self.path(f"{what}.faissindex".replace(" ", "-"))
                    ix.export_faiss(fi, ondisk=fi + ".ivfdata" if ondisk else None)
                    f = faiss.read_index(fi)
                    self.assertEqual(f.ntotal, NB)
                    for nprobe in (1, 8):
                        sD, sI = ix.search(xq, kk, nprobe=nprobe)
                        faiss.extract_index_ivf(f).nprobe = nprobe
                        q = xq
                        if metric == "cosine":
                            q = xq.copy()
                            faiss.normalize_L2(q)  # FAISS's side of cosine: unit queries, L2 (Shelf's export)
                        fD, fI = f.search(q, kk)
                        if metric == "cosine":
                            fD = 1 - fD / 2  # squared L2 of unit vectors -> cosine similarity
                        self.assertSameResults(sD, sI, fD, fI, K, f"{what} nprobe {nprobe}")
                    del f

    def test_rq_index_exported(self):
        """IVF,RQ from Python: FAISS reads the export as its
        IndexIVFResidualQuantizer (norms in one byte) and finds what
        Shelf finds."""
        faiss = import_faiss_module()
        xb, xq = data()
        kk = K + 5
        ix = self.build("rq", factory="IVF16,RQ3x8")
        self.assertEqual(ix.stats()["factory"], "IVF16,RQ3x8")
        fi = self.path("rq.faissindex")
        ix.export_faiss(fi)
        f = faiss.read_index(fi)
        self.assertEqual(type(f).__name__, "IndexIVFResidualQuantizer")
        self.assertEqual(f.code_size, 4)
        for nprobe in (1, 8):
            sD, sI = ix.search(xq, kk, nprobe=nprobe)
            faiss.extract_index_ivf(f).nprobe = nprobe
            fD, fI = f.search(xq, kk)
            self.assertSameResults(sD, sI, fD, fI, K, f"RQ nprobe {nprobe}")
        del f

    def test_faiss_index_imported(self):
        faiss = import_faiss_module()
        xb, xq = data()
        kk = K + 5
        for metric, fm in (("l2", faiss.METRIC_L2), ("ip", faiss.METRIC_INNER_PRODUCT)):
            with self.subTest(metric):
                # "np": no polysemous training (minutes, and not in Shelf).
                f = faiss.index_factory(D, FACTORY + "np", fm)
                f.train(xb[:10000])
                f.add_with_ids(xb, np.arange(NB, dtype=np.int64) * 3 + 7)
                fi = self.path(f"faiss-{metric}.index")
                faiss.write_index(f, fi)
                with shelf.import_faiss(fi, self.path("imp-" + metric)) as ix:
                    self.assertEqual((ix.ntotal, ix.metric), (NB, metric))
                    for nprobe in (1, 8):
                        faiss.extract_index_ivf(f).nprobe = nprobe
                        fD, fI = f.search(xq, kk)
                        sD, sI = ix.search(xq, kk, nprobe=nprobe)
                        self.assertSameResults(sD, sI, fD, fI, K, f"{metric} nprobe {nprobe}")
                    # The tutorial on both: the same recall against the exact neighbours.
                    gt = exact_knn(xb, xq, K, metric)
                    _, sI = ix.search(xq, K, nprobe=8)
                    _, fI = f.search(xq, K)
                    self.assertAlmostEqual(recall((sI - 7) // 3, gt, K), recall((fI - 7) // 3, gt, K), delta=0.01)
                    if metric == "l2":
                        self.assertGreater(recall1((sI - 7) // 3, gt, K), 0.85)


def _encode_shard(args):
    """A worker process of the parallel build: blocks b with b % n == i."""
    index_dir, data_path, blocks_dir, i, n, block_size = args
    x = np.load(data_path, mmap_mode="r")
    written = 0
    with shelf.open(index_dir, read_only=True) as ix:
        for b in range(i, (len(x) + block_size - 1) // block_size, n):
            written += ix.encode_block(blocks_dir, b, x[b * block_size:(b + 1) * block_size], block_size)
    return written


class TestIndexOperations(Tmp):
    def test_parallel_build(self):
        """Train into an empty index, encode shards in two processes
        (spawned: the Go runtime does not survive fork), merge: the index
        sequential adds make from the same training."""
        xb, xq = data()
        ix = self.build("par", add=False)
        ix.close()
        shutil.copytree(self.path("par"), self.path("seq"))  # the same training
        np.save(self.path("b.npy"), xb)
        bs = 3000
        jobs = [(self.path("par"), self.path("b.npy"), self.path("blocks"), i, 2, bs) for i in range(2)]
        with multiprocessing.get_context("spawn").Pool(2) as pool:
            written = sum(pool.map(_encode_shard, jobs))
        self.assertEqual(written, (NB + bs - 1) // bs)
        self.assertEqual(_encode_shard(jobs[0]), 0)  # done already: nothing to redo
        with shelf.open(self.path("par")) as par, shelf.open(self.path("seq")) as seq:
            rep = par.merge_blocks(self.path("blocks"))
            self.assertEqual((rep["vectors"], rep["blocks"]), (NB, written))
            seq.add(xb)
            Dp, Ip = par.search(xq, K, nprobe=16)
            Ds, Is = seq.search(xq, K, nprobe=16)
            np.testing.assert_array_equal(Ip, Is)
            np.testing.assert_array_equal(Dp, Ds)
            # Merging the same blocks again adds nothing.
            self.assertEqual(par.merge_blocks(self.path("blocks"))["vectors"], 0)
            self.assertEqual(par.ntotal, NB)

    def test_ids_remove_merge_compact(self):
        xb, xq = data()
        a = self.build("a", add=False)
        a.close()
        shutil.copytree(self.path("a"), self.path("b"))
        a = shelf.open(self.path("a"))
        self.addCleanup(a.close)
        b = shelf.open(self.path("b"))
        self.addCleanup(b.close)
        ids = np.arange(NB, dtype=np.int64) * 10 + 5
        self.assertIsNone(a.add(xb, ids=ids))
        _, I = a.search(xq, K, nprobe=16)
        self.assertTrue(np.all((I - 5) % 10 == 0))
        gone = I[:, 0]
        self.assertEqual(a.remove_ids(gone), len(set(gone.tolist())))
        self.assertEqual(a.ntotal, NB - len(set(gone.tolist())))
        _, I2 = a.search(xq, K, nprobe=16)
        self.assertFalse(np.isin(I2, gone).any())
        self.assertEqual(a.remove_ids([1, 2, 3]), 0)

        b.add(xb[:1000])
        with self.assertRaisesRegex(shelf.Error, "duplicate ids"):
            b.merge_from(b)
        before, shift = a.ntotal, a.stats()["next_id"]
        self.assertEqual(shift, ids[-1] + 1)
        rep = a.merge_from(b, id_shift="auto")
        self.assertEqual(rep["vectors"], 1000)
        self.assertEqual(a.ntotal, before + 1000)
        self.assertEqual(b.ntotal, 1000)
        # b's vectors are in, numbered after a's ids.
        _, I3 = a.search(xb[:100], K, nprobe=16)
        self.assertGreater(np.mean([shift + i in I3[i] for i in range(100)]), 0.8)

        st = a.stats()
        c = a.compact()
        self.assertEqual(c["entries"], a.ntotal)
        self.assertLessEqual(c["bytes_after"], c["bytes_before"])
        self.assertEqual(a.stats()["data_bytes"], st["data_bytes"])
        _, I4 = a.search(xq, K, nprobe=16)
        self.assertTrue(np.isin(I4[I4 >= 0], np.concatenate([ids, np.arange(shift, shift + 1000)])).all())

    def test_in_memory(self):
        xb, xq = data()
        ix = shelf.create(None, FACTORY, D)
        with ix:
            ix.train(xb)
            ix.add(xb)
            st = ix.stats()
            self.assertEqual(st["dir"], "")
            self.assertNotIn("file_bytes", st)
            ix.export_faiss(self.path("mem.index"))
            _, I = ix.search(xq, K)
        with shelf.import_faiss(self.path("mem.index"), self.path("from-mem")) as ix2:
            _, I2 = ix2.search(xq, K)
            np.testing.assert_array_equal(I2, I)


class TestErrors(Tmp):
    def test_errors(self):
        xb, xq = data()
        ix = shelf.create(self.path("e"), FACTORY, D)
        self.addCleanup(ix.close)
        with self.assertRaisesRegex(shelf.Error, "not trained"):
            ix.add(xb[:10])
        with self.assertRaisesRegex(shelf.Error, r"training vectors of dimension 16, the index has dimension 32"):
            ix.train(xb[:, :16])
        self.assertFalse(os.path.exists(self.path("e")))
        ix.train(xb)
        for call in (lambda: ix.add(xb[:10, :31]), lambda: ix.search(xq[:, :8], 5),
                     lambda: ix.encode_block(self.path("bl"), 0, xb[:10, :2], 10)):
            with self.assertRaises(shelf.Error) as cm:
                call()
            self.assertRegex(str(cm.exception), r"of dimension \d+, the index has dimension 32")
        with self.assertRaisesRegex(shelf.Error, "k = 0"):
            ix.search(xq, 0)
        with self.assertRaisesRegex(shelf.Error, "results one search returns"):
            ix.search(xq, 1 << 30)
        with self.assertRaisesRegex(shelf.Error, "nprobe = 0"):
            ix.search(xq, 1, nprobe=0)
        with self.assertRaisesRegex(shelf.Error, "NaN"):
            bad = xb[:10].copy()
            bad[3, 4] = np.nan
            ix.add(bad)
        with self.assertRaisesRegex(shelf.Error, "already trained"):
            ix.train(xb)
        with self.assertRaises(ValueError):
            ix.add(xb[:5], ids=np.arange(4))
        with self.assertRaisesRegex(shelf.Error, "-1"):
            ix.add(xb[:2], ids=[0, -1])
        with self.assertRaisesRegex(shelf.Error, "headroom"):
            ix.compact(headroom=-1)
        with self.assertRaisesRegex(shelf.Error, "locked|lock"):
            shelf.open(self.path("e"))
        with self.assertRaisesRegex(shelf.Error, "holds an index"):
            shelf.create(self.path("e"), FACTORY, D)
        with self.assertRaisesRegex(shelf.Error, "not an index directory"):
            shelf.open(self.path("nothing"))
        with self.assertRaisesRegex(shelf.Error, "metric"):
            shelf.create(self.path("m"), FACTORY, D, metric="hamming")
        with self.assertRaisesRegex(shelf.Error, "IVF"):
            shelf.create(self.path("m"), "HNSW32", D)
        with shelf.open(self.path("e"), read_only=True) as ro:
            with self.assertRaisesRegex(shelf.Error, "read-only"):
                ro.add(xb[:10])
        ix.close()
        ix.close()  # a second close does nothing
        with self.assertRaisesRegex(shelf.Error, "closed"):
            ix.search(xq, 1)
        self.assertTrue(issubclass(shelf.Error, Exception))


INTERRUPT_CHILD = textwrap.dedent("""
    import json, os, signal, sys, threading, time
    import numpy as np
    import shelf

    def interrupt_soon():
        threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()

    def interrupted(call):
        t0 = time.time()
        interrupt_soon()
        try:
            call()
        except KeyboardInterrupt as e:
            return " ".join([str(e)] + getattr(e, "__notes__", [])), time.time() - t0 - 0.5
        sys.exit("not interrupted: the call ended before the signal")

    d = 8
    rs = np.random.RandomState(0)
    ix = shelf.create(sys.argv[1], "IVF64,PQ4", d)
    ix.train(rs.rand(20000, d).astype("float32"))
    big = rs.rand(4_000_000, d).astype("float32")

    msg, late = interrupted(lambda: ix.add(big))
    n = ix.ntotal
    print(json.dumps({"call": "add", "late": late, "msg": msg}), flush=True)
    assert n % 65536 == 0 and 0 < n < len(big), n
    assert f"{n} of the {len(big)} vectors were added" in msg, msg

    msg, late = interrupted(lambda: ix.search(big, 10, nprobe=8))
    print(json.dumps({"call": "search", "late": late, "msg": msg}), flush=True)
    assert "queries searched" in msg, msg
    D, I = ix.search(big[:5], 1, nprobe=64)  # still usable
    assert I.shape == (5, 1)
    ix.close()

    slow = shelf.create(sys.argv[2], "IVF4096,PQ4", d)
    msg, late = interrupted(lambda: slow.train(big[:400_000]))
    print(json.dumps({"call": "train", "late": late, "msg": msg}), flush=True)
    assert not slow.is_trained and not os.path.exists(sys.argv[2])
    assert "thrown away" in msg, msg
    try:
        slow.search(big[:1], 1)  # the training runs on: the index is not to be touched
        sys.exit("a search ran during a training")
    except shelf.Error as e:
        assert "being trained" in str(e), e
    slow.close()  # the index closes when the abandoned training ends
    print(json.dumps({"call": "ok"}), flush=True)
""")


class TestCtrlC(Tmp):
    def test_interrupt(self):
        """SIGINT during add, search and train raises KeyboardInterrupt
        promptly; add stops between commits, and the index stays usable."""
        env = dict(os.environ, PYTHONPATH=PYTHON_DIR + os.pathsep + os.environ.get("PYTHONPATH", ""))
        r = subprocess.run([sys.executable, "-c", INTERRUPT_CHILD, self.path("i"), self.path("slow")],
                           env=env, capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        got = {o["call"]: o for o in map(json.loads, r.stdout.splitlines())}
        self.assertIn("ok", got, r.stdout)
        for call in ("add", "search", "train"):
            self.assertLess(got[call]["late"], 5.0, f"{call}: KeyboardInterrupt {got[call]['late']:.2f} s after the signal")


if __name__ == "__main__":
    unittest.main()

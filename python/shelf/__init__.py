"""Shelf from Python: on-disk IVF-PQ indexes with FAISS's calls.

    import numpy as np, shelf
    ix = shelf.create("idx", "IVF1024,PQ16", 128)    # metric="l2" | "ip" | "cosine"
    ix.train(xt)                                     # now idx/ is an index, empty
    ix.add(xb)                                       # ids 0, 1, ... (or ids=...)
    D, I = ix.search(xq, 10, nprobe=16)              # float32 and int64, nq x k, -1 padded
    ix.close()
    ix = shelf.open("idx", read_only=True)

The package is a thin layer over Shelf's Go library (capi/, built as
_libshelf.so with `go build -buildmode=c-shared`; python/build.sh), loaded
with ctypes: it needs numpy and nothing else. The library is looked for
next to this file, or at $SHELF_LIB.

Arrays: vectors are 2-D (n, d) float32 arrays, C-contiguous; others are
converted with np.ascontiguousarray, and those already in that form are
passed to Go by pointer, without a copy (a read-only np.load(...,
mmap_mode="r") array too). Search results are new arrays.

Threads: ctypes releases the GIL for the duration of every call into the
library, so searches from several Python threads run in parallel, and
each call uses all cores itself. Searches may run alongside one writer
(add, merge, remove, compaction) on the same index.

Ctrl-C: in the main thread, long calls run in a helper thread while the
main thread waits, so a KeyboardInterrupt arrives at once. Then:
  - add, search and merge_blocks are asked to stop at their next safe
    point, and the KeyboardInterrupt is raised when they did, carrying
    what was done: add stops between commits of 65,536 vectors (those
    committed stay, index.ntotal tells), search between blocks of 1,024
    queries (no results), merge_blocks after a commit of up to 1,000
    blocks (whole commits only). A second Ctrl-C stops waiting.
  - train cannot be stopped inside (k-means and PQ training run to their
    end): the KeyboardInterrupt is raised at once, the training goes on
    in the background and is then thrown away; the index stays untrained
    and its directory is not made. Until the training ends, calls on the
    index raise shelf.Error (d, metric, ntotal and is_trained answer).
  - merge_from, compact, remove_ids, encode_block, export_faiss and
    import_faiss are single commits or atomic file writes: the
    KeyboardInterrupt is raised at once and the call runs to its end in
    the background (the result stays; an imported index is closed).
While a call runs on in the background, close() returns at once and the
index is closed when that call ends (until then its directory stays
locked for writers). Calls from other threads run directly (Python
delivers signals to the main thread only).

Processes: the Go runtime does not survive fork(). Use multiprocessing's
"spawn" (or "forkserver") start method for workers that call shelf; a
call in a forked child of a process that had loaded the library raises
shelf.Error.

Errors of the library raise shelf.Error, whose message is the Go error's.
"""

import ctypes
import json
import operator
import os
import queue
import threading

import numpy as np

__all__ = ["Error", "Index", "create", "open", "import_faiss", "MAX_RESULTS"]

#: The most (distance, id) pairs one search returns (nq * k).
MAX_RESULTS = 1 << 28


class Error(Exception):
    """An error of the Shelf library; its message is the Go error's."""


_OK, _ERROR, _INTERRUPTED = 0, 1, 2

_i64 = ctypes.c_int64
_int = ctypes.c_int
_dbl = ctypes.c_double
_ptr = ctypes.c_void_p
_str = ctypes.c_char_p
_out = ctypes.POINTER(ctypes.c_void_p)


def _load():
    path = os.environ.get("SHELF_LIB") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "_libshelf.so")
    try:
        lib = ctypes.CDLL(path)  # CDLL: the GIL is released during each call
    except OSError as e:
        raise ImportError(f"shelf: cannot load the library {path}: {e} (build it with python/build.sh, or set SHELF_LIB)") from e
    sig = {
        "shelf_free": (None, [_ptr]),
        "shelf_token_new": (_i64, []),
        "shelf_token_cancel": (None, [_i64]),
        "shelf_token_free": (None, [_i64]),
        "shelf_check_results": (_int, [_i64, _i64, _out]),
        "shelf_create": (_int, [_str, _str, _i64, _str, ctypes.POINTER(_i64), _out]),
        "shelf_open": (_int, [_str, _int, _i64, ctypes.POINTER(_i64), _out]),
        "shelf_import_faiss": (_int, [_str, _str, _int, ctypes.POINTER(_i64), _out]),
        "shelf_close": (_int, [_i64, _out]),
        "shelf_info": (_int, [_i64, _out, _out]),
        "shelf_ntotal": (_int, [_i64, ctypes.POINTER(_i64), _out]),
        "shelf_stats": (_int, [_i64, _out, _out]),
        "shelf_train": (_int, [_i64, _ptr, _i64, _i64, _i64, _i64, _out]),
        "shelf_add": (_int, [_i64, _ptr, _i64, _i64, _ptr, ctypes.POINTER(_i64), ctypes.POINTER(_i64), _i64, _out]),
        "shelf_search": (_int, [_i64, _ptr, _i64, _i64, _i64, _i64, _ptr, _ptr, _i64, _out]),
        "shelf_merge_blocks": (_int, [_i64, _str, _i64, _int, _int, _dbl, _out, _i64, _out]),
        "shelf_merge_from": (_int, [_i64, _i64, _i64, _int, _int, _dbl, _out, _i64, _out]),
        "shelf_compact": (_int, [_i64, _dbl, _out, _out]),
        "shelf_remove_ids": (_int, [_i64, _ptr, _i64, ctypes.POINTER(_i64), _out]),
        "shelf_export_faiss": (_int, [_i64, _str, _str, _int, _out]),
        "shelf_encode_block": (_int, [_i64, _str, _i64, _i64, _ptr, _i64, _i64, ctypes.POINTER(_int), _out]),
    }
    for name, (res, args) in sig.items():
        f = getattr(lib, name)
        f.restype, f.argtypes = res, args
    return lib


_lib_ = _load()
_pid = os.getpid()


def _lib():
    if os.getpid() != _pid:
        raise Error(f"shelf: this process was forked from process {_pid}, which had loaded the Shelf library, "
                    "and the Go runtime does not survive fork(): start workers with multiprocessing's 'spawn' "
                    "or 'forkserver' method")
    return _lib_


def _take(p):
    """The string the library returned at p, which is then freed."""
    if not p.value:
        return ""
    try:
        return ctypes.string_at(p.value).decode("utf-8", "replace")
    finally:
        _lib_.shelf_free(p.value)


class _Result:
    """What a call into the library left: status, error message, value."""

    __slots__ = ("status", "message", "value")

    def __init__(self, status, message, value):
        self.status, self.message, self.value = status, message, value


def _call(f, *args):
    """Calls f(*args, &err) and returns its status and error message."""
    err = ctypes.c_void_p()
    st = f(*args, ctypes.byref(err))
    return st, (_take(err) if st != _OK else "")


def _raise(r):
    if r.status == _OK:
        return r.value
    if r.status == _INTERRUPTED:
        raise KeyboardInterrupt(r.message)
    raise Error(r.message)


class _Worker(threading.Thread):
    """A helper thread that runs the main thread's long calls, one at a
    time; kept for the next call once idle (a call from a thread new to
    the Go runtime costs it a thread's set-up, a few hundred us)."""

    def __init__(self):
        super().__init__(name="shelf-call", daemon=True)
        self.jobs = queue.SimpleQueue()
        self.start()

    def run(self):
        while True:
            self.jobs.get()()
            with _idle_lock:
                _idle.append(self)


_idle = []  # workers waiting for a job
_idle_lock = threading.Lock()


def _submit(job):
    """Runs job on an idle worker, or a new one when all are busy (with
    calls left to end in the background)."""
    with _idle_lock:
        w = _idle.pop() if _idle else None
    if w is None:
        w = _Worker()
    w.jobs.put(job)


def _run(body, stoppable, cleanup=None, note=None):
    """Runs body(token) -> _Result, a long call into the library, so that
    Ctrl-C is honoured (see the module's documentation): stoppable calls
    are cancelled through the token and waited for; the others are left
    to finish in the background, where cleanup(value), if given, undoes
    what nobody will receive, and the KeyboardInterrupt gets the note
    that says what becomes of the call."""
    lib = _lib()
    tok = lib.shelf_token_new()
    if threading.current_thread() is not threading.main_thread():
        try:
            return _raise(body(tok))
        finally:
            lib.shelf_token_free(tok)
    lock = threading.Lock()
    finished = threading.Event()  # not Thread.join: an interrupted join can leave is_alive() wrong
    state = {"done": False, "abandoned": False, "result": None}

    def work():
        try:
            r = body(tok)
        except BaseException as e:  # a bug in this module: reported to the caller
            r = _Result(_ERROR, f"shelf: {e!r}", None)
        with lock:
            state["done"], state["result"] = True, r
            abandoned = state["abandoned"]
        finished.set()
        if abandoned:
            lib.shelf_token_free(tok)
            if cleanup is not None and r.status == _OK:
                cleanup(r.value)

    _submit(work)
    try:
        while not finished.wait(0.25):
            pass
    except KeyboardInterrupt as interrupt:
        lib.shelf_token_cancel(tok)
        if stoppable:
            try:
                while not finished.wait(0.25):
                    pass
            except KeyboardInterrupt:
                pass  # a second Ctrl-C: stop waiting
        with lock:
            done, r = state["done"], state["result"]
            if not done:
                state["abandoned"] = True
        if not done:
            if hasattr(interrupt, "add_note"):  # Python 3.11
                if stoppable:
                    note = "shelf: the call stops at its next safe point, in the background"
                interrupt.add_note(note or "shelf: the call runs on to its end in the background")
            raise interrupt
        lib.shelf_token_free(tok)
        if r.status == _INTERRUPTED:
            raise KeyboardInterrupt(r.message) from None
        if r.status != _OK:
            raise Error(r.message) from None
        if cleanup is not None:
            cleanup(r.value)
        raise interrupt
    lib.shelf_token_free(tok)
    return _raise(state["result"])


def _path(p, what):
    if p is None:
        raise TypeError(f"shelf: {what} must be a path, not None")
    return os.fsencode(p)


def _int64(v, what):
    v = operator.index(v)
    if not -(1 << 63) <= v < (1 << 63):
        raise OverflowError(f"shelf: {what} = {v} does not fit in 64 bits")
    return v


def _matrix(x, what):
    """x as a C-contiguous float32 (n, d) array: x itself when it is one."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"shelf: {what} must be a 2-D array (n, d), not of shape {x.shape}")
    return x


def _ids(ids, n, what="ids"):
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if ids.ndim != 1 or (n is not None and ids.shape[0] != n):
        want = f"({n},)" if n is not None else "(n,)"
        raise ValueError(f"shelf: {what} must be of shape {want}, not {ids.shape}")
    return ids


def _json(status_msg, p):
    st, msg = status_msg
    if st != _OK:
        return _Result(st, msg, None)
    return _Result(_OK, "", json.loads(_take(p)))


def create(dir, factory, d, metric="l2"):
    """A new, untrained index for vectors of dimension d, described by a
    FAISS factory string ("IVF1024,PQ16", "IVF1024,Flat"); metric "l2"
    (squared L2 distances), "ip" (inner products) or "cosine" (vectors
    and queries are normalized by Shelf; cosine similarities come back).

    Nothing is written until train(), which makes dir an index directory
    holding no vectors (dir must not hold an index or other files; it is
    checked now). dir None keeps the index in memory (export_faiss saves
    it)."""
    lib = _lib()
    h = _i64()
    st, msg = _call(lib.shelf_create, None if dir is None else _path(dir, "dir"), factory.encode(),
                    _int64(d, "d"), metric.encode(), ctypes.byref(h))
    _raise(_Result(st, msg, None))
    return Index(h.value)


def open(dir, read_only=False, memory=None):
    """Opens an index directory. read_only=True opens it for searching,
    also while another process writes it (one writer at a time).

    memory (bytes) bounds what searches take for the lists: they are read
    from disk with direct I/O into at most that many bytes of buffers
    (which also keep the most recently read lists), never through the
    memory map or the page cache: an index larger than RAM, or beside a
    service that keeps most of it. The model, the queries and the results
    come on top. None: lists are read through the memory map.
    stats()["disk_reads"] and ["disk_read_bytes"] count the reads."""
    lib = _lib()
    h = _i64()
    mem = 0 if memory is None else _int64(memory, "memory")
    if memory is not None and mem <= 0:
        raise ValueError(f"shelf: memory must be a positive number of bytes, not {memory}")
    st, msg = _call(lib.shelf_open, _path(dir, "dir"), 1 if read_only else 0, mem, ctypes.byref(h))
    _raise(_Result(st, msg, None))
    return Index(h.value)


def import_faiss(path, dir, cosine=False):
    """Imports a FAISS IndexIVFPQ / IndexIVFFlat file (faiss.write_index;
    lists inline or in an OnDiskInvertedLists file) into the new index
    directory dir, and opens it. cosine=True makes it a cosine index (for
    files of normalized vectors)."""
    lib = _lib()
    p, dd = _path(path, "path"), _path(dir, "dir")

    def body(_tok):
        h = _i64()
        st, msg = _call(lib.shelf_import_faiss, p, dd, 1 if cosine else 0, ctypes.byref(h))
        return _Result(st, msg, h.value)

    def close(h):
        _call(lib.shelf_close, h)

    return Index(_run(body, stoppable=False, cleanup=close))


class Index:
    """An open index: use create(), open() or import_faiss()."""

    def __init__(self, handle):
        self._h = handle
        info = self._info()
        self._d = info["d"]

    def _handle(self):
        if self._h is None:
            raise Error("shelf: index closed")
        return self._h

    def _info(self):
        out = ctypes.c_void_p()
        r = _json(_call(_lib().shelf_info, self._handle(), ctypes.byref(out)), out)
        return _raise(r)

    @property
    def d(self):
        """The dimension of the vectors."""
        return self._d

    @property
    def ntotal(self):
        """The number of vectors in the index."""
        n = _i64()
        _raise(_Result(*_call(_lib().shelf_ntotal, self._handle(), ctypes.byref(n)), None))
        return n.value

    @property
    def is_trained(self):
        return self._info()["is_trained"]

    @property
    def metric(self):
        """"l2", "ip" or "cosine"."""
        return self._info()["metric"]

    def stats(self):
        """The index's parameters (d, nlist, m, metric, factory, ntotal,
        next_id, ...) and, for an index directory, its storage: file,
        used, data and free bytes, list sizes (size_histogram[i] counts
        the lists of size in [2^(i-1), 2^i)), as `shelf stats --json`
        names them."""
        out = ctypes.c_void_p()
        return _raise(_json(_call(_lib().shelf_stats, self._handle(), ctypes.byref(out)), out))

    def train(self, x, seed=1):
        """Trains the coarse quantizer (k-means) and the PQ on x (n, d),
        and for an index created with a directory makes that directory an
        index holding no vectors. Ctrl-C cannot stop a training inside; see
        the module's documentation."""
        x = _matrix(x, "training vectors")
        lib, h, seed = _lib(), self._handle(), _int64(seed, "seed")

        def body(tok):
            return _Result(*_call(lib.shelf_train, h, x.ctypes.data, x.shape[0], x.shape[1], seed, tok), None)

        _run(body, stoppable=False, note="shelf: a training cannot be stopped; it runs on in the background "
             "and will be thrown away (the index stays untrained, its directory is not made)")

    def add(self, x, ids=None):
        """Adds the vectors x (n, d), with sequential ids (after every id
        the index ever held; the first is returned) or with ids (n,)
        int64 (>= 0; None is returned). Adds commit every 65,536 vectors."""
        x = _matrix(x, "vectors")
        n = x.shape[0]
        idp = None
        if ids is not None:
            ids = _ids(ids, n)
            idp = ids.ctypes.data
        lib, h = _lib(), self._handle()

        def body(tok):
            first, added = _i64(), _i64()
            st, msg = _call(lib.shelf_add, h, x.ctypes.data, n, x.shape[1], idp, ctypes.byref(first),
                            ctypes.byref(added), tok)
            return _Result(st, msg, first.value)

        first = _run(body, stoppable=True)
        return None if ids is not None else first

    def search(self, q, k, nprobe=16):
        """The k nearest vectors of each query of q (nq, d) among the nprobe
        lists nearest to it, as FAISS returns them: D (nq, k) float32
        (squared L2 distances, or inner products / cosine similarities,
        best first) and I (nq, k) int64 ids; empty slots hold id -1 and
        distance 3.4028235e38 (-3.4028235e38 when larger is better)."""
        q = _matrix(q, "queries")
        nq = q.shape[0]
        k, nprobe = _int64(k, "k"), _int64(nprobe, "nprobe")
        lib, h = _lib(), self._handle()
        _raise(_Result(*_call(lib.shelf_check_results, nq, k), None))
        D = np.empty((nq, k), dtype=np.float32)
        I = np.empty((nq, k), dtype=np.int64)

        def body(tok):
            return _Result(*_call(lib.shelf_search, h, q.ctypes.data, nq, q.shape[1], k, nprobe,
                                  D.ctypes.data, I.ctypes.data, tok), None)

        _run(body, stoppable=True)
        return D, I

    @staticmethod
    def _shift(id_shift):
        if isinstance(id_shift, str):
            if id_shift != "auto":
                raise ValueError(f"shelf: id_shift {id_shift!r}: want an integer or 'auto'")
            return 0, 1
        return _int64(id_shift, "id_shift"), 0

    def merge_blocks(self, blocks_dir, id_shift=0, allow_duplicate_ids=False, headroom=0.0):
        """Merges the code blocks of blocks_dir (encode_block, or `shelf
        encode`, with this index's training): the reduce step of the
        parallel build. id_shift is added to the block ids (row numbers);
        "auto" numbers them after the ids the index holds. headroom leaves
        that share of each list's size free for later adds. Returns the
        report: vectors, blocks merged, notes (e.g. missing blocks)."""
        lib, h, bd = _lib(), self._handle(), _path(blocks_dir, "blocks_dir")
        shift, auto = self._shift(id_shift)

        def body(tok):
            out = ctypes.c_void_p()
            return _json(_call(lib.shelf_merge_blocks, h, bd, shift, auto, 1 if allow_duplicate_ids else 0,
                               float(headroom), ctypes.byref(out), tok), out)

        return _run(body, stoppable=True)

    def merge_from(self, other, id_shift=0, allow_duplicate_ids=False, headroom=0.0):
        """Merges every vector of other (an Index of the same training) into
        this index, in one commit (FAISS merge_from; other is unchanged).
        id_shift as for merge_blocks. Returns the report."""
        if not isinstance(other, Index):
            raise TypeError("shelf: merge_from takes a shelf.Index")
        lib, h, o = _lib(), self._handle(), other._handle()
        shift, auto = self._shift(id_shift)

        def body(tok):
            out = ctypes.c_void_p()
            return _json(_call(lib.shelf_merge_from, h, o, shift, auto, 1 if allow_duplicate_ids else 0,
                               float(headroom), ctypes.byref(out), tok), out)

        return _run(body, stoppable=False)

    def compact(self, headroom=0.0):
        """Rewrites the lists contiguously into a new data file, leaving
        headroom (a share of each list's size) free in every slot; returns
        bytes_before, bytes_after and entries."""
        lib, h = _lib(), self._handle()

        def body(_tok):
            out = ctypes.c_void_p()
            return _json(_call(lib.shelf_compact, h, float(headroom), ctypes.byref(out)), out)

        return _run(body, stoppable=False)

    def remove_ids(self, ids):
        """Removes the vectors with these ids; returns how many were found."""
        ids = _ids(np.atleast_1d(ids), None)
        lib, h = _lib(), self._handle()

        def body(_tok):
            n = _i64()
            st, msg = _call(lib.shelf_remove_ids, h, ids.ctypes.data, ids.shape[0], ctypes.byref(n))
            return _Result(st, msg, n.value)

        return _run(body, stoppable=False)

    def export_faiss(self, path, ondisk=None, cosine_as_ip=False):
        """Writes the index as a FAISS file (faiss.read_index reads it):
        IndexIVFPQ / IndexIVFFlat, lists inline, or with ondisk in that
        OnDiskInvertedLists data file (the index file names it as given).
        A cosine index becomes METRIC_L2 over unit vectors (normalize the
        queries; cosine = 1 - d/2), or METRIC_INNER_PRODUCT with
        cosine_as_ip (a worse ranking for PQ codes)."""
        lib, h, p = _lib(), self._handle(), _path(path, "path")
        od = None if ondisk is None else _path(ondisk, "ondisk")

        def body(_tok):
            return _Result(*_call(lib.shelf_export_faiss, h, p, od, 1 if cosine_as_ip else 0), None)

        _run(body, stoppable=False)

    def encode_block(self, blocks_dir, number, x, block_size):
        """Encodes x, rows number*block_size on of the data (block_size
        rows, fewer in the last block), as code block `number` in
        blocks_dir, ids the row numbers: the map step of the parallel
        build (any number of processes, each with the trained index open
        read-only), merged by merge_blocks. Returns False, without work,
        when that block file is there already, complete and of this
        training (so a rerun resumes)."""
        x = _matrix(x, "vectors")
        lib, h, bd = _lib(), self._handle(), _path(blocks_dir, "blocks_dir")
        number, block_size = _int64(number, "number"), _int64(block_size, "block_size")

        def body(_tok):
            w = _int()
            st, msg = _call(lib.shelf_encode_block, h, bd, number, block_size, x.ctypes.data, x.shape[0],
                            x.shape[1], ctypes.byref(w))
            return _Result(st, msg, bool(w.value))

        return _run(body, stoppable=False)

    def close(self):
        """Closes the index (its directory's writer lock is released); a
        second close does nothing."""
        if self._h is None:
            return
        h, self._h = self._h, None
        _raise(_Result(*_call(_lib().shelf_close, h), None))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            if getattr(self, "_h", None) is not None and os.getpid() == _pid:
                h, self._h = self._h, None
                _call(_lib_.shelf_close, h)
        except Exception:
            pass

    def __repr__(self):
        if self._h is None:
            return "<shelf.Index closed>"
        i = self._info()
        where = i["dir"] or i.get("pending_dir") or "in memory"
        return f"<shelf.Index {i['factory']} {i['metric']} d={i['d']} ntotal={i['ntotal']} {where}>"

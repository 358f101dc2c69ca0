#!/usr/bin/env python3
"""Baseline write throughput of FAISS's on-disk inverted lists.

Measures faiss.OnDiskInvertedLists directly (no index, no training, no
quantizer) so the numbers are the cost of the storage layer alone, which is
what shelf's own list store has to be compared against.

Usage (Debian's FAISS, not a pip wheel, hence the explicit interpreter):

    apt-get install -y python3-faiss python3-numpy
    /usr/bin/python3 bench/faiss_ondisk.py [--dir DIR] [--n 1000000]
        [--nlist 1024] [--code-size 16] [--batch 1000] [--seed 1] [--json]

Measurements (each on a fresh file in --dir, deleted afterwards):

  add_one_list       n/batch calls of add_entries, every batch of --batch
                     entries lands in ONE random list (a caller appending a
                     batch of vectors that all belong to the same list).
  add_spread         batches of --batch entries, each entry in a random list;
                     the batch is grouped by list and add_entries is called
                     once per list present in the batch.
  add_per_entry_cpp  the same random assignment, appended one entry at a time
                     by C++ (IndexIVF::add_sa_codes -> invlists->add_entry),
                     which is the call pattern IndexIVF::add_core uses.  It is
                     the only variant whose inner loop is not Python: the two
                     above pay one SWIG call per add_entries, and add_spread
                     makes roughly 0.6 calls per entry at the defaults.
  merge              S=4 in-memory ArrayInvertedLists of n/4 entries each
                     (filled untimed) merged into an empty on-disk file with
                     OnDiskInvertedLists::merge_from, the bulk path used by
                     faiss.contrib.ondisk.merge_ondisk.
  ref_array_*        add_one_list / add_spread against an in-memory
                     ArrayInvertedLists: same Python loop, no file.  The gap
                     between ref_array_X and X is what the mmap'd file costs.

Throughput: entries/s and MB/s with MB = 1e6 bytes and bytes = n *
(code_size + 8), i.e. payload (codes + int64 ids), not file size.  Data
generation, grouping and pointer set-up are outside the timed region.

Durability: FAISS never calls fsync/msync/fdatasync.  Everything it writes goes
through a MAP_SHARED mapping, so "done" only means "in the page cache".  For
each on-disk variant we therefore also time an fsync of the file (on Linux
fsync writes back dirty MAP_SHARED pages, msync is not needed) and report the
throughput both without and with it, plus the fsync of the directory that a
newly created file needs to survive a crash.

How FAISS 1.7.3 manages the file (the file/alloc/free/resizes columns):
  - Each list owns one slot of capacity = next power of two >= its size,
    laid out as [codes][ids].  Growing past capacity frees the slot and
    takes a new one (first fit over a sorted std::list of free slots,
    coalescing neighbours on free), then copies the list over.
  - When no free slot fits, the file size doubles (starting from 32 bytes,
    repeated until the new space fits the request) via munmap + truncate +
    mmap of the whole file, not mremap, and prints "resizing ..." to stdout.
    truncate() leaves the new space sparse; only touched pages get blocks.
  - The file never shrinks and freed slots are never hole-punched, so they
    stay allocated on disk.
  - merge_from only works on an empty destination; it sizes the file once to
    the exact total and copies list by list in an OpenMP loop.
"""

import argparse
import ctypes
import json
import os
import platform
import shutil
import sys
import tempfile
import time

import numpy as np

import faiss

N_SOURCES = 4  # number of shards merged in the "merge" measurement
MB = 1e6


# --------------------------------------------------------------------------
# C stdout capture
#
# OnDiskInvertedLists::update_totsize printf()s "resizing FILE to N bytes" on
# C stdout every time it grows the file.  That would corrupt --json output, and
# it is also the only way to observe how often the file is grown.  So fd 1 is
# pointed at a log file for the whole run, our own output goes to a duplicate
# of the original stdout, and the log is read back after each measurement.
# --------------------------------------------------------------------------

_libc = ctypes.CDLL(None)


class CStdoutCapture:
    def __init__(self, path):
        sys.stdout.flush()
        self.real_stdout = os.fdopen(os.dup(1), "w", buffering=1)
        self.path = path
        self.log_fd = os.open(path, os.O_CREAT | os.O_TRUNC | os.O_RDWR, 0o644)
        os.dup2(self.log_fd, 1)
        self.pos = 0

    def drain(self):
        """Return the C stdout lines printed since the previous drain."""
        _libc.fflush(None)  # C stdio buffers fully when fd 1 is a file
        with open(self.path, "r") as f:
            f.seek(self.pos)
            text = f.read()
            self.pos = f.tell()
        return text.splitlines()

    def close(self):
        _libc.fflush(None)
        sys.stdout.flush()
        os.dup2(self.real_stdout.fileno(), 1)
        os.close(self.log_fd)
        os.unlink(self.path)


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def machine_info(scratch):
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "bench": "machine",
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "faiss_version": faiss.__version__,
        "numpy_version": np.__version__,
        "omp_max_threads": faiss.omp_get_max_threads(),
        "scratch_dir": scratch,
        "scratch_fs": filesystem_of(scratch),
    }


def filesystem_of(path):
    """Filesystem type of the mount holding path (longest mount-point prefix)."""
    path = os.path.realpath(path)
    best, fstype = "", "unknown"
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                mnt, typ = parts[1], parts[2]
                if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(
                    mnt
                ) > len(best):
                    best, fstype = mnt, typ
    except OSError:
        pass
    return fstype


def timed_fsync(path):
    """Seconds to fsync path (file or directory)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        t0 = time.perf_counter()
        os.fsync(fd)
        return time.perf_counter() - t0
    finally:
        os.close(fd)


def verify(invlists, args, data, entry_list):
    """Full content check (untimed): every entry present exactly once, in the
    list it was added to, with its code, and in insertion order.

    The order check matters: resize_locked() frees a list's slot before
    allocating the bigger one and then copies codes and ids out of the freed
    region, so an overlapping first-fit placement would show up here.
    Every variant appends each list's entries in increasing position order.
    """
    got_ids, got_lists, got_codes = [], [], []
    for l in range(args.nlist):
        k = invlists.list_size(l)
        if k == 0:
            continue
        got_ids.append(faiss.rev_swig_ptr(invlists.get_ids(l), k).copy())
        codes = faiss.rev_swig_ptr(invlists.get_codes(l), k * args.code_size)
        got_codes.append(codes.copy().reshape(k, args.code_size))
        got_lists.append(np.full(k, l))
    ids = np.concatenate(got_ids)
    if len(ids) != args.n or not np.array_equal(np.sort(ids), np.arange(args.n)):
        raise SystemExit("stored ids are not exactly the ids that were added")
    pos = data.pos_of_id[ids]  # index of each stored entry in the input
    if not np.array_equal(entry_list[pos], np.concatenate(got_lists)):
        raise SystemExit("entries stored in the wrong list")
    if not np.array_equal(data.codes[pos], np.concatenate(got_codes)):
        raise SystemExit("stored codes differ from what was added")
    starts = np.cumsum([0] + [len(x) for x in got_ids])[:-1]
    step = np.diff(pos)
    step[starts[1:] - 1] = 1  # list boundaries do not need to be ordered
    if np.any(step <= 0):
        raise SystemExit("entries within a list are out of insertion order")


def ondisk_layout(invlists, nlist, code_size):
    """Bytes reserved by lists vs. the mapped file size.

    OnDiskInvertedLists keeps its free space in a private std::list of slots
    that SWIG does not expose; totsize minus the reserved capacity of all lists
    is exactly the total capacity of that free list.
    """
    reserved = 0
    lists = invlists.lists
    for l in range(nlist):
        reserved += lists.at(l).capacity * (code_size + 8)
    return reserved, invlists.totsize - reserved


def result(name, n, code_size, seconds, calls, **extra):
    nbytes = n * (code_size + 8)
    r = {
        "bench": name,
        "entries": n,
        "bytes": nbytes,
        "calls": calls,
        "seconds": seconds,
        "entries_per_s": n / seconds,
        "mb_per_s": nbytes / seconds / MB,
    }
    r.update(extra)
    return r


def finish_ondisk(name, path, invlists, args, seconds, calls, capture, ntotal):
    """Gather file statistics, fsync, and build the result row.

    Called straight after the timed region (before the content check) so the
    dirty pages are still all there for the fsync to write.
    """
    resizes = [l for l in capture.drain() if l.startswith("resizing ")]
    reserved, free = ondisk_layout(invlists, args.nlist, args.code_size)
    st = os.stat(path)
    fsync_s = timed_fsync(path)
    dir_fsync_s = timed_fsync(os.path.dirname(path))
    st_after = os.stat(path)
    nbytes = ntotal * (args.code_size + 8)
    return result(
        name,
        ntotal,
        args.code_size,
        seconds,
        calls,
        fsync_s=fsync_s,
        dir_fsync_s=dir_fsync_s,
        entries_per_s_with_fsync=ntotal / (seconds + fsync_s),
        mb_per_s_with_fsync=nbytes / (seconds + fsync_s) / MB,
        file_size=st.st_size,
        # st_blocks shows how sparse the file is: truncate() grows it without
        # allocating, only pages touched through the mapping get blocks.
        file_allocated=st.st_blocks * 512,
        file_allocated_after_fsync=st_after.st_blocks * 512,
        reserved_by_lists=reserved,
        free_list_bytes=free,
        resizes=len(resizes),
    )


# --------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------


class Data:
    """Seeded random codes, unique ids and list assignments."""

    def __init__(self, args):
        rng = np.random.default_rng(args.seed)
        n, cs, nlist, b = args.n, args.code_size, args.nlist, args.batch
        self.codes = rng.integers(0, 256, size=(n, cs), dtype=np.uint8)
        # unique ids so that the content check can compare exact sets
        self.ids = rng.permutation(n).astype(np.int64)
        self.pos_of_id = np.argsort(self.ids)
        self.batch_starts = np.arange(0, n, b)
        # add_one_list: one random list per batch
        self.batch_list = rng.integers(0, nlist, size=len(self.batch_starts))
        # add_spread / add_per_entry_cpp / merge: one random list per entry
        self.assign = rng.integers(0, nlist, size=n)

    def one_list_calls(self, args):
        calls = []
        for bi, i0 in enumerate(self.batch_starts):
            i1 = min(i0 + args.batch, args.n)
            calls.append(
                (
                    int(self.batch_list[bi]),
                    int(i1 - i0),
                    faiss.swig_ptr(self.ids[i0:i1]),
                    faiss.swig_ptr(self.codes[i0:i1]),
                )
            )
        return calls

    def one_list_entry_list(self, args):
        """List of every entry in the add_one_list variant."""
        counts = np.minimum(args.batch, args.n - self.batch_starts)
        return np.repeat(self.batch_list, counts)

    def spread_calls(self, args):
        """Group each batch by list: one (list, run) call per list in a batch.

        The sorted copies are kept on self so the pointers stay valid.
        """
        batch_of = np.arange(args.n) // args.batch
        key = batch_of * args.nlist + self.assign
        order = np.argsort(key, kind="stable")
        self.s_ids = np.ascontiguousarray(self.ids[order])
        self.s_codes = np.ascontiguousarray(self.codes[order])
        s_key = key[order]
        starts = np.concatenate(([0], np.flatnonzero(np.diff(s_key)) + 1))
        ends = np.concatenate((starts[1:], [args.n]))
        calls = []
        for i0, i1 in zip(starts.tolist(), ends.tolist()):
            calls.append(
                (
                    int(s_key[i0] % args.nlist),
                    i1 - i0,
                    faiss.swig_ptr(self.s_ids[i0:i1]),
                    faiss.swig_ptr(self.s_codes[i0:i1]),
                )
            )
        return calls


def run_calls(invlists, calls):
    add = invlists.add_entries
    for list_no, k, ids_p, codes_p in calls:
        add(list_no, k, ids_p, codes_p)


# --------------------------------------------------------------------------
# measurements
# --------------------------------------------------------------------------


def bench_add(name, args, data, calls, entry_list, capture):
    path = os.path.join(args.dir, f"{name}.ivfdata")
    t0 = time.perf_counter()
    invlists = faiss.OnDiskInvertedLists(args.nlist, args.code_size, path)
    run_calls(invlists, calls)
    seconds = time.perf_counter() - t0
    r = finish_ondisk(
        name, path, invlists, args, seconds, len(calls), capture, args.n
    )
    verify(invlists, args, data, entry_list)
    del invlists  # munmap before unlink
    os.unlink(path)
    return r


def bench_ref_array(name, args, data, calls, entry_list):
    t0 = time.perf_counter()
    invlists = faiss.ArrayInvertedLists(args.nlist, args.code_size)
    run_calls(invlists, calls)
    seconds = time.perf_counter() - t0
    verify(invlists, args, data, entry_list)
    return result(name, args.n, args.code_size, seconds, len(calls))


def bench_per_entry_cpp(args, data, capture):
    """C++ add_entry loop via IndexIVF::add_sa_codes.

    add_sa_codes reads the list number from the leading coarse_code_size()
    bytes of each code (little endian) and calls invlists->add_entry for every
    entry, so the index is just a vehicle: no training, no quantizer work.
    IndexIVFFlat is used because its code_size is 4*d, hence the requirement
    that --code-size be a multiple of 4.
    """
    if args.code_size % 4:
        return None
    d = args.code_size // 4
    quantizer = faiss.IndexFlatL2(d)
    index = faiss.IndexIVFFlat(quantizer, d, args.nlist)
    ccs = index.coarse_code_size()
    sa = np.empty((args.n, ccs + args.code_size), dtype=np.uint8)
    for byte in range(ccs):
        sa[:, byte] = (data.assign >> (8 * byte)) & 0xFF
    sa[:, ccs:] = data.codes
    calls = []
    for i0 in data.batch_starts.tolist():
        i1 = min(i0 + args.batch, args.n)
        calls.append(
            (i1 - i0, faiss.swig_ptr(sa[i0:i1]), faiss.swig_ptr(data.ids[i0:i1]))
        )

    path = os.path.join(args.dir, "add_per_entry_cpp.ivfdata")
    t0 = time.perf_counter()
    invlists = faiss.OnDiskInvertedLists(args.nlist, args.code_size, path)
    index.replace_invlists(invlists, False)  # Python keeps ownership
    add = index.add_sa_codes_c  # raw SWIG entry point, takes pointers
    for k, sa_p, ids_p in calls:
        add(k, sa_p, ids_p)
    seconds = time.perf_counter() - t0
    r = finish_ondisk(
        "add_per_entry_cpp", path, invlists, args, seconds, len(calls), capture, args.n
    )
    verify(invlists, args, data, data.assign)
    del index
    del invlists
    os.unlink(path)
    return r


def bench_merge(args, data, capture):
    # Build the in-memory sources (untimed).  Source s gets a contiguous share
    # of the entries; each share is grouped by list so filling costs one
    # add_entries per (source, list).
    bounds = np.linspace(0, args.n, N_SOURCES + 1).astype(np.int64)
    sources = []
    for s in range(N_SOURCES):
        lo, hi = int(bounds[s]), int(bounds[s + 1])
        src = faiss.ArrayInvertedLists(args.nlist, args.code_size)
        order = lo + np.argsort(data.assign[lo:hi], kind="stable")
        s_ids = np.ascontiguousarray(data.ids[order])
        s_codes = np.ascontiguousarray(data.codes[order])
        s_assign = data.assign[order]
        starts = np.concatenate(([0], np.flatnonzero(np.diff(s_assign)) + 1))
        ends = np.concatenate((starts[1:], [hi - lo]))
        for i0, i1 in zip(starts.tolist(), ends.tolist()):
            src.add_entries(
                int(s_assign[i0]),
                i1 - i0,
                faiss.swig_ptr(s_ids[i0:i1]),
                faiss.swig_ptr(s_codes[i0:i1]),
            )
        sources.append(src)  # ArrayInvertedLists copied the data
    vec = faiss.InvertedListsPtrVector()
    for src in sources:
        vec.push_back(src)

    path = os.path.join(args.dir, "merge.ivfdata")
    t0 = time.perf_counter()
    dst = faiss.OnDiskInvertedLists(args.nlist, args.code_size, path)
    # FAISS 1.7.3 signature: merge_from(const InvertedLists **ils, int n_il,
    # bool verbose); later releases renamed it merge_from_multiple and added
    # a shift_ids flag.  It sizes the file once (exact fit, no doubling) and
    # copies lists in an OpenMP parallel loop.
    ntotal = dst.merge_from(vec.data(), vec.size(), False)
    seconds = time.perf_counter() - t0
    if ntotal != args.n:
        raise SystemExit(f"merge_from returned {ntotal}, expected {args.n}")
    r = finish_ondisk("merge", path, dst, args, seconds, 1, capture, ntotal)
    verify(dst, args, data, data.assign)
    r["sources"] = N_SOURCES
    del dst
    os.unlink(path)
    return r


# --------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------


def print_table(out, machine, rows):
    print(
        f"machine: {machine['nproc']} cpus, {machine['cpu_model']}, "
        f"kernel {machine['kernel']}",
        file=out,
    )
    print(
        f"faiss {machine['faiss_version']}, numpy {machine['numpy_version']}, "
        f"omp threads {machine['omp_max_threads']}, scratch "
        f"{machine['scratch_dir']} ({machine['scratch_fs']})",
        file=out,
    )
    print(file=out)
    hdr = (
        f"{'bench':<18} {'calls':>8} {'entries/s':>12} {'MB/s':>8} "
        f"{'fsync s':>8} {'entries/s+fs':>12} {'MB/s+fs':>8} "
        f"{'file MB':>8} {'alloc MB':>8} {'free MB':>8} {'resizes':>7}"
    )
    print(hdr, file=out)
    print("-" * len(hdr), file=out)
    for r in rows:
        line = (
            f"{r['bench']:<18} {r['calls']:>8} {r['entries_per_s']:>12,.0f} "
            f"{r['mb_per_s']:>8.1f}"
        )
        if "fsync_s" in r:
            line += (
                f" {r['fsync_s']:>8.3f} {r['entries_per_s_with_fsync']:>12,.0f} "
                f"{r['mb_per_s_with_fsync']:>8.1f} {r['file_size'] / MB:>8.1f} "
                f"{r['file_allocated_after_fsync'] / MB:>8.1f} "
                f"{r['free_list_bytes'] / MB:>8.1f} {r['resizes']:>7}"
            )
        print(line, file=out)
    print(file=out)
    print(
        "MB = 1e6 bytes of payload (entries * (code_size + 8)); '+fs' includes "
        "an fsync of the file; FAISS itself never syncs.",
        file=out,
    )


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", help="scratch directory (default: a new tempdir)")
    p.add_argument("--code-size", type=int, default=16, help="bytes per code")
    p.add_argument("--nlist", type=int, default=1024, help="number of lists")
    p.add_argument("--n", type=int, default=1_000_000, help="total entries")
    p.add_argument("--batch", type=int, default=1000, help="entries per batch")
    p.add_argument("--seed", type=int, default=1, help="RNG seed")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    args = p.parse_args()
    if args.n <= 0 or args.batch <= 0 or args.nlist <= 0 or args.code_size <= 0:
        p.error("--n, --batch, --nlist and --code-size must be positive")

    made_dir = args.dir is None
    if made_dir:
        args.dir = tempfile.mkdtemp(prefix="faiss_ondisk.")
    else:
        os.makedirs(args.dir, exist_ok=True)
    args.dir = os.path.abspath(args.dir)

    capture = CStdoutCapture(os.path.join(args.dir, "faiss_stdout.log"))
    out = capture.real_stdout
    try:
        machine = machine_info(args.dir)
        if args.json:
            print(json.dumps(machine), file=out)

        data = Data(args)
        rows = []

        def emit(r):
            if r is None:
                return
            rows.append(r)
            if args.json:
                print(json.dumps(r), file=out)

        calls = data.one_list_calls(args)
        entry_list = data.one_list_entry_list(args)
        emit(bench_add("add_one_list", args, data, calls, entry_list, capture))
        emit(bench_ref_array("ref_array_one_list", args, data, calls, entry_list))

        calls = data.spread_calls(args)
        emit(bench_add("add_spread", args, data, calls, data.assign, capture))
        emit(bench_ref_array("ref_array_spread", args, data, calls, data.assign))
        del calls

        emit(bench_per_entry_cpp(args, data, capture))
        emit(bench_merge(args, data, capture))

        if not args.json:
            print_table(out, machine, rows)
    finally:
        capture.close()
        if made_dir:
            shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()

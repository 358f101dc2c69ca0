package store

import "sync"

// The one slot writer. Every byte of codes and ids the store writes goes
// through a slotWriter: a flush appending buffered entries or moving lists
// to bigger slots, a merge filling exact slots, a compaction copying every
// list into a new file, and the single-list writes of a batch (relocate,
// update, resize). What it writes is described as slotJobs; where the
// bytes come from differs (memory, the old slot through the map, a pread
// of the old file, a fill function), how they reach the file does not:
// pieces that follow each other in the file are gathered into one run and
// written with one vectored write (writevFull), so packed slots reach the
// disk as long sequential writes.
//
// The writer only ever writes where the caller placed the job: a fresh
// slot, or past the committed size in a list's own slot. That space is
// referenced by no committed list, which is what makes it safe to write
// before the commit (see commit.go).
//
// It also computes the CRCs of every list it writes (crc.go) from the
// bytes it queues: the kept entries keep their list's CRCs, the new
// entries extend them.

// slotJob is one list the slotWriter writes: the first keep entries of its
// old slot, then the new entries [keep, size), into the slot at off of
// capacity cap.
type slotJob struct {
	l    int
	old  entry // the list's row before the job
	keep uint64
	cap  uint64
	size uint64
	off  uint64 // the slot written, chosen by placement (in place: old.off)
	// inPlace appends entries [keep, size) to the list's own slot, whose
	// first keep entries are already there: nothing else is written.
	inPlace bool
	// keptWritten is set once the kept entries were queued (writeKept).
	keptWritten bool
	// The new entries: bufs, already in memory, one after another; or,
	// with fill set, what fill writes into ids and codes (exactly
	// size-keep of each), in staging memory.
	bufs [2]entryBuf
	fill func(ids []int64, codes []byte) error
	// crc is set by writeSlot: the CRCs of entries [0, size) as written,
	// unless the job overwrites (then its caller patches them, see
	// Batch.writeEntries).
	crc listCRC
}

// overwrites reports whether the job writes over entries of the list's
// own slot (Update) rather than after them.
func (j *slotJob) overwrites() bool { return j.inPlace && j.keep < j.old.size }

// keptCRC returns the CRCs of the entries job j keeps: its list's own when
// it keeps them all, those of the shorter list otherwise (shrunkCRC).
func (w *slotWriter) keptCRC(j *slotJob) (listCRC, error) {
	if j.keep == j.old.size || j.overwrites() {
		return j.old.crc, nil
	}
	return shrunkCRC(w.m, j.l, j.old, j.keep, w.cs)
}

// entryBuf is a run of entries in memory.
type entryBuf struct {
	ids   []int64
	codes []byte
}

// padEntries is a fill giving new entries zero codes and id -1.
func padEntries(ids []int64, codes []byte) error {
	clear(codes)
	for i := range ids {
		ids[i] = -1
	}
	return nil
}

// stagingBytes bounds the staging memory one writer holds: the entries it
// reads or fills before writing them.
const stagingBytes = 8 << 20

var stagingPool = sync.Pool{New: func() any { b := make([]byte, stagingBytes); return &b }}

// maxIov stays below the kernel's limit on buffers per call (IOV_MAX).
const maxIov = 1000

// gapFillMax is the largest unused stretch of a slot that is written as
// zeros, so the slot and the next packed one stay one run; a longer one
// is left unwritten (it reads as zeros, and nothing reads it).
const gapFillMax = 16 << 10

var zeros [gapFillMax]byte

// slotWriter writes slotJobs into one file. One goroutine uses it; a
// queued piece must stay unchanged until the writer wrote it (flush).
type slotWriter struct {
	f  dataFile // the file written
	m  *mapping // the mapping kept entries are read through
	cs uint64
	// src, when set, is the file kept entries are read from, with pread
	// into staging memory rather than through m, so copying a file larger
	// than memory does not fault its pages in one at a time (compaction).
	// Entries too large for the staging memory are still read through m.
	src dataFile
	// behind, when set, starts the write-back of each run written.
	behind *writeBehind
	// progress, when set, receives the entries of the slots written since
	// its last call, after each run.
	progress func(entries int64)

	// The run being gathered: pieces that follow each other from off.
	off  uint64
	n    uint64
	iov  [][]byte
	done int64 // entries of the slots queued since the last progress call

	stage *[]byte // pooled staging memory, taken on first use
	used  int     // bytes of it handed out since the last run written
	spare []byte  // memory for a slot larger than the staging memory
}

// newSlotWriter returns a writer into f whose kept entries are read
// through m, for a store of code size cs.
func newSlotWriter(f dataFile, m *mapping, cs int) *slotWriter {
	return &slotWriter{f: f, m: m, cs: uint64(cs)}
}

// release gives back the staging memory; the writer is not used again.
func (w *slotWriter) release() {
	if w.stage != nil {
		stagingPool.Put(w.stage)
		w.stage = nil
	}
	w.spare = nil
}

// staged returns n bytes of memory for the pieces of one slot. Taking it
// may write the queued run (then the memory handed out before is free
// again), so a slot takes all it needs in one call, before queueing any
// of it.
func (w *slotWriter) staged(n uint64) ([]byte, error) {
	if n > stagingBytes {
		if err := w.flush(); err != nil { // spare may be queued
			return nil, err
		}
		if uint64(cap(w.spare)) < n {
			w.spare = make([]byte, n)
		}
		return w.spare[:n], nil
	}
	if w.stage == nil {
		w.stage = stagingPool.Get().(*[]byte)
	}
	if uint64(w.used)+n > stagingBytes {
		if err := w.flush(); err != nil {
			return nil, err
		}
		w.used = 0
	}
	p := (*w.stage)[w.used : uint64(w.used)+n]
	w.used += int(align8(n)) // ids carved from it stay 8-byte aligned
	return p, nil
}

// add queues p to be written at off, writing the queued run first if p
// does not continue it.
func (w *slotWriter) add(off uint64, p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if len(w.iov) > 0 && (off != w.off+w.n || len(w.iov) == maxIov) {
		if err := w.flush(); err != nil {
			return err
		}
	}
	if len(w.iov) == 0 {
		w.off = off
	}
	w.iov = append(w.iov, p)
	w.n += uint64(len(p))
	return nil
}

// addGap queues zeros over [lo, hi), an unused stretch of a slot, when it
// is short.
func (w *slotWriter) addGap(lo, hi uint64) error {
	if hi-lo > gapFillMax {
		return nil
	}
	return w.add(lo, zeros[:hi-lo])
}

// flush writes the queued run.
func (w *slotWriter) flush() error {
	if len(w.iov) == 0 {
		return nil
	}
	off, n := w.off, w.n
	err := writevFull(w.f, w.iov, off)
	clear(w.iov)
	w.iov = w.iov[:0]
	w.n = 0
	if err != nil {
		return err
	}
	if w.behind != nil {
		if err := w.behind.wrote(off, n); err != nil {
			return err
		}
	}
	if w.progress != nil && w.done > 0 {
		w.progress(w.done)
		w.done = 0
	}
	return nil
}

// writeSlot queues job j: its kept entries (unless in place or already
// queued), its new entries, and the short gaps of a slot it fills, in
// file order: codes, then ids.
func (w *slotWriter) writeSlot(j *slotJob) error {
	if j.size == 0 {
		return nil
	}
	cs := w.cs
	idsOff := j.off + align8(j.cap*cs)
	fresh := j.size - j.keep
	copyKept := !j.inPlace && j.keep > 0 && !j.keptWritten
	readKept := copyKept && w.src != nil && align8(j.keep*cs)+8*j.keep <= stagingBytes
	var need uint64
	if readKept {
		need += align8(j.keep*cs) + 8*j.keep
	}
	if j.fill != nil {
		need += align8(fresh*cs) + 8*fresh
	}
	var buf []byte
	if need > 0 {
		var err error
		if buf, err = w.staged(need); err != nil {
			return err
		}
	}
	var keptCodes, keptIDs []byte
	if copyKept {
		if readKept {
			keptCodes, keptIDs, buf = carve(buf, j.keep, cs)
			if err := w.readKept(j.old, keptCodes, keptIDs); err != nil {
				return err
			}
		} else {
			keptCodes, keptIDs = w.keptBytes(j.old, j.keep)
		}
	}
	bufs := j.bufs
	if j.fill != nil {
		codes, ids, _ := carve(buf, fresh, cs)
		if err := j.fill(int64View(ids), codes); err != nil {
			return err
		}
		bufs = [2]entryBuf{{ids: int64View(ids), codes: codes}}
	}
	crc, err := w.keptCRC(j)
	if err != nil {
		return err
	}
	for _, b := range bufs {
		crc = crc.extend(b.codes, b.ids)
	}
	j.crc = crc
	if err := w.add(j.off, keptCodes); err != nil {
		return err
	}
	at := j.off + j.keep*cs
	for _, b := range bufs {
		if err := w.add(at, b.codes); err != nil {
			return err
		}
		at += uint64(len(b.codes))
	}
	if !j.inPlace {
		if err := w.addGap(at, idsOff); err != nil {
			return err
		}
	}
	if err := w.add(idsOff, keptIDs); err != nil {
		return err
	}
	at = idsOff + 8*j.keep
	for _, b := range bufs {
		if err := w.add(at, int64Bytes(b.ids)); err != nil {
			return err
		}
		at += 8 * uint64(len(b.ids))
	}
	if !j.inPlace {
		if err := w.addGap(at, j.off+slotBytes(j.cap, int(cs))); err != nil {
			return err
		}
	}
	w.done += int64(j.size)
	return nil
}

// writeKept queues the kept entries of job j, a list that moves, so they
// are written before its new entries are ready; writeSlot then skips them.
func (w *slotWriter) writeKept(j *slotJob) error {
	if j.inPlace || j.keep == 0 {
		return nil
	}
	codes, ids := w.keptBytes(j.old, j.keep)
	if err := w.add(j.off, codes); err != nil {
		return err
	}
	if err := w.add(j.off+align8(j.cap*w.cs), ids); err != nil {
		return err
	}
	j.keptWritten = true
	return nil
}

// keptBytes returns, through the map, the codes and ids of the first n
// entries of slot e.
func (w *slotWriter) keptBytes(e entry, n uint64) (codes, ids []byte) {
	return w.m.bytes(e.off, n*w.cs), w.m.bytes(e.off+align8(e.cap*w.cs), 8*n)
}

// readKept reads the codes and ids of the first entries of slot e from
// src, then lets go of those pages of src when the writer drops its own.
func (w *slotWriter) readKept(e entry, codes, ids []byte) error {
	idsOff := e.off + align8(e.cap*w.cs)
	if err := readFull(w.src, codes, e.off); err != nil {
		return err
	}
	if err := readFull(w.src, ids, idsOff); err != nil {
		return err
	}
	if w.behind != nil && w.behind.drop {
		adviseFile(w.src, e.off, uint64(len(codes)), adviseDontNeed)
		adviseFile(w.src, idsOff, uint64(len(ids)), adviseDontNeed)
	}
	return nil
}

// carve cuts from buf the codes and ids of n entries (ids 8-byte aligned
// when buf is) and returns what is left.
func carve(buf []byte, n, cs uint64) (codes, ids, rest []byte) {
	c := align8(n * cs)
	return buf[:n*cs], buf[c : c+8*n], buf[c+8*n:]
}

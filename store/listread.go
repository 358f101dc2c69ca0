package store

import (
	"cmp"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"slices"
)

// Positioned reads of lists: the path of a search whose lists are not in
// memory. A View's lists are slices of the memory map, and a scan of a
// list that is not resident stops on one page fault after another; a
// ListReader instead reads a list (or a part of it, a chunk of entries)
// with one or two pread calls into a buffer its caller owns, so a caller
// can keep many reads in flight, bound the memory they take, and, with
// direct I/O, leave the page cache alone (the page cache a process causes
// counts against its cgroup's memory limit).
//
// Every chunk read carries the CRC-32Cs of its bytes (ChunkSum); Verify
// combines the sums of a list's chunks (crcShift, in any order of
// arrival) and checks them against the list table, so a search reading
// from disk detects a damaged list and names it, as Check does.

// errDirectUnsupported: the file system does not do direct I/O.
var errDirectUnsupported = errors.New("direct I/O not supported")

// readAlign is the alignment of the file offsets, lengths and buffer
// addresses of direct reads (the logical block size of every file system
// in use is at most 4096).
const readAlign = 4096

// ListReader reads lists of one View with positioned reads. It is safe
// for concurrent use, and used while the View is: its descriptors belong
// to the View's mapping of the data file.
type ListReader struct {
	v      *View
	f      *os.File // the data file, or the mapping's O_DIRECT descriptor of it
	direct bool
	cs     uint64
}

// ListReader returns a reader of v's lists. With direct, reads bypass the
// page cache (O_DIRECT) where the file system supports it; Direct says
// whether they do.
func (v *View) ListReader(direct bool) (*ListReader, error) {
	r := &ListReader{v: v, f: v.st.m.file, cs: uint64(v.s.conf.codeSize)}
	if direct {
		f, err := v.st.m.directFile()
		switch {
		case err == nil:
			r.f, r.direct = f, true
		case errors.Is(err, errDirectUnsupported):
			// tmpfs and the like: buffered reads, same results.
		default:
			return nil, fmt.Errorf("store: open %s for direct reads: %w", v.st.m.name(), err)
		}
	}
	return r, nil
}

// Direct reports whether the reader bypasses the page cache.
func (r *ListReader) Direct() bool { return r.direct }

// Offset returns where list l starts in the data file: reading lists in
// increasing offsets reads the file in one direction.
func (r *ListReader) Offset(l int) (int64, error) {
	e, err := r.v.entry(l)
	return int64(e.off), err
}

// readSlack is what a chunk's buffer needs beyond its entries' bytes: the
// alignment of the buffer, of both ends of up to two reads, and a gap of
// at most a quarter of the entries' bytes read rather than skipped.
const readSlack = readAlign + 4*readAlign

// BufferSize returns the size of a buffer that holds any chunk of n
// entries; ChunkEntries is its inverse.
func (r *ListReader) BufferSize(n int) int {
	b := uint64(n) * (r.cs + 8)
	return int((5*b+3)/4) + readSlack
}

// ChunkEntries returns the most entries a buffer of size bytes holds
// whatever the list (at least 1 when size >= BufferSize(1)).
func (r *ListReader) ChunkEntries(size int) int {
	if size < readSlack {
		return 0
	}
	return int(uint64(size-readSlack) * 4 / (5 * (r.cs + 8)))
}

// ChunkSum is the CRC-32Cs of the entries a Read returned.
type ChunkSum struct {
	first, n uint64
	crc      listCRC
	read     uint64 // bytes read from the file
}

// Bytes returns how many bytes the Read took from the file.
func (c ChunkSum) Bytes() int64 { return int64(c.read) }

// Read reads entries [first, first+n) of list l into buf, whose size
// must be at least BufferSize(n), and returns their ids and codes (slices
// of buf) and their checksums. The codes and ids of a list lie in two
// regions of its slot: one read covers both when the gap between them is
// small, else two reads.
func (r *ListReader) Read(l, first, n int, buf []byte) (ids []int64, codes []byte, sum ChunkSum, err error) {
	e, err := r.v.entry(l)
	if err != nil {
		return nil, nil, sum, err
	}
	if first < 0 || n < 0 || uint64(first)+uint64(n) > e.size {
		return nil, nil, sum, fmt.Errorf("%w: entries [%d, %d) of list %d (size %d)", ErrEntry, first, first+n, l, e.size)
	}
	if len(buf) < r.BufferSize(n) {
		return nil, nil, sum, fmt.Errorf("store: read of %d entries into a buffer of %d bytes (need %d)", n, len(buf), r.BufferSize(n))
	}
	sum = ChunkSum{first: uint64(first), n: uint64(n)}
	if n == 0 {
		return nil, nil, sum, nil
	}
	cs := r.cs
	cOff := e.off + uint64(first)*cs
	cLen := uint64(n) * cs
	iOff := e.off + align8(e.cap*cs) + 8*uint64(first)
	iLen := 8 * uint64(n)
	buf = buf[alignedStart(buf, readAlign):]
	var cAt, iAt uint64 // where codes and ids start in buf
	if gap := iOff - (cOff + cLen); gap <= (cLen+iLen)/4 {
		start, err := r.readSpan(l, buf, cOff, iOff+iLen)
		if err != nil {
			return nil, nil, sum, err
		}
		cAt, iAt = cOff-start, iOff-start
		sum.read = alignUp(iOff+iLen, readAlign) - start
	} else {
		start, err := r.readSpan(l, buf, cOff, cOff+cLen)
		if err != nil {
			return nil, nil, sum, err
		}
		cAt = cOff - start
		// The ids go after the codes' span, at an aligned place.
		next := alignUp(cAt+cLen, readAlign)
		start2, err := r.readSpan(l, buf[next:], iOff, iOff+iLen)
		if err != nil {
			return nil, nil, sum, err
		}
		iAt = next + iOff - start2
		sum.read = alignUp(cOff+cLen, readAlign) - start + alignUp(iOff+iLen, readAlign) - start2
	}
	codes = buf[cAt : cAt+cLen : cAt+cLen]
	ids = int64View(buf[iAt : iAt+iLen : iAt+iLen])
	sum.crc = listCRC{crc32.Checksum(codes, castagnoli), crc32.Checksum(buf[iAt:iAt+iLen], castagnoli)}
	return ids, codes, sum, nil
}

// readSpan reads the file's bytes [from, to), widened to readAlign, into
// the start of buf (aligned) and returns the offset its first byte has
// in the file.
func (r *ListReader) readSpan(l int, buf []byte, from, to uint64) (uint64, error) {
	start := from &^ (readAlign - 1)
	end := alignUp(to, readAlign)
	b := buf[:end-start]
	n, err := r.f.ReadAt(b, int64(start))
	// A direct read at the end of the file returns what it has: the
	// aligned tail past the committed end is not needed.
	if uint64(n) >= to-start {
		return start, nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return 0, &ListError{File: r.v.st.m.name(), List: l, Part: "list", Off: from, End: to, Err: err}
}

func alignUp(n, a uint64) uint64 { return (n + a - 1) &^ (a - 1) }

// Verify checks the sums of chunks that together hold every entry of
// list l, once each, in any order, against the list table's CRCs; the
// error, a *ListError, names the list, the part and the file.
func (r *ListReader) Verify(l int, sums []ChunkSum) error {
	e, err := r.v.entry(l)
	if err != nil {
		return err
	}
	got, ok := combineChunks(sums, e.size, r.cs)
	if !ok {
		return fmt.Errorf("store: verify list %d: %d chunks do not cover its %d entries once", l, len(sums), e.size)
	}
	if r.v.st.tab.noCRC {
		return nil
	}
	if le := mismatch(r.v.st.m.name(), l, e, r.cs, got); le != nil {
		return le
	}
	return nil
}

// combineChunks returns the CRCs of a list of size entries from the
// sums of its chunks, or false when they do not tile [0, size).
func combineChunks(sums []ChunkSum, size, cs uint64) (listCRC, bool) {
	sorted := slices.Clone(sums)
	slices.SortFunc(sorted, func(a, b ChunkSum) int { return cmp.Compare(a.first, b.first) })
	var c listCRC
	at := uint64(0)
	for _, s := range sorted {
		if s.n == 0 {
			continue
		}
		if s.first != at {
			return c, false
		}
		c.codes = crcShift(c.codes, s.n*cs) ^ s.crc.codes
		c.ids = crcShift(c.ids, 8*s.n) ^ s.crc.ids
		at += s.n
	}
	return c, at == size
}

package store

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"sort"
)

// Checking lists against their CRCs (crc.go): what is checked, and when.
//
//   - Verify (View.Verify, Store.Verify, `shelf verify`) reads lists with
//     pread from the data file, not through the map: a read error comes
//     back as an error naming the list instead of a SIGBUS. The reads go
//     through the page cache like any other: a page already cached is
//     checked as cached.
//   - Check verifies every list's CRCs along with the other invariants.
//   - CheckList checks bytes a caller read from the data file itself: the
//     out-of-core search path, which reads lists into its own buffers
//     rather than through the map, checks each list it reads. It costs
//     one CRC-32C pass over the bytes (over 10 GB/s where the CPU has a
//     CRC-32C instruction).
//   - A merge checks each list it reads from a source that can check it
//     (a View of another store) before the copy gets CRCs of its own, and
//     a subset copy checks the lists it selects from.
//   - Reads through the map (View.ReadList, Codes, IDs, Iter) are not
//     checked: a page, once in the page cache, is trusted, and a check on
//     every read would cost a pass over each list at every scan.
//
// A list table of format 1 has no CRCs: a writer adds them when it opens
// such a store (addChecksums); a read-only process that finds one
// published by an older writer checks nothing (ErrNoChecksums).

// verifyChunk is the most bytes Verify reads in one pread.
const verifyChunk = 1 << 20

// readCRC returns the CRC-32C of the n bytes of r at off, read into buf
// one chunk at a time.
func readCRC(r io.ReaderAt, off, n uint64, buf []byte) (uint32, error) {
	var crc uint32
	for n > 0 {
		k := min(n, uint64(len(buf)))
		if _, err := r.ReadAt(buf[:k], int64(off)); err != nil {
			return 0, err
		}
		crc = crc32.Update(crc, castagnoli, buf[:k])
		off += k
		n -= k
	}
	return crc, nil
}

// readListCRC reads the codes and ids of row e from r and returns their
// CRCs, or the error of the part that could not be read.
func readListCRC(r io.ReaderAt, file string, l int, e entry, cs uint64, buf []byte) (listCRC, *ListError) {
	var got [2]uint32
	for part := range partNames {
		off, n := partRange(e, part, cs)
		crc, err := readCRC(r, off, n, buf)
		if err != nil {
			return listCRC{}, &ListError{File: file, List: l, Part: partNames[part], Off: off, End: off + n, Want: e.crc.part(part), Err: err}
		}
		got[part] = crc
	}
	return listCRC{got[0], got[1]}, nil
}

// part returns the CRC of the codes (0) or of the ids (1).
func (c listCRC) part(i int) uint32 {
	if i == 0 {
		return c.codes
	}
	return c.ids
}

// Verify reads list l from the data file with pread and checks its codes
// and ids against the CRC-32Cs of the list table. It returns nil, a
// *ListError (wrapping ErrCorrupt) that names the file, the list, the
// byte range and the part that differ or could not be read, ErrList, or
// ErrNoChecksums.
func (v *View) Verify(l int) error {
	e, err := v.entry(l)
	if err != nil {
		return err
	}
	if v.st.tab.noCRC {
		return fmt.Errorf("%w: %s", ErrNoChecksums, v.s.dir)
	}
	if le := v.verifyEntry(l, e, make([]byte, verifyChunk)); le != nil {
		return le
	}
	return nil
}

func (v *View) verifyEntry(l int, e entry, buf []byte) *ListError {
	cs := uint64(v.s.conf.codeSize)
	got, le := readListCRC(v.st.m.file, v.st.m.name(), l, e, cs, buf)
	if le != nil {
		return le
	}
	return mismatch(v.st.m.name(), l, e, cs, got)
}

// verifyAll verifies every non-empty list, in file order so the reads are
// sequential, and returns the lists that fail in list order. progress, if
// set, receives the entries verified so far.
func (v *View) verifyAll(progress func(Progress)) ([]*ListError, error) {
	if v.st.tab.noCRC {
		return nil, fmt.Errorf("%w: %s (its writer adds them when it opens it)", ErrNoChecksums, v.s.dir)
	}
	cs := uint64(v.s.conf.codeSize)
	var total, done, reported int64
	for l := 0; l < v.st.nlist; l++ {
		total += int64(v.st.tab.get(l).size)
	}
	buf := make([]byte, verifyChunk)
	var bad []*ListError
	for _, u := range v.st.tab.slotsByOffset(int(cs)) {
		l := int(u[2])
		e := v.st.tab.get(l)
		if e.size == 0 {
			continue
		}
		if le := v.verifyEntry(l, e, buf); le != nil {
			bad = append(bad, le)
		}
		done += int64(e.size)
		if progress != nil && (done-reported)*int64(cs+8) >= 16<<20 {
			progress(Progress{Op: "verify", Done: done, Total: total})
			reported = done
		}
	}
	if progress != nil {
		progress(Progress{Op: "verify", Done: done, Total: total})
	}
	sort.Slice(bad, func(i, j int) bool { return bad[i].List < bad[j].List })
	return bad, nil
}

// Verify reads every list of the last commit from the data file, in file
// order, and checks it against its CRC-32Cs (View.Verify). It returns the
// lists that fail, in list order, each a *ListError; err reports what
// kept it from checking (a closed store, ErrNoChecksums). progress, if
// set, receives Progress{Op: "verify"} in entries. It reads a snapshot,
// so writers go on meanwhile.
func (s *Store) Verify(progress func(Progress)) ([]*ListError, error) {
	v, err := s.View()
	if err != nil {
		return nil, err
	}
	defer v.Release()
	return v.verifyAll(progress)
}

// CheckList checks ids and codes, the entries of list l as the caller
// read them from the data file itself, against the list's CRC-32Cs. It
// returns nil, a *ListError naming the part that differs, ErrEntry when
// the lengths are not the list's, or ErrList. A table without checksums
// (ErrNoChecksums) accepts any bytes of the right length.
func (v *View) CheckList(l int, ids []int64, codes []byte) error {
	e, err := v.entry(l)
	if err != nil {
		return err
	}
	cs := uint64(v.s.conf.codeSize)
	if uint64(len(ids)) != e.size || uint64(len(codes)) != e.size*cs {
		return fmt.Errorf("%w: %d ids and %d code bytes for list %d of %d entries", ErrEntry, len(ids), len(codes), l, e.size)
	}
	if v.st.tab.noCRC {
		return nil
	}
	if le := mismatch(v.st.m.name(), l, e, cs, listCRC{}.extend(codes, ids)); le != nil {
		return le
	}
	return nil
}

// addChecksums gives the list table of format 1 that the writer just
// opened its CRCs: every list is read once from the data file, in file
// order, and the table is rewritten in the current format in one commit.
// A list damaged before gets the CRCs of its damaged bytes: there was
// nothing to check them against. Adding them when the store is opened
// for writing, rather than as lists happen to be rewritten, means no
// write path ever meets a list without CRCs; it costs one read of the
// data file, once.
func (s *Store) addChecksums() error {
	cur := s.cur
	cs := uint64(s.conf.codeSize)
	d := newDraft(cur.tab)
	d.t.noCRC = false
	buf := make([]byte, verifyChunk)
	var total, done int64
	for l := 0; l < cur.nlist; l++ {
		total += int64(cur.tab.get(l).size)
	}
	for _, u := range cur.tab.slotsByOffset(int(cs)) {
		l := int(u[2])
		e := cur.tab.get(l)
		if e.size == 0 {
			continue
		}
		crc, le := readListCRC(s.file, s.file.OS().Name(), l, e, cs, buf)
		if le != nil {
			return le
		}
		e.crc = crc
		d.set(l, e)
		if done += int64(e.size); s.opts.Progress != nil {
			s.opts.Progress(Progress{Op: "checksum", Done: done, Total: total})
		}
	}
	pb := s.db.NewBatch()
	putTable(pb, d, cur.nlist)
	var fv [4]byte
	binary.LittleEndian.PutUint32(fv[:], formatVersion)
	_ = pb.Set(keyFormat, fv[:], nil)
	seq := cur.seq + 1
	if err := s.commitTable(pb, stateRec{nlist: uint64(cur.nlist), gen: cur.gen, fsize: cur.fsize, seq: seq}); err != nil {
		return err
	}
	s.rmu.Lock()
	s.cur = &state{seq: seq, nlist: cur.nlist, tab: d.t, fsize: cur.fsize, gen: cur.gen, m: cur.m, user: cur.user}
	s.rmu.Unlock()
	return nil
}

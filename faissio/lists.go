package faissio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"path/filepath"

	"github.com/shelfdb/shelf/ivf"
)

// readLists reads the inverted lists object ("ilar" or "ilod") and returns
// the number of entries.
func (ff *indexFile) readLists(r *reader, cs int, name string, open func(string) (dataFile, error)) (int64, error) {
	nlist := int64(len(ff.sizes))
	at := r.off
	lt, err := r.tag("inverted lists type")
	if err != nil {
		return 0, err
	}
	switch lt {
	case "ilar", "ilod":
	default:
		if !printableTag(lt) {
			return 0, r.corrupt("inverted lists type", at, "%q is not a FAISS inverted lists type", lt)
		}
		return 0, r.unsupported("inverted lists %s are not supported; Shelf reads ArrayInvertedLists (\"ilar\") and OnDiskInvertedLists (\"ilod\")", typeName(lt))
	}
	ff.info.Lists = lt
	at = r.off
	if v, err := r.u64("inverted lists nlist"); err != nil {
		return 0, err
	} else if v != uint64(nlist) {
		return 0, r.corrupt("inverted lists nlist", at, "%d lists, the index has %d", v, nlist)
	}
	at = r.off
	if v, err := r.u64("inverted lists code_size"); err != nil {
		return 0, err
	} else if v != uint64(cs) {
		return 0, r.corrupt("inverted lists code_size", at, "codes of %d bytes, the index has %d", v, cs)
	}
	entry := int64(cs) + 8
	if lt == "ilod" {
		return ff.readOnDisk(r, entry, name, open)
	}
	at = r.off
	st, err := r.tag("list sizes type")
	if err != nil {
		return 0, err
	}
	switch st {
	case "full":
		at := r.off
		n, err := r.count("list sizes", 8)
		if err != nil {
			return 0, err
		}
		if n != nlist {
			return 0, r.corrupt("list sizes", at, "%d sizes for %d lists", n, nlist)
		}
		for l := range ff.sizes {
			v, err := r.u64("list sizes")
			if err != nil {
				return 0, err
			}
			if v > 1<<40 {
				return 0, r.corrupt("list sizes", r.off-8, "list %d of %d entries", l, v)
			}
			ff.sizes[l] = int64(v)
		}
	case "sprs":
		at := r.off
		n, err := r.count("sparse list sizes", 8)
		if err != nil {
			return 0, err
		}
		if n%2 != 0 {
			return 0, r.corrupt("sparse list sizes", at, "%d values, not (list, size) pairs", n)
		}
		for i := int64(0); i < n; i += 2 {
			l, err := r.u64("sparse list sizes")
			if err != nil {
				return 0, err
			}
			if l >= uint64(nlist) {
				return 0, r.corrupt("sparse list sizes", r.off-8, "list %d of %d", l, nlist)
			}
			v, err := r.u64("sparse list sizes")
			if err != nil {
				return 0, err
			}
			if v > 1<<40 {
				return 0, r.corrupt("sparse list sizes", r.off-8, "list %d of %d entries", l, v)
			}
			ff.sizes[l] = int64(v)
		}
	default:
		return 0, r.corrupt("list sizes type", at, "%q (want \"full\" or \"sprs\")", st)
	}
	// The lists follow: codes, then ids, of each non-empty list.
	off := r.off
	var total int64
	for l, n := range ff.sizes {
		if n > (r.size-off)/entry {
			return 0, r.corrupt(fmt.Sprintf("list %d", l), off, "%d entries of %d bytes, the file has %d bytes left", n, entry, r.size-off)
		}
		ff.codeOff[l] = off
		ff.idOff[l] = off + n*int64(cs)
		off += n * entry
		total += n
	}
	r.off = off
	return total, nil
}

// readOnDisk reads an OnDiskInvertedLists table and opens its data file.
func (ff *indexFile) readOnDisk(r *reader, entry int64, name string, open func(string) (dataFile, error)) (int64, error) {
	nlist := int64(len(ff.sizes))
	at := r.off
	n, err := r.count("on-disk lists", 24)
	if err != nil {
		return 0, err
	}
	if n != nlist {
		return 0, r.corrupt("on-disk lists", at, "%d list entries for %d lists", n, nlist)
	}
	type odList struct{ size, capacity, offset uint64 }
	lists := make([]odList, nlist)
	for l := range lists {
		b, err := r.next("on-disk lists", 24)
		if err != nil {
			return 0, err
		}
		lists[l] = odList{binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint64(b[8:]), binary.LittleEndian.Uint64(b[16:])}
	}
	listsAt := at + 8
	if n, err = r.count("on-disk free slots", 16); err != nil {
		return 0, err
	}
	if err := r.skip("on-disk free slots", 16*n); err != nil {
		return 0, err
	}
	at = r.off
	if n, err = r.count("on-disk file name", 1); err != nil {
		return 0, err
	}
	if n == 0 || n > 1<<16 {
		return 0, r.corrupt("on-disk file name", at, "name of %d bytes", n)
	}
	b, err := r.next("on-disk file name", n)
	if err != nil {
		return 0, err
	}
	fname := string(b)
	for _, c := range b {
		if c == 0 {
			return 0, r.corrupt("on-disk file name", at+8, "NUL byte in the name %q", fname)
		}
	}
	if _, err := r.u64("on-disk totsize"); err != nil {
		return 0, err
	}
	if r.off != r.size {
		// Checked here too, so that a damaged file is reported as such
		// before its data file is looked for.
		return 0, r.corrupt("end of index", r.off, "%d unexpected bytes after the inverted lists", r.size-r.off)
	}

	// The data file: the name stored, and next to the index file.
	tried := []string{fname}
	if alt := filepath.Join(filepath.Dir(name), filepath.Base(fname)); alt != fname {
		tried = append(tried, alt)
	}
	var df dataFile
	var firstErr error
	for _, p := range tried {
		f, err := open(p)
		if err == nil {
			df = f
			ff.info.DataFile = p
			break
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	if df == nil {
		if errors.Is(firstErr, fs.ErrNotExist) {
			return 0, fmt.Errorf("faissio: FAISS file %s: its on-disk list data %q was not found (tried %q): %w", name, fname, tried, fs.ErrNotExist)
		}
		return 0, fmt.Errorf("faissio: FAISS file %s: open its on-disk list data %q (tried %q): %w", name, fname, tried, firstErr)
	}
	ff.closer, ff.data, ff.dname = df, df, ff.info.DataFile
	dsize := df.Size()
	var total int64
	cs := entry - 8
	for l, e := range lists {
		field := fmt.Sprintf("on-disk list %d", l)
		if e.size == 0 {
			continue
		}
		if e.size > e.capacity || e.capacity > uint64(dsize/entry) || e.offset > uint64(dsize-int64(e.capacity)*entry) {
			return 0, r.corrupt(field, listsAt+24*int64(l), "size %d, capacity %d, offset %d do not fit in the %d bytes of %s",
				e.size, e.capacity, e.offset, dsize, ff.info.DataFile)
		}
		ff.sizes[l] = int64(e.size)
		ff.codeOff[l] = int64(e.offset)
		ff.idOff[l] = int64(e.offset) + int64(e.capacity)*cs
		total += int64(e.size)
	}
	return total, nil
}

// listSource is the lists of a FAISS file as an ivf.Source: each list is
// read with positioned reads into buffers of its own, so concurrent calls
// are safe and the file is never held in memory.
type listSource struct {
	ff *indexFile
	cs int
}

func newListSource(ff *indexFile) *listSource {
	return &listSource{ff: ff, cs: ff.p.CodeSize()}
}

func (s *listSource) NumLists() int { return len(s.ff.sizes) }
func (s *listSource) CodeSize() int { return s.cs }

func (s *listSource) ListLen(l int) (int, error) {
	if l < 0 || l >= len(s.ff.sizes) {
		return 0, fmt.Errorf("%w: list %d of %d", ivf.ErrInput, l, len(s.ff.sizes))
	}
	return int(s.ff.sizes[l]), nil
}

// readAt reads b at byte at of the file holding the lists: what of list l.
func (s *listSource) readAt(b []byte, at int64, l int, what string) error {
	if _, err := s.ff.data.ReadAt(b, at); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: FAISS file %s: %s of list %d at byte %d: file ends early (changed since it was opened?)", ivf.ErrCorrupt, s.ff.dname, what, l, at)
		}
		return fmt.Errorf("faissio: read FAISS file %s: %w", s.ff.dname, err)
	}
	return nil
}

func (s *listSource) ReadList(l int) ([]int64, []byte, error) {
	if l < 0 || l >= len(s.ff.sizes) {
		return nil, nil, fmt.Errorf("%w: list %d of %d", ivf.ErrInput, l, len(s.ff.sizes))
	}
	n := s.ff.sizes[l]
	if n == 0 {
		return nil, nil, nil
	}
	codes := make([]byte, n*int64(s.ff.fileCS))
	raw := make([]byte, 8*n)
	if err := s.readAt(codes, s.ff.codeOff[l], l, "codes"); err != nil {
		return nil, nil, err
	}
	if err := s.readAt(raw, s.ff.idOff[l], l, "ids"); err != nil {
		return nil, nil, err
	}
	if s.ff.rqc != nil {
		codes = s.ff.rqc.convert(codes, int(n))
	}
	if s.ff.p.Flat {
		for i := 0; i < len(codes); i += 4 {
			v := math.Float32frombits(binary.LittleEndian.Uint32(codes[i:]))
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, nil, fmt.Errorf("%w: FAISS file %s: vector %d of list %d (at byte %d) has a NaN or infinite component",
					ivf.ErrCorrupt, s.ff.dname, i/s.cs, l, s.ff.codeOff[l]+int64(i))
			}
		}
	}
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = int64(binary.LittleEndian.Uint64(raw[8*i:]))
	}
	if err := ivf.CheckIDs(ids); err != nil {
		return nil, nil, fmt.Errorf("%w: FAISS file %s, list %d: %v", ErrUnsupported, s.ff.dname, l, err)
	}
	return ids, codes, nil
}

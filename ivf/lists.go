package ivf

import (
	"fmt"
	"sync"

	"github.com/shelfdb/shelf/store"
)

// Source is a set of inverted lists read one list at a time: what a merge
// reads (a Snapshot, a code block, a FAISS file's lists). Calls may come
// from several goroutines at once; the slices returned are only read,
// and only until the next call for the same list.
type Source interface {
	NumLists() int
	CodeSize() int
	ListLen(l int) (int, error)
	ReadList(l int) (ids []int64, codes []byte, err error)
}

// Lists are the inverted lists an Index stores its codes in, like
// faiss::InvertedLists: MemLists in memory, and the store of an index
// directory on disk. The Index uses them through this interface only.
// One writer at a time; any number of snapshots read alongside it.
type Lists interface {
	NumLists() int
	CodeSize() int
	// Snapshot returns a consistent read-only view; Release it.
	Snapshot() (Snapshot, error)
	// Append adds entry i to list lists[i], all or nothing, and stores
	// meta (the index's small records) in the same commit.
	Append(lists, ids []int64, codes []byte, meta map[string][]byte) error
	// Remove deletes the entries whose id sel accepts; it returns how many.
	Remove(sel func(id int64) bool) (int64, error)
	// MergeFrom appends every entry of srcs, ids shifted by shift[i] (nil:
	// none), leaving headroom (a share of each grown list's size) free
	// in its slot where the lists have slots, and stores meta in the same
	// commit.
	MergeFrom(srcs []Source, shift []int64, headroom float64, meta map[string][]byte) (int64, error)
	// Meta returns a record stored by Append or MergeFrom.
	Meta(key string) ([]byte, bool)
	// Refresh makes the lists show what another process committed since
	// they were opened or last refreshed; it reports whether anything
	// changed (always false for lists only this process writes).
	Refresh() (bool, error)
	Close() error
}

// Snapshot is a consistent read-only view of Lists.
type Snapshot interface {
	Source
	// Prefetch hints that lists will be read soon.
	Prefetch(lists []int)
	Release()
}

// MemLists keeps the lists in memory (faiss::ArrayInvertedLists).
// Snapshots copy the list headers only: appends never touch what a
// snapshot sees, and removals build new slices.
type MemLists struct {
	mu      sync.RWMutex
	version uint64 // content version (see VersionedSource), new on every change
	cs      int
	ids     [][]int64
	codes   [][]byte
	meta    map[string][]byte
}

// NewMemLists makes nlist empty lists of codeSize-byte codes.
func NewMemLists(nlist, codeSize int) *MemLists {
	return &MemLists{cs: codeSize, ids: make([][]int64, nlist), codes: make([][]byte, nlist), meta: map[string][]byte{}, version: newVersion()}
}

// NumLists returns the number of lists.
func (m *MemLists) NumLists() int { return len(m.ids) }

// CodeSize returns the bytes per code.
func (m *MemLists) CodeSize() int { return m.cs }

// Append adds entries; see Lists.
func (m *MemLists) Append(lists, ids []int64, codes []byte, meta map[string][]byte) error {
	if err := checkAppend(len(m.ids), m.cs, lists, ids, codes); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.version = newVersion()
	for i, l := range lists {
		m.ids[l] = append(m.ids[l], ids[i])
		m.codes[l] = append(m.codes[l], codes[i*m.cs:(i+1)*m.cs]...)
	}
	for k, v := range meta {
		m.meta[k] = append([]byte(nil), v...)
	}
	return nil
}

func checkAppend(nlist, cs int, lists, ids []int64, codes []byte) error {
	if len(lists) != len(ids) || len(codes) != len(ids)*cs {
		return fmt.Errorf("%w: %d list numbers, %d ids, %d code bytes of %d", ErrInput, len(lists), len(ids), len(codes), cs)
	}
	for i, l := range lists {
		if l < 0 || l >= int64(nlist) {
			return fmt.Errorf("%w: entry %d assigned to list %d of %d", ErrInput, i, l, nlist)
		}
	}
	return nil
}

// Remove deletes entries; see Lists.
func (m *MemLists) Remove(sel func(id int64) bool) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.version = newVersion()
	var n int64
	for l, ids := range m.ids {
		var keepIDs []int64
		var keepCodes []byte
		removed := false
		for i, id := range ids {
			if sel(id) {
				if !removed {
					keepIDs = append([]int64(nil), ids[:i]...)
					keepCodes = append([]byte(nil), m.codes[l][:i*m.cs]...)
					removed = true
				}
				n++
				continue
			}
			if removed {
				keepIDs = append(keepIDs, id)
				keepCodes = append(keepCodes, m.codes[l][i*m.cs:(i+1)*m.cs]...)
			}
		}
		if removed {
			m.ids[l], m.codes[l] = keepIDs, keepCodes
		}
	}
	return n, nil
}

// MergeFrom appends the entries of srcs; see Lists. Headroom means
// nothing in memory.
func (m *MemLists) MergeFrom(srcs []Source, shift []int64, _ float64, meta map[string][]byte) (int64, error) {
	for i, s := range srcs {
		if s.NumLists() != len(m.ids) || s.CodeSize() != m.cs {
			return 0, fmt.Errorf("%w: source %d has %d lists of %d bytes, want %d of %d", ErrIncompatible, i, s.NumLists(), s.CodeSize(), len(m.ids), m.cs)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.version = newVersion()
	var n int64
	for i, s := range srcs {
		for l := range m.ids {
			ids, codes, err := s.ReadList(l)
			if err != nil {
				return n, err
			}
			for _, id := range ids {
				if shift != nil {
					id += shift[i]
				}
				m.ids[l] = append(m.ids[l], id)
			}
			m.codes[l] = append(m.codes[l], codes...)
			n += int64(len(ids))
		}
	}
	for k, v := range meta {
		m.meta[k] = append([]byte(nil), v...)
	}
	return n, nil
}

// Meta returns a record; see Lists.
func (m *MemLists) Meta(key string) ([]byte, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	v, ok := m.meta[key]
	return v, ok
}

// Refresh reports false: only this process writes in-memory lists.
func (m *MemLists) Refresh() (bool, error) { return false, nil }

// Close does nothing for in-memory lists.
func (m *MemLists) Close() error { return nil }

// Snapshot returns a view of the lists as they are now.
func (m *MemLists) Snapshot() (Snapshot, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return &memSnap{cs: m.cs, ids: append([][]int64(nil), m.ids...), codes: append([][]byte(nil), m.codes...), version: m.version}, nil
}

type memSnap struct {
	cs      int
	ids     [][]int64
	codes   [][]byte
	version uint64
}

// Version implements VersionedSource.
func (s *memSnap) Version() uint64 { return s.version }

func (s *memSnap) NumLists() int { return len(s.ids) }
func (s *memSnap) CodeSize() int { return s.cs }
func (s *memSnap) ListLen(l int) (int, error) {
	if l < 0 || l >= len(s.ids) {
		return 0, fmt.Errorf("%w: list %d of %d", ErrInput, l, len(s.ids))
	}
	return len(s.ids[l]), nil
}
func (s *memSnap) ReadList(l int) ([]int64, []byte, error) {
	if l < 0 || l >= len(s.ids) {
		return nil, nil, fmt.Errorf("%w: list %d of %d", ErrInput, l, len(s.ids))
	}
	return s.ids[l], s.codes[l], nil
}
func (s *memSnap) Prefetch([]int) {}
func (s *memSnap) Release()       {}

// diskLists keeps the lists in the store of an index directory.
type diskLists struct {
	s *store.Store

	mu      sync.Mutex
	seq     uint64 // commit of the last snapshot taken
	version uint64 // its content version (see VersionedSource)
}

func (d *diskLists) NumLists() int { return d.s.NumLists() }
func (d *diskLists) CodeSize() int { return d.s.CodeSize() }

// Append adds entries in one durable commit; see Lists.
func (d *diskLists) Append(lists, ids []int64, codes []byte, meta map[string][]byte) error {
	if err := checkAppend(d.s.NumLists(), d.s.CodeSize(), lists, ids, codes); err != nil {
		return err
	}
	b, err := d.s.Begin()
	if err != nil {
		return err
	}
	if err := b.AddSpread(lists, ids, codes); err != nil {
		b.Abort()
		return err
	}
	for k, v := range meta {
		_ = b.SetMeta(k, v)
	}
	return b.Commit()
}

// Remove deletes entries in one commit; see Lists.
func (d *diskLists) Remove(sel func(id int64) bool) (int64, error) {
	v, err := d.s.View()
	if err != nil {
		return 0, err
	}
	defer v.Release()
	b, err := d.s.Begin()
	if err != nil {
		return 0, err
	}
	cs := d.s.CodeSize()
	var n int64
	for l := 0; l < v.NumLists(); l++ {
		ids, codes, err := v.ReadList(l)
		if err != nil {
			b.Abort()
			return 0, err
		}
		var keepIDs []int64
		var keepCodes []byte
		removed := 0
		for i, id := range ids {
			if sel(id) {
				removed++
				continue
			}
			keepIDs = append(keepIDs, id)
			keepCodes = append(keepCodes, codes[i*cs:(i+1)*cs]...)
		}
		if removed == 0 {
			continue
		}
		n += int64(removed)
		if len(keepIDs) == 0 {
			err = b.Clear(l)
		} else if err = b.Update(l, 0, keepIDs, keepCodes); err == nil {
			err = b.Resize(l, len(keepIDs))
		}
		if err != nil {
			b.Abort()
			return 0, err
		}
	}
	return n, b.Commit()
}

// MergeFrom appends the entries of srcs with the store's two-pass merge.
func (d *diskLists) MergeFrom(srcs []Source, shift []int64, headroom float64, meta map[string][]byte) (int64, error) {
	ss := make([]store.Source, len(srcs))
	for i, s := range srcs {
		ss[i] = s
	}
	return d.s.MergeFrom(ss, &store.MergeOptions{IDShift: shift, Meta: meta, Headroom: headroom})
}

func (d *diskLists) Meta(key string) ([]byte, bool) { return d.s.Meta(key) }
func (d *diskLists) Refresh() (bool, error)         { return d.s.Refresh() }
func (d *diskLists) Close() error                   { return d.s.Close() }

// Snapshot returns a store view.
func (d *diskLists) Snapshot() (Snapshot, error) {
	v, err := d.s.View()
	if err != nil {
		return nil, err
	}
	// Every commit (add, remove, merge, compaction) has its own sequence
	// number, so the content of a view is named by the store and its
	// commit; the version maps that pair to a number unique in the
	// process.
	d.mu.Lock()
	if d.version == 0 || v.Seq() != d.seq {
		d.seq, d.version = v.Seq(), newVersion()
	}
	ver := d.version
	d.mu.Unlock()
	return diskSnap{v, ver}, nil
}

type diskSnap struct {
	*store.View
	version uint64
}

// Version implements VersionedSource.
func (s diskSnap) Version() uint64 { return s.version }

func (s diskSnap) Prefetch(lists []int) { _ = s.View.Prefetch(lists, 0) }

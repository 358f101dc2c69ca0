package store

import "fmt"

// View is a consistent, read-only snapshot of the store: the list table of
// one commit and the mapping its slots live in. The slices a View returns
// alias the memory map and stay valid and unchanged until Release, whatever
// writers do meanwhile (they never rewrite committed bytes in place, and
// freed space is reused only after every View that could see it is gone).
// A View is safe for concurrent use. Always Release it: a View that is
// never released keeps old space from being reused.
type View struct {
	s        *Store
	st       *state
	released bool
}

// View returns a snapshot of the last commit.
func (s *Store) View() (*View, error) {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	st := s.cur
	st.m.refs++
	s.views[st.seq]++
	return &View{s: s, st: st}, nil
}

// Release ends the view; its slices must not be used afterwards.
func (v *View) Release() {
	s := v.s
	s.rmu.Lock()
	defer s.rmu.Unlock()
	if v.released {
		return
	}
	v.released = true
	s.dropMappingLocked(v.st.m)
	if s.views[v.st.seq]--; s.views[v.st.seq] == 0 {
		delete(s.views, v.st.seq)
	}
	s.updateRegLocked()
}

// Seq returns the commit this view reads.
func (v *View) Seq() uint64 { return v.st.seq }

// NumLists returns the number of lists.
func (v *View) NumLists() int { return v.st.nlist }

// CodeSize returns the number of bytes of one code.
func (v *View) CodeSize() int { return int(v.s.conf.codeSize) }

func (v *View) entry(l int) (entry, error) {
	if l < 0 || l >= v.st.nlist {
		return entry{}, fmt.Errorf("%w: list %d of %d in %s", ErrList, l, v.st.nlist, v.s.dir)
	}
	return v.st.tab.get(l), nil
}

// ListLen returns the number of entries in list l.
func (v *View) ListLen(l int) (int, error) {
	e, err := v.entry(l)
	return int(e.size), err
}

// Codes returns the codes of list l (ListLen*CodeSize bytes).
func (v *View) Codes(l int) ([]byte, error) {
	e, err := v.entry(l)
	if err != nil {
		return nil, err
	}
	return v.codes(e), nil
}

// IDs returns the ids of list l.
func (v *View) IDs(l int) ([]int64, error) {
	e, err := v.entry(l)
	if err != nil {
		return nil, err
	}
	return v.ids(e), nil
}

// ReadList returns both the ids and the codes of list l.
func (v *View) ReadList(l int) ([]int64, []byte, error) {
	e, err := v.entry(l)
	if err != nil {
		return nil, nil, err
	}
	return v.ids(e), v.codes(e), nil
}

func (v *View) codes(e entry) []byte {
	if e.size == 0 {
		return nil
	}
	return v.st.m.bytes(e.off, e.size*uint64(v.s.conf.codeSize))
}

func (v *View) ids(e entry) []int64 {
	if e.size == 0 {
		return nil
	}
	return int64View(v.st.m.bytes(e.off+align8(e.cap*uint64(v.s.conf.codeSize)), 8*e.size))
}

// Code returns the code of entry i of list l.
func (v *View) Code(l, i int) ([]byte, error) {
	e, err := v.entry(l)
	if err != nil {
		return nil, err
	}
	if i < 0 || uint64(i) >= e.size {
		return nil, fmt.Errorf("%w: entry %d of list %d (size %d)", ErrEntry, i, l, e.size)
	}
	cs := uint64(v.s.conf.codeSize)
	return v.st.m.bytes(e.off+uint64(i)*cs, cs), nil
}

// ID returns the id of entry i of list l.
func (v *View) ID(l, i int) (int64, error) {
	e, err := v.entry(l)
	if err != nil {
		return 0, err
	}
	if i < 0 || uint64(i) >= e.size {
		return 0, fmt.Errorf("%w: entry %d of list %d (size %d)", ErrEntry, i, l, e.size)
	}
	return v.ids(e)[i], nil
}

// Iterator walks the entries of one list.
type Iterator struct {
	ids   []int64
	codes []byte
	cs    int
	i     int
}

// Iter returns an iterator over list l: for it.Next() { it.ID(); it.Code() }.
func (v *View) Iter(l int) (*Iterator, error) {
	ids, codes, err := v.ReadList(l)
	if err != nil {
		return nil, err
	}
	return &Iterator{ids: ids, codes: codes, cs: v.CodeSize(), i: -1}, nil
}

// Next advances to the next entry and reports whether there is one.
func (it *Iterator) Next() bool { it.i++; return it.i < len(it.ids) }

// ID returns the current entry's id.
func (it *Iterator) ID() int64 { return it.ids[it.i] }

// Code returns the current entry's code.
func (it *Iterator) Code() []byte { return it.codes[it.i*it.cs : (it.i+1)*it.cs] }

// NTotal returns the number of entries in all lists (FAISS compute_ntotal).
func (v *View) NTotal() int64 {
	var n int64
	for l := 0; l < v.st.nlist; l++ {
		n += int64(v.st.tab.get(l).size)
	}
	return n
}

// ListSizes returns the size of every list.
func (v *View) ListSizes() []int {
	out := make([]int, v.st.nlist)
	for l := range out {
		out[l] = int(v.st.tab.get(l).size)
	}
	return out
}

// ImbalanceFactor is FAISS's imbalance factor of the list sizes:
// nlist * sum(size^2) / ntotal^2; 1 means perfectly balanced, 0 for empty.
func (v *View) ImbalanceFactor() float64 {
	var tot, sq float64
	for l := 0; l < v.st.nlist; l++ {
		n := float64(v.st.tab.get(l).size)
		tot += n
		sq += n * n
	}
	if tot == 0 {
		return 0
	}
	return sq * float64(v.st.nlist) / (tot * tot)
}

// ListSize returns the number of entries in list l of the last commit.
func (s *Store) ListSize(l int) (int, error) {
	st := s.current()
	if l < 0 || l >= st.nlist {
		return 0, fmt.Errorf("%w: list %d of %d in %s", ErrList, l, st.nlist, s.dir)
	}
	return int(st.tab.get(l).size), nil
}

// ReadList returns a copy of the ids and codes of list l.
func (s *Store) ReadList(l int) ([]int64, []byte, error) {
	v, err := s.View()
	if err != nil {
		return nil, nil, err
	}
	defer v.Release()
	ids, codes, err := v.ReadList(l)
	if err != nil {
		return nil, nil, err
	}
	return append([]int64(nil), ids...), append([]byte(nil), codes...), nil
}

// NTotal returns the number of entries in the last commit.
func (s *Store) NTotal() int64 {
	v, err := s.View()
	if err != nil {
		return 0
	}
	defer v.Release()
	return v.NTotal()
}

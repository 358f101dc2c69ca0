package store

import (
	"fmt"
	"math/bits"
	"runtime"
	"sort"

	"github.com/cockroachdb/pebble/v2"
	"golang.org/x/sys/unix"
)

// Stats describes the store at its last commit.
type Stats struct {
	NumLists     int
	CodeSize     int
	NTotal       int64
	FileBytes    int64 // data file size
	UsedBytes    int64 // bytes of slots owned by lists
	DataBytes    int64 // bytes of meaningful entries (size, not capacity)
	FreeBytes    int64 // reusable now
	PendingBytes int64 // freed, waiting for readers of older commits
	FreeExtents  int
	LargestFree  int64
	EmptyLists   int
	// FullLists have no room left in their slot (size == capacity > 0):
	// the next add to one moves it to a new slot (see MergeOptions.Headroom).
	FullLists       int
	MaxListLen      int
	ImbalanceFactor float64
	// SizeHistogram[i] counts lists with size in [2^(i-1), 2^i) (i=0: empty).
	SizeHistogram []int
	Seq           uint64
	Generation    uint64
}

// Stats returns sizes and space accounting.
func (s *Store) Stats() (Stats, error) {
	if !s.readOnly {
		s.wmu.Lock()
		defer s.wmu.Unlock()
	}
	v, err := s.View()
	if err != nil {
		return Stats{}, err
	}
	defer v.Release()
	cs := uint64(s.conf.codeSize)
	st := Stats{NumLists: v.NumLists(), CodeSize: int(cs), Seq: v.st.seq, Generation: v.st.gen, FileBytes: int64(v.st.fsize)}
	for l := 0; l < v.st.nlist; l++ {
		e := v.st.tab.get(l)
		st.NTotal += int64(e.size)
		st.UsedBytes += int64(slotBytes(e.cap, int(cs)))
		st.DataBytes += int64(e.size * (cs + 8))
		if e.size == 0 {
			st.EmptyLists++
		} else if e.size == e.cap {
			st.FullLists++
		}
		if int(e.size) > st.MaxListLen {
			st.MaxListLen = int(e.size)
		}
		b := bits.Len64(e.size)
		for len(st.SizeHistogram) <= b {
			st.SizeHistogram = append(st.SizeHistogram, 0)
		}
		st.SizeHistogram[b]++
	}
	st.ImbalanceFactor = v.ImbalanceFactor()
	if !s.readOnly {
		st.FileBytes = int64(s.alloc.End())
		st.FreeBytes = int64(s.alloc.FreeBytes())
		st.FreeExtents = s.alloc.NumExtents()
		st.LargestFree = int64(s.alloc.Largest())
		for _, p := range s.pending {
			st.PendingBytes += int64(p.ext.Len)
		}
	} else {
		st.FreeBytes = st.FileBytes - headerSize - st.UsedBytes
	}
	return st, nil
}

// Check verifies the store's invariants and returns the first violation:
// slots inside the file and not overlapping, size <= capacity, free +
// pending + used == the file, free space disjoint from used slots, the
// in-memory table equal to the one in Pebble, and every list's bytes
// matching its CRCs (a *ListError, see Verify). Tests call it after every
// step; it costs O(nlist log nlist) and a read of every list.
func (s *Store) Check() error {
	if *emptyChunk != (chunk{}) {
		return fmt.Errorf("internal: the shared chunk of empty lists was written to")
	}
	if !s.readOnly {
		s.wmu.Lock()
		defer s.wmu.Unlock()
	}
	v, err := s.View()
	if err != nil {
		return err
	}
	defer v.Release()
	cs := int(s.conf.codeSize)
	if _, err := validateTable(v.st.tab, cs, v.st.fsize); err != nil {
		return err
	}
	if s.readOnly {
		return v.checkCRCs()
	}
	if err := s.failure(); err != nil {
		return err
	}
	if err := s.alloc.Check(); err != nil {
		return fmt.Errorf("allocator: %w", err)
	}
	if v.st.fsize > s.alloc.End() {
		return fmt.Errorf("committed file size %d beyond allocator end %d", v.st.fsize, s.alloc.End())
	}
	if sz, err := s.file.Size(); err != nil || uint64(sz) < s.alloc.End() {
		return fmt.Errorf("data file is %d bytes (%v), allocator covers %d", sz, err, s.alloc.End())
	}
	// Every byte of [header, end) is exactly one of used, free, pending.
	type span struct {
		off, end uint64
		what     string
	}
	var all []span
	for _, u := range v.st.tab.slotsByOffset(cs) {
		all = append(all, span{u[0], u[1], fmt.Sprintf("list %d", u[2])})
	}
	for _, e := range s.alloc.Extents() {
		all = append(all, span{e.Off, e.End(), "free"})
	}
	for _, p := range s.pending {
		all = append(all, span{p.ext.Off, p.ext.End(), fmt.Sprintf("pending(seq %d)", p.seq)})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].off < all[j].off })
	pos := uint64(headerSize)
	for _, sp := range all {
		if sp.off != pos {
			if sp.off < pos {
				return fmt.Errorf("%s [%d, %d) overlaps what ends at %d", sp.what, sp.off, sp.end, pos)
			}
			return fmt.Errorf("bytes [%d, %d) are neither used, free nor pending (leak)", pos, sp.off)
		}
		pos = sp.end
	}
	if pos != s.alloc.End() {
		return fmt.Errorf("accounting ends at %d, file at %d", pos, s.alloc.End())
	}
	// The table in memory is the table in Pebble.
	var st stateRec
	var tab *table
	err = s.meta.read(func(db *pebble.DB) (err error) {
		_, st, tab, _, err = loadMeta(db)
		return err
	})
	if err != nil {
		return err
	}
	if st.seq != v.st.seq || int(st.nlist) != v.st.nlist || st.fsize != v.st.fsize || st.gen != v.st.gen {
		return fmt.Errorf("pebble state %+v differs from memory (seq %d nlist %d fsize %d gen %d)", st, v.st.seq, v.st.nlist, v.st.fsize, v.st.gen)
	}
	for l := 0; l < v.st.nlist; l++ {
		if tab.get(l) != v.st.tab.get(l) {
			return fmt.Errorf("list %d: pebble %+v, memory %+v", l, tab.get(l), v.st.tab.get(l))
		}
	}
	return v.checkCRCs()
}

// checkCRCs returns the first list whose bytes do not match its CRCs; a
// table without CRCs passes.
func (v *View) checkCRCs() error {
	if v.st.tab.noCRC {
		return nil
	}
	bad, err := v.verifyAll(nil)
	if err != nil {
		return err
	}
	if len(bad) > 0 {
		return bad[0]
	}
	return nil
}

// Prefetch asks the kernel to read the given lists into the page cache
// (madvise WILLNEED, like FAISS's prefetch_lists) and, with threads > 0,
// also touches their pages from that many goroutines, which waits until
// they are resident. Unknown list numbers are an error.
func (v *View) Prefetch(lists []int, threads int) error {
	type rng struct{ off, n uint64 }
	cs := uint64(v.s.conf.codeSize)
	rs := make([]rng, 0, 2*len(lists))
	for _, l := range lists {
		e, err := v.entry(l)
		if err != nil {
			return err
		}
		if e.size == 0 {
			continue
		}
		rs = append(rs, rng{e.off, e.size * cs}, rng{e.off + align8(e.cap*cs), e.size * 8})
	}
	for _, r := range rs {
		if err := v.st.m.advise(r.off, r.n, unix.MADV_WILLNEED); err != nil {
			return fmt.Errorf("store: prefetch: %w", err)
		}
	}
	if threads <= 0 {
		return nil
	}
	done := make(chan byte, threads)
	for t := 0; t < threads; t++ {
		go func(t int) {
			var acc byte
			for i := t; i < len(rs); i += threads {
				acc ^= v.st.m.touch(rs[i].off, rs[i].n)
			}
			done <- acc
		}(t)
	}
	var acc byte
	for t := 0; t < threads; t++ {
		acc ^= <-done
	}
	runtime.KeepAlive(acc) // the page reads are the point: keep them
	return nil
}

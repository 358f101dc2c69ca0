package ivf

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
)

// The index's id bookkeeping lives in the lists' records and changes only
// in the same commit as the vectors it describes, so a crash can never
// leave it behind them:
//
//	ivf/next_id    the id the next Add starts at
//	ivf/id_bounds  the smallest and largest id ever stored (16 bytes;
//	               absent in directories made before bounds were kept)
//
// Invariant: next > every id ever stored, so Add never hands out an id
// twice, whatever AddWithIDs and merges brought in. Removals leave the
// bounds as they are: bounds may be wider than the ids held, never
// narrower.
const (
	metaNextID   = "ivf/next_id"
	metaIDBounds = "ivf/id_bounds"
)

// idState is the index's id bookkeeping.
type idState struct {
	next   int64 // the id the next Add starts at
	lo, hi int64 // smallest and largest id ever stored; lo > hi: none
	known  bool  // lo and hi are known
}

func emptyIDs() idState { return idState{lo: math.MaxInt64, hi: math.MinInt64, known: true} }

func (s idState) empty() bool { return s.known && s.lo > s.hi }

// with returns the bookkeeping after ids in [lo, hi] were stored.
func (s idState) with(lo, hi int64) idState {
	if lo > hi {
		return s
	}
	if s.known {
		s.lo, s.hi = min(s.lo, lo), max(s.hi, hi)
	}
	if hi == math.MaxInt64 {
		s.next = math.MaxInt64 // no sequential ids left; Add says so
	} else {
		s.next = max(s.next, hi+1)
	}
	return s
}

// meta is the records of s, for the commit that makes it true.
func (s idState) meta() map[string][]byte {
	m := map[string][]byte{metaNextID: binary.LittleEndian.AppendUint64(nil, uint64(s.next))}
	if s.known {
		b := binary.LittleEndian.AppendUint64(nil, uint64(s.lo))
		m[metaIDBounds] = binary.LittleEndian.AppendUint64(b, uint64(s.hi))
	}
	return m
}

// loadIDs reads the bookkeeping from the lists' records.
func (ix *Index) loadIDs() error {
	s := idState{lo: math.MaxInt64, hi: math.MinInt64}
	if v, ok := ix.lists.Meta(metaNextID); ok {
		if len(v) != 8 {
			return fmt.Errorf("%w: record %s has %d bytes, want 8", ErrCorrupt, metaNextID, len(v))
		}
		s.next = int64(binary.LittleEndian.Uint64(v))
	}
	if v, ok := ix.lists.Meta(metaIDBounds); ok {
		if len(v) != 16 {
			return fmt.Errorf("%w: record %s has %d bytes, want 16", ErrCorrupt, metaIDBounds, len(v))
		}
		s.lo, s.hi, s.known = int64(binary.LittleEndian.Uint64(v)), int64(binary.LittleEndian.Uint64(v[8:])), true
	}
	if s.known && s.lo <= s.hi && s.next <= s.hi && s.hi != math.MaxInt64 {
		return fmt.Errorf("%w: id records: next id %d, ids in [%d, %d]", ErrCorrupt, s.next, s.lo, s.hi)
	}
	ix.mu.Lock()
	ix.ids = s
	ix.mu.Unlock()
	return nil
}

// idBounds returns the bookkeeping with known bounds, scanning the ids of
// snap when the records have none (directories made before they were
// kept).
func (ix *Index) idBounds(snap Snapshot) (idState, error) {
	ix.mu.Lock()
	s := ix.ids
	ix.mu.Unlock()
	if s.known {
		return s, nil
	}
	lo, hi, err := scanBounds(snap)
	if err != nil {
		return s, err
	}
	s.lo, s.hi, s.known = lo, hi, true
	return s, nil
}

// scanBounds returns the smallest and largest id of src (lo > hi: none).
func scanBounds(src Source) (lo, hi int64, err error) {
	lo, hi = math.MaxInt64, math.MinInt64
	err = eachID(src, 0, func(id int64) {
		lo, hi = min(lo, id), max(hi, id)
	})
	return lo, hi, err
}

// eachID calls fn with every id of src plus shift.
func eachID(src Source, shift int64, fn func(id int64)) error {
	for l := 0; l < src.NumLists(); l++ {
		ids, _, err := src.ReadList(l)
		if err != nil {
			return err
		}
		for _, id := range ids {
			fn(id + shift)
		}
	}
	return nil
}

// checkIDs refuses ids that cannot be stored: -1 marks an empty result
// slot (as in FAISS), so no vector may have it. It returns the bounds.
func checkIDs(ids []int64) (lo, hi int64, err error) {
	lo, hi = math.MaxInt64, math.MinInt64
	for i, id := range ids {
		if id == -1 {
			return 0, 0, fmt.Errorf("%w: id -1 of vector %d: -1 marks an empty result slot and is not a vector's id", ErrInput, i)
		}
		lo, hi = min(lo, id), max(hi, id)
	}
	return lo, hi, nil
}

// idParty is one side of a merge as far as ids go: the index merged into,
// a directory of code blocks, or another index.
type idParty struct {
	name   string
	lo, hi int64      // bounds of the ids, shift included; lo > hi: none
	ranges [][2]int64 // the ids exactly, as sorted disjoint [lo, hi] ranges, or nil
	src    Source     // else the lists holding the ids
	shift  int64      // added to the ids of src
}

func (p *idParty) describe() string {
	if p.lo > p.hi {
		return p.name + " holds no ids"
	}
	return fmt.Sprintf("%s holds ids %d..%d", p.name, p.lo, p.hi)
}

// contains reports whether id is in a range party.
func (p *idParty) contains(id int64) bool {
	i := sort.Search(len(p.ranges), func(i int) bool { return p.ranges[i][1] >= id })
	return i < len(p.ranges) && p.ranges[i][0] <= id
}

// each calls fn with every id of p in [lo, hi].
func (p *idParty) each(lo, hi int64, fn func(int64)) error {
	if p.ranges != nil {
		for _, r := range p.ranges {
			for id := max(r[0], lo); id <= min(r[1], hi); id++ {
				fn(id)
			}
		}
		return nil
	}
	return eachID(p.src, p.shift, func(id int64) {
		if id >= lo && id <= hi {
			fn(id)
		}
	})
}

// duplicates counts the ids parties a and b share, with a few examples.
func duplicates(a, b *idParty) (n int64, first, last int64, examples []int64, err error) {
	lo, hi := max(a.lo, b.lo), min(a.hi, b.hi)
	if lo > hi {
		return 0, 0, 0, nil, nil
	}
	// The side tested for membership: ranges if either has them, else
	// b's ids in the overlap, collected and sorted.
	if b.ranges == nil && a.ranges != nil {
		a, b = b, a
	}
	member := b.contains
	if b.ranges == nil {
		var set []int64
		if err := b.each(lo, hi, func(id int64) { set = append(set, id) }); err != nil {
			return 0, 0, 0, nil, err
		}
		sort.Slice(set, func(i, j int) bool { return set[i] < set[j] })
		member = func(id int64) bool {
			i := sort.Search(len(set), func(i int) bool { return set[i] >= id })
			return i < len(set) && set[i] == id
		}
	}
	first, last = math.MaxInt64, math.MinInt64
	err = a.each(lo, hi, func(id int64) {
		if member(id) {
			n++
			first, last = min(first, id), max(last, id)
			// The five smallest, in order.
			i := sort.Search(len(examples), func(i int) bool { return examples[i] >= id })
			if i < 5 {
				examples = slices.Insert(examples, i, id)[:min(len(examples)+1, 5)]
			}
		}
	})
	return n, first, last, examples, err
}

// checkDuplicates refuses a merge in which two vectors of the parties
// would share an id, naming the ids and how to avoid it.
func checkDuplicates(parties []*idParty, next int64) error {
	for i := range parties {
		for j := i + 1; j < len(parties); j++ {
			a, b := parties[i], parties[j]
			n, first, last, ex, err := duplicates(a, b)
			if err != nil {
				return err
			}
			if n == 0 {
				continue
			}
			s := make([]string, len(ex))
			for k, id := range ex {
				s[k] = fmt.Sprint(id)
			}
			more := ""
			if n > int64(len(ex)) {
				more = ", ..."
			}
			return fmt.Errorf("%w: the merge would give %d ids to two vectors each (%s%s; all in %d..%d): %s and %s; "+
				"number the merged vectors after the index's (shelf merge --id-shift auto, MergeOptions.AutoShift: from id %d on), "+
				"shift them by hand (--id-shift N, MergeOptions.IDShift), or allow duplicate ids explicitly (--allow-duplicate-ids)",
				ErrDuplicateIDs, n, strings.Join(s, ", "), more, first, last, a.describe(), b.describe(), next)
		}
	}
	return nil
}

package slots

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"

	"github.com/google/btree"
)

// ErrInvalid is wrapped by every error caused by a bad argument: a range
// outside [Base, End), a range that overflows uint64, a range that is not
// free when it must be (AllocAt) or not used when it must be (Free), a
// shrinking Grow, or an inconsistent used set given to Rebuild. Callers
// test for it with errors.Is; the message names the offending ranges.
var ErrInvalid = errors.New("slots: invalid range")

// degree is the B-tree degree. Extents are 16 bytes, so wide nodes keep a
// tree of a million extents only four levels deep and scan cache-friendly.
const degree = 32

// Extent is a byte range [Off, Off+Len).
type Extent struct{ Off, Len uint64 }

// End returns Off+Len, the first byte after the extent. It wraps if the
// extent overflows uint64; the allocator never stores such an extent and
// rejects any argument that would be one.
func (e Extent) End() uint64 { return e.Off + e.Len }

// String formats the extent as a half-open interval, the form used in error
// messages, and spells out an overflowing extent rather than printing a
// wrapped end.
func (e Extent) String() string {
	if e.Len > math.MaxUint64-e.Off {
		return fmt.Sprintf("[%d,+%d overflows uint64)", e.Off, e.Len)
	}
	return fmt.Sprintf("[%d,%d)", e.Off, e.End())
}

// lessSize orders the best-fit index: shortest first, then lowest offset,
// so the first extent at or after {Len: n} is the best fit for n bytes.
func lessSize(a, b Extent) bool {
	if a.Len != b.Len {
		return a.Len < b.Len
	}
	return a.Off < b.Off
}

// lessOff orders the neighbour index. Free extents never overlap, so the
// offset alone identifies one.
func lessOff(a, b Extent) bool { return a.Off < b.Off }

// Allocator tracks the free extents of the byte range [Base, End). The zero
// value is not usable; create one with New or Rebuild. It is not safe for
// concurrent use: the store serializes all calls.
type Allocator struct {
	base, end uint64
	free      uint64 // sum of the free extent lengths, kept so FreeBytes is O(1)
	bySize    *btree.BTreeG[Extent]
	byOff     *btree.BTreeG[Extent]

	// first is an iterator that records the first extent it visits in hit
	// and stops. It is built once per allocator so that the tree lookups on
	// the hot path do not allocate a fresh closure per call.
	first func(Extent) bool
	hit   Extent
	found bool
}

// New returns an allocator whose whole range [base, end) is free. A range
// with end <= base is empty (end is taken as base), so every allocation
// fails until Grow; New has no error result because an empty range is the
// natural start of a file that has not been written yet.
func New(base, end uint64) *Allocator {
	if end < base {
		end = base
	}
	a := newEmpty(base, end)
	if end > base {
		a.insert(Extent{Off: base, Len: end - base})
	}
	return a
}

// newEmpty returns an allocator over [base, end) with no free extents.
func newEmpty(base, end uint64) *Allocator {
	a := &Allocator{
		base:   base,
		end:    end,
		bySize: btree.NewG(degree, lessSize),
		byOff:  btree.NewG(degree, lessOff),
	}
	a.initLookup()
	return a
}

// initLookup builds the reusable lookup iterator bound to a.
func (a *Allocator) initLookup() {
	a.first = func(e Extent) bool {
		a.hit, a.found = e, true
		return false
	}
}

// Rebuild returns the allocator whose free space is [base, end) minus the
// used extents, which is how the store recovers the allocator from the
// extents its metadata says are live. used may be in any order and is not
// modified; zero-length entries are ignored because they occupy nothing.
// It fails, wrapping ErrInvalid, if end < base, if an extent lies outside
// [base, end) (naming it), or if two extents overlap (naming both), since
// either means the metadata is inconsistent and allocating from the result
// would hand out live bytes.
func Rebuild(base, end uint64, used []Extent) (*Allocator, error) {
	if end < base {
		return nil, fmt.Errorf("%w: rebuild range [%d,%d) ends before it starts", ErrInvalid, base, end)
	}
	sorted := make([]Extent, 0, len(used))
	for _, u := range used {
		if u.Len == 0 {
			continue
		}
		if !inside(u, base, end) {
			return nil, fmt.Errorf("%w: used extent %v lies outside [%d,%d)", ErrInvalid, u, base, end)
		}
		sorted = append(sorted, u)
	}
	slices.SortFunc(sorted, func(x, y Extent) int {
		if c := cmp.Compare(x.Off, y.Off); c != 0 {
			return c
		}
		return cmp.Compare(x.Len, y.Len)
	})
	a := newEmpty(base, end)
	cursor := base
	for i, u := range sorted {
		// Every earlier extent is disjoint from its successor and sorted,
		// so the previous one reaches furthest and is the only candidate
		// for overlapping u.
		if i > 0 && u.Off < cursor {
			return nil, fmt.Errorf("%w: used extents %v and %v overlap", ErrInvalid, sorted[i-1], u)
		}
		if u.Off > cursor {
			a.insert(Extent{Off: cursor, Len: u.Off - cursor})
		}
		cursor = u.End()
	}
	if cursor < end {
		a.insert(Extent{Off: cursor, Len: end - cursor})
	}
	return a, nil
}

// Clone returns an independent copy of the allocator in O(1): the trees are
// shared copy-on-write. The store can clone before a batch of allocations
// and keep the clone to roll back to if the batch is abandoned.
func (a *Allocator) Clone() *Allocator {
	c := &Allocator{
		base:   a.base,
		end:    a.end,
		free:   a.free,
		bySize: a.bySize.Clone(),
		byOff:  a.byOff.Clone(),
	}
	c.initLookup()
	return c
}

// Alloc takes n bytes from the smallest free extent that can hold them,
// preferring the lowest offset among extents of that length, and returns
// the offset of the allocation. Best fit keeps the large holes intact for
// the large lists that need them, and taking the start of the extent keeps
// the remainder in one piece. ok is false, and nothing changes, if no free
// extent is large enough. Alloc(0) returns (0, true) and changes nothing:
// an empty list needs no space, and the offset of an empty allocation is
// never read.
func (a *Allocator) Alloc(n uint64) (off uint64, ok bool) {
	if n == 0 {
		return 0, true
	}
	e, ok := a.ceil(a.bySize, Extent{Len: n})
	if !ok {
		return 0, false
	}
	if e.Len == n {
		a.remove(e)
	} else {
		a.replace(e, Extent{Off: e.Off + n, Len: e.Len - n})
	}
	return e.Off, true
}

// AllocAt marks [off, off+n) used. The range must lie entirely inside one
// free extent, which is split into up to two; otherwise AllocAt fails,
// wrapping ErrInvalid, and changes nothing. Because free extents are always
// coalesced, "inside one free extent" is the same as "every byte is free".
// AllocAt with n == 0 does nothing and succeeds.
func (a *Allocator) AllocAt(off, n uint64) error {
	if n == 0 {
		return nil
	}
	r := Extent{Off: off, Len: n}
	if err := a.checkRange("alloc at", r); err != nil {
		return err
	}
	e, ok := a.floor(a.byOff, Extent{Off: off})
	if !ok || e.End() <= off {
		return fmt.Errorf("%w: alloc at %v: offset %d is not free", ErrInvalid, r, off)
	}
	if e.End() < r.End() {
		return fmt.Errorf("%w: alloc at %v extends past the end of free extent %v", ErrInvalid, r, e)
	}
	left := Extent{Off: e.Off, Len: off - e.Off}
	right := Extent{Off: r.End(), Len: e.End() - r.End()}
	switch {
	case left.Len > 0 && right.Len > 0:
		a.replace(e, left)
		a.insert(right)
	case left.Len > 0:
		a.replace(e, left)
	case right.Len > 0:
		a.replace(e, right)
	default:
		a.remove(e)
	}
	return nil
}

// Free returns [off, off+n) to the free space, merging it with free
// neighbours on both sides so that free extents are never adjacent. It
// fails, wrapping ErrInvalid and changing nothing, if the range lies
// outside [Base, End) or overlaps a free extent (a double free); the error
// names both ranges. The range need not match an earlier allocation: the
// store may release part of one. Free with n == 0 does nothing and succeeds.
func (a *Allocator) Free(off, n uint64) error {
	if n == 0 {
		return nil
	}
	r := Extent{Off: off, Len: n}
	if err := a.checkRange("free", r); err != nil {
		return err
	}
	prev, hasPrev := a.floor(a.byOff, Extent{Off: off})
	if hasPrev && prev.End() > off {
		return fmt.Errorf("%w: free %v overlaps free extent %v", ErrInvalid, r, prev)
	}
	// prev, if any, starts before off, so this finds the first free extent
	// strictly after off.
	next, hasNext := a.ceil(a.byOff, Extent{Off: off})
	if hasNext && next.Off < r.End() {
		return fmt.Errorf("%w: free %v overlaps free extent %v", ErrInvalid, r, next)
	}
	mergePrev := hasPrev && prev.End() == off
	mergeNext := hasNext && next.Off == r.End()
	merged := r
	if mergePrev {
		merged = Extent{Off: prev.Off, Len: prev.Len + merged.Len}
	}
	if mergeNext {
		merged.Len += next.Len
	}
	switch {
	case mergePrev && mergeNext:
		a.remove(next)
		a.replace(prev, merged)
	case mergePrev:
		a.replace(prev, merged)
	case mergeNext:
		a.replace(next, merged)
	default:
		a.insert(merged)
	}
	return nil
}

// Grow moves End to newEnd, for when the store extends the file. The new
// space is free and merges with a free extent that ended at the old End.
// It fails, wrapping ErrInvalid, if newEnd < End: shrinking could strand
// used bytes and is not something the store does.
func (a *Allocator) Grow(newEnd uint64) error {
	if newEnd < a.end {
		return fmt.Errorf("%w: grow to %d is below the current end %d", ErrInvalid, newEnd, a.end)
	}
	if newEnd == a.end {
		return nil
	}
	added := Extent{Off: a.end, Len: newEnd - a.end}
	if last, ok := a.byOff.Max(); ok && last.End() == a.end {
		a.replace(last, Extent{Off: last.Off, Len: last.Len + added.Len})
	} else {
		a.insert(added)
	}
	a.end = newEnd
	return nil
}

// Base returns the first byte of the managed range.
func (a *Allocator) Base() uint64 { return a.base }

// End returns the first byte after the managed range.
func (a *Allocator) End() uint64 { return a.end }

// FreeBytes returns the total length of the free extents in O(1).
func (a *Allocator) FreeBytes() uint64 { return a.free }

// UsedBytes returns the number of bytes in [Base, End) that are not free.
func (a *Allocator) UsedBytes() uint64 { return a.end - a.base - a.free }

// NumExtents returns the number of free extents, a measure of
// fragmentation.
func (a *Allocator) NumExtents() int { return a.byOff.Len() }

// Largest returns the length of the largest free extent, or 0 if nothing
// is free: the largest allocation that can succeed without Grow.
func (a *Allocator) Largest() uint64 {
	e, _ := a.bySize.Max()
	return e.Len
}

// TailFree returns the length of the free extent that ends exactly at End,
// or 0 if the last byte is used. An allocation of n bytes that does not fit
// anywhere fits after Grow(End()+n-TailFree()), because the new space merges
// with that tail.
func (a *Allocator) TailFree() uint64 {
	if e, ok := a.byOff.Max(); ok && e.End() == a.end {
		return e.Len
	}
	return 0
}

// Extents returns a copy of the free extents in offset order.
func (a *Allocator) Extents() []Extent {
	out := make([]Extent, 0, a.byOff.Len())
	a.byOff.Ascend(func(e Extent) bool {
		out = append(out, e)
		return true
	})
	return out
}

// Check verifies the invariants listed in the package documentation and
// returns an error describing the first violation. It is O(n log n) and
// meant for tests and for the store's consistency checks, not the hot path.
// Its errors report corruption, not bad arguments, so they do not wrap
// ErrInvalid.
func (a *Allocator) Check() error {
	if a.end < a.base {
		return fmt.Errorf("slots: check: end %d is before base %d", a.end, a.base)
	}
	if a.byOff.Len() != a.bySize.Len() {
		return fmt.Errorf("slots: check: offset index holds %d extents, size index %d", a.byOff.Len(), a.bySize.Len())
	}
	var (
		err  error
		sum  uint64
		prev Extent
		i    int
	)
	a.byOff.Ascend(func(e Extent) bool {
		switch {
		case e.Len == 0:
			err = fmt.Errorf("slots: check: free extent at %d has zero length", e.Off)
		case !inside(e, a.base, a.end):
			err = fmt.Errorf("slots: check: free extent %v lies outside [%d,%d)", e, a.base, a.end)
		case i > 0 && prev.End() > e.Off:
			err = fmt.Errorf("slots: check: free extents %v and %v overlap", prev, e)
		case i > 0 && prev.End() == e.Off:
			err = fmt.Errorf("slots: check: free extents %v and %v are adjacent (not coalesced)", prev, e)
		case !a.bySize.Has(e):
			err = fmt.Errorf("slots: check: free extent %v is missing from the size index", e)
		}
		if err != nil {
			return false
		}
		sum += e.Len
		prev = e
		i++
		return true
	})
	if err != nil {
		return err
	}
	if sum != a.free {
		return fmt.Errorf("slots: check: free extents sum to %d bytes but FreeBytes is %d", sum, a.free)
	}
	return nil
}

// NextPow2 returns the smallest power of two >= n, with NextPow2(0) == 0
// and NextPow2(1) == 1. When no such uint64 exists (n > 1<<63) it returns
// 0, so callers rounding a size up can detect the overflow instead of
// receiving a wrapped value.
func NextPow2(n uint64) uint64 {
	if n <= 1 {
		return n
	}
	if n > 1<<63 {
		return 0
	}
	return 1 << bits.Len64(n-1)
}

// IsPow2 reports whether n is a power of two; 0 is not.
func IsPow2(n uint64) bool { return n != 0 && n&(n-1) == 0 }

// inside reports whether e lies within [base, end) without computing an end
// that could overflow.
func inside(e Extent, base, end uint64) bool {
	return e.Off >= base && e.Off <= end && e.Len <= end-e.Off
}

// checkRange rejects a non-empty range that overflows or leaves [Base, End).
func (a *Allocator) checkRange(op string, r Extent) error {
	if r.Len > math.MaxUint64-r.Off {
		return fmt.Errorf("%w: %s %v", ErrInvalid, op, r)
	}
	if !inside(r, a.base, a.end) {
		return fmt.Errorf("%w: %s %v lies outside [%d,%d)", ErrInvalid, op, r, a.base, a.end)
	}
	return nil
}

// ceil returns the first extent in t at or after pivot.
func (a *Allocator) ceil(t *btree.BTreeG[Extent], pivot Extent) (Extent, bool) {
	a.found = false
	t.AscendGreaterOrEqual(pivot, a.first)
	return a.hit, a.found
}

// floor returns the last extent in t at or before pivot.
func (a *Allocator) floor(t *btree.BTreeG[Extent], pivot Extent) (Extent, bool) {
	a.found = false
	t.DescendLessOrEqual(pivot, a.first)
	return a.hit, a.found
}

// insert adds a free extent to both indexes. Callers guarantee it is
// non-empty, inside the range and neither overlaps nor touches another.
func (a *Allocator) insert(e Extent) {
	a.bySize.ReplaceOrInsert(e)
	a.byOff.ReplaceOrInsert(e)
	a.free += e.Len
}

// replace swaps the free extent old, known to be present, for new. When
// both start at the same offset the offset index is updated in place,
// which saves a tree operation on the common paths that keep an extent's
// start: coalescing with a left neighbour, growing the tail, and splitting
// off a left remainder.
func (a *Allocator) replace(old, new Extent) {
	a.bySize.Delete(old)
	a.bySize.ReplaceOrInsert(new)
	if old.Off != new.Off {
		a.byOff.Delete(old)
	}
	a.byOff.ReplaceOrInsert(new)
	a.free = a.free - old.Len + new.Len
}

// remove deletes a free extent, known to be present, from both indexes.
func (a *Allocator) remove(e Extent) {
	a.bySize.Delete(e)
	a.byOff.Delete(e)
	a.free -= e.Len
}

package store

import (
	"fmt"
	"math"
	"runtime"
	"sync"
)

// Source is a set of inverted lists MergeFrom and CopySubsetTo read: a
// View of another store, an index's in-memory lists, a code block. Calls
// may come from several goroutines at once; the slices returned are only
// read, and only until the next call for the same list.
type Source interface {
	NumLists() int
	CodeSize() int
	ListLen(l int) (int, error)
	ReadList(l int) (ids []int64, codes []byte, err error)
}

// checkedSource is a Source that can check the lists it returns against
// their CRCs, as a View can (CheckList): a merge checks every list it
// reads from one before it writes it with CRCs of its own, so a damaged
// list is refused, not copied with CRCs that bless the damage.
type checkedSource interface {
	CheckList(l int, ids []int64, codes []byte) error
}

// MergeOptions tune MergeFrom.
type MergeOptions struct {
	// IDShift[i], if given, is added to every id read from source i
	// (FAISS merge_from's add_id).
	IDShift []int64
	// Meta records are stored in the same commit as the merged entries
	// (the index layer keeps its id counter there).
	Meta map[string][]byte
	// MetaAfter, if set, is called once every source was read, before the
	// commit; the records it returns go into the commit too (records that
	// depend on what was merged, such as the largest id).
	MetaAfter func() map[string][]byte
	// Headroom leaves room in each merged list's slot for that share of
	// its size (0.1: 10% more entries) so that adds after the merge
	// append in place. With 0, slots are exact and the first add to a
	// list moves it to a slot of the next power of two: after a merge,
	// an add touching every list rewrites the whole index.
	Headroom float64
}

// slotCap is the capacity of a slot for size entries with headroom.
func slotCap(size uint64, headroom float64) uint64 {
	if headroom <= 0 || size == 0 {
		return size
	}
	return size + uint64(math.Ceil(float64(size)*headroom))
}

// checkHeadroom accepts headroom in [0, 4].
func checkHeadroom(h float64) error {
	if !(h >= 0 && h <= 4) {
		return fmt.Errorf("store: headroom %v: want a share of the list size in [0, 4]", h)
	}
	return nil
}

// MergeFrom appends every entry of the sources to this store's lists in
// one commit, like faiss::OnDiskInvertedLists::merge_from but into a store
// that may already hold entries and keeps accepting adds afterwards. It
// works in two passes: list sizes first, then each grown list gets one
// exact-capacity slot (plus opts.Headroom), all packed in one region
// written sequentially.
// It returns the number of entries added.
func (s *Store) MergeFrom(srcs []Source, opts *MergeOptions) (int64, error) {
	b, err := s.Begin()
	if err != nil {
		return 0, err
	}
	n, err := b.mergeFrom(srcs, opts)
	if err != nil {
		b.Abort()
		return 0, err
	}
	if opts != nil {
		for k, v := range opts.Meta {
			_ = b.SetMeta(k, v)
		}
		if opts.MetaAfter != nil {
			for k, v := range opts.MetaAfter() {
				_ = b.SetMeta(k, v)
			}
		}
	}
	if err := b.Commit(); err != nil {
		return 0, err
	}
	return n, s.publishLocked()
}

// publishLocked durably publishes the table after a large operation.
func (s *Store) publishLocked() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.writable(); err != nil {
		return nil
	}
	if err := s.publish(true); err != nil {
		return fmt.Errorf("store: publish table of %s: %w", s.dir, err)
	}
	s.releasePending()
	return nil
}

func (b *Batch) mergeFrom(srcs []Source, opts *MergeOptions) (int64, error) {
	s := b.s
	cs := int(s.conf.codeSize)
	var shift []int64
	var headroom float64
	if opts != nil {
		if err := checkHeadroom(opts.Headroom); err != nil {
			return 0, err
		}
		headroom = opts.Headroom
	}
	if opts != nil && opts.IDShift != nil {
		if len(opts.IDShift) != len(srcs) {
			return 0, fmt.Errorf("store: merge: %d id shifts for %d sources", len(opts.IDShift), len(srcs))
		}
		shift = opts.IDShift
	}
	for i, src := range srcs {
		if src.NumLists() != b.nlist || src.CodeSize() != cs {
			return 0, fmt.Errorf("%w: merge source %d has %d lists of %d-byte codes, %s has %d lists of %d-byte codes",
				ErrMismatch, i, src.NumLists(), src.CodeSize(), s.dir, b.nlist, cs)
		}
	}
	if err := b.flushAll(); err != nil {
		return 0, err
	}
	// Pass 1: how much each list grows.
	add := make([]uint64, b.nlist)
	var total int64
	for i, src := range srcs {
		for l := 0; l < b.nlist; l++ {
			n, err := src.ListLen(l)
			if err != nil {
				return 0, fmt.Errorf("store: merge source %d: %w", i, err)
			}
			add[l] += uint64(n)
			total += int64(n)
		}
	}
	// Pass 2: exact slots, filled source after source.
	var jobs []slotJob
	for l := 0; l < b.nlist; l++ {
		if add[l] == 0 {
			continue
		}
		e := b.d.get(l)
		final := e.size + add[l]
		l := l
		jobs = append(jobs, slotJob{l: l, old: e, keep: e.size, cap: slotCap(final, headroom), size: final,
			fill: func(ids []int64, codes []byte) error {
				p := 0
				for i, src := range srcs {
					sid, scodes, err := src.ReadList(l)
					if err == nil {
						if chk, ok := src.(checkedSource); ok {
							err = chk.CheckList(l, sid, scodes)
						}
					}
					if err != nil {
						return fmt.Errorf("store: merge source %d list %d: %w", i, l, err)
					}
					if p+len(sid) > len(ids) || len(scodes) != len(sid)*cs {
						return fmt.Errorf("%w: merge source %d list %d changed during the merge", ErrMismatch, i, l)
					}
					copy(codes[p*cs:], scodes)
					if shift != nil && shift[i] != 0 {
						for k, id := range sid {
							ids[p+k] = id + shift[i]
						}
					} else {
						copy(ids[p:], sid)
					}
					p += len(sid)
				}
				if p != len(ids) {
					return fmt.Errorf("%w: merge sources changed during the merge (list %d)", ErrMismatch, l)
				}
				return nil
			}})
	}
	var progress func(int64)
	if s.opts.Progress != nil {
		progress = func(done int64) { s.opts.Progress(Progress{Op: "merge", Done: done, Total: total}) }
	}
	if err := b.writeJobs(jobs, progress); err != nil {
		return 0, err
	}
	return total, nil
}

// writeJobs gives every job a fresh slot, packed one after another into
// one contiguous region in job order, so writing them is sequential I/O;
// writes them, and points the draft at them. Old slots are freed (after
// the commit, unless this batch made them).
func (b *Batch) writeJobs(jobs []slotJob, progress func(done int64)) error {
	s := b.s
	cs := int(s.conf.codeSize)
	ptrs := make([]*slotJob, len(jobs))
	for i := range jobs {
		ptrs[i] = &jobs[i]
	}
	if err := b.placeSlots(ptrs, false); err != nil {
		return err
	}
	// The slots are packed in job order: writing the jobs front to back is
	// sequential. Split them into contiguous runs of about equal bytes,
	// one per worker: page-cache copies of one write stream top out well
	// below what two cores and the disk can take.
	var all uint64
	slotted := 0
	for i := range jobs {
		if n := slotBytes(jobs[i].cap, cs); n > 0 {
			all += n
			slotted++
		}
	}
	runs := [][]slotJob{jobs}
	if workers := min(runtime.GOMAXPROCS(0), 4); workers > 1 && all >= s.opts.concurrentWrite && slotted >= 2 {
		runs = runs[:0]
		var acc uint64
		start := 0
		for k := range jobs {
			acc += slotBytes(jobs[k].cap, cs)
			if acc*uint64(workers) >= all*uint64(len(runs)+1) || k == len(jobs)-1 {
				runs = append(runs, jobs[start:k+1])
				start = k + 1
			}
		}
	}
	var (
		mu    sync.Mutex
		done  int64
		first error
		wg    sync.WaitGroup
	)
	m := s.m // after placement: growing the file may have remapped it
	work := func(run []slotJob) {
		w := newSlotWriter(s.file, m, cs)
		defer w.release()
		w.behind = newWriteBehind(s.file, all, s.opts.writeBehindWindow)
		if progress != nil {
			w.progress = func(n int64) {
				mu.Lock()
				done += n
				progress(done)
				mu.Unlock()
			}
		}
		err := writeGroup(w, run)
		if err != nil {
			mu.Lock()
			if first == nil {
				first = err
			}
			mu.Unlock()
		}
	}
	if len(runs) == 1 {
		work(runs[0]) // small writes stay on the caller's goroutine
	} else {
		for _, run := range runs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				work(run)
			}()
		}
		wg.Wait()
	}
	if all > 0 {
		b.wrote = true
	}
	if first != nil {
		return first
	}
	for i := range jobs {
		j := &jobs[i]
		if j.old.cap > 0 {
			if err := b.freeSlot(j.old); err != nil {
				return err
			}
		}
		if j.cap == 0 {
			b.d.set(j.l, entry{})
			continue
		}
		b.d.set(j.l, entry{off: j.off, cap: j.cap, size: j.size, hwm: j.size, crc: j.crc})
	}
	return nil
}

// SetAllListsSizes gives every list l exactly sizes[l] entries in slots of
// exactly that capacity, packed one after another (FAISS
// set_all_lists_sizes). Existing entries are kept up to the new size; new
// ones have zero codes and id -1.
func (s *Store) SetAllListsSizes(sizes []int) error {
	b, err := s.Begin()
	if err != nil {
		return err
	}
	if len(sizes) != b.nlist {
		b.Abort()
		return fmt.Errorf("%w: %d sizes for %d lists", ErrMismatch, len(sizes), b.nlist)
	}
	if err := b.flushAll(); err != nil {
		b.Abort()
		return err
	}
	jobs := make([]slotJob, 0, len(sizes))
	for l, n := range sizes {
		if n < 0 {
			b.Abort()
			return fmt.Errorf("%w: size %d for list %d", ErrEntry, n, l)
		}
		e := b.d.get(l)
		keep := e.size
		if uint64(n) < keep {
			keep = uint64(n)
		}
		jobs = append(jobs, slotJob{l: l, old: e, keep: keep, cap: uint64(n), size: uint64(n), fill: padEntries})
	}
	if err := b.writeJobs(jobs, nil); err != nil {
		b.Abort()
		return err
	}
	if err := b.Commit(); err != nil {
		return err
	}
	return s.publishLocked()
}

// Crop keeps lists [l0, l1) only, renumbered from 0 (FAISS crop_invlists);
// the space of the other lists is freed.
func (s *Store) Crop(l0, l1 int) error {
	b, err := s.Begin()
	if err != nil {
		return err
	}
	if l0 < 0 || l1 > b.nlist || l0 >= l1 {
		b.Abort()
		return fmt.Errorf("%w: crop [%d, %d) of %d lists", ErrList, l0, l1, b.nlist)
	}
	if err := b.flushAll(); err != nil {
		b.Abort()
		return err
	}
	old := b.d
	for l := 0; l < b.nlist; l++ {
		if l >= l0 && l < l1 {
			continue
		}
		if e := old.get(l); e.cap > 0 {
			if err := b.freeSlot(e); err != nil {
				b.Abort()
				return err
			}
		}
	}
	nd := newDraft(newTable(l1 - l0))
	for l := l0; l < l1; l++ {
		if e := old.get(l); e != (entry{}) {
			nd.set(l-l0, e)
		}
	}
	b.d = nd
	b.nlist = l1 - l0
	b.rewriteAll = true
	if err := b.Commit(); err != nil {
		return err
	}
	return s.publishLocked()
}

// SubsetKind selects the entries CopySubsetTo copies, as FAISS's
// InvertedLists::subset_type_t.
type SubsetKind int

const (
	// SubsetIDRange copies entries with A <= id < B.
	SubsetIDRange SubsetKind = iota
	// SubsetIDMod copies entries with id % A == B.
	SubsetIDMod
	// SubsetElementRange copies, of the entries of all lists taken in list
	// order as one sequence of ntotal, those with rank in [A, B), spread
	// over the lists in proportion to their sizes (FAISS's formula).
	SubsetElementRange
	// SubsetListFraction copies the lists l with l*B/nlist == A: part A of
	// B equal parts of the list numbers.
	SubsetListFraction
	// SubsetLists copies lists [A, B) whole.
	SubsetLists
)

// Subset describes which entries CopySubsetTo copies.
type Subset struct {
	Kind SubsetKind
	A, B int64
}

// CopySubsetTo appends the selected entries of this store to dst's lists
// of the same numbers (FAISS copy_subset_to), in one commit of dst, and
// returns how many it copied. dst must have as many lists and the same
// code size.
func (s *Store) CopySubsetTo(dst *Store, sub Subset) (int64, error) {
	v, err := s.View()
	if err != nil {
		return 0, err
	}
	defer v.Release()
	src, err := newSubsetSource(v, sub)
	if err != nil {
		return 0, err
	}
	return dst.MergeFrom([]Source{src}, nil)
}

// subsetSource presents the selected entries of a view as a Source.
type subsetSource struct {
	v      *View
	sub    Subset
	ranges [][2]uint64 // SubsetElementRange: per list [i1, i2)
}

func newSubsetSource(v *View, sub Subset) (*subsetSource, error) {
	ss := &subsetSource{v: v, sub: sub}
	switch sub.Kind {
	case SubsetIDRange, SubsetLists:
	case SubsetIDMod:
		if sub.A <= 0 {
			return nil, fmt.Errorf("store: subset id %% %d: modulus must be positive", sub.A)
		}
	case SubsetListFraction:
		if sub.B <= 0 || sub.A < 0 || sub.A >= sub.B {
			return nil, fmt.Errorf("store: subset list fraction %d of %d out of range", sub.A, sub.B)
		}
	case SubsetElementRange:
		ntotal := uint64(v.NTotal())
		if sub.A < 0 || sub.B < sub.A || uint64(sub.B) > ntotal {
			return nil, fmt.Errorf("store: subset element range [%d, %d) of %d entries", sub.A, sub.B, ntotal)
		}
		ss.ranges = make([][2]uint64, v.NumLists())
		var accN, accA1, accA2 uint64
		a1, a2 := uint64(sub.A), uint64(sub.B)
		for l := range ss.ranges {
			n := v.st.tab.get(l).size
			next := accN + n
			nextA1 := mulDiv(next, a1, ntotal)
			nextA2 := mulDiv(next, a2, ntotal)
			ss.ranges[l] = [2]uint64{nextA1 - accA1, nextA2 - accA2}
			accA1, accA2, accN = nextA1, nextA2, next
		}
	default:
		return nil, fmt.Errorf("store: unknown subset kind %d", sub.Kind)
	}
	return ss, nil
}

// mulDiv computes a*b/c without overflowing for the sizes involved.
func mulDiv(a, b, c uint64) uint64 {
	if c == 0 {
		return 0
	}
	hi := (a / c) * b
	return hi + (a%c)*b/c
}

func (ss *subsetSource) NumLists() int { return ss.v.NumLists() }
func (ss *subsetSource) CodeSize() int { return ss.v.CodeSize() }

func (ss *subsetSource) ListLen(l int) (int, error) {
	ids, _, err := ss.selected(l, false)
	return len(ids), err
}

// ReadList returns the selected entries of list l, once the whole list
// was checked against its CRCs (see checkedSource).
func (ss *subsetSource) ReadList(l int) ([]int64, []byte, error) { return ss.selected(l, true) }

// selected returns the entries of list l the subset selects, after
// checking the list with check.
func (ss *subsetSource) selected(l int, check bool) ([]int64, []byte, error) {
	ids, codes, err := ss.v.ReadList(l)
	if err == nil && check {
		err = ss.v.CheckList(l, ids, codes)
	}
	if err != nil {
		return nil, nil, err
	}
	cs := ss.v.CodeSize()
	nlist := int64(ss.v.NumLists())
	switch ss.sub.Kind {
	case SubsetLists:
		if int64(l) >= ss.sub.A && int64(l) < ss.sub.B {
			return ids, codes, nil
		}
		return nil, nil, nil
	case SubsetListFraction:
		if int64(l)*ss.sub.B/nlist == ss.sub.A {
			return ids, codes, nil
		}
		return nil, nil, nil
	case SubsetElementRange:
		r := ss.ranges[l]
		if r[0] >= r[1] {
			return nil, nil, nil // FAISS's formula can give i1 > i2: nothing
		}
		return ids[r[0]:r[1]], codes[r[0]*uint64(cs) : r[1]*uint64(cs)], nil
	}
	var oid []int64
	var oc []byte
	for i, id := range ids {
		var keep bool
		if ss.sub.Kind == SubsetIDRange {
			keep = id >= ss.sub.A && id < ss.sub.B
		} else {
			keep = id%ss.sub.A == ss.sub.B
		}
		if keep {
			oid = append(oid, id)
			oc = append(oc, codes[i*cs:(i+1)*cs]...)
		}
	}
	return oid, oc, nil
}

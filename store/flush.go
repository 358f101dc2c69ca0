package store

import (
	"cmp"
	"runtime"
	"slices"
	"sync"

	"github.com/shelfdb/shelf/slots"
)

// A flush writes what a batch buffered (buffer.go): lists whose slot has
// room append in place, the others move to slots of the next power of two,
// packed together so they are written sequentially. flushAll runs it in
// named steps: plan a job per list, place the moved lists, order the jobs
// by offset, write them (scattering the AddSpread entries on the way), and
// point the draft at the result. Like every write, it only writes space no
// committed list references (commit.go); the commit makes it durable.

// scatterArena is where flushAll sorts the pending AddSpread entries by
// list: each list's new ids and codes end up contiguous, in call order,
// ready to be written as they are. pos holds one block's positions.
type scatterArena struct {
	ids   []int64
	codes []byte
	pos   []uint32
}

var arenaPool sync.Pool

// getArena returns an arena for n entries of cs bytes, reusing a pooled
// one when it is large enough.
func getArena(n, cs int) *scatterArena {
	a, _ := arenaPool.Get().(*scatterArena)
	if a == nil {
		a = &scatterArena{}
	}
	if cap(a.ids) < n {
		a.ids = make([]int64, n+n/8)
	}
	if cap(a.codes) < n*cs {
		a.codes = make([]byte, (n+n/8)*cs)
	}
	if cap(a.pos) < spreadBlockEntries {
		a.pos = make([]uint32, spreadBlockEntries)
	}
	a.ids = a.ids[:n]
	a.codes = a.codes[:n*cs]
	return a
}

// scatter moves every pending AddSpread entry to its list's region of the
// plan's arena: cur[l] (or curMap[l]) is where list l's next entry goes. Positions are
// computed first, then ids and codes are moved in separate passes: the
// cursor updates and the scattered stores do not stall each other.
func (b *Batch) scatter(p *flushPlan) {
	a, cur, curMap := p.arena, p.cur, p.curMap
	if a == nil {
		return
	}
	cs := int(b.s.conf.codeSize)
	ids, codes := a.ids, a.codes
	for _, k := range b.spread {
		pos := a.pos[:len(k.lists)]
		if cur != nil {
			for i, l := range k.lists {
				p := cur[l]
				cur[l] = p + 1
				pos[i] = uint32(p)
			}
		} else {
			for i, l := range k.lists {
				p := curMap[int64(l)]
				curMap[int64(l)] = p + 1
				pos[i] = uint32(p)
			}
		}
		kids := k.ids[:len(pos)]
		for i, p := range pos {
			ids[p] = kids[i]
		}
		kc := k.codes
		switch cs {
		case 8:
			for i, p := range pos {
				*(*[8]byte)(codes[int(p)*8:]) = *(*[8]byte)(kc[i*8:])
			}
		case 16:
			for i, p := range pos {
				*(*[16]byte)(codes[int(p)*16:]) = *(*[16]byte)(kc[i*16:])
			}
		case 32:
			for i, p := range pos {
				*(*[32]byte)(codes[int(p)*32:]) = *(*[32]byte)(kc[i*32:])
			}
		case 64:
			for i, p := range pos {
				*(*[64]byte)(codes[int(p)*64:]) = *(*[64]byte)(kc[i*64:])
			}
		default:
			for i, p := range pos {
				q := int(p) * cs
				copy(codes[q:q+cs], kc[i*cs:(i+1)*cs])
			}
		}
	}
}

// flushGroupBytes is about how many bytes of entries flushAll writes
// between two requests to start write-back.
const flushGroupBytes = 1 << 20

// flushPlan is what one flush writes: a job per list with new entries,
// whose new entries are its Add buffer (bufs[0]) followed by its region of
// the arena the AddSpread entries are scattered into (bufs[1]).
type flushPlan struct {
	jobs   []slotJob
	arena  *scatterArena // nil without AddSpread entries
	cur    []int         // where each list's next scattered entry goes
	curMap map[int64]int // the same, beyond listBufsSliceMax lists
	total  uint64        // bytes of entries to write
	groups []int         // end index of each group of jobs, in offset order
}

// flushAll writes every buffered entry. Pending AddSpread entries are
// scattered straight into one arena where each list's new entries are
// contiguous, and written from there. In a large flush, a second goroutine
// does the writes: it copies kept entries of moved lists while this one
// scatters, then writes list after list in offset order, and this one asks
// the kernel to start writing each finished range back, so the disk works
// during the flush and the commit's fdatasync has little left to wait for.
func (b *Batch) flushAll() error {
	s := b.s
	ls := b.bufs.pending()
	if len(ls) == 0 {
		b.dropSpread()
		return nil
	}
	p := b.planFlush(ls)
	if p.arena != nil {
		defer arenaPool.Put(p.arena)
	}
	if err := b.placeFlush(p.jobs); err != nil {
		return err
	}
	m := s.m // after placement: growing the file may have remapped it
	slices.SortFunc(p.jobs, func(x, y slotJob) int { return cmp.Compare(x.off, y.off) })
	b.prefetchTails(p.jobs)
	p.splitGroups(int(s.conf.codeSize))
	var err error
	if runtime.GOMAXPROCS(0) == 1 || p.total < s.opts.concurrentWrite {
		err = b.writeFlush(p, m)
	} else {
		err = b.writeFlushConcurrent(p, m)
	}
	if err != nil {
		return err
	}
	if err := b.applyFlush(p.jobs); err != nil {
		return err
	}
	for _, l := range ls {
		b.bufs.clearCount(int64(l))
	}
	b.bufs.reset()
	b.bufBytes = 0
	b.dropSpread()
	return nil
}

// planFlush makes the job of each list of ls with new entries: in place
// when its slot has room it may write (the batch's own slot, or nothing
// written past the committed size), moved to a slot of the next power of
// two otherwise.
func (b *Batch) planFlush(ls []int) *flushPlan {
	cs := int(b.s.conf.codeSize)
	p := &flushPlan{jobs: make([]slotJob, 0, len(ls))}
	var nsp int
	for _, l := range ls {
		nsp += b.bufs.count(int64(l))
	}
	if nsp > 0 {
		p.arena = getArena(nsp, cs)
	}
	if b.bufs.cntMap != nil {
		p.curMap = make(map[int64]int, len(ls))
	} else {
		p.cur = b.bufs.cursors()
	}
	at := 0
	for _, l := range ls {
		lb := b.bufs.peek(l)
		nAdd := 0
		if lb != nil {
			nAdd = len(lb.ids)
		}
		nSp := b.bufs.count(int64(l))
		n := nAdd + nSp
		if n == 0 {
			continue
		}
		e := b.d.get(l)
		final := e.size + uint64(n)
		j := slotJob{l: l, old: e, keep: e.size, size: final}
		if lb != nil {
			j.bufs[0] = entryBuf{ids: lb.ids, codes: lb.codes}
		}
		if nSp > 0 {
			if p.cur != nil {
				p.cur[l] = at
			} else {
				p.curMap[int64(l)] = at
			}
			j.bufs[1] = entryBuf{ids: p.arena.ids[at : at+nSp], codes: p.arena.codes[at*cs : (at+nSp)*cs]}
			at += nSp
		}
		if final <= e.cap && (b.fresh(e) || e.size == e.hwm) {
			j.inPlace, j.cap, j.off = true, e.cap, e.off
			p.total += uint64(n) * uint64(cs+8)
		} else {
			j.cap = e.cap
			if final > j.cap {
				j.cap = slots.NextPow2(final)
			}
			p.total += final * uint64(cs+8)
		}
		p.jobs = append(p.jobs, j)
	}
	return p
}

// placeFlush gives every job that moves a fresh slot: free space first
// (best fit), the rest packed one after another in one contiguous region.
func (b *Batch) placeFlush(jobs []slotJob) error {
	var moved []*slotJob
	for i := range jobs {
		if !jobs[i].inPlace {
			moved = append(moved, &jobs[i])
		}
	}
	return b.placeSlots(moved, true)
}

// prefetchTails, in a store larger than the page cache can hold, asks for
// the partly filled last pages of the lists appended in place: they are
// likely not cached, and each pwrite into one would read it first, one
// page at a time. Asked for all at once, the disk reads them in parallel.
func (b *Batch) prefetchTails(jobs []slotJob) {
	s := b.s
	if s.alloc.End() <= dropLimit() {
		return
	}
	cs := uint64(s.conf.codeSize)
	for i := range jobs {
		if j := &jobs[i]; j.inPlace && j.keep > 0 {
			adviseFile(s.file, (j.off+j.keep*cs)&^4095, 4096, adviseWillNeed)
			adviseFile(s.file, (j.off+align8(j.cap*cs)+8*j.keep)&^4095, 4096, adviseWillNeed)
		}
	}
}

// splitGroups splits the jobs, in offset order, into groups of about
// flushGroupBytes of entries; a group is the unit writes are reported in.
func (p *flushPlan) splitGroups(cs int) {
	var acc uint64
	for i := range p.jobs {
		j := &p.jobs[i]
		acc += (j.size - j.keep) * uint64(cs+8)
		if !j.inPlace {
			acc += j.keep * uint64(cs+8)
		}
		if acc >= flushGroupBytes || i == len(p.jobs)-1 {
			p.groups = append(p.groups, i+1)
			acc = 0
		}
	}
}

// group returns the jobs of group g.
func (p *flushPlan) group(g int) []slotJob {
	lo := 0
	if g > 0 {
		lo = p.groups[g-1]
	}
	return p.jobs[lo:p.groups[g]]
}

// writeFlush scatters, then writes every group, on this goroutine.
func (b *Batch) writeFlush(p *flushPlan, m *mapping) error {
	b.scatter(p)
	w := newSlotWriter(b.s.file, m, int(b.s.conf.codeSize))
	defer w.release()
	for g := range p.groups {
		if err := writeGroup(w, p.group(g)); err != nil {
			return err
		}
	}
	return nil
}

// writeFlushConcurrent writes the groups from a second goroutine
// (flushWriter) while this one scatters, then starts the write-back of
// each range written, so the disk works while later groups are written.
// Ranges written while a write-back request was being made are merged
// into the next request. Write-back is waited for behind a window, as
// merges do, but pages are never dropped: a group's range spans in-place
// appends all over the file, whose cached pages searches may be using.
func (b *Batch) writeFlushConcurrent(p *flushPlan, m *mapping) error {
	written := make(chan [2]uint64, len(p.groups))
	scattered := make(chan struct{})
	errc := make(chan error, 1)
	go func() { errc <- b.flushWriter(p, m, scattered, written) }()
	b.scatter(p)
	close(scattered)
	wb := newWriteBehind(b.s.file, 0, b.s.opts.writeBehindWindow)
	var wbErr error
	for r := range written {
	more:
		for {
			select {
			case r2, ok := <-written:
				if !ok {
					break more
				}
				r = [2]uint64{min(r[0], r2[0]), max(r[1], r2[1])}
			default:
				break more
			}
		}
		if wbErr == nil {
			wbErr = wb.wrote(r[0], r[1]-r[0])
		}
	}
	if err := <-errc; err != nil {
		return err
	}
	return wbErr
}

// flushWriter does every write of a concurrent flush (buffered writes to
// one file serialize in the kernel anyway): the kept entries of the first
// groups while the entries are scattered, then each group's new entries
// (and the kept ones not written yet), reporting each group's range.
func (b *Batch) flushWriter(p *flushPlan, m *mapping, scattered <-chan struct{}, written chan<- [2]uint64) error {
	defer close(written)
	cs := int(b.s.conf.codeSize)
	w := newSlotWriter(b.s.file, m, cs)
	defer w.release()
	var err error
early:
	for g := 0; g < len(p.groups) && err == nil; g++ {
		select {
		case <-scattered:
			break early
		default:
		}
		err = writeKept(w, p.group(g))
	}
	<-scattered
	for g := 0; g < len(p.groups) && err == nil; g++ {
		jobs := p.group(g)
		if err = writeGroup(w, jobs); err == nil {
			last := &jobs[len(jobs)-1]
			written <- [2]uint64{jobs[0].off, last.off + slotBytes(last.cap, cs)}
		}
	}
	return err
}

// writeKept writes the kept entries of the moved lists of jobs.
func writeKept(w *slotWriter, jobs []slotJob) error {
	for i := range jobs {
		if err := w.writeKept(&jobs[i]); err != nil {
			return err
		}
	}
	return w.flush()
}

// writeGroup writes jobs: their new entries, and their kept ones unless
// writeKept wrote them.
func writeGroup(w *slotWriter, jobs []slotJob) error {
	for i := range jobs {
		if err := w.writeSlot(&jobs[i]); err != nil {
			return err
		}
	}
	return w.flush()
}

// applyFlush points the draft at what the jobs wrote and frees the slots
// of the lists that moved (after the commit, unless this batch made them).
func (b *Batch) applyFlush(jobs []slotJob) error {
	if len(jobs) > 0 {
		b.wrote = true
	}
	for i := range jobs {
		j := &jobs[i]
		if j.inPlace {
			e := j.old
			e.size = j.size
			if e.hwm < j.size {
				e.hwm = j.size
			}
			e.crc = j.crc
			b.d.set(j.l, e)
			continue
		}
		if j.old.cap > 0 {
			if err := b.freeSlot(j.old); err != nil {
				return err
			}
		}
		b.d.set(j.l, entry{off: j.off, cap: j.cap, size: j.size, hwm: j.size, crc: j.crc})
	}
	return nil
}

// flushList writes list l's buffered entries right away.
func (b *Batch) flushList(l int) error {
	if len(b.spread) > 0 {
		b.absorbSpread()
	}
	lb := b.bufs.peek(l)
	if lb == nil {
		return nil
	}
	b.bufs.drop(l)
	b.bufBytes -= uint64(len(lb.codes) + 8*len(lb.ids))
	return b.appendNow(l, lb.ids, lb.codes)
}

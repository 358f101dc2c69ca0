package store

import (
	"cmp"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sort"
	"sync"

	"github.com/shelfdb/shelf/slots"
)

// AddSpread copies its entries into blocks of at most spreadBlockEntries
// entries and spreadBlockBytes bytes of codes, in call order.
const (
	spreadBlockEntries = 1 << 16
	spreadBlockBytes   = 1 << 20
)

// spreadBlock holds AddSpread entries in call order until flushAll
// scatters them into their lists (or absorbSpread into the list buffers).
type spreadBlock struct {
	lists []uint32
	ids   []int64
	codes []byte
}

var spreadBlockPool = sync.Pool{New: func() any {
	return &spreadBlock{
		lists: make([]uint32, 0, spreadBlockEntries),
		ids:   make([]int64, 0, spreadBlockEntries),
		codes: make([]byte, 0, spreadBlockBytes),
	}
}}

// newSpreadBlock returns an empty block with room for at least one entry
// of cs bytes: a pooled one, or a small unpooled one for huge codes.
func newSpreadBlock(cs int) *spreadBlock {
	if cs > spreadBlockBytes/16 {
		const n = 16
		return &spreadBlock{lists: make([]uint32, 0, n), ids: make([]int64, 0, n), codes: make([]byte, 0, n*cs)}
	}
	return spreadBlockPool.Get().(*spreadBlock)
}

// room returns how many more entries of cs bytes the block takes.
func (k *spreadBlock) room(cs int) int {
	return min(cap(k.ids), cap(k.codes)/cs) - len(k.ids)
}

// releaseSpread gives the blocks back to the pool.
func releaseSpread(blocks []*spreadBlock) {
	for i, k := range blocks {
		if cap(k.codes) == spreadBlockBytes && cap(k.ids) == spreadBlockEntries {
			k.lists, k.ids, k.codes = k.lists[:0], k.ids[:0], k.codes[:0]
			spreadBlockPool.Put(k)
		}
		blocks[i] = nil
	}
}

// appendSpread copies entries into block k (which has room for them) and
// counts them per list.
func (b *Batch) appendSpread(k *spreadBlock, lists, ids []int64, codes []byte) {
	n := len(k.lists)
	k.lists = k.lists[:n+len(lists)]
	dst := k.lists[n:]
	dst = dst[:len(lists)]
	if cnt := b.bufs.counts(); cnt != nil {
		for i, l := range lists {
			dst[i] = uint32(l)
			cnt[l]++
		}
	} else {
		for i, l := range lists {
			dst[i] = uint32(l)
			b.bufs.cntMap[l]++
		}
	}
	k.ids = append(k.ids, ids...)
	k.codes = append(k.codes, codes...)
}

// absorbSpread sorts the pending AddSpread entries into the per-list
// buffers, in call order: each list's buffer grows once, by the count
// AddSpread kept.
func (b *Batch) absorbSpread() {
	cs := int(b.s.conf.codeSize)
	// First pass: extend each list's buffers to their final length once and
	// remember where its new entries start; the scatter below then only
	// stores values, with no slice headers written per entry (those stores
	// cost GC write barriers and bookkeeping on the hottest loop).
	cursor := b.bufs.cursors()
	for _, k := range b.spread {
		for _, l := range k.lists {
			l := int64(l)
			if c := b.bufs.count(l); c > 0 {
				lb := b.bufs.get(int(l))
				old := len(lb.ids)
				lb.ids = slices.Grow(lb.ids, c)[:old+c]
				lb.codes = slices.Grow(lb.codes, c*cs)[:(old+c)*cs]
				b.bufs.clearCount(l)
				b.bufs.setCursor(cursor, l, old)
			}
		}
	}
	for _, k := range b.spread {
		for i, l := range k.lists {
			lb := b.bufs.peek(int(l))
			p := b.bufs.nextCursor(cursor, int64(l))
			lb.ids[p] = k.ids[i]
			copy(lb.codes[p*cs:(p+1)*cs], k.codes[i*cs:(i+1)*cs])
		}
	}
	releaseSpread(b.spread)
	b.spread = b.spread[:0]
}

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

// scatter moves every pending AddSpread entry to its list's region of a:
// cur[l] (or curMap[l]) is where list l's next entry goes. Positions are
// computed first, then ids and codes are moved in separate passes: the
// cursor updates and the scattered stores do not stall each other.
func (b *Batch) scatter(a *scatterArena, cur []int, curMap map[int64]int) {
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

// flushJob is one list flushAll writes: its entries [keep, size) are the
// buffered Add entries (add) followed by the scattered AddSpread entries
// (spIDs, spCodes). In place, they go after the list's entries in its own
// slot; otherwise the list moves to a new slot (a slotJob) and its first
// keep entries are copied there from the old one.
type flushJob struct {
	slotJob
	inPlace bool
	add     *listBuf
	spIDs   []int64
	spCodes []byte
}

// flushGroupBytes is about how many bytes of entries flushAll writes
// between two requests to start write-back.
const flushGroupBytes = 1 << 20

// flushAll writes every buffered entry: lists whose slot has room append
// in place; the others move to slots of the next power of two, packed
// together so they are written sequentially. Pending AddSpread entries are
// scattered straight into one arena where each list's new entries are
// contiguous, and written from there. In a large flush, a second goroutine
// does the writes: it copies kept entries of moved lists while this one
// scatters, then writes list after list in offset order, and this one asks
// the kernel to start writing each finished range back, so the disk works
// during the flush and the commit's fdatasync has little left to wait for.
func (b *Batch) flushAll() error {
	s := b.s
	cs := int(s.conf.codeSize)
	ls := b.pendingLists()
	if len(ls) == 0 {
		releaseSpread(b.spread)
		b.spread = b.spread[:0]
		return nil
	}
	var nsp int
	for _, l := range ls {
		nsp += b.bufs.count(int64(l))
	}
	var a *scatterArena
	if nsp > 0 {
		a = getArena(nsp, cs)
		defer arenaPool.Put(a)
	}
	var cur []int
	var curMap map[int64]int
	if b.bufs.cntMap != nil {
		curMap = make(map[int64]int, len(ls))
	} else {
		cur = b.bufs.cursors()
	}
	jobs := make([]flushJob, 0, len(ls))
	var total uint64
	p := 0
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
		j := flushJob{slotJob: slotJob{l: l, old: e, keep: e.size, size: final}, add: lb}
		if nSp > 0 {
			if cur != nil {
				cur[l] = p
			} else {
				curMap[int64(l)] = p
			}
			j.spIDs = a.ids[p : p+nSp]
			j.spCodes = a.codes[p*cs : (p+nSp)*cs]
			p += nSp
		}
		if final <= e.cap && (b.fresh(e) || e.size == e.hwm) {
			j.inPlace, j.cap, j.off = true, e.cap, e.off
			total += uint64(n) * uint64(cs+8)
		} else {
			j.cap = e.cap
			if final > j.cap {
				j.cap = slots.NextPow2(final)
			}
			total += final * uint64(cs+8)
		}
		jobs = append(jobs, j)
	}
	if err := b.placeFlush(jobs); err != nil {
		return err
	}
	m := s.m // after placement: growing the file may have remapped it
	slices.SortFunc(jobs, func(x, y flushJob) int { return cmp.Compare(x.off, y.off) })
	if s.alloc.End() > dropLimit() {
		// A store larger than the page cache can hold: the partly filled
		// last pages of the lists appended in place are likely not
		// cached, and each pwrite into one would read it first, one page
		// at a time. Ask for them all now, so the disk reads them in
		// parallel.
		for i := range jobs {
			if j := &jobs[i]; j.inPlace && j.keep > 0 {
				adviseFile(s.file, (j.off+j.keep*uint64(cs))&^4095, 4096, adviseWillNeed)
				adviseFile(s.file, (j.off+align8(j.cap*uint64(cs))+8*j.keep)&^4095, 4096, adviseWillNeed)
			}
		}
	}
	// Split the jobs into groups of about flushGroupBytes of entries, in
	// offset order; a group is the unit writes are reported in.
	var groups []int // end index of each group
	var acc uint64
	for i := range jobs {
		acc += (jobs[i].size - jobs[i].keep) * uint64(cs+8)
		if !jobs[i].inPlace {
			acc += jobs[i].keep * uint64(cs+8)
		}
		if acc >= flushGroupBytes || i == len(jobs)-1 {
			groups = append(groups, i+1)
			acc = 0
		}
	}
	bounds := func(g int) (lo, hi int) {
		if g > 0 {
			lo = groups[g-1]
		}
		return lo, groups[g]
	}
	// writeKept copies the kept entries of group g's moved lists to their
	// new slots.
	writeKept := func(g int) error {
		lo, hi := bounds(g)
		for i := lo; i < hi; i++ {
			j := &jobs[i]
			if j.inPlace || j.keep == 0 {
				continue
			}
			if err := writeFull(s.file, m.bytes(j.old.off, j.keep*uint64(cs)), j.off); err != nil {
				return err
			}
			if err := writeFull(s.file, m.bytes(j.old.off+align8(j.old.cap*uint64(cs)), j.keep*8), j.off+align8(j.cap*uint64(cs))); err != nil {
				return err
			}
		}
		return nil
	}
	// writeGroup writes the entries of group g's lists, their kept ones
	// too unless writeKept already did.
	writeGroup := func(w *runWriter, g int, kept bool) error {
		lo, hi := bounds(g)
		for i := lo; i < hi; i++ {
			if err := b.writeSlot(w, &jobs[i], m, kept); err != nil {
				return err
			}
		}
		return w.flush()
	}
	if runtime.GOMAXPROCS(0) == 1 || total < 4<<20 {
		if a != nil {
			b.scatter(a, cur, curMap)
		}
		w := &runWriter{f: s.file}
		for g := range groups {
			if err := writeGroup(w, g, false); err != nil {
				return err
			}
		}
	} else {
		// One goroutine does every pwrite (buffered writes to one file
		// serialize in the kernel anyway): the kept entries of the first
		// groups while this goroutine scatters, then each group's
		// remaining kept entries and its new ones. This goroutine then
		// starts the write-back of each group written, so the disk works
		// while later groups are written.
		written := make(chan [2]uint64, len(groups))
		scattered := make(chan struct{})
		errc := make(chan error, 1)
		go func() {
			var err error
			k := 0 // groups whose kept entries are written
		early:
			for ; k < len(groups) && err == nil; k++ {
				select {
				case <-scattered:
					break early
				default:
				}
				err = writeKept(k)
			}
			<-scattered
			w := &runWriter{f: s.file}
			for g := 0; g < len(groups) && err == nil; g++ {
				err = writeGroup(w, g, g < k)
				if err == nil {
					lo, hi := bounds(g)
					first, last := &jobs[lo], &jobs[hi-1]
					written <- [2]uint64{first.off, last.off + slotBytes(last.cap, cs)}
				}
			}
			close(written)
			errc <- err
		}()
		if a != nil {
			b.scatter(a, cur, curMap)
		}
		close(scattered)
		// Ranges written while a write-back request was being made are
		// merged into the next request. Write-back is waited for behind a
		// window, as merges do, but pages are never dropped: a group's
		// range spans in-place appends all over the file, whose cached
		// pages searches may be using.
		wb := newWriteBehind(s.file, 0)
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
		if wbErr != nil {
			return wbErr
		}
	}
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
			b.d.set(j.l, e)
			continue
		}
		if j.old.cap > 0 {
			if err := b.freeSlot(j.old); err != nil {
				return err
			}
		}
		b.d.set(j.l, entry{off: j.off, cap: j.cap, size: j.size, hwm: j.size})
	}
	for _, l := range ls {
		b.bufs.clearCount(int64(l))
	}
	b.bufs.reset()
	b.bufBytes = 0
	releaseSpread(b.spread)
	b.spread = b.spread[:0]
	return nil
}

// writeSlot queues on w job j's entries past its first keep ones
// (buffered Add entries, then scattered AddSpread ones) and, for a list
// that moves unless keptDone, the kept ones copied from its old slot
// through map m. A moved list's spare capacity is written as zeros when it
// is short, so its codes, its ids and the next packed slot form one
// contiguous run: w then writes many slots with one call, and they reach
// the disk as long sequential writes.
func (b *Batch) writeSlot(w *runWriter, j *flushJob, m *mapping, keptDone bool) error {
	cs := uint64(b.s.conf.codeSize)
	idsOff := j.off + align8(j.cap*cs)
	at := j.off + j.keep*cs
	if !j.inPlace && j.keep > 0 && !keptDone {
		if err := w.add(j.off, m.bytes(j.old.off, j.keep*cs)); err != nil {
			return err
		}
	}
	if j.add != nil && len(j.add.ids) > 0 {
		if err := w.add(at, j.add.codes); err != nil {
			return err
		}
		at += uint64(len(j.add.codes))
	}
	if err := w.add(at, j.spCodes); err != nil {
		return err
	}
	if !j.inPlace {
		if err := w.add(j.off+j.size*cs, zeroGap(j.off+j.size*cs, idsOff)); err != nil {
			return err
		}
	}
	at = idsOff + j.keep*8
	if !j.inPlace && j.keep > 0 && !keptDone {
		if err := w.add(idsOff, m.bytes(j.old.off+align8(j.old.cap*cs), j.keep*8)); err != nil {
			return err
		}
	}
	if j.add != nil && len(j.add.ids) > 0 {
		if err := w.add(at, int64Bytes(j.add.ids)); err != nil {
			return err
		}
		at += 8 * uint64(len(j.add.ids))
	}
	if err := w.add(at, int64Bytes(j.spIDs)); err != nil {
		return err
	}
	if !j.inPlace {
		end := idsOff + j.size*8
		if err := w.add(end, zeroGap(end, j.off+slotBytes(j.cap, int(cs)))); err != nil {
			return err
		}
	}
	return nil
}

// gapFillMax is the largest unused stretch of a moved list's slot that is
// written as zeros.
const gapFillMax = 16 << 10

var zeros [gapFillMax]byte

// zeroGap returns the zeros to write over [lo, hi) when that stretch is
// short, or nil.
func zeroGap(lo, hi uint64) []byte {
	if hi-lo > gapFillMax {
		return nil
	}
	return zeros[:hi-lo]
}

// runWriter gathers pieces that follow each other in the file and writes
// each contiguous run with as few calls as possible.
type runWriter struct {
	f   dataFile
	off uint64 // where the run starts
	n   uint64 // bytes in the run
	iov [][]byte
}

// maxIov stays below the kernel's limit on buffers per call (IOV_MAX).
const maxIov = 1000

// add queues p to be written at off, writing the queued run first if p
// does not continue it.
func (w *runWriter) add(off uint64, p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if len(w.iov) > 0 && (off != w.off+w.n || len(w.iov) == maxIov) {
		if err := w.flush(); err != nil {
			return err
		}
	}
	if len(w.iov) == 0 {
		w.off = off
	}
	w.iov = append(w.iov, p)
	w.n += uint64(len(p))
	return nil
}

// flush writes the queued run.
func (w *runWriter) flush() error {
	if len(w.iov) == 0 {
		return nil
	}
	err := writevFull(w.f, w.iov, w.off)
	clear(w.iov)
	w.iov = w.iov[:0]
	w.n = 0
	return err
}

// placeFlush gives every job that moves a fresh slot: free space first
// (best fit), the rest packed one after another in one contiguous region.
func (b *Batch) placeFlush(jobs []flushJob) error {
	var moved []*slotJob
	for i := range jobs {
		if !jobs[i].inPlace {
			moved = append(moved, &jobs[i].slotJob)
		}
	}
	return b.placeSlots(moved, true)
}

// allocRegion takes total contiguous bytes of free space, growing the
// data file if needed; the caller records the slots it cuts from it.
func (b *Batch) allocRegion(total uint64) (uint64, error) {
	s := b.s
	off, ok := s.alloc.Alloc(total)
	if !ok {
		if err := s.grow(total); err != nil {
			return 0, err
		}
		b.wrote = true
		if off, ok = s.alloc.Alloc(total); !ok {
			return 0, fmt.Errorf("store: no %d free bytes after growing %s", total, s.dir)
		}
	}
	return off, nil
}

// pendingLists returns, in order, the lists with buffered Add entries or
// pending AddSpread entries.
func (b *Batch) pendingLists() []int {
	lb := &b.bufs
	var out []int
	switch {
	case lb.cnt != nil:
		for l, c := range lb.cnt {
			if c > 0 || (lb.arr[l] != nil && len(lb.arr[l].ids) > 0) {
				out = append(out, l)
			}
		}
		return out
	case lb.cntMap != nil:
		out = make([]int, 0, len(lb.touched)+len(lb.cntMap))
		for _, l := range lb.touched {
			if x := lb.peek(l); x != nil && len(x.ids) > 0 {
				out = append(out, l)
			}
		}
		for l, c := range lb.cntMap {
			if c > 0 {
				out = append(out, int(l))
			}
		}
	default:
		for _, l := range lb.touched {
			if x := lb.peek(l); x != nil && len(x.ids) > 0 {
				out = append(out, l)
			}
		}
	}
	sort.Ints(out)
	return slices.Compact(out)
}

// vectorWriter is a data file that writes several buffers at one offset
// in one call. Only the production file implements it; a wrapper (as in
// tests) gets one WriteAt per buffer.
type vectorWriter interface {
	writevAt(bufs [][]byte, off int64) (int, error)
}

// writevFull writes bufs one after another at off, all of them.
func writevFull(f dataFile, bufs [][]byte, off uint64) error {
	vw, ok := f.(vectorWriter)
	if !ok {
		for _, p := range bufs {
			if err := writeFull(f, p, off); err != nil {
				return err
			}
			off += uint64(len(p))
		}
		return nil
	}
	for {
		for len(bufs) > 0 && len(bufs[0]) == 0 {
			bufs = bufs[1:]
		}
		for len(bufs) > 0 && len(bufs[len(bufs)-1]) == 0 {
			bufs = bufs[:len(bufs)-1]
		}
		switch len(bufs) {
		case 0:
			return nil
		case 1:
			return writeFull(f, bufs[0], off) // pwrite costs less than pwritev
		}
		n, err := vw.writevAt(bufs, int64(off))
		if err == nil && n <= 0 {
			err = io.ErrShortWrite
		}
		if err != nil {
			var rest int
			for _, p := range bufs {
				rest += len(p)
			}
			return fmt.Errorf("write %d bytes at %d of %s: %w", rest, off, f.OS().Name(), err)
		}
		off += uint64(n)
		for n > 0 {
			if n >= len(bufs[0]) {
				n -= len(bufs[0])
				bufs = bufs[1:]
			} else {
				bufs[0] = bufs[0][n:]
				n = 0
			}
		}
	}
}

package store

import (
	"runtime"
	"sort"
	"sync"
)

// slotJob describes one list to be written into a new slot: the first keep
// entries of its old slot, then size-keep new entries produced by fill.
type slotJob struct {
	l    int
	old  entry
	keep uint64
	cap  uint64
	size uint64
	// fill writes entries [keep, size) into ids and codes (exactly that
	// many); nil leaves codes zero and ids -1.
	fill func(ids []int64, codes []byte) error
	off  uint64 // chosen slot offset
}

// placeSlots gives every job with a non-empty slot a fresh one: with
// reuse, free space first (best fit); the rest packed one after another
// in one contiguous region, so writing them is sequential I/O.
func (b *Batch) placeSlots(jobs []*slotJob, reuse bool) error {
	s := b.s
	cs := int(s.conf.codeSize)
	var packed []*slotJob
	var total uint64
	for _, j := range jobs {
		n := slotBytes(j.cap, cs)
		if n == 0 {
			continue
		}
		if reuse {
			if off, ok := s.alloc.Alloc(n); ok {
				b.allocated[off] = n
				j.off = off
				continue
			}
		}
		packed = append(packed, j)
		total += n
	}
	if total == 0 {
		return nil
	}
	off, err := b.allocRegion(total)
	if err != nil {
		return err
	}
	for _, j := range packed {
		n := slotBytes(j.cap, cs)
		j.off = off
		b.allocated[off] = n
		off += n
	}
	return nil
}

// stagingBytes bounds the buffer slot images are assembled in before one
// sequential pwrite.
const stagingBytes = 8 << 20

// placeJobs writes every job into a fresh slot and points the draft at it.
// With reuse, each job first tries the free space (best fit); the rest are
// packed one after another into one contiguous region, so writing them is
// sequential I/O. Old slots are freed (after the commit, unless fresh).
func (b *Batch) placeJobs(jobs []slotJob, reuse bool, progress func(done int64)) error {
	s := b.s
	cs := int(s.conf.codeSize)
	ptrs := make([]*slotJob, 0, len(jobs))
	for i := range jobs {
		ptrs = append(ptrs, &jobs[i])
	}
	if err := b.placeSlots(ptrs, reuse); err != nil {
		return err
	}
	// Write in offset order so the packed region goes out sequentially.
	order := make([]int, 0, len(jobs))
	for i := range jobs {
		if jobs[i].cap > 0 {
			order = append(order, i)
		}
	}
	sort.Slice(order, func(x, y int) bool { return jobs[order[x]].off < jobs[order[y]].off })
	// Split the jobs into contiguous runs of about equal bytes, one per
	// worker: page-cache copies of one pwrite stream top out well below
	// what two cores and the disk can take.
	var all uint64
	for _, i := range order {
		all += slotBytes(jobs[i].cap, cs)
	}
	workers := runtime.GOMAXPROCS(0)
	if workers > 4 {
		workers = 4
	}
	if all < 4<<20 || len(order) < 2 {
		workers = 1
	}
	var runs [][]int
	var acc uint64
	startIdx := 0
	for k, i := range order {
		acc += slotBytes(jobs[i].cap, cs)
		if acc*uint64(workers) >= all*uint64(len(runs)+1) || k == len(order)-1 {
			runs = append(runs, order[startIdx:k+1])
			startIdx = k + 1
		}
	}
	var (
		mu    sync.Mutex
		done  int64
		first error
		wg    sync.WaitGroup
	)
	work := func(run []int) {
		if err := b.writeRun(jobs, run, all, func(n int64) {
			if progress == nil {
				return
			}
			mu.Lock()
			done += n
			progress(done)
			mu.Unlock()
		}); err != nil {
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
			go func(run []int) {
				defer wg.Done()
				work(run)
			}(run)
		}
		wg.Wait()
	}
	if len(order) > 0 {
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
		b.d.set(j.l, entry{off: j.off, cap: j.cap, size: j.size, hwm: j.size})
	}
	return nil
}

var stagingPool = sync.Pool{New: func() any { b := make([]byte, 0, stagingBytes); return &b }}

// writeRun builds and writes the slots of jobs[run...], in offset order.
// Only the meaningful part of a slot is written (codes and ids of its
// size entries; spare capacity stays a hole). Full slots that follow each
// other, as a merge packs them, are gathered into pwrites of up to
// stagingBytes; others are built in scratch memory and written as two
// pieces.
func (b *Batch) writeRun(jobs []slotJob, run []int, all uint64, progress func(int64)) error {
	s := b.s
	cs := uint64(s.conf.codeSize)
	bp := stagingPool.Get().(*[]byte)
	defer stagingPool.Put(bp)
	stage := (*bp)[:0]
	var stageOff uint64
	wb := newWriteBehind(s.file, all)
	write := func(p []byte, off uint64) error {
		if err := writeFull(s.file, p, off); err != nil {
			return err
		}
		return wb.wrote(off, uint64(len(p)))
	}
	flush := func() error {
		if len(stage) == 0 {
			return nil
		}
		err := write(stage, stageOff)
		stage = stage[:0]
		return err
	}
	var scratchCodes []byte
	var scratchIDs []int64
	for _, i := range run {
		j := &jobs[i]
		if j.size == 0 {
			continue
		}
		n := slotBytes(j.cap, int(cs))
		// Slots go out through the staging buffer, spare capacity written
		// as zeros, unless they are large or mostly spare (a list moved
		// to a power-of-two slot): those get two writes of their entries.
		if n <= stagingBytes && 4*(j.cap-j.size) <= j.size {
			if len(stage) > 0 && (stageOff+uint64(len(stage)) != j.off || uint64(len(stage))+n > stagingBytes) {
				if err := flush(); err != nil {
					return err
				}
			}
			if len(stage) == 0 {
				stageOff = j.off
			}
			start := len(stage)
			stage = stage[:start+int(n)]
			img := stage[start:]
			at := align8(j.cap * cs) // ids follow the codes' whole capacity
			clear(img[j.size*cs : at])
			clear(img[at+8*j.size:])
			if err := b.buildSlot(j, img[:j.size*cs], int64View(img[at:at+8*j.size])); err != nil {
				return err
			}
		} else {
			if uint64(cap(scratchCodes)) < j.size*cs {
				scratchCodes = make([]byte, j.size*cs)
			}
			if uint64(cap(scratchIDs)) < j.size {
				scratchIDs = make([]int64, j.size)
			}
			codes, ids := scratchCodes[:j.size*cs], scratchIDs[:j.size]
			if err := b.buildSlot(j, codes, ids); err != nil {
				return err
			}
			if err := write(codes, j.off); err != nil {
				return err
			}
			if err := write(int64Bytes(ids), j.off+align8(j.cap*cs)); err != nil {
				return err
			}
		}
		progress(int64(j.size))
	}
	return flush()
}

// buildSlot fills the codes and ids of job j's new slot: the kept entries
// of the old slot, then the new ones.
func (b *Batch) buildSlot(j *slotJob, codes []byte, ids []int64) error {
	cs := uint64(b.s.conf.codeSize)
	if j.keep > 0 {
		m := b.s.m
		copy(codes, m.bytes(j.old.off, j.keep*cs))
		copy(int64Bytes(ids[:j.keep]), m.bytes(j.old.off+align8(j.old.cap*cs), j.keep*8))
	}
	newIDs := ids[j.keep:j.size]
	newCodes := codes[j.keep*cs : j.size*cs]
	if j.fill == nil {
		clear(newCodes)
		for i := range newIDs {
			newIDs[i] = -1
		}
		return nil
	}
	return j.fill(newIDs, newCodes)
}

// listBuf holds the entries a batch appends to one list until they are
// written, so many small appends become one write per list.
type listBuf struct {
	ids   []int64
	codes []byte
}

// listBufs maps list numbers to their buffered entries and counts the
// entries AddSpread holds for each: slices indexed by list up to 64K
// lists (no hashing on the add path), maps beyond, so a batch never
// allocates memory proportional to a huge nlist.
type listBufs struct {
	arr     []*listBuf
	m       map[int]*listBuf
	touched []int
	cnt     []int32
	cntMap  map[int64]int32
	cur     []int
	curMap  map[int64]int
	nlist   int
}

const listBufsSliceMax = 1 << 16

func newListBufs(nlist int) listBufs {
	if nlist <= listBufsSliceMax {
		return listBufs{arr: make([]*listBuf, nlist), nlist: nlist}
	}
	return listBufs{m: map[int]*listBuf{}, cntMap: map[int64]int32{}, nlist: nlist}
}

// counts returns the per-list counts of AddSpread entries as a slice,
// creating it, or nil when they are kept in cntMap.
func (lb *listBufs) counts() []int32 {
	if lb.cntMap != nil {
		return nil
	}
	if lb.cnt == nil {
		lb.cnt = make([]int32, lb.nlist)
	}
	return lb.cnt
}

func (lb *listBufs) count(l int64) int {
	if lb.cntMap != nil {
		return int(lb.cntMap[l])
	}
	if lb.cnt == nil {
		return 0
	}
	return int(lb.cnt[l])
}

// cursors returns the per-list write positions absorbSpread uses: a slice
// for up to 64K lists, nil (a map kept in lb) beyond.
func (lb *listBufs) cursors() []int {
	if lb.cntMap != nil {
		if lb.curMap == nil {
			lb.curMap = map[int64]int{}
		}
		return nil
	}
	if lb.cur == nil {
		lb.cur = make([]int, lb.nlist)
	}
	return lb.cur
}

func (lb *listBufs) setCursor(cur []int, l int64, p int) {
	if cur != nil {
		cur[l] = p
		return
	}
	lb.curMap[l] = p
}

// nextCursor returns list l's next write position and advances it.
func (lb *listBufs) nextCursor(cur []int, l int64) int {
	if cur != nil {
		p := cur[l]
		cur[l] = p + 1
		return p
	}
	p := lb.curMap[l]
	lb.curMap[l] = p + 1
	return p
}

func (lb *listBufs) clearCount(l int64) {
	if lb.cntMap != nil {
		delete(lb.cntMap, l)
	} else if lb.cnt != nil {
		lb.cnt[l] = 0
	}
}

// peek returns list l's buffer or nil.
func (lb *listBufs) peek(l int) *listBuf {
	if lb.arr != nil {
		return lb.arr[l]
	}
	return lb.m[l]
}

// get returns list l's buffer, creating it.
func (lb *listBufs) get(l int) *listBuf {
	if b := lb.peek(l); b != nil {
		return b
	}
	b := &listBuf{}
	if lb.arr != nil {
		lb.arr[l] = b
	} else {
		lb.m[l] = b
	}
	lb.touched = append(lb.touched, l)
	return b
}

func (lb *listBufs) drop(l int) {
	if lb.arr != nil {
		lb.arr[l] = nil
	} else {
		delete(lb.m, l)
	}
}

func (lb *listBufs) reset() {
	for _, l := range lb.touched {
		lb.drop(l)
	}
	lb.touched = lb.touched[:0]
}

// flushBufLimit bounds the memory a batch buffers before writing.
const flushBufLimit = 64 << 20

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

package store

import (
	"slices"
	"sort"
	"sync"
)

// What a batch holds before it writes: the entries Add buffers per list
// (listBufs), and the entries AddSpread keeps in call order (spreadBlocks)
// until a flush scatters them into their lists, or absorbSpread sorts
// them into the per-list buffers. A flush (flush.go) writes both.

// flushBufLimit bounds the memory a batch buffers before writing.
const flushBufLimit = 64 << 20

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

// pending returns, in order, the lists with buffered Add entries or
// pending AddSpread entries.
func (lb *listBufs) pending() []int {
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
	b.dropSpread()
}

// dropSpread gives back the AddSpread blocks once their entries moved on.
func (b *Batch) dropSpread() {
	releaseSpread(b.spread)
	b.spread = b.spread[:0]
}

package gpu

import (
	"fmt"
	"math"

	"github.com/shelfdb/shelf/internal/vecmath"
)

// plan is the host-side layout of one Request as the kernels read it,
// built without CUDA so that it is tested on any machine (plan_test.go
// runs the kernels' algorithm on it, chunk by chunk, as the GPU does).
//
// The probed lists are numbered in one entry space, list after list
// (listStart). Each list with at least one probe is cut into segments
// of at most itemCodes entries; a work item is one (segment, probe)
// pair, and items are ordered by segment, then probe. Consecutive
// segments are contiguous in the entry space, so a chunk (a run of
// segments) is one range [entryLo, entryHi) of entries, copied into a
// staging buffer at entry-entryLo, and its items are one range
// [itemLo, itemHi): the scan kernel of a chunk reads entry e of the
// item's list at buffer index listStart[list]-entryLo+e.
//
// With a device cache, lists resident in it come first: their items
// [0, residentItems) are scanned from the cache arena in one launch,
// reading entry e at arena index cacheStart[list]+e; they take no room
// in the entry space. Lists admitted to the cache by this block are
// streamed like the others, and each of their segments is then copied
// on the device from its chunk to arena index admitAt[list]+segStart.
type plan struct {
	m int
	// Probed list i: its source slices (read in place, not copied) and
	// its first entry in the entry space; listStart has one more entry.
	srcIDs    [][]int64
	srcCodes  [][]byte
	listStart []int64
	// Segment s holds entries [segStart[s], segEnd[s]) of list segList[s];
	// its items are [segItem[s], segItem[s+1]).
	segList, segStart, segEnd, segItem []int32
	// Work item t scans entries [itemStart[t], itemEnd[t]) of the list of
	// probe itemPair[t].
	itemPair, itemStart, itemEnd []int32
	pairList                     []int32 // probed-list index of each probe
	// The items of query q are qItems[qItemStart[q]:qItemStart[q+1]].
	qItemStart, qItems []int32
	// Per-list terms: row pairList[j] of ltab (len(Lists)*M*Ksub floats,
	// copied per block), or with a resident precomputed table, row
	// ltabRow[pairList[j]] (the list number) of the device's copy of
	// req.Precomputed; both nil when tables depend on the query only.
	ltab     []float32
	ltabRow  []int32
	chunks   []chunk
	chunkCap int64 // entries of the largest chunk
	// Device cache (nil without one): arena index of each resident list,
	// and of each list admitted by this block, else -1.
	cacheStart, admitAt []int64
	residentItems       int
}

// chunk is one pipeline step: segments [segLo, segHi), entries
// [entryLo, entryHi), items [itemLo, itemHi).
type chunk struct {
	segLo, segHi     int
	itemLo, itemHi   int
	entryLo, entryHi int64
}

// newPlan reads the probed lists' slices (each once, whatever the number
// of queries probing it), cuts them into items of at most itemCodes codes
// and groups the segments into chunks of at most chunkEntries entries
// (at least one segment each). With a cache (begun for this block), lists
// resident in it are scanned from it, and others are admitted when there
// is room. With residentTables (r.Precomputed is on the device) the
// kernels read per-list terms from that copy, and none are gathered.
func newPlan(r *Request, src ListSource, itemCodes int, chunkEntries int64, cache *listCache, residentTables bool) (*plan, error) {
	if err := validate(r); err != nil {
		return nil, err
	}
	if itemCodes <= 0 || itemCodes > math.MaxInt32 {
		return nil, fmt.Errorf("gpu: item size %d", itemCodes)
	}
	nl, m, mk := len(r.Lists), r.M, r.M*r.Ksub
	p := &plan{m: m, srcIDs: make([][]int64, nl), srcCodes: make([][]byte, nl), listStart: make([]int64, nl+1)}
	if residentTables && r.Precomputed == nil {
		return nil, fmt.Errorf("gpu: resident tables asked for a request without a precomputed table")
	}
	for i, l := range r.Lists {
		ids, codes, err := src.ReadList(l)
		if err != nil {
			return nil, err
		}
		n := len(ids)
		if len(codes) < n*m {
			return nil, fmt.Errorf("gpu: list %d has %d code bytes for %d entries of %d", l, len(codes), n, m)
		}
		if n > math.MaxInt32 {
			return nil, fmt.Errorf("gpu: list %d has %d entries (at most 2^31-1)", l, n)
		}
		p.srcIDs[i], p.srcCodes[i] = ids, codes[:n*m]
		switch {
		case residentTables:
			if l > math.MaxInt32 {
				return nil, fmt.Errorf("gpu: list %d: a resident table is indexed by 32-bit list numbers", l)
			}
			p.ltabRow = append(p.ltabRow, int32(l))
		case r.ListTables != nil:
			t := r.ListTables(l)
			if len(t) < mk {
				return nil, fmt.Errorf("gpu: list table of list %d has %d floats, want %d", l, len(t), mk)
			}
			p.ltab = append(p.ltab, t[:mk]...)
		}
	}
	probed := func(i int) bool { return r.ProbeStart[i+1] > r.ProbeStart[i] && len(p.srcIDs[i]) > 0 }
	resident := func(int) bool { return false }
	if cache != nil {
		p.cacheStart = make([]int64, nl)
		p.admitAt = make([]int64, nl)
		for i := range nl { // hits first, so that admissions never evict them
			p.cacheStart[i], p.admitAt[i] = -1, -1
			if probed(i) {
				if at, ok := cache.hit(r.Lists[i], len(p.srcIDs[i])); ok {
					p.cacheStart[i] = at
				}
			}
		}
		for i := range nl {
			if probed(i) && p.cacheStart[i] < 0 {
				if at, ok := cache.admit(r.Lists[i], len(p.srcIDs[i])); ok {
					p.admitAt[i] = at
				}
			}
		}
		resident = func(i int) bool { return p.cacheStart[i] >= 0 }
	}
	perQuery := make([]int32, r.NQ+1)
	// Resident lists' items, then the streamed lists' segments and items.
	for pass := range 2 {
		for i := range nl {
			if !probed(i) || resident(i) != (pass == 0) {
				continue
			}
			if err := p.addSegments(r, i, itemCodes, pass == 1, perQuery); err != nil {
				return nil, err
			}
		}
		if pass == 0 {
			p.residentItems = len(p.itemPair)
		}
	}
	for i := range nl { // entry space: streamed lists only
		n := int64(len(p.srcIDs[i]))
		if !probed(i) || resident(i) {
			n = 0
		}
		p.listStart[i+1] = p.listStart[i] + n
	}
	p.segItem = append(p.segItem, int32(len(p.itemPair)))
	p.pairList = make([]int32, len(r.ProbeQuery))
	for i := range r.Lists {
		for j := r.ProbeStart[i]; j < r.ProbeStart[i+1]; j++ {
			p.pairList[j] = int32(i)
		}
	}
	for q := 0; q < r.NQ; q++ {
		perQuery[q+1] += perQuery[q]
	}
	p.qItemStart = append([]int32(nil), perQuery...)
	p.qItems = make([]int32, len(p.itemPair))
	for t, j := range p.itemPair {
		q := r.ProbeQuery[j]
		p.qItems[perQuery[q]] = int32(t)
		perQuery[q]++
	}
	p.chunks = p.cut(chunkEntries)
	return p, nil
}

// addSegments cuts probed list i into segments of at most itemCodes
// entries (recorded when streamed) and adds one item per segment and
// probe.
func (p *plan) addSegments(r *Request, i, itemCodes int, streamed bool, perQuery []int32) error {
	n := len(p.srcIDs[i])
	lo, hi := r.ProbeStart[i], r.ProbeStart[i+1]
	for s := 0; s < n; s += itemCodes {
		e := min(s+itemCodes, n)
		if len(p.itemPair) > math.MaxInt32-(hi-lo) {
			return fmt.Errorf("gpu: more than 2^31-1 work items in one block")
		}
		if streamed {
			p.segList = append(p.segList, int32(i))
			p.segStart = append(p.segStart, int32(s))
			p.segEnd = append(p.segEnd, int32(e))
			p.segItem = append(p.segItem, int32(len(p.itemPair)))
		}
		for j := lo; j < hi; j++ {
			p.itemPair = append(p.itemPair, int32(j))
			p.itemStart = append(p.itemStart, int32(s))
			p.itemEnd = append(p.itemEnd, int32(e))
			perQuery[r.ProbeQuery[j]+1]++
		}
	}
	return nil
}

// segEntry is the first entry of segment s in the entry space.
func (p *plan) segEntry(s int) int64 { return p.listStart[p.segList[s]] + int64(p.segStart[s]) }

// cut groups the segments into chunks of at most maxEntries entries
// (a segment longer than that is a chunk of its own).
func (p *plan) cut(maxEntries int64) []chunk {
	var out []chunk
	for s := 0; s < len(p.segList); {
		c := chunk{segLo: s, entryLo: p.segEntry(s)}
		c.entryHi = c.entryLo
		for s < len(p.segList) {
			n := int64(p.segEnd[s] - p.segStart[s])
			if s > c.segLo && c.entryHi-c.entryLo+n > maxEntries {
				break
			}
			c.entryHi += n
			s++
		}
		c.segHi = s
		c.itemLo, c.itemHi = int(p.segItem[c.segLo]), int(p.segItem[s])
		p.chunkCap = max(p.chunkCap, c.entryHi-c.entryLo)
		out = append(out, c)
	}
	return out
}

// stage copies chunk c's codes and ids from the lists into codes (at
// least chunkCap*M bytes) and ids (at least chunkCap entries), segments
// spread over threads goroutines.
func (p *plan) stage(c int, codes []byte, ids []int64, threads int) {
	ch := p.chunks[c]
	m := int64(p.m)
	vecmath.ParallelFor(ch.segHi-ch.segLo, 1, threads, func(lo, hi, _ int) {
		for s := ch.segLo + lo; s < ch.segLo+hi; s++ {
			i := p.segList[s]
			a, b := int64(p.segStart[s]), int64(p.segEnd[s])
			at := p.segEntry(s) - ch.entryLo
			copy(codes[at*m:(at+b-a)*m], p.srcCodes[i][a*m:b*m])
			copy(ids[at:at+b-a], p.srcIDs[i][a:b])
		}
	})
}

func align(n int64) int64 { return (n + 255) &^ 255 } // as cudaMalloc

// sortSize is the number of entries of a kernel's selection buffer: a
// power of two holding the k kept plus one candidate per thread.
func sortSize(k, threads int) int {
	n := 1
	for n < k+threads {
		n <<= 1
	}
	return n
}

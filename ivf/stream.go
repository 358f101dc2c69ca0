package ivf

import (
	"cmp"
	"container/list"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/shelfdb/shelf/internal/vecmath"
	"github.com/shelfdb/shelf/store"
)

// How a scan gets its lists. Every scan (scanLists: Search, RangeSearch,
// CPUScanner) takes the probed lists of a block through ListStream: from
// memory or the memory map, list after list on as many goroutines as the
// scan has (mappedStream); from disk with positioned reads when the index
// has a memory budget (diskStream), many reads in flight in file order,
// each list scanned as soon as its bytes arrive, the reads' buffers never
// more than the budget.

// ListStream is a ListSource that hands out the lists of a block as they
// become ready, the way the source reads best. Stream calls fn for the
// entries of each of lists (by its index i in lists) on at most threads
// goroutines at once, worker w in [0, threads) (so fn can keep per-worker
// state without locks), in no fixed order; a list may come in several
// calls, each with a chunk of its entries (once each), and an empty list
// in none. The slices are valid during the call only. The first error, of
// a read, a list whose bytes fail their checksums, or fn, stops the
// stream and is returned. Its method set uses unnamed types only, so a
// scanner outside ivf (gpu/) can take lists from it without importing
// ivf.
type ListStream interface {
	ListSource
	Stream(lists []int, threads int, fn func(w, i int, ids []int64, codes []byte) error) error
}

// streamOf returns src's stream, or reads src list after list.
func streamOf(src ListSource) ListStream {
	if s, ok := src.(ListStream); ok {
		return s
	}
	return mappedStream{src}
}

// mappedStream streams a ListSource whose lists are in memory or mapped:
// workers take lists in turn and read each whole.
type mappedStream struct{ ListSource }

func (m mappedStream) Stream(lists []int, threads int, fn func(w, i int, ids []int64, codes []byte) error) error {
	errs := make([]error, vecmath.Threads(threads))
	var stop atomic.Bool
	vecmath.ParallelFor(len(lists), 1, threads, func(lo, hi, w int) {
		for i := lo; i < hi && !stop.Load(); i++ {
			ids, codes, err := m.ReadList(lists[i])
			if err == nil && len(ids) > 0 {
				err = fn(w, i, ids, codes)
			}
			if err != nil {
				errs[w] = err
				stop.Store(true)
			}
		}
	})
	return errors.Join(errs...)
}

// defaultIODepth is the reads a diskStream keeps in flight unless
// Index.IODepth says otherwise: enough for an NVMe disk's queue, and
// what the buffers allow.
const defaultIODepth = 64

// Slab sizes of the read buffers: a list that does not fit one is read in
// chunks. A budget is cut in at least minSlabs slabs so that reads
// overlap.
const (
	minSlab  = 128 << 10
	maxSlab  = 2 << 20
	minSlabs = 32
)

// slabArena is an index's memory budget: max slabs of size bytes, made
// as searches need them and kept for the next searches, shared by the
// searches running at once. A slab holds a read in flight or being
// scanned, or a list read whole that the cache keeps (no copy: the list
// stays in the slab it was read into), or is free. The cache holds at
// most max - reads slabs, so that reads always have theirs; a read that
// finds no free slab takes the one of the least recently used cached
// list no scan holds. Once every slab is made, searches allocate nothing.
type slabArena struct {
	size, max int
	free      chan []byte
	mu        sync.Mutex
	made      int
	cache     listCache
}

// newSlabArena cuts budget into slabs of at least need bytes; enough of
// them for depth reads in flight and as many scanned meanwhile (at most
// half the budget when it allows eight) are kept from the cache.
func newSlabArena(budget int64, need, depth int) *slabArena {
	size := max(int(min(max(budget/minSlabs, minSlab), maxSlab)), need)
	n := int(budget / int64(size))
	reads := min(n, 3*depth+8)
	if half := n / 2; reads > half && half >= minSlabs/8 {
		reads = half
	}
	a := &slabArena{size: size, max: n, free: make(chan []byte, n)}
	a.cache = listCache{max: n - reads, byKey: map[cacheKey]*list.Element{}}
	return a
}

// get returns a slab: a free one, a new one while fewer than max are
// made, the slab of the least recently used cached list no scan holds,
// or, failing all, the next one released.
func (a *slabArena) get() []byte {
	select {
	case b := <-a.free:
		return b
	default:
	}
	a.mu.Lock()
	if a.made < a.max {
		a.made++
		a.mu.Unlock()
		return make([]byte, a.size)
	}
	a.mu.Unlock()
	if b := a.cache.evict(); b != nil {
		return b
	}
	return <-a.free
}

func (a *slabArena) put(b []byte) { a.free <- b }

// keep gives the cache slab b, which holds list k (ids, codes) read whole
// and checked; a slab the cache does not take goes back to the free ones.
func (a *slabArena) keep(k cacheKey, b []byte, ids []int64, codes []byte) {
	taken, out := a.cache.add(k, b, ids, codes)
	if out != nil {
		a.put(out)
	}
	if !taken {
		a.put(b)
	}
}

// arena returns the index's memory for its current budget, slabs of at
// least need bytes for depth reads in flight.
func (ix *Index) arena(need, depth int) *slabArena {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.slabs == nil || ix.slabsBudget != ix.MemoryBudget || ix.slabs.size < need || ix.slabsDepth != depth {
		ix.slabs, ix.slabsBudget, ix.slabsDepth = newSlabArena(ix.MemoryBudget, need, depth), ix.MemoryBudget, depth
	}
	return ix.slabs
}

// listCache is the lists that searches read whole from disk (and
// checked), each in its slab, at most max slabs, the least recently used
// out first. A list is named by the content version of the snapshot it
// was read from and its number, so a commit never serves stale entries:
// they age out.
type listCache struct {
	mu    sync.Mutex
	max   int
	lru   list.List // of *cachedList, most recent first
	byKey map[cacheKey]*list.Element
	bytes int64
	hits  atomic.Int64
}

type cacheKey struct {
	version uint64
	list    int
}

type cachedList struct {
	key   cacheKey
	slab  []byte
	ids   []int64 // in slab
	codes []byte  // in slab
	refs  int     // scans using it now: not evicted
}

func (c *cachedList) size() int64 { return int64(8*len(c.ids) + len(c.codes)) }

// get returns the cached list and holds it until release, or nil.
func (c *listCache) get(k cacheKey) *cachedList {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byKey[k]
	if !ok {
		return nil
	}
	c.lru.MoveToFront(e)
	cl := e.Value.(*cachedList)
	cl.refs++
	c.hits.Add(1)
	return cl
}

func (c *listCache) release(cl *cachedList) {
	c.mu.Lock()
	cl.refs--
	c.mu.Unlock()
}

// evictLocked removes the least recently used list no scan holds and
// returns its slab, or nil.
func (c *listCache) evictLocked() []byte {
	for e := c.lru.Back(); e != nil; e = e.Prev() {
		if cl := e.Value.(*cachedList); cl.refs == 0 {
			c.lru.Remove(e)
			delete(c.byKey, cl.key)
			c.bytes -= cl.size()
			return cl.slab
		}
	}
	return nil
}

func (c *listCache) evict() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.evictLocked()
}

// add keeps list k in slab; when the cache is full it lets go of its
// least recently used list no scan holds (out, a slab to free). taken
// reports whether the cache kept slab.
func (c *listCache) add(k cacheKey, slab []byte, ids []int64, codes []byte) (taken bool, out []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.max == 0 {
		return false, nil
	}
	if _, ok := c.byKey[k]; ok {
		return false, nil
	}
	if c.lru.Len() >= c.max {
		if out = c.evictLocked(); out == nil {
			return false, nil
		}
	}
	cl := &cachedList{key: k, slab: slab, ids: ids, codes: codes}
	c.byKey[k] = c.lru.PushFront(cl)
	c.bytes += cl.size()
	return true, out
}

// CacheStats returns how many probed lists searches found in the list
// cache of the memory budget (instead of reading them), and the bytes the
// cache holds now.
func (ix *Index) CacheStats() (hits, held int64) {
	ix.mu.Lock()
	a := ix.slabs
	ix.mu.Unlock()
	if a == nil {
		return 0, 0
	}
	a.cache.mu.Lock()
	defer a.cache.mu.Unlock()
	return a.cache.hits.Load(), a.cache.bytes
}

// diskStream is a snapshot of an index directory whose lists a search
// reads with positioned reads (store.ListReader) into the index's slabs,
// never through the memory map, and checks against their CRCs.
type diskStream struct {
	diskSnap
	lr    *store.ListReader
	arena *slabArena
	depth int
	stats *readStats
}

// readStats counts an index's reads from disk (Index.ReadStats).
type readStats struct {
	reads, bytes atomic.Int64
}

// ReadStats returns how many reads the searches of the index made from
// disk with a memory budget, and how many bytes they read (a list is one
// read, or a chunk of it, of one or two spans of the file), since the
// index was opened.
func (ix *Index) ReadStats() (reads, bytes int64) {
	return ix.reads.reads.Load(), ix.reads.bytes.Load()
}

// streamFromDisk makes snap, when it is an index directory's, read its
// lists from disk within the index's memory budget.
func (ix *Index) streamFromDisk(snap Snapshot) (Snapshot, error) {
	ds, ok := snap.(diskSnap)
	if !ok || ix.MemoryBudget <= 0 {
		return snap, nil
	}
	lr, err := ds.View.ListReader(!ix.BufferedReads)
	if err != nil {
		return nil, err
	}
	// Slabs hold 16 entries at least, and the budget two slabs.
	need := lr.BufferSize(16)
	if ix.MemoryBudget < 2*int64(need) {
		return nil, fmt.Errorf("%w: memory budget of %d bytes: reading codes of %d bytes takes at least %d", ErrInput, ix.MemoryBudget, ds.CodeSize(), 2*need)
	}
	depth := ix.IODepth
	if depth <= 0 {
		depth = defaultIODepth
	}
	a := ix.arena(need, depth)
	return &diskStream{diskSnap: ds, lr: lr, arena: a, depth: min(depth, a.max), stats: &ix.reads}, nil
}

// Prefetch does nothing: the stream reads what it scans.
func (d *diskStream) Prefetch([]int) {}

// ReadList reads list l whole into a buffer of its own (for scanners
// that do not stream) and checks it.
func (d *diskStream) ReadList(l int) ([]int64, []byte, error) {
	n, err := d.ListLen(l)
	if err != nil || n == 0 {
		return nil, nil, err
	}
	buf := make([]byte, d.lr.BufferSize(n))
	ids, codes, sum, err := d.lr.Read(l, 0, n, buf)
	if err != nil {
		return nil, nil, err
	}
	d.stats.reads.Add(1)
	d.stats.bytes.Add(sum.Bytes())
	if err := d.lr.Verify(l, []store.ChunkSum{sum}); err != nil {
		return nil, nil, err
	}
	return ids, codes, nil
}

// Stream reads the lists in file order, up to depth reads in flight, each
// into a slab (chunks of a list larger than one), and scans each chunk on
// one of threads workers as soon as it arrives; once every chunk of a
// list is scanned, the list's checksums are verified. A list found
// damaged fails the stream: a search never returns results from bytes
// that do not match what was committed.
func (d *diskStream) Stream(lists []int, threads int, fn func(w, i int, ids []int64, codes []byte) error) error {
	threads = vecmath.Threads(threads)
	per := d.lr.ChunkEntries(d.arena.size)
	type listState struct {
		l, n   int
		left   atomic.Int32
		sums   []store.ChunkSum
		offset int64
	}
	type chunk struct {
		i, c, first, n int
		buf            []byte
		ids            []int64
		codes          []byte
		cached         *cachedList
	}
	cache := &d.arena.cache
	st := make([]listState, len(lists))
	order := make([]int, 0, len(lists))
	var hits []*chunk
	defer func() {
		// Held lists the stream did not get to (it stopped early).
		for _, ch := range hits {
			if ch != nil {
				cache.release(ch.cached)
			}
		}
	}()
	for i, l := range lists {
		n, err := d.ListLen(l)
		if err != nil {
			return err
		}
		if n == 0 {
			continue
		}
		if cl := cache.get(cacheKey{d.version, l}); cl != nil {
			hits = append(hits, &chunk{i: i, n: n, ids: cl.ids, codes: cl.codes, cached: cl})
			continue
		}
		off, err := d.lr.Offset(l)
		if err != nil {
			return err
		}
		chunks := (n + per - 1) / per
		st[i].l, st[i].n, st[i].offset = l, n, off
		st[i].sums = make([]store.ChunkSum, chunks)
		st[i].left.Store(int32(chunks))
		order = append(order, i)
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(st[a].offset, st[b].offset) })

	var (
		stop     atomic.Bool
		errMu    sync.Mutex
		firstErr error
	)
	fail := func(err error) {
		errMu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		errMu.Unlock()
		stop.Store(true)
	}
	depth := max(1, min(d.depth, len(order)*2))
	reads := make(chan *chunk, depth)
	ready := make(chan *chunk, depth)
	var readers sync.WaitGroup
	readers.Add(1)
	go func() {
		defer readers.Done()
		defer close(reads)
		// Cached lists first: they are scanned while the reads are in
		// flight.
		for j, ch := range hits {
			if stop.Load() {
				return
			}
			hits[j] = nil // the scanner releases it
			ready <- ch
		}
		for _, i := range order {
			for c := range st[i].sums {
				if stop.Load() {
					return
				}
				first := c * per
				reads <- &chunk{i: i, c: c, first: first, n: min(per, st[i].n-first), buf: d.arena.get()}
			}
		}
	}()
	for range depth {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for ch := range reads {
				if stop.Load() {
					d.arena.put(ch.buf)
					continue
				}
				ids, codes, sum, err := d.lr.Read(st[ch.i].l, ch.first, ch.n, ch.buf)
				if err != nil {
					d.arena.put(ch.buf)
					fail(err)
					continue
				}
				st[ch.i].sums[ch.c] = sum
				d.stats.reads.Add(1)
				d.stats.bytes.Add(sum.Bytes())
				ch.ids, ch.codes = ids, codes
				ready <- ch
			}
		}()
	}
	go func() {
		readers.Wait()
		close(ready)
	}()
	var scanners sync.WaitGroup
	for w := range threads {
		scanners.Add(1)
		go func() {
			defer scanners.Done()
			for ch := range ready {
				if !stop.Load() {
					if err := fn(w, ch.i, ch.ids, ch.codes); err != nil {
						fail(err)
					}
				}
				if ch.cached != nil {
					cache.release(ch.cached)
					continue
				}
				s := &st[ch.i]
				if s.left.Add(-1) == 0 && !stop.Load() {
					if err := d.lr.Verify(s.l, s.sums); err != nil {
						fail(err)
					} else if len(s.sums) == 1 {
						// A list read whole and sound stays in its
						// slab for the next searches.
						d.arena.keep(cacheKey{d.version, s.l}, ch.buf, ch.ids, ch.codes)
						continue
					}
				}
				d.arena.put(ch.buf)
			}
		}()
	}
	scanners.Wait()
	return firstErr
}

// SearchMemory estimates the memory a search of nq queries for k results
// at nprobe takes besides the read buffers of MemoryBudget: the model it
// reads (centroids, codebooks, precomputed tables), the distance tables,
// probes and per-worker heaps of a block of queries, and the results. A
// caller that must keep a search within a limit gives the rest to the
// lists (shelf search --memory).
func (ix *Index) SearchMemory(nq, k, nprobe int) int64 {
	model := int64(len(ix.centroids)+len(ix.cnorms)+len(ix.precomp)) * 4
	block := int64(min(nq, queryBlock))
	probes := block * int64(min(nprobe, ix.p.NList))
	var tables int64
	if ix.quant != nil {
		model += ix.quant.floats() * 4
		mk := int64(ix.quant.tables() * 256)
		tables = block * mk * 4
		if ix.precomp == nil && ix.p.ByResidual && ix.p.Metric != InnerProduct {
			tables += min(probes, int64(ix.p.NList)) * mk * 4 // the probed lists' terms
		}
		tables += int64(ix.threads()) * mk * 4 // each worker's table
	}
	heaps := int64(ix.threads()) * block * int64(k) * 12
	results := int64(nq) * int64(k) * 12
	return model + tables + probes*16 + heaps + results
}

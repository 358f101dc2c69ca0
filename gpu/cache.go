package gpu

import (
	"slices"

	"github.com/shelfdb/shelf/slots"
)

// listCache is the bookkeeping of the device-side list cache: which lists
// are resident in the cache arena (a device buffer of capEntries codes
// and ids), where, and which were used least recently. It holds no device
// memory itself, so it is tested on any machine.
//
// Entries are valid for one content version of the list source
// (ivf.VersionedSource): a block from a source of another version empties
// the cache first. Lists are admitted when a block probes them and there
// is room, after evicting the least recently used lists this block does
// not probe; an admitted list is uploaded by the block's pipeline and
// copied into the arena on the device, and becomes a hit for later blocks
// once the block succeeds (commit). abort forgets the block's admissions.
type listCache struct {
	capEntries int64
	m          int
	version    uint64
	alloc      *slots.Allocator
	lists      map[int]*cacheEntry
	tick       uint64
	pending    []int // lists admitted by the current block
	broken     bool  // the allocator disagreed with the entries: reset at the next block
	stats      CacheStats
}

type cacheEntry struct {
	at, n int64  // arena entries [at, at+n)
	used  uint64 // tick of the last block that probed it
	ready bool   // uploaded by a block that completed
}

// CacheStats are the device cache's cumulative counters.
type CacheStats struct {
	Hits      int64 // probed lists scanned from the cache
	Misses    int64 // probed lists streamed from the host
	Admitted  int64 // lists copied into the cache
	Evicted   int64 // lists dropped to make room
	Resets    int64 // times the cache was emptied for a new content version
	Resident  int64 // lists in the cache now
	UsedBytes int64 // bytes of codes and ids in the cache now
}

// begin starts a block of codes of m bytes from a source of the given
// version, with an arena of capBytes: a new version or code size empties
// the cache.
func (c *listCache) begin(version uint64, m int, capBytes int64) {
	c.tick++
	c.pending = c.pending[:0]
	if version == c.version && m == c.m && c.alloc != nil && !c.broken {
		return
	}
	c.broken = false
	if c.alloc != nil {
		c.stats.Resets++
	}
	c.version, c.m = version, m
	c.capEntries = max(0, capBytes-256) / int64(m+8) // codes, then ids at a 256-byte boundary

	c.alloc = slots.New(0, uint64(c.capEntries))
	c.lists = map[int]*cacheEntry{}
}

// arenaLayout is where the arena keeps codes and ids: codes of entry e at
// byte e*m, its id at byte idsOff + 8*e.
func (c *listCache) idsOff() int64 { return align(c.capEntries * int64(c.m)) }

// hit reports whether list l of n entries is resident and up to date,
// marking it used by this block.
func (c *listCache) hit(l int, n int) (at int64, ok bool) {
	e := c.lists[l]
	if e == nil || !e.ready {
		return 0, false
	}
	if e.n != int64(n) { // cannot happen within a version; be safe
		c.drop(l, e)
		return 0, false
	}
	e.used = c.tick
	c.stats.Hits++
	return e.at, true
}

// admit finds room for list l of n entries, evicting lists this block
// does not use, least recently used first; ok is false when it cannot.
func (c *listCache) admit(l int, n int) (at int64, ok bool) {
	c.stats.Misses++
	if n <= 0 || int64(n) > c.capEntries || c.broken {
		return 0, false
	}
	if off, ok := c.alloc.Alloc(uint64(n)); ok {
		return c.admitAt(l, n, int64(off)), true
	}
	var victims []int
	for vl, e := range c.lists {
		if e.used < c.tick && e.ready {
			victims = append(victims, vl)
		}
	}
	slices.SortFunc(victims, func(a, b int) int {
		ua, ub := c.lists[a].used, c.lists[b].used
		switch {
		case ua < ub:
			return -1
		case ua > ub:
			return 1
		}
		return a - b
	})
	for _, vl := range victims {
		c.drop(vl, c.lists[vl])
		c.stats.Evicted++
		if c.broken {
			return 0, false
		}
		if off, ok := c.alloc.Alloc(uint64(n)); ok {
			return c.admitAt(l, n, int64(off)), true
		}
	}
	return 0, false
}

func (c *listCache) admitAt(l, n int, at int64) int64 {
	c.lists[l] = &cacheEntry{at: at, n: int64(n), used: c.tick}
	c.pending = append(c.pending, l)
	return at
}

func (c *listCache) drop(l int, e *cacheEntry) {
	if err := c.alloc.Free(uint64(e.at), uint64(e.n)); err != nil {
		c.broken = true // bookkeeping error: stop admitting, start afresh next block
	}
	delete(c.lists, l)
}

// commit marks the block's admissions as uploaded.
func (c *listCache) commit() {
	for _, l := range c.pending {
		c.lists[l].ready = true
		c.stats.Admitted++
	}
	c.pending = c.pending[:0]
}

// abort forgets the block's admissions: their upload may not have run.
func (c *listCache) abort() {
	for _, l := range c.pending {
		if e := c.lists[l]; e != nil && !e.ready {
			c.drop(l, e)
		}
	}
	c.pending = c.pending[:0]
}

func (c *listCache) snapshot() CacheStats {
	st := c.stats
	st.Resident = int64(len(c.lists))
	for _, e := range c.lists {
		st.UsedBytes += e.n * int64(c.m+8)
	}
	return st
}

package ivf

import (
	"container/list"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/shelfdb/shelf/store"
)

// diskScanIndex is buildScanIndex's index moved into an index directory.
func diskScanIndex(t *testing.T, c scanCase) *Index {
	t.Helper()
	ix := buildScanIndex(t, c)
	if err := ix.ToDisk(filepath.Join(t.TempDir(), "idx")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ix.Close() })
	return ix
}

// readModes are the ways a search can read an index directory's lists:
// the memory map, and positioned reads within a memory budget, direct and
// buffered, with slabs that hold whole lists or 16 entries (every list
// read in chunks).
var readModes = []struct {
	name     string
	budget   int64
	buffered bool
	tiny     bool
}{
	{"map", 0, false, false},
	{"direct", 8 << 20, false, false},
	{"buffered", 8 << 20, true, false},
	{"direct-chunks", 8 << 20, false, true},
	{"buffered-chunks-depth1", 8 << 20, true, true},
}

func setReadMode(t *testing.T, ix *Index, i int) {
	m := readModes[i]
	ix.MemoryBudget, ix.BufferedReads, ix.IODepth = m.budget, m.buffered, 0
	ix.mu.Lock()
	ix.slabs = nil
	if m.tiny {
		// Slabs of exactly the smallest size: 16 entries each.
		v, err := ix.disk.s.View()
		if err != nil {
			t.Fatal(err)
		}
		lr, err := v.ListReader(false)
		if err != nil {
			t.Fatal(err)
		}
		need := lr.BufferSize(16)
		v.Release()
		ix.slabs = &slabArena{size: need, max: 3, free: make(chan []byte, 3), cache: listCache{byKey: map[cacheKey]*list.Element{}}}
		ix.slabsBudget = m.budget
		if i == len(readModes)-1 {
			ix.IODepth = 1
		}
		ix.slabsDepth = ix.IODepth
		if ix.slabsDepth == 0 {
			ix.slabsDepth = defaultIODepth
		}
	}
	ix.mu.Unlock()
}

// TestSearchFromDisk: every configuration of the scan gives the same
// results, bit for bit, whichever way its lists are read: Search,
// SearchWith a CPUScanner, RangeSearch, nprobe 1 to every list.
func TestSearchFromDisk(t *testing.T) {
	for _, c := range scanCases() {
		t.Run(c.name, func(t *testing.T) {
			ix := diskScanIndex(t, c)
			q := blobs(300, scanD, 24, 77)
			type result struct {
				d    []float32
				ids  []int64
				rr   *RangeResult
				sd   []float32
				sids []int64
			}
			var want []result
			for mi := range readModes {
				setReadMode(t, ix, mi)
				var got []result
				for _, s := range []struct{ k, nprobe int }{{10, 1}, {10, 5}, {400, 16}} {
					var r result
					var err error
					if r.d, r.ids, err = ix.Search(q, 300, s.k, s.nprobe); err != nil {
						t.Fatalf("%s: %v", readModes[mi].name, err)
					}
					if r.rr, err = ix.RangeSearch(q[:20*scanD], 20, r.d[5], s.nprobe); err != nil {
						t.Fatalf("%s: %v", readModes[mi].name, err)
					}
					if !ix.p.Flat {
						if r.sd, r.sids, err = ix.SearchWith(q, 300, s.k, s.nprobe, &CPUScanner{Threads: 3}); err != nil {
							t.Fatalf("%s: %v", readModes[mi].name, err)
						}
					}
					got = append(got, r)
				}
				if mi == 0 {
					want = got
					continue
				}
				for i := range got {
					g, w := got[i], want[i]
					if !sameBits(g.d, w.d) || !equalIDs(g.ids, w.ids) || !sameBits(g.sd, w.sd) || !equalIDs(g.sids, w.sids) ||
						!sameBits(g.rr.Dist, w.rr.Dist) || !equalIDs(g.rr.IDs, w.rr.IDs) || fmt.Sprint(g.rr.Lims) != fmt.Sprint(w.rr.Lims) {
						t.Fatalf("%s: search %d differs from the map's", readModes[mi].name, i)
					}
				}
			}
		})
	}
}

func equalIDs(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestSearchFromDiskConcurrent: searches at once share an index's few
// slabs (three, so most wait for one) without deadlock or mixed results.
func TestSearchFromDiskConcurrent(t *testing.T) {
	ix := diskScanIndex(t, scanCases()[0])
	q := blobs(200, scanD, 24, 78)
	want, wantIDs, err := ix.Search(q, 200, 10, 4)
	if err != nil {
		t.Fatal(err)
	}
	for _, arena := range []string{"tiny slabs", "few slabs, half of them cache"} {
		setReadMode(t, ix, 3)
		if arena != "tiny slabs" {
			// Whole lists in six slabs, three of which the cache may
			// keep: reads take slabs back from the cache while other
			// searches scan cached lists.
			ix.mu.Lock()
			size := ix.slabs.size * 40
			ix.slabs = &slabArena{size: size, max: 6, free: make(chan []byte, 6), cache: listCache{max: 3, byKey: map[cacheKey]*list.Element{}}}
			ix.IODepth, ix.slabsDepth = 2, 2
			ix.mu.Unlock()
		}
		searchConcurrently(t, ix, q, want, wantIDs)
		if h, _ := ix.CacheStats(); arena != "tiny slabs" && h == 0 {
			t.Fatalf("%s: no cache hits", arena)
		}
	}
}

func searchConcurrently(t *testing.T, ix *Index, q, want []float32, wantIDs []int64) {
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for rep := 0; rep < 3; rep++ {
				d, ids, err := ix.Search(q, 200, 10, 4)
				if err == nil && (!sameBits(d, want) || !equalIDs(ids, wantIDs)) {
					err = errors.New("results differ from the map's")
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestSearchFromDiskDamage: a search that reads lists from disk checks
// them: a flipped byte in a probed list fails the search with ErrCorrupt
// naming the list and the file (the memory map's search does not check,
// and answers from the damaged bytes), and a budget too small for one
// read is refused.
func TestSearchFromDiskDamage(t *testing.T) {
	ix := diskScanIndex(t, scanCases()[0])
	q := blobs(50, scanD, 24, 79)
	v, err := ix.disk.s.View()
	if err != nil {
		t.Fatal(err)
	}
	lr, err := v.ListReader(false)
	if err != nil {
		t.Fatal(err)
	}
	const list = 3
	off, err := lr.Offset(list)
	v.Release()
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(ix.Dir(), "*", "lists.*.data"))
	if len(files) != 1 {
		t.Fatalf("data files %v", files)
	}
	f, err := os.OpenFile(files[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	f.ReadAt(b[:], off+5)
	b[0] ^= 1
	if _, err := f.WriteAt(b[:], off+5); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, _, err := ix.Search(q, 50, 10, 16); err != nil {
		t.Fatalf("the map's search: %v", err)
	}
	for mi := 1; mi < len(readModes); mi++ {
		setReadMode(t, ix, mi)
		_, _, err := ix.Search(q, 50, 10, 16)
		var le *store.ListError
		if !errors.As(err, &le) || le.List != list || le.File != files[0] {
			t.Fatalf("%s: search of a damaged list: %v", readModes[mi].name, err)
		}
	}
	ix.MemoryBudget = 1000
	if _, _, err := ix.Search(q, 50, 10, 16); !errors.Is(err, ErrInput) {
		t.Fatalf("budget of 1000 bytes: %v", err)
	}
}

// TestListCache: lists read whole are kept within the budget and found
// by the next searches (no read), with the same results; a commit gives
// the lists a new version, so a search after it never sees a list from
// before it.
func TestListCache(t *testing.T) {
	ix := diskScanIndex(t, scanCases()[0])
	q := blobs(100, scanD, 24, 80)
	setReadMode(t, ix, 1)
	for round := 0; round < 3; round++ {
		ix.MemoryBudget = 0
		want, wantIDs, err := ix.Search(q, 100, 10, 4)
		if err != nil {
			t.Fatal(err)
		}
		ix.MemoryBudget = 8 << 20
		for rep := 0; rep < 2; rep++ {
			h0, _ := ix.CacheStats()
			r0, _ := ix.ReadStats()
			d, ids, err := ix.Search(q, 100, 10, 4)
			if err != nil {
				t.Fatal(err)
			}
			h1, held := ix.CacheStats()
			r1, _ := ix.ReadStats()
			if !sameBits(d, want) || !equalIDs(ids, wantIDs) {
				t.Fatalf("round %d, search %d: results differ from the map's", round, rep)
			}
			switch {
			case rep == 0 && (h1 != h0 || r1 == r0):
				t.Fatalf("round %d: first search after a commit: %d cache hits, %d reads", round, h1-h0, r1-r0)
			case rep == 1 && (h1 == h0 || r1 != r0 || held == 0):
				t.Fatalf("round %d: second search: %d cache hits, %d reads, %d bytes held", round, h1-h0, r1-r0, held)
			}
		}
		// A commit: every list gets more entries.
		if _, err := ix.Add(blobs(500, scanD, 24, uint64(90+round)), 500); err != nil {
			t.Fatal(err)
		}
	}
}

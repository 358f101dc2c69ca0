//go:build cuda

package gpu_test

import (
	"fmt"
	"math"
	"testing"

	"github.com/shelfdb/shelf/gpu"
	"github.com/shelfdb/shelf/internal/synth"
	"github.com/shelfdb/shelf/ivf"
)

// compare checks a GPU result against the CPU's: distances agree to 1e-4
// relative and ids are equal. The CPU sums table entries in a tree order
// and the GPU left to right, so two codes whose scores differ only in the
// last bits may swap: a differing id is accepted only where the two
// distances are within that tolerance. It returns the number of swaps.
func compare(t *testing.T, what string, wd []float32, wi []int64, gd []float32, gi []int64) int {
	t.Helper()
	if len(gd) != len(wd) || len(gi) != len(wi) {
		t.Fatalf("%s: %d/%d results, want %d", what, len(gd), len(gi), len(wd))
	}
	swaps := 0
	for j := range wi {
		if !close32(wd[j], gd[j]) {
			t.Fatalf("%s result %d: CPU (%v, %d), GPU (%v, %d)", what, j, wd[j], wi[j], gd[j], gi[j])
		}
		if wi[j] != gi[j] {
			swaps++
		}
	}
	return swaps
}

// TestGPUMatchesCPU: 1M codes, 1,000 queries; the GPU's results equal the
// CPU scanner's, with the default pipeline (precomputed table kept on the
// device), with chunks small enough to cycle both pipeline slots many
// times and per-list tables sent with the block, and over two logical
// shards of the one device.
func TestGPUMatchesCPU(t *testing.T) {
	s, err := gpu.NewScanner(gpu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	small, err := gpu.NewScanner(gpu.Options{ChunkBytes: 1 << 20, ItemCodes: 1000, ResidentTableBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer small.Close()
	sharded, err := gpu.NewShardedScanner([]int{0}, 2, gpu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sharded.Close()

	for _, c := range []struct{ m, k, nprobe int }{{16, 10, 16}, {32, 100, 8}, {8, 1024, 4}} {
		req, src := synthetic(1_000_000, 1024, c.m, 1000, c.nprobe, c.k, uint64(c.m))
		wd, wi, err := (&ivf.CPUScanner{}).Scan(req, src)
		if err != nil {
			t.Fatal(err)
		}
		for name, sc := range map[string]ivf.Scanner{"default": s, "1 MiB chunks": small, "2 shards": sharded} {
			gd, gi, err := sc.Scan(req, src)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			what := fmt.Sprintf("%s %+v", name, c)
			swaps := compare(t, what, wd, wi, gd, gi)
			t.Logf("%s: %d results, %d near-tie id swaps", what, len(wi), swaps)
		}
	}
	st, sm := s.Stats(), small.Stats()
	t.Logf("default scanner: %+v", st)
	t.Logf("1 MiB chunks: %+v", sm)
	// Three requests, three tables of 1024 lists: each uploaded once by
	// the default scanner; the other sends the probed rows every block.
	if want := int64(4 * 1024 * 256 * (16 + 32 + 8)); st.TableBytes != want {
		t.Fatalf("default scanner uploaded %d table bytes, want the 3 tables once: %d", st.TableBytes, want)
	}
	if sm.TableBytes == 0 {
		t.Fatal("per-block tables: no table bytes uploaded")
	}
}

// TestGPUCache: blocks of 50 queries over 1M codes with a device cache for
// about a quarter of them give the CPU's results while lists are
// admitted, hit and evicted, and a new content version empties the cache.
func TestGPUCache(t *testing.T) {
	const n, nl, m, k = 1_000_000, 1024, 16, 10
	s, err := gpu.NewScanner(gpu.Options{CacheBytes: n * (m + 8) / 4, ChunkBytes: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	lsrc := syntheticLists(n, nl, m, 3)
	for block := range 12 {
		version := uint64(1)
		if block >= 10 {
			version = 2
		}
		req := syntheticRequest(nl, m, 50, 16, k, uint64(block%5)) // blocks repeat: hits
		wd, wi, err := (&ivf.CPUScanner{}).Scan(req, lsrc)
		if err != nil {
			t.Fatal(err)
		}
		gd, gi, err := s.Scan(req, versioned{lsrc, version})
		if err != nil {
			t.Fatal(err)
		}
		compare(t, fmt.Sprintf("block %d", block), wd, wi, gd, gi)
	}
	st := s.Stats()
	t.Logf("%+v", st)
	if st.Cache.Hits == 0 || st.Cache.Evicted == 0 || st.Cache.Resets != 1 {
		t.Fatalf("no hits, evictions or reset: %+v", st.Cache)
	}
}

// TestGPUSearchWith: an index on disk searched through the GPU scanner
// gives Search's results (L2 with and without precomputed tables, and
// inner product).
func TestGPUSearchWith(t *testing.T) {
	s, err := gpu.NewScanner(gpu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	perBlock, err := gpu.NewScanner(gpu.Options{ResidentTableBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer perBlock.Close()
	const n, d, nq = 200_000, 64, 500
	x := synth.Clustered(n, d, 100, 1)
	q := synth.Clustered(nq, d, 100, 2)
	for _, c := range []struct {
		metric     ivf.Metric
		precompute bool
	}{{ivf.L2, true}, {ivf.L2, false}, {ivf.InnerProduct, true}} {
		metric := c.metric
		ix, err := ivf.NewFromFactory("IVF256,PQ16", d, metric)
		if err != nil {
			t.Fatal(err)
		}
		if !c.precompute {
			ix.PrecomputedTableMax = 1 // per-list terms computed per block
		}
		if err := ix.Train(x.Data, n, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := ix.Add(x.Data, n); err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		if err := ix.ToDisk(dir); err != nil {
			t.Fatal(err)
		}
		dix, err := ivf.Open(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		before := s.Stats().TableBytes
		for _, nprobe := range []int{1, 16} {
			wd, wi, err := dix.Search(q.Data, nq, 10, nprobe)
			if err != nil {
				t.Fatal(err)
			}
			for name, sc := range map[string]*gpu.Scanner{"resident tables": s, "per-block tables": perBlock} {
				gd, gi, err := dix.SearchWith(q.Data, nq, 10, nprobe, sc)
				if err != nil {
					t.Fatal(err)
				}
				swaps := compare(t, fmt.Sprintf("%s %+v nprobe %d", name, c, nprobe), wd, wi, gd, gi)
				t.Logf("%s %+v nprobe %d: %d near-tie swaps", name, c, nprobe, swaps)
			}
		}
		// The precomputed table goes up once for both searches; without
		// one, the probed lists' terms go with every block; inner product
		// has no per-list term.
		got := s.Stats().TableBytes - before
		want := dix.PrecomputedTableBytes()
		if (c.metric == ivf.L2 && !c.precompute && got == 0) || ((c.metric != ivf.L2 || c.precompute) && got != want) {
			t.Fatalf("%+v: %d table bytes uploaded (precomputed table: %d)", c, got, want)
		}
		dix.Close()
	}
}

// BenchmarkGPUScan is the GPU column of the CPU vs GPU table: codes/s,
// bytes/s and their share of the device's peak memory bandwidth, with
// the lists streamed from host memory every batch (stream) and kept in
// the device cache (cached, 1 GiB: the whole 10M-code index).
func BenchmarkGPUScan(b *testing.B) {
	peak, err := gpu.PeakBandwidth(0)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("device 0 peak memory bandwidth %.0f GB/s", peak/1e9)
	for _, mode := range []string{"stream", "cached"} {
		b.Run(mode, func(b *testing.B) {
			opts := gpu.Options{}
			if mode == "cached" {
				opts.CacheBytes = 1 << 30
			}
			s, err := gpu.NewScanner(opts)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			benchScan(b, s, peak, mode == "cached")
			b.Logf("%+v", s.Stats())
		})
	}
}

func close32(a, b float32) bool {
	if a == b {
		return true
	}
	return math.Abs(float64(a-b)) <= 1e-4*math.Max(math.Abs(float64(a)), math.Abs(float64(b)))
}

package ivf

import (
	"errors"
	"runtime"
	"testing"
)

// TestSearchSizeLimits checks that k, nq and nprobe are bounded before
// the results are allocated: absurd values and products that overflow are
// ErrInput or ErrDim, never a panic or an allocation of their size; a k
// above the vectors held is padded, and costs the results, not k-sized
// heaps per worker.
func TestSearchSizeLimits(t *testing.T) {
	const n, d = 300, 8
	x := blobs(n, d, 4, 1)
	ix, err := NewFromFactory("IVF4,PQ2", d, L2)
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.Train(x, n, &TrainOptions{Seed: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := ix.Add(x, n); err != nil {
		t.Fatal(err)
	}
	q := x[:2*d]
	// nq*d wraps to len(q) for nq = 2^61 + 2 and d = 8.
	wrap := 1<<61 + 2
	cases := []struct {
		name          string
		nq, k, nprobe int
		want          error
	}{
		{"k 0", 2, 0, 1, ErrInput},
		{"k -1", 2, -1, 1, ErrInput},
		{"nprobe 0", 2, 1, 0, ErrInput},
		{"k above MaxResults", 1, MaxResults + 1, 1, ErrInput},
		{"nq x k above MaxResults", 2, MaxResults/2 + 1, 1, ErrInput},
		{"nq x k overflows", 2, 1 << 62, 1, ErrInput},
		{"k max int", 2, int(^uint(0) >> 1), 1, ErrInput},
		{"nq negative", -1, 1, 1, ErrDim},
		{"nq x d wraps", wrap, 1, 1, ErrDim},
		{"nq above the floats", 3, 1, 1, ErrDim},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, _, err := ix.Search(q, c.nq, c.k, c.nprobe); !errors.Is(err, c.want) {
				t.Errorf("Search: err = %v, want %v", err, c.want)
			}
			if _, _, err := ix.SearchWith(q, c.nq, c.k, c.nprobe, &CPUScanner{}); !errors.Is(err, c.want) {
				t.Errorf("SearchWith: err = %v, want %v", err, c.want)
			}
			if c.k == 1 { // the cases of nq and nprobe
				if _, err := ix.RangeSearch(q, c.nq, 1, c.nprobe); !errors.Is(err, c.want) {
					t.Errorf("RangeSearch: err = %v, want %v", err, c.want)
				}
			}
		})
	}

	t.Run("add and reconstruct", func(t *testing.T) {
		for _, n := range []int{-1, 3, 1 << 40, wrap} {
			if _, err := ix.Add(q, n); !errors.Is(err, ErrDim) {
				t.Errorf("Add of %d vectors in %d floats: err = %v, want ErrDim", n, len(q), err)
			}
			if _, err := ix.SAEncode(q, n); !errors.Is(err, ErrDim) {
				t.Errorf("SAEncode of %d vectors in %d floats: err = %v, want ErrDim", n, len(q), err)
			}
		}
		for _, c := range [][2]int64{{0, -1}, {0, n + 1}, {0, 1 << 40}, {-1, 2}, {1<<63 - 2, 4}} {
			if _, err := ix.ReconstructN(c[0], int(c[1])); !errors.Is(err, ErrInput) {
				t.Errorf("ReconstructN(%d, %d): err = %v, want ErrInput", c[0], c[1], err)
			}
		}
		if v, err := ix.ReconstructN(n-2, 2); err != nil || len(v) != 2*d {
			t.Errorf("ReconstructN of the last two: %d floats, %v", len(v), err)
		}
	})

	t.Run("scan request", func(t *testing.T) {
		for _, r := range []*ScanRequest{
			{NQ: 1 << 56, K: 1, M: 1, Ksub: 256, ProbeStart: []int{0}}, // NQ*M*Ksub wraps to 0
			{NQ: 1 << 40, K: 1 << 40, M: 1, Ksub: 256, ProbeStart: []int{0}},
			{NQ: 1, K: MaxResults + 1, M: 1, Ksub: 256, QTables: make([]float32, 256), ProbeStart: []int{0}},
		} {
			if _, _, err := (&CPUScanner{}).Scan(r, nil); !errors.Is(err, ErrInput) {
				t.Errorf("Scan of nq=%d k=%d: err = %v, want ErrInput", r.NQ, r.K, err)
			}
		}
	})

	t.Run("k above ntotal", func(t *testing.T) {
		const k = 1 << 22
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		dist, ids, err := ix.Search(q[:d], 1, k, 4)
		runtime.ReadMemStats(&after)
		if err != nil {
			t.Fatal(err)
		}
		if ids[n-1] < 0 || ids[n] != -1 || ids[k-1] != -1 || dist[n-1] > dist[n] {
			t.Fatalf("ids[n-1] = %d, ids[n] = %d, ids[k-1] = %d", ids[n-1], ids[n], ids[k-1])
		}
		// The results are 12 bytes a slot; heaps of k slots per worker
		// would double that at least.
		if got, results := after.TotalAlloc-before.TotalAlloc, uint64(12*k); got > results+results/2 {
			t.Fatalf("k = %d over %d vectors allocated %d MiB for %d MiB of results", k, n, got>>20, results>>20)
		}
	})
}

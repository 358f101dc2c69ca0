package ivf

import (
	"errors"
	"math"
	"testing"
)

// TestSearchWithCPUScanner checks that routing the list scan through the
// Scanner interface changes nothing: ids and distances are bit-identical
// to Search for every table configuration a scanner supports, including
// blocks larger than queryBlock, k larger than some lists and padding.
func TestSearchWithCPUScanner(t *testing.T) {
	const n, d = 4000, 32
	x := blobs(n, d, 20, 7)
	cases := []struct {
		name     string
		factory  string
		metric   Metric
		residual bool
	}{
		{"L2 precomputed", "IVF32,PQ8", L2, true},
		{"L2 no residual", "IVF32,PQ8", L2, false},
		{"inner product residual", "IVF32,PQ16", InnerProduct, true},
		{"cosine", "IVF16,PQ8", Cosine, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ix, err := NewFromFactory(c.factory, d, c.metric)
			if err != nil {
				t.Fatal(err)
			}
			ix.p.ByResidual = c.residual
			if err := ix.Train(x, n, &TrainOptions{Seed: 3}); err != nil {
				t.Fatal(err)
			}
			if _, err := ix.Add(x, n); err != nil {
				t.Fatal(err)
			}
			for _, tc := range []struct{ nq, k, nprobe int }{{1, 1, 1}, {37, 10, 4}, {queryBlock + 5, 20, 3}, {5, 1500, 2}} {
				q := blobs(tc.nq, d, 20, uint64(11+tc.nq))
				wd, wi, err := ix.Search(q, tc.nq, tc.k, tc.nprobe)
				if err != nil {
					t.Fatal(err)
				}
				gd, gi, err := ix.SearchWith(q, tc.nq, tc.k, tc.nprobe, &CPUScanner{Threads: 2})
				if err != nil {
					t.Fatal(err)
				}
				padded := 0
				for j := range wi {
					if wi[j] != gi[j] || math.Float32bits(wd[j]) != math.Float32bits(gd[j]) {
						t.Fatalf("nq=%d k=%d nprobe=%d result %d: Search (%v, %d), SearchWith (%v, %d)",
							tc.nq, tc.k, tc.nprobe, j, wd[j], wi[j], gd[j], gi[j])
					}
					if wi[j] < 0 {
						padded++
					}
				}
				if tc.k == 1500 && padded == 0 {
					t.Fatalf("k=%d over %d probes padded nothing: the padding path went untested", tc.k, tc.nprobe)
				}
			}
		})
	}
}

func TestSearchWithUnsupported(t *testing.T) {
	const n, d = 1000, 16
	x := blobs(n, d, 10, 1)
	ix, err := NewFromFactory("IVF8,Flat", d, L2)
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.Train(x, n, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ix.SearchWith(x[:d], 1, 1, 1, &CPUScanner{}); !errors.Is(err, ErrScannerUnsupported) {
		t.Fatalf("IVF-Flat: err = %v, want ErrScannerUnsupported", err)
	}
}

func TestScanRequestValidate(t *testing.T) {
	ok := ScanRequest{NQ: 1, K: 1, M: 1, Ksub: 256, QTables: make([]float32, 256),
		Lists: []int{3}, ProbeStart: []int{0, 1}, ProbeQuery: []int32{0}, ProbeCoarse: []float32{0}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := ok
	bad.ProbeQuery = []int32{1}
	if err := bad.Validate(); !errors.Is(err, ErrInput) {
		t.Fatalf("query out of range: err = %v", err)
	}
	bad = ok
	bad.ProbeStart = []int{0}
	if err := bad.Validate(); !errors.Is(err, ErrInput) {
		t.Fatalf("short offsets: err = %v", err)
	}
	tab := make([]float32, 4*256)
	ok.ListTables = func(l int) []float32 { return tab[l*256 : (l+1)*256] }
	ok.Precomputed, ok.PrecomputedID = tab, 1
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(r *ScanRequest){
		"list beyond the precomputed table": func(r *ScanRequest) { r.Lists = []int{4} },
		"negative list":                     func(r *ScanRequest) { r.Lists = []int{-1} },
		"ragged precomputed table":          func(r *ScanRequest) { r.Precomputed = tab[:1000] },
		"precomputed without list tables":   func(r *ScanRequest) { r.ListTables = nil },
	} {
		bad = ok
		mod(&bad)
		if err := bad.Validate(); !errors.Is(err, ErrInput) {
			t.Fatalf("%s: err = %v", name, err)
		}
	}
}

// precompChecker is a CPU scanner that checks the precomputed-table
// fields of every request: the table behind ListTables, under one
// non-zero ID for an index's lifetime.
type precompChecker struct {
	CPUScanner
	t    *testing.T
	ids  map[uint64]bool
	seen int
}

func (c *precompChecker) Scan(req *ScanRequest, src ListSource) ([]float32, []int64, error) {
	if req.Precomputed != nil {
		c.seen++
		c.ids[req.PrecomputedID] = true
		mk := req.M * req.Ksub
		for _, l := range req.Lists {
			if &req.ListTables(l)[0] != &req.Precomputed[l*mk] {
				c.t.Fatalf("list %d: ListTables is not the precomputed table's row", l)
			}
		}
	}
	return c.CPUScanner.Scan(req, src)
}

// TestScanRequestPrecomputed: an L2 residual index with precomputed
// tables hands scanners its whole table under one ID that changes with
// the model; other indexes hand none. Sharded requests keep both fields.
func TestScanRequestPrecomputed(t *testing.T) {
	const n, d = 3000, 16
	x := blobs(n, d, 10, 4)
	for _, c := range []struct {
		metric Metric
		want   bool
	}{{L2, true}, {InnerProduct, false}} {
		ix, err := NewFromFactory("IVF16,PQ4", d, c.metric)
		if err != nil {
			t.Fatal(err)
		}
		if err := ix.Train(x, n, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := ix.Add(x, n); err != nil {
			t.Fatal(err)
		}
		chk := &precompChecker{CPUScanner: CPUScanner{Threads: 1}, t: t, ids: map[uint64]bool{}}
		sh, err := NewShardedScanner(chk, &CPUScanner{})
		if err != nil {
			t.Fatal(err)
		}
		for i, s := range []Scanner{chk, sh} {
			before := chk.seen
			for range 2 {
				if _, _, err := ix.SearchWith(x[:20*d], 20, 5, 4, s); err != nil {
					t.Fatal(err)
				}
			}
			if got := chk.seen > before; got != c.want {
				t.Fatalf("%v, scanner %d: precomputed table handed over %d times, want it: %v", c.metric, i, chk.seen-before, c.want)
			}
		}
		if c.want && (len(chk.ids) != 1 || chk.ids[0]) {
			t.Fatalf("%v: precomputed IDs %v, want one non-zero", c.metric, chk.ids)
		}
		if c.want {
			old := ix.precompID
			ix.finishModel()
			if ix.precompID == old || ix.precompID == 0 {
				t.Fatalf("a rebuilt table kept ID %d", old)
			}
		}
	}
}

// TestSnapshotVersions: snapshots of unchanged lists share a version, and
// every change (add, remove) gives later snapshots a new one, in memory
// and on disk.
func TestSnapshotVersions(t *testing.T) {
	const n, d = 2000, 16
	x := blobs(n, d, 10, 3)
	ix, err := NewFromFactory("IVF8,PQ4", d, L2)
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.Train(x, n, nil); err != nil {
		t.Fatal(err)
	}
	version := func() uint64 {
		t.Helper()
		s, err := ix.lists.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Release()
		vs, ok := s.(VersionedSource)
		if !ok || vs.Version() == 0 {
			t.Fatalf("snapshot %T has no version", s)
		}
		return vs.Version()
	}
	check := func(where string, remove []int64) {
		t.Helper()
		v0 := version()
		if v := version(); v != v0 {
			t.Fatalf("%s: unchanged lists, versions %d and %d", where, v0, v)
		}
		if _, err := ix.Add(x[:100*d], 100); err != nil {
			t.Fatal(err)
		}
		v1 := version()
		if v1 == v0 {
			t.Fatalf("%s: version %d unchanged by an add", where, v0)
		}
		if got, err := ix.RemoveIDs(remove); err != nil || got != int64(len(remove)) {
			t.Fatalf("%s: removed %d of %v: %v", where, got, remove, err)
		}
		if v := version(); v == v1 || v == v0 {
			t.Fatalf("%s: version %d after a remove, %d and %d before", where, v, v0, v1)
		}
	}
	check("memory", []int64{0, 1, 2})
	dir := t.TempDir()
	if err := ix.ToDisk(dir); err != nil {
		t.Fatal(err)
	}
	check("disk", []int64{10, 11})
}

// TestSearchWithoutPrecomputedTables: an L2 residual index whose tables
// exceed PrecomputedTableMax still searches through a scanner, with the
// per-list terms computed for the probed lists; the results are Search's
// up to float rounding (same distances to 1e-4, ids equal except between
// such near-equal distances).
func TestSearchWithoutPrecomputedTables(t *testing.T) {
	const n, d, nq, k = 5000, 32, 60, 10
	x := blobs(n, d, 20, 21)
	ix, err := NewFromFactory("IVF32,PQ8", d, L2)
	if err != nil {
		t.Fatal(err)
	}
	ix.PrecomputedTableMax = 1
	if err := ix.Train(x, n, &TrainOptions{Seed: 4}); err != nil {
		t.Fatal(err)
	}
	if ix.PrecomputedTableBytes() != 0 {
		t.Fatal("precomputed tables built despite the limit")
	}
	if _, err := ix.Add(x, n); err != nil {
		t.Fatal(err)
	}
	q := blobs(nq, d, 20, 22)
	for _, nprobe := range []int{1, 6} {
		wd, wi, err := ix.Search(q, nq, k, nprobe)
		if err != nil {
			t.Fatal(err)
		}
		gd, gi, err := ix.SearchWith(q, nq, k, nprobe, &CPUScanner{})
		if err != nil {
			t.Fatal(err)
		}
		swaps := 0
		for j := range wi {
			if math.Abs(float64(wd[j]-gd[j])) > 1e-4*math.Max(1, math.Abs(float64(wd[j]))) {
				t.Fatalf("nprobe %d result %d: Search (%v, %d), SearchWith (%v, %d)", nprobe, j, wd[j], wi[j], gd[j], gi[j])
			}
			if wi[j] != gi[j] {
				swaps++
			}
		}
		if swaps > len(wi)/50 {
			t.Fatalf("nprobe %d: %d of %d ids differ", nprobe, swaps, len(wi))
		}
	}
}

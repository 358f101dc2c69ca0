package ivf

import (
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"

	"github.com/shelfdb/shelf/internal/vecmath"
)

// blobs makes n vectors around nc Gaussian centres, deterministically.
func blobs(n, d, nc int, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 1))
	cent := make([]float32, nc*d)
	for i := range cent {
		cent[i] = float32(r.NormFloat64())
	}
	x := make([]float32, n*d)
	for i := 0; i < n; i++ {
		c := r.IntN(nc)
		for j := 0; j < d; j++ {
			x[i*d+j] = cent[c*d+j] + 0.4*float32(r.NormFloat64())
		}
	}
	return x
}

// bruteForce returns the k best ids of each query under metric.
func bruteForce(x []float32, n int, q []float32, nq, d, k int, metric Metric) [][]int64 {
	out := make([][]int64, nq)
	for qi := 0; qi < nq; qi++ {
		type pair struct {
			s  float32
			id int64
		}
		ps := make([]pair, n)
		qv := q[qi*d : (qi+1)*d]
		for i := 0; i < n; i++ {
			v := x[i*d : (i+1)*d]
			switch metric {
			case L2:
				ps[i] = pair{vecmath.L2Sq(qv, v), int64(i)}
			case InnerProduct:
				ps[i] = pair{-vecmath.Dot(qv, v), int64(i)}
			case Cosine:
				ps[i] = pair{-vecmath.Dot(qv, v) / float32(math.Sqrt(float64(vecmath.Dot(qv, qv)*vecmath.Dot(v, v)))), int64(i)}
			}
		}
		sort.Slice(ps, func(a, b int) bool {
			if ps[a].s != ps[b].s {
				return ps[a].s < ps[b].s
			}
			return ps[a].id < ps[b].id
		})
		for j := 0; j < k && j < n; j++ {
			out[qi] = append(out[qi], ps[j].id)
		}
	}
	return out
}

func recallAt(ids []int64, k int, gt [][]int64) float64 {
	hit := 0
	for qi, g := range gt {
		if slices.Contains(ids[qi*k:(qi+1)*k], g[0]) {
			hit++
		}
	}
	return float64(hit) / float64(len(gt))
}

// TestExactCodebook: 256 vectors whose sub-vectors take 256 distinct values
// per sub-space are reproduced exactly by a PQ with 256 centroids, so a
// search of every list equals brute force, distances included.
func TestExactCodebook(t *testing.T) {
	const n, d = 256, 4
	r := rand.New(rand.NewPCG(3, 3))
	x := make([]float32, n*d)
	for i := range x {
		x[i] = float32(r.IntN(1000)) / 10 // distinct with high probability; checked below
	}
	for _, metric := range []Metric{L2, InnerProduct} {
		ix, err := New(Params{D: d, NList: 4, M: 2, Nbits: 8, Metric: metric, ByResidual: false})
		if err != nil {
			t.Fatal(err)
		}
		if err := ix.Train(x, n, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := ix.Add(x, n); err != nil {
			t.Fatal(err)
		}
		rec, err := ix.ReconstructN(0, n)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(rec, x) {
			t.Fatalf("%v: reconstruction differs from the vectors, though each sub-space has exactly 256 of them", metric)
		}
		q := blobs(20, d, 3, 9)
		for i := range q {
			q[i] *= 30
		}
		dist, ids, err := ix.Search(q, 20, 10, 4)
		if err != nil {
			t.Fatal(err)
		}
		gt := bruteForce(x, n, q, 20, d, 10, metric)
		for qi := range gt {
			if !slices.Equal(ids[qi*10:(qi+1)*10], gt[qi]) {
				t.Fatalf("%v query %d: ids %v, brute force %v", metric, qi, ids[qi*10:(qi+1)*10], gt[qi])
			}
			for j, id := range gt[qi] {
				v := x[id*d : (id+1)*d]
				want := vecmath.L2Sq(q[qi*d:(qi+1)*d], v)
				if metric == InnerProduct {
					want = vecmath.Dot(q[qi*d:(qi+1)*d], v)
				}
				if got := dist[qi*10+j]; math.Abs(float64(got-want)) > 1e-3*math.Max(1, math.Abs(float64(want))) {
					t.Fatalf("%v query %d rank %d: distance %v, exact %v", metric, qi, j, got, want)
				}
			}
		}
	}
}

// TestDistancesAreADC: every returned distance equals the distance to the
// reconstructed vector (centroid + decoded residual), computed apart.
// trainedIndex is an in-memory index of factory trained on the n vectors
// x (dimension d) with seed, holding them all.
func trainedIndex(t *testing.T, factory string, metric Metric, x []float32, n, d int, seed int64) *Index {
	t.Helper()
	ix, err := NewFromFactory(factory, d, metric)
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.Train(x, n, &TrainOptions{Seed: seed}); err != nil {
		t.Fatal(err)
	}
	if _, err := ix.Add(x, n); err != nil {
		t.Fatal(err)
	}
	return ix
}

func TestDistancesAreADC(t *testing.T) {
	const n, d, nq, k = 5000, 32, 30, 10
	x := blobs(n, d, 20, 1)
	q := blobs(nq, d, 20, 2)
	for _, metric := range []Metric{L2, InnerProduct, Cosine} {
		ix := trainedIndex(t, "IVF32,PQ8", metric, x, n, d, 5)
		dist, ids, err := ix.Search(q, nq, k, 4)
		if err != nil {
			t.Fatal(err)
		}
		rec, err := ix.ReconstructBatch(ids)
		if err != nil {
			t.Fatal(err)
		}
		for i, id := range ids {
			if id < 0 {
				t.Fatalf("%v: result %d padded with -1 although lists are full", metric, i)
			}
			qv := q[(i/k)*d : (i/k+1)*d]
			if metric == Cosine {
				nq := float32(math.Sqrt(float64(vecmath.Dot(qv, qv))))
				u := make([]float32, d)
				for j := range u {
					u[j] = qv[j] / nq
				}
				qv = u
			}
			rv := rec[i*d : (i+1)*d]
			var want float32
			switch metric {
			case L2:
				want = vecmath.L2Sq(qv, rv)
			case InnerProduct:
				want = vecmath.Dot(qv, rv)
			case Cosine:
				want = 1 - vecmath.L2Sq(qv, rv)/2
			}
			if math.Abs(float64(dist[i]-want)) > 1e-3*math.Max(1, math.Abs(float64(want))) {
				t.Fatalf("%v: result %d (id %d): distance %v, recomputed %v", metric, i, id, dist[i], want)
			}
			if i%k > 0 {
				better := dist[i] >= dist[i-1]
				if metric != L2 {
					better = dist[i] <= dist[i-1]
				}
				if !better {
					t.Fatalf("%v: results of query %d not sorted: %v", metric, i/k, dist[(i/k)*k:(i/k+1)*k])
				}
			}
		}
	}
}

// TestRecallAndPaths checks recall against brute force and that the
// precomputed-table, residual-table, multi-threaded and flat paths agree.
func TestRecallAndPaths(t *testing.T) {
	const n, d, nq, k = 20000, 32, 100, 10
	x := blobs(n, d, 50, 11)
	q := blobs(nq, d, 50, 12)
	gt := bruteForce(x, n, q, nq, d, k, L2)
	ix, _ := NewFromFactory("IVF64,PQ16", d, L2)
	if err := ix.Train(x, n, &TrainOptions{Seed: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := ix.Add(x, n); err != nil {
		t.Fatal(err)
	}
	if ix.PrecomputedTableBytes() != 64*16*256*4 {
		t.Fatalf("precomputed tables of %d bytes", ix.PrecomputedTableBytes())
	}
	_, ids, _ := ix.Search(q, nq, k, 64)
	if r := recallAt(ids, k, gt); r < 0.9 {
		t.Fatalf("recall@10 with every list probed: %.3f", r)
	}
	_, ids1, _ := ix.Search(q, nq, k, 8)
	// Same search without precomputed tables and on one thread.
	pre := ix.precomp
	ix.precomp = nil
	ix.Threads = 1
	_, ids2, _ := ix.Search(q, nq, k, 8)
	ix.precomp, ix.Threads = pre, 0
	if !slices.Equal(ids1, ids2) {
		t.Fatal("precomputed and residual tables give different results")
	}
	flat, _ := NewFromFactory("IVF64,Flat", d, L2)
	if err := flat.Train(x, n, &TrainOptions{Seed: 1}); err != nil {
		t.Fatal(err)
	}
	flat.Add(x, n)
	_, fids, _ := flat.Search(q, nq, k, 64)
	if r := recallAt(fids, k, gt); r != 1 {
		t.Fatalf("IVF,Flat probing every list has recall %.3f, want 1", r)
	}
}

func TestPersistenceAndReadOnly(t *testing.T) {
	const n, d, nq, k = 8000, 16, 50, 5
	x := blobs(n, d, 30, 21)
	q := blobs(nq, d, 30, 22)
	ix, _ := NewFromFactory("IVF32,PQ4", d, L2)
	if err := ix.Train(x, n, &TrainOptions{Seed: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := ix.Add(x[:n/2*d], n/2); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "idx")
	if err := ix.ToDisk(dir); err != nil {
		t.Fatal(err)
	}
	// Adds after the conversion go to disk, with sequential ids continuing.
	first, err := ix.Add(x[n/2*d:], n/2)
	if err != nil {
		t.Fatal(err)
	}
	if first != n/2 {
		t.Fatalf("first id after conversion %d, want %d", first, n/2)
	}
	d1, i1, _ := ix.Search(q, nq, k, 8)
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	ro, err := OpenReadOnly(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	d2, i2, err := ro.Search(q, nq, k, 8)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(i1, i2) || !slices.Equal(d1, d2) {
		t.Fatal("read-only reopen gives different results")
	}
	// A writer in the same directory while the reader is open.
	w, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if got := w.NTotal(); got != n {
		t.Fatalf("reopened ntotal %d", got)
	}
	if _, err := w.RemoveRange(0, 100); err != nil {
		t.Fatal(err)
	}
	if ch, err := ro.Refresh(); err != nil || !ch {
		t.Fatalf("refresh: %v %v", ch, err)
	}
	if got := ro.NTotal(); got != n-100 {
		t.Fatalf("reader sees %d after removal, want %d", got, n-100)
	}
	// A corrupt model is an error naming the file.
	raw, _ := os.ReadFile(filepath.Join(dir, modelName))
	raw[40] ^= 1
	os.WriteFile(filepath.Join(dir, modelName), raw, 0o644)
	if _, err := OpenReadOnly(dir); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("corrupt model: %v", err)
	}
}

func TestTwoLayerCodesAndMerge(t *testing.T) {
	const n, d = 6000, 16
	x := blobs(n, d, 10, 31)
	base, _ := NewFromFactory("IVF300,PQ4", d, L2) // 300 lists: 2-byte list numbers
	if err := base.Train(x, n, &TrainOptions{Seed: 3}); err != nil {
		t.Fatal(err)
	}
	if base.TwoLayerCodeSize() != 2+4 {
		t.Fatalf("two-level code size %d", base.TwoLayerCodeSize())
	}
	codes, err := base.SAEncode(x, n)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := base.SADecode(codes)
	if err != nil {
		t.Fatal(err)
	}
	// The same vectors added through Add reconstruct to the same values.
	a, _ := New(base.Params())
	a.trained, a.centroids, a.cnorms, a.pq, a.quant, a.precomp = true, base.centroids, base.cnorms, base.pq, base.quant, base.precomp
	if _, err := a.Add(x, n); err != nil {
		t.Fatal(err)
	}
	rec, _ := a.ReconstructN(0, n)
	if !slices.Equal(rec, dec) {
		t.Fatal("reconstruct of added vectors differs from sa_decode of their codes")
	}
	// Codes added as codes, in three shards, merged: same lists as Add.
	shards := make([]*Index, 3)
	for s := range shards {
		sh, _ := New(base.Params())
		sh.trained, sh.centroids, sh.cnorms, sh.pq, sh.quant, sh.precomp = true, base.centroids, base.cnorms, base.pq, base.quant, base.precomp
		lo, hi := s*n/3, (s+1)*n/3
		ids := make([]int64, hi-lo)
		for i := range ids {
			ids[i] = int64(lo + i)
		}
		if err := sh.AddSACodes(codes[lo*6:hi*6], ids); err != nil {
			t.Fatal(err)
		}
		shards[s] = sh
	}
	m, _ := New(base.Params())
	m.trained, m.centroids, m.cnorms, m.pq, m.quant, m.precomp = true, base.centroids, base.cnorms, base.pq, base.quant, base.precomp
	dir := filepath.Join(t.TempDir(), "m")
	if err := m.ToDisk(dir); err != nil {
		t.Fatal(err)
	}
	for _, sh := range shards {
		if err := m.MergeFrom(sh, nil); err != nil {
			t.Fatal(err)
		}
	}
	sa, _ := a.lists.Snapshot()
	sm, _ := m.lists.Snapshot()
	for l := 0; l < 300; l++ {
		ia, ca, _ := sa.ReadList(l)
		im, cm, _ := sm.ReadList(l)
		if !slices.Equal(ia, im) || !slices.Equal(ca, cm) {
			t.Fatalf("list %d differs between add and merged code shards", l)
		}
	}
	sa.Release()
	sm.Release()
	other, _ := NewFromFactory("IVF300,PQ4", d, L2)
	other.Train(x, n, &TrainOptions{Seed: 4})
	if err := m.MergeFrom(other, nil); !errors.Is(err, ErrIncompatible) {
		t.Fatalf("merge of a differently trained index: %v", err)
	}
	m.Close()
}

func TestRangeSearchAndRemove(t *testing.T) {
	const n, d = 4000, 8
	x := blobs(n, d, 10, 41)
	ix, _ := NewFromFactory("IVF16,Flat", d, L2)
	ix.Train(x, n, nil)
	ix.Add(x, n)
	q := x[:3*d]
	res, err := ix.RangeSearch(q, 3, 0.5, 16)
	if err != nil {
		t.Fatal(err)
	}
	for qi := 0; qi < 3; qi++ {
		want := 0
		for i := 0; i < n; i++ {
			if vecmath.L2Sq(q[qi*d:(qi+1)*d], x[i*d:(i+1)*d]) < 0.5 {
				want++
			}
		}
		if got := res.Lims[qi+1] - res.Lims[qi]; got != want {
			t.Fatalf("query %d: %d results within radius, want %d", qi, got, want)
		}
	}
	if got, _ := ix.RemoveIDs([]int64{0, 1, 2, 999999}); got != 3 {
		t.Fatalf("removed %d, want 3", got)
	}
	_, ids, _ := ix.Search(q, 3, 5, 16)
	for _, id := range ids {
		if id >= 0 && id <= 2 {
			t.Fatalf("removed id %d still found", id)
		}
	}
	if _, err := ix.Reconstruct(1); !errors.Is(err, ErrInput) {
		t.Fatalf("reconstruct of a removed id: %v", err)
	}
}

func TestInputErrors(t *testing.T) {
	ix, _ := NewFromFactory("IVF4,PQ2", 4, L2)
	if _, err := ix.Add(make([]float32, 8), 2); !errors.Is(err, ErrNotTrained) {
		t.Fatalf("add untrained: %v", err)
	}
	x := blobs(300, 4, 3, 1)
	if err := ix.Train(x[:41], 10, nil); !errors.Is(err, ErrDim) {
		t.Fatalf("train with wrong length: %v", err)
	}
	bad := slices.Clone(x)
	bad[7] = float32(math.NaN())
	if err := ix.Train(bad, 300, nil); !errors.Is(err, ErrInput) {
		t.Fatalf("NaN in training: %v", err)
	}
	if err := ix.Train(x, 300, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ix.Search(x[:5], 1, 3, 2); !errors.Is(err, ErrDim) {
		t.Fatalf("query of wrong dimension: %v", err)
	}
	if _, _, err := ix.Search(x[:4], 1, 0, 2); !errors.Is(err, ErrInput) {
		t.Fatalf("k=0: %v", err)
	}
	inf := slices.Clone(x[:4])
	inf[0] = float32(math.Inf(1))
	if _, err := ix.Add(inf, 1); !errors.Is(err, ErrInput) {
		t.Fatalf("infinite vector: %v", err)
	}
	for _, f := range []string{"IVF,PQ4", "IVF4,PQ3", "IVF4,PQ2x4", "HNSW32", "IVF4,SQ8"} {
		if _, err := ParseFactory(f, 4, L2); !errors.Is(err, ErrParams) {
			t.Fatalf("factory %q: %v", f, err)
		}
	}
	if p, err := ParseFactory("IVF1024,PQ16x8", 128, L2); err != nil || p.NList != 1024 || p.M != 16 || p.Factory() != "IVF1024,PQ16" {
		t.Fatalf("factory: %+v %v", p, err)
	}
	// A finite query whose distances overflow float32 (NaN coarse
	// scores) still has its own nprobe probes: the other queries of its
	// block get exactly the results they get alone.
	ixp, _ := NewFromFactory("IVF4,PQ2", 4, L2)
	ixp.Train(x, 300, nil)
	ixp.Add(x, 300)
	huge := []float32{3e38, -3e38, 3e38, -3e38}
	block := append(slices.Clone(x[:8]), huge...)
	_, got, err := ixp.Search(block, 3, 5, 3)
	if err != nil {
		t.Fatalf("query of huge components: %v", err)
	}
	_, alone, _ := ixp.Search(x[:8], 2, 5, 3)
	if !slices.Equal(got[:10], alone) {
		t.Fatalf("a query with NaN coarse scores changed the others' results: %v, alone %v", got[:10], alone)
	}
	// Fewer results than k: padded.
	small, _ := NewFromFactory("IVF4,Flat", 4, L2)
	small.Train(x, 300, nil)
	small.Add(x[:8], 2)
	dist, ids, _ := small.Search(x[:4], 1, 5, 4)
	if ids[2] != -1 || !math.IsInf(float64(dist[4]), 1) {
		t.Fatalf("padding: %v %v", ids, dist)
	}
}

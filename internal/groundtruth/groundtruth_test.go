package groundtruth

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/shelfdb/shelf/internal/vecio"
)

type pair struct {
	dist float64
	id   int64
}

// naive is the reference: every distance in float64, a full sort.
func naive(base, queries vecio.Matrix, k int, metric Metric) [][]pair {
	out := make([][]pair, queries.N)
	for q := range queries.N {
		all := make([]pair, base.N)
		for i := range base.N {
			var s float64
			for j := range base.D {
				a, b := float64(queries.Row(q)[j]), float64(base.Row(i)[j])
				if metric == L2 {
					s += (a - b) * (a - b)
				} else {
					s -= a * b
				}
			}
			all[i] = pair{s, int64(i)}
		}
		slices.SortFunc(all, func(x, y pair) int {
			return cmp.Or(cmp.Compare(x.dist, y.dist), cmp.Compare(x.id, y.id))
		})
		res := all[:min(k, len(all))]
		if metric == InnerProduct {
			for i := range res {
				res[i].dist = -res[i].dist
			}
		}
		out[q] = res
	}
	return out
}

func randMatrix(n, d int, seed uint64, ints bool) vecio.Matrix {
	rng := rand.New(rand.NewPCG(seed, 9))
	m := vecio.Matrix{N: n, D: d, Data: make([]float32, n*d)}
	for i := range m.Data {
		if ints {
			m.Data[i] = float32(rng.IntN(7) - 3)
		} else {
			m.Data[i] = float32(rng.NormFloat64())
		}
	}
	return m
}

// TestExactOnIntegers uses small integer coordinates, for which float32
// arithmetic is exact and distances tie often: ids must match the reference
// exactly, ties resolved by the lower id.
func TestExactOnIntegers(t *testing.T) {
	base := randMatrix(baseBlock+900, 6, 1, true)
	queries := randMatrix(37, 6, 2, true)
	// Exact duplicates on both sides of a block boundary.
	copy(base.Row(baseBlock+1), base.Row(3))
	copy(base.Row(baseBlock-1), base.Row(3))
	copy(queries.Row(0), base.Row(3))
	const k = 25
	for _, metric := range []Metric{L2, InnerProduct} {
		want := naive(base, queries, k, metric)
		for _, threads := range []int{1, 2, 3, 7} {
			ids, dists, err := KNN(base, queries, k, metric, threads)
			if err != nil {
				t.Fatal(err)
			}
			for q := range queries.N {
				for j, p := range want[q] {
					if ids[q*k+j] != p.id || float64(dists[q*k+j]) != p.dist {
						t.Fatalf("%v threads=%d q=%d rank %d: (%d, %v), want (%d, %v)",
							metric, threads, q, j, ids[q*k+j], dists[q*k+j], p.id, p.dist)
					}
				}
			}
		}
	}
}

// TestMatchesNaive uses Gaussian data, where the norm expansion differs
// from the float64 reference in the last bits: distances must agree to a
// tolerance, and each returned id must be as good as the reference's at
// its rank.
func TestMatchesNaive(t *testing.T) {
	base := randMatrix(3000, 24, 3, false)
	queries := randMatrix(50, 24, 4, false)
	const k = 10
	for _, metric := range []Metric{L2, InnerProduct} {
		// Every distance, indexed by id, to score any returned id.
		all := naive(base, queries, base.N, metric)
		exact := make([][]float64, queries.N)
		for q, ps := range all {
			exact[q] = make([]float64, base.N)
			for _, p := range ps {
				exact[q][p.id] = p.dist
			}
		}
		ref, _, err := KNN(base, queries, k, metric, 1)
		if err != nil {
			t.Fatal(err)
		}
		for _, threads := range []int{1, 2, 5} {
			ids, dists, err := KNN(base, queries, k, metric, threads)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ids, ref) {
				t.Fatalf("%v: %d threads differ from 1", metric, threads)
			}
			for q := range queries.N {
				seen := map[int64]bool{}
				for j, p := range all[q][:k] {
					id := ids[q*k+j]
					if seen[id] {
						t.Fatalf("q=%d: id %d twice", q, id)
					}
					seen[id] = true
					got := exact[q][id]
					const tol = 1e-3
					if math.Abs(got-p.dist) > tol || math.Abs(float64(dists[q*k+j])-p.dist) > tol {
						t.Fatalf("%v q=%d rank %d: id %d at %v (reported %v), reference %d at %v",
							metric, q, j, id, got, dists[q*k+j], p.id, p.dist)
					}
				}
			}
		}
	}
}

func TestPadding(t *testing.T) {
	base := randMatrix(3, 4, 5, false)
	queries := randMatrix(2, 4, 6, false)
	for _, c := range []struct {
		metric Metric
		pad    float32
	}{{L2, float32(math.Inf(1))}, {InnerProduct, float32(math.Inf(-1))}} {
		ids, dists, err := KNN(base, queries, 5, c.metric, 2)
		if err != nil {
			t.Fatal(err)
		}
		for q := range 2 {
			got := ids[q*5 : q*5+5]
			if !slices.Equal(got[3:], []int64{-1, -1}) || dists[q*5+3] != c.pad || dists[q*5+4] != c.pad {
				t.Fatalf("%v: padding %v %v", c.metric, got, dists[q*5:q*5+5])
			}
			if s := slices.Sorted(slices.Values(got[:3])); !slices.Equal(s, []int64{0, 1, 2}) {
				t.Fatalf("%v: ids %v", c.metric, got)
			}
		}
	}
	// An empty base is all padding.
	ids, _, err := KNN(vecio.Matrix{N: 0, D: 4}, queries, 2, L2, 1)
	if err != nil || !slices.Equal(ids, []int64{-1, -1, -1, -1}) {
		t.Fatalf("empty base: %v %v", ids, err)
	}
}

func TestErrors(t *testing.T) {
	base := randMatrix(10, 4, 1, false)
	q := randMatrix(2, 4, 2, false)
	for name, args := range map[string]struct {
		b, q   vecio.Matrix
		k      int
		metric Metric
	}{
		"dim":    {base, randMatrix(2, 5, 1, false), 1, L2},
		"k0":     {base, q, 0, L2},
		"kneg":   {base, q, -3, L2},
		"metric": {base, q, 1, Metric(7)},
		"short":  {vecio.Matrix{N: 10, D: 4, Data: base.Data[:39]}, q, 1, L2},
		"d0":     {vecio.Matrix{N: 0, D: 0}, vecio.Matrix{N: 0, D: 0}, 1, L2},
	} {
		if _, _, err := KNN(args.b, args.q, args.k, args.metric, 1); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestRecall(t *testing.T) {
	gt := []int64{
		1, 2, 3, 4,
		5, 6, 7, 8,
		9, 10, 11, 12,
		-1, -1, -1, -1, // padding: left out
	}
	found := []int64{
		1, 3, 99, // nearest first, 2 of the top 3
		6, 5, 7, // nearest second, all of the top 3
		12, 11, 42, // nearest missing, 1 of the top 3
		0, 1, 2,
	}
	cases := []struct {
		name string
		got  float64
		want float64
	}{
		{"R@1", Recall(found, 3, gt, 4, 4, 1), 1.0 / 3},
		{"R@2", Recall(found, 3, gt, 4, 4, 2), 2.0 / 3},
		{"R@10 clamps to kFound", Recall(found, 3, gt, 4, 4, 10), 2.0 / 3},
		{"inter@1", IntersectionRecall(found, 3, gt, 4, 4, 1), 1.0 / 3},
		{"inter@3", IntersectionRecall(found, 3, gt, 4, 4, 3), (2.0/3 + 1 + 1.0/3) / 3},
		// Only three found, so at most 3 of the 4 true ones.
		{"inter@4", IntersectionRecall(found, 3, gt, 4, 4, 4), (2.0/4 + 3.0/4 + 2.0/4) / 3},
		{"dups count once", IntersectionRecall([]int64{1, 1}, 2, []int64{1, 2}, 2, 1, 2), 0.5},
		{"no queries", Recall(nil, 1, nil, 1, 0, 1), 0},
	}
	for _, c := range cases {
		if math.Abs(c.got-c.want) > 1e-12 {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	for name, f := range map[string]func(){
		"at > kGT":    func() { IntersectionRecall(found, 3, gt, 4, 4, 5) },
		"short found": func() { Recall(found[:5], 3, gt, 4, 4, 1) },
		"at 0":        func() { Recall(found, 3, gt, 4, 4, 0) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}

func BenchmarkKNN(b *testing.B) {
	base := randMatrix(100_000, 64, 1, false)
	q := randMatrix(200, 64, 2, false)
	for b.Loop() {
		KNN(base, q, 100, L2, 0)
	}
}

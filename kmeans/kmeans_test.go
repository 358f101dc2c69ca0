package kmeans

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/shelfdb/shelf/internal/vecmath"
)

// blobs returns k centres spread over [-50, 50]^d and perBlob points drawn
// around each with unit standard deviation.
func blobs(seed uint64, k, perBlob, d int) (x, centres []float32) {
	r := rand.New(rand.NewPCG(seed, 99))
	centres = make([]float32, k*d)
	for i := range centres {
		centres[i] = float32(r.Float64()*100 - 50)
	}
	x = make([]float32, 0, k*perBlob*d)
	for p := range perBlob {
		_ = p
		for c := range k {
			for j := range d {
				x = append(x, centres[c*d+j]+float32(r.NormFloat64()))
			}
		}
	}
	return x, centres
}

func objective(x []float32, n, d int, c []float32, k int) float64 {
	_, dist := Assign(x, n, d, c, k, 1)
	var s float64
	for _, v := range dist {
		s += float64(v)
	}
	return s
}

func checkRecovered(t *testing.T, centres, got []float32, k, d int) {
	t.Helper()
	idx, dist := Assign(centres, k, d, got, k, 1)
	seen := map[int32]bool{}
	for c := range k {
		// The mean of 200 unit Gaussians is within ~0.07*sqrt(d) of the centre.
		if dist[c] > 1 {
			t.Errorf("centre %d: nearest centroid %d at squared distance %v", c, idx[c], dist[c])
		}
		seen[idx[c]] = true
	}
	if len(seen) != k {
		t.Errorf("centres map to %d distinct centroids, want %d", len(seen), k)
	}
}

func TestRecoversBlobCentres(t *testing.T) {
	const k, per, d = 6, 200, 16
	x, centres := blobs(1, k, per, d)
	n := k * per
	// blobs interleaves the blobs, so the first k points start one centroid
	// in each blob, from a point about sqrt(d) away from its centre.
	c, err := Train(x, n, d, Config{K: k, Threads: 2, Init: x[:k*d]})
	if err != nil {
		t.Fatal(err)
	}
	checkRecovered(t, centres, c, k, d)
}

func TestRecoversBlobCentresRandomInit(t *testing.T) {
	const k, per, d = 3, 200, 16
	x, centres := blobs(4, k, per, d)
	n := k * per
	// Lloyd's algorithm from random points can settle with two centroids in
	// one blob; like FAISS's nredo, keep the best of a few seeds.
	var best []float32
	bestObj := math.Inf(1)
	for seed := range int64(8) {
		c, err := Train(x, n, d, Config{K: k, Seed: seed, Threads: 2})
		if err != nil {
			t.Fatal(err)
		}
		if o := objective(x, n, d, c, k); o < bestObj {
			best, bestObj = c, o
		}
	}
	checkRecovered(t, centres, best, k, d)
}

func TestObjectiveNonIncreasing(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	const n, d, k = 3000, 12, 32
	x := make([]float32, n*d)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	var objs []float64
	_, err := Train(x, n, d, Config{K: k, Iters: 15, Seed: 3, Progress: func(it, iters int, obj float64) {
		if it != len(objs)+1 || iters != 15 {
			t.Errorf("progress(%d, %d) after %d calls", it, iters, len(objs))
		}
		objs = append(objs, obj)
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 15 {
		t.Fatalf("%d progress calls", len(objs))
	}
	for i := 1; i < len(objs); i++ {
		if objs[i] > objs[i-1]*(1+1e-5) {
			t.Errorf("objective rose at iteration %d: %v -> %v", i+1, objs[i-1], objs[i])
		}
	}
	if objs[len(objs)-1] >= objs[0] {
		t.Errorf("objective did not improve: %v", objs)
	}
}

func TestDeterministic(t *testing.T) {
	x, _ := blobs(2, 10, 100, 8)
	n := 1000
	var ref []float32
	for _, th := range []int{1, 2, 3} {
		for range 2 {
			c, err := Train(x, n, 8, Config{K: 10, Seed: 42, Threads: th})
			if err != nil {
				t.Fatal(err)
			}
			if ref == nil {
				ref = c
			} else if !slices.Equal(c, ref) {
				t.Fatalf("threads=%d: centroids differ", th)
			}
		}
	}
	c, _ := Train(x, n, 8, Config{K: 10, Seed: 43})
	if slices.Equal(c, ref) {
		t.Error("a different seed gave identical centroids")
	}
}

func TestEmptyClusterRepairWithDuplicates(t *testing.T) {
	const d = 4
	distinct := [][]float32{{0, 0, 0, 0}, {10, 0, 0, 0}, {0, 10, 5, 0}, {3, 3, 3, 30}}
	var x []float32
	for range 30 {
		for _, p := range distinct {
			x = append(x, p...)
		}
	}
	n := len(x) / d
	k := len(distinct)
	for seed := range int64(10) {
		var warned bool
		c, err := Train(x, n, d, Config{K: k, Seed: seed, Warn: func(string) { warned = true }})
		if err != nil {
			t.Fatal(err)
		}
		if !warned {
			t.Error("no warning for 120 points and 4 centroids")
		}
		// Every distinct point must end up with its own centroid, exactly.
		pts := slices.Concat(distinct...)
		idx, dist := Assign(pts, k, d, c, k, 1)
		seen := map[int32]bool{}
		for i := range k {
			if dist[i] > 1e-6 {
				t.Errorf("seed %d: point %v at distance %v from centroid %d", seed, distinct[i], dist[i], idx[i])
			}
			seen[idx[i]] = true
		}
		if len(seen) != k {
			t.Errorf("seed %d: %d centroids used, want %d", seed, len(seen), k)
		}
	}
}

func TestSplitClusters(t *testing.T) {
	const d = 3
	c := []float32{1, 0, -2, 5, 5, 5, 9, 9, 9}
	counts := []int{10, 0, 3}
	if got := splitClusters(c, counts, 3, d); got != 1 {
		t.Fatalf("split %d clusters, want 1", got)
	}
	if counts[0]+counts[1] != 10 || counts[1] == 0 || counts[0] == 0 {
		t.Errorf("counts after split: %v", counts)
	}
	for j := range d {
		mid := (c[j] + c[d+j]) / 2
		want := []float32{1, 0, -2}[j]
		if math.Abs(float64(mid-want)) > 1e-6 {
			t.Errorf("dim %d: copies not symmetric about %v: %v %v", j, want, c[j], c[d+j])
		}
		if c[j] == c[d+j] {
			t.Errorf("dim %d: copies not separated", j)
		}
	}
	if !slices.Equal(c[2*d:], []float32{9, 9, 9}) {
		t.Error("an unrelated centroid moved")
	}
}

func TestSphericalAndSubsample(t *testing.T) {
	x, _ := blobs(3, 8, 100, 5)
	n := 800
	var warned bool
	c, err := Train(x, n, 5, Config{K: 8, Spherical: true, MaxPointsPerCentroid: 20, Seed: 1,
		Warn: func(string) { warned = true }})
	if err != nil {
		t.Fatal(err)
	}
	if warned {
		t.Error("warned although the sample was capped, not short")
	}
	norms := make([]float32, 8)
	vecmath.Norms2(c, 5, norms)
	for i, v := range norms {
		if math.Abs(float64(v)-1) > 1e-5 {
			t.Errorf("centroid %d has squared norm %v", i, v)
		}
	}
}

func TestErrors(t *testing.T) {
	good := make([]float32, 20)
	for i := range good {
		good[i] = float32(i)
	}
	nan := slices.Clone(good)
	nan[2*2+1] = float32(math.NaN())
	inf := slices.Clone(good)
	inf[7*2] = float32(math.Inf(-1))
	for _, tc := range []struct {
		name string
		x    []float32
		n, d int
		cfg  Config
		want string
	}{
		{"k0", good, 10, 2, Config{K: 0}, "K = 0"},
		{"kneg", good, 10, 2, Config{K: -3}, "K = -3"},
		{"d0", good, 10, 0, Config{K: 2}, "dimension 0"},
		{"len", good, 9, 2, Config{K: 2}, "len(x)"},
		{"fewpoints", good, 10, 2, Config{K: 11}, "10 training points"},
		{"nan", nan, 10, 2, Config{K: 2}, "row 2"},
		{"inf", inf, 10, 2, Config{K: 2}, "row 7"},
		{"iters", good, 10, 2, Config{K: 2, Iters: -1}, "Iters"},
		{"initlen", good, 10, 2, Config{K: 2, Init: make([]float32, 3)}, "len(Init)"},
		{"initnan", good, 10, 2, Config{K: 2, Init: nan[4:8]}, "initial centroid 0"},
	} {
		_, err := Train(tc.x, tc.n, tc.d, tc.cfg)
		if !errors.Is(err, ErrInvalidInput) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want ErrInvalidInput mentioning %q", tc.name, err, tc.want)
		}
	}
}

func TestAssign(t *testing.T) {
	c := []float32{0, 0, 10, 10}
	x := []float32{1, 1, 9, 8, -1, 0}
	idx, dist := Assign(x, 3, 2, c, 2, 1)
	if !slices.Equal(idx, []int32{0, 1, 0}) || !slices.Equal(dist, []float32{2, 5, 1}) {
		t.Errorf("Assign = %v %v", idx, dist)
	}
}

func BenchmarkTrain(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	const n, d, k = 65536, 8, 256
	x := make([]float32, n*d)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	for b.Loop() {
		if _, err := Train(x, n, d, Config{K: k, Seed: 1}); err != nil {
			b.Fatal(err)
		}
	}
}

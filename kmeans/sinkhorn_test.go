package kmeans

import (
	"errors"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"

	"github.com/shelfdb/shelf/internal/vecmath"
)

// skewed returns the n x k squared distances of n points drawn around the
// origin in 2-D to k centroids: one at the origin, the others on a circle
// of radius 2.5, so the nearest centroid of most points is the first.
func skewed(seed uint64, n, k int) []float32 {
	r := rand.New(rand.NewPCG(seed, 7))
	x := make([]float32, n*2)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	c := make([]float32, k*2)
	for j := 1; j < k; j++ {
		a := 2 * math.Pi * float64(j) / float64(k-1)
		c[2*j], c[2*j+1] = float32(2.5*math.Cos(a)), float32(2.5*math.Sin(a))
	}
	dist := make([]float32, n*k)
	vecmath.L2SqrBatch(x, n, c, k, 2, nil, dist)
	return dist
}

func sizes(t *testing.T, a []int32, k int) []int {
	t.Helper()
	s := make([]int, k)
	for i, c := range a {
		if c < 0 || int(c) >= k {
			t.Fatalf("point %d assigned to %d, not in [0, %d)", i, c, k)
		}
		s[c]++
	}
	return s
}

func argmin(dist []float32, n, k int) []int32 {
	out := make([]int32, n)
	for i := range n {
		row := dist[i*k : (i+1)*k]
		out[i] = int32(slices.Index(row, slices.Min(row)))
	}
	return out
}

func TestSinkhornBalancesSkewed(t *testing.T) {
	const n, k = 4000, 8
	dist := skewed(1, n, k)
	plain := sizes(t, argmin(dist, n, k), k)
	if plain[0] < n/2 {
		t.Fatalf("test data not skewed: argmin sizes %v", plain)
	}
	// n/k = 500; argmin's largest is over 2,000. Small eps converges more
	// slowly: at 0.003 the default 50 rounds leave the first cluster at
	// ~1.4 n/k, 200 rounds balance it.
	for _, c := range []struct {
		eps        float64
		iters      int
		maxOverAvg float64
	}{
		{0.003, 0, 1.5},
		{0.003, 200, 1.05},
		{0.01, 0, 1.05},
		{0.03, 0, 1.15},
	} {
		a, err := Sinkhorn(dist, n, k, c.eps, c.iters)
		if err != nil {
			t.Fatal(err)
		}
		s := sizes(t, a, k)
		if big := slices.Max(s); float64(big) > c.maxOverAvg*n/k {
			t.Errorf("eps %v, %d rounds: cluster sizes %v, want the largest <= %v x %d (argmin: %v)", c.eps, c.iters, s, c.maxOverAvg, n/k, plain)
		}
	}
}

func TestSinkhornNoBalanceIsArgmin(t *testing.T) {
	const n, k = 500, 7
	dist := skewed(2, n, k)
	// Ties: the lowest index wins, as in the reference's torch.argmax.
	copy(dist[3*k:4*k], []float32{5, 1, 1, 0.5, 0.5, 9, 0.5})
	want := argmin(dist, n, k)
	if want[3] != 3 {
		t.Fatalf("tie row: argmin %d", want[3])
	}
	for _, eps := range []float64{0, -1} {
		got, err := Sinkhorn(dist, n, k, eps, 0)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("eps %v: assignment differs from argmin", eps)
		}
	}
}

func TestSinkhornLargeEps(t *testing.T) {
	// As eps grows Q flattens, each column potential tends to minus the
	// column's mean logit, and the assignment to the argmin of the
	// distances minus their column means: still a valid assignment with no
	// cluster much above n/k, but no longer close to argmin nor balanced
	// from below (here the central cluster empties).
	const n, k = 4000, 8
	dist := skewed(3, n, k)
	mean := make([]float64, k)
	for i := range n {
		for j := range k {
			mean[j] += float64(dist[i*k+j]) / n
		}
	}
	limit := make([]int32, n)
	for i := range n {
		best := math.Inf(1)
		for j := range k {
			if v := float64(dist[i*k+j]) - mean[j]; v < best {
				best, limit[i] = v, int32(j)
			}
		}
	}
	for _, eps := range []float64{1e3, 1e6} {
		a, err := Sinkhorn(dist, n, k, eps, 0)
		if err != nil {
			t.Fatal(err)
		}
		if big := slices.Max(sizes(t, a, k)); big > n/k*3/2 {
			t.Errorf("eps %v: largest cluster %d, want <= 1.5 x %d", eps, big, n/k)
		}
		differ := 0
		for i := range a {
			if a[i] != limit[i] {
				differ++
			}
		}
		if differ > n/100 {
			t.Errorf("eps %v: %d of %d points differ from the large-eps limit", eps, differ, n)
		}
	}
}

func TestSinkhornTinyEpsLargeDistances(t *testing.T) {
	const n, k = 3000, 16
	dist := skewed(4, n, k)
	for i := range dist {
		dist[i] = dist[i]*1e6 + 3e7 // far from [-1, 1], exp(-D/eps) overflows float32 and float64
	}
	plain := slices.Max(sizes(t, argmin(dist, n, k), k))
	for _, c := range []struct {
		eps     float64
		wantMax int
	}{
		{0.003, n / k * 3 / 2},
		// Too small to converge in 100 rounds, but never worse than argmin.
		{1e-6, plain},
	} {
		a, err := Sinkhorn(dist, n, k, c.eps, 100)
		if err != nil {
			t.Fatal(err)
		}
		s := sizes(t, a, k)
		if big := slices.Max(s); big > c.wantMax {
			t.Errorf("eps %v: largest cluster %d, want <= %d: %v", c.eps, big, c.wantMax, s)
		}
	}
}

func TestSinkhornDeterministic(t *testing.T) {
	const n, k = 5000, 12
	dist := skewed(5, n, k)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	a1, err := Sinkhorn(dist, n, k, 0.003, 30)
	if err != nil {
		t.Fatal(err)
	}
	runtime.GOMAXPROCS(4)
	a2, _ := Sinkhorn(dist, n, k, 0.003, 30)
	a3, _ := Sinkhorn(dist, n, k, 0.003, 30)
	if !slices.Equal(a1, a2) || !slices.Equal(a2, a3) {
		t.Error("assignment depends on the run or on GOMAXPROCS")
	}
}

func TestSinkhornDegenerate(t *testing.T) {
	// All distances equal: no NaN from a zero amplitude, lowest index wins.
	a, err := Sinkhorn(make([]float32, 6*3), 6, 3, 0.003, 0)
	if err != nil || !slices.Equal(a, make([]int32, 6)) {
		t.Errorf("equal distances: %v, %v", a, err)
	}
	a, err = Sinkhorn(nil, 0, 4, 0.003, 0)
	if err != nil || len(a) != 0 {
		t.Errorf("no points: %v, %v", a, err)
	}
	a, err = Sinkhorn([]float32{3, 1, 2}, 1, 3, 0.003, 0)
	if err != nil || a[0] != 1 {
		t.Errorf("one point: %v, %v", a, err)
	}
}

func TestSinkhornErrors(t *testing.T) {
	ok := []float32{1, 2, 3, 4}
	nan := []float32{1, float32(math.NaN()), 3, 4}
	inf := []float32{1, 2, float32(math.Inf(-1)), 4}
	for _, c := range []struct {
		name  string
		dist  []float32
		n, k  int
		eps   float64
		iters int
	}{
		{"k = 0", ok, 2, 0, 0.01, 0},
		{"k < 0", ok, 2, -2, 0.01, 0},
		{"n < 0", ok, -2, -2, 0.01, 0},
		{"short", ok, 3, 2, 0.01, 0},
		{"long", ok, 1, 2, 0.01, 0},
		{"overflowing n*k", ok, math.MaxInt/2 + 1, 2, 0.01, 0},
		{"NaN distance", nan, 2, 2, 0.01, 0},
		{"NaN distance, no balance", nan, 2, 2, 0, 0},
		{"infinite distance", inf, 2, 2, 0.01, 0},
		{"negative iters", ok, 2, 2, 0.01, -1},
		{"NaN eps", ok, 2, 2, math.NaN(), 0},
		{"denormal eps", ok, 2, 2, 1e-320, 0},
	} {
		if _, err := Sinkhorn(c.dist, c.n, c.k, c.eps, c.iters); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("%s: err = %v, want ErrInvalidInput", c.name, err)
		}
	}
}

// imbalance is FAISS's imbalance factor of the nearest-centroid cluster
// sizes: k * sum(size^2) / n^2, 1 when balanced.
func imbalance(x []float32, n, d int, c []float32, k int) (float64, int) {
	idx, _ := Assign(x, n, d, c, k, 1)
	s := make([]int, k)
	for _, a := range idx {
		s[a]++
	}
	var sq float64
	for _, v := range s {
		sq += float64(v) * float64(v)
	}
	return sq * float64(k) / float64(n) / float64(n), slices.Max(s)
}

func TestTrainBalanced(t *testing.T) {
	// Blobs of very different weights: plain k-means follows the density,
	// balanced k-means spreads centroids so that nearest-centroid lists
	// come out more even.
	const d, k = 8, 16
	r := rand.New(rand.NewPCG(11, 3))
	var x []float32
	for b, count := range []int{3000, 600, 300, 100} {
		for range count {
			for j := range d {
				x = append(x, float32(10*b*(j%2))+float32(r.NormFloat64()))
			}
		}
	}
	n := len(x) / d
	plain, err := Train(x, n, d, Config{K: k, Seed: 1, Iters: 10})
	if err != nil {
		t.Fatal(err)
	}
	ifPlain, maxPlain := imbalance(x, n, d, plain, k)
	defer func(e, p int) { balanceMaxEntries, balancePerCentroid = e, p }(balanceMaxEntries, balancePerCentroid)
	for _, capped := range []bool{false, true} {
		balancePerCentroid = n
		if capped {
			// The Sinkhorn rounds see a quarter of the points.
			balanceMaxEntries = n / 4 * k
		}
		bal, err := Train(x, n, d, Config{K: k, Seed: 1, Iters: 10, Balance: 0.01})
		if err != nil {
			t.Fatal(err)
		}
		ifBal, maxBal := imbalance(x, n, d, bal, k)
		t.Logf("capped %v: imbalance %.3f -> %.3f, largest %d -> %d (n/k = %d)", capped, ifPlain, ifBal, maxPlain, maxBal, n/k)
		if ifBal > 1.1 || ifBal >= ifPlain {
			t.Errorf("capped %v: imbalance factor %.3f with Balance, %.3f without: want <= 1.1 and lower", capped, ifBal, ifPlain)
		}
		again, _ := Train(x, n, d, Config{K: k, Seed: 1, Iters: 10, Balance: 0.01, Threads: 3})
		if !slices.Equal(bal, again) {
			t.Errorf("capped %v: balanced training not deterministic", capped)
		}
	}
	for _, c := range []Config{{K: k, Balance: math.NaN()}, {K: k, Balance: math.Inf(1)}, {K: k, Balance: 1e-320}, {K: k, Balance: 0.01, BalanceIters: -1}} {
		if _, err := Train(x, n, d, c); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("Balance %v, BalanceIters %d: err = %v, want ErrInvalidInput", c.Balance, c.BalanceIters, err)
		}
	}
}

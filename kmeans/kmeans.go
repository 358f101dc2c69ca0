package kmeans

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/shelfdb/shelf/internal/vecmath"
)

// ErrInvalidInput is wrapped by every error Train returns for bad arguments
// or training data.
var ErrInvalidInput = errors.New("kmeans: invalid input")

// Defaults applied by Train to zero fields of Config, the values of
// faiss::ClusteringParameters.
const (
	DefaultIters                = 25
	DefaultMaxPointsPerCentroid = 256
	DefaultMinPointsPerCentroid = 39
)

// splitEps is the relative perturbation applied to the two copies of a split
// centroid (EPS in faiss/Clustering.cpp).
const splitEps = 1.0 / 1024

// Config holds the parameters of Train (faiss::ClusteringParameters).
type Config struct {
	// K is the number of centroids; it must be positive and at most the
	// number of training points.
	K int
	// Iters is the number of Lloyd iterations (DefaultIters when 0).
	Iters int
	// Seed seeds the subsampling and the initial centroid choice.
	Seed int64
	// MaxPointsPerCentroid caps the training set at K*MaxPointsPerCentroid
	// points, drawn at random, because more points barely move the
	// centroids but cost linearly (DefaultMaxPointsPerCentroid when 0, no
	// cap when negative).
	MaxPointsPerCentroid int
	// MinPointsPerCentroid is the number of points per centroid below which
	// Train reports a warning through Warn (DefaultMinPointsPerCentroid when
	// 0). Training still proceeds.
	MinPointsPerCentroid int
	// Threads is the number of goroutines for the assignment step
	// (GOMAXPROCS when <= 0).
	Threads int
	// Spherical normalizes centroids to unit length after each update, for
	// inner-product search: with unit centroids the nearest in L2 is the one
	// of largest inner product.
	Spherical bool
	// Progress, when set, is called after each iteration's assignment with
	// the 1-based iteration number and the objective: the sum of squared
	// distances of the training points to their nearest centroid.
	Progress func(iter, iters int, objective float64)
	// Warn, when set, receives advisory messages such as too few training
	// points per centroid.
	Warn func(msg string)
	// Init, when not nil, holds K*d starting centroids used instead of
	// random training points (FAISS uses centroids already present in a
	// Clustering the same way). Train does not modify it.
	Init []float32
	// Balance, when positive, makes the assignment step balanced
	// (balanced k-means): points go to clusters by Sinkhorn with this eps
	// (see Sinkhorn) instead of to their nearest centroid, so clusters come
	// out of similar sizes. 0.003 balances nearly exactly; larger values
	// balance less. Zero or negative: plain Lloyd iterations.
	Balance float64
	// BalanceIters is the number of Sinkhorn rounds per assignment
	// (DefaultSinkhornIters when 0).
	BalanceIters int
}

func (c Config) withDefaults() Config {
	if c.Iters == 0 {
		c.Iters = DefaultIters
	}
	if c.MaxPointsPerCentroid == 0 {
		c.MaxPointsPerCentroid = DefaultMaxPointsPerCentroid
	}
	if c.MinPointsPerCentroid == 0 {
		c.MinPointsPerCentroid = DefaultMinPointsPerCentroid
	}
	return c
}

// Train runs k-means on the n rows of x (row-major, dimension d) and returns
// the cfg.K centroids, row-major (faiss::Clustering::train).
func Train(x []float32, n, d int, cfg Config) ([]float32, error) {
	cfg = cfg.withDefaults()
	switch {
	case cfg.K <= 0:
		return nil, fmt.Errorf("%w: K = %d, must be positive", ErrInvalidInput, cfg.K)
	case d <= 0:
		return nil, fmt.Errorf("%w: dimension %d, must be positive", ErrInvalidInput, d)
	case n < 0 || n > len(x)/d || len(x) != n*d:
		return nil, fmt.Errorf("%w: len(x) = %d, want n*d = %d*%d", ErrInvalidInput, len(x), n, d)
	case n < cfg.K:
		return nil, fmt.Errorf("%w: %d training points for K = %d centroids", ErrInvalidInput, n, cfg.K)
	case cfg.Iters < 0:
		return nil, fmt.Errorf("%w: Iters = %d", ErrInvalidInput, cfg.Iters)
	case math.IsNaN(cfg.Balance) || math.IsInf(cfg.Balance, 0):
		return nil, fmt.Errorf("%w: Balance = %v, must be finite", ErrInvalidInput, cfg.Balance)
	case cfg.Balance > 0 && math.IsInf(1/cfg.Balance, 0):
		return nil, fmt.Errorf("%w: Balance = %g is too small (1/Balance overflows)", ErrInvalidInput, cfg.Balance)
	case cfg.BalanceIters < 0:
		return nil, fmt.Errorf("%w: BalanceIters = %d", ErrInvalidInput, cfg.BalanceIters)
	case cfg.Init != nil && (cfg.K > len(cfg.Init)/d || len(cfg.Init) != cfg.K*d):
		return nil, fmt.Errorf("%w: len(Init) = %d, want K*d = %d", ErrInvalidInput, len(cfg.Init), cfg.K*d)
	}
	if err := checkFinite(x, n, d, "row"); err != nil {
		return nil, err
	}
	if cfg.Init != nil {
		if err := checkFinite(cfg.Init, cfg.K, d, "initial centroid"); err != nil {
			return nil, err
		}
	}
	k := cfg.K
	rng := rand.New(rand.NewPCG(uint64(cfg.Seed), 0x5eedc105))

	// k <= n, so k*points fits an int whenever points <= n/k.
	if cfg.MaxPointsPerCentroid > 0 && cfg.MaxPointsPerCentroid <= n/k && n > k*cfg.MaxPointsPerCentroid {
		m := k * cfg.MaxPointsPerCentroid
		perm := partialPerm(rng, n, m)
		sub := make([]float32, m*d)
		for i, p := range perm {
			copy(sub[i*d:(i+1)*d], x[p*d:(p+1)*d])
		}
		x, n = sub, m
	} else if cfg.MinPointsPerCentroid > 0 && (cfg.MinPointsPerCentroid > n/k || n < k*cfg.MinPointsPerCentroid) && cfg.Warn != nil {
		cfg.Warn(fmt.Sprintf("kmeans: %d training points for %d centroids; consider at least %d",
			n, k, k*cfg.MinPointsPerCentroid))
	}

	centroids := make([]float32, k*d)
	if cfg.Init != nil {
		copy(centroids, cfg.Init)
	} else {
		for i, p := range partialPerm(rng, n, k) {
			copy(centroids[i*d:(i+1)*d], x[p*d:(p+1)*d])
		}
	}
	if cfg.Spherical {
		normalize(centroids, k, d)
	}

	var bal *balancer
	if cfg.Balance > 0 {
		bal = newBalancer(rng, n, k, cfg.Balance, cfg.BalanceIters, cfg.Threads)
	}
	assign := make([]int32, n)
	dist := make([]float32, n)
	norms := make([]float32, k)
	counts := make([]int, k)
	sums := make([]float64, k*d)
	for it := range cfg.Iters {
		vecmath.Norms2(centroids, d, norms)
		if bal != nil {
			bal.assign(x, n, d, centroids, k, norms, assign, dist, cfg.Threads, cfg.Progress != nil)
		} else {
			vecmath.ArgMinL2(x, n, centroids, k, d, norms, assign, dist, cfg.Threads)
		}
		if cfg.Progress != nil {
			var obj float64
			for _, v := range dist {
				obj += float64(v)
			}
			cfg.Progress(it+1, cfg.Iters, obj)
		}
		updateCentroids(x, n, d, assign, k, centroids, counts, sums, cfg.Threads)
		splitClusters(centroids, counts, k, d)
		if cfg.Spherical {
			normalize(centroids, k, d)
		}
	}
	return centroids, nil
}

// Assign returns, for each of the n rows of x, the index of its nearest
// centroid among the k rows of centroids and the squared L2 distance to it,
// using threads goroutines (GOMAXPROCS when <= 0). It panics if the slices
// are shorter than n*d and k*d or k is 0.
func Assign(x []float32, n, d int, centroids []float32, k int, threads int) (idx []int32, dist []float32) {
	idx = make([]int32, n)
	dist = make([]float32, n)
	vecmath.ArgMinL2(x, n, centroids, k, d, nil, idx, dist, threads)
	return idx, dist
}

func checkFinite(x []float32, n, d int, what string) error {
	for i := range n {
		for j, v := range x[i*d : (i+1)*d] {
			if f := float64(v); math.IsNaN(f) || math.IsInf(f, 0) {
				return fmt.Errorf("%w: %s %d has %v at dimension %d", ErrInvalidInput, what, i, v, j)
			}
		}
	}
	return nil
}

// partialPerm returns m distinct indices in [0, n) in random order: the
// first m entries of a Fisher-Yates shuffle.
func partialPerm(rng *rand.Rand, n, m int) []int {
	perm := make([]int, n)
	for i := range perm {
		perm[i] = i
	}
	for i := range m {
		j := i + rng.IntN(n-i)
		perm[i], perm[j] = perm[j], perm[i]
	}
	return perm[:m]
}

// updateCentroids replaces each centroid that owns points by their mean. Each
// goroutine owns a range of centroids and scans all points in order, so the
// sums do not depend on the thread count (the scheme of FAISS's
// compute_centroids).
func updateCentroids(x []float32, n, d int, assign []int32, k int, centroids []float32, counts []int, sums []float64, threads int) {
	t := min(vecmath.Threads(threads), k)
	per := (k + t - 1) / t
	vecmath.ParallelFor(k, per, t, func(c0, c1, _ int) {
		clear(counts[c0:c1])
		clear(sums[c0*d : c1*d])
		for i, a := range assign[:n] {
			c := int(a)
			if c < c0 || c >= c1 {
				continue
			}
			counts[c]++
			s := sums[c*d : (c+1)*d]
			for j, v := range x[i*d : (i+1)*d] {
				s[j] += float64(v)
			}
		}
		for c := c0; c < c1; c++ {
			if counts[c] == 0 {
				continue
			}
			inv := 1 / float64(counts[c])
			for j, s := range sums[c*d : (c+1)*d] {
				centroids[c*d+j] = float32(s * inv)
			}
		}
	})
}

// splitClusters gives every empty cluster half of the largest cluster: the
// large centroid is copied and both copies are pushed apart by a small
// relative step in opposite directions, so the next assignment splits its
// points between them (faiss split_clusters, which picks the cluster to split
// at random in proportion to size; the largest is the deterministic choice).
// It returns the number of clusters split.
func splitClusters(centroids []float32, counts []int, k, d int) int {
	split := 0
	for ci := range k {
		if counts[ci] != 0 {
			continue
		}
		cj := 0
		for c := 1; c < k; c++ {
			if counts[c] > counts[cj] {
				cj = c
			}
		}
		if counts[cj] < 2 {
			// Fewer distinct points than centroids: nothing to split.
			return split
		}
		big := centroids[cj*d : (cj+1)*d]
		small := centroids[ci*d : (ci+1)*d]
		var rms float64
		for _, v := range big {
			rms += float64(v) * float64(v)
		}
		rms = math.Sqrt(rms / float64(d))
		if rms == 0 {
			rms = 1
		}
		for j, v := range big {
			step := splitEps * math.Abs(float64(v))
			if v == 0 {
				// A zero coordinate would not move under a relative step.
				step = splitEps * rms
			}
			if j%2 == 1 {
				step = -step
			}
			small[j] = float32(float64(v) + step)
			big[j] = float32(float64(v) - step)
		}
		counts[ci] = counts[cj] / 2
		counts[cj] -= counts[ci]
		split++
	}
	return split
}

func normalize(x []float32, n, d int) {
	for i := range n {
		r := x[i*d : (i+1)*d]
		nrm := math.Sqrt(float64(vecmath.Dot(r, r)))
		if nrm == 0 {
			continue
		}
		inv := float32(1 / nrm)
		for j := range r {
			r[j] *= inv
		}
	}
}

package kmeans

import (
	"math/rand/v2"
	"slices"

	"github.com/shelfdb/shelf/internal/vecmath"
)

// balanceMaxEntries bounds the distance matrix of the balanced assignment
// step (Config.Balance): 1<<25 float32, 128 MiB. The Sinkhorn rounds see
// at most balancePerCentroid points per centroid and balanceMaxEntries/K
// points in all (16,384 for K = 256, 32,768 for K = 1,024, 8,192 for K =
// 4,096), drawn once at random; their column potentials then assign every
// training point. Both bound the time of the rounds too (50 rounds over
// 16,384 x 256 distances take about 1 s of one core per iteration).
// Variables so that tests can sample.
var (
	balanceMaxEntries  = 1 << 25
	balancePerCentroid = 64
)

// balancer is the assignment step of balanced k-means. Each iteration it
// computes the distances of a fixed sample of the training points to the
// centroids, runs Sinkhorn on them, and turns the column potentials into
// per-centroid offsets of the distances (see potentials.offset): every
// training point then goes to the centroid of least offset distance, which
// for the sample points is exactly Sinkhorn's assignment. Memory is the
// sample's distance matrix, never n x K.
type balancer struct {
	eps    float64
	iters  int
	m      int       // sample rows
	rows   []int     // sorted sample rows of x; nil when the sample is all of x
	mat    []float32 // m x k distances
	biased []float32 // centroid norms minus offsets
	bufs   [][]float32
}

// balanceBlock is the number of sample rows whose distances one goroutine
// computes at a time.
const balanceBlock = 64

func newBalancer(rng *rand.Rand, n, k int, eps float64, iters, threads int) *balancer {
	m := min(n, balancePerCentroid*k, max(1, balanceMaxEntries/k))
	b := &balancer{eps: eps, iters: iters, m: m, mat: make([]float32, m*k), biased: make([]float32, k)}
	if m < n {
		b.rows = partialPerm(rng, n, m)
		slices.Sort(b.rows)
	}
	b.bufs = make([][]float32, vecmath.Threads(threads))
	return b
}

// assign writes the balanced assignment of the n rows of x to the k
// centroids (whose squared norms are norms) into assign, and into dist
// the squared distances to the assigned centroids when wantDist.
func (b *balancer) assign(x []float32, n, d int, centroids []float32, k int, norms []float32, assign []int32, dist []float32, threads int, wantDist bool) {
	vecmath.ParallelFor(b.m, balanceBlock, threads, func(lo, hi, w int) {
		xs := x[lo*d : hi*d]
		if b.rows != nil {
			if b.bufs[w] == nil {
				b.bufs[w] = make([]float32, balanceBlock*d)
			}
			xs = b.bufs[w][:(hi-lo)*d]
			for i, r := range b.rows[lo:hi] {
				copy(xs[i*d:(i+1)*d], x[r*d:(r+1)*d])
			}
		}
		vecmath.L2SqrBatch(xs, hi-lo, centroids, k, d, norms, b.mat[lo*k:hi*k])
	})
	p := sinkhornPotentials(b.mat, b.m, k, b.eps, b.iters, threads)
	for j := range k {
		b.biased[j] = norms[j] - float32(p.offset(j))
	}
	vecmath.ArgMinL2(x, n, centroids, k, d, b.biased, assign, dist, threads)
	if wantDist {
		vecmath.ParallelFor(n, 1024, threads, func(lo, hi, _ int) {
			for i := lo; i < hi; i++ {
				c := int(assign[i])
				dist[i] = vecmath.L2Sq(x[i*d:(i+1)*d], centroids[c*d:(c+1)*d])
			}
		})
	}
}

package synth

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"

	"github.com/shelfdb/shelf/internal/vecio"
	"github.com/shelfdb/shelf/internal/vecmath"
)

// Streams of one Mixture. Any uint64 is a valid stream; these names keep
// the sets of one experiment apart by convention.
const (
	// BaseStream is the stream of the indexed vectors (Clustered).
	BaseStream uint64 = 0
	// QueryStream is the stream of the query vectors (Queries).
	QueryStream uint64 = 1
	// TrainStream is the stream of a training sample drawn separately
	// from the base set.
	TrainStream uint64 = 2
)

const (
	// chunkRows is the number of rows drawn from one generator. It is part
	// of the output's definition: changing it changes every data set.
	chunkRows = 1024

	sigmaMin, sigmaMax = 0.3, 0.8

	// weightSpread is the standard deviation of the log of the cluster
	// weights. At 0.8 the mean squared weight is e^0.64 = 1.9 times the
	// squared mean weight, the size imbalance that k-means lists on real
	// embeddings show (FAISS's imbalance factor of 1.2 to 2).
	weightSpread = 0.8
)

// Mixture is a Gaussian mixture in D dimensions from which data sets are
// sampled. It is immutable after New and safe for concurrent use.
type Mixture struct {
	d, k    int
	seed    int64
	centres []float32 // k x d
	sigma   []float32 // per-cluster noise standard deviation
	weight  []float64 // per-cluster probability, summing to 1
	cdf     []float64 // cumulative weights; cdf[k-1] == 1
}

// New returns the mixture of nclusters clusters in d dimensions fixed by
// seed. It panics if d or nclusters is not positive, since both are
// constants of the calling experiment.
func New(d, nclusters int, seed int64) *Mixture {
	if d <= 0 || nclusters <= 0 {
		panic(fmt.Sprintf("synth: New(d=%d, nclusters=%d) needs positive sizes", d, nclusters))
	}
	// The parameters come from a stream of their own, disjoint from the
	// per-chunk streams of Sample.
	rng := rand.New(rand.NewPCG(mix(uint64(seed), 0x6d697874757265), 0))
	m := &Mixture{
		d: d, k: nclusters, seed: seed,
		centres: make([]float32, nclusters*d),
		sigma:   make([]float32, nclusters),
		weight:  make([]float64, nclusters),
		cdf:     make([]float64, nclusters),
	}
	for i := range m.centres {
		m.centres[i] = float32(rng.NormFloat64())
	}
	var total float64
	for c := range nclusters {
		m.sigma[c] = float32(sigmaMin + (sigmaMax-sigmaMin)*rng.Float64())
		m.weight[c] = math.Exp(weightSpread * rng.NormFloat64())
		total += m.weight[c]
	}
	var acc float64
	for c := range nclusters {
		m.weight[c] /= total
		acc += m.weight[c]
		m.cdf[c] = acc
	}
	// Rounding may leave the sum a hair below 1; a draw above it would
	// fall off the end.
	m.cdf[nclusters-1] = 1
	return m
}

// Dim returns the dimension of the vectors.
func (m *Mixture) Dim() int { return m.d }

// Clusters returns the number of clusters.
func (m *Mixture) Clusters() int { return m.k }

// Centre returns the centre of cluster c. The slice aliases the mixture and
// must not be modified.
func (m *Mixture) Centre(c int) []float32 { return m.centres[c*m.d : (c+1)*m.d : (c+1)*m.d] }

// Sigma returns the per-coordinate noise standard deviation of cluster c.
func (m *Mixture) Sigma(c int) float32 { return m.sigma[c] }

// Weight returns the probability that a point is drawn from cluster c.
func (m *Mixture) Weight(c int) float64 { return m.weight[c] }

// Sample draws n points from stream of m, using all CPUs.
func (m *Mixture) Sample(n int, stream uint64) vecio.Matrix {
	x, _ := m.sample(n, stream, 0, false)
	return x
}

// SampleLabeled is Sample that also returns the cluster each point was
// drawn from; the points are identical to Sample's.
func (m *Mixture) SampleLabeled(n int, stream uint64) (vecio.Matrix, []int32) {
	return m.sample(n, stream, 0, true)
}

func (m *Mixture) sample(n int, stream uint64, threads int, labeled bool) (vecio.Matrix, []int32) {
	if n < 0 {
		panic(fmt.Sprintf("synth: Sample of %d points", n))
	}
	x := vecio.Matrix{N: n, D: m.d, Data: make([]float32, n*m.d)}
	var labels []int32
	if labeled {
		labels = make([]int32, n)
	}
	streamKey := mix(uint64(m.seed), stream)
	vecmath.ParallelFor(n, chunkRows, threads, func(lo, hi, _ int) {
		rng := rand.New(rand.NewPCG(streamKey, uint64(lo/chunkRows)))
		for i := lo; i < hi; i++ {
			// The first cdf entry >= u; u < 1 == cdf[k-1], so c < k.
			c := sort.SearchFloat64s(m.cdf, rng.Float64())
			if labeled {
				labels[i] = int32(c)
			}
			s := float64(m.sigma[c])
			centre := m.Centre(c)
			row := x.Data[i*m.d : (i+1)*m.d]
			for j, v := range centre {
				row[j] = v + float32(s*rng.NormFloat64())
			}
		}
	})
	return x, labels
}

// Clustered returns n points in d dimensions from the base stream of the
// mixture New(d, nclusters, seed): the project's default base set.
func Clustered(n, d, nclusters int, seed int64) vecio.Matrix {
	return New(d, nclusters, seed).Sample(n, BaseStream)
}

// Queries returns nq points from the query stream of the same mixture as
// Clustered(_, d, nclusters, seed): queries for that base set.
func Queries(nq, d, nclusters int, seed int64) vecio.Matrix {
	return New(d, nclusters, seed).Sample(nq, QueryStream)
}

// mix hashes two words into a seed (splitmix64's finaliser on a
// combination), so nearby seeds and streams give unrelated generators.
func mix(a, b uint64) uint64 {
	z := a*0x9e3779b97f4a7c15 ^ (b + 0x632be59bd9b4e019)
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

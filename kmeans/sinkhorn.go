package kmeans

// Sinkhorn-Knopp balanced assignment, in the log domain.
//
// The textbook iteration keeps Q = exp(-D/eps) and rescales its rows and
// columns in turn. Every rescaled matrix has the form
//
//	Q_ij = exp(L_ij + u_i + v_j),   L_ij = -D'_ij / eps
//
// with one potential u_i per row and v_j per column, so only u and v are
// kept (O(n+k) memory besides the distances) and each normalization is a
// logsumexp over a row or a column of L + u + v: nothing overflows, even
// at eps = 0.003 where exp(±333) is out of float32's range. The argmax of
// row i of Q is the argmax over j of L_ij + v_j (u_i is common to the row),
// which is also the argmin over j of D_ij - v_j*amp*eps: balancing is a
// per-cluster offset of the distances, which is what the balanced k-means
// step uses to assign points that were not in the Sinkhorn matrix.

import (
	"fmt"
	"math"

	"github.com/shelfdb/shelf/internal/vecmath"
)

// DefaultSinkhornIters is the number of Sinkhorn rounds when iters is 0
// (the value of the reference sinkhorn_algorithm).
const DefaultSinkhornIters = 50

// lseSkip is the log-ratio below which a term is left out of a logsumexp:
// exp(-40) = 4e-18 is under float64's resolution of a sum that is >= 1.
const lseSkip = -40

// Sinkhorn assigns n points to k clusters, balanced, from their n x k
// distances (row-major): dist[i*k+j] is the distance of point i to cluster
// j, smaller is nearer (any scale, any sign).
//
// It follows the sinkhorn_algorithm of the RQ-KMeans / RQ-VAE semantic-ID
// literature: the distances are centred and scaled to [-1, 1] (middle =
// (max+min)/2, amplitude = max-middle; an amplitude of 0, all distances
// equal, counts as 1 instead of the reference's +1e-5, so the result does
// not depend on the distances' unit), Q = exp(-D/eps), then iters rounds
// each normalize every row to mass 1/n and every column to mass 1/k, and
// point i goes to the argmax of row i of Q (the lowest index on ties).
// Small eps balances strongly (0.003 is the usual choice, near a hard
// balanced assignment); large eps leaves the assignment close to argmin.
//
// eps <= 0 is plain argmin (no balancing); iters 0 means
// DefaultSinkhornIters. The computation runs in the log domain with one
// potential per row and per column, so memory is the distances plus
// O(n+k) and tiny eps neither overflows nor yields NaN. It uses GOMAXPROCS
// goroutines and its result does not depend on their number.
//
// Errors wrap ErrInvalidInput: k <= 0, n < 0, len(dist) != n*k, iters < 0,
// eps NaN or so small that 1/eps overflows, NaN or infinite distances.
func Sinkhorn(dist []float32, n, k int, eps float64, iters int) ([]int32, error) {
	if err := checkSinkhorn(dist, n, k, eps, iters); err != nil {
		return nil, err
	}
	out := make([]int32, n)
	if n == 0 {
		return out, nil
	}
	if eps <= 0 {
		vecmath.ParallelFor(n, sinkhornRowChunk, 0, func(lo, hi, _ int) {
			for i := lo; i < hi; i++ {
				best := 0
				row := dist[i*k : (i+1)*k]
				for j, d := range row {
					if d < row[best] {
						best = j
					}
				}
				out[i] = int32(best)
			}
		})
		return out, nil
	}
	p := sinkhornPotentials(dist, n, k, eps, iters, 0)
	vecmath.ParallelFor(n, sinkhornRowChunk, 0, func(lo, hi, _ int) {
		for i := lo; i < hi; i++ {
			best, bestS := 0, math.Inf(-1)
			for j, d := range dist[i*k : (i+1)*k] {
				if s := p.logit(d) + p.v[j]; s > bestS {
					best, bestS = j, s
				}
			}
			out[i] = int32(best)
		}
	})
	return out, nil
}

func checkSinkhorn(dist []float32, n, k int, eps float64, iters int) error {
	switch {
	case k <= 0:
		return fmt.Errorf("%w: Sinkhorn with k = %d clusters, must be positive", ErrInvalidInput, k)
	case n < 0:
		return fmt.Errorf("%w: Sinkhorn with n = %d points", ErrInvalidInput, n)
	case n > len(dist)/k || len(dist) != n*k:
		return fmt.Errorf("%w: Sinkhorn distances have %d elements, want n*k = %d*%d", ErrInvalidInput, len(dist), n, k)
	case iters < 0:
		return fmt.Errorf("%w: Sinkhorn iters = %d, must not be negative", ErrInvalidInput, iters)
	case math.IsNaN(eps):
		return fmt.Errorf("%w: Sinkhorn eps is NaN", ErrInvalidInput)
	case eps > 0 && math.IsInf(1/eps, 0):
		return fmt.Errorf("%w: Sinkhorn eps = %g is too small (1/eps overflows)", ErrInvalidInput, eps)
	}
	return checkFinite(dist, n, k, "Sinkhorn distance row")
}

// sinkhornRowChunk is the number of rows a goroutine takes at a time.
const sinkhornRowChunk = 256

// potentials are the outcome of the Sinkhorn rounds: the scaling of the
// distances and the column potentials. The log of Q_ij is, up to a
// per-row constant, logit(D_ij) + v[j].
type potentials struct {
	mid, scale float64 // logit(d) = (mid - d) * scale, scale = 1/(amp*eps)
	v          []float64
}

func (p *potentials) logit(d float32) float64 { return (p.mid - float64(d)) * p.scale }

// offset returns the amount, in the unit of the distances, by which
// cluster j's distances are lowered: argmax_j logit(D_ij) + v_j is
// argmin_j D_ij - offset(j).
func (p *potentials) offset(j int) float64 { return p.v[j] / p.scale }

// sinkhornPotentials runs the Sinkhorn rounds on a checked, non-empty
// matrix with eps > 0, on threads goroutines (GOMAXPROCS when <= 0).
func sinkhornPotentials(dist []float32, n, k int, eps float64, iters, threads int) *potentials {
	if iters == 0 {
		iters = DefaultSinkhornIters
	}
	lo, hi := float64(dist[0]), float64(dist[0])
	for _, d := range dist {
		lo, hi = min(lo, float64(d)), max(hi, float64(d))
	}
	mid := (hi + lo) / 2
	amp := hi - mid
	if amp <= 0 {
		amp = 1
	}
	p := &potentials{mid: mid, scale: 1 / (amp * eps), v: make([]float64, k)}
	u := make([]float64, n)
	logN, logK := math.Log(float64(n)), math.Log(float64(k))

	// Columns are summed by fixed chunks of rows, each into its own
	// (max, sum) pair per column, combined in chunk order: the result does
	// not depend on which goroutine ran which chunk.
	colChunk := max(sinkhornRowChunk, (n+63)/64)
	nchunks := (n + colChunk - 1) / colChunk
	cmax := make([]float64, nchunks*k)
	csum := make([]float64, nchunks*k)

	for range iters {
		// Rows: each point's mass is 1/n.
		vecmath.ParallelFor(n, sinkhornRowChunk, threads, func(r0, r1, _ int) {
			for i := r0; i < r1; i++ {
				row := dist[i*k : (i+1)*k]
				m := math.Inf(-1)
				for j, d := range row {
					m = max(m, p.logit(d)+p.v[j])
				}
				var s float64
				for j, d := range row {
					if x := p.logit(d) + p.v[j] - m; x > lseSkip {
						s += math.Exp(x)
					}
				}
				u[i] = -logN - (m + math.Log(s))
			}
		})
		// Columns: each cluster's mass is 1/k.
		vecmath.ParallelFor(n, colChunk, threads, func(r0, r1, _ int) {
			c := r0 / colChunk
			cm, cs := cmax[c*k:(c+1)*k], csum[c*k:(c+1)*k]
			for j := range cm {
				cm[j], cs[j] = math.Inf(-1), 0
			}
			for i := r0; i < r1; i++ {
				ui := u[i]
				for j, d := range dist[i*k : (i+1)*k] {
					x := p.logit(d) + ui
					switch m := cm[j]; {
					case x > m:
						cs[j] = cs[j]*math.Exp(m-x) + 1
						cm[j] = x
					case x-m > lseSkip:
						cs[j] += math.Exp(x - m)
					}
				}
			}
		})
		for j := range k {
			m := math.Inf(-1)
			for c := range nchunks {
				m = max(m, cmax[c*k+j])
			}
			var s float64
			for c := range nchunks {
				if x := cmax[c*k+j] - m; x > lseSkip {
					s += csum[c*k+j] * math.Exp(x)
				}
			}
			p.v[j] = -logK - (m + math.Log(s))
		}
	}
	return p
}

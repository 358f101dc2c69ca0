package rq

// Balanced encoding: the assignment of the RQ-KMeans / RQ-VAE semantic-ID
// recipes (TIGER, LC-Rec), where a layer's codes are chosen for all items
// at once by a Sinkhorn-Knopp balanced assignment, so that the items
// spread over the codewords instead of piling onto a few.

import (
	"fmt"
	"math"

	"github.com/shelfdb/shelf/internal/vecmath"
	"github.com/shelfdb/shelf/kmeans"
)

// BalanceOptions tune EncodeBalanced.
type BalanceOptions struct {
	// Eps holds one Sinkhorn epsilon per layer (M values; nil: all 0).
	// 0 gives each vector its nearest codeword; > 0 balances the layer
	// with kmeans.Sinkhorn (smaller balances harder; 0.003 is the usual
	// choice of the semantic-ID literature).
	Eps []float64
	// Iters is the number of Sinkhorn rounds of a balanced layer (0:
	// kmeans' default, 50).
	Iters int
	// From is the number of leading layers taken from codes as they are
	// instead of assigned: 0 assigns every layer; M-1 re-assigns the last
	// layer only, under the codes' own prefixes.
	From int
	// Threads bounds the goroutines of the distance computations (0:
	// GOMAXPROCS); kmeans.Sinkhorn uses GOMAXPROCS.
	Threads int
	// Progress, when set, is called after each assigned layer.
	Progress func(layer, layers int)
}

// EncodeBalanced writes the M codeword indexes of each of the n rows of x
// into codes (n*M bytes), layer by layer on the residuals. A layer with
// Eps 0 gives each row its nearest codeword; a layer with Eps > 0 assigns
// all n rows at once with kmeans.Sinkhorn on their n x 256 squared
// distances to the layer's codewords (the full ||r - c||^2, as the
// reference sinkhorn_algorithm is fed), so that the codewords are used
// about equally. Either way the encoding is greedy, a beam of 1 whatever
// BeamSize is: a balanced assignment is a choice among all rows, not
// among one row's partial codes, and the rows' residuals for the next
// layer follow from it.
//
// Memory: the residuals (n*D floats) and, when a layer is balanced, the
// distances (n*256 floats: 60 MB for 60,000 rows), so n is bounded by
// memory, not streamed; semantic IDs are computed for a catalogue at a
// time.
//
// Errors wrap ErrInvalid: an untrained quantizer, sizes that disagree, a
// NaN or infinite component, len(Eps) not 0 or M, an Eps that is NaN,
// infinite or negative, negative Iters, From outside [0, M].
func (r *RQ) EncodeBalanced(x []float32, n int, codes []byte, o BalanceOptions) error {
	if err := r.checkEncode(x, n, codes, r.M); err != nil {
		return err
	}
	switch {
	case o.Eps != nil && len(o.Eps) != r.M:
		return fmt.Errorf("%w: %d Sinkhorn epsilons for %d layers", ErrInvalid, len(o.Eps), r.M)
	case o.Iters < 0:
		return fmt.Errorf("%w: %d Sinkhorn iterations", ErrInvalid, o.Iters)
	case o.From < 0 || o.From > r.M:
		return fmt.Errorf("%w: first assigned layer %d, must be in [0, %d]", ErrInvalid, o.From, r.M)
	}
	for m, e := range o.Eps {
		if math.IsNaN(e) || math.IsInf(e, 0) || e < 0 {
			return fmt.Errorf("%w: Sinkhorn epsilon %v of layer %d, must be finite and >= 0", ErrInvalid, e, m)
		}
	}
	if !finite(x[:n*r.D]) {
		return fmt.Errorf("%w: a vector has a NaN or infinite component", ErrInvalid)
	}
	d, nm := r.D, r.M
	res := make([]float32, n*d)
	vecmath.ParallelFor(n, 256, o.Threads, func(lo, hi, _ int) {
		for i := lo; i < hi; i++ {
			r.residual(x[i*d:], codes[i*nm:i*nm+o.From], res[i*d:(i+1)*d])
		}
	})
	var dist []float32 // n x Ksub, made for the first balanced layer
	for m := o.From; m < nm; m++ {
		eps := 0.0
		if o.Eps != nil {
			eps = o.Eps[m]
		}
		if eps > 0 {
			if dist == nil {
				dist = make([]float32, n*Ksub)
			}
			vecmath.ParallelFor(n, encodeRows, o.Threads, func(lo, hi, _ int) {
				r.distances(res[lo*d:hi*d], hi-lo, m, dist[lo*Ksub:hi*Ksub])
			})
			a, err := kmeans.Sinkhorn(dist, n, Ksub, eps, o.Iters)
			if err != nil {
				return fmt.Errorf("rq: layer %d: %w", m, err)
			}
			for i, k := range a {
				codes[i*nm+m] = byte(k)
			}
		} else {
			vecmath.ParallelFor(n, encodeRows, o.Threads, func(lo, hi, _ int) {
				dd := make([]float32, (hi-lo)*Ksub)
				r.distances(res[lo*d:hi*d], hi-lo, m, dd)
				for i := range hi - lo {
					row := dd[i*Ksub : (i+1)*Ksub]
					best := 0
					for k, v := range row {
						if v < row[best] {
							best = k
						}
					}
					codes[(lo+i)*nm+m] = byte(best)
				}
			})
		}
		layer := r.Layer(m)
		vecmath.ParallelFor(n, 256, o.Threads, func(lo, hi, _ int) {
			for i := lo; i < hi; i++ {
				c := int(codes[i*nm+m])
				vecmath.Axpy(res[i*d:(i+1)*d], -1, layer[c*d:(c+1)*d])
			}
		})
		if o.Progress != nil {
			o.Progress(m+1, nm)
		}
	}
	return nil
}

// distances writes the squared distances of the rows of res (rows x D) to
// the codewords of layer m into out (rows x Ksub), computed as extend
// computes them, so that a greedy EncodeBalanced matches EncodeLayers
// with a beam of 1.
func (r *RQ) distances(res []float32, rows, m int, out []float32) {
	rn := make([]float32, rows)
	vecmath.Norms2(res, r.D, rn)
	vecmath.InnerProducts(res, rows, r.Layer(m), Ksub, r.D, out)
	cn := r.cn[m*Ksub : (m+1)*Ksub]
	for i := range rows {
		row := out[i*Ksub : (i+1)*Ksub]
		for k, v := range row {
			row[k] = rn[i] + cn[k] - 2*v
		}
	}
}

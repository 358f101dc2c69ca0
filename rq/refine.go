package rq

import (
	"fmt"
	"math"

	"github.com/shelfdb/shelf/internal/vecmath"
)

// refine re-estimates every codebook at once for the codes of the n rows
// of x (n*M bytes): the least-squares codebooks minimizing
// sum_i ||x_i - sum_m C_m[c_im]||^2, held near the current ones by a
// small ridge so unused codewords keep their values (FAISS's
// Train_refine_codebook, retrain_AQ_codebook, without LAPACK). Layer by
// layer k-means fits each codebook to the residuals of the ones before
// it with the later ones still unknown; the joint fit corrects that. It
// solves the M*256 normal equations by Cholesky in float64: memory
// (M*256)^2 * 8 bytes (4.7 MB for 3 layers, 118 MB for 15).
func (r *RQ) refine(x []float32, n int, codes []byte, threads int) error {
	d, kk := r.D, r.M*Ksub
	a := make([]float64, kk*kk) // C^T C: code co-occurrence counts
	b := make([]float64, kk*d)  // C^T X, then the solution
	idx := make([]int, r.M)
	for i := range n {
		xi := x[i*d : (i+1)*d]
		for m := range r.M {
			idx[m] = m*Ksub + int(codes[i*r.M+m])
		}
		for _, p := range idx {
			row := b[p*d : (p+1)*d]
			for j, v := range xi {
				row[j] += float64(v)
			}
			for _, q := range idx {
				a[p*kk+q]++
			}
		}
	}
	// The ridge: lambda (B - B_old) added on both sides.
	var trace float64
	for p := range kk {
		trace += a[p*kk+p]
	}
	lambda := 1e-3 * max(trace/float64(kk), 1)
	for p := range kk {
		a[p*kk+p] += lambda
		old := r.Codebooks[p*d : (p+1)*d]
		for j, v := range old {
			b[p*d+j] += lambda * float64(v)
		}
	}
	if err := cholesky(a, kk, threads); err != nil {
		return err
	}
	choleskySolve(a, kk, b, d, threads)
	for i, v := range b {
		f := float32(v)
		if math.IsNaN(v) || math.IsInf(float64(f), 0) {
			return fmt.Errorf("rq: codebook refinement diverged")
		}
		r.Codebooks[i] = f
	}
	r.Prepare()
	return nil
}

// cholesky factors the symmetric positive definite k x k matrix a in
// place into L (lower triangle, row-major) with a = L L^T.
func cholesky(a []float64, k, threads int) error {
	for j := range k {
		rj := a[j*k : j*k+j]
		s := a[j*k+j]
		for _, v := range rj {
			s -= v * v
		}
		if s <= 0 {
			return fmt.Errorf("rq: codebook refinement: normal equations not positive definite at %d", j)
		}
		ljj := math.Sqrt(s)
		a[j*k+j] = ljj
		vecmath.ParallelFor(k-j-1, 64, threads, func(lo, hi, _ int) {
			for i := j + 1 + lo; i < j+1+hi; i++ {
				ri := a[i*k : i*k+j]
				t := a[i*k+j]
				for c, v := range ri {
					t -= v * rj[c]
				}
				a[i*k+j] = t / ljj
			}
		})
	}
	return nil
}

// choleskySolve solves L L^T X = B for the k x d right-hand sides B
// (row-major, overwritten by X), columns in parallel.
func choleskySolve(l []float64, k int, b []float64, d, threads int) {
	vecmath.ParallelFor(d, 8, threads, func(lo, hi, _ int) {
		y := make([]float64, k)
		for c := lo; c < hi; c++ {
			for i := range k {
				s := b[i*d+c]
				row := l[i*k : i*k+i]
				for j, v := range row {
					s -= v * y[j]
				}
				y[i] = s / l[i*k+i]
			}
			for i := k - 1; i >= 0; i-- {
				s := y[i]
				for j := i + 1; j < k; j++ {
					s -= l[j*k+i] * y[j]
				}
				y[i] = s / l[i*k+i]
			}
			for i := range k {
				b[i*d+c] = y[i]
			}
		}
	})
}

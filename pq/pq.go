package pq

import (
	"errors"
	"fmt"
	"math"

	"github.com/shelfdb/shelf/internal/vecmath"
	"github.com/shelfdb/shelf/kmeans"
)

// ErrInvalid is wrapped by errors New and Train return for bad parameters or
// training data.
var ErrInvalid = errors.New("pq: invalid argument")

// PQ is a product quantizer with 8-bit codes (faiss::ProductQuantizer).
type PQ struct {
	D     int // vector dimension
	M     int // number of sub-quantizers
	Nbits int // bits per sub-quantizer index; 8
	Dsub  int // D / M
	Ksub  int // 1 << Nbits
	// Centroids holds M*Ksub*Dsub floats: sub-quantizer m, centroid k, then
	// the Dsub coordinates.
	Centroids []float32

	// ct holds the centroids transposed per sub-quantizer (m, coordinate,
	// centroid) and cn their squared norms, built by Prepare: tables then
	// cost Dsub vector multiply-adds of Ksub floats per sub-quantizer.
	ct, cn []float32
}

// Prepare derives what fast table computation needs from Centroids. Call
// it after training or loading and before concurrent use; it must be
// called again if Centroids change. Without it tables are computed one
// dot product at a time.
func (p *PQ) Prepare() {
	ct := make([]float32, p.M*p.Dsub*p.Ksub)
	cn := make([]float32, p.M*p.Ksub)
	for m := range p.M {
		c := p.sub(m)
		for k := range p.Ksub {
			var s float32
			for j := range p.Dsub {
				v := c[k*p.Dsub+j]
				ct[(m*p.Dsub+j)*p.Ksub+k] = v
				s += v * v
			}
			cn[m*p.Ksub+k] = s
		}
	}
	p.ct, p.cn = ct, cn
}

func (p *PQ) prepared() bool { return len(p.ct) == p.M*p.Dsub*p.Ksub && len(p.cn) == p.M*p.Ksub }

// ipTableFast fills table with inner products (times scale) using the
// transposed centroids: table_m = (scale q_m) x ct_m, one GemvT of
// Dsub x Ksub per sub-quantizer.
func (p *PQ) ipTableFast(q, table []float32, scale float32) {
	var qs [64]float32
	for m := range p.M {
		qm := q[m*p.Dsub : (m+1)*p.Dsub]
		if scale != 1 && p.Dsub <= len(qs) {
			for j, v := range qm {
				qs[j] = scale * v
			}
			qm = qs[:p.Dsub]
		} else if scale != 1 {
			qm = make([]float32, p.Dsub)
			for j, v := range q[m*p.Dsub : (m+1)*p.Dsub] {
				qm[j] = scale * v
			}
		}
		vecmath.GemvT(table[m*p.Ksub:(m+1)*p.Ksub], qm, p.ct[m*p.Dsub*p.Ksub:(m+1)*p.Dsub*p.Ksub], p.Ksub)
	}
}

// New returns an untrained product quantizer for d-dimensional vectors cut
// into m sub-vectors of nbits-bit codes. d must be a positive multiple of m
// and nbits must be 8.
func New(d, m, nbits int) (*PQ, error) {
	if err := checkParams(d, m, nbits); err != nil {
		return nil, err
	}
	ksub := 1 << nbits
	return &PQ{
		D: d, M: m, Nbits: nbits, Dsub: d / m, Ksub: ksub,
		Centroids: make([]float32, d*ksub),
	}, nil
}

// maxDim bounds the dimension so that sizes computed from a decoded header
// cannot overflow and tables stay addressable.
const maxDim = 1 << 20

func checkParams(d, m, nbits int) error {
	switch {
	case d <= 0 || d > maxDim:
		return fmt.Errorf("%w: dimension %d, must be in [1, %d]", ErrInvalid, d, maxDim)
	case m <= 0:
		return fmt.Errorf("%w: M = %d, must be positive", ErrInvalid, m)
	case d%m != 0:
		return fmt.Errorf("%w: dimension %d is not a multiple of M = %d", ErrInvalid, d, m)
	case nbits != 8:
		return fmt.Errorf("%w: nbits = %d, only 8 is supported", ErrInvalid, nbits)
	}
	return nil
}

// CodeSize returns the number of bytes of one code (faiss code_size).
func (p *PQ) CodeSize() int { return (p.M*p.Nbits + 7) / 8 }

// sub returns the centroids of sub-quantizer m, Ksub rows of Dsub floats.
func (p *PQ) sub(m int) []float32 {
	n := p.Ksub * p.Dsub
	return p.Centroids[m*n : (m+1)*n]
}

// Train learns the sub-quantizers from the n rows of x (row-major, length
// D) with k-means in each sub-space, using FAISS's defaults (25 iterations,
// at most 256 points per centroid). Sub-spaces are trained concurrently on
// up to threads goroutines (GOMAXPROCS when <= 0), each with its own seed
// derived from seed, so the result does not depend on threads.
func (p *PQ) Train(x []float32, n int, seed int64, threads int) error {
	if n < 0 || len(x) != n*p.D {
		return fmt.Errorf("%w: len(x) = %d, want n*D = %d*%d", ErrInvalid, len(x), n, p.D)
	}
	if n < p.Ksub {
		return fmt.Errorf("%w: %d training vectors for %d centroids per sub-quantizer", ErrInvalid, n, p.Ksub)
	}
	errs := make([]error, p.M)
	cents := make([][]float32, p.M)
	vecmath.ParallelFor(p.M, 1, threads, func(m, _, _ int) {
		xs := make([]float32, n*p.Dsub)
		for i := range n {
			copy(xs[i*p.Dsub:(i+1)*p.Dsub], x[i*p.D+m*p.Dsub:])
		}
		cents[m], errs[m] = kmeans.Train(xs, n, p.Dsub, kmeans.Config{
			K:       p.Ksub,
			Seed:    seed + int64(m),
			Threads: 1,
		})
	})
	for m, err := range errs {
		if err != nil {
			// The sub-space is part of the message; the row index kmeans
			// reports is the training vector's.
			return fmt.Errorf("pq: sub-quantizer %d: %w", m, err)
		}
	}
	for m, c := range cents {
		copy(p.sub(m), c)
	}
	p.ct, p.cn = nil, nil
	return nil
}

// encodeRows is the number of vectors one goroutine encodes at a time.
const encodeRows = 1024

// Encode writes the codes of the n rows of x into codes (n*CodeSize()
// bytes), assigning each sub-vector to its nearest sub-centroid, on
// GOMAXPROCS goroutines. It panics if x or codes are too short.
func (p *PQ) Encode(x []float32, n int, codes []byte) {
	p.EncodeThreads(x, n, codes, 0)
}

// EncodeThreads is Encode on at most threads goroutines (GOMAXPROCS when
// <= 0).
func (p *PQ) EncodeThreads(x []float32, n int, codes []byte, threads int) {
	if len(x) < n*p.D || len(codes) < n*p.M {
		panic(fmt.Sprintf("pq: Encode of %d vectors with %d floats and %d code bytes", n, len(x), len(codes)))
	}
	norms := make([]float32, p.M*p.Ksub)
	for m := range p.M {
		vecmath.Norms2(p.sub(m), p.Dsub, norms[m*p.Ksub:(m+1)*p.Ksub])
	}
	t := vecmath.Threads(threads)
	type scratch struct {
		xs   []float32
		idx  []int32
		dist []float32
	}
	scr := make([]scratch, t)
	vecmath.ParallelFor(n, encodeRows, t, func(lo, hi, w int) {
		s := &scr[w]
		if s.xs == nil {
			s.xs = make([]float32, encodeRows*p.Dsub)
			s.idx = make([]int32, encodeRows)
			s.dist = make([]float32, encodeRows)
		}
		rows := hi - lo
		for m := range p.M {
			xs := s.xs[:rows*p.Dsub]
			for i := range rows {
				off := (lo+i)*p.D + m*p.Dsub
				copy(xs[i*p.Dsub:(i+1)*p.Dsub], x[off:off+p.Dsub])
			}
			vecmath.ArgMinL2(xs, rows, p.sub(m), p.Ksub, p.Dsub, norms[m*p.Ksub:(m+1)*p.Ksub], s.idx, s.dist, 1)
			for i, c := range s.idx[:rows] {
				codes[(lo+i)*p.M+m] = byte(c)
			}
		}
	})
}

// Decode writes the reconstruction of the n codes into x (n*D floats): each
// sub-vector becomes its sub-centroid. It panics if codes or x are too short.
func (p *PQ) Decode(codes []byte, n int, x []float32) {
	if len(x) < n*p.D || len(codes) < n*p.M {
		panic(fmt.Sprintf("pq: Decode of %d codes with %d code bytes and %d floats", n, len(codes), len(x)))
	}
	for i := range n {
		code := codes[i*p.M : (i+1)*p.M]
		for m, c := range code {
			src := p.sub(m)[int(c)*p.Dsub : (int(c)+1)*p.Dsub]
			copy(x[i*p.D+m*p.Dsub:], src)
		}
	}
}

// ComputeDistanceTable fills table (M*Ksub floats) with the squared L2
// distances from each sub-vector of the query q to each sub-centroid:
// table[m*Ksub+k] = ||q_m - c_mk||^2 (faiss compute_distance_table).
func (p *PQ) ComputeDistanceTable(q []float32, table []float32) {
	p.checkTable(q, table)
	if p.prepared() {
		// ||q - c||^2 = ||q||^2 + ||c||^2 - 2<q, c>
		p.ipTableFast(q, table, -2)
		for m := range p.M {
			qm := q[m*p.Dsub : (m+1)*p.Dsub]
			var qn float32
			for _, v := range qm {
				qn += v * v
			}
			t := table[m*p.Ksub : (m+1)*p.Ksub]
			cn := p.cn[m*p.Ksub : (m+1)*p.Ksub]
			for k := range t {
				t[k] = max(0, t[k]+qn+cn[k])
			}
		}
		return
	}
	for m := range p.M {
		qm := q[m*p.Dsub : (m+1)*p.Dsub]
		c := p.sub(m)
		t := table[m*p.Ksub : (m+1)*p.Ksub]
		for k := range t {
			t[k] = vecmath.L2Sq(qm, c[k*p.Dsub:(k+1)*p.Dsub])
		}
	}
}

// ComputeInnerProductTable fills table (M*Ksub floats) with the inner
// products of each sub-vector of q with each sub-centroid, so that summing a
// code's entries gives the inner product with the decoded vector (faiss
// compute_inner_prod_table).
func (p *PQ) ComputeInnerProductTable(q []float32, table []float32) {
	p.checkTable(q, table)
	if p.prepared() {
		p.ipTableFast(q, table, 1)
		return
	}
	for m := range p.M {
		qm := q[m*p.Dsub : (m+1)*p.Dsub]
		c := p.sub(m)
		t := table[m*p.Ksub : (m+1)*p.Ksub]
		for k := range t {
			t[k] = vecmath.Dot(qm, c[k*p.Dsub:(k+1)*p.Dsub])
		}
	}
}

func (p *PQ) checkTable(q, table []float32) {
	if len(q) < p.D || len(table) < p.M*p.Ksub {
		panic(fmt.Sprintf("pq: table for a query of %d floats into %d entries, need %d and %d",
			len(q), len(table), p.D, p.M*p.Ksub))
	}
}

// ADC returns the asymmetric distance of one code: the sum of its M table
// entries. It is the reference the scans are tested against.
func (p *PQ) ADC(table []float32, code []byte) float32 {
	var s float32
	for m, c := range code[:p.M] {
		s += table[m*p.Ksub+int(c)]
	}
	return s
}

// finite reports whether every value of x is finite.
func finite(x []float32) bool {
	for _, v := range x {
		if f := float64(v); math.IsNaN(f) || math.IsInf(f, 0) {
			return false
		}
	}
	return true
}

package rq

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/shelfdb/shelf/internal/vecmath"
	"github.com/shelfdb/shelf/kmeans"
)

// ErrInvalid is wrapped by the errors of New, Train and the encoders for
// bad parameters or data.
var ErrInvalid = errors.New("rq: invalid argument")

// Ksub is the number of codewords per layer (8-bit codes).
const Ksub = 256

// DefaultBeamSize is the beam of a new quantizer: FAISS's max_beam_size.
const DefaultBeamSize = 5

// maxDim, maxLayers and maxBeam bound what a header or a caller may ask
// for, so sizes computed from them cannot overflow.
const (
	maxDim    = 1 << 20
	maxLayers = 64
	maxBeam   = 1024
)

// RQ is a residual quantizer with 8-bit codes.
type RQ struct {
	D     int // vector dimension
	M     int // layers (codebooks)
	Nbits int // bits per layer code; 8
	// BeamSize is the number of partial codes kept per layer when
	// encoding and training (FAISS's max_beam_size; 1 is greedy).
	BeamSize int
	// Codebooks holds M*Ksub*D floats: layer m, codeword k, coordinates.
	Codebooks []float32
	// NormLevels holds the Ksub values a code's last byte selects: the
	// squared norm of the decoded vector, quantized (ascending).
	NormLevels []float32

	cn []float32 // ||codeword||^2, M*Ksub
	ct []float32 // codebooks transposed per layer (m, coordinate, k)
	cp *vecmath.Packed
}

// New returns an untrained residual quantizer of m layers of 8-bit codes
// for d-dimensional vectors.
func New(d, m, nbits int) (*RQ, error) {
	if err := checkParams(d, m, nbits); err != nil {
		return nil, err
	}
	return &RQ{D: d, M: m, Nbits: nbits, BeamSize: DefaultBeamSize}, nil
}

func checkParams(d, m, nbits int) error {
	switch {
	case d <= 0 || d > maxDim:
		return fmt.Errorf("%w: dimension %d, must be in [1, %d]", ErrInvalid, d, maxDim)
	case m <= 0 || m > maxLayers:
		return fmt.Errorf("%w: %d layers, must be in [1, %d]", ErrInvalid, m, maxLayers)
	case nbits != 8:
		return fmt.Errorf("%w: %d-bit codes, only 8-bit codes are supported", ErrInvalid, nbits)
	}
	return nil
}

// CodeSize is the bytes of one code: M codeword indexes and a norm level.
func (r *RQ) CodeSize() int { return r.M + 1 }

// Tables is the number of sub-tables of a distance table (CodeSize).
func (r *RQ) Tables() int { return r.M + 1 }

// Trained reports whether the codebooks and norm levels are present.
func (r *RQ) Trained() bool {
	return len(r.Codebooks) == r.M*Ksub*r.D && len(r.NormLevels) == Ksub
}

// Layer returns codebook m: Ksub rows of D floats.
func (r *RQ) Layer(m int) []float32 {
	n := Ksub * r.D
	return r.Codebooks[m*n : (m+1)*n]
}

func (r *RQ) beam() int {
	if r.BeamSize <= 0 {
		return 1
	}
	return min(r.BeamSize, maxBeam)
}

// Prepare derives what encoding and tables need from the codebooks; call
// it after changing Codebooks and before concurrent use (Train and
// UnmarshalBinary call it).
func (r *RQ) Prepare() {
	d := r.D
	r.cn = make([]float32, r.M*Ksub)
	r.ct = make([]float32, r.M*Ksub*d)
	r.cp = vecmath.Pack(r.Codebooks, r.M*Ksub, d)
	for m := range r.M {
		c := r.Layer(m)
		vecmath.Norms2(c, d, r.cn[m*Ksub:(m+1)*Ksub])
		t := r.ct[m*Ksub*d : (m+1)*Ksub*d]
		for k := range Ksub {
			for j := range d {
				t[j*Ksub+k] = c[k*d+j]
			}
		}
	}
}

func (r *RQ) prepared() bool { return len(r.cn) == r.M*Ksub && len(r.ct) == r.M*Ksub*r.D }

// TrainOptions tune Train.
type TrainOptions struct {
	// Iters is the number of k-means iterations per layer (0: 25).
	Iters int
	// Seed seeds the k-means runs and their samples.
	Seed int64
	// Threads bounds the goroutines (0: GOMAXPROCS).
	Threads int
	// Progress, when set, is called after each layer is trained.
	Progress func(layer, layers int)
	// Refine is the number of rounds of joint least-squares refinement
	// of the codebooks after the layers are trained, each followed by a
	// new encoding of the training vectors (0: none, the layer-by-layer
	// k-means of FAISS's default training and of RQ-KMeans semantic IDs;
	// IVF,RQ indexes train with 2, which brings the error below FAISS's
	// progressive-dimension training: bench/README.md).
	Refine int
}

// Train learns the codebooks from the n rows of x layer by layer, as
// faiss::ResidualQuantizer::train does: layer m is k-means on the
// residuals of the BeamSize best codes of layers 0..m-1 (at most 256 per
// codeword, drawn at random); then the norm levels are trained on the
// squared norms of the training vectors' reconstructions.
func (r *RQ) Train(x []float32, n int, o TrainOptions) error {
	if err := checkParams(r.D, r.M, r.Nbits); err != nil {
		return err
	}
	d := r.D
	if n < 0 || len(x) != n*d {
		return fmt.Errorf("%w: %d floats for %d vectors of dimension %d", ErrInvalid, len(x), n, d)
	}
	if n < Ksub {
		return fmt.Errorf("%w: %d training vectors for %d codewords per layer", ErrInvalid, n, Ksub)
	}
	if !finite(x) {
		return fmt.Errorf("%w: a training vector has a NaN or infinite component", ErrInvalid)
	}
	if o.Iters == 0 {
		o.Iters = 25
	}
	rng := rand.New(rand.NewPCG(uint64(o.Seed), 0x7e5d))
	r.Codebooks = make([]float32, r.M*Ksub*d)
	r.NormLevels = nil
	r.Prepare()
	var codes []byte // n x width x m: the beams so far, best first
	width := 1
	for m := range r.M {
		// A sample of the current residuals, as many as k-means uses.
		total := n * width
		ns := min(total, Ksub*kmeans.DefaultMaxPointsPerCentroid)
		pick := rng.Perm(total)[:ns]
		slices.Sort(pick)
		sample := make([]float32, ns*d)
		for i, p := range pick {
			r.residual(x[(p/width)*d:], codes[p*m:p*m+m], sample[i*d:(i+1)*d])
		}
		cents, err := kmeans.Train(sample, ns, d, kmeans.Config{
			K: Ksub, Iters: o.Iters, Seed: o.Seed + int64(m), Threads: o.Threads,
		})
		if err != nil {
			return fmt.Errorf("rq: layer %d: %w", m, err)
		}
		copy(r.Layer(m), cents)
		r.Prepare()
		codes, width = r.extend(x, n, codes, width, m, o.Threads)
		if o.Progress != nil {
			o.Progress(m+1, r.M)
		}
	}
	for range max(o.Refine, 0) {
		best := make([]byte, n*r.M)
		for i := range n {
			copy(best[i*r.M:(i+1)*r.M], codes[i*width*r.M:])
		}
		if err := r.refine(x, n, best, o.Threads); err != nil {
			return err
		}
		r.encodeLayers(x, n, best, o.Threads)
		codes, width = best, 1
	}
	norms := make([]float32, n)
	vecmath.ParallelFor(n, 256, o.Threads, func(lo, hi, _ int) {
		y := make([]float32, d)
		for i := lo; i < hi; i++ {
			r.decodeLayers(codes[i*width*r.M:i*width*r.M+r.M], y)
			norms[i] = vecmath.Dot(y, y)
		}
	})
	r.NormLevels = quantize1D(norms, Ksub)
	return nil
}

// residual writes x minus the codewords of code (one per layer, from
// layer 0) into out.
func (r *RQ) residual(x []float32, code []byte, out []float32) {
	d := r.D
	copy(out, x[:d])
	for m, c := range code {
		vecmath.Axpy(out, -1, r.Layer(m)[int(c)*d:(int(c)+1)*d])
	}
}

// decodeLayers writes the sum of code's codewords into out.
func (r *RQ) decodeLayers(code []byte, out []float32) {
	d := r.D
	clear(out[:d])
	for m, c := range code {
		vecmath.Add(out, out, r.Layer(m)[int(c)*d:(int(c)+1)*d])
	}
}

// encodeRows is the number of vectors one goroutine encodes at a time.
const encodeRows = 64

// extend is one step of the beam search: given, for each of the n rows of
// x, its width best codes of layers 0..m-1 (codes, n x width x m bytes),
// it returns the min(width*Ksub, BeamSize) best codes of layers 0..m
// (ascending squared distance to x, ties to the earlier beam and
// codeword) and that width.
func (r *RQ) extend(x []float32, n int, codes []byte, width, m, threads int) ([]byte, int) {
	d := r.D
	nw := min(width*Ksub, r.beam())
	out := make([]byte, n*nw*(m+1))
	vecmath.ParallelFor(n, encodeRows, threads, func(lo, hi, _ int) {
		rows := (hi - lo) * width
		res := make([]float32, rows*d)
		rn := make([]float32, rows)
		for i := lo; i < hi; i++ {
			for b := range width {
				j := (i-lo)*width + b
				at := (i*width + b) * m
				r.residual(x[i*d:], codes[at:at+m], res[j*d:(j+1)*d])
			}
		}
		vecmath.Norms2(res, d, rn)
		ip := make([]float32, rows*Ksub)
		vecmath.InnerProducts(res, rows, r.Layer(m), Ksub, d, ip)
		cn := r.cn[m*Ksub : (m+1)*Ksub]
		best := make([]cand, 0, nw)
		for i := lo; i < hi; i++ {
			best = best[:0]
			for b := range width {
				j := (i-lo)*width + b
				row := ip[j*Ksub : (j+1)*Ksub]
				for k, v := range row {
					dist := rn[j] + cn[k] - 2*v
					if len(best) == nw && dist >= best[nw-1].dist {
						continue
					}
					best = insertCand(best, nw, cand{dist, int32(b), int32(k)})
				}
			}
			for w, c := range best {
				dst := out[(i*nw+w)*(m+1):]
				src := codes[(i*width+int(c.beam))*m:]
				copy(dst[:m], src[:m])
				dst[m] = byte(c.k)
			}
		}
	})
	return out, nw
}

type cand struct {
	dist    float32
	beam, k int32
}

// insertCand inserts c into best (ascending, at most nw long) after the
// candidates of equal distance.
func insertCand(best []cand, nw int, c cand) []cand {
	i := len(best)
	for i > 0 && best[i-1].dist > c.dist {
		i--
	}
	if len(best) < nw {
		best = append(best, cand{})
	}
	copy(best[i+1:], best[i:len(best)-1])
	best[i] = c
	return best
}

// EncodeLayers writes the M codeword indexes of each of the n rows of x
// into codes (n*M bytes), by beam search with BeamSize, on at most
// threads goroutines (0: GOMAXPROCS).
func (r *RQ) EncodeLayers(x []float32, n int, codes []byte, threads int) error {
	if err := r.checkEncode(x, n, codes, r.M); err != nil {
		return err
	}
	r.encodeLayers(x, n, codes, threads)
	return nil
}

func (r *RQ) encodeLayers(x []float32, n int, codes []byte, threads int) {
	// Blocks of rows keep the beams' memory at block x BeamSize x M.
	const block = 4096
	for lo := 0; lo < n; lo += block {
		hi := min(lo+block, n)
		var cur []byte
		width := 1
		for m := range r.M {
			cur, width = r.extend(x[lo*r.D:hi*r.D], hi-lo, cur, width, m, threads)
		}
		for i := range hi - lo {
			copy(codes[(lo+i)*r.M:(lo+i+1)*r.M], cur[i*width*r.M:])
		}
	}
}

func (r *RQ) checkEncode(x []float32, n int, codes []byte, size int) error {
	if len(r.Codebooks) != r.M*Ksub*r.D || (size > r.M && len(r.NormLevels) != Ksub) {
		return fmt.Errorf("%w: quantizer not trained", ErrInvalid)
	}
	if !r.prepared() {
		r.Prepare()
	}
	if n < 0 || len(x) != n*r.D || len(codes) < n*size {
		return fmt.Errorf("%w: %d floats and %d code bytes for %d vectors of dimension %d", ErrInvalid, len(x), len(codes), n, r.D)
	}
	return nil
}

// Encode writes the codes of the n rows of x (n*CodeSize() bytes): the
// layer codes of EncodeLayers, then the norm level of the decoded vector.
func (r *RQ) Encode(x []float32, n int, codes []byte, threads int) error {
	if err := r.checkEncode(x, n, codes, r.CodeSize()); err != nil {
		return err
	}
	lc := make([]byte, n*r.M)
	r.encodeLayers(x, n, lc, threads)
	cs := r.CodeSize()
	vecmath.ParallelFor(n, 256, threads, func(lo, hi, _ int) {
		y := make([]float32, r.D)
		for i := lo; i < hi; i++ {
			code := codes[i*cs : (i+1)*cs]
			copy(code, lc[i*r.M:(i+1)*r.M])
			r.decodeLayers(code[:r.M], y)
			code[r.M] = r.NormCode(vecmath.Dot(y, y))
		}
	})
	return nil
}

// NormCode returns the index of the norm level nearest to v.
func (r *RQ) NormCode(v float32) byte {
	lv := r.NormLevels
	i, _ := slices.BinarySearch(lv, v)
	switch {
	case i == len(lv):
		i--
	case i > 0 && v-lv[i-1] <= lv[i]-v:
		i--
	}
	return byte(i)
}

// Decode writes the reconstruction of n codes of size bytes each (M or
// M+1: a norm byte is ignored) into x (n*D floats).
func (r *RQ) Decode(codes []byte, size, n int, x []float32) error {
	if size < r.M || len(codes) < n*size || len(x) < n*r.D || len(r.Codebooks) != r.M*Ksub*r.D {
		return fmt.Errorf("%w: decode of %d codes of %d bytes from %d bytes into %d floats", ErrInvalid, n, size, len(codes), len(x))
	}
	for i := range n {
		r.decodeLayers(codes[i*size:i*size+r.M], x[i*r.D:(i+1)*r.D])
	}
	return nil
}

// ComputeInnerProductTable fills table ((M+1)*Ksub floats) so that the
// sum of a code's entries is the inner product of q with its decoded
// vector: <q, C_m[k]> in sub-table m, zeros in the norm sub-table.
func (r *RQ) ComputeInnerProductTable(q, table []float32) {
	r.checkTable(q, table)
	for m := range r.M {
		vecmath.GemvT(table[m*Ksub:(m+1)*Ksub], q[:r.D], r.ct[m*Ksub*r.D:(m+1)*Ksub*r.D], Ksub)
	}
	clear(table[r.M*Ksub : (r.M+1)*Ksub])
}

// ComputeInnerProductTables fills the inner-product tables of nq
// queries (nq rows of (M+1)*Ksub floats, each as
// ComputeInnerProductTable's) with one blocked matrix product of the
// queries and all codewords: the fast way for a block of queries.
func (r *RQ) ComputeInnerProductTables(q []float32, nq int, tables []float32) {
	mk, tk := r.M*Ksub, (r.M+1)*Ksub
	if nq < 0 || len(q) < nq*r.D || len(tables) < nq*tk {
		panic(fmt.Sprintf("rq: tables of %d queries from %d floats into %d", nq, len(q), len(tables)))
	}
	if nq == 0 {
		return
	}
	r.checkTable(q, tables)
	// The products land in the first nq*mk floats; rows are then moved
	// to their place from the last down (row i moves up by i*Ksub), so
	// nothing is overwritten before it is moved.
	r.cp.InnerProducts(q[:nq*r.D], nq, tables[:nq*mk])
	for i := nq - 1; i >= 0; i-- {
		copy(tables[i*tk:i*tk+mk], tables[i*mk:(i+1)*mk])
		clear(tables[i*tk+mk : (i+1)*tk])
	}
}

// ComputeDistanceTable fills table ((M+1)*Ksub floats) so that the sum of
// a code's entries is the squared L2 distance from q to its decoded
// vector, with the decoded norm quantized: ||q||^2 - 2<q, C_0[k]> in
// sub-table 0, -2<q, C_m[k]> in sub-table m, the norm levels last.
func (r *RQ) ComputeDistanceTable(q, table []float32) {
	r.ComputeInnerProductTable(q, table)
	qn := vecmath.Dot(q[:r.D], q[:r.D])
	vecmath.Axpy(table[:r.M*Ksub], -3, table[:r.M*Ksub]) // t = -2 t
	for k := range Ksub {
		table[k] += qn
	}
	copy(table[r.M*Ksub:], r.NormLevels)
}

// NormTable fills table ((M+1)*Ksub floats) so that the sum of a code's
// entries is its decoded vector's squared norm, quantized: zeros, then
// the norm levels.
func (r *RQ) NormTable(table []float32) {
	clear(table[:r.M*Ksub])
	copy(table[r.M*Ksub:(r.M+1)*Ksub], r.NormLevels)
}

func (r *RQ) checkTable(q, table []float32) {
	if !r.prepared() || len(r.NormLevels) != Ksub {
		panic("rq: table of an untrained or unprepared quantizer")
	}
	if len(q) < r.D || len(table) < (r.M+1)*Ksub {
		panic(fmt.Sprintf("rq: table for a query of %d floats into %d entries, need %d and %d",
			len(q), len(table), r.D, (r.M+1)*Ksub))
	}
}

// TrainNormLevels returns Ksub norm levels (ascending) for the squared
// norms of decoded vectors, as Train sets NormLevels: the 1D k-means of
// the norms. For codes whose norms were stored another way (a FAISS file
// of another search type), so that NormCode can re-encode them. It needs
// at least one norm, all finite.
func TrainNormLevels(norms []float32) ([]float32, error) {
	if len(norms) == 0 || !finite(norms) {
		return nil, fmt.Errorf("%w: norm levels from %d norms (none, or not all finite)", ErrInvalid, len(norms))
	}
	return quantize1D(norms, Ksub), nil
}

// quantize1D returns k levels (ascending) minimizing the squared error of
// v by Lloyd's algorithm in one dimension, started from the quantiles:
// a local optimum, where FAISS's norm levels come from an exact 1D
// k-means (not compared; what the levels cost is measured instead:
// search with them has the recall of exact decoding, bench/README.md).
func quantize1D(v []float32, k int) []float32 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	lv := make([]float32, k)
	for i := range lv {
		lv[i] = s[min(n-1, (2*i+1)*n/(2*k))]
	}
	bounds := make([]int, k+1)
	for range 50 {
		// Cell i holds s[bounds[i]:bounds[i+1]]: the values nearer to
		// lv[i] than to its neighbours.
		bounds[0], bounds[k] = 0, n
		for i := 1; i < k; i++ {
			mid := lv[i-1] + (lv[i]-lv[i-1])/2
			bounds[i], _ = slices.BinarySearch(s, mid)
			bounds[i] = max(bounds[i], bounds[i-1])
		}
		moved := false
		for i := range k {
			if bounds[i+1] == bounds[i] {
				continue // an empty cell keeps its level
			}
			var sum float64
			for _, x := range s[bounds[i]:bounds[i+1]] {
				sum += float64(x)
			}
			c := float32(sum / float64(bounds[i+1]-bounds[i]))
			if c != lv[i] {
				lv[i], moved = c, true
			}
		}
		slices.Sort(lv)
		if !moved {
			break
		}
	}
	return lv
}

func finite(x []float32) bool {
	for _, v := range x {
		if f := float64(v); math.IsNaN(f) || math.IsInf(f, 0) {
			return false
		}
	}
	return true
}

package ivf

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/shelfdb/shelf/internal/vecmath"
)

// Metric is how vectors are compared (the project's one metric type).
type Metric = vecmath.Metric

// The metrics.
const (
	// L2 is the squared Euclidean distance (smaller is closer).
	L2 = vecmath.L2
	// InnerProduct is the dot product (larger is closer).
	InnerProduct = vecmath.InnerProduct
	// Cosine is the cosine similarity (larger is closer): vectors are
	// L2-normalized on add and search, and the index remembers it.
	Cosine = vecmath.Cosine
)

// ParseMetric reads "l2", "ip" (or "inner_product") and "cosine".
func ParseMetric(s string) (Metric, error) {
	m, err := vecmath.ParseMetric(s)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrParams, err)
	}
	return m, nil
}

// Sentinel errors.
var (
	// ErrParams marks invalid index parameters or factory strings.
	ErrParams = errors.New("ivf: invalid parameters")
	// ErrNotTrained is returned when adding to or searching an untrained index.
	ErrNotTrained = errors.New("ivf: index not trained")
	// ErrDim is returned for vectors of the wrong dimension.
	ErrDim = errors.New("ivf: wrong dimension")
	// ErrInput marks bad vectors or ids (NaN, infinities, lengths).
	ErrInput = errors.New("ivf: invalid input")
	// ErrCorrupt marks an index file that fails validation.
	ErrCorrupt = errors.New("ivf: corrupt index")
	// ErrIncompatible is returned when two indexes or codes do not share
	// the same training.
	ErrIncompatible = errors.New("ivf: incompatible indexes")
	// ErrExists is returned when creating an index where one, or other
	// files, already are.
	ErrExists = errors.New("ivf: directory in use")
	// ErrIndexExists is the ErrExists of a directory that holds an index.
	ErrIndexExists = fmt.Errorf("%w: it holds an index", ErrExists)
	// ErrDuplicateIDs is returned by a merge that would give two vectors
	// one id (unless MergeOptions.AllowDuplicateIDs).
	ErrDuplicateIDs = errors.New("ivf: duplicate ids")
)

// Params describe an index.
type Params struct {
	D     int // vector dimension
	NList int // number of inverted lists
	// M is the number of PQ sub-quantizers (bytes per code with 8 bits),
	// or of RQ layers; unused with Flat.
	M int
	// Nbits is the bits per sub-quantizer code; only 8 is supported.
	Nbits int
	// Flat stores vectors uncompressed (IVF<n>,Flat) instead of PQ codes.
	Flat bool
	// RQ stores residual quantizer codes (IVF<n>,RQ<M>x8): M layers of
	// 256 codewords and a byte for the quantized norm, as FAISS's
	// IndexIVFResidualQuantizer with RQ<M>x8_Ncqint8.
	RQ     bool
	Metric Metric
	// ByResidual encodes x - centroid instead of x (FAISS's default, true
	// from the factory).
	ByResidual bool
}

// CodeSize is the number of bytes one vector takes in a list.
func (p Params) CodeSize() int {
	if p.Flat {
		return 4 * p.D
	}
	if p.RQ {
		return p.M + 1
	}
	return (p.M*p.Nbits + 7) / 8
}

// Validate checks the parameters.
func (p Params) Validate() error {
	switch {
	case p.D <= 0 || p.D > maxDim:
		return fmt.Errorf("%w: dimension %d", ErrParams, p.D)
	case p.NList <= 0 || p.NList > maxLists:
		return fmt.Errorf("%w: %d lists", ErrParams, p.NList)
	case p.Metric < L2 || p.Metric > Cosine:
		return fmt.Errorf("%w: metric %d", ErrParams, int(p.Metric))
	}
	switch {
	case p.Flat && p.RQ:
		return fmt.Errorf("%w: both Flat and RQ", ErrParams)
	case p.Flat:
		return nil
	case p.RQ && (p.M <= 0 || p.M > maxRQLayers):
		return fmt.Errorf("%w: RQ%d: 1 to %d layers", ErrParams, p.M, maxRQLayers)
	case p.RQ && p.Nbits != 8:
		return fmt.Errorf("%w: RQ%dx%d: only 8-bit layers (RQ%dx8) are supported", ErrParams, p.M, p.Nbits, p.M)
	case p.RQ:
		return nil
	case p.M <= 0 || p.D%p.M != 0:
		return fmt.Errorf("%w: PQ%d does not divide dimension %d", ErrParams, p.M, p.D)
	case p.Nbits != 8:
		return fmt.Errorf("%w: %d-bit PQ codes (only 8-bit codes are supported)", ErrParams, p.Nbits)
	}
	return nil
}

// Factory returns the FAISS-style factory string of p.
func (p Params) Factory() string {
	if p.Flat {
		return fmt.Sprintf("IVF%d,Flat", p.NList)
	}
	if p.RQ {
		return fmt.Sprintf("IVF%d,RQ%dx%d", p.NList, p.M, p.Nbits)
	}
	if p.Nbits != 8 {
		return fmt.Sprintf("IVF%d,PQ%dx%d", p.NList, p.M, p.Nbits)
	}
	return fmt.Sprintf("IVF%d,PQ%d", p.NList, p.M)
}

// ParseFactory reads a FAISS-style factory string: "IVF1024,PQ16",
// "IVF1024,PQ16x8", "IVF1024,RQ4x8" (FAISS's RQ4x8_Ncqint8, which is
// accepted too) or "IVF1024,Flat", for vectors of dimension d. Codes are
// 8-bit: other bit counts (FAISS's PQ16x4, PQ16x4fs) and other RQ norm
// encodings are refused with an error that says so.
func ParseFactory(s string, d int, metric Metric) (Params, error) {
	p := Params{D: d, Metric: metric, Nbits: 8, ByResidual: true}
	parts := strings.Split(strings.ReplaceAll(s, " ", ""), ",")
	if len(parts) != 2 || !strings.HasPrefix(parts[0], "IVF") {
		return p, fmt.Errorf("%w: factory %q: want IVF<nlist>,PQ<M> (8-bit codes, M bytes per vector), IVF<nlist>,RQ<M>x8 (M layers, M+1 bytes) or IVF<nlist>,Flat", ErrParams, s)
	}
	n, err := strconv.Atoi(parts[0][3:])
	if err != nil {
		return p, fmt.Errorf("%w: factory %q: bad list count %q", ErrParams, s, parts[0][3:])
	}
	p.NList = n
	switch {
	case parts[1] == "Flat":
		p.Flat = true
	case strings.HasPrefix(parts[1], "PQ"):
		spec := parts[1][2:]
		if i := strings.IndexByte(spec, 'x'); i >= 0 {
			nbits := spec[i+1:]
			spec = spec[:i]
			if nbits != "8" {
				what := fmt.Sprintf("PQ%sx%s is not supported", spec, nbits)
				if b, err := strconv.Atoi(nbits); err == nil {
					what = fmt.Sprintf("%d-bit PQ codes are not supported", b)
				}
				return p, fmt.Errorf("%w: factory %q: %s, only 8-bit codes (PQ%s, or PQ%sx8)", ErrParams, s, what, spec, spec)
			}
		}
		if p.M, err = strconv.Atoi(spec); err != nil {
			return p, fmt.Errorf("%w: factory %q: bad PQ size %q", ErrParams, s, spec)
		}
	case strings.HasPrefix(parts[1], "RQ"):
		if p.M, p.Nbits, err = parseRQ(parts[1]); err != nil {
			return p, fmt.Errorf("%w: factory %q: %v", ErrParams, s, err)
		}
		p.RQ = true
	default:
		return p, fmt.Errorf("%w: factory %q: unknown encoding %q (want PQ<M>, RQ<M>x8 or Flat)", ErrParams, s, parts[1])
	}
	return p, p.Validate()
}

// maxRQLayers bounds the layers of an RQ code.
const maxRQLayers = 64

// parseRQ reads "RQ<M>x<nbits>" with an optional "_Ncqint8" (the norm
// byte Shelf always stores); "RQ<M>" means 8-bit layers.
func parseRQ(spec string) (m, nbits int, err error) {
	body, norm, _ := strings.Cut(spec[2:], "_")
	if norm != "" && norm != "Ncqint8" {
		return 0, 0, fmt.Errorf("RQ norm encoding %q is not supported: Shelf stores the norm in one byte (_Ncqint8)", "_"+norm)
	}
	ms, bs, hasBits := strings.Cut(body, "x")
	if m, err = strconv.Atoi(ms); err != nil || m <= 0 {
		return 0, 0, fmt.Errorf("bad RQ layer count %q", ms)
	}
	nbits = 8
	if hasBits {
		if nbits, err = strconv.Atoi(bs); err != nil {
			return 0, 0, fmt.Errorf("bad RQ bit count %q", bs)
		}
	}
	return m, nbits, nil
}

package faissio

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"github.com/shelfdb/shelf/internal/vecmath"
	"github.com/shelfdb/shelf/rq"
)

// IndexIVFResidualQuantizer ("IwRQ") files. FAISS 1.7.3 writes, after the
// IVF header and the direct map:
//
//	code_size u64
//	ResidualQuantizer = AdditiveQuantizer fields:
//	  d, M u64; nbits: u64 count (M) + M u64; is_trained u8;
//	  codebooks: u64 count + floats (M x 2^nbits x d);
//	  search_type i32; norm_min, norm_max f32;
//	  for ST_norm_cqint8/cqint4/lsq2x4/rq2x4: qnorm, u64 count + floats
//	  (256 or 16 levels); for ST_norm_lsq2x4/rq2x4: norm_tabs, u64 count
//	  + floats;
//	then train_type i32, max_beam_size i32
//	by_residual u8, use_precomputed_table i32
//	the inverted lists, as for IwPQ
//
// A code is FAISS's bit string of the M layer codes, then the norm, least
// significant bit first: with 8-bit layers, M layer bytes then the norm's
// bits (0 to 32 of them, by search type). Shelf's code is M layer bytes and
// a byte indexing 256 ascending norm levels: FAISS's ST_norm_cqint8, whose
// codes are taken one to one (the norm byte renumbered if FAISS's levels
// are not ascending); for the other search types the norm is re-encoded
// from the decoded layers (rqCodes).

// FAISS's AdditiveQuantizer::Search_type_t.
const (
	stDecompress  = 0
	stLUTNonorm   = 1
	stNormFromLUT = 2
	stNormFloat   = 3
	stNormQint8   = 4
	stNormQint4   = 5
	stNormCqint8  = 6
	stNormCqint4  = 7
	stNormLsq2x4  = 8
	stNormRq2x4   = 9
)

var searchTypeNames = [...]string{"ST_decompress", "ST_LUT_nonorm", "ST_norm_from_LUT", "ST_norm_float",
	"ST_norm_qint8", "ST_norm_qint4", "ST_norm_cqint8", "ST_norm_cqint4", "ST_norm_lsq2x4", "ST_norm_rq2x4"}

// normBits is the bits a code's norm takes for a search type (FAISS's
// AdditiveQuantizer::set_derived_values).
func normBits(st int32) int {
	switch st {
	case stNormFloat:
		return 32
	case stNormQint8, stNormCqint8, stNormLsq2x4, stNormRq2x4:
		return 8
	case stNormQint4, stNormCqint4:
		return 4
	}
	return 0
}

// rqTrainDefault is FAISS's ResidualQuantizer::Train_default: each layer
// trained by k-means on the residuals of the layers before, as Shelf's rq
// trains. Written by Write; on read only the Skip_codebook_tables flag
// would matter to FAISS, and not at all to Shelf.
const rqTrainDefault = 0

// normSample bounds the codes decoded to train norm levels on import.
const normSample = 1 << 16

// rqCodes turns FAISS codes of fileCS bytes into Shelf's of M+1.
type rqCodes struct {
	q      *rq.RQ
	m      int
	fileCS int
	// perm renumbers the norm byte of ST_norm_cqint8 codes when FAISS's
	// levels were not ascending (nil: kept).
	perm []byte
	// derive re-encodes the norm from the decoded layers (the other
	// search types).
	derive bool
	// normMin and normMax are the file's; they space the norm levels of
	// an empty index, which has no codes to train them on.
	normMin, normMax float32
}

// convert returns the Shelf codes of the n FAISS codes in raw.
func (c *rqCodes) convert(raw []byte, n int) []byte {
	cs := c.m + 1
	out := make([]byte, n*cs)
	var y []float32
	if c.derive {
		y = make([]float32, c.q.D)
	}
	for i := range n {
		src, dst := raw[i*c.fileCS:(i+1)*c.fileCS], out[i*cs:(i+1)*cs]
		copy(dst, src[:c.m])
		switch {
		case c.derive:
			dst[c.m] = c.q.NormCode(c.norm(src, y))
		case c.perm != nil:
			dst[c.m] = c.perm[src[c.m]]
		default:
			dst[c.m] = src[c.m]
		}
	}
	return out
}

// norm is the squared norm of code's decoded layers (y is scratch).
func (c *rqCodes) norm(code []byte, y []float32) float32 {
	// The sizes are checked at parse time: Decode cannot fail.
	if err := c.q.Decode(code, c.fileCS, 1, y); err != nil {
		panic(fmt.Sprintf("faissio: RQ decode: %v", err))
	}
	return vecmath.Dot(y, y)
}

// rqNormLevels trains the norm levels of a file whose norms are not
// FAISS's 256 levels: on the decoded norms of at most normSample codes,
// evenly spread over the lists in their order, read with positioned reads.
func (s *listSource) rqNormLevels() ([]float32, error) {
	ff, c := s.ff, s.ff.rqc
	var total int64
	for _, n := range ff.sizes {
		total += n
	}
	if total == 0 {
		// Nothing to train on and nothing to encode: levels spread
		// evenly over FAISS's norm range, so the index can take adds.
		lv := make([]float32, rq.Ksub)
		lo, hi := float64(c.normMin), float64(c.normMax)
		if !(lo <= hi) || math.IsInf(lo, 0) || math.IsInf(hi, 0) {
			return lv, nil
		}
		for i := range lv {
			lv[i] = float32(lo + (hi-lo)*float64(i)/float64(rq.Ksub-1))
		}
		return lv, nil
	}
	ns := min(total, normSample)
	norms := make([]float32, 0, ns)
	code := make([]byte, c.fileCS)
	y := make([]float32, c.q.D)
	var base int64 // entries of the lists before l
	l := 0
	for i := range ns {
		g := i * total / ns // the entry sampled, in list order
		for g >= base+ff.sizes[l] {
			base += ff.sizes[l]
			l++
		}
		at := ff.codeOff[l] + (g-base)*int64(c.fileCS)
		if err := s.readAt(code, at, l, "codes"); err != nil {
			return nil, err
		}
		norms = append(norms, c.norm(code, y))
	}
	lv, err := rq.TrainNormLevels(norms)
	if err != nil {
		return nil, fmt.Errorf("faissio: FAISS file %s: RQ norm levels: %w", ff.dname, err)
	}
	return lv, nil
}

// parseRQ reads what follows the direct map of an "IwRQ" file up to the
// inverted lists: the code size, the ResidualQuantizer, by_residual and
// use_precomputed_table. d is the index's dimension.
func (ff *indexFile) parseRQ(r *reader, d int) error {
	info := &ff.info
	csAt := r.off
	cs, err := r.small("code_size", 1, 1<<20)
	if err != nil {
		return err
	}
	at := r.off
	qd, err := r.small("RQ d", 1, 1<<16)
	if err != nil {
		return err
	}
	if qd != int64(d) {
		return r.corrupt("RQ d", at, "residual quantizer of dimension %d in an index of dimension %d", qd, d)
	}
	m, err := r.small("RQ M", 1, 1<<16)
	if err != nil {
		return err
	}
	at = r.off
	nn, err := r.count("RQ nbits", 8)
	if err != nil {
		return err
	}
	if nn != m {
		return r.corrupt("RQ nbits", at, "%d bit counts for %d layers", nn, m)
	}
	for i := range m {
		at := r.off
		nb, err := r.small("RQ nbits", 1, 64)
		if err != nil {
			return err
		}
		if nb != 8 {
			return r.unsupported("RQ layer %d has nbits = %d (at byte %d); Shelf reads 8-bit layers (RQ%dx8)", i, nb, at, m)
		}
	}
	trAt := r.off
	trained, err := r.bool("RQ is_trained")
	if err != nil {
		return err
	}
	if !trained {
		return r.corrupt("RQ is_trained", trAt, "the residual quantizer of a trained index is not trained")
	}
	at = r.off
	ncb, err := r.count("RQ codebooks", 4)
	if err != nil {
		return err
	}
	if ncb != m*rq.Ksub*qd {
		return r.corrupt("RQ codebooks", at, "%d floats, RQ%dx8 of dimension %d needs %d", ncb, m, qd, m*rq.Ksub*qd)
	}
	cbAt := r.off
	cb, err := r.floats("RQ codebooks", ncb)
	if err != nil {
		return err
	}
	stAt := r.off
	st, err := r.i32("RQ search_type")
	if err != nil {
		return err
	}
	if st < 0 || int(st) >= len(searchTypeNames) {
		return r.corrupt("RQ search_type", stAt, "search type %d", st)
	}
	info.SearchType = searchTypeNames[st]
	nb, err := r.next("RQ norm_min, norm_max", 8)
	if err != nil {
		return err
	}
	c := &rqCodes{m: int(m), fileCS: int(cs), derive: st != stNormCqint8,
		normMin: math.Float32frombits(binary.LittleEndian.Uint32(nb)), normMax: math.Float32frombits(binary.LittleEndian.Uint32(nb[4:]))}
	var levels []float32
	switch st {
	case stNormCqint8, stNormCqint4, stNormLsq2x4, stNormRq2x4:
		at := r.off
		n, err := r.count("RQ qnorm", 4)
		if err != nil {
			return err
		}
		want := int64(rq.Ksub)
		if st == stNormCqint4 {
			want = 16
		}
		if n != want {
			return r.corrupt("RQ qnorm", at, "%d norm levels for %s, want %d", n, info.SearchType, want)
		}
		if levels, err = r.floats("RQ qnorm", n); err != nil {
			return err
		}
	}
	if st == stNormLsq2x4 || st == stNormRq2x4 {
		// The tables of the 2x4 norm quantizer: not needed, the norms
		// are re-encoded.
		n, err := r.count("RQ norm_tabs", 4)
		if err != nil {
			return err
		}
		if err := r.skip("RQ norm_tabs", 4*n); err != nil {
			return err
		}
	}
	if want := (m*8 + int64(normBits(st)) + 7) / 8; cs != want {
		return r.corrupt("code_size", csAt, "code size %d for RQ%dx8 with %s, which needs %d", cs, m, info.SearchType, want)
	}
	if _, err := r.i32("RQ train_type"); err != nil {
		return err
	}
	at = r.off
	beam, err := r.i32("RQ max_beam_size")
	if err != nil {
		return err
	}
	if beam <= 0 {
		return r.corrupt("RQ max_beam_size", at, "beam size %d", beam)
	}
	if beam > 1024 {
		return r.unsupported("RQ max_beam_size %d (at byte %d): Shelf encodes with beams of at most 1024", beam, at)
	}
	if info.ByResidual, err = r.bool("by_residual"); err != nil {
		return err
	}
	at = r.off
	upt, err := r.i32("use_precomputed_table")
	if err != nil {
		return err
	}
	if upt < -1 || upt > 2 {
		return r.corrupt("use_precomputed_table", at, "value %d", upt)
	}
	if m > 64 {
		return r.unsupported("RQ%dx8: Shelf's residual quantizers have at most 64 layers", m)
	}

	// FAISS's cqint8 levels become Shelf's, ascending, the codes' norm
	// bytes renumbered to match.
	var shelfLevels []float32
	if st == stNormCqint8 {
		order := make([]int, rq.Ksub)
		for i := range order {
			order[i] = i
		}
		slices.SortStableFunc(order, func(a, b int) int {
			switch {
			case levels[a] < levels[b]:
				return -1
			case levels[a] > levels[b]:
				return 1
			}
			return 0
		})
		shelfLevels = make([]float32, rq.Ksub)
		sorted := true
		c.perm = make([]byte, rq.Ksub)
		for pos, old := range order {
			shelfLevels[pos] = levels[old]
			c.perm[old] = byte(pos)
			sorted = sorted && pos == old
		}
		if sorted {
			c.perm = nil
		}
	}
	q, err := rq.FromCodebooks(d, int(m), cb, shelfLevels, int(beam))
	if err != nil {
		return r.corrupt("RQ codebooks", cbAt, "%v", err)
	}
	c.q = q
	ff.rq, ff.rqc = q, c
	info.M, info.Nbits = int(m), 8
	ff.fileCS = int(cs)
	return nil
}

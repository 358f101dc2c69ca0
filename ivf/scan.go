package ivf

import (
	"encoding/binary"
	"fmt"
	"math"
	"sync"

	"github.com/shelfdb/shelf/internal/vecmath"
	"github.com/shelfdb/shelf/pq"
)

// The one CPU list scan. Search, RangeSearch and CPUScanner.Scan all
// scan a block of queries with scanLists; only the scoring of a (query,
// list) pair differs, and it sits behind listScorer: a PQ table (a
// ScanRequest's terms, or a residual's table) or IVF-Flat's exact
// distances. Scores are internal: smaller is better.

// listScorer scores the entries of one probed list for each query that
// probes it. Each worker of scanLists owns one, so its scratch needs no
// lock.
type listScorer interface {
	// list prepares the scorer for list l, whose n entries have codes.
	list(l int, codes []byte, n int) error
	// topK offers the scores of the list's entries for probe j of the
	// request to h (reset to the request's K).
	topK(j int, ids []int64, codes []byte, h *vecmath.TopK)
	// scores returns the scores of the list's entries for probe j, valid
	// until the next call.
	scores(j int, codes []byte) []float32
}

// scanLists scans the probed lists of req: workers take lists as src's
// stream hands them out (streamOf: a list, or a chunk of one, read once)
// and score each for every query that probes it, each worker
// keeping its own per-query results: with req.K > 0 the K best in heaps
// that a pool keeps across blocks, with K == 0 every entry scoring below
// radius. Then the workers' results of each query are merged (in
// parallel for top-k, which matters at nprobe 1, where the merge is a
// tenth of the work) and handed to emit, sorted by score then id, for
// every query of the block, probed or not. For top-k, emit runs
// concurrently for distinct queries and its slices are valid during the
// call only; range results are emit's to keep.
func scanLists(req *ScanRequest, src ListSource, threads int, radius float32, newScorer func() listScorer, emit func(qi int, d []float32, id []int64)) error {
	nq, k := req.NQ, req.K
	type worker struct {
		sc    listScorer
		heaps []*vecmath.TopK // query -> heap, nil while the query has none
		pool  *heapSet
		rd    [][]float32 // range search: query -> scores and ids
		rid   [][]int64
	}
	ws := make([]worker, threads)
	for w := range ws {
		ws[w].sc = newScorer()
		if k > 0 {
			ws[w].heaps = make([]*vecmath.TopK, nq)
			ws[w].pool = getHeapSet(nq)
			defer heapPool.Put(ws[w].pool)
		} else {
			ws[w].rd, ws[w].rid = make([][]float32, nq), make([][]int64, nq)
		}
	}
	err := streamOf(src).Stream(req.Lists, threads, func(w, i int, ids []int64, codes []byte) error {
		st := &ws[w]
		l, n := req.Lists[i], len(ids)
		if err := st.sc.list(l, codes, n); err != nil {
			return err
		}
		for j := req.ProbeStart[i]; j < req.ProbeStart[i+1]; j++ {
			qi := int(req.ProbeQuery[j])
			if k > 0 {
				h := st.heaps[qi]
				if h == nil {
					h = st.pool.all[qi]
					h.Reset(k)
					st.heaps[qi] = h
				}
				st.sc.topK(j, ids, codes, h)
				continue
			}
			for e, v := range st.sc.scores(j, codes) {
				if v < radius {
					st.rd[qi] = append(st.rd[qi], v)
					st.rid[qi] = append(st.rid[qi], ids[e])
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if k > 0 {
		vecmath.ParallelFor(nq, 64, threads, func(lo, hi, _ int) {
			final := vecmath.NewTopK(k)
			for qi := lo; qi < hi; qi++ {
				fd, fid := mergeHeaps(final, k, len(ws), func(w int) *vecmath.TopK { return ws[w].heaps[qi] })
				emit(qi, fd, fid)
			}
		})
		return nil
	}
	for qi := 0; qi < nq; qi++ {
		var rd []float32
		var rid []int64
		for w := range ws {
			rd = append(rd, ws[w].rd[qi]...)
			rid = append(rid, ws[w].rid[qi]...)
		}
		sortPairs(rd, rid)
		emit(qi, rd, rid)
	}
	return nil
}

// mergeHeaps merges one query's per-worker heaps (heap(w) may be nil)
// into final, reset to k, and returns the k best sorted.
func mergeHeaps(final *vecmath.TopK, k, workers int, heap func(w int) *vecmath.TopK) ([]float32, []int64) {
	final.Reset(k)
	for w := 0; w < workers; w++ {
		if h := heap(w); h != nil {
			hd, hid := h.Sorted()
			for j := range hd {
				final.Push(hd[j], hid[j])
			}
		}
	}
	return final.Sorted()
}

// tableScorer scores PQ codes by summing one distance-table entry per
// sub-quantizer (FAISS's IVFPQScanner). The table of a pair is the
// request's (QTables[q] + ListTables(l), the coarse term added to
// sub-table 0), or, when ix is set, the L2 table of the query's residual
// to the list's centroid: Search's tables for L2 by residual without
// precomputed tables.
type tableScorer struct {
	req   *ScanRequest
	ix    *Index    // not nil: tables from residuals
	qs    []float32 // with ix: the block's queries
	l, n  int       // the current list and its entries
	lt    []float32 // the current list's term, or nil
	table []float32
	res   []float32
	out   []float32
}

func newTableScorer(req *ScanRequest, ix *Index, qs []float32) *tableScorer {
	return &tableScorer{req: req, ix: ix, qs: qs, table: make([]float32, req.M*req.Ksub)}
}

func (s *tableScorer) list(l int, codes []byte, n int) error {
	if m := s.req.M; len(codes) < n*m {
		return fmt.Errorf("%w: list %d has %d code bytes for %d entries of %d", ErrCorrupt, l, len(codes), n, m)
	}
	s.l, s.n, s.lt = l, n, nil
	if s.req.ListTables != nil {
		if lt := s.req.ListTables(l); lt != nil {
			s.lt = lt[:s.req.M*s.req.Ksub]
		}
	}
	return nil
}

// fill builds the table of probe j.
func (s *tableScorer) fill(j int) {
	r := s.req
	qi := int(r.ProbeQuery[j])
	if s.ix != nil {
		d := s.ix.p.D
		s.ix.residualTable(s.table, s.l, s.qs[qi*d:(qi+1)*d], &s.res)
		return
	}
	mk := r.M * r.Ksub
	qt := r.QTables[qi*mk : (qi+1)*mk]
	if s.lt != nil {
		// ||q - c - y||^2 = ||q - c||^2 + (||y||^2 + 2<c, y>) - 2<q, y>.
		vecmath.Add(s.table, s.lt, qt)
	} else {
		copy(s.table, qt)
	}
	// The term shared by every code of the list (||q - c||^2, or -<q, c>
	// for inner product) goes into sub-table 0.
	if c := r.ProbeCoarse[j]; c != 0 {
		for e := 0; e < r.Ksub; e++ {
			s.table[e] += c
		}
	}
}

func (s *tableScorer) topK(j int, ids []int64, codes []byte, h *vecmath.TopK) {
	s.fill(j)
	pq.ScanTopK(s.table, s.req.M, codes, ids, s.n, h.K(), h)
}

func (s *tableScorer) scores(j int, codes []byte) []float32 {
	s.fill(j)
	s.out = grow(s.out, s.n)
	pq.ScanL2(s.table, s.req.M, codes, s.n, s.out)
	return s.out
}

// flatScorer scores IVF-Flat entries (float32 vectors) exactly: squared
// L2, or the negated inner product.
type flatScorer struct {
	req  *ScanRequest
	qs   []float32 // the block's queries
	ix   *Index
	n    int       // entries of the current list
	vecs []float32 // their vectors
	out  []float32
}

func (s *flatScorer) list(l int, codes []byte, n int) error {
	d := s.ix.p.D
	if len(codes) < 4*n*d {
		return fmt.Errorf("%w: list %d has %d bytes for %d vectors of dimension %d", ErrCorrupt, l, len(codes), n, d)
	}
	s.n, s.vecs = n, decodeFlat(codes, n, d, s.vecs)
	return nil
}

func (s *flatScorer) scores(j int, _ []byte) []float32 {
	d, n := s.ix.p.D, s.n
	qi := int(s.req.ProbeQuery[j])
	qv := s.qs[qi*d : (qi+1)*d]
	s.out = grow(s.out, n)
	if s.ix.p.Metric == InnerProduct {
		vecmath.InnerProducts(qv, 1, s.vecs, n, d, s.out)
		for i := range s.out {
			s.out[i] = -s.out[i]
		}
	} else {
		vecmath.L2SqrBatch(qv, 1, s.vecs, n, d, nil, s.out)
	}
	return s.out
}

func (s *flatScorer) topK(j int, ids []int64, codes []byte, h *vecmath.TopK) {
	for i, v := range s.scores(j, codes) {
		h.Push(v, ids[i])
	}
}

// grow returns buf resized to n, reallocated when too small.
func grow(buf []float32, n int) []float32 {
	if cap(buf) < n {
		return make([]float32, n)
	}
	return buf[:n]
}

// heapSet is one worker's per-query heaps, kept across blocks so that a
// search allocates them once, not once per (worker, query) and block.
type heapSet struct{ all []*vecmath.TopK }

var heapPool sync.Pool

// getHeapSet returns a set of at least n heaps.
func getHeapSet(n int) *heapSet {
	hs, _ := heapPool.Get().(*heapSet)
	if hs == nil {
		hs = &heapSet{}
	}
	for len(hs.all) < n {
		hs.all = append(hs.all, vecmath.NewTopK(0))
	}
	return hs
}

func decodeFlat(codes []byte, n, d int, buf []float32) []float32 {
	buf = grow(buf, n*d)
	for i := range buf {
		buf[i] = math.Float32frombits(binary.LittleEndian.Uint32(codes[4*i:]))
	}
	return buf
}

// sortPairs sorts (dist, id) pairs by distance, then id.
func sortPairs(d []float32, ids []int64) {
	idx := make([]int, len(d))
	for i := range idx {
		idx[i] = i
	}
	sortIdx(idx, func(a, b int) bool {
		if d[a] != d[b] {
			return d[a] < d[b]
		}
		return ids[a] < ids[b]
	})
	nd := make([]float32, len(d))
	ni := make([]int64, len(ids))
	for i, j := range idx {
		nd[i], ni[i] = d[j], ids[j]
	}
	copy(d, nd)
	copy(ids, ni)
}

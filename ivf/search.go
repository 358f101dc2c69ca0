package ivf

import (
	"fmt"
	"math"
	"sync"

	"github.com/shelfdb/shelf/internal/vecmath"
)

// queryBlock is how many queries share one pass over the probed lists:
// each list probed by any of them is read once per block.
const queryBlock = 1024

// Search returns, for each of the nq queries, the k nearest vectors
// among the nprobe lists nearest to it: distances (squared L2; inner
// product or cosine similarity for those metrics) and ids, best first,
// padded with id -1 (and +Inf, or -Inf when larger is better).
func (ix *Index) Search(q []float32, nq, k, nprobe int) ([]float32, []int64, error) {
	return ix.knn(q, nq, k, nprobe, nil)
}

// SearchWith is Search with the list scan done by s: the coarse step,
// the probe selection and the per-query tables are Search's; s receives
// one ScanRequest per block of queries. With a CPUScanner the results are
// identical to Search's, except for L2 on residuals without precomputed
// tables (an index whose tables would exceed PrecomputedTableMax): Search
// then computes each pair's table from the residual, while a scanner gets
// the same table as a per-query and a per-list term (FAISS's
// decomposition), the per-list terms computed for the block's probed
// lists only; distances agree to rounding.
func (ix *Index) SearchWith(q []float32, nq, k, nprobe int, s Scanner) ([]float32, []int64, error) {
	if s == nil {
		return nil, nil, fmt.Errorf("%w: nil scanner", ErrInput)
	}
	return ix.knn(q, nq, k, nprobe, s)
}

// knn is Search (s nil) and SearchWith: the k best of each query, padded.
func (ix *Index) knn(q []float32, nq, k, nprobe int, s Scanner) ([]float32, []int64, error) {
	if err := ix.checkSearchArgs(q, nq, k, nprobe); err != nil {
		return nil, nil, err
	}
	dist := make([]float32, nq*k)
	ids := make([]int64, nq*k)
	pad := ix.padScore()
	err := ix.search(q, nq, k, nprobe, 0, s, func(qi int, d []float32, id []int64) {
		putPadded(dist[qi*k:(qi+1)*k], ids[qi*k:(qi+1)*k], d, id, pad)
	})
	if err != nil {
		return nil, nil, err
	}
	return dist, ids, nil
}

// RangeResult holds the results of a range search as FAISS's
// RangeSearchResult: the results of query i are [Lims[i], Lims[i+1]).
type RangeResult struct {
	Lims []int
	Dist []float32
	IDs  []int64
}

// RangeSearch returns every vector within radius of each query in its
// nprobe nearest lists: squared L2 distance below radius, or inner
// product / cosine similarity above it. Results of a query are sorted
// best first.
func (ix *Index) RangeSearch(q []float32, nq int, radius float32, nprobe int) (*RangeResult, error) {
	if err := ix.checkQueryArgs(q, nq, nprobe); err != nil {
		return nil, err // before the per-query slices are allocated
	}
	per := make([][]float32, nq)
	perIDs := make([][]int64, nq)
	err := ix.search(q, nq, 0, nprobe, radius, nil, func(qi int, d []float32, id []int64) {
		per[qi], perIDs[qi] = d, id
	})
	if err != nil {
		return nil, err
	}
	r := &RangeResult{Lims: make([]int, nq+1)}
	for i := range per {
		r.Dist = append(r.Dist, per[i]...)
		r.IDs = append(r.IDs, perIDs[i]...)
		r.Lims[i+1] = len(r.IDs)
	}
	return r, nil
}

// search is the one search path: k-NN search (k > 0) or range search
// (k == 0, within radius), the lists scanned by s or, when s is nil, by
// the index's own CPU scan (scanLists), which alone handles IVF-Flat,
// range search and residual tables. Per block of queryBlock queries: the
// coarse step and the probes grouped by list (scanRequest), a prefetch
// of the probed lists, the scan. Internally every score is "smaller is
// better" (inner products negated, cosine as L2 on unit vectors); emit
// receives each query's results in the user's scores, sorted best first,
// for top-k perhaps concurrently for distinct queries.
func (ix *Index) search(q []float32, nq, k, nprobe int, radius float32, s Scanner, emit func(qi int, d []float32, id []int64)) error {
	if !ix.trained {
		return ErrNotTrained
	}
	if err := ix.checkQueryArgs(q, nq, nprobe); err != nil {
		return err
	}
	if s != nil && ix.p.Flat {
		return ErrScannerUnsupported
	}
	nprobe = min(nprobe, ix.p.NList)
	qs, err := ix.checkVectors(q, nq)
	if err != nil {
		return err
	}
	// Internal radius: smaller is better.
	switch ix.p.Metric {
	case InnerProduct:
		radius = -radius
	case Cosine:
		radius = 2 - 2*radius // ||a-b||^2 = 2 - 2cos for unit vectors
	}
	base, err := ix.lists.Snapshot()
	if err != nil {
		return err
	}
	snap, err := ix.streamFromDisk(base)
	if err != nil {
		base.Release()
		return err
	}
	defer snap.Release()
	d := ix.p.D
	for lo := 0; lo < nq; lo += queryBlock {
		hi := min(lo+queryBlock, nq)
		bq := qs[lo*d : hi*d]
		req, residual := ix.scanRequest(snap, bq, hi-lo, nprobe, k, s == nil)
		out := func(qi int, dist []float32, id []int64) {
			ix.userScores(dist, id)
			emit(lo+qi, dist, id)
		}
		if s == nil {
			err = scanLists(req, snap, ix.threads(), radius, func() listScorer { return ix.scorer(req, residual, bq) }, out)
		} else {
			err = scanWith(s, req, snap, out)
		}
		putFloats(req.QTables)
		if err != nil {
			return err
		}
	}
	return nil
}

// scanWith has s scan the block req and hands each query's k results,
// padding included, to emit.
func scanWith(s Scanner, req *ScanRequest, src ListSource, emit func(qi int, d []float32, id []int64)) error {
	bd, bi, err := s.Scan(req, src)
	if err != nil {
		return err
	}
	k := req.K
	if len(bd) != req.NQ*k || len(bi) != req.NQ*k {
		return fmt.Errorf("ivf: scanner returned %d distances and %d ids for %d queries x %d", len(bd), len(bi), req.NQ, k)
	}
	for qi := 0; qi < req.NQ; qi++ {
		emit(qi, bd[qi*k:(qi+1)*k], bi[qi*k:(qi+1)*k])
	}
	return nil
}

// scorer returns a listScorer for one worker of the index's own scan of
// req: exact distances for IVF-Flat, tables from residuals when
// residual, else req's tables.
func (ix *Index) scorer(req *ScanRequest, residual bool, qs []float32) listScorer {
	switch {
	case ix.p.Flat:
		return &flatScorer{req: req, qs: qs, ix: ix}
	case residual:
		return newTableScorer(req, ix, qs)
	default:
		return newTableScorer(req, nil, nil)
	}
}

// userScores turns internal scores into the metric's, in place; an
// entry whose id is negative (a scanner's padding) gets padScore.
func (ix *Index) userScores(d []float32, ids []int64) {
	pad := ix.padScore()
	for j := range d {
		switch {
		case ids[j] < 0:
			d[j] = pad
		case ix.p.Metric == InnerProduct:
			d[j] = -d[j]
		case ix.p.Metric == Cosine:
			d[j] = 1 - d[j]/2
		}
	}
}

// padScore is the score of a missing result: the worst of the metric.
func (ix *Index) padScore() float32 {
	if ix.p.Metric.HigherIsBetter() {
		return float32(math.Inf(-1))
	}
	return float32(math.Inf(1))
}

type probe struct {
	q      int32
	coarse float32 // internal coarse score of (query, list)
}

// selectProbes returns, for each of the nq queries, its nprobe nearest
// lists: sel[qi*nprobe+j] is (qi, coarse score) and sellist[qi*nprobe+j]
// the list. Coarse scores of a block of queries are one matrix product
// per thread, in few large chunks since the kernel packs the centroids
// once per call.
func (ix *Index) selectProbes(qs []float32, nq, nprobe int) ([]probe, []int32) {
	d, nl := ix.p.D, ix.p.NList
	coarse := getFloats(nq * nl)
	defer putFloats(coarse)
	sel := make([]probe, nq*nprobe)
	sellist := make([]int32, nq*nprobe)
	threads := ix.threads()
	chunk := max(32, (nq+threads-1)/threads)
	vecmath.ParallelFor(nq, chunk, threads, func(lo, hi, _ int) {
		if nprobe == 1 && ix.p.Metric != InnerProduct {
			// One list per query: the nearest centroid, found by the
			// assignment kernel without materialising the distances.
			idx := make([]int32, hi-lo)
			dist := make([]float32, hi-lo)
			vecmath.ArgMinL2(qs[lo*d:hi*d], hi-lo, ix.centroids, nl, d, ix.cnorms, idx, dist, 1)
			for i := range idx {
				sel[lo+i] = probe{int32(lo + i), dist[i]}
				sellist[lo+i] = idx[i]
			}
			return
		}
		c := coarse[lo*nl : hi*nl]
		if ix.p.Metric == InnerProduct {
			vecmath.InnerProducts(qs[lo*d:hi*d], hi-lo, ix.centroids, nl, d, c)
			for i := range c {
				c[i] = -c[i]
			}
		} else {
			vecmath.L2SqrBatch(qs[lo*d:hi*d], hi-lo, ix.centroids, nl, d, ix.cnorms, c)
		}
		heap := vecmath.NewTopK(nprobe)
		for qi := lo; qi < hi; qi++ {
			heap.Reset(nprobe)
			for l, v := range coarse[qi*nl : (qi+1)*nl] {
				if v != v {
					// A query whose distances overflow float32 (finite
					// components so large that +Inf and -Inf terms
					// meet) scores NaN: such lists rank last rather
					// than drop out of the heap, so every query has
					// its nprobe probes (a short heap left slots that
					// probed list 0 for query 0).
					v = float32(math.Inf(1))
				}
				if v < heap.Threshold() || heap.Len() < nprobe {
					heap.Push(v, int64(l))
				}
			}
			ds, ls := heap.Sorted()
			for j, l := range ls {
				sel[qi*nprobe+j] = probe{int32(qi), ds[j]}
				sellist[qi*nprobe+j] = int32(l)
			}
		}
	})
	return sel, sellist
}

// scanRequest does the coarse step of a block of queries, groups the
// probes by list (a counting sort: lists ascending, each list's probes in
// query order), has snap prefetch the probed lists, and adds the tables
// of a PQ index: the per-query terms (QTables, from the float pool: the
// caller puts them back) and, for L2 by residual, the per-list terms,
// which are the precomputed table's rows or, without one, computed for
// the block's probed lists. For the index's own scan (own) L2 by residual
// without precomputed tables has no tables at all: each pair's table
// comes from its residual, and residual is true. IVF-Flat requests have
// no tables (M is 0); range search requests have K 0. Search and
// SearchWith share it, so a Scanner sees exactly Search's probes and
// tables.
func (ix *Index) scanRequest(snap Snapshot, qs []float32, nq, nprobe, k int, own bool) (req *ScanRequest, residual bool) {
	nl := ix.p.NList
	sel, sellist := ix.selectProbes(qs, nq, nprobe)
	req = &ScanRequest{NQ: nq, K: k}
	count := make([]int, nl+1)
	for _, l := range sellist {
		count[l+1]++
	}
	for l := 0; l < nl; l++ {
		if count[l+1] > 0 {
			req.Lists = append(req.Lists, l)
		}
		count[l+1] += count[l]
	}
	req.ProbeStart = make([]int, 0, len(req.Lists)+1)
	for _, l := range req.Lists {
		req.ProbeStart = append(req.ProbeStart, count[l])
	}
	req.ProbeStart = append(req.ProbeStart, len(sel))
	req.ProbeQuery = make([]int32, len(sel))
	req.ProbeCoarse = make([]float32, len(sel))
	for i, pr := range sel {
		p := count[sellist[i]]
		count[sellist[i]]++
		req.ProbeQuery[p] = pr.q
		if ix.p.ByResidual { // the coarse term is part of a code's score
			req.ProbeCoarse[p] = pr.coarse
		}
	}
	snap.Prefetch(req.Lists)
	if ix.p.Flat {
		return req, false
	}
	req.M, req.Ksub = ix.quant.tables(), 256
	mk := req.M * req.Ksub
	l2res := ix.p.ByResidual && ix.p.Metric != InnerProduct
	switch {
	case l2res && ix.precomp != nil:
		req.ListTables = func(l int) []float32 { return ix.precomp[l*mk : (l+1)*mk] }
		req.Precomputed, req.PrecomputedID = ix.precomp, ix.precompID
	case l2res && own:
		return req, true
	case l2res:
		// No precomputed tables: the per-list terms of the probed lists.
		terms := make([]float32, len(req.Lists)*mk)
		at := make(map[int]int, len(req.Lists))
		ynorm := ix.codeNorms()
		vecmath.ParallelFor(len(req.Lists), 8, ix.Threads, func(lo, hi, _ int) {
			ip := make([]float32, mk)
			for i := lo; i < hi; i++ {
				ix.listTerm(req.Lists[i], ynorm, ip, terms[i*mk:(i+1)*mk])
			}
		})
		for i, l := range req.Lists {
			at[l] = i
		}
		req.ListTables = func(l int) []float32 {
			i, ok := at[l]
			if !ok {
				return nil // not probed in this block; scanners only ask for probed lists
			}
			return terms[i*mk : (i+1)*mk]
		}
	}
	req.QTables = getFloats(nq * mk)
	ix.queryTables(qs, nq, req.QTables)
	return req, false
}

// queryTables fills out (nq rows of M*Ksub) with each query's term of the
// PQ distance tables: -<q, y> for inner product, ||q - y||^2 without
// residuals, and -2<q, y> for L2 on residuals (the per-query part of
// FAISS's decomposition).
func (ix *Index) queryTables(qs []float32, nq int, out []float32) {
	d, mk := ix.p.D, ix.quant.tables()*256
	vecmath.ParallelFor(nq, 16, ix.Threads, func(lo, hi, _ int) {
		t, qv := out[lo*mk:hi*mk], qs[lo*d:hi*d]
		switch {
		case ix.p.Metric == InnerProduct:
			ix.quant.ipTables(qv, hi-lo, t)
			for i := range t {
				t[i] = -t[i]
			}
		case !ix.p.ByResidual:
			for qi := range hi - lo {
				ix.quant.distanceTable(qv[qi*d:(qi+1)*d], t[qi*mk:(qi+1)*mk])
			}
		default:
			ix.quant.ipTables(qv, hi-lo, t)
			vecmath.Axpy(t, -3, t) // t = -2 t
		}
	})
}

// residualTable fills table with the L2 distance table of the residual
// of query qv to list l's centroid: Search's pair tables for L2 by
// residual without precomputed tables. res is scratch.
func (ix *Index) residualTable(table []float32, l int, qv []float32, res *[]float32) {
	d := ix.p.D
	*res = grow(*res, d)
	r := *res
	c := ix.centroids[l*d : (l+1)*d]
	for j := range r {
		r[j] = qv[j] - c[j]
	}
	ix.quant.distanceTable(r, table)
}

// floatPool recycles the large per-block buffers (coarse scores, query
// tables: megabytes per block of queries) so searches do not spend their
// time zeroing fresh memory.
var floatPool sync.Pool

func getFloats(n int) []float32 {
	if p, ok := floatPool.Get().(*[]float32); ok && cap(*p) >= n {
		return (*p)[:n]
	}
	return make([]float32, n)
}

func putFloats(b []float32) {
	if b != nil {
		floatPool.Put(&b)
	}
}

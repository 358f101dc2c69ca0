package ivf

import (
	"encoding/binary"
	"fmt"
	"math"
	"sync"

	"github.com/shelfdb/shelf/internal/vecmath"
	"github.com/shelfdb/shelf/pq"
)

// queryBlock is how many queries share one pass over the probed lists:
// each list probed by any of them is read once per block.
const queryBlock = 1024

// Search returns, for each of the nq queries, the k nearest vectors
// among the nprobe lists nearest to it: distances (squared L2; inner
// product or cosine similarity for those metrics) and ids, best first,
// padded with id -1 (and +Inf, or -Inf when larger is better).
func (ix *Index) Search(q []float32, nq, k, nprobe int) ([]float32, []int64, error) {
	if err := ix.checkSearchArgs(q, nq, k, nprobe); err != nil {
		return nil, nil, err
	}
	dist := make([]float32, nq*k)
	ids := make([]int64, nq*k)
	err := ix.scan(q, nq, nprobe, k, 0, func(qi int, d []float32, id []int64) {
		copy(dist[qi*k:], d)
		copy(ids[qi*k:], id)
		pad := float32(math.Inf(1))
		if ix.p.Metric.higherIsBetter() {
			pad = float32(math.Inf(-1))
		}
		for j := len(d); j < k; j++ {
			dist[qi*k+j], ids[qi*k+j] = pad, -1
		}
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
		return nil, err
	}
	per := make([][]float32, nq)
	perIDs := make([][]int64, nq)
	err := ix.scan(q, nq, nprobe, 0, radius, func(qi int, d []float32, id []int64) {
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

// scan runs k-NN search (k > 0) or range search (k == 0, radius) and
// hands each query's sorted results to emit. Internally every score is
// "smaller is better": inner products are negated, cosine runs as L2 on
// unit vectors; emit receives the user's scores.
func (ix *Index) scan(q []float32, nq, nprobe, k int, radius float32, emit func(qi int, d []float32, id []int64)) error {
	if !ix.trained {
		return ErrNotTrained
	}
	if nprobe <= 0 {
		return fmt.Errorf("%w: nprobe = %d", ErrInput, nprobe)
	}
	nprobe = min(nprobe, ix.p.NList)
	qs, err := ix.checkVectors(q, nq)
	if err != nil {
		return err
	}
	// Internal radius: smaller is better.
	ir := radius
	switch ix.p.Metric {
	case InnerProduct:
		ir = -radius
	case Cosine:
		ir = 2 - 2*radius // ||a-b||^2 = 2 - 2cos for unit vectors
	}
	snap, err := ix.lists.Snapshot()
	if err != nil {
		return err
	}
	defer snap.Release()
	d := ix.p.D
	for lo := 0; lo < nq; lo += queryBlock {
		hi := min(lo+queryBlock, nq)
		if err := ix.scanBlock(snap, qs[lo*d:hi*d], hi-lo, nprobe, k, ir, func(qi int, dist []float32, id []int64) {
			for j := range dist {
				switch ix.p.Metric {
				case InnerProduct:
					dist[j] = -dist[j]
				case Cosine:
					dist[j] = 1 - dist[j]/2
				}
			}
			emit(lo+qi, dist, id)
		}); err != nil {
			return err
		}
	}
	return nil
}

type probe struct {
	q      int32
	coarse float32 // internal coarse score of (query, list)
}

// selectProbes returns, for each of the nq queries, its nprobe nearest
// lists: sel[qi*nprobe+j] is (qi, coarse score) and sellist[qi*nprobe+j]
// the list. Coarse scores of a block of queries are one matrix product
// per thread, in few large chunks since the kernel packs the centroids
// once per call. Search and SearchWith share it, so a Scanner sees
// exactly Search's probes.
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

func (ix *Index) scanBlock(snap Snapshot, qs []float32, nq, nprobe, k int, radius float32, emit func(int, []float32, []int64)) error {
	d, nl := ix.p.D, ix.p.NList
	// 1. Coarse step: nprobe lists per query.
	sel, sellist := ix.selectProbes(qs, nq, nprobe)
	byList := make([][]probe, nl)
	for i, pr := range sel {
		l := sellist[i]
		byList[l] = append(byList[l], pr)
	}
	var probed []int
	for l, ps := range byList {
		if len(ps) > 0 {
			probed = append(probed, l)
		}
	}
	snap.Prefetch(probed)

	// 2. Per-query tables shared by all the lists the query probes.
	var qtab []float32
	var m, ksub int
	if !ix.p.Flat {
		m, ksub = ix.pq.M, ix.pq.Ksub
		qtab = getFloats(nq * m * ksub)
		defer putFloats(qtab)
		// L2 on residuals without precomputed tables computes each pair's
		// table from the residual instead (pairTable).
		ix.queryTables(qs, nq, qtab, ix.precomp != nil)
	}

	// 3. Scan: workers take lists; each keeps its own per-query results.
	threads := ix.threads()
	type wstate struct {
		heaps []*vecmath.TopK
		rd    [][]float32
		rid   [][]int64
		table []float32
		out   []float32
		res   []float32
		vecs  []float32
		err   error
	}
	ws := make([]wstate, threads)
	var spare []*heapSet // per worker: heaps kept from earlier blocks
	if k > 0 {
		spare = make([]*heapSet, threads)
		defer func() {
			for _, hs := range spare {
				heapPool.Put(hs)
			}
		}()
	}
	for w := range ws {
		if k > 0 {
			ws[w].heaps = make([]*vecmath.TopK, nq)
			spare[w] = getHeapSet(nq)
		} else {
			ws[w].rd, ws[w].rid = make([][]float32, nq), make([][]int64, nq)
		}
		if !ix.p.Flat {
			ws[w].table = make([]float32, m*ksub)
		}
	}
	vecmath.ParallelFor(len(probed), 1, threads, func(lo, hi, w int) {
		st := &ws[w]
		for _, l := range probed[lo:hi] {
			if st.err != nil {
				return
			}
			ids, codes, err := snap.ReadList(l)
			if err != nil {
				st.err = err
				return
			}
			n := len(ids)
			if n == 0 {
				continue
			}
			if ix.p.Flat {
				st.vecs = decodeFlat(codes, n, d, st.vecs)
			}
			for _, pr := range byList[l] {
				qi := int(pr.q)
				qv := qs[qi*d : (qi+1)*d]
				// Distances of this (query, list) pair.
				var dist []float32
				switch {
				case ix.p.Flat:
					if cap(st.out) < n {
						st.out = make([]float32, n)
					}
					dist = st.out[:n]
					if ix.p.Metric == InnerProduct {
						vecmath.InnerProducts(qv, 1, st.vecs, n, d, dist)
						for i := range dist {
							dist[i] = -dist[i]
						}
					} else {
						vecmath.L2SqrBatch(qv, 1, st.vecs, n, d, nil, dist)
					}
				default:
					ix.pairTable(st.table, qtab, qi, l, pr.coarse, qv, &st.res)
				}
				if k > 0 {
					h := st.heaps[qi]
					if h == nil {
						h = spare[w].all[qi]
						h.Reset(k)
						st.heaps[qi] = h
					}
					if dist != nil {
						for i, v := range dist {
							h.Push(v, ids[i])
						}
					} else {
						pq.ScanTopK(st.table, m, codes, ids, n, k, h)
					}
					continue
				}
				if dist == nil {
					if cap(st.out) < n {
						st.out = make([]float32, n)
					}
					dist = st.out[:n]
					pq.ScanL2(st.table, m, codes, n, dist)
				}
				for i, v := range dist {
					if v < radius {
						st.rd[qi] = append(st.rd[qi], v)
						st.rid[qi] = append(st.rid[qi], ids[i])
					}
				}
			}
		}
	})
	for _, st := range ws {
		if st.err != nil {
			return st.err
		}
	}
	// 4. Merge the workers' results of each query: in parallel for top-k
	// (emit writes query qi's own results), which matters at nprobe 1,
	// where the merge is a tenth of the work.
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

// queryTables fills out (nq rows of M*Ksub) with each query's term of the
// PQ distance tables: -<q, y> for inner product, ||q - y||^2 without
// residuals, and, when residualL2, -2<q, y> for L2 on residuals (the
// per-query part of FAISS's decomposition; rows are left alone
// otherwise). Search and SearchWith share it, so a Scanner gets Search's
// tables bit for bit.
func (ix *Index) queryTables(qs []float32, nq int, out []float32, residualL2 bool) {
	d, mk := ix.p.D, ix.pq.M*ix.pq.Ksub
	vecmath.ParallelFor(nq, 16, ix.Threads, func(lo, hi, _ int) {
		for qi := lo; qi < hi; qi++ {
			t := out[qi*mk : (qi+1)*mk]
			qv := qs[qi*d : (qi+1)*d]
			switch {
			case ix.p.Metric == InnerProduct:
				ix.pq.ComputeInnerProductTable(qv, t)
				for i := range t {
					t[i] = -t[i]
				}
			case !ix.p.ByResidual:
				ix.pq.ComputeDistanceTable(qv, t)
			case residualL2:
				ix.pq.ComputeInnerProductTable(qv, t)
				vecmath.Axpy(t, -3, t) // t = -2 t
			}
		}
	})
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

// pairTable fills table with the distance table of query qi against list
// l, such that summing one entry per sub-quantizer gives the internal
// score of a code of that list.
func (ix *Index) pairTable(table, qtab []float32, qi, l int, coarse float32, qv []float32, res *[]float32) {
	mk := ix.pq.M * ix.pq.Ksub
	qt := qtab[qi*mk : (qi+1)*mk]
	switch {
	case !ix.p.ByResidual:
		copy(table, qt)
		return
	case ix.p.Metric == InnerProduct:
		// <q, c + y> = <q, c> + sum_m <q_m, y_m>; coarse is -<q, c>.
		copy(table, qt)
	case ix.precomp != nil:
		// ||q - c - y||^2 = ||q - c||^2 + (||y||^2 + 2<c, y>) - 2<q, y>.
		vecmath.Add(table, ix.precomp[l*mk:(l+1)*mk], qt)
	default:
		d := ix.p.D
		if cap(*res) < d {
			*res = make([]float32, d)
		}
		r := (*res)[:d]
		c := ix.centroids[l*d : (l+1)*d]
		for j := range r {
			r[j] = qv[j] - c[j]
		}
		ix.pq.ComputeDistanceTable(r, table)
		return
	}
	// The term shared by every code of the list goes into sub-table 0.
	for i := 0; i < ix.pq.Ksub; i++ {
		table[i] += coarse
	}
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

func putFloats(b []float32) { floatPool.Put(&b) }

func decodeFlat(codes []byte, n, d int, buf []float32) []float32 {
	if cap(buf) < n*d {
		buf = make([]float32, n*d)
	}
	buf = buf[:n*d]
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

package ivf

import (
	"errors"
	"fmt"
	"math"
	"sync/atomic"

	"github.com/shelfdb/shelf/internal/vecmath"
	"github.com/shelfdb/shelf/pq"
)

// ScanRequest is one block of queries with the lists they probe: the part
// of a search that a GPU can take over. The distance table of a pair
// (query q, list l) is, entry by entry,
//
//	QTables[q] + ListTables(l)            (the second term when ListTables != nil)
//
// with the pair's coarse term added to every entry of sub-table 0, so
// summing one entry per sub-quantizer gives the score of a code; smaller
// is better. Every field has an unnamed type, so a package that may not
// import ivf (gpu/) can declare a struct with the same fields and callers
// convert between the two with a plain type conversion.
//
// Probes are stored by list (CSR): a scanner reads or uploads each probed
// list once per block, however many queries probe it.
type ScanRequest struct {
	NQ   int // queries in the block
	K    int // results per query, > 0
	M    int // sub-quantizers: bytes per code
	Ksub int // entries per sub-table; 256 (8-bit codes)
	// QTables holds NQ x M*Ksub floats: the per-query term.
	QTables []float32
	// ListTables returns the M*Ksub per-list term of a list (FAISS's
	// precomputed table), or is nil when tables depend on the query only.
	ListTables func(list int) []float32
	// Precomputed, when not nil, is the whole table behind ListTables:
	// ListTables(l) is Precomputed[l*M*Ksub : (l+1)*M*Ksub] for every
	// list (an index's precomputed table, NList x M*Ksub floats). Its
	// content is the same in every request with the same PrecomputedID
	// (non-zero, never reused in the process), so a scanner may keep one
	// copy, on a GPU say, instead of moving per-list tables every block.
	Precomputed   []float32
	PrecomputedID uint64
	// Lists are the distinct probed lists.
	Lists []int
	// The probes of Lists[i] are ProbeQuery[j], ProbeCoarse[j] for j in
	// [ProbeStart[i], ProbeStart[i+1]); ProbeStart has len(Lists)+1 entries.
	ProbeStart []int
	// ProbeQuery is the query (in [0, NQ)) of each probe.
	ProbeQuery []int32
	// ProbeCoarse is the term shared by every code of the pair (0 when
	// the index does not encode residuals).
	ProbeCoarse []float32
}

// ListSource reads one inverted list: ids and codes of its entries. A
// Snapshot is one; the method set uses unnamed types only, so any
// package's scanner accepts it without importing ivf.
type ListSource interface {
	ReadList(list int) (ids []int64, codes []byte, err error)
}

// VersionedSource is a ListSource whose content has a name: two sources
// with the same non-zero Version hold identical lists, so a scanner may
// keep lists it read from one (in GPU memory, say) and use them for the
// other. Snapshots of MemLists and DiskLists are versioned: every change
// to the lists (a commit, for a store) gives snapshots taken after it a
// new version.
type VersionedSource interface {
	ListSource
	Version() uint64
}

var versions atomic.Uint64

// newVersion returns a content version never returned before in this
// process.
func newVersion() uint64 { return versions.Add(1) }

// Scanner scans the probed lists of a block of queries and returns, for
// each query, the K best (score, id) pairs sorted by score then id,
// NQ*K of each, padded with +Inf and id -1. Scores are internal (smaller
// is better); Index.SearchWith turns them into the metric's values.
// CPUScanner and the GPU scanner of package gpu (through a one-line
// adapter in a package that imports both) implement it with identical
// results.
type Scanner interface {
	Scan(req *ScanRequest, src ListSource) (dist []float32, ids []int64, err error)
	Close() error
}

// Validate checks the shape of r so that a scanner can index its slices
// without further checks.
func (r *ScanRequest) Validate() error {
	if err := checkScanShape(r.NQ, r.K, r.M, r.Ksub); err != nil {
		return err
	}
	switch {
	case r.NQ < 0 || r.K <= 0 || r.M <= 0 || r.Ksub != 256:
		return fmt.Errorf("%w: scan request nq=%d k=%d m=%d ksub=%d", ErrInput, r.NQ, r.K, r.M, r.Ksub)
	case len(r.QTables) < r.NQ*r.M*r.Ksub:
		return fmt.Errorf("%w: %d query-table floats for %d queries", ErrInput, len(r.QTables), r.NQ)
	case len(r.ProbeStart) != len(r.Lists)+1 || r.ProbeStart[0] != 0:
		return fmt.Errorf("%w: %d probe offsets for %d lists", ErrInput, len(r.ProbeStart), len(r.Lists))
	}
	np := r.ProbeStart[len(r.Lists)]
	if len(r.ProbeQuery) != np || len(r.ProbeCoarse) != np {
		return fmt.Errorf("%w: %d probes, %d queries, %d coarse terms", ErrInput, np, len(r.ProbeQuery), len(r.ProbeCoarse))
	}
	mk := r.M * r.Ksub
	if r.Precomputed != nil && (r.ListTables == nil || len(r.Precomputed)%mk != 0) {
		return fmt.Errorf("%w: precomputed table of %d floats for tables of %d (list tables given: %v)",
			ErrInput, len(r.Precomputed), mk, r.ListTables != nil)
	}
	for i, l := range r.Lists {
		if r.ProbeStart[i+1] < r.ProbeStart[i] {
			return fmt.Errorf("%w: probe offsets decrease at list %d", ErrInput, i)
		}
		if l < 0 || (r.Precomputed != nil && l >= len(r.Precomputed)/mk) {
			return fmt.Errorf("%w: probed list %d (precomputed table of %d lists)", ErrInput, l, len(r.Precomputed)/mk)
		}
	}
	for _, q := range r.ProbeQuery {
		if q < 0 || int(q) >= r.NQ {
			return fmt.Errorf("%w: probe of query %d in a block of %d", ErrInput, q, r.NQ)
		}
	}
	return nil
}

// CPUScanner is the Scanner of the CPU: the same tables and scan loop as
// Index.Search (pq.ScanTopK into per-query heaps), so both give identical
// results; it is the reference the GPU scanner is checked against.
type CPUScanner struct {
	// Threads bounds the goroutines (0: GOMAXPROCS).
	Threads int
}

// Close releases nothing: a CPUScanner holds no resources.
func (*CPUScanner) Close() error { return nil }

// Scan implements Scanner.
func (s *CPUScanner) Scan(req *ScanRequest, src ListSource) ([]float32, []int64, error) {
	if err := req.Validate(); err != nil {
		return nil, nil, err
	}
	nq, k, m, mk := req.NQ, req.K, req.M, req.M*req.Ksub
	threads := vecmath.Threads(s.Threads)
	type wstate struct {
		heaps []*vecmath.TopK
		table []float32
		err   error
	}
	ws := make([]wstate, threads)
	for w := range ws {
		ws[w].heaps = make([]*vecmath.TopK, nq)
		ws[w].table = make([]float32, mk)
	}
	vecmath.ParallelFor(len(req.Lists), 1, threads, func(lo, hi, w int) {
		st := &ws[w]
		for i := lo; i < hi && st.err == nil; i++ {
			l := req.Lists[i]
			ids, codes, err := src.ReadList(l)
			if err != nil {
				st.err = err
				return
			}
			n := len(ids)
			if n == 0 {
				continue
			}
			if len(codes) < n*m {
				st.err = fmt.Errorf("%w: list %d has %d code bytes for %d entries of %d", ErrCorrupt, l, len(codes), n, m)
				return
			}
			var lt []float32
			if req.ListTables != nil {
				lt = req.ListTables(l)
			}
			for j := req.ProbeStart[i]; j < req.ProbeStart[i+1]; j++ {
				qi := int(req.ProbeQuery[j])
				qt := req.QTables[qi*mk : (qi+1)*mk]
				// Same operations, in the same order, as Index.pairTable.
				if lt != nil {
					vecmath.Add(st.table, lt[:mk], qt)
				} else {
					copy(st.table, qt)
				}
				if c := req.ProbeCoarse[j]; c != 0 {
					for e := 0; e < req.Ksub; e++ {
						st.table[e] += c
					}
				}
				h := st.heaps[qi]
				if h == nil {
					h = vecmath.NewTopK(k)
					st.heaps[qi] = h
				}
				pq.ScanTopK(st.table, m, codes, ids, n, k, h)
			}
		}
	})
	var errs []error
	for _, st := range ws {
		errs = append(errs, st.err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	dist := make([]float32, nq*k)
	out := make([]int64, nq*k)
	final := vecmath.NewTopK(k)
	for qi := 0; qi < nq; qi++ {
		fd, fid := mergeHeaps(final, k, len(ws), func(w int) *vecmath.TopK { return ws[w].heaps[qi] })
		putPadded(dist[qi*k:(qi+1)*k], out[qi*k:(qi+1)*k], fd, fid)
	}
	return dist, out, nil
}

// putPadded writes the sorted results fd, fid of one query into dist and
// ids (k slots each), padding with +Inf and id -1, a scanner's empty slot.
func putPadded(dist []float32, ids []int64, fd []float32, fid []int64) {
	n := copy(dist, fd)
	copy(ids, fid)
	for j := n; j < len(dist); j++ {
		dist[j], ids[j] = float32(math.Inf(1)), -1
	}
}

// ErrScannerUnsupported is returned by SearchWith for indexes that have
// no PQ codes to scan (IVF-Flat).
var ErrScannerUnsupported = errors.New("ivf: index configuration not supported by scanners")

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
	if err := ix.checkSearchArgs(q, nq, k, nprobe); err != nil {
		return nil, nil, err
	}
	if !ix.trained {
		return nil, nil, ErrNotTrained
	}
	if nprobe <= 0 {
		return nil, nil, fmt.Errorf("%w: nprobe = %d", ErrInput, nprobe)
	}
	if ix.p.Flat {
		return nil, nil, ErrScannerUnsupported
	}
	nprobe = min(nprobe, ix.p.NList)
	qs, err := ix.checkVectors(q, nq)
	if err != nil {
		return nil, nil, err
	}
	snap, err := ix.lists.Snapshot()
	if err != nil {
		return nil, nil, err
	}
	defer snap.Release()
	d := ix.p.D
	dist := make([]float32, nq*k)
	ids := make([]int64, nq*k)
	pad := float32(math.Inf(1))
	if ix.p.Metric.higherIsBetter() {
		pad = float32(math.Inf(-1))
	}
	for lo := 0; lo < nq; lo += queryBlock {
		hi := min(lo+queryBlock, nq)
		req := ix.scanRequest(qs[lo*d:hi*d], hi-lo, nprobe, k)
		snap.Prefetch(req.Lists)
		bd, bi, err := s.Scan(req, snap)
		if err != nil {
			return nil, nil, err
		}
		if len(bd) != req.NQ*k || len(bi) != req.NQ*k {
			return nil, nil, fmt.Errorf("ivf: scanner returned %d distances and %d ids for %d queries x %d", len(bd), len(bi), req.NQ, k)
		}
		for j := range bd {
			v := bd[j]
			switch {
			case bi[j] < 0:
				v = pad
			case ix.p.Metric == InnerProduct:
				v = -v
			case ix.p.Metric == Cosine:
				v = 1 - v/2
			}
			dist[lo*k+j], ids[lo*k+j] = v, bi[j]
		}
	}
	return dist, ids, nil
}

// scanRequest does the coarse step and the per-query tables of a block of
// queries exactly as scanBlock does (same kernels, same chunking), so the
// probes and tables handed to a Scanner are bit-identical to Search's.
func (ix *Index) scanRequest(qs []float32, nq, nprobe, k int) *ScanRequest {
	nl := ix.p.NList
	sel, sellist := ix.selectProbes(qs, nq, nprobe)
	m, ksub := ix.pq.M, ix.pq.Ksub
	mk := m * ksub
	req := &ScanRequest{NQ: nq, K: k, M: m, Ksub: ksub, QTables: make([]float32, nq*mk)}
	// Counting sort of the probes by list.
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
	residual := ix.p.ByResidual // IP by residual or L2 with precomputed tables
	for i, pr := range sel {
		p := count[sellist[i]]
		count[sellist[i]]++
		req.ProbeQuery[p] = pr.q
		if residual {
			req.ProbeCoarse[p] = pr.coarse
		}
	}
	switch {
	case residual && ix.p.Metric != InnerProduct && ix.precomp != nil:
		req.ListTables = func(l int) []float32 { return ix.precomp[l*mk : (l+1)*mk] }
		req.Precomputed, req.PrecomputedID = ix.precomp, ix.precompID
	case residual && ix.p.Metric != InnerProduct:
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
	ix.queryTables(qs, nq, req.QTables, true)
	return req
}

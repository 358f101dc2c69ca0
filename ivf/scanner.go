package ivf

import (
	"errors"
	"fmt"
	"math"
	"sync/atomic"

	"github.com/shelfdb/shelf/internal/vecmath"
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
// list once per block, however many queries probe it. A request's slices
// are valid until Scan returns (the next block reuses QTables): a scanner
// copies what it keeps, as a GPU scanner its copy of Precomputed.
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

// CPUScanner is the Scanner of the CPU: the index's own list scan
// (scanLists, which Search runs too) over the request's tables, so
// SearchWith with a CPUScanner gives Search's results; it is the
// reference the GPU scanner is checked against.
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
	k := req.K
	dist := make([]float32, req.NQ*k)
	ids := make([]int64, req.NQ*k)
	err := scanLists(req, src, vecmath.Threads(s.Threads), 0, func() listScorer { return newTableScorer(req, nil, nil) },
		func(qi int, d []float32, id []int64) {
			putPadded(dist[qi*k:(qi+1)*k], ids[qi*k:(qi+1)*k], d, id, padInf)
		})
	if err != nil {
		return nil, nil, err
	}
	return dist, ids, nil
}

// putPadded writes the sorted results fd, fid of one query into dist and
// ids (k slots each), padding with pad and id -1: +Inf is a scanner's
// empty slot.
func putPadded(dist []float32, ids []int64, fd []float32, fid []int64, pad float32) {
	n := copy(dist, fd)
	copy(ids, fid)
	for j := n; j < len(dist); j++ {
		dist[j], ids[j] = pad, -1
	}
}

// padInf is the score of a scanner's empty slot.
var padInf = float32(math.Inf(1))

// ErrScannerUnsupported is returned by SearchWith for indexes that have
// no PQ codes to scan (IVF-Flat).
var ErrScannerUnsupported = errors.New("ivf: index configuration not supported by scanners")

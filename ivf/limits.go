package ivf

import (
	"fmt"

	"github.com/shelfdb/shelf/internal/vecmath"
)

// Bounds on sizes that come from callers and files. Each is checked
// before anything is allocated from it, so a bad k, query count or header
// is an error naming the value, never a panic or an allocation the
// machine cannot make.
const (
	// maxLists is the most inverted lists an index may have
	// (Params.Validate); block headers are held to it too.
	maxLists = 1 << 26
	// maxDim is the largest vector dimension (Params.Validate).
	maxDim = 1 << 16
	// MaxResults is the most (distance, id) pairs one Search or
	// SearchWith returns: nq*k at most 2^28 (3 GiB). k may exceed the
	// vectors the index holds (results are padded with id -1, as in
	// FAISS), but not this: search larger jobs in batches of queries.
	MaxResults = vecmath.MaxResults
)

// checkSearchArgs checks the arguments of a k-NN search before its
// results are allocated: nq queries of the index's dimension in q (nq
// not larger than q allows, so nq*d cannot overflow), k >= 1 with nq*k
// within MaxResults, nprobe >= 1.
func (ix *Index) checkSearchArgs(q []float32, nq, k, nprobe int) error {
	if err := ix.checkQueryArgs(q, nq, nprobe); err != nil {
		return err
	}
	if k <= 0 {
		return fmt.Errorf("%w: k = %d", ErrInput, k)
	}
	if _, ok := vecmath.ResultCount(nq, k); !ok {
		return fmt.Errorf("%w: k = %d for %d queries asks for more than the %d results one search returns: search in smaller batches of queries", ErrInput, k, nq, MaxResults)
	}
	return nil
}

// checkQueryArgs checks the arguments shared by k-NN and range search.
func (ix *Index) checkQueryArgs(q []float32, nq, nprobe int) error {
	if d := ix.p.D; nq < 0 || d <= 0 || nq > len(q)/d {
		return fmt.Errorf("%w: %d floats for %d vectors of dimension %d", ErrDim, len(q), nq, ix.p.D)
	}
	if nprobe <= 0 {
		return fmt.Errorf("%w: nprobe = %d", ErrInput, nprobe)
	}
	return nil
}

// checkCount checks that n vectors of the index's dimension can be in x
// before anything is allocated from n (ids, lists, codes).
func (ix *Index) checkCount(x []float32, n int) error {
	if d := ix.p.D; n < 0 || d <= 0 || n > len(x)/d {
		return fmt.Errorf("%w: %d floats for %d vectors of dimension %d", ErrDim, len(x), n, ix.p.D)
	}
	return nil
}

// checkScanShape bounds the sizes a scanner allocates from a
// ScanRequest (NQ*K results, NQ*M*Ksub query-table floats) before
// Validate multiplies them.
func checkScanShape(nq, k, m, ksub int) error {
	_, ok := vecmath.ResultCount(nq, k)
	if !ok || m <= 0 || m > maxDim || ksub != 256 || nq > int(^uint(0)>>1)/(m*ksub) {
		return fmt.Errorf("%w: scan request nq=%d k=%d m=%d ksub=%d (want k >= 1, m <= %d, ksub 256, nq*k <= %d)",
			ErrInput, nq, k, m, ksub, maxDim, MaxResults)
	}
	return nil
}

package gpu

import (
	"errors"
	"fmt"
)

// Request is one block of queries with their probed lists; it mirrors
// ivf.ScanRequest field for field (see that type for the meaning) so that
// the two convert into each other. The table of a pair (query q, list l)
// is QTables[q] + ListTables(l), the pair's coarse term added to
// sub-table 0; scores are smaller-is-better.
type Request struct {
	NQ          int
	K           int
	M           int
	Ksub        int
	QTables     []float32
	ListTables  func(list int) []float32
	Lists       []int
	ProbeStart  []int
	ProbeQuery  []int32
	ProbeCoarse []float32
}

// ListSource reads one inverted list (ivf.Snapshot is one).
type ListSource interface {
	ReadList(list int) (ids []int64, codes []byte, err error)
}

// Options configure a Scanner.
type Options struct {
	// Device is the CUDA device ordinal.
	Device int
	// ItemCodes is the most codes of one list one thread block scans for
	// one query (default 4096): long lists are split so that a block of
	// queries spreads over all the GPU's multiprocessors.
	ItemCodes int
}

// ErrNoCUDA is returned by NewScanner in builds without -tags cuda.
var ErrNoCUDA = errors.New("gpu: built without -tags cuda")

// MaxK is the largest k a Scanner selects on the GPU.
const MaxK = 1024

func (r *Request) validate() error {
	switch {
	case r.NQ < 0 || r.K <= 0 || r.K > MaxK || r.M <= 0 || r.Ksub != 256:
		return fmt.Errorf("gpu: request nq=%d k=%d (at most %d) m=%d ksub=%d", r.NQ, r.K, MaxK, r.M, r.Ksub)
	case len(r.QTables) < r.NQ*r.M*r.Ksub:
		return fmt.Errorf("gpu: %d query-table floats for %d queries", len(r.QTables), r.NQ)
	case len(r.ProbeStart) != len(r.Lists)+1 || r.ProbeStart[0] != 0:
		return fmt.Errorf("gpu: %d probe offsets for %d lists", len(r.ProbeStart), len(r.Lists))
	}
	np := r.ProbeStart[len(r.Lists)]
	if len(r.ProbeQuery) != np || len(r.ProbeCoarse) != np {
		return fmt.Errorf("gpu: %d probes, %d queries, %d coarse terms", np, len(r.ProbeQuery), len(r.ProbeCoarse))
	}
	for i := range r.Lists {
		if r.ProbeStart[i+1] < r.ProbeStart[i] {
			return fmt.Errorf("gpu: probe offsets decrease at list %d", i)
		}
	}
	for _, q := range r.ProbeQuery {
		if q < 0 || int(q) >= r.NQ {
			return fmt.Errorf("gpu: probe of query %d in a block of %d", q, r.NQ)
		}
	}
	return nil
}

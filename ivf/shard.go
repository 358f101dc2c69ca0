package ivf

import (
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/shelfdb/shelf/internal/vecmath"
)

// ShardedScanner spreads the probed lists of each block over several
// scanners (one per GPU, or several logical shards on one device) and
// merges their per-query results, like FAISS's IndexShards over
// index_cpu_to_all_gpus, except that no shard holds a fixed part of the
// index: lists are streamed from the store, so each block's lists are
// dealt out by the work they cost (codes x probing queries). A list goes
// back to the shard that scanned it last (whose device cache may still
// hold it) while that shard's load stays within 10% of an even share;
// the other lists go, largest first, to the least loaded shard. Each
// shard receives a ScanRequest holding only its lists and their probes
// (same tables, same queries), and the merge keeps the K best by (score,
// id), so the result is the one a single scanner returns.
type ShardedScanner struct {
	shards []Scanner
	mu     sync.Mutex
	owner  map[int]int // list -> shard that scanned it last
}

// NewShardedScanner returns a scanner over shards (at least one). Close
// closes them all.
func NewShardedScanner(shards ...Scanner) (*ShardedScanner, error) {
	if len(shards) == 0 {
		return nil, fmt.Errorf("%w: a sharded scanner needs at least one shard", ErrInput)
	}
	for i, s := range shards {
		if s == nil {
			return nil, fmt.Errorf("%w: shard %d is nil", ErrInput, i)
		}
	}
	return &ShardedScanner{shards: shards, owner: map[int]int{}}, nil
}

// Shards returns the number of shards.
func (s *ShardedScanner) Shards() int { return len(s.shards) }

// Shard returns shard i.
func (s *ShardedScanner) Shard(i int) Scanner { return s.shards[i] }

// Close closes every shard and returns their errors joined.
func (s *ShardedScanner) Close() error {
	var errs []error
	for _, sh := range s.shards {
		errs = append(errs, sh.Close())
	}
	return errors.Join(errs...)
}

// Scan implements Scanner.
func (s *ShardedScanner) Scan(req *ScanRequest, src ListSource) ([]float32, []int64, error) {
	if err := req.Validate(); err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	parts, err := splitRequest(req, src, len(s.shards), s.owner)
	s.mu.Unlock()
	if err != nil {
		return nil, nil, err
	}
	type result struct {
		dist []float32
		ids  []int64
		err  error
	}
	res := make([]result, len(parts))
	var wg sync.WaitGroup
	for i, p := range parts {
		if p == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &res[i]
			r.dist, r.ids, r.err = s.shards[i].Scan(p, src)
			if r.err == nil && (len(r.dist) != req.NQ*req.K || len(r.ids) != req.NQ*req.K) {
				r.err = fmt.Errorf("ivf: shard %d returned %d distances and %d ids for %d queries x %d", i, len(r.dist), len(r.ids), req.NQ, req.K)
			}
			if r.err != nil {
				r.err = fmt.Errorf("shard %d: %w", i, r.err)
			}
		}()
	}
	wg.Wait()
	var errs []error
	for _, r := range res {
		errs = append(errs, r.err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	nq, k := req.NQ, req.K
	dist := make([]float32, nq*k)
	ids := make([]int64, nq*k)
	vecmath.ParallelFor(nq, 64, 0, func(lo, hi, _ int) {
		h := vecmath.NewTopK(k)
		for q := lo; q < hi; q++ {
			h.Reset(k)
			for _, r := range res {
				for j := q * k; j < (q+1)*k && r.ids != nil; j++ {
					if r.ids[j] < 0 {
						break // results are sorted, padding last
					}
					h.Push(r.dist[j], r.ids[j])
				}
			}
			hd, hid := h.Sorted()
			putPadded(dist[q*k:(q+1)*k], ids[q*k:(q+1)*k], hd, hid, padInf)
		}
	})
	return dist, ids, nil
}

// splitRequest deals the lists of req over n shards by work (entries x
// probes, plus one per probe so that empty lists count): first each list
// whose owner (when owner is not nil) can take it without exceeding 1.1x
// an even share, largest first; then the rest, largest first, to the
// least loaded shard (ties to the lowest shard, so the split is
// deterministic). It records the new owners and returns one request per
// shard, nil for a shard that got no list. Each part keeps req's lists in
// their order.
func splitRequest(req *ScanRequest, src ListSource, n int, owner map[int]int) ([]*ScanRequest, error) {
	if n == 1 {
		return []*ScanRequest{req}, nil
	}
	nl := len(req.Lists)
	work := make([]int64, nl)
	order := make([]int, nl)
	var total int64
	for i, l := range req.Lists {
		ids, _, err := src.ReadList(l)
		if err != nil {
			return nil, err
		}
		probes := int64(req.ProbeStart[i+1] - req.ProbeStart[i])
		work[i] = probes * int64(len(ids)+1)
		total += work[i]
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return work[order[a]] > work[order[b]] })
	to := make([]int, nl)
	load := make([]int64, n)
	limit := total/int64(n) + total/int64(10*n)
	for _, i := range order {
		to[i] = -1
		if sh, ok := owner[req.Lists[i]]; ok && sh < n && load[sh]+work[i] <= limit {
			to[i] = sh
			load[sh] += work[i]
		}
	}
	for _, i := range order {
		if to[i] >= 0 {
			continue
		}
		best := 0
		for sh := 1; sh < n; sh++ {
			if load[sh] < load[best] {
				best = sh
			}
		}
		to[i] = best
		load[best] += work[i]
	}
	parts := make([]*ScanRequest, n)
	for i, l := range req.Lists {
		if owner != nil {
			owner[l] = to[i]
		}
		p := parts[to[i]]
		if p == nil {
			p = &ScanRequest{NQ: req.NQ, K: req.K, M: req.M, Ksub: req.Ksub, QTables: req.QTables,
				ListTables: req.ListTables, Precomputed: req.Precomputed, PrecomputedID: req.PrecomputedID, ProbeStart: []int{0}}
			parts[to[i]] = p
		}
		lo, hi := req.ProbeStart[i], req.ProbeStart[i+1]
		p.Lists = append(p.Lists, l)
		p.ProbeQuery = append(p.ProbeQuery, req.ProbeQuery[lo:hi]...)
		p.ProbeCoarse = append(p.ProbeCoarse, req.ProbeCoarse[lo:hi]...)
		p.ProbeStart = append(p.ProbeStart, len(p.ProbeQuery))
	}
	return parts, nil
}

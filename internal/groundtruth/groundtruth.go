package groundtruth

import (
	"errors"
	"fmt"
	"math"

	"github.com/shelfdb/shelf/internal/vecio"
	"github.com/shelfdb/shelf/internal/vecmath"
)

// Metric is the similarity a search ranks by: vecmath.Metric, the
// project's one metric type. KNN takes L2 and InnerProduct; for cosine,
// normalize the vectors and rank by inner product.
type Metric = vecmath.Metric

// The metrics KNN takes.
const (
	L2           = vecmath.L2
	InnerProduct = vecmath.InnerProduct
)

const (
	// baseBlock is the number of base rows whose distances to a query
	// block are computed at once: 4096 rows keep the packed panels of one
	// block (4096*d floats) cheap to rebuild for each query block.
	baseBlock = 4096
	// maxQueryBlock bounds the query rows per block, so a worker's distance
	// buffer stays at 1 MiB (64 x 4096 floats).
	maxQueryBlock = 64
)

// KNN returns the exact k nearest base rows of every query row: ids[q*k+j]
// and dists[q*k+j] are the id (row index in base) and distance of the j-th
// best neighbour of query q, best first, ties broken by the lower id. For
// L2 the distances are squared L2 distances; for InnerProduct they are the
// inner products, in decreasing order.
//
// k may exceed base.N (the rest is padding, as FAISS pads), but
// queries.N*k may not exceed vecmath.MaxResults: the results are
// allocated before the search, so larger jobs run in batches of queries.
//
// When fewer than k neighbours exist (k > base.N, or base rows whose
// distance is NaN, which are never returned) the missing entries are padded
// with id -1 and distance +Inf for L2, -Inf for InnerProduct: the worst
// possible value, so padded lists stay sorted. threads <= 0 means
// GOMAXPROCS. The result does not depend on threads.
func KNN(base, queries vecio.Matrix, k int, metric Metric, threads int) (ids []int64, dists []float32, err error) {
	if metric != L2 && metric != InnerProduct {
		return nil, nil, fmt.Errorf("groundtruth: unknown metric %v", metric)
	}
	if k <= 0 {
		return nil, nil, fmt.Errorf("groundtruth: k = %d, must be positive", k)
	}
	if err := checkMatrix("base", base); err != nil {
		return nil, nil, err
	}
	if err := checkMatrix("queries", queries); err != nil {
		return nil, nil, err
	}
	if base.D != queries.D {
		return nil, nil, fmt.Errorf("groundtruth: base has dimension %d, queries %d", base.D, queries.D)
	}
	if _, ok := vecmath.ResultCount(queries.N, k); !ok {
		return nil, nil, fmt.Errorf("groundtruth: k = %d for %d queries asks for more than the %d results one call returns: run it in smaller batches of queries",
			k, queries.N, vecmath.MaxResults)
	}
	nq, n, d := queries.N, base.N, base.D
	ids = make([]int64, nq*k)
	dists = make([]float32, nq*k)
	if nq == 0 {
		return ids, dists, nil
	}

	var norms []float32
	if metric == L2 {
		norms = make([]float32, n)
		vecmath.ParallelFor(n, baseBlock, threads, func(lo, hi, _ int) {
			vecmath.Norms2(base.Data[lo*d:hi*d], d, norms[lo:hi])
		})
	}

	t := vecmath.Threads(threads)
	// Enough blocks for every thread to get several, so uneven progress
	// evens out, but never more than maxQueryBlock rows per block.
	qb := min(maxQueryBlock, max(4, (nq+4*t-1)/(4*t)))
	type scratch struct {
		buf   []float32
		heaps []*vecmath.TopK
	}
	scr := make([]scratch, t)
	pad := float32(math.Inf(1))
	if metric == InnerProduct {
		pad = float32(math.Inf(-1))
	}

	vecmath.ParallelFor(nq, qb, t, func(lo, hi, w int) {
		s := &scr[w]
		if s.buf == nil {
			s.buf = make([]float32, qb*min(baseBlock, max(n, 1)))
			s.heaps = make([]*vecmath.TopK, qb)
			for i := range s.heaps {
				s.heaps[i] = vecmath.NewTopK(k)
			}
		}
		nb := hi - lo
		for i := range nb {
			s.heaps[i].Reset(k)
		}
		x := queries.Data[lo*d : hi*d]
		for b0 := 0; b0 < n; b0 += baseBlock {
			b1 := min(n, b0+baseBlock)
			bn := b1 - b0
			y := base.Data[b0*d : b1*d]
			out := s.buf[:nb*bn]
			if metric == L2 {
				vecmath.L2SqrBatch(x, nb, y, bn, d, norms[b0:b1], out)
			} else {
				vecmath.InnerProducts(x, nb, y, bn, d, out)
			}
			for i := range nb {
				h := s.heaps[i]
				thr := h.Threshold()
				row := out[i*bn : (i+1)*bn]
				for j, v := range row {
					if metric == InnerProduct {
						// TopK keeps the smallest values.
						v = -v
					}
					if v <= thr {
						h.Push(v, int64(b0+j))
						thr = h.Threshold()
					}
				}
			}
		}
		for i := range nb {
			hd, hids := s.heaps[i].Sorted()
			q := lo + i
			oi, od := ids[q*k:(q+1)*k], dists[q*k:(q+1)*k]
			for j := range k {
				if j >= len(hd) {
					oi[j], od[j] = -1, pad
					continue
				}
				oi[j], od[j] = hids[j], hd[j]
				if metric == InnerProduct {
					od[j] = -hd[j]
				}
			}
		}
	})
	return ids, dists, nil
}

func checkMatrix(name string, m vecio.Matrix) error {
	if m.N < 0 || m.D <= 0 {
		return fmt.Errorf("groundtruth: %s has shape %dx%d", name, m.N, m.D)
	}
	if m.N > len(m.Data)/m.D || len(m.Data) != m.N*m.D {
		return fmt.Errorf("groundtruth: %s is %dx%d but holds %d values", name, m.N, m.D, len(m.Data))
	}
	return nil
}

var errArgs = errors.New("groundtruth: recall arguments out of range")

func checkRecallArgs(found []int64, kFound int, gt []int64, kGT int, nq int, at int) {
	if kFound <= 0 || kGT <= 0 || nq < 0 || at <= 0 || nq > len(found)/kFound || nq > len(gt)/kGT {
		panic(fmt.Errorf("%w: len(found)=%d kFound=%d len(gt)=%d kGT=%d nq=%d at=%d",
			errArgs, len(found), kFound, len(gt), kGT, nq, at))
	}
}

// Recall returns FAISS's 1-recall@at (the "R@1", "R@10", "R@100" columns
// of FAISS's benchmarks, and what FAISS's wiki calls recall): the fraction
// of queries whose true nearest neighbour gt[q*kGT] appears among the first
// min(at, kFound) ids of found[q*kFound:]. found and gt hold nq rows of
// kFound and kGT ids. Queries whose true nearest neighbour is -1 (padding:
// an empty base) are left out of the average; the result is 0 when no query
// is left. It panics on sizes that do not match, as those are programming
// errors.
func Recall(found []int64, kFound int, gt []int64, kGT int, nq int, at int) float64 {
	checkRecallArgs(found, kFound, gt, kGT, nq, at)
	at = min(at, kFound)
	hits, counted := 0, 0
	for q := range nq {
		want := gt[q*kGT]
		if want < 0 {
			continue
		}
		counted++
		for _, id := range found[q*kFound : q*kFound+at] {
			if id == want {
				hits++
				break
			}
		}
	}
	if counted == 0 {
		return 0
	}
	return float64(hits) / float64(counted)
}

// IntersectionRecall returns the ann-benchmarks k-recall@at averaged over
// queries: for each query, the number of distinct ids among the first
// min(at, kFound) of found that are also among the first at of gt, divided
// by at (the number of non-padding ids among them). Ids are compared, not distances, so a found neighbour that ties
// with the at-th true one but has a different id counts as a miss (the
// ann-benchmarks code allows such ties by distance; with float data they
// are rare). Padding ids (-1) in gt are not counted in the numerator or the
// denominator; a query whose first at gt ids are all padding is left out.
// It panics if at > kGT or on sizes that do not match.
func IntersectionRecall(found []int64, kFound int, gt []int64, kGT int, nq int, at int) float64 {
	checkRecallArgs(found, kFound, gt, kGT, nq, at)
	if at > kGT {
		panic(fmt.Errorf("%w: at=%d > kGT=%d", errArgs, at, kGT))
	}
	atFound := min(at, kFound)
	truth := make(map[int64]bool, at)
	var sum float64
	counted := 0
	for q := range nq {
		clear(truth)
		for _, id := range gt[q*kGT : q*kGT+at] {
			if id >= 0 {
				truth[id] = true
			}
		}
		if len(truth) == 0 {
			continue
		}
		denom := len(truth)
		hits := 0
		for _, id := range found[q*kFound : q*kFound+atFound] {
			if truth[id] {
				hits++
				// Deleting makes a repeated id count once.
				delete(truth, id)
			}
		}
		sum += float64(hits) / float64(denom)
		counted++
	}
	if counted == 0 {
		return 0
	}
	return sum / float64(counted)
}

package vecmath

import "math"

// TopK keeps the k smallest (distance, id) pairs pushed into it, as a binary
// max-heap whose root is the worst pair kept (faiss::CMax heaps in
// faiss/utils/Heap.h). Pairs are ordered by distance, then by id, so the
// result does not depend on the order pairs arrive in. The zero value holds
// nothing; call Reset before use.
type TopK struct {
	k    int
	dist []float32
	ids  []int64
}

// NewTopK returns an empty TopK keeping at most k pairs.
func NewTopK(k int) *TopK {
	h := &TopK{}
	h.Reset(k)
	return h
}

// MaxResults bounds the (distance, id) pairs one k-NN call may return
// (queries x k): 2^28 pairs, 3 GiB of float32 distances and int64 ids.
// Searches and ground truth refuse more, so that a k or a query count
// from a command line or a file cannot ask for more memory than a machine
// has; larger jobs run in batches of queries.
const MaxResults = 1 << 28

// ResultCount returns nq*k and true when nq >= 0, k >= 1 and nq*k (k
// alone when nq is 0) is at most MaxResults; false otherwise, without
// overflowing.
func ResultCount(nq, k int) (int, bool) {
	if nq < 0 || k < 1 || k > MaxResults/max(nq, 1) {
		return 0, false
	}
	return nq * k, true
}

// topKPrealloc is the most pairs Reset allocates room for ahead: a larger
// heap grows as pairs arrive, so its memory is what it holds, never k.
const topKPrealloc = 1024

// Reset empties h and sets the number of pairs it keeps to k, reusing its
// storage. It allocates room for at most topKPrealloc pairs: a heap with
// a huge k (more than the candidates it will see) costs only what is
// pushed into it.
func (h *TopK) Reset(k int) {
	k = max(k, 0)
	h.k = k
	if want := min(k, topKPrealloc); cap(h.dist) < want {
		h.dist = make([]float32, 0, want)
		h.ids = make([]int64, 0, want)
	}
	h.dist = h.dist[:0]
	h.ids = h.ids[:0]
}

// K returns the number of pairs h keeps at most.
func (h *TopK) K() int { return h.k }

// Len returns the number of pairs h holds.
func (h *TopK) Len() int { return len(h.dist) }

// Threshold returns the distance a new pair must not exceed to enter h: the
// worst kept distance once h is full, +Inf before. Scans compare against it
// before calling Push so that most candidates cost one comparison.
func (h *TopK) Threshold() float32 {
	if len(h.dist) < h.k {
		return float32(math.Inf(1))
	}
	if h.k == 0 {
		return float32(math.Inf(-1))
	}
	return h.dist[0]
}

func worse(d1 float32, i1 int64, d2 float32, i2 int64) bool {
	return d1 > d2 || (d1 == d2 && i1 > i2)
}

// Push offers the pair (dist, id); it is kept if h is not full or if it is
// better than the worst pair kept, which it then replaces. NaN distances are
// dropped.
func (h *TopK) Push(dist float32, id int64) {
	if dist != dist {
		return
	}
	n := len(h.dist)
	if n < h.k {
		h.dist = append(h.dist, dist)
		h.ids = append(h.ids, id)
		h.up(n)
		return
	}
	if n == 0 || !worse(h.dist[0], h.ids[0], dist, id) {
		return
	}
	h.dist[0], h.ids[0] = dist, id
	h.down(0, n)
}

func (h *TopK) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !worse(h.dist[i], h.ids[i], h.dist[p], h.ids[p]) {
			return
		}
		h.dist[i], h.dist[p] = h.dist[p], h.dist[i]
		h.ids[i], h.ids[p] = h.ids[p], h.ids[i]
		i = p
	}
}

func (h *TopK) down(i, n int) {
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		c := l
		if r := l + 1; r < n && worse(h.dist[r], h.ids[r], h.dist[l], h.ids[l]) {
			c = r
		}
		if !worse(h.dist[c], h.ids[c], h.dist[i], h.ids[i]) {
			return
		}
		h.dist[i], h.dist[c] = h.dist[c], h.dist[i]
		h.ids[i], h.ids[c] = h.ids[c], h.ids[i]
		i = c
	}
}

// Sorted sorts the kept pairs in place by ascending distance (ties by
// ascending id) and returns them (faiss heap_reorder). The slices alias h's
// storage and stay valid until the next Reset; h keeps nothing afterwards and
// must be Reset before further pushes.
func (h *TopK) Sorted() (dist []float32, ids []int64) {
	n := len(h.dist)
	// Heapsort: repeatedly move the worst pair to the end.
	for end := n - 1; end > 0; end-- {
		h.dist[0], h.dist[end] = h.dist[end], h.dist[0]
		h.ids[0], h.ids[end] = h.ids[end], h.ids[0]
		h.down(0, end)
	}
	dist, ids = h.dist[:n:n], h.ids[:n:n]
	h.dist = h.dist[:0]
	h.ids = h.ids[:0]
	h.k = 0
	return dist, ids
}

package ivf

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"

	"github.com/shelfdb/shelf/internal/vecmath"
	"github.com/shelfdb/shelf/kmeans"
	"github.com/shelfdb/shelf/pq"
	"github.com/shelfdb/shelf/rq"
)

// Index is an IVF-PQ (or IVF-Flat) index. Searches may run concurrently
// with each other and with one writer (Add, Remove, Merge).
type Index struct {
	p         Params
	trained   bool
	centroids []float32 // NList x D
	cnorms    []float32 // squared norms of the centroids
	pq        *pq.PQ    // the quantizer of IVF,PQ
	rq        *rq.RQ    // the quantizer of IVF,RQ
	quant     quantizer
	// precomp[l] holds, for L2 by residual, ||y||^2 + 2<c_l, y> for every
	// sub-centroid y (NList x M x 256): with it the distance table of a
	// (query, list) pair is one addition per entry (FAISS's
	// use_precomputed_table).
	precomp   []float32
	precompID uint64 // names precomp's content (ScanRequest.PrecomputedID)

	lists Lists
	disk  *diskLists // lists when they are an index directory's store
	dir   string

	wmu        sync.Mutex // one writer
	mu         sync.Mutex // guards ids, direct, opProgress, modelID
	ids        idState
	direct     map[int64]loc // id -> list position, built on demand
	opProgress func(stage string, done, total int64)
	modelCRC   uint32

	// Threads bounds the goroutines of add and search (0: GOMAXPROCS).
	Threads int
	// Progress, if set, receives progress of training and adding.
	Progress func(stage string, done, total int64)
	// MemoryBudget, when > 0, makes searches of an index directory read
	// the probed lists from disk with positioned reads (diskStream) into
	// at most MemoryBudget bytes of read buffers and cached lists, shared
	// by the searches running at once, instead of through the memory
	// map: the read path
	// of an index larger than the memory a search may use (README,
	// "Indexes larger than RAM"). Each list read is checked against its
	// CRCs. 0: lists are read through the memory map, the fastest when
	// the index fits in the page cache. In-memory indexes ignore it.
	MemoryBudget int64
	// BufferedReads makes those reads go through the page cache; by
	// default they bypass it (O_DIRECT where the file system allows),
	// so the lists a search reads take no memory past the budget.
	BufferedReads bool
	// IODepth bounds the reads in flight (0: 64; at most one per buffer).
	IODepth     int
	slabs       *slabArena // the read buffers (guarded by mu)
	slabsBudget int64
	slabsDepth  int
	reads       readStats

	// PrecomputedTableMax is the most memory the precomputed tables may
	// take (default 2 GiB, as FAISS); larger indexes compute residual
	// tables per (query, list) instead.
	PrecomputedTableMax int64
}

type loc struct{ list, pos int32 }

// New makes an untrained in-memory index.
func New(p Params) (*Index, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	ix := &Index{p: p, lists: NewMemLists(p.NList, p.CodeSize()), ids: emptyIDs()}
	return ix, nil
}

// NewFromFactory makes an untrained in-memory index from a factory string.
func NewFromFactory(factory string, d int, metric Metric) (*Index, error) {
	p, err := ParseFactory(factory, d, metric)
	if err != nil {
		return nil, err
	}
	return New(p)
}

// Params returns the index parameters.
func (ix *Index) Params() Params { return ix.p }

// IsTrained reports whether the index is trained.
func (ix *Index) IsTrained() bool { return ix.trained }

// Lists returns the index's inverted lists.
func (ix *Index) Lists() Lists { return ix.lists }

// Centroids returns the coarse centroids (NList x D); do not modify.
func (ix *Index) Centroids() []float32 { return ix.centroids }

// PQ returns the product quantizer (nil for Flat and RQ).
func (ix *Index) PQ() *pq.PQ { return ix.pq }

// RQ returns the residual quantizer (nil unless RQ).
func (ix *Index) RQ() *rq.RQ { return ix.rq }

// NTotal returns the number of vectors in the index.
func (ix *Index) NTotal() int64 {
	s, err := ix.lists.Snapshot()
	if err != nil {
		return 0
	}
	defer s.Release()
	var n int64
	for l := 0; l < s.NumLists(); l++ {
		k, _ := s.ListLen(l)
		n += int64(k)
	}
	return n
}

func (ix *Index) threads() int { return vecmath.Threads(ix.Threads) }

func (ix *Index) progress(stage string, done, total int64) {
	if ix.Progress != nil {
		ix.Progress(stage, done, total)
	}
}

// checkVectors validates n vectors of the index's dimension and returns
// the vectors the index works on: L2-normalized copies for cosine.
func (ix *Index) checkVectors(x []float32, n int) ([]float32, error) {
	d := ix.p.D
	if n < 0 || n > len(x)/d || len(x) != n*d {
		return nil, fmt.Errorf("%w: %d floats for %d vectors of dimension %d", ErrDim, len(x), n, d)
	}
	for i := 0; i < n; i++ {
		for _, v := range x[i*d : (i+1)*d] {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, fmt.Errorf("%w: vector %d has a NaN or infinite component", ErrInput, i)
			}
		}
	}
	if ix.p.Metric != Cosine {
		return x, nil
	}
	y := make([]float32, len(x))
	for i := 0; i < n; i++ {
		v := x[i*d : (i+1)*d]
		nrm := float32(math.Sqrt(float64(vecmath.Dot(v, v))))
		if nrm == 0 {
			return nil, fmt.Errorf("%w: vector %d has norm 0, which has no cosine", ErrInput, i)
		}
		for j, a := range v {
			y[i*d+j] = a / nrm
		}
	}
	return y, nil
}

// TrainOptions tune Train.
type TrainOptions struct {
	// Seed of the k-means runs (0 is a valid seed).
	Seed int64
	// CoarseIters is the number of k-means iterations of the coarse
	// quantizer (default 10, as FAISS's IVF).
	CoarseIters int
	// MaxPoints caps the vectors used: k-means samples at most 256 per
	// centroid anyway (0: no cap beyond that).
	MaxPoints int
	// Balance, when positive, trains the coarse quantizer with balanced
	// k-means at this Sinkhorn eps (kmeans.Config.Balance), for lists of
	// more even sizes; vectors are still added to their nearest centroid.
	Balance float64
}

// Train learns the coarse centroids on x (n vectors) and the PQ codebooks
// on the residuals of a sample of them (at most 256 x 256, like FAISS).
func (ix *Index) Train(x []float32, n int, opts *TrainOptions) error {
	var o TrainOptions
	if opts != nil {
		o = *opts
	}
	if o.CoarseIters == 0 {
		o.CoarseIters = 10
	}
	if ix.trained {
		return fmt.Errorf("%w: index already trained", ErrParams)
	}
	x, err := ix.checkVectors(x, n)
	if err != nil {
		return err
	}
	d := ix.p.D
	if o.MaxPoints > 0 && n > o.MaxPoints {
		x, n = x[:o.MaxPoints*d], o.MaxPoints
	}
	if n < ix.p.NList {
		return fmt.Errorf("%w: %d training vectors for %d lists", ErrInput, n, ix.p.NList)
	}
	cents, err := kmeans.Train(x, n, d, kmeans.Config{
		K: ix.p.NList, Iters: o.CoarseIters, Seed: o.Seed, Threads: ix.Threads,
		Spherical: ix.p.Metric == InnerProduct, Balance: o.Balance,
		Progress: func(it, iters int, _ float64) {
			ix.progress("train coarse quantizer", int64(it), int64(iters))
		},
	})
	if err != nil {
		return fmt.Errorf("ivf: train coarse quantizer: %w", err)
	}
	ix.setCentroids(cents)
	if !ix.p.Flat {
		// A random sample of at most 65,536 training vectors, as residuals.
		ns := min(n, 256*256)
		r := rand.New(rand.NewPCG(uint64(o.Seed), 0x5eed))
		perm := r.Perm(n)[:ns]
		sample := make([]float32, ns*d)
		for i, j := range perm {
			copy(sample[i*d:(i+1)*d], x[j*d:(j+1)*d])
		}
		if ix.p.ByResidual {
			assign := ix.assign(sample, ns)
			for i, l := range assign {
				c := ix.centroids[int(l)*d : (int(l)+1)*d]
				for j := range c {
					sample[i*d+j] -= c[j]
				}
			}
		}
		if err := ix.trainQuantizer(sample, ns, o.Seed+1); err != nil {
			return err
		}
	}
	ix.finishModel()
	ix.trained = true
	return nil
}

func (ix *Index) setCentroids(c []float32) {
	ix.centroids = c
	ix.cnorms = make([]float32, ix.p.NList)
	vecmath.Norms2(c, ix.p.D, ix.cnorms)
}

// trainQuantizer trains the quantizer of the codes on n (residual)
// vectors.
func (ix *Index) trainQuantizer(x []float32, n int, seed int64) error {
	d := ix.p.D
	if ix.p.RQ {
		q, err := rq.New(d, ix.p.M, ix.p.Nbits)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrParams, err)
		}
		err = q.Train(x, n, rq.TrainOptions{Seed: seed, Threads: ix.Threads, Refine: rqRefine, Progress: func(l, layers int) {
			ix.progress("train residual quantizer", int64(l), int64(layers))
		}})
		if err != nil {
			return fmt.Errorf("ivf: train residual quantizer: %w", err)
		}
		ix.rq = q
		return nil
	}
	q, err := pq.New(d, ix.p.M, ix.p.Nbits)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrParams, err)
	}
	ix.progress("train product quantizer", 0, 1)
	if err := q.Train(x, n, seed, ix.Threads); err != nil {
		return fmt.Errorf("ivf: train product quantizer: %w", err)
	}
	ix.progress("train product quantizer", 1, 1)
	ix.pq = q
	return nil
}

// finishModel derives what search needs from a trained model.
func (ix *Index) finishModel() {
	ix.precomp, ix.precompID = nil, 0
	switch {
	case ix.pq != nil:
		ix.pq.Prepare()
		ix.quant = pqQuantizer{ix.pq}
	case ix.rq != nil:
		ix.rq.Prepare()
		ix.quant = rqQuantizer{ix.rq}
	}
	if ix.p.Flat || !ix.p.ByResidual || ix.p.Metric == InnerProduct {
		return
	}
	limit := ix.PrecomputedTableMax
	if limit == 0 {
		limit = 2 << 30
	}
	m, ksub := ix.quant.tables(), 256
	size := int64(ix.p.NList) * int64(m*ksub) * 4
	if size > limit {
		return
	}
	ix.precomp = make([]float32, ix.p.NList*m*ksub)
	ix.precompID = newVersion()
	ynorm := ix.codeNorms()
	vecmath.ParallelFor(ix.p.NList, 16, ix.Threads, func(lo, hi, _ int) {
		ip := make([]float32, m*ksub)
		for l := lo; l < hi; l++ {
			ix.listTerm(l, ynorm, ip, ix.precomp[l*m*ksub:(l+1)*m*ksub])
		}
	})
}

// codeNorms returns the table whose entries sum to a code's squared
// norm ||y||^2 (tables x 256 floats).
func (ix *Index) codeNorms() []float32 {
	ynorm := make([]float32, ix.quant.tables()*256)
	ix.quant.normTable(ynorm)
	return ynorm
}

// listTerm writes list l's term of the L2 residual tables, ||y||^2 +
// 2<c_l, y> as a table (FAISS's precomputed table), into t; ip is
// scratch of tables x 256 floats.
func (ix *Index) listTerm(l int, ynorm, ip, t []float32) {
	d := ix.p.D
	ix.quant.ipTable(ix.centroids[l*d:(l+1)*d], ip)
	for i := range t {
		t[i] = ynorm[i] + 2*ip[i]
	}
}

// PrecomputedTableBytes is the memory of the precomputed tables (0 when
// not used).
func (ix *Index) PrecomputedTableBytes() int64 { return int64(len(ix.precomp)) * 4 }

// assign returns the list of each of the n vectors of x: the nearest
// centroid in L2, or of largest inner product.
func (ix *Index) assign(x []float32, n int) []int32 {
	idx := make([]int32, n)
	dist := make([]float32, n)
	if ix.p.Metric == InnerProduct && !vecmath.UnitRows(ix.centroids, ix.p.D) {
		ix.argMaxIP(x, n, idx)
		return idx
	}
	// With unit centroids (spherical k-means) the largest inner product is
	// the nearest in L2, so one kernel serves every metric.
	vecmath.ArgMinL2(x, n, ix.centroids, ix.p.NList, ix.p.D, ix.cnorms, idx, dist, ix.Threads)
	return idx
}

func (ix *Index) argMaxIP(x []float32, n int, out []int32) {
	const block = 256
	nl, d := ix.p.NList, ix.p.D
	vecmath.ParallelFor(n, block, ix.Threads, func(lo, hi, _ int) {
		ips := make([]float32, (hi-lo)*nl)
		vecmath.InnerProducts(x[lo*d:hi*d], hi-lo, ix.centroids, nl, d, ips)
		for i := lo; i < hi; i++ {
			row := ips[(i-lo)*nl : (i-lo+1)*nl]
			best := 0
			for j, v := range row {
				if v > row[best] {
					best = j
				}
			}
			out[i] = int32(best)
		}
	})
}

// encode computes the list numbers and codes of n (checked) vectors.
func (ix *Index) encode(x []float32, n int) ([]int64, []byte) {
	d, cs := ix.p.D, ix.p.CodeSize()
	assign := ix.assign(x, n)
	lists := make([]int64, n)
	codes := make([]byte, n*cs)
	if ix.p.Flat {
		for i := 0; i < n; i++ {
			lists[i] = int64(assign[i])
			for j, v := range x[i*d : (i+1)*d] {
				binary.LittleEndian.PutUint32(codes[i*cs+4*j:], math.Float32bits(v))
			}
		}
		return lists, codes
	}
	res := x
	if ix.p.ByResidual {
		res = make([]float32, len(x))
		vecmath.ParallelFor(n, 1024, ix.Threads, func(lo, hi, _ int) {
			for i := lo; i < hi; i++ {
				c := ix.centroids[int(assign[i])*d : (int(assign[i])+1)*d]
				for j := range c {
					res[i*d+j] = x[i*d+j] - c[j]
				}
			}
		})
	}
	for i, a := range assign {
		lists[i] = int64(a)
	}
	ix.quant.encode(res, n, codes, ix.Threads)
	return lists, codes
}

// addBatch is how many vectors Add encodes and commits at a time.
const addBatch = 65536

// Add adds n vectors with sequential ids, from NextID on, and returns
// the first id.
func (ix *Index) Add(x []float32, n int) (int64, error) {
	ix.wmu.Lock()
	defer ix.wmu.Unlock()
	first := ix.NextID()
	if err := ix.checkCount(x, n); err != nil {
		return 0, err
	}
	if first > math.MaxInt64-int64(n) {
		return 0, fmt.Errorf("%w: no %d sequential ids left after %d", ErrInput, n, first)
	}
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = first + int64(i)
	}
	return first, ix.addLocked(x, n, ids)
}

// AddWithIDs adds n vectors with the given ids (>= 0). Later sequential
// ids start after the largest id given.
func (ix *Index) AddWithIDs(x []float32, n int, ids []int64) error {
	if len(ids) != n {
		return fmt.Errorf("%w: %d ids for %d vectors", ErrInput, len(ids), n)
	}
	if _, _, err := checkIDs(ids); err != nil {
		return err
	}
	ix.wmu.Lock()
	defer ix.wmu.Unlock()
	return ix.addLocked(x, n, ids)
}

func (ix *Index) addLocked(x []float32, n int, ids []int64) error {
	if !ix.trained {
		return ErrNotTrained
	}
	d := ix.p.D
	if n < 0 || len(x) != n*d {
		return fmt.Errorf("%w: %d floats for %d vectors of dimension %d", ErrDim, len(x), n, d)
	}
	for lo := 0; lo < n; lo += addBatch {
		hi := min(lo+addBatch, n)
		xs, err := ix.checkVectors(x[lo*d:hi*d], hi-lo)
		if err != nil {
			return fmt.Errorf("%w (vector %d of the call)", err, lo)
		}
		lists, codes := ix.encode(xs, hi-lo)
		if err := ix.appendLocked(lists, ids[lo:hi], codes); err != nil {
			return err
		}
		ix.progress("add", int64(hi), int64(n))
	}
	return nil
}

// appendLocked stores entries and the id bookkeeping after them in one
// commit; the caller holds wmu and checked the ids.
func (ix *Index) appendLocked(lists, ids []int64, codes []byte) error {
	lo, hi, err := checkIDs(ids)
	if err != nil {
		return err
	}
	ix.mu.Lock()
	next := ix.ids.with(lo, hi)
	ix.mu.Unlock()
	if err := ix.lists.Append(lists, ids, codes, next.meta()); err != nil {
		return err
	}
	ix.mu.Lock()
	ix.ids = next
	ix.direct = nil
	ix.mu.Unlock()
	return nil
}

// NextID returns the id the next Add starts at: after every id the index
// ever held.
func (ix *Index) NextID() int64 {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.ids.next
}

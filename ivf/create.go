package ivf

import (
	"fmt"
	"math"
	"sync"

	"github.com/shelfdb/shelf/pq"
	"github.com/shelfdb/shelf/rq"
)

// An index made from parts trained elsewhere (a FAISS file's model and
// lists, read by package faissio): NewTrained builds the model, CreateFrom
// fills an index with it from a Source, in memory or as a new index
// directory through createDir, the one way a directory is made. The id
// bookkeeping of what was stored is taken from the ids as they are read
// (idTracker), so it can never disagree with the vectors.

// NewTrained makes a trained in-memory index with no vectors from its
// parts: the parameters, the NList x D coarse centroids and, unless
// p.Flat, the product quantizer (nil for Flat). It checks that the parts
// match the parameters and hold no NaN or infinity. The index keeps
// centroids and q (q is prepared for search): do not change them
// afterwards.
func NewTrained(p Params, centroids []float32, q *pq.PQ) (*Index, error) {
	ix, err := newTrained(p, centroids)
	if err != nil {
		return nil, err
	}
	switch {
	case p.RQ:
		return nil, fmt.Errorf("%w: %s needs a residual quantizer (NewTrainedRQ)", ErrParams, p.Factory())
	case p.Flat && q != nil:
		return nil, fmt.Errorf("%w: an IVF-Flat index has no product quantizer", ErrParams)
	case p.Flat:
	case q == nil:
		return nil, fmt.Errorf("%w: %s needs its product quantizer", ErrParams, p.Factory())
	case q.D != p.D || q.M != p.M || q.Nbits != p.Nbits || q.Dsub*q.M != q.D || q.Ksub != 1<<q.Nbits || len(q.Centroids) != q.Ksub*q.D:
		return nil, fmt.Errorf("%w: PQ d=%d M=%d nbits=%d dsub=%d ksub=%d with %d floats of centroids does not fit %s of dimension %d",
			ErrParams, q.D, q.M, q.Nbits, q.Dsub, q.Ksub, len(q.Centroids), p.Factory(), p.D)
	default:
		if i := nonFinite(q.Centroids); i >= 0 {
			return nil, fmt.Errorf("%w: PQ centroid %d has a NaN or infinite component", ErrInput, i/q.Dsub)
		}
	}
	ix.pq = q
	ix.finishModel()
	ix.trained = true
	return ix, nil
}

// NewTrainedRQ is NewTrained for IVF,RQ: the residual quantizer must be
// trained (codebooks and norm levels) and fit p.
func NewTrainedRQ(p Params, centroids []float32, q *rq.RQ) (*Index, error) {
	ix, err := newTrained(p, centroids)
	if err != nil {
		return nil, err
	}
	switch {
	case !p.RQ:
		return nil, fmt.Errorf("%w: %s has no residual quantizer", ErrParams, p.Factory())
	case q == nil || !q.Trained():
		return nil, fmt.Errorf("%w: %s needs its trained residual quantizer", ErrParams, p.Factory())
	case q.D != p.D || q.M != p.M || q.Nbits != p.Nbits:
		return nil, fmt.Errorf("%w: RQ d=%d M=%d nbits=%d does not fit %s of dimension %d", ErrParams, q.D, q.M, q.Nbits, p.Factory(), p.D)
	}
	ix.rq = q
	ix.finishModel()
	ix.trained = true
	return ix, nil
}

// newTrained is the part of NewTrained and NewTrainedRQ that checks and
// sets the coarse centroids.
func newTrained(p Params, centroids []float32) (*Index, error) {
	ix, err := New(p)
	if err != nil {
		return nil, err
	}
	if len(centroids) != p.NList*p.D {
		return nil, fmt.Errorf("%w: %d floats of centroids for %d lists of dimension %d", ErrParams, len(centroids), p.NList, p.D)
	}
	if i := nonFinite(centroids); i >= 0 {
		return nil, fmt.Errorf("%w: centroid %d has a NaN or infinite component", ErrInput, i/p.D)
	}
	ix.setCentroids(centroids)
	return ix, nil
}

// nonFinite returns the position of the first NaN or infinity of x, or -1.
func nonFinite(x []float32) int {
	for i, v := range x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return i
		}
	}
	return -1
}

// CheckIDs refuses ids an index cannot store: -1 marks an empty result
// slot (as in FAISS), so no vector may have it. CreateFrom refuses such
// an id too; a reader of foreign files checks first to report it in its
// own terms.
func CheckIDs(ids []int64) error {
	_, _, err := checkIDs(ids)
	return err
}

// CreateFrom makes an index with model's training (its lists are not
// read) holding every entry of src: in memory if dir is "", else as the
// new index directory dir, as ToDisk makes one (dir must not hold an
// index; on failure what was created is removed). The next sequential id
// is max(nextID, largest id of src + 1); src may not hold the id -1.
// progress, if set, receives the entries stored of the total. The new
// index shares model's (immutable) training and takes its Threads,
// Progress and PrecomputedTableMax.
func CreateFrom(model *Index, src Source, dir string, nextID int64, progress func(done, total int64)) (*Index, error) {
	if !model.trained {
		return nil, ErrNotTrained
	}
	p := model.p
	if src.NumLists() != p.NList || src.CodeSize() != p.CodeSize() {
		return nil, fmt.Errorf("%w: the source has %d lists of %d-byte codes, the model %d of %d",
			ErrIncompatible, src.NumLists(), src.CodeSize(), p.NList, p.CodeSize())
	}
	if nextID < 0 {
		return nil, fmt.Errorf("%w: next id %d", ErrInput, nextID)
	}
	ix := &Index{p: p, trained: true, centroids: model.centroids, cnorms: model.cnorms, pq: model.pq, rq: model.rq, quant: model.quant,
		precomp: model.precomp, precompID: model.precompID,
		Threads: model.Threads, Progress: model.Progress, PrecomputedTableMax: model.PrecomputedTableMax}
	start := emptyIDs()
	start.next = nextID
	if dir == "" {
		return ix, ix.fillMemory(src, start, progress)
	}
	if progress != nil {
		ix.opProgress = func(stage string, done, total int64) {
			if stage == "merge" {
				progress(done, total)
			}
		}
	}
	st, ids, err := createDir(dir, ix, src, start, true)
	ix.opProgress = nil
	if err != nil {
		return nil, err
	}
	dl := &diskLists{s: st}
	ix.lists, ix.disk, ix.dir, ix.ids = dl, dl, dir, ids
	return ix, nil
}

// fillMemory gives ix in-memory lists holding the entries of src, with
// the bookkeeping of start and the ids read.
func (ix *Index) fillMemory(src Source, start idState, progress func(done, total int64)) error {
	var total int64
	for l := 0; l < src.NumLists(); l++ {
		n, err := src.ListLen(l)
		if err != nil {
			return err
		}
		total += int64(n)
	}
	tr := newIDTracker(src, start)
	if progress != nil {
		var done int64
		tr.read = func(n int) {
			if n > 0 {
				done += int64(n)
				progress(done, total)
			}
		}
	}
	ml := NewMemLists(ix.p.NList, ix.p.CodeSize())
	if _, err := ml.MergeFrom([]Source{tr}, nil, 0, nil); err != nil {
		return err
	}
	ids := tr.state()
	if err := ml.Append(nil, nil, nil, ids.meta()); err != nil {
		return err
	}
	ix.lists, ix.ids = ml, ids
	return nil
}

// idTracker is a Source that keeps the id bookkeeping of the entries read
// through it (from start on) and refuses the id -1, so that a creation
// stores, in the commit of its vectors, the bookkeeping of exactly those.
type idTracker struct {
	Source
	read func(n int) // if set, called with the size of every list read (one reader at a time)

	mu  sync.Mutex
	ids idState
}

func newIDTracker(src Source, start idState) *idTracker {
	return &idTracker{Source: src, ids: start}
}

func (t *idTracker) ReadList(l int) ([]int64, []byte, error) {
	ids, codes, err := t.Source.ReadList(l)
	if err != nil {
		return nil, nil, err
	}
	lo, hi, err := checkIDs(ids)
	if err != nil {
		return nil, nil, fmt.Errorf("list %d: %w", l, err)
	}
	t.mu.Lock()
	t.ids = t.ids.with(lo, hi)
	t.mu.Unlock()
	if t.read != nil {
		t.read(len(ids))
	}
	return ids, codes, nil
}

// state is the bookkeeping once every list was read.
func (t *idTracker) state() idState {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ids
}

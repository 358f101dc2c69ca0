package ivf

import (
	"bytes"
	"fmt"
	"math"
	"math/bits"
	"slices"
)

// ComputeResidual returns x - centroid of list l (FAISS compute_residual).
func (ix *Index) ComputeResidual(x []float32, l int) ([]float32, error) {
	if !ix.trained {
		return nil, ErrNotTrained
	}
	if len(x) != ix.p.D {
		return nil, fmt.Errorf("%w: vector of %d, index of %d", ErrDim, len(x), ix.p.D)
	}
	if l < 0 || l >= ix.p.NList {
		return nil, fmt.Errorf("%w: list %d of %d", ErrInput, l, ix.p.NList)
	}
	d := ix.p.D
	r := make([]float32, d)
	for j := range r {
		r[j] = x[j] - ix.centroids[l*d+j]
	}
	return r, nil
}

// decodeCode returns the vector a code of list l stands for.
func (ix *Index) decodeCode(l int, code []byte, out []float32) {
	d := ix.p.D
	if ix.p.Flat {
		copy(out, decodeFlat(code, 1, d, nil))
		return
	}
	ix.quant.decode(code, 1, out)
	if ix.p.ByResidual {
		for j := range out {
			out[j] += ix.centroids[l*d+j]
		}
	}
}

// directMap returns id -> (list, position), built by one pass over the
// lists and kept until the next write (FAISS's DirectMap, on demand).
func (ix *Index) directMap(s Snapshot) (map[int64]loc, error) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.direct != nil {
		return ix.direct, nil
	}
	m := map[int64]loc{}
	for l := 0; l < s.NumLists(); l++ {
		ids, _, err := s.ReadList(l)
		if err != nil {
			return nil, err
		}
		for i, id := range ids {
			m[id] = loc{int32(l), int32(i)}
		}
	}
	ix.direct = m
	return m, nil
}

// Reconstruct returns the (approximate) vector stored under id: the
// decoded code plus its centroid. For cosine, the unit vector.
func (ix *Index) Reconstruct(id int64) ([]float32, error) {
	out, err := ix.ReconstructBatch([]int64{id})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ReconstructBatch reconstructs several ids (FAISS reconstruct_batch).
func (ix *Index) ReconstructBatch(ids []int64) ([]float32, error) {
	if !ix.trained {
		return nil, ErrNotTrained
	}
	s, err := ix.lists.Snapshot()
	if err != nil {
		return nil, err
	}
	defer s.Release()
	dm, err := ix.directMap(s)
	if err != nil {
		return nil, err
	}
	d, cs := ix.p.D, ix.p.CodeSize()
	out := make([]float32, len(ids)*d)
	for i, id := range ids {
		lc, ok := dm[id]
		if !ok {
			return nil, fmt.Errorf("%w: id %d is not in the index", ErrInput, id)
		}
		_, codes, err := s.ReadList(int(lc.list))
		if err != nil {
			return nil, err
		}
		ix.decodeCode(int(lc.list), codes[int(lc.pos)*cs:(int(lc.pos)+1)*cs], out[i*d:(i+1)*d])
	}
	return out, nil
}

// ReconstructN reconstructs ids i0 .. i0+n-1 (FAISS reconstruct_n).
func (ix *Index) ReconstructN(i0 int64, n int) ([]float32, error) {
	// n distinct ids must all be held: n <= ntotal bounds the ids made.
	if n < 0 || int64(n) > ix.NTotal() || i0 < 0 || i0 > math.MaxInt64-int64(n) {
		return nil, fmt.Errorf("%w: ids %d to %d+%d of an index of %d vectors", ErrInput, i0, i0, n, ix.NTotal())
	}
	ids := make([]int64, n)
	for i := range ids {
		ids[i] = i0 + int64(i)
	}
	return ix.ReconstructBatch(ids)
}

// RemoveIDs deletes the vectors with the given ids and returns how many
// were found (FAISS remove_ids with an IDSelectorBatch).
func (ix *Index) RemoveIDs(ids []int64) (int64, error) {
	set := make(map[int64]struct{}, len(ids))
	for _, id := range ids {
		set[id] = struct{}{}
	}
	return ix.remove(func(id int64) bool { _, ok := set[id]; return ok })
}

// RemoveRange deletes the vectors with lo <= id < hi (IDSelectorRange).
func (ix *Index) RemoveRange(lo, hi int64) (int64, error) {
	return ix.remove(func(id int64) bool { return id >= lo && id < hi })
}

func (ix *Index) remove(sel func(int64) bool) (int64, error) {
	ix.wmu.Lock()
	defer ix.wmu.Unlock()
	n, err := ix.lists.Remove(sel)
	ix.mu.Lock()
	ix.direct = nil
	ix.mu.Unlock()
	return n, err
}

// SameTraining reports whether other has the same parameters, centroids
// and codebooks, so its codes mean the same here.
func (ix *Index) SameTraining(other *Index) error {
	if !ix.trained || !other.trained {
		return ErrNotTrained
	}
	if ix.p != other.p {
		return fmt.Errorf("%w: %s %s vs %s %s", ErrIncompatible, ix.p.Factory(), ix.p.Metric, other.p.Factory(), other.p.Metric)
	}
	if !slices.Equal(ix.centroids, other.centroids) {
		return fmt.Errorf("%w: different coarse centroids", ErrIncompatible)
	}
	if !ix.p.Flat {
		a, _ := ix.quant.marshal()
		b, _ := other.quant.marshal()
		if !bytes.Equal(a, b) {
			return fmt.Errorf("%w: different codebooks", ErrIncompatible)
		}
	}
	return nil
}

// TwoLayerCodeSize is the size of a flat two-level code: the list number
// in ceil(log2(nlist)/8) bytes, then the list code (FAISS Index2Layer
// sa_code_size).
func (ix *Index) TwoLayerCodeSize() int { return listNoBytes(ix.p.NList) + ix.p.CodeSize() }

// listNoBytes is how many bytes of a two-level code hold the list number.
func listNoBytes(nlist int) int {
	return max(1, (bits.Len(uint(max(nlist, 1)-1))+7)/8)
}

// SAEncode encodes n vectors as flat two-level codes (FAISS sa_encode):
// what the parallel build's workers write into code blocks.
func (ix *Index) SAEncode(x []float32, n int) ([]byte, error) {
	if !ix.trained {
		return nil, ErrNotTrained
	}
	xs, err := ix.checkVectors(x, n)
	if err != nil {
		return nil, err
	}
	lists, codes := ix.encode(xs, n)
	nb, cs := listNoBytes(ix.p.NList), ix.p.CodeSize()
	out := make([]byte, n*(nb+cs))
	for i := 0; i < n; i++ {
		c := out[i*(nb+cs):]
		for b := 0; b < nb; b++ {
			c[b] = byte(lists[i] >> (8 * b))
		}
		copy(c[nb:nb+cs], codes[i*cs:(i+1)*cs])
	}
	return out, nil
}

// splitTwoLayer splits flat two-level codes into list numbers and codes.
func (ix *Index) splitTwoLayer(codes []byte) ([]int64, []byte, error) {
	nb, cs := listNoBytes(ix.p.NList), ix.p.CodeSize()
	if len(codes)%(nb+cs) != 0 {
		return nil, nil, fmt.Errorf("%w: %d bytes is not a whole number of %d-byte codes", ErrInput, len(codes), nb+cs)
	}
	n := len(codes) / (nb + cs)
	lists := make([]int64, n)
	out := make([]byte, n*cs)
	for i := 0; i < n; i++ {
		c := codes[i*(nb+cs):]
		var l int64
		for b := 0; b < nb; b++ {
			l |= int64(c[b]) << (8 * b)
		}
		if l >= int64(ix.p.NList) {
			return nil, nil, fmt.Errorf("%w: code %d names list %d of %d", ErrInput, i, l, ix.p.NList)
		}
		lists[i] = l
		copy(out[i*cs:(i+1)*cs], c[nb:nb+cs])
	}
	return lists, out, nil
}

// SADecode decodes flat two-level codes into vectors (FAISS sa_decode).
func (ix *Index) SADecode(codes []byte) ([]float32, error) {
	if !ix.trained {
		return nil, ErrNotTrained
	}
	lists, cs, err := ix.splitTwoLayer(codes)
	if err != nil {
		return nil, err
	}
	d, c := ix.p.D, ix.p.CodeSize()
	out := make([]float32, len(lists)*d)
	for i, l := range lists {
		ix.decodeCode(int(l), cs[i*c:(i+1)*c], out[i*d:(i+1)*d])
	}
	return out, nil
}

// AddSACodes adds vectors given as flat two-level codes with their ids
// (FAISS add_sa_codes): no encoding, the list is read from the code.
func (ix *Index) AddSACodes(codes []byte, ids []int64) error {
	if !ix.trained {
		return ErrNotTrained
	}
	lists, cs, err := ix.splitTwoLayer(codes)
	if err != nil {
		return err
	}
	if len(ids) != len(lists) {
		return fmt.Errorf("%w: %d ids for %d codes", ErrInput, len(ids), len(lists))
	}
	ix.wmu.Lock()
	defer ix.wmu.Unlock()
	return ix.appendLocked(lists, ids, cs)
}

package ivf

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"

	"github.com/shelfdb/shelf/pq"
	"github.com/shelfdb/shelf/rq"
)

// The model file: the trained parameters, written once (dir.go).
const (
	modelMagic   = "SHELFIVF"
	modelVersion = 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func (ix *Index) marshalModel() ([]byte, error) {
	p := ix.p
	b := []byte(modelMagic)
	b = binary.LittleEndian.AppendUint32(b, modelVersion)
	for _, v := range []int{p.D, p.NList, p.M, p.Nbits} {
		b = binary.LittleEndian.AppendUint32(b, uint32(v))
	}
	flags := byte(0)
	if p.Flat {
		flags |= 1
	}
	if p.ByResidual {
		flags |= 2
	}
	if p.RQ {
		flags |= 4
	}
	b = append(b, flags, byte(p.Metric), 0, 0)
	for _, v := range ix.centroids {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	var pqb []byte
	if ix.quant != nil {
		var err error
		if pqb, err = ix.quant.marshal(); err != nil {
			return nil, err
		}
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(pqb)))
	b = append(b, pqb...)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli)), nil
}

// unmarshalModel decodes a model file into an untrained-lists index.
func unmarshalModel(b []byte) (*Index, error) {
	const hdr = 8 + 4 + 16 + 4
	if len(b) < hdr+8 {
		return nil, fmt.Errorf("%w: model truncated (%d bytes)", ErrCorrupt, len(b))
	}
	if string(b[:8]) != modelMagic {
		return nil, fmt.Errorf("%w: bad magic %q, not a shelf index model", ErrCorrupt, b[:8])
	}
	body := b[:len(b)-4]
	if got, want := binary.LittleEndian.Uint32(b[len(b)-4:]), crc32.Checksum(body, castagnoli); got != want {
		return nil, fmt.Errorf("%w: model checksum %08x, want %08x", ErrCorrupt, got, want)
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != modelVersion {
		return nil, fmt.Errorf("%w: model format version %d, this build reads %d", ErrCorrupt, v, modelVersion)
	}
	u := func(i int) int { return int(binary.LittleEndian.Uint32(b[12+4*i:])) }
	flags := b[28]
	if flags&^7 != 0 {
		return nil, fmt.Errorf("%w: model flags %#x, this build knows %#x", ErrCorrupt, flags, 7)
	}
	p := Params{D: u(0), NList: u(1), M: u(2), Nbits: u(3), Flat: flags&1 != 0, ByResidual: flags&2 != 0, RQ: flags&4 != 0, Metric: Metric(b[29])}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	rest := body[hdr:]
	nc := p.NList * p.D
	if len(rest) < nc*4+4 {
		return nil, fmt.Errorf("%w: model truncated in the centroids", ErrCorrupt)
	}
	cents := make([]float32, nc)
	for i := range cents {
		cents[i] = math.Float32frombits(binary.LittleEndian.Uint32(rest[4*i:]))
		if math.IsNaN(float64(cents[i])) || math.IsInf(float64(cents[i]), 0) {
			return nil, fmt.Errorf("%w: centroid %d has a NaN or infinite component", ErrCorrupt, i/p.D)
		}
	}
	rest = rest[4*nc:]
	n := int(binary.LittleEndian.Uint32(rest))
	rest = rest[4:]
	if n != len(rest) {
		return nil, fmt.Errorf("%w: PQ section of %d bytes, %d present", ErrCorrupt, n, len(rest))
	}
	ix := &Index{p: p, trained: true}
	ix.setCentroids(cents)
	// Coarse distances are ||q||^2 + ||c||^2 - 2<q, c>: a centroid whose
	// squared norm overflows float32 makes them NaN, and no list is
	// nearest.
	for l, nrm := range ix.cnorms {
		if math.IsInf(float64(nrm), 0) || math.IsNaN(float64(nrm)) {
			return nil, fmt.Errorf("%w: centroid %d has a squared norm beyond float32", ErrCorrupt, l)
		}
	}
	if p.RQ {
		q := &rq.RQ{}
		if err := q.UnmarshalBinary(rest); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
		if q.D != p.D || q.M != p.M || q.Nbits != p.Nbits {
			return nil, fmt.Errorf("%w: RQ d=%d M=%d nbits=%d does not match the index", ErrCorrupt, q.D, q.M, q.Nbits)
		}
		ix.rq = q
	} else if !p.Flat {
		q := &pq.PQ{}
		if err := q.UnmarshalBinary(rest); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
		if q.D != p.D || q.M != p.M || q.Nbits != p.Nbits {
			return nil, fmt.Errorf("%w: PQ d=%d M=%d nbits=%d does not match the index", ErrCorrupt, q.D, q.M, q.Nbits)
		}
		ix.pq = q
	}
	ix.finishModel()
	return ix, nil
}

package pq

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
)

// ErrCorrupt is wrapped by every error UnmarshalBinary returns for input that
// is not a well-formed serialized PQ.
var ErrCorrupt = errors.New("pq: corrupt serialized quantizer")

// The serialized form, all integers little endian:
//
//	magic   [4]byte "SHPQ"
//	version uint32  (formatVersion)
//	d, m, nbits uint32
//	centroids [d * 2^nbits]float32 (IEEE 754 bits), in the layout of Centroids
//	crc     uint32  CRC-32C (Castagnoli) of everything before it
const (
	magic         = "SHPQ"
	formatVersion = 1
	headerSize    = 4 + 4*4
	trailerSize   = 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// MarshalBinary encodes p in the versioned, checksummed format above.
func (p *PQ) MarshalBinary() ([]byte, error) {
	if err := checkParams(p.D, p.M, p.Nbits); err != nil {
		return nil, err
	}
	if len(p.Centroids) != p.D*(1<<p.Nbits) {
		return nil, fmt.Errorf("%w: %d centroid floats, want %d", ErrInvalid, len(p.Centroids), p.D*(1<<p.Nbits))
	}
	buf := make([]byte, 0, headerSize+4*len(p.Centroids)+trailerSize)
	buf = append(buf, magic...)
	buf = binary.LittleEndian.AppendUint32(buf, formatVersion)
	buf = binary.LittleEndian.AppendUint32(buf, uint32(p.D))
	buf = binary.LittleEndian.AppendUint32(buf, uint32(p.M))
	buf = binary.LittleEndian.AppendUint32(buf, uint32(p.Nbits))
	for _, v := range p.Centroids {
		buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
	}
	buf = binary.LittleEndian.AppendUint32(buf, crc32.Checksum(buf, castagnoli))
	return buf, nil
}

// UnmarshalBinary replaces p by the quantizer encoded in data. On error p is
// left unchanged and the error wraps ErrCorrupt.
func (p *PQ) UnmarshalBinary(data []byte) error {
	if len(data) < headerSize+trailerSize {
		return fmt.Errorf("%w: %d bytes, shorter than the %d-byte header and checksum", ErrCorrupt, len(data), headerSize+trailerSize)
	}
	if string(data[:4]) != magic {
		return fmt.Errorf("%w: bad magic %q", ErrCorrupt, data[:4])
	}
	le := binary.LittleEndian
	if v := le.Uint32(data[4:]); v != formatVersion {
		return fmt.Errorf("%w: format version %d, this build reads %d", ErrCorrupt, v, formatVersion)
	}
	d, m, nbits := le.Uint32(data[8:]), le.Uint32(data[12:]), le.Uint32(data[16:])
	if d > maxDim || m > maxDim || nbits > 8 {
		return fmt.Errorf("%w: header d=%d m=%d nbits=%d out of range", ErrCorrupt, d, m, nbits)
	}
	if err := checkParams(int(d), int(m), int(nbits)); err != nil {
		return fmt.Errorf("%w: header: %w", ErrCorrupt, err)
	}
	nc := int(d) << nbits
	if want := headerSize + 4*nc + trailerSize; len(data) != want {
		return fmt.Errorf("%w: %d bytes, header d=%d m=%d nbits=%d needs %d", ErrCorrupt, len(data), d, m, nbits, want)
	}
	body := data[:len(data)-trailerSize]
	if got, want := crc32.Checksum(body, castagnoli), le.Uint32(data[len(body):]); got != want {
		return fmt.Errorf("%w: checksum %#08x, stored %#08x", ErrCorrupt, got, want)
	}
	cents := make([]float32, nc)
	for i := range cents {
		cents[i] = math.Float32frombits(le.Uint32(data[headerSize+4*i:]))
	}
	if !finite(cents) {
		return fmt.Errorf("%w: non-finite centroid value", ErrCorrupt)
	}
	*p = PQ{D: int(d), M: int(m), Nbits: int(nbits), Dsub: int(d / m), Ksub: 1 << nbits, Centroids: cents}
	return nil
}

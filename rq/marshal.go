package rq

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"slices"
)

// ErrCorrupt is wrapped by every error UnmarshalBinary returns for input
// that is not a well-formed serialized quantizer.
var ErrCorrupt = errors.New("rq: corrupt serialized quantizer")

// The serialized form, all integers little endian:
//
//	magic   [4]byte "SHRQ"
//	version uint32  (formatVersion)
//	d, m, nbits, beam uint32
//	codebooks   [m * 256 * d]float32 (IEEE 754 bits)
//	norm levels [256]float32
//	crc     uint32  CRC-32C (Castagnoli) of everything before it
const (
	magic         = "SHRQ"
	formatVersion = 1
	headerSize    = 4 + 5*4
	trailerSize   = 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// MarshalBinary encodes a trained quantizer in the format above.
func (r *RQ) MarshalBinary() ([]byte, error) {
	if err := checkParams(r.D, r.M, r.Nbits); err != nil {
		return nil, err
	}
	if !r.Trained() {
		return nil, fmt.Errorf("%w: quantizer not trained", ErrInvalid)
	}
	b := make([]byte, 0, headerSize+4*(len(r.Codebooks)+Ksub)+trailerSize)
	b = append(b, magic...)
	for _, v := range []int{formatVersion, r.D, r.M, r.Nbits, r.beam()} {
		b = binary.LittleEndian.AppendUint32(b, uint32(v))
	}
	for _, v := range r.Codebooks {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	for _, v := range r.NormLevels {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli)), nil
}

// UnmarshalBinary replaces r by the quantizer encoded in data. On error r
// is left unchanged and the error wraps ErrCorrupt.
func (r *RQ) UnmarshalBinary(data []byte) error {
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
	d, m, nbits, beam := le.Uint32(data[8:]), le.Uint32(data[12:]), le.Uint32(data[16:]), le.Uint32(data[20:])
	if d > maxDim || m > maxLayers || nbits > 8 || beam == 0 || beam > maxBeam {
		return fmt.Errorf("%w: header d=%d m=%d nbits=%d beam=%d out of range", ErrCorrupt, d, m, nbits, beam)
	}
	if err := checkParams(int(d), int(m), int(nbits)); err != nil {
		return fmt.Errorf("%w: header: %w", ErrCorrupt, err)
	}
	nc := int(m) * Ksub * int(d)
	if want := headerSize + 4*(nc+Ksub) + trailerSize; len(data) != want {
		return fmt.Errorf("%w: %d bytes, header d=%d m=%d needs %d", ErrCorrupt, len(data), d, m, want)
	}
	body := data[:len(data)-trailerSize]
	if got, want := crc32.Checksum(body, castagnoli), le.Uint32(data[len(body):]); got != want {
		return fmt.Errorf("%w: checksum %#08x, stored %#08x", ErrCorrupt, got, want)
	}
	vals := make([]float32, nc+Ksub)
	for i := range vals {
		vals[i] = math.Float32frombits(le.Uint32(data[headerSize+4*i:]))
	}
	if !finite(vals) {
		return fmt.Errorf("%w: non-finite codebook or norm value", ErrCorrupt)
	}
	q := RQ{D: int(d), M: int(m), Nbits: int(nbits), BeamSize: int(beam), Codebooks: vals[:nc:nc], NormLevels: vals[nc:]}
	if err := q.check(); err != nil {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	q.Prepare()
	*r = q
	return nil
}

// check validates a quantizer that came from outside (a file): its
// norm levels must be ascending and every codeword's squared norm, and
// a sum of one per layer, finite in float32.
func (r *RQ) check() error {
	if !slices.IsSorted(r.NormLevels) {
		return fmt.Errorf("norm levels not ascending")
	}
	var bound float64
	for m := range r.M {
		var top float64
		for k := range Ksub {
			var s float64
			for _, v := range r.Layer(m)[k*r.D : (k+1)*r.D] {
				s += float64(v) * float64(v)
			}
			top = max(top, s)
		}
		bound += math.Sqrt(top)
	}
	if bound*bound > math.MaxFloat32/4 {
		return fmt.Errorf("codewords too large: decoded norms overflow float32")
	}
	return nil
}

// FromCodebooks returns a quantizer with the given codebooks (M*Ksub*D
// floats, FAISS's layout) and norm levels (Ksub floats, ascending; nil
// when only EncodeLayers and Decode are used), checked as a file's are.
func FromCodebooks(d, m int, codebooks, normLevels []float32, beam int) (*RQ, error) {
	if err := checkParams(d, m, 8); err != nil {
		return nil, err
	}
	if len(codebooks) != m*Ksub*d || (normLevels != nil && len(normLevels) != Ksub) {
		return nil, fmt.Errorf("%w: %d codebook floats and %d norm levels for d=%d M=%d", ErrInvalid, len(codebooks), len(normLevels), d, m)
	}
	if beam <= 0 || beam > maxBeam {
		return nil, fmt.Errorf("%w: beam size %d, must be in [1, %d]", ErrInvalid, beam, maxBeam)
	}
	if !finite(codebooks) || !finite(normLevels) {
		return nil, fmt.Errorf("%w: non-finite codebook or norm value", ErrInvalid)
	}
	r := &RQ{D: d, M: m, Nbits: 8, BeamSize: beam, Codebooks: slices.Clone(codebooks), NormLevels: slices.Clone(normLevels)}
	if err := r.check(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	r.Prepare()
	return r, nil
}

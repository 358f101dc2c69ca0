package vecio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"path/filepath"
	"strings"
)

// ErrFormat is wrapped by every error that reports a malformed or
// unsupported file, as opposed to an I/O failure or a bad argument.
var ErrFormat = errors.New("invalid vector file")

// MaxDim is the largest row dimension accepted. Real embeddings stay far
// below it; a larger value in a header almost always means the file is not
// in the format its extension claims, and refusing it early avoids a huge
// allocation.
const MaxDim = 1 << 20

// Matrix is a dense row-major float32 matrix: N rows of D values, row i at
// Data[i*D:(i+1)*D].
type Matrix struct {
	N, D int
	Data []float32
}

// Row returns row i of m, aliasing m.Data.
func (m Matrix) Row(i int) []float32 { return m.Data[i*m.D : (i+1)*m.D : (i+1)*m.D] }

// check reports whether m is a well-formed matrix that can be written.
func (m Matrix) check() error {
	if err := checkShape(m.N, m.D); err != nil {
		return err
	}
	if len(m.Data) != m.N*m.D {
		return fmt.Errorf("vecio: matrix %dx%d has %d values", m.N, m.D, len(m.Data))
	}
	return nil
}

func checkShape(n, d int) error {
	if n < 0 || d <= 0 || d > MaxDim {
		return fmt.Errorf("vecio: cannot write shape %dx%d (dimension must be in 1..%d)", n, d, MaxDim)
	}
	return nil
}

// kind is the container format, chosen by file extension.
type kind uint8

const (
	kindFvecs kind = iota + 1
	kindIvecs
	kindBvecs
	kindNpy
)

func kindOf(path string) (kind, error) {
	switch ext := strings.ToLower(filepath.Ext(path)); ext {
	case ".fvecs":
		return kindFvecs, nil
	case ".ivecs":
		return kindIvecs, nil
	case ".bvecs":
		return kindBvecs, nil
	case ".npy":
		return kindNpy, nil
	default:
		return 0, formatErr("unknown extension %q (want .fvecs, .ivecs, .bvecs or .npy)", ext)
	}
}

func (k kind) ext() string {
	switch k {
	case kindFvecs:
		return ".fvecs"
	case kindIvecs:
		return ".ivecs"
	case kindBvecs:
		return ".bvecs"
	}
	return ".npy"
}

// elemType is the on-disk type of one value.
type elemType uint8

const (
	elemF4 elemType = iota + 1
	elemU1
	elemI4
	elemI8
	elemF8 // read as float32 (rounded); float64 embeddings are common
)

func (e elemType) size() int {
	switch e {
	case elemU1:
		return 1
	case elemI8, elemF8:
		return 8
	default:
		return 4
	}
}

func (e elemType) isFloat() bool { return e == elemF4 || e == elemU1 || e == elemF8 }

// String returns the NumPy descr of e, which is also how errors name it.
func (e elemType) String() string {
	switch e {
	case elemF4:
		return "<f4"
	case elemU1:
		return "|u1"
	case elemI4:
		return "<i4"
	case elemI8:
		return "<i8"
	case elemF8:
		return "<f8"
	}
	return "unknown"
}

// layout is everything needed to locate and decode any row of a file.
type layout struct {
	kind     kind
	elem     elemType
	n, d     int
	dataOff  int64 // offset of row 0
	rowBytes int   // bytes per row, prefix included
	prefix   int   // bytes of the per-row dimension prefix: 4 for *vecs, 0 for npy
}

func formatErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrFormat}, args...)...)
}

// fileErr names the file in err. Errors from package os already carry the
// path and are returned unchanged.
func fileErr(path string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return err
	}
	return fmt.Errorf("vecio: %s: %w", path, err)
}

// vecsLayout derives the layout of a .fvecs/.ivecs/.bvecs file of size bytes
// from its first four bytes (head may be shorter when size < 4).
func vecsLayout(k kind, size int64, head []byte) (layout, error) {
	l := layout{kind: k, prefix: 4}
	switch k {
	case kindFvecs:
		l.elem = elemF4
	case kindIvecs:
		l.elem = elemI4
	default:
		l.elem = elemU1
	}
	if size == 0 {
		l.rowBytes = 4
		return l, nil
	}
	if size < 4 || len(head) < 4 {
		return l, formatErr("truncated: file has %d bytes, a row needs at least 4", size)
	}
	d := int64(int32(binary.LittleEndian.Uint32(head)))
	if d <= 0 {
		return l, formatErr("row 0 has dimension %d, must be positive", d)
	}
	if d > MaxDim {
		return l, formatErr("row 0 has dimension %d, more than the maximum %d", d, MaxDim)
	}
	rowBytes := 4 + d*int64(l.elem.size())
	if rem := size % rowBytes; rem != 0 {
		return l, formatErr("truncated: last row has %d of %d bytes (dimension %d)", rem, rowBytes, d)
	}
	l.n, l.d, l.rowBytes = int(size/rowBytes), int(d), int(rowBytes)
	return l, nil
}

// decodeInto converts the whole rows in buf, the first of which is row
// first of the file, into dst (len(buf)/rowBytes*d values). Callers choose T
// to match l.elem: float32 for float elements, an integer type for integer
// ones.
func decodeInto[T float32 | int32 | int64](l *layout, buf []byte, first int, dst []T) error {
	rows := len(buf) / l.rowBytes
	le := binary.LittleEndian
	for r := range rows {
		row := buf[r*l.rowBytes : (r+1)*l.rowBytes]
		if l.prefix > 0 {
			if d := int32(le.Uint32(row)); int(d) != l.d {
				return formatErr("row %d has dimension %d, first row %d", first+r, d, l.d)
			}
		}
		p := row[l.prefix:]
		out := dst[r*l.d : (r+1)*l.d]
		switch l.elem {
		case elemF4:
			for j := range out {
				out[j] = T(math.Float32frombits(le.Uint32(p[4*j:])))
			}
		case elemU1:
			for j := range out {
				out[j] = T(p[j])
			}
		case elemF8:
			for j := range out {
				out[j] = T(float32(math.Float64frombits(le.Uint64(p[8*j:]))))
			}
		case elemI4:
			for j := range out {
				out[j] = T(int32(le.Uint32(p[4*j:])))
			}
		case elemI8:
			for j := range out {
				v := int64(le.Uint64(p[8*j:]))
				if int64(T(v)) != v {
					return formatErr("value %d in row %d does not fit in 32 bits", v, first+r)
				}
				out[j] = T(v)
			}
		}
	}
	return nil
}

// decodeVecs decodes a whole .fvecs/.ivecs/.bvecs file held in memory.
func decodeVecs[T float32 | int32 | int64](k kind, b []byte) (layout, []T, error) {
	l, err := vecsLayout(k, int64(len(b)), b)
	if err != nil {
		return l, nil, err
	}
	data := make([]T, l.n*l.d)
	return l, data, decodeInto(&l, b, 0, data)
}

// decodeFvecs decodes the bytes of a .fvecs file.
func decodeFvecs(b []byte) (Matrix, error) {
	l, data, err := decodeVecs[float32](kindFvecs, b)
	if err != nil {
		return Matrix{}, err
	}
	return Matrix{N: l.n, D: l.d, Data: data}, nil
}

// decodeBvecs decodes the bytes of a .bvecs file into float32.
func decodeBvecs(b []byte) (Matrix, error) {
	l, data, err := decodeVecs[float32](kindBvecs, b)
	if err != nil {
		return Matrix{}, err
	}
	return Matrix{N: l.n, D: l.d, Data: data}, nil
}

// decodeIvecs decodes the bytes of a .ivecs file.
func decodeIvecs(b []byte) (n, d int, data []int32, err error) {
	l, data, err := decodeVecs[int32](kindIvecs, b)
	if err != nil {
		return 0, 0, nil, err
	}
	return l.n, l.d, data, nil
}

// encodeVecs writes n rows of d values in the *vecs layout; put stores
// value i of the current row into the row payload.
func encodeVecs(w io.Writer, n, d, elemSize int, put func(payload []byte, row int)) error {
	row := make([]byte, 4+d*elemSize)
	binary.LittleEndian.PutUint32(row, uint32(d))
	for i := range n {
		put(row[4:], i)
		if _, err := w.Write(row); err != nil {
			return err
		}
	}
	return nil
}

func encodeFvecs(w io.Writer, m Matrix) error {
	return encodeVecs(w, m.N, m.D, 4, func(p []byte, i int) {
		for j, v := range m.Row(i) {
			binary.LittleEndian.PutUint32(p[4*j:], math.Float32bits(v))
		}
	})
}

func encodeIvecs(w io.Writer, n, d int, data []int32) error {
	return encodeVecs(w, n, d, 4, func(p []byte, i int) {
		for j, v := range data[i*d : (i+1)*d] {
			binary.LittleEndian.PutUint32(p[4*j:], uint32(v))
		}
	})
}

func encodeBvecs(w io.Writer, n, d int, data []uint8) error {
	return encodeVecs(w, n, d, 1, func(p []byte, i int) {
		copy(p, data[i*d:(i+1)*d])
	})
}

// WriteFvecs writes m to path as .fvecs, atomically.
func WriteFvecs(path string, m Matrix) error {
	if err := m.check(); err != nil {
		return err
	}
	return writeAtomic(path, kindFvecs, func(w io.Writer) error { return encodeFvecs(w, m) })
}

// WriteIvecs writes n rows of d int32 values (row-major in data) to path as
// .ivecs, atomically. Ground-truth neighbour lists are stored this way.
func WriteIvecs(path string, n, d int, data []int32) error {
	if err := checkShape(n, d); err != nil {
		return err
	}
	if len(data) != n*d {
		return fmt.Errorf("vecio: WriteIvecs of %dx%d with %d values", n, d, len(data))
	}
	return writeAtomic(path, kindIvecs, func(w io.Writer) error { return encodeIvecs(w, n, d, data) })
}

// WriteBvecs writes n rows of d bytes (row-major in data) to path as .bvecs,
// atomically.
func WriteBvecs(path string, n, d int, data []uint8) error {
	if err := checkShape(n, d); err != nil {
		return err
	}
	if len(data) != n*d {
		return fmt.Errorf("vecio: WriteBvecs of %dx%d with %d values", n, d, len(data))
	}
	return writeAtomic(path, kindBvecs, func(w io.Writer) error { return encodeBvecs(w, n, d, data) })
}

// WriteNpyFloat32 writes m to path as a 2-D <f4 .npy array of shape (N, D),
// atomically.
func WriteNpyFloat32(path string, m Matrix) error {
	if err := m.check(); err != nil {
		return err
	}
	return writeAtomic(path, kindNpy, func(w io.Writer) error { return encodeNpyFloat32(w, m) })
}

// WriteNpyInt64 writes ids to path as a 1-D <i8 .npy array, atomically;
// ReadInt64 reads it back as len(ids) x 1.
func WriteNpyInt64(path string, ids []int64) error {
	return writeAtomic(path, kindNpy, func(w io.Writer) error { return encodeNpyInt64(w, ids) })
}

// ReadFloat32 reads a whole .fvecs, .bvecs or .npy (<f4, <f8 or |u1) file; byte
// values are converted to float32. An .ivecs or integer .npy file is an
// error: ids are not vectors.
func ReadFloat32(path string) (Matrix, error) {
	r, err := OpenFloat32(path)
	if err != nil {
		return Matrix{}, err
	}
	defer r.Close()
	data := make([]float32, r.l.n*r.l.d)
	if err := readRowsInto(r, 0, r.l.n, data); err != nil {
		return Matrix{}, err
	}
	return Matrix{N: r.l.n, D: r.l.d, Data: data}, nil
}

// ReadInt32 reads a whole .ivecs file or integer .npy file (<i4, or <i8
// whose values all fit in int32) as n rows of d values. A 1-D .npy array is
// n x 1.
func ReadInt32(path string) (n, d int, data []int32, err error) {
	r, err := openInts(path)
	if err != nil {
		return 0, 0, nil, err
	}
	defer r.Close()
	data = make([]int32, r.l.n*r.l.d)
	if err := readRowsInto(r, 0, r.l.n, data); err != nil {
		return 0, 0, nil, err
	}
	return r.l.n, r.l.d, data, nil
}

// ReadInt64 reads a whole .ivecs file or integer .npy file (<i4 or <i8) as
// n rows of d values, widening int32. A 1-D .npy array is n x 1.
func ReadInt64(path string) (n, d int, data []int64, err error) {
	r, err := openInts(path)
	if err != nil {
		return 0, 0, nil, err
	}
	defer r.Close()
	data = make([]int64, r.l.n*r.l.d)
	if err := readRowsInto(r, 0, r.l.n, data); err != nil {
		return 0, 0, nil, err
	}
	return r.l.n, r.l.d, data, nil
}

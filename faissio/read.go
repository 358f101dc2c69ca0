package faissio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"

	"github.com/shelfdb/shelf/ivf"
)

// The reader's primitives: every field is read through reader, which
// checks each length against what is left of the file before it reads or
// allocates, and names the field and its byte offset in every error.

// dataFile is an opened list data file.
type dataFile interface {
	io.ReaderAt
	io.Closer
	Size() int64
}

type osDataFile struct {
	*os.File
	size int64
}

func (f osDataFile) Size() int64 { return f.size }

// openRegular opens a regular file for reading (never a FIFO or device,
// whose open could block or whose size means nothing).
func openRegular(name string) (dataFile, error) {
	st, err := os.Stat(name)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", name)
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	return osDataFile{f, st.Size()}, nil
}

// reader parses a FAISS file through a read-ahead window, checking every
// length against what is left of the file before using or allocating it.
type reader struct {
	r      io.ReaderAt
	size   int64
	off    int64
	name   string
	win    []byte
	winOff int64
	buf    []byte
}

const window = 1 << 16

func (r *reader) corrupt(field string, at int64, format string, a ...any) error {
	return fmt.Errorf("%w: FAISS file %s: %s at byte %d: %s", ivf.ErrCorrupt, r.name, field, at, fmt.Sprintf(format, a...))
}

func (r *reader) unsupported(format string, a ...any) error {
	return fmt.Errorf("%w: FAISS file %s: %s", ErrUnsupported, r.name, fmt.Sprintf(format, a...))
}

func (r *reader) left() int64 { return r.size - r.off }

// next returns the next n bytes; the slice is valid until the next call.
func (r *reader) next(field string, n int64) ([]byte, error) {
	if n < 0 || n > r.left() {
		return nil, r.corrupt(field, r.off, "needs %d bytes, the file has %d left (truncated?)", n, r.left())
	}
	at := r.off
	if at >= r.winOff && at+n <= r.winOff+int64(len(r.win)) {
		r.off += n
		return r.win[at-r.winOff : at-r.winOff+n], nil
	}
	var b []byte
	if n > window {
		b = make([]byte, n)
	} else {
		if r.buf == nil {
			r.buf = make([]byte, min(window, r.size))
		}
		b = r.buf[:min(int64(window), r.size-at)]
	}
	if _, err := r.r.ReadAt(b, at); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, r.corrupt(field, at, "file ends early")
		}
		return nil, fmt.Errorf("faissio: read FAISS file %s: %w", r.name, err)
	}
	r.off += n
	if n > window {
		return b, nil
	}
	r.win, r.winOff = b, at
	return b[:n], nil
}

func (r *reader) u8(field string) (byte, error) {
	b, err := r.next(field, 1)
	if err != nil {
		return 0, err
	}
	return b[0], nil
}

func (r *reader) bool(field string) (bool, error) {
	at := r.off
	b, err := r.u8(field)
	if err == nil && b > 1 {
		err = r.corrupt(field, at, "boolean byte %d", b)
	}
	return b == 1, err
}

func (r *reader) i32(field string) (int32, error) {
	b, err := r.next(field, 4)
	if err != nil {
		return 0, err
	}
	return int32(binary.LittleEndian.Uint32(b)), nil
}

func (r *reader) tag(field string) (string, error) {
	b, err := r.next(field, 4)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

func (r *reader) u64(field string) (uint64, error) {
	b, err := r.next(field, 8)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b), nil
}

// small reads a uint64 that must be in [lo, hi].
func (r *reader) small(field string, lo, hi uint64) (int64, error) {
	at := r.off
	v, err := r.u64(field)
	if err != nil {
		return 0, err
	}
	if v < lo || v > hi {
		return 0, r.corrupt(field, at, "value %d out of range [%d, %d]", v, lo, hi)
	}
	return int64(v), nil
}

// count reads a vector length of elements of elem bytes and checks that
// they fit in the rest of the file.
func (r *reader) count(field string, elem int64) (int64, error) {
	at := r.off
	v, err := r.u64(field)
	if err != nil {
		return 0, err
	}
	if v > uint64(r.left()/elem) {
		return 0, r.corrupt(field, at, "%d elements of %d bytes, the file has %d bytes left", v, elem, r.left())
	}
	return int64(v), nil
}

// floats reads n float32 values (n checked against the file first) and
// refuses NaN and infinities.
func (r *reader) floats(field string, n int64) ([]float32, error) {
	at := r.off
	if n > r.left()/4 {
		return nil, r.corrupt(field, at, "%d floats, the file has %d bytes left", n, r.left())
	}
	out := make([]float32, n)
	for done := int64(0); done < n; {
		k := min(n-done, window/4)
		b, err := r.next(field, 4*k)
		if err != nil {
			return nil, err
		}
		for i := range k {
			v := math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, r.corrupt(field, at+4*(done+i), "value %d is %v", done+i, v)
			}
			out[done+i] = v
		}
		done += k
	}
	return out, nil
}

func (r *reader) skip(field string, n int64) error {
	if n < 0 || n > r.left() {
		return r.corrupt(field, r.off, "needs %d bytes, the file has %d left (truncated?)", n, r.left())
	}
	r.off += n
	return nil
}

// bytesReaderAt is a file held in memory (tests, fuzzing).
type bytesReaderAt []byte

func (b bytesReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off > int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

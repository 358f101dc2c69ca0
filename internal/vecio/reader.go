package vecio

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/shelfdb/shelf/internal/atomicfile"
)

// Reader streams the rows of a vector file without loading it whole. Its
// layout is validated when it is opened (size, header, first dimension);
// the dimension prefix of each .fvecs/.bvecs row is checked as the row is
// read. A Reader is not safe for concurrent use.
type Reader struct {
	path string
	f    *os.File
	l    layout
	next int    // next row returned by Read
	buf  []byte // raw rows, reused across reads
}

// readChunk bounds the raw bytes read per ReadAt call so that a Read into
// a large dst does not need a second buffer of the same size.
const readChunk = 4 << 20

// OpenFloat32 opens a .fvecs, .bvecs or .npy (<f4, <f8 or |u1) file for
// streaming float32 rows.
func OpenFloat32(path string) (*Reader, error) {
	r, err := open(path)
	if err != nil {
		return nil, err
	}
	if !r.l.elem.isFloat() {
		r.Close()
		return nil, fileErr(path, formatErr("holds %s integers, not vectors (want .fvecs, .bvecs, or .npy of <f4, <f8 or |u1)", r.l.elem))
	}
	return r, nil
}

func openInts(path string) (*Reader, error) {
	r, err := open(path)
	if err != nil {
		return nil, err
	}
	if r.l.elem.isFloat() {
		r.Close()
		return nil, fileErr(path, formatErr("holds %s values, not integers (want .ivecs, or .npy of <i4 or <i8)", r.l.elem))
	}
	return r, nil
}

func open(path string) (*Reader, error) {
	k, err := kindOf(path)
	if err != nil {
		return nil, fileErr(path, err)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	r := &Reader{path: path, f: f}
	if err := r.readLayout(k); err != nil {
		f.Close()
		return nil, fileErr(path, err)
	}
	return r, nil
}

func (r *Reader) readLayout(k kind) error {
	st, err := r.f.Stat()
	if err != nil {
		return err
	}
	size := st.Size()
	if !st.Mode().IsRegular() {
		return fmt.Errorf("not a regular file")
	}
	head := make([]byte, min(size, 12))
	if _, err := io.ReadFull(r.f, head); err != nil {
		return err
	}
	if k != kindNpy {
		r.l, err = vecsLayout(k, size, head)
		return err
	}
	off, hlen, err := npyPrelude(head)
	if err != nil {
		return err
	}
	if size-int64(off) < int64(hlen) {
		return formatErr("truncated: .npy header of %d bytes, file has %d after the prelude", hlen, size-int64(off))
	}
	hb := make([]byte, hlen)
	if _, err := r.f.ReadAt(hb, int64(off)); err != nil {
		return err
	}
	h, err := parseNpyHeader(string(hb))
	if err != nil {
		return err
	}
	r.l, err = npyLayout(h, int64(off+hlen), size)
	return err
}

// Dim returns the number of values per row (0 for an empty *vecs file).
func (r *Reader) Dim() int { return r.l.d }

// Len returns the number of rows in the file.
func (r *Reader) Len() int { return r.l.n }

// Close closes the file.
func (r *Reader) Close() error { return r.f.Close() }

// Read reads the next rows into dst, as many as fit in len(dst)/Dim() and
// remain, and returns how many it read. After the last row it returns 0 and
// io.EOF.
func (r *Reader) Read(dst []float32) (int, error) {
	if r.next >= r.l.n {
		return 0, io.EOF
	}
	rows := min(len(dst)/r.l.d, r.l.n-r.next)
	if rows == 0 {
		return 0, fmt.Errorf("vecio: %s: Read into %d values, a row needs %d", r.path, len(dst), r.l.d)
	}
	if err := readRowsInto(r, r.next, rows, dst); err != nil {
		return 0, err
	}
	r.next += rows
	return rows, nil
}

// ReadRows reads rows [start, start+count) into dst[:count*Dim()] without
// moving the position of Read.
func (r *Reader) ReadRows(start, count int, dst []float32) error {
	if start < 0 || count < 0 || start > r.l.n-count {
		return fmt.Errorf("vecio: %s: rows [%d, %d+%d) out of range of %d rows", r.path, start, start, count, r.l.n)
	}
	if len(dst) < count*r.l.d {
		return fmt.Errorf("vecio: %s: ReadRows of %d rows into %d values, need %d", r.path, count, len(dst), count*r.l.d)
	}
	return readRowsInto(r, start, count, dst)
}

// readRowsInto decodes rows [start, start+count) into dst, reading at most
// readChunk bytes at a time.
func readRowsInto[T float32 | int32 | int64](r *Reader, start, count int, dst []T) error {
	if count == 0 {
		return nil
	}
	per := max(1, readChunk/r.l.rowBytes)
	if need := min(per, count) * r.l.rowBytes; cap(r.buf) < need {
		r.buf = make([]byte, need)
	}
	for done := 0; done < count; {
		rows := min(per, count-done)
		buf := r.buf[:rows*r.l.rowBytes]
		off := r.l.dataOff + int64(start+done)*int64(r.l.rowBytes)
		if _, err := r.f.ReadAt(buf, off); err != nil {
			if errors.Is(err, io.EOF) {
				// The size was checked at open, so the file shrank since.
				err = io.ErrUnexpectedEOF
			}
			return fileErr(r.path, err)
		}
		if err := decodeInto(&r.l, buf, start+done, dst[done*r.l.d:]); err != nil {
			return fileErr(r.path, err)
		}
		done += rows
	}
	return nil
}

// writeAtomic writes a file through fill with atomicfile: path holds
// either the old or the complete new content. The path's extension must
// name the format written, because readers choose the decoder by
// extension.
func writeAtomic(path string, want kind, fill func(w io.Writer) error) error {
	if k, err := kindOf(path); err != nil || k != want {
		return fmt.Errorf("vecio: %s: extension does not match the format written (want %s)", path, want.ext())
	}
	if err := atomicfile.Write(path, 0o644, fill); err != nil {
		return fileErr(path, err)
	}
	return nil
}

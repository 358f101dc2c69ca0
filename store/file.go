package store

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// dataFile is the seam between the store and its data file: every write,
// sync and size change goes through it, so tests can drop unsynced writes
// (a simulated crash) or inject ENOSPC. Reads go through the memory map of
// OS(), which sees what WriteAt wrote (Linux's unified page cache).
type dataFile interface {
	WriteAt(p []byte, off int64) (int, error)
	ReadAt(p []byte, off int64) (int, error)
	// Sync makes every completed WriteAt and Truncate durable (fdatasync).
	Sync() error
	// Truncate sets the file size; growth reserves disk blocks where the
	// file system supports it, so a full disk is reported here rather than
	// as SIGBUS later.
	Truncate(size int64) error
	Size() (int64, error)
	Close() error
	OS() *os.File
}

// osFile is the production dataFile.
type osFile struct{ f *os.File }

func openOSFile(path string, flag int) (dataFile, error) {
	f, err := os.OpenFile(path, flag, 0o644)
	if err != nil {
		return nil, err
	}
	return &osFile{f: f}, nil
}

func (o *osFile) WriteAt(p []byte, off int64) (int, error) { return o.f.WriteAt(p, off) }
func (o *osFile) ReadAt(p []byte, off int64) (int, error)  { return o.f.ReadAt(p, off) }
func (o *osFile) OS() *os.File                             { return o.f }
func (o *osFile) Close() error                             { return o.f.Close() }

func (o *osFile) Sync() error {
	for {
		err := unix.Fdatasync(int(o.f.Fd()))
		if err != unix.EINTR {
			if err != nil {
				return &os.PathError{Op: "fdatasync", Path: o.f.Name(), Err: err}
			}
			return nil
		}
	}
}

func (o *osFile) Size() (int64, error) {
	st, err := o.f.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

func (o *osFile) Truncate(size int64) error {
	cur, err := o.Size()
	if err != nil {
		return err
	}
	if size > cur {
		// Reserve the blocks now: writing into a hole of a full disk would
		// only fail at write-back. Not every file system supports it.
		err := unix.Fallocate(int(o.f.Fd()), 0, cur, size-cur)
		if err == nil {
			return nil
		}
		if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
			return &os.PathError{Op: "fallocate", Path: o.f.Name(), Err: err}
		}
	}
	if err := o.f.Truncate(size); err != nil {
		return err
	}
	return nil
}

// writeFull writes all of p at off, turning a short write into an error.
func writeFull(f dataFile, p []byte, off uint64) error {
	for len(p) > 0 {
		n, err := f.WriteAt(p, int64(off))
		if err != nil {
			return fmt.Errorf("write %d bytes at %d of %s: %w", len(p), off, f.OS().Name(), err)
		}
		p = p[n:]
		off += uint64(n)
	}
	return nil
}

// readFull reads len(p) bytes at off.
func readFull(f dataFile, p []byte, off uint64) error {
	for len(p) > 0 {
		n, err := f.ReadAt(p, int64(off))
		if n == len(p) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %d bytes at %d of %s: %w", len(p), off, f.OS().Name(), err)
		}
		p = p[n:]
		off += uint64(n)
	}
	return nil
}

// vectorWriter is a data file that writes several buffers at one offset
// in one call (pwritev). The production file implements it where the
// system has the call (file_linux.go), and so does the tests'
// fault-injection file, so crash tests take the production path; any
// other file gets one WriteAt per buffer.
type vectorWriter interface {
	writevAt(bufs [][]byte, off int64) (int, error)
}

// writevFull writes bufs one after another at off, all of them, resuming
// after a short write.
func writevFull(f dataFile, bufs [][]byte, off uint64) error {
	vw, ok := f.(vectorWriter)
	if !ok {
		for _, p := range bufs {
			if err := writeFull(f, p, off); err != nil {
				return err
			}
			off += uint64(len(p))
		}
		return nil
	}
	for {
		for len(bufs) > 0 && len(bufs[0]) == 0 {
			bufs = bufs[1:]
		}
		for len(bufs) > 0 && len(bufs[len(bufs)-1]) == 0 {
			bufs = bufs[:len(bufs)-1]
		}
		switch len(bufs) {
		case 0:
			return nil
		case 1:
			return writeFull(f, bufs[0], off) // pwrite costs less than pwritev
		}
		n, err := vw.writevAt(bufs, int64(off))
		if err == nil && n <= 0 {
			err = io.ErrShortWrite
		}
		if err != nil {
			var rest int
			for _, p := range bufs {
				rest += len(p)
			}
			return fmt.Errorf("write %d bytes at %d of %s: %w", rest, off, f.OS().Name(), err)
		}
		off += uint64(n)
		for n > 0 {
			if n >= len(bufs[0]) {
				n -= len(bufs[0])
				bufs = bufs[1:]
			} else {
				bufs[0] = bufs[0][n:]
				n = 0
			}
		}
	}
}

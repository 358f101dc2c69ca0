//go:build linux

package store

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback asks the kernel to start writing [off, off+n) of f to
// disk without waiting, so a later fdatasync finds less dirty data.
func startWriteback(f dataFile, off, n uint64) {
	_ = unix.SyncFileRange(int(f.OS().Fd()), int64(off), int64(n), unix.SYNC_FILE_RANGE_WRITE)
}

// writevAt writes bufs one after another at off with one pwritev.
func (o *osFile) writevAt(bufs [][]byte, off int64) (int, error) {
	for {
		n, err := unix.Pwritev(int(o.f.Fd()), bufs, off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, &os.PathError{Op: "pwritev", Path: o.f.Name(), Err: err}
		}
		return n, nil
	}
}

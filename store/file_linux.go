//go:build linux

package store

import (
	"fmt"
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

// waitWriteback writes [off, off+n) of f to disk and waits for it
// (sync_file_range), then, with drop, evicts those now clean pages from
// the page cache. Its error must reach the caller: waiting consumes a
// write-back error that a later fdatasync on the same descriptor would
// no longer report.
func waitWriteback(f dataFile, off, n uint64, drop bool) error {
	fd := int(f.OS().Fd())
	err := unix.SyncFileRange(fd, int64(off), int64(n),
		unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER)
	if err != nil {
		return &os.PathError{Op: "sync_file_range", Path: f.OS().Name(), Err: err}
	}
	if drop {
		adviseFile(f, off, n, adviseDontNeed)
	}
	return nil
}

// physicalMemory is the machine's RAM in bytes (0 if unknown).
func physicalMemory() uint64 {
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) != nil {
		return 0
	}
	return uint64(si.Totalram) * uint64(si.Unit)
}

const (
	adviseWillNeed = unix.FADV_WILLNEED
	adviseDontNeed = unix.FADV_DONTNEED
)

// adviseFile passes a page cache hint for [off, off+n) of f; a hint's
// failure loses nothing.
func adviseFile(f dataFile, off, n uint64, advice int) {
	_ = unix.Fadvise(int(f.OS().Fd()), int64(off), int64(n), advice)
}

// openDirect opens f's file again, by its descriptor (so a file a
// compaction removed still opens), with O_DIRECT: reads that bypass the
// page cache. errDirectUnsupported when the file system refuses it.
func openDirect(f *os.File) (*os.File, error) {
	fd, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", f.Fd()), unix.O_RDONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err == unix.EINVAL {
		return nil, errDirectUnsupported
	}
	if err != nil {
		return nil, &os.PathError{Op: "open O_DIRECT", Path: f.Name(), Err: err}
	}
	return os.NewFile(uintptr(fd), f.Name()), nil
}

//go:build linux || darwin || freebsd

package store

// All mmap and unsafe code of the store lives in this file.
//
// Invariant relied on: a mapping is created read-only over a reservation of
// address space that may exceed the data file's size (mmap allows it), and
// the store only hands out slices of [0, committed file size) of a mapping.
// The file never shrinks while mapped (compaction writes a new file), so no
// slice handed out can touch a page past EOF (SIGBUS). A mapping is unmapped
// only when its reference count drops to zero: the store holds one reference
// while the mapping is current, and every View holds one, so a slice from a
// View stays valid until View.Release.

import (
	"fmt"
	"os"
	"sync"
	"unsafe"

	"github.com/edsrzf/mmap-go"
	"golang.org/x/sys/unix"
)

// mapping is one read-only memory map of a data file. refs is guarded by the
// store's reader mutex. file is a descriptor of the same file, owned by the
// mapping and closed with it, so whoever holds the mapping can also pread
// the file (Verify), even once a compaction removed its name.
type mapping struct {
	mm      mmap.MMap
	reserve int64
	refs    int
	file    *os.File

	// direct is the same file opened for direct reads, on first use
	// (ListReader), closed with the mapping.
	directOnce sync.Once
	direct     *os.File
	directErr  error
}

// directFile returns the mapping's file opened with O_DIRECT, opened
// once for every reader of the mapping.
func (m *mapping) directFile() (*os.File, error) {
	m.directOnce.Do(func() { m.direct, m.directErr = openDirect(m.file) })
	return m.direct, m.directErr
}

// mapFile maps reserve bytes of f read-only. If the kernel refuses the
// reservation (address space limits), it retries with smaller ones down to
// minSize, so a store still opens on a constrained machine.
func mapFile(f *os.File, reserve, minSize int64) (*mapping, error) {
	if minSize < 4096 {
		minSize = 4096
	}
	if reserve <= 0 {
		reserve = 8 << 30
		for reserve < 2*minSize {
			reserve *= 2
		}
	}
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("dup %s: %w", f.Name(), err)
	}
	own := os.NewFile(uintptr(fd), f.Name())
	var lastErr error
	for r := reserve; r >= minSize; r /= 2 {
		mm, err := mmap.MapRegion(f, int(r), mmap.RDONLY, 0, 0)
		if err == nil {
			return &mapping{mm: mm, reserve: r, refs: 1, file: own}, nil
		}
		lastErr = err
	}
	if reserve < minSize {
		mm, err := mmap.MapRegion(f, int(minSize), mmap.RDONLY, 0, 0)
		if err == nil {
			return &mapping{mm: mm, reserve: minSize, refs: 1, file: own}, nil
		}
		lastErr = err
	}
	own.Close()
	return nil, fmt.Errorf("mmap %s (%d bytes): %w", f.Name(), minSize, lastErr)
}

// bytes returns the mapped bytes [off, off+n). The caller guarantees the
// range lies inside the committed file size.
func (m *mapping) bytes(off, n uint64) []byte {
	return m.mm[off : off+n : off+n]
}

// unmap releases the mapping and its descriptor; called once refs
// reached zero.
func (m *mapping) unmap() error {
	m.directOnce.Do(func() {}) // orders the read of direct after its opening
	if m.direct != nil {
		m.direct.Close()
	}
	m.file.Close()
	return m.mm.Unmap()
}

// name is the path of the mapped file.
func (m *mapping) name() string { return m.file.Name() }

// advise applies madvise to the page-aligned span covering [off, off+n).
func (m *mapping) advise(off, n uint64, advice int) error {
	if n == 0 {
		return nil
	}
	start := off &^ 4095
	end := off + n
	if end > uint64(len(m.mm)) {
		end = uint64(len(m.mm))
	}
	return unix.Madvise(m.mm[start:end], advice)
}

// touch reads one byte per page of [off, off+n) so the pages are resident,
// returning a value the compiler cannot drop.
func (m *mapping) touch(off, n uint64) byte {
	var acc byte
	b := m.mm[off : off+n]
	for i := 0; i < len(b); i += 4096 {
		acc ^= b[i]
	}
	if len(b) > 0 {
		acc ^= b[len(b)-1]
	}
	return acc
}

// int64View reinterprets b (8-byte aligned, length a multiple of 8) as
// little-endian int64s without copying. The store keeps every ids region at
// an 8-byte aligned offset of a page-aligned mapping, and builds are limited
// to little-endian machines (see endian_check.go), so the view is exact.
func int64View(b []byte) []int64 {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*int64)(unsafe.Pointer(&b[0])), len(b)/8)
}

// int64Bytes is the inverse of int64View: the bytes of ids, without copying,
// used to pwrite ids straight from the caller's slice.
func int64Bytes(ids []int64) []byte {
	if len(ids) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&ids[0])), len(ids)*8)
}

// alignedStart returns the index of the first byte of b whose address is
// a multiple of a (a power of two): where a direct read into b starts.
func alignedStart(b []byte, a uintptr) int {
	if len(b) == 0 {
		return 0
	}
	p := uintptr(unsafe.Pointer(&b[0]))
	return int((a - p%a) % a)
}

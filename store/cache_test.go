package store

import (
	"golang.org/x/sys/unix"
)

// dropCache evicts the store's data file from the page cache: unmap our
// pages of it, then ask the kernel to drop the (clean) cached pages.
func dropCache(v *View) error {
	if err := unix.Madvise(v.st.m.mm, unix.MADV_DONTNEED); err != nil {
		return err
	}
	return unix.Fadvise(int(v.s.file.OS().Fd()), 0, 0, unix.FADV_DONTNEED)
}

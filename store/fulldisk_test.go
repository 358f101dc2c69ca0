package store

import (
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// mountTmpfs mounts a tmpfs of size bytes on a fresh directory for the
// test and returns it; the test is skipped where that is not allowed.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs (a real full disk)")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("cannot mount a tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// fillDisk takes every free byte of the file system of dir and returns
// the file that holds them: removing it frees the disk again.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "ballast")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	off := int64(0)
	for n := int64(st.Bavail) * st.Bsize; n >= 4096; n /= 2 {
		for unix.Fallocate(int(f.Fd()), 0, off, n) == nil {
			off += n
		}
	}
	page := make([]byte, 4096)
	for {
		if _, err := f.WriteAt(page, off); err != nil {
			break
		}
		off += 4096
	}
	return path
}

// fullDiskStore makes a store on a 40 MiB tmpfs with a few committed
// batches, closed, and returns its directory, the mount and the model.
func fullDiskStore(t *testing.T) (string, string, *model) {
	mnt := mountTmpfs(t, "40m")
	dir := filepath.Join(mnt, "store")
	s := mustCreate(t, dir, 64, 8)
	m := newModel(64, 8)
	r := rand.New(rand.NewSource(5))
	for i := 0; i < 4; i++ {
		fillStore(t, s, m, r, 50)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir, mnt, m
}

// TestFullDiskWriter runs the writer on a real full disk (a tmpfs filled
// with fallocate): adding, merging and compacting in a store opened
// before the disk filled up, and opening one after, each end promptly,
// with ENOSPC or having done their work; nothing committed is lost.
func TestFullDiskWriter(t *testing.T) {
	dir, mnt, m := fullDiskStore(t)
	s, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	ballast := fillDisk(t, mnt)
	r := rand.New(rand.NewSource(6))
	full := 0
	// outcome accepts a write that ended with ENOSPC (nothing changed)
	// or that worked (the model moves on).
	outcome := func(what string, err error, nm *model) {
		t.Helper()
		switch {
		case err == nil:
			*m = *nm
		case errors.Is(err, syscall.ENOSPC):
			full++
			t.Logf("%s: %v", what, err)
		case errors.Is(err, ErrFailed):
			t.Logf("%s: %v", what, err)
		default:
			t.Fatalf("%s on a full disk: %v (want ENOSPC)", what, err)
		}
	}
	for i := 0; i < 3; i++ {
		nm := m.clone()
		err := within(t, 20*time.Second, "add", func() error {
			b, err := s.Begin()
			if err != nil {
				return err
			}
			for l := range nm.lists {
				ids, codes := randEntries(r, 200, 8)
				if _, err := b.Add(l, ids, codes); err != nil {
					b.Abort()
					return err
				}
				nm.lists[l] = append(nm.lists[l], toEnts(ids, codes, 8)...)
			}
			return b.Commit()
		})
		outcome("add", err, nm)
		nm = m.clone()
		src := &memSource{cs: 8, lists: make([][]ent, 64)}
		for l := range src.lists {
			ids, codes := randEntries(r, 300, 8)
			src.lists[l] = toEnts(ids, codes, 8)
			nm.lists[l] = append(nm.lists[l], src.lists[l]...)
		}
		err = within(t, 20*time.Second, "merge", func() error {
			_, err := s.MergeFrom([]Source{src}, nil)
			return err
		})
		outcome("merge", err, nm)
		err = within(t, 20*time.Second, "compact", func() error {
			_, err := s.Compact()
			return err
		})
		outcome("compact", err, m.clone())
	}
	if full == 0 {
		t.Fatal("no operation met the full disk")
	}
	if err := compareStore(s, m); err != nil {
		t.Fatal(err)
	}
	t.Logf("close: %v", within(t, 20*time.Second, "close", s.Close))
	err = within(t, 20*time.Second, "open", func() error {
		s, err := Open(dir, nil)
		if err == nil {
			return s.Close()
		}
		return err
	})
	if err != nil && !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("open on a full disk: %v (want ENOSPC)", err)
	}
	t.Logf("open on the full disk: %v", err)
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	reopenIntact(t, dir, nil, m)
}

// TestFullDiskReadOnly: a read-only open needs no free space, so
// reading a store (shelf stats, shelf search) works on a full disk.
// Registering the reader writes a file under readers/; on a full disk
// the read-only open falls back to an unregistered read (store/readers.go).
func TestFullDiskReadOnly(t *testing.T) {
	dir, mnt, m := fullDiskStore(t)
	ballast := fillDisk(t, mnt)
	err := within(t, 20*time.Second, "read-only open", func() error {
		s, err := OpenReadOnly(dir, nil)
		if err != nil {
			return err
		}
		defer s.Close()
		if _, err := s.Refresh(); err != nil {
			return err
		}
		return compareStore(s, m)
	})
	if err != nil {
		t.Fatalf("reading on a full disk: %v", err)
	}
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	reopenIntact(t, dir, nil, m)
}

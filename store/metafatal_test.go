package store

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// walFailFS is the disk under Pebble, whose WAL writes and syncs fail
// with ENOSPC while fail is set.
type walFailFS struct {
	vfs.FS
	fail atomic.Bool
}

type walFailFile struct {
	vfs.File
	fs *walFailFS
}

func (fs *walFailFS) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil || !strings.HasSuffix(name, ".log") {
		return f, err
	}
	return &walFailFile{File: f, fs: fs}, nil
}

func (fs *walFailFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, c)
	return fs.wrap(name, f, err)
}

func (fs *walFailFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, c)
	return fs.wrap(newname, f, err)
}

func (fs *walFailFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.OpenReadWrite(name, c, opts...)
	return fs.wrap(name, f, err)
}

func (f *walFailFile) Write(p []byte) (int, error) {
	if f.fs.fail.Load() {
		return 0, syscall.ENOSPC
	}
	return f.File.Write(p)
}

func (f *walFailFile) WriteAt(p []byte, off int64) (int, error) {
	if f.fs.fail.Load() {
		return 0, syscall.ENOSPC
	}
	return f.File.WriteAt(p, off)
}

func (f *walFailFile) Sync() error {
	if f.fs.fail.Load() {
		return syscall.ENOSPC
	}
	return f.File.Sync()
}

func (f *walFailFile) SyncData() error {
	if f.fs.fail.Load() {
		return syscall.ENOSPC
	}
	return f.File.SyncData()
}

func (f *walFailFile) SyncTo(n int64) (bool, error) {
	if f.fs.fail.Load() {
		return false, syscall.ENOSPC
	}
	return f.File.SyncTo(n)
}

// TestMetadataDiskFull: when the metadata's WAL cannot be written (a full
// disk), the commit returns an error instead of ending the process, the
// store refuses further writes, closes without hanging, and a reopen
// finds every earlier commit intact.
func TestMetadataDiskFull(t *testing.T) {
	dir := t.TempDir()
	fs := &walFailFS{FS: vfs.Default}
	s, err := Create(dir, Options{NumLists: 8, CodeSize: 4, MetaFS: fs})
	if err != nil {
		t.Fatal(err)
	}
	ids := []int64{1, 2, 3}
	codes := []byte("aaaabbbbcccc")
	b, err := s.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Add(3, ids, codes); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	fs.fail.Store(true)
	b, err = s.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Add(5, []int64{9}, []byte("zzzz")); err != nil {
		t.Fatal(err)
	}
	err = b.Commit()
	if !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), "no space") {
		t.Fatalf("commit with the WAL on a full disk: %v", err)
	}
	if _, err := s.Begin(); !errors.Is(err, ErrFailed) {
		t.Fatalf("write after the failed commit: %v", err)
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		t.Logf("close after the failure: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("Close hangs after a failed metadata commit")
	}
	fs.fail.Store(false)
	s, err = Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	v, err := s.View()
	if err != nil {
		t.Fatal(err)
	}
	defer v.Release()
	gotIDs, gotCodes, err := v.ReadList(3)
	if err != nil || !slices.Equal(gotIDs, ids) || string(gotCodes) != string(codes) {
		t.Fatalf("list 3 after reopen: %v %q %v", gotIDs, gotCodes, err)
	}
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
}

// quietLogger keeps Pebble quiet in tests that open the metadata
// database themselves.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Errorf(string, ...any) {}
func (quietLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}

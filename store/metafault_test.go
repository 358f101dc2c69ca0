package store

import (
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// diskFullFS is the disk under Pebble, on which writes to the files that
// match fail with ENOSPC while full is set: the tables (.sst), the
// MANIFEST, the WAL (.log), or any file.
type diskFullFS struct {
	vfs.FS
	match func(name string) bool
	full  atomic.Bool
	hits  atomic.Int64
}

func newDiskFullFS(match func(string) bool) *diskFullFS {
	return &diskFullFS{FS: vfs.Default, match: match}
}

func isTable(name string) bool    { return strings.HasSuffix(name, ".sst") }
func isManifest(name string) bool { return strings.HasPrefix(filepath.Base(name), "MANIFEST-") }
func anyFile(string) bool         { return true }

type diskFullFile struct {
	vfs.File
	fs   *diskFullFS
	name string
}

func (fs *diskFullFS) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil || !fs.match(name) {
		return f, err
	}
	return &diskFullFile{File: f, fs: fs, name: name}, nil
}

func (fs *diskFullFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, c)
	return fs.wrap(name, f, err)
}

func (fs *diskFullFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, c)
	return fs.wrap(newname, f, err)
}

func (fs *diskFullFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.OpenReadWrite(name, c, opts...)
	return fs.wrap(name, f, err)
}

func (f *diskFullFile) full(op string) error {
	if !f.fs.full.Load() {
		return nil
	}
	f.fs.hits.Add(1)
	return &os.PathError{Op: op, Path: f.name, Err: syscall.ENOSPC}
}

func (f *diskFullFile) Write(p []byte) (int, error) {
	if err := f.full("write"); err != nil {
		return 0, err
	}
	return f.File.Write(p)
}

func (f *diskFullFile) WriteAt(p []byte, off int64) (int, error) {
	if err := f.full("write"); err != nil {
		return 0, err
	}
	return f.File.WriteAt(p, off)
}

func (f *diskFullFile) Preallocate(off, n int64) error {
	if err := f.full("fallocate"); err != nil {
		return err
	}
	return f.File.Preallocate(off, n)
}

func (f *diskFullFile) Sync() error {
	if err := f.full("fsync"); err != nil {
		return err
	}
	return f.File.Sync()
}

func (f *diskFullFile) SyncData() error {
	if err := f.full("fdatasync"); err != nil {
		return err
	}
	return f.File.SyncData()
}

func (f *diskFullFile) SyncTo(n int64) (bool, error) {
	if err := f.full("sync_file_range"); err != nil {
		return false, err
	}
	return f.File.SyncTo(n)
}

// within runs fn and fails the test if it takes longer than d: a store
// operation on a failing disk must return, not hang.
func within[T any](t *testing.T, d time.Duration, what string, fn func() T) T {
	t.Helper()
	done := make(chan T, 1)
	go func() { done <- fn() }()
	select {
	case v := <-done:
		return v
	case <-time.After(d):
		t.Fatalf("%s still running after %v: it hangs", what, d)
		panic("unreachable")
	}
}

// fillStore adds n entries per list to s, in one batch, and records them
// in m.
func fillStore(t *testing.T, s *Store, m *model, r *rand.Rand, n int) {
	t.Helper()
	if err := tryFill(s, m, r, n); err != nil {
		t.Fatal(err)
	}
}

// tryFill is fillStore returning the error; m holds the commit either way.
func tryFill(s *Store, m *model, r *rand.Rand, n int) error {
	b, err := s.Begin()
	if err != nil {
		return err
	}
	for l := range m.lists {
		ids, codes := randEntries(r, n, m.cs)
		if _, err := b.Add(l, ids, codes); err != nil {
			b.Abort()
			return err
		}
		m.lists[l] = append(m.lists[l], toEnts(ids, codes, m.cs)...)
	}
	return b.Commit()
}

// reopenIntact opens dir with opts (the disk healthy again) and checks
// that it holds exactly m.
func reopenIntact(t *testing.T, dir string, opts *Options, m *model) {
	t.Helper()
	err := within(t, 30*time.Second, "reopen", func() error {
		s, err := Open(dir, opts)
		if err != nil {
			return err
		}
		defer s.Close()
		if err := compareStore(s, m); err != nil {
			return err
		}
		return s.Check()
	})
	if err != nil {
		t.Fatalf("after the disk is healthy again: %v", err)
	}
}

// TestMetaCorruptTable: a flipped byte in a table of the metadata is
// found when the store opens, and reported as ErrCorrupt naming the
// file, never as a panic; with the byte restored the store opens with
// everything in it. (Pebble's corruption report ends the process unless
// the store handles it.)
func TestMetaCorruptTable(t *testing.T) {
	dir := t.TempDir()
	r := rand.New(rand.NewSource(1))
	s := mustCreate(t, dir, 16, 4)
	m := newModel(16, 4)
	for i := 0; i < 3; i++ {
		fillStore(t, s, m, r, 5)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// An open flushes the WAL into a table.
	s, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	tables, _ := filepath.Glob(filepath.Join(dir, metaDirName, "*.sst"))
	if len(tables) == 0 {
		t.Fatal("no table in the metadata")
	}
	path := tables[0]
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for off := 0; off < len(orig); off += 1 + len(orig)/48 {
		bad := append([]byte(nil), orig...)
		bad[off] ^= 0x5a
		if err := os.WriteFile(path, bad, 0o644); err != nil {
			t.Fatal(err)
		}
		err := within(t, 30*time.Second, "open", func() error {
			s, err := Open(dir, nil)
			if err != nil {
				return err
			}
			defer s.Close()
			if err := compareStore(s, m); err != nil {
				t.Errorf("byte %d of %s flipped: opened with wrong contents: %v", off, path, err)
			}
			return nil
		})
		if err != nil {
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), filepath.Base(path)) {
				t.Errorf("byte %d of %s flipped: %v (want ErrCorrupt naming the file)", off, path, err)
			}
			found++
		}
		if err := os.WriteFile(path, orig, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if found == 0 {
		t.Fatal("no flipped byte was found")
	}
	t.Logf("%d flips reported as corruption", found)
	reopenIntact(t, dir, nil, m)
}

// TestMetaBackgroundFailure: when a flush on Pebble's own goroutine
// cannot write its table or the MANIFEST (a full disk), the process
// goes on, the store fails its next operation with an error wrapping
// ENOSPC, Close returns, and a reopen finds every acknowledged commit.
// (Pebble ends the process on the MANIFEST error, and retries the flush
// without end on the table error.)
func TestMetaBackgroundFailure(t *testing.T) {
	for _, c := range []struct {
		name  string
		match func(string) bool
	}{{"table", isTable}, {"manifest", isManifest}} {
		t.Run(c.name, func(t *testing.T) {
			// A commit of 65,536 rows is a batch larger than half a
			// memtable, which Pebble flushes in the background.
			const nlist = 1 << 16
			dir := t.TempDir()
			fs := newDiskFullFS(c.match)
			opts := Options{NumLists: nlist, CodeSize: 4, MetaFS: fs}
			s, err := Create(dir, opts)
			if err != nil {
				t.Fatal(err)
			}
			m := newModel(nlist, 4)
			r := rand.New(rand.NewSource(2))
			fs.full.Store(true)
			// The commit reaches the WAL while the flush it starts fails
			// at once. Most often the commit returns first and is
			// acknowledged; when the flush fails first, the commit
			// returns the failure and its outcome is unknown: then the
			// reopen must find the store either without it or with it.
			before := m.clone()
			var werr error
			if cerr := tryFill(s, m, r, 1); cerr != nil {
				t.Logf("the flush failed before the commit returned: %v", cerr)
				werr = cerr
			} else {
				before = nil
			}
			deadline := time.Now().Add(20 * time.Second)
			for werr == nil && time.Now().Before(deadline) {
				b, err := s.Begin()
				if err != nil {
					werr = err
					break
				}
				b.Abort()
				time.Sleep(5 * time.Millisecond)
			}
			if werr == nil {
				t.Fatalf("the background flush failed (%d writes refused) but the store goes on writing", fs.hits.Load())
			}
			if !errors.Is(werr, ErrFailed) || !errors.Is(werr, syscall.ENOSPC) || !strings.Contains(werr.Error(), filepath.Join(dir, metaDirName)) {
				t.Fatalf("write after the failed flush: %v (want ErrFailed and ENOSPC naming the file)", werr)
			}
			t.Log(werr)
			if _, err := s.Compact(); !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("compact after the failed flush: %v", err)
			}
			// Reads go on: the committed lists are intact.
			if err := compareStore(s, m); err != nil {
				t.Fatal(err)
			}
			cerr := within(t, 20*time.Second, "Close", s.Close)
			t.Logf("close: %v", cerr)
			fs.full.Store(false)
			opts.NumLists, opts.CodeSize = 0, 0
			if before != nil {
				// The unacknowledged commit: whichever state the
				// reopen finds, it must be one of the two, whole.
				s, err := Open(dir, &opts)
				if err != nil {
					t.Fatalf("reopen after the disk is healthy again: %v", err)
				}
				if compareStore(s, m) != nil {
					m = before
				}
				s.Close()
			}
			reopenIntact(t, dir, &opts, m)
		})
	}
}

// TestMetaOpenOnFullDisk: opening a store whose WAL holds commits flushes
// them into a table; on a full disk that fails, and Open returns the
// error promptly (Pebble waits for a flush it retries without end)
// instead of hanging. The directory is not left locked: once the disk
// has room, the same process opens the store with everything in it.
func TestMetaOpenOnFullDisk(t *testing.T) {
	for _, c := range []struct {
		name  string
		match func(string) bool
	}{{"table", isTable}, {"manifest", isManifest}, {"any", anyFile}} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			fs := newDiskFullFS(c.match)
			opts := Options{NumLists: 8, CodeSize: 4, MetaFS: fs}
			s, err := Create(dir, opts)
			if err != nil {
				t.Fatal(err)
			}
			m := newModel(8, 4)
			fillStore(t, s, m, rand.New(rand.NewSource(3)), 10)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			opts.NumLists, opts.CodeSize = 0, 0
			fs.full.Store(true)
			for i := 0; i < 2; i++ { // a second try meets the same disk
				err := within(t, 20*time.Second, "Open", func() error {
					s, err := Open(dir, &opts)
					if err == nil {
						s.Close()
					}
					return err
				})
				if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), filepath.Join(dir, metaDirName)) {
					t.Fatalf("open on a full disk: %v (want ENOSPC naming the file)", err)
				}
				t.Log(err)
			}
			fs.full.Store(false)
			reopenIntact(t, dir, &opts, m)
		})
	}
}

// TestMetaCreateOnFullDisk: Pebble's MANIFEST failure while it creates
// its database is an error of Create, not the end of the process.
func TestMetaCreateOnFullDisk(t *testing.T) {
	for _, c := range []struct {
		name  string
		match func(string) bool
	}{{"manifest", isManifest}, {"any", anyFile}} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			fs := newDiskFullFS(c.match)
			fs.full.Store(true)
			err := within(t, 20*time.Second, "Create", func() error {
				s, err := Create(dir, Options{NumLists: 8, CodeSize: 4, MetaFS: fs})
				if err == nil {
					s.Close()
				}
				return err
			})
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("create on a full disk: %v (want ENOSPC)", err)
			}
			t.Log(err)
		})
	}
}

// TestMetaCompactsItself: with Pebble's automatic compactions off, the
// store compacts its metadata itself, so level 0 stays small however
// often it is opened (Pebble stops writes at 12 tables there).
func TestMetaCompactsItself(t *testing.T) {
	dir := t.TempDir()
	s := mustCreate(t, dir, 8, 4)
	m := newModel(8, 4)
	r := rand.New(rand.NewSource(4))
	s.Close()
	for i := 0; i < 4*metaCompactTables; i++ {
		s, err := Open(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		fillStore(t, s, m, r, 3)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	tables, _ := filepath.Glob(filepath.Join(dir, metaDirName, "*.sst"))
	if len(tables) > metaCompactTables+1 {
		t.Fatalf("%d tables in the metadata after %d opens: %v", len(tables), 4*metaCompactTables, tables)
	}
	reopenIntact(t, dir, nil, m)
}

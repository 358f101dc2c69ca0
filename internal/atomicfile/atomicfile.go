package atomicfile

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// TempName returns the temporary name a write of path goes through.
func TempName(path string) string { return path + ".tmp" }

// File is a file being written under TempName(path). Its *os.File takes
// writes of any kind (sequential, positioned, Sync); Commit puts it in
// place under path, Abort throws it away. One of them must be called.
type File struct {
	*os.File
	path string
	// NoSync makes Commit rename without syncing the file or the
	// directory: atomic for other processes, not durable (see the package
	// documentation).
	NoSync bool
	done   bool
}

// errDone is returned by Commit after Commit or Abort.
var errDone = errors.New("atomicfile: already committed or aborted")

// Create starts writing path: it creates TempName(path) with mode perm
// (before the umask), replacing a temporary a crash left behind.
func Create(path string, perm os.FileMode) (*File, error) {
	tmp := TempName(path)
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return nil, err
	}
	return &File{File: f, path: path}, nil
}

// Commit syncs the temporary (unless NoSync), closes it, renames it over
// the final name and syncs the directory (unless NoSync). When it fails
// before the rename, the temporary is removed and the final name is
// untouched.
func (f *File) Commit() error {
	if f.done {
		return errDone
	}
	f.done = true
	var err error
	if !f.NoSync {
		err = f.File.Sync()
	}
	if cerr := f.File.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.File.Name(), f.path)
	}
	if err != nil {
		os.Remove(f.File.Name())
		return err
	}
	if f.NoSync {
		return nil
	}
	return SyncDir(filepath.Dir(f.path))
}

// Abort closes and removes the temporary; the final name is untouched.
// It does nothing after Commit or Abort.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	f.File.Close()
	os.Remove(f.File.Name())
}

// Write writes path with what fill writes to w (buffered), durably. When
// fill fails, its error is returned and nothing is left behind.
func Write(path string, perm os.FileMode, fill func(w io.Writer) error) error {
	f, err := Create(path, perm)
	if err != nil {
		return err
	}
	defer f.Abort() // on a failure or a panic in fill; nothing after Commit
	bw := bufio.NewWriterSize(f, 1<<20)
	if err := fill(bw); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return f.Commit()
}

// WriteBytes writes data as path, durably.
func WriteBytes(path string, data []byte, perm os.FileMode) error {
	f, err := Create(path, perm)
	if err != nil {
		return err
	}
	defer f.Abort()
	if _, err := f.Write(data); err != nil {
		return err
	}
	return f.Commit()
}

// SyncDir makes the entries of dir durable: a file created in it, or
// renamed into it. A file system that cannot sync a directory (EINVAL) is
// taken at its word.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, errors.ErrUnsupported) {
		return fmt.Errorf("atomicfile: sync directory %s: %w", dir, err)
	}
	return nil
}

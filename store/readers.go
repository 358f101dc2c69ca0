package store

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/shelfdb/shelf/internal/atomicfile"
)

// Cross-process coordination, in the spirit of LMDB's lock file but with one
// small file per party so no shared memory is needed:
//
//   - writer.lock: flock'd exclusively by the read-write process; holds its
//     pid so a second writer can say who holds the store.
//   - readers/<pid>-<rand>: one per read-only process, flock'd shared for the
//     life of the process, holding (8 bytes) the oldest commit that process
//     can still read. A file whose lock can be taken belongs to a dead
//     process and is removed by the writer.
//   - table.snap: the list table the writer last published.

const (
	writerLockName = "writer.lock"
	readersDirName = "readers"
	snapName       = "table.snap"
	metaDirName    = "meta"
)

func dataName(gen uint64) string { return fmt.Sprintf("lists.%d.data", gen) }

// lockWriter takes the writer lock of dir, or says which pid holds it.
func lockWriter(dir string) (*os.File, error) {
	path := filepath.Join(dir, writerLockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		b := make([]byte, 32)
		n, _ := f.ReadAt(b, 0)
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s in use by writer pid %s", ErrLocked, dir, strings.TrimSpace(string(b[:n])))
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

// registerReader creates this process's reader file, locked and holding seq
// 0 (pins everything) before it becomes visible, so the writer never sees
// an unlocked live reader or a reader with an unknown commit.
func registerReader(dir string) (*os.File, error) {
	rdir := filepath.Join(dir, readersDirName)
	if err := os.MkdirAll(rdir, 0o755); err != nil {
		return nil, err
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	name := fmt.Sprintf("%d-%s", os.Getpid(), hex.EncodeToString(rnd[:]))
	tmp := filepath.Join(rdir, "."+name)
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH); err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("lock %s: %w", tmp, err)
	}
	if _, err := f.WriteAt(make([]byte, 8), 0); err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, err
	}
	if err := os.Rename(tmp, filepath.Join(rdir, name)); err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, err
	}
	return f, nil
}

func setReaderSeq(f *os.File, seq uint64) error {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], seq)
	_, err := f.WriteAt(b[:], 0)
	return err
}

func unregisterReader(f *os.File) {
	name := f.Name()
	dir, base := filepath.Split(name)
	// The file was renamed after creation; f.Name() is the temporary name.
	final := filepath.Join(dir, strings.TrimPrefix(base, "."))
	os.Remove(final)
	f.Close()
}

// scanReaders returns the oldest commit any live read-only process reads
// (ok=false if there is none) and removes the files of dead ones.
func scanReaders(dir string) (min uint64, ok bool, err error) {
	rdir := filepath.Join(dir, readersDirName)
	ents, err := os.ReadDir(rdir)
	if err != nil {
		if os.IsNotExist(err) {
			return 0, false, nil
		}
		return 0, false, err
	}
	for _, e := range ents {
		path := filepath.Join(rdir, e.Name())
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			continue // removed meanwhile
		}
		lerr := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if lerr == nil {
			// Nobody holds it: the reader died (or never finished starting).
			os.Remove(path)
			f.Close()
			continue
		}
		if strings.HasPrefix(e.Name(), ".") {
			f.Close()
			continue
		}
		var b [8]byte
		n, _ := f.ReadAt(b[:], 0)
		f.Close()
		seq := uint64(0)
		if n == 8 {
			seq = binary.LittleEndian.Uint64(b[:])
		}
		if !ok || seq < min {
			min, ok = seq, true
		}
	}
	return min, ok, nil
}

// writeSnapshotFile publishes data as table.snap, atomically. With
// durable, the file is synced before the rename and the directory after
// it, so the name never points at unsynced bytes after a machine crash;
// without, a reader may find a torn file after one (it is checksummed).
func writeSnapshotFile(dir string, data []byte, durable bool) error {
	f, err := atomicfile.Create(filepath.Join(dir, snapName), 0o644)
	if err != nil {
		return err
	}
	f.NoSync = !durable
	if _, err := f.Write(data); err != nil {
		f.Abort()
		return fmt.Errorf("write %s: %w", f.Name(), err)
	}
	return f.Commit()
}

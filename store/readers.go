package store

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

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
//     process and is removed by the writer. It is written as
//     readers/.<pid>-<rand> first, locked, then renamed: the writer leaves
//     such a temporary alone for a minute, so a reader between creating
//     and locking it is never taken for dead.
//   - the data file: a read-only process that cannot create its file in
//     readers/ (no write access, a full disk) flock's the data file shared
//     instead; the writer, seeing a lock it cannot take, reuses no freed
//     space while it lasts (it cannot know which commit such a reader reads).
//   - table.snap and table.log: the list table the writer last published
//     (publish.go).

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
			return nil, fmt.Errorf("%w: %s in use by %s", ErrLocked, dir, lockHolder(b[:n]))
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	// Write the pid over the previous one, then cut what is left of that:
	// the file is never empty while it names a holder.
	pid := []byte(strconv.Itoa(os.Getpid()) + "\n")
	if _, err := f.WriteAt(pid, 0); err == nil {
		_ = f.Truncate(int64(len(pid)))
	}
	return f, nil
}

// lockHolder says who holds a writer lock whose file holds b: its first
// line is the pid, unless the holder has not written it yet (a new file).
func lockHolder(b []byte) string {
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimSpace(line)
	if pid, err := strconv.Atoi(line); err == nil && pid > 0 {
		return "writer pid " + line
	}
	return "another writer (its pid is not written yet)"
}

// tempGrace is how long the writer leaves alone a temporary reader file
// nobody has locked: a reader may be between creating and locking it.
const tempGrace = time.Minute

// registerReader creates this process's reader file, locked and holding seq
// 0 (pins everything) before it becomes visible, so the writer never sees
// an unlocked live reader or a reader with an unknown commit.
func registerReader(dir string) (*os.File, error) {
	rdir := filepath.Join(dir, readersDirName)
	if err := os.MkdirAll(rdir, 0o755); err != nil {
		return nil, err
	}
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		var f *os.File
		if f, err = tryRegister(rdir); err == nil || !errors.Is(err, fs.ErrNotExist) {
			return f, err
		}
		// The temporary was removed before it was renamed: a writer took
		// it for a dead reader's (possible only if this process stalled
		// for longer than tempGrace). Start again.
	}
	return nil, err
}

func tryRegister(rdir string) (*os.File, error) {
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
		// Read-only is enough to lock and read where flock is native, and
		// is all a reader run by another user allows.
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if errors.Is(err, fs.ErrPermission) {
			f, err = os.Open(path)
		}
		if err != nil {
			continue // removed meanwhile
		}
		temp := strings.HasPrefix(e.Name(), ".")
		lerr := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if lerr == nil {
			// Nobody holds it: the reader died, or, for a temporary, may
			// not have locked it yet.
			if fi, err := f.Stat(); !temp || err == nil && time.Since(fi.ModTime()) > tempGrace {
				os.Remove(path)
			}
			f.Close()
			continue
		}
		if temp {
			// A reader starting: it reads no table before its file is
			// renamed into place, and the writer sees it from then on.
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

// lockDataShared takes a shared lock on the data file f for a read-only
// process that could not register, waiting out the writer's brief probes
// (dataLockedByReaders).
func lockDataShared(f *os.File) error {
	var err error
	for i := 0; i < 2000; i++ {
		if err = unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); !errors.Is(err, unix.EWOULDBLOCK) {
			return err
		}
		time.Sleep(time.Millisecond)
	}
	return err
}

// dataLockedByReaders reports whether a read-only process that could not
// register holds the writer's data file f (a shared lock the writer
// cannot take). Other errors (a file system without flock) say no: such
// a reader could not have taken its lock either, and did not open.
func dataLockedByReaders(f *os.File) bool {
	fd := int(f.Fd())
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return errors.Is(err, unix.EWOULDBLOCK)
	}
	_ = unix.Flock(fd, unix.LOCK_UN)
	return false
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

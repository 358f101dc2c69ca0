package store

import (
	"errors"
	"fmt"
	"math/rand"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// faultFS wraps the data files of a store so a test can simulate a machine
// crash (every write not yet synced is lost, or only some of them are),
// crash at the Nth file operation, or run out of disk space.
type faultFS struct {
	mu       sync.Mutex
	files    map[string]*faultFile
	ops      int   // file operations so far
	crashAt  int   // panic(errCrash) at this operation (0: never)
	budget   int64 // bytes that may still be written or allocated (<0: unlimited)
	rng      *rand.Rand
	vectored int // vectored writes (writevAt) so far
}

var errCrash = errors.New("simulated crash")

type undo struct {
	off int64
	old []byte
}

type faultFile struct {
	dataFile
	fs         *faultFS
	undos      []undo
	syncedSize int64
}

func newFaultFS(seed int64) *faultFS {
	return &faultFS{files: map[string]*faultFile{}, budget: -1, rng: rand.New(rand.NewSource(seed))}
}

func (fs *faultFS) open(path string, flag int) (dataFile, error) {
	f, err := openOSFile(path, flag)
	if err != nil {
		return nil, err
	}
	size, _ := f.Size()
	ff := &faultFile{dataFile: f, fs: fs, syncedSize: size}
	if flag&os.O_RDWR != 0 {
		fs.mu.Lock()
		if old := fs.files[path]; old != nil && flag&os.O_TRUNC == 0 {
			// Reopened after a crash: the synced size is what is there.
			_ = old
		}
		fs.files[path] = ff
		fs.mu.Unlock()
	}
	return ff, nil
}

func (fs *faultFS) step() {
	fs.mu.Lock()
	fs.ops++
	hit := fs.crashAt > 0 && fs.ops == fs.crashAt
	fs.mu.Unlock()
	if hit {
		panic(errCrash)
	}
}

func (fs *faultFS) spend(n int64) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.budget < 0 {
		return nil
	}
	if n > fs.budget {
		return syscall.ENOSPC
	}
	fs.budget -= n
	return nil
}

// grant takes up to n bytes of the budget and returns how many it got:
// a nearly full disk lets a write through in part.
func (fs *faultFS) grant(n int64) int64 {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.budget < 0 {
		return n
	}
	g := min(n, fs.budget)
	fs.budget -= g
	return g
}

func (f *faultFile) WriteAt(p []byte, off int64) (int, error) {
	return f.write("write", [][]byte{p}, off)
}

// writevAt makes faultFile a vectorWriter, as the production file is, so
// the store writes runs through it exactly as it does through pwritev.
func (f *faultFile) writevAt(bufs [][]byte, off int64) (int, error) {
	f.fs.mu.Lock()
	f.fs.vectored++
	f.fs.mu.Unlock()
	return f.write("pwritev", bufs, off)
}

// write is one write call (pwrite or pwritev) with faults: it is a file
// operation a crash may come before; it records, buffer by buffer, what it
// overwrites, so a crash can undo each buffer on its own (a torn write);
// and on a full disk it writes what fits and returns that short count,
// the next call failing with ENOSPC, as the kernel's calls do.
func (f *faultFile) write(op string, bufs [][]byte, off int64) (int, error) {
	f.fs.step()
	var total int64
	for _, p := range bufs {
		total += int64(len(p))
	}
	left := f.fs.grant(total)
	if left == 0 && total > 0 {
		return 0, &os.PathError{Op: op, Path: f.OS().Name(), Err: syscall.ENOSPC}
	}
	var fit [][]byte
	at := off
	for _, p := range bufs {
		if left == 0 {
			break
		}
		p = p[:min(int64(len(p)), left)]
		old := make([]byte, len(p))
		n, _ := f.dataFile.ReadAt(old, at)
		f.fs.mu.Lock()
		f.undos = append(f.undos, undo{at, old[:n]})
		f.fs.mu.Unlock()
		fit = append(fit, p)
		at += int64(len(p))
		left -= int64(len(p))
	}
	if vw, ok := f.dataFile.(vectorWriter); ok && len(fit) > 1 {
		return vw.writevAt(fit, off)
	}
	written := 0
	for _, p := range fit {
		n, err := f.dataFile.WriteAt(p, off+int64(written))
		written += n
		if err != nil {
			return written, err
		}
	}
	return written, nil
}

func (f *faultFile) Truncate(size int64) error {
	f.fs.step()
	cur, _ := f.dataFile.Size()
	if size > cur {
		if err := f.fs.spend(size - cur); err != nil {
			return &os.PathError{Op: "fallocate", Path: f.OS().Name(), Err: err}
		}
	}
	return f.dataFile.Truncate(size)
}

func (f *faultFile) Sync() error {
	f.fs.step()
	if err := f.dataFile.Sync(); err != nil {
		return err
	}
	f.fs.mu.Lock()
	f.undos = nil
	f.syncedSize, _ = f.dataFile.Size()
	f.fs.mu.Unlock()
	return nil
}

// crash reverts every data file to its synced state; with partial, each
// unsynced write survives with probability 1/2 (a torn, reordered flush).
func (fs *faultFS) crash(partial bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for path, f := range fs.files {
		for i := len(f.undos) - 1; i >= 0; i-- {
			if partial && fs.rng.Intn(2) == 0 {
				continue
			}
			u := f.undos[i]
			_, _ = f.dataFile.WriteAt(u.old, u.off)
		}
		f.undos = nil
		if size, _ := f.dataFile.Size(); size > f.syncedSize && !(partial && fs.rng.Intn(2) == 0) {
			_ = f.dataFile.Truncate(f.syncedSize)
		}
		_ = f.dataFile.Close()
		delete(fs.files, path)
	}
	fs.crashAt = 0
}

// abandon drops a store as a crash would: no publish, no orderly close.
func (s *Store) abandon() {
	s.rmu.Lock()
	s.closed = true
	s.rmu.Unlock()
	_ = s.db.Close()
	s.pub.close()
	s.lock.Close()
	s.rmu.Lock()
	s.dropMappingLocked(s.m)
	s.rmu.Unlock()
}

// TestCrashFaultInjection runs random operations against a store whose
// metadata lives in a crashable in-memory file system and whose data
// files drop unsynced writes on a simulated crash. Crashes happen between
// operations and in the middle of them (at a random file operation); after
// each, the reopened store must equal the last committed model state and
// pass Check. It also runs out of disk space at random and checks that the
// failed operation changed nothing and later ones work.
func TestCrashFaultInjection(t *testing.T) {
	seed := *modelSeed
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	t.Logf("seed %d (replay: go test ./store -run TestCrashFaultInjection -store.seed=%d)", seed, seed)
	r := rand.New(rand.NewSource(seed))
	steps := *modelSteps / 3
	if testing.Short() {
		steps /= 5
	}
	dir := t.TempDir()
	ffs := newFaultFS(seed)
	mem := vfs.NewCrashableMem()
	opts := Options{NumLists: 12, CodeSize: 6, MetaFS: mem, openData: ffs.open}
	s, err := Create(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	m := newModel(12, 6)
	crashes, midCrashes, enospc := 0, 0, 0
	for step := 0; step < steps; step++ {
		fail := func(err error) {
			t.Helper()
			t.Fatalf("seed %d step %d: %v", seed, step, err)
		}
		// Arm a crash inside the next operation, or a full disk.
		mode := r.Intn(10)
		switch mode {
		case 0:
			ffs.mu.Lock()
			ffs.crashAt = ffs.ops + 1 + r.Intn(8)
			ffs.mu.Unlock()
		case 1:
			ffs.mu.Lock()
			ffs.budget = int64(r.Intn(4096))
			ffs.mu.Unlock()
		}
		nm := m.clone()
		crashed := false
		opErr := func() (err error) {
			defer func() {
				if p := recover(); p != nil {
					if p != errCrash {
						panic(p)
					}
					crashed = true
					err = errCrash
				}
			}()
			switch r.Intn(6) {
			case 0, 1, 2:
				b, err := s.Begin()
				if err != nil {
					return err
				}
				for k := 1 + r.Intn(4); k > 0; k-- {
					l := r.Intn(12)
					ids, codes := randEntries(r, 1+r.Intn(200), 6)
					if _, err := b.Add(l, ids, codes); err != nil {
						b.Abort()
						return err
					}
					nm.lists[l] = append(nm.lists[l], toEnts(ids, codes, 6)...)
					if len(nm.lists[l]) > 0 && r.Intn(3) == 0 {
						pos := r.Intn(len(nm.lists[l]))
						ids, codes := randEntries(r, 1, 6)
						if err := b.Update(l, pos, ids, codes); err != nil {
							b.Abort()
							return err
						}
						nm.lists[l][pos] = toEnts(ids, codes, 6)[0]
					}
				}
				return b.Commit()
			case 3:
				src := &memSource{cs: 6, lists: make([][]ent, 12)}
				for l := range src.lists {
					ids, codes := randEntries(r, r.Intn(50), 6)
					src.lists[l] = toEnts(ids, codes, 6)
					nm.lists[l] = append(nm.lists[l], src.lists[l]...)
				}
				_, err := s.MergeFrom([]Source{src}, nil)
				return err
			case 4:
				_, err := s.Compact()
				return err
			default:
				l := r.Intn(12)
				size := r.Intn(len(nm.lists[l]) + 1)
				nm.lists[l] = nm.lists[l][:size]
				return s.Resize(l, size)
			}
		}()
		ffs.mu.Lock()
		ffs.budget = -1
		ffs.crashAt = 0
		ffs.mu.Unlock()
		switch {
		case crashed:
			midCrashes++
		case opErr != nil:
			if !errors.Is(opErr, syscall.ENOSPC) {
				fail(fmt.Errorf("unexpected error: %v", opErr))
			}
			enospc++
			// Nothing changed, and the store keeps working.
			if err := compareStore(s, m); err != nil {
				fail(fmt.Errorf("after ENOSPC: %v", err))
			}
			if err := s.Check(); err != nil {
				fail(fmt.Errorf("after ENOSPC: %v", err))
			}
		default:
			m = nm
		}
		if crashed || r.Intn(8) == 0 {
			crashes++
			s.abandon()
			ffs.crash(r.Intn(2) == 0)
			mem = mem.CrashClone(vfs.CrashCloneCfg{})
			opts.MetaFS = mem
			if s, err = Open(dir, &opts); err != nil {
				fail(fmt.Errorf("reopen after crash: %v", err))
			}
		}
		if err := compareStore(s, m); err != nil {
			fail(err)
		}
		if err := s.Check(); err != nil {
			fail(err)
		}
	}
	s.Close()
	t.Logf("%d steps, %d crashes (%d inside an operation), %d out-of-space errors, %d vectored writes", steps, crashes, midCrashes, enospc, ffs.vectored)
	if midCrashes == 0 || enospc == 0 || ffs.vectored == 0 {
		t.Fatalf("the fault paths were not exercised (mid-op crashes %d, ENOSPC %d, vectored writes %d)", midCrashes, enospc, ffs.vectored)
	}
}

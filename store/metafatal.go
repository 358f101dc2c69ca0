package store

// Pebble's fatal paths, and how the store survives them.
//
// Pebble calls Logger.Fatalf where it cannot go on (a WAL or MANIFEST
// write that failed, a table a background job found corrupt or missing)
// and expects it not to return: its default logger ends the process. It
// reports a failed flush or compaction to EventListener.BackgroundError
// and retries the flush without end, while Open, Close and a commit that
// needs room may wait for that flush. The store turns all of it into
// errors of the operation at hand:
//
//   - The first such error is recorded (metaDB.fail): every later
//     operation of the store returns it, wrapping ErrFailed, until the
//     store is reopened. A corruption wraps ErrCorrupt and names the
//     file; a full disk wraps syscall.ENOSPC and names the file.
//   - The database is fenced: from then on every write Pebble makes
//     through its file system (fenceFS) fails, so nothing a stopped job
//     left half done is built on, and what is on disk stays the last
//     commit that succeeded.
//   - The goroutine that met the error stops. On a goroutine the store
//     started to call Pebble (metaDB.call), Fatalf panics and call turns
//     the panic into the error. On Pebble's own goroutines (flushes,
//     compactions, table statistics) Fatalf and BackgroundError end the
//     goroutine with runtime.Goexit, which unlocks the mutexes it holds
//     through their defers and ends a retry loop.
//   - Nothing waits for a stopped goroutine: each call into Pebble that
//     may wait for background work (Open, a commit, a compaction, Close)
//     runs on its own goroutine and returns as soon as the database
//     fails, and a failed database is abandoned, never closed (Close
//     waits for the job that stopped). Its directory lock is released, so
//     the store can be reopened, in this process too.
//
// Automatic compactions are off: the metadata is a row per list, so the
// store compacts it itself, in its own calls, once level 0 holds a few
// tables (maybeCompact). A compaction that fails fails an operation of
// the store, never a goroutine nobody waits for.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// errMetaBroken marks an error after which the metadata database is
// stopped: the store writes nothing more until it is reopened.
var errMetaBroken = errors.New("metadata database stopped")

// errFenced is what Pebble's writes get once its database has failed.
var errFenced = errors.New("metadata database fenced after an earlier error")

// metaCompactTables is the number of level-0 tables from which the store
// compacts its metadata (each open adds one, the flush of its WAL).
const metaCompactTables = 4

// pebbleFatal is the panic value of Fatalf on a store goroutine; call
// turns it back into an error. It unwraps to the errors among Fatalf's
// arguments, so errors.Is finds syscall.ENOSPC and the like.
type pebbleFatal struct {
	msg  string
	errs []error
}

func (p pebbleFatal) Error() string   { return p.msg }
func (p pebbleFatal) Unwrap() []error { return p.errs }

// metaDB is the store's Pebble database together with its failure: the
// first fatal error, the fence and the calls that do not wait past it.
type metaDB struct {
	db     *pebble.DB
	dir    string
	fs     *fenceFS
	err    atomic.Pointer[error]
	dead   chan struct{} // closed by the first fail
	once   sync.Once
	ctx    context.Context // cancelled by the first fail
	cancel context.CancelFunc
	l0     atomic.Int64 // tables in level 0 (as of the last count, plus flushes since)
}

// openMeta opens (or, with create, creates) the Pebble database in dir.
func openMeta(dir string, o Options, create bool) (*metaDB, error) {
	m := &metaDB{dir: dir, dead: make(chan struct{})}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	base := o.MetaFS
	if base == nil {
		base = vfs.Default
	}
	m.fs = &fenceFS{FS: base, m: m}
	po := &pebble.Options{
		Logger: metaLogger{m},
		FS:     m.fs,
		EventListener: &pebble.EventListener{
			BackgroundError: m.backgroundError,
			DataCorruption:  m.dataCorruption,
			FlushEnd: func(info pebble.FlushInfo) {
				if info.Err == nil {
					m.l0.Add(int64(len(info.Output)))
				}
			},
		},
		DisableAutomaticCompactions: true,
	}
	if create {
		po.ErrorIfExists = true
	} else {
		po.ErrorIfNotExists = true
	}
	// An Open that waits for a flush that failed is left to itself (call
	// returns the failure); if it returns after all, the database is
	// fenced and its lock released already.
	err := m.call(func() error {
		db, err := pebble.Open(dir, po)
		m.db = db
		return err
	})
	if err != nil {
		m.fs.releaseLocks()
	} else {
		m.l0.Store(m.db.Metrics().Levels[0].TablesCount)
		if err = m.maybeCompact(); err != nil {
			_ = m.close()
		}
	}
	if err != nil {
		return nil, m.describe(err)
	}
	return m, nil
}

// failure returns the error that stopped the database, or nil.
func (m *metaDB) failure() error {
	if p := m.err.Load(); p != nil {
		return *p
	}
	return nil
}

// fail records err as the database's failure, unless one is recorded
// already, and fences the database.
func (m *metaDB) fail(err error) {
	err = m.describe(err)
	if !errors.Is(err, errMetaBroken) {
		err = fmt.Errorf("%w: %w", errMetaBroken, err)
	}
	if m.err.CompareAndSwap(nil, &err) {
		m.once.Do(func() {
			m.cancel()
			close(m.dead)
		})
	}
}

// describe makes a Pebble error the store's: a corruption wraps
// ErrCorrupt and names the file.
func (m *metaDB) describe(err error) error {
	if err == nil || errors.Is(err, ErrCorrupt) || !pebble.IsCorruptionError(err) {
		return err
	}
	path := m.dir
	if info := pebble.ExtractDataCorruptionInfo(err); info != nil {
		path = info.Path
	}
	return corruptMeta(path, err)
}

// corruptMeta is the error for a corrupt file of the metadata: it wraps
// ErrCorrupt and Pebble's error, and says which file on one line.
func corruptMeta(path string, err error) error {
	msg := err.Error()
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i] // Pebble joins a "corruption detail carrier" line
	}
	return &joinedError{
		msg:  fmt.Sprintf("%v: metadata file %s: %s", ErrCorrupt, path, msg),
		errs: []error{ErrCorrupt, err},
	}
}

// joinedError is an error with its own message that wraps several.
type joinedError struct {
	msg  string
	errs []error
}

func (e *joinedError) Error() string   { return e.msg }
func (e *joinedError) Unwrap() []error { return e.errs }

// call runs fn, which calls Pebble, on a goroutine of its own and returns
// its error, a Fatalf included, or the database's failure as soon as
// there is one, whether fn has returned or not: fn may be waiting for a
// background job that stopped.
func (m *metaDB) call(fn func() error) error {
	if err := m.failure(); err != nil {
		return err
	}
	type result struct {
		err   error
		other any // a panic that is not Pebble's Fatalf
	}
	done := make(chan result, 1)
	go func() {
		var r result
		r.err = guarded(fn, &r.other)
		done <- r
	}()
	var r result
	select {
	case r = <-done:
	case <-m.dead:
		select {
		case r = <-done:
		default:
			return m.failure()
		}
	}
	if r.other != nil {
		panic(r.other)
	}
	if f, ok := r.err.(pebbleFatal); ok {
		m.fail(f)
		return m.failure()
	}
	return m.describe(r.err)
}

// guarded runs fn and turns a Fatalf panic into its error. Fatalf looks
// for this function on the stack to know it runs on a store goroutine.
//
//go:noinline
func guarded(fn func() error, other *any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if f, ok := r.(pebbleFatal); ok {
				err = f
				return
			}
			*other = r
		}
	}()
	return fn()
}

var guardedName = runtime.FuncForPC(reflect.ValueOf(guarded).Pointer()).Name()

type origin int

const (
	originOther  origin = iota // a goroutine nobody guards
	originStore                // a call of the store (guarded on the stack)
	originPebble               // a goroutine Pebble started
)

// goroutineOrigin says who runs the calling goroutine.
func goroutineOrigin() origin {
	pcs := make([]uintptr, 2048)
	n := runtime.Callers(2, pcs)
	frames := runtime.CallersFrames(pcs[:n])
	first := ""
	for {
		f, more := frames.Next()
		if f.Function == guardedName {
			return originStore
		}
		if !strings.HasPrefix(f.Function, "runtime.") {
			first = f.Function // the goroutine's own function, in the end
		}
		if !more {
			break
		}
	}
	if strings.HasPrefix(first, "github.com/cockroachdb/pebble/") {
		return originPebble
	}
	return originOther
}

// stop ends a goroutine that met a fatal error, once it is recorded.
func (m *metaDB) stop(err error) {
	m.fail(err)
	switch goroutineOrigin() {
	case originStore:
		panic(err)
	case originPebble:
		runtime.Goexit()
	default:
		// Not ours to end: do what Pebble's own logger would.
		panic(err)
	}
}

type metaLogger struct{ m *metaDB }

func (metaLogger) Infof(string, ...any)  {}
func (metaLogger) Errorf(string, ...any) {}

// Fatalf stops the goroutine that called it (see the top of this file).
func (l metaLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(strings.ReplaceAll(format, "%+v", "%v"), args...)
	if !strings.HasPrefix(msg, "pebble") {
		msg = "pebble: " + msg
	}
	f := pebbleFatal{msg: msg}
	for _, a := range args {
		if e, ok := a.(error); ok {
			f.errs = append(f.errs, e)
			if errors.Is(e, fs.ErrNotExist) {
				// A table or blob file the MANIFEST names is gone.
				f.errs = append(f.errs, ErrCorrupt)
			}
		}
	}
	l.m.stop(f)
}

// backgroundError: a flush, compaction or statistics job of Pebble failed.
// Pebble would retry it forever; the store stops the database instead.
// On the store's own goroutines (Open reads the disk usage) it is only
// reported, and the call goes on.
func (m *metaDB) backgroundError(err error) {
	if goroutineOrigin() == originStore {
		return
	}
	m.stop(err)
}

// dataCorruption records a corruption Pebble found; the error also comes
// back through the read that met it.
func (m *metaDB) dataCorruption(info pebble.DataCorruptionInfo) {
	m.fail(corruptMeta(info.Path, info.Details))
}

// commit commits pb (step 3 of commit.go), then compacts the metadata
// when it is due. A commit that returned is durable and reported so even
// if the compaction after it fails: that failure stops the database and
// fails the store's next operation.
func (m *metaDB) commit(pb *pebble.Batch, wo *pebble.WriteOptions) error {
	if err := m.call(func() error { return pb.Commit(wo) }); err != nil {
		return err
	}
	_ = m.maybeCompact()
	return nil
}

// maybeCompact compacts the whole metadata once level 0 holds
// metaCompactTables tables: with automatic compactions off nothing else
// does, and Pebble stops writes at 12. A failed compaction stops the
// database.
func (m *metaDB) maybeCompact() error {
	if m.l0.Load() < metaCompactTables {
		return nil
	}
	err := m.call(func() error {
		if err := m.db.Compact(m.ctx, []byte{0}, []byte{0xff}, false); err != nil {
			return err
		}
		m.l0.Store(m.db.Metrics().Levels[0].TablesCount)
		return nil
	})
	if err != nil {
		m.fail(err)
		return m.failure()
	}
	return nil
}

// read runs fn, which reads the database, as a call.
func (m *metaDB) read(fn func(db *pebble.DB) error) error {
	return m.call(func() error { return fn(m.db) })
}

// close closes the database; a failed one is abandoned, its directory
// lock released, and its failure returned.
func (m *metaDB) close() error {
	if err := m.failure(); err != nil {
		m.abandon()
		return err
	}
	err := m.call(m.db.Close)
	if m.failure() != nil {
		m.abandon()
	}
	return err
}

// abandon leaves a failed database to its stopped goroutines: fenced, it
// writes nothing, and its lock is released.
func (m *metaDB) abandon() {
	m.fs.releaseLocks()
}

// fenceFS is Pebble's file system: the store's (MetaFS or the disk), with
// every write failing once the database has failed, and directory locks
// the store can release itself.
type fenceFS struct {
	vfs.FS
	m     *metaDB
	mu    sync.Mutex
	locks []*onceCloser
}

func (f *fenceFS) fenced() error {
	if f.m.failure() != nil {
		return errFenced
	}
	return nil
}

func (f *fenceFS) wrap(name string, file vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return &fenceFile{File: file, fs: f, name: name}, nil
}

func (f *fenceFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	if err := f.fenced(); err != nil {
		return nil, err
	}
	file, err := f.FS.Create(name, c)
	return f.wrap(name, file, err)
}

func (f *fenceFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	if err := f.fenced(); err != nil {
		return nil, err
	}
	file, err := f.FS.OpenReadWrite(name, c, opts...)
	return f.wrap(name, file, err)
}

func (f *fenceFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	if err := f.fenced(); err != nil {
		return nil, err
	}
	file, err := f.FS.ReuseForWrite(oldname, newname, c)
	return f.wrap(newname, file, err)
}

func (f *fenceFS) OpenDir(name string) (vfs.File, error) {
	file, err := f.FS.OpenDir(name)
	return f.wrap(name, file, err)
}

func (f *fenceFS) Link(oldname, newname string) error {
	if err := f.fenced(); err != nil {
		return err
	}
	return f.FS.Link(oldname, newname)
}

func (f *fenceFS) Remove(name string) error {
	if err := f.fenced(); err != nil {
		return err
	}
	return f.FS.Remove(name)
}

func (f *fenceFS) RemoveAll(name string) error {
	if err := f.fenced(); err != nil {
		return err
	}
	return f.FS.RemoveAll(name)
}

func (f *fenceFS) Rename(oldname, newname string) error {
	if err := f.fenced(); err != nil {
		return err
	}
	return f.FS.Rename(oldname, newname)
}

func (f *fenceFS) MkdirAll(dir string, perm os.FileMode) error {
	if err := f.fenced(); err != nil {
		return err
	}
	return f.FS.MkdirAll(dir, perm)
}

func (f *fenceFS) Lock(name string) (io.Closer, error) {
	c, err := f.FS.Lock(name)
	if err != nil {
		return nil, err
	}
	l := &onceCloser{c: c}
	f.mu.Lock()
	f.locks = append(f.locks, l)
	f.mu.Unlock()
	return l, nil
}

// GetDiskUsage reports a failure as "unsupported", which Pebble skips:
// not knowing the free space is no reason to stop the database.
func (f *fenceFS) GetDiskUsage(path string) (vfs.DiskUsage, error) {
	u, err := f.FS.GetDiskUsage(path)
	if err != nil {
		return u, vfs.ErrUnsupported
	}
	return u, nil
}

func (f *fenceFS) Unwrap() vfs.FS { return f.FS }

func (f *fenceFS) releaseLocks() {
	f.mu.Lock()
	locks := f.locks
	f.locks = nil
	f.mu.Unlock()
	for _, l := range locks {
		_ = l.Close()
	}
}

// onceCloser closes a lock once, whoever asks first: the database or the
// store abandoning it.
type onceCloser struct {
	once sync.Once
	c    io.Closer
	err  error
}

func (l *onceCloser) Close() error {
	l.once.Do(func() { l.err = l.c.Close() })
	return l.err
}

// fenceFile is a file Pebble writes, fenced with its database. Its
// errors name it, so a full disk says which file it stopped.
type fenceFile struct {
	vfs.File
	fs   *fenceFS
	name string
}

func (f *fenceFile) check(op string) error {
	if err := f.fs.fenced(); err != nil {
		return &fs.PathError{Op: op, Path: f.name, Err: err}
	}
	return nil
}

func (f *fenceFile) named(op string, err error) error {
	var pe *fs.PathError
	if err == nil || errors.As(err, &pe) {
		return err
	}
	return &fs.PathError{Op: op, Path: f.name, Err: err}
}

func (f *fenceFile) Write(p []byte) (int, error) {
	if err := f.check("write"); err != nil {
		return 0, err
	}
	n, err := f.File.Write(p)
	return n, f.named("write", err)
}

func (f *fenceFile) WriteAt(p []byte, off int64) (int, error) {
	if err := f.check("write"); err != nil {
		return 0, err
	}
	n, err := f.File.WriteAt(p, off)
	return n, f.named("write", err)
}

func (f *fenceFile) Preallocate(off, n int64) error {
	if err := f.check("fallocate"); err != nil {
		return err
	}
	return f.named("fallocate", f.File.Preallocate(off, n))
}

func (f *fenceFile) Sync() error {
	if err := f.check("sync"); err != nil {
		return err
	}
	return f.named("sync", f.File.Sync())
}

func (f *fenceFile) SyncData() error {
	if err := f.check("sync"); err != nil {
		return err
	}
	return f.named("sync", f.File.SyncData())
}

func (f *fenceFile) SyncTo(n int64) (bool, error) {
	if err := f.check("sync"); err != nil {
		return false, err
	}
	full, err := f.File.SyncTo(n)
	return full, f.named("sync", err)
}

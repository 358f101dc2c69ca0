package store

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/shelfdb/shelf/internal/atomicfile"
	"github.com/shelfdb/shelf/slots"
)

// Options configure Create, Open and OpenReadOnly. The zero value is usable
// for Open and OpenReadOnly; Create needs NumLists and CodeSize.
type Options struct {
	// NumLists is the number of inverted lists (Create only).
	NumLists int
	// CodeSize is the number of bytes of one code (Create only).
	CodeSize int
	// MapReserve is the address space reserved for the data file mapping,
	// so the file grows under one mapping (default: twice the file, at
	// least 8 GiB; address space is plentiful but not endless: 128 TiB per
	// process, so a process with many stores must not take 1 TiB each).
	// A file that outgrows it is remapped; views keep the old mapping.
	MapReserve int64
	// NoSync skips fdatasync and Pebble's WAL sync. A process crash still
	// loses nothing committed (the page cache survives it), but a machine
	// crash may lose or tear recent commits. For bulk loads that can be
	// redone.
	NoSync bool
	// MetaFS is the file system for the Pebble metadata (default: disk).
	// Tests pass a crashable in-memory one.
	MetaFS vfs.FS
	// Progress, if set, receives progress of long operations (merge,
	// compact, subset copy).
	Progress func(Progress)

	// Knobs tests turn to reach rare paths with small data; zero means
	// the default.
	openData func(path string, flag int) (dataFile, error)
	// flushLimit: the bytes a batch buffers before writing (flushBufLimit).
	flushLimit uint64
	// concurrentWrite: the bytes from which a flush or a merge writes from
	// other goroutines than the caller's (4 MiB).
	concurrentWrite uint64
	// writeBehindWindow: the bytes a writer leaves in write-back before
	// waiting (writeBehindWindow).
	writeBehindWindow uint64
	// logLimit: the least size table.log reaches before it is folded
	// into a new table.snap (minLogLimit).
	logLimit int64
	// register: how a read-only store registers in readers/
	// (registerReader).
	register func(dir string) (*os.File, error)
}

// Progress reports how far a long operation is.
type Progress struct {
	Op          string // "merge", "compact", ...
	Done, Total int64  // entries
}

func (o *Options) withDefaults() Options {
	r := Options{}
	if o != nil {
		r = *o
	}
	if r.openData == nil {
		r.openData = openOSFile
	}
	if r.flushLimit == 0 {
		r.flushLimit = flushBufLimit
	}
	if r.concurrentWrite == 0 {
		r.concurrentWrite = 4 << 20
	}
	if r.writeBehindWindow == 0 {
		r.writeBehindWindow = writeBehindWindow
	}
	if r.logLimit == 0 {
		r.logLimit = minLogLimit
	}
	if r.register == nil {
		r.register = registerReader
	}
	return r
}

// Store is an on-disk set of inverted lists. Any number of goroutines may
// read through Views while one writer (a Batch, MergeFrom, Compact, ...)
// runs; writers are serialized.
type Store struct {
	dir      string
	opts     Options
	readOnly bool
	conf     conf

	// Writer side, guarded by wmu.
	wmu       sync.Mutex
	meta      *metaDB    // the metadata database and its failure (metafatal.go)
	db        *pebble.DB // meta.db
	file      dataFile
	alloc     *slots.Allocator
	pending   []pendingFree
	failed    error
	lock      *os.File
	durable   uint64    // seq of the last durably published commit
	published uint64    // seq of the last published commit (table.snap + table.log)
	pub       publisher // table.snap and table.log (publish.go)

	// Reader side, guarded by rmu.
	rmu    sync.Mutex
	cur    *state
	m      *mapping // current mapping; the store holds one reference
	views  map[uint64]int
	closed bool
	reg    *os.File // read-only process registration
	regSeq uint64
	rd     readerSide // what a read-only store read of the published table (publish.go)
}

// state is one committed version of the store, shared by readers.
type state struct {
	seq   uint64
	nlist int
	tab   *table
	fsize uint64
	gen   uint64
	m     *mapping
	user  map[string][]byte
}

type pendingFree struct {
	ext slots.Extent
	seq uint64 // the commit that freed it
}

func newID() [16]byte {
	var id [16]byte
	_, _ = rand.Read(id[:])
	return id
}

// Create makes a new, empty store in dir (created if needed) with
// opts.NumLists lists of opts.CodeSize-byte codes, and opens it for writing.
func Create(dir string, opts Options) (*Store, error) {
	if opts.NumLists < 1 || opts.NumLists > MaxLists {
		return nil, fmt.Errorf("store: create %s: number of lists %d out of range [1, %d]", dir, opts.NumLists, MaxLists)
	}
	if opts.CodeSize < 1 || opts.CodeSize > 1<<20 {
		return nil, fmt.Errorf("store: create %s: code size %d out of range [1, 2^20]", dir, opts.CodeSize)
	}
	o := opts.withDefaults()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("store: create %s: %w", dir, err)
	}
	if o.MetaFS == nil {
		if _, err := os.Stat(filepath.Join(dir, metaDirName)); err == nil {
			return nil, fmt.Errorf("%w: %s", ErrExist, dir)
		}
	}
	lock, err := lockWriter(dir)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			lock.Close()
		}
	}()
	c := conf{codeSize: uint32(opts.CodeSize), id: newID()}
	path := filepath.Join(dir, dataName(1))
	f, err := o.openData(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		return nil, fmt.Errorf("store: create %s: %w", path, err)
	}
	hdr := dataHeader{codeSize: c.codeSize, gen: 1, id: c.id}.encode()
	if err := writeFull(f, hdr, 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("store: create: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, fmt.Errorf("store: create: %w", err)
	}
	f.Close()
	if err := atomicfile.SyncDir(dir); err != nil {
		return nil, err
	}
	m, err := openMeta(filepath.Join(dir, metaDirName), o, true)
	if err != nil {
		if errors.Is(err, pebble.ErrDBAlreadyExists) {
			return nil, fmt.Errorf("%w: %s", ErrExist, dir)
		}
		return nil, fmt.Errorf("store: create metadata in %s: %w", dir, err)
	}
	b := m.db.NewBatch()
	fv := make([]byte, 4)
	binary.LittleEndian.PutUint32(fv, formatVersion)
	_ = b.Set(keyFormat, fv, nil)
	_ = b.Set(keyConf, c.encode(), nil)
	_ = b.Set(keyState, stateRec{nlist: uint64(opts.NumLists), gen: 1, fsize: headerSize, seq: 1}.encode(), nil)
	if err := m.commit(b, pebble.Sync); err != nil {
		_ = m.close()
		return nil, fmt.Errorf("store: create metadata in %s: %w", dir, err)
	}
	s, err := openWriter(dir, o, m, lock)
	if err != nil {
		return nil, err
	}
	ok = true
	return s, nil
}

// Open opens an existing store for reading and writing. Only one process
// may hold a store for writing; a second one gets ErrLocked naming the pid.
func Open(dir string, opts *Options) (*Store, error) {
	o := opts.withDefaults()
	if o.MetaFS == nil {
		if _, err := os.Stat(filepath.Join(dir, metaDirName)); err != nil {
			return nil, fmt.Errorf("%w: %s (%v)", ErrNotExist, dir, err)
		}
	}
	lock, err := lockWriter(dir)
	if err != nil {
		return nil, err
	}
	m, err := openMeta(filepath.Join(dir, metaDirName), o, false)
	if err != nil {
		lock.Close()
		if errors.Is(err, pebble.ErrDBDoesNotExist) {
			return nil, fmt.Errorf("%w: %s", ErrNotExist, dir)
		}
		return nil, fmt.Errorf("store: open metadata in %s: %w", dir, err)
	}
	s, err := openWriter(dir, o, m, lock)
	if err != nil {
		lock.Close()
		return nil, err
	}
	return s, nil
}

func openWriter(dir string, o Options, meta *metaDB, lock *os.File) (s *Store, err error) {
	defer func() {
		if err != nil {
			_ = meta.close()
		}
	}()
	var (
		recovered string
		c         conf
		st        stateRec
		tab       *table
		user      map[string][]byte
	)
	err = meta.read(func(db *pebble.DB) (err error) {
		if recovered, err = witness(dir, db, o); err != nil {
			return err
		}
		c, st, tab, user, err = loadMeta(db)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", filepath.Join(dir, metaDirName), err)
	}
	path := filepath.Join(dir, dataName(st.gen))
	f, err := o.openData(path, os.O_RDWR)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, fmt.Errorf("%w: data file %s missing: %v", ErrCorrupt, path, err)
		}
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	size, err := checkDataFile(f, path, c, st)
	if err != nil {
		return nil, err
	}
	used, err := validateTable(tab, int(c.codeSize), st.fsize)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", dir, err)
	}
	exts := make([]slots.Extent, len(used))
	for i, u := range used {
		exts[i] = slots.Extent{Off: u[0], Len: u[1] - u[0]}
	}
	alloc, err := slots.Rebuild(headerSize, size, exts)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, dir, err)
	}
	m, err := mapFile(f.OS(), o.MapReserve, int64(size))
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	s = &Store{
		dir: dir, opts: o, conf: c, meta: meta, db: meta.db, file: f, alloc: alloc, lock: lock,
		m: m, views: map[uint64]int{},
	}
	s.pub.recovered = recovered
	s.cur = &state{seq: st.seq, nlist: int(st.nlist), tab: tab, fsize: st.fsize, gen: st.gen, m: m, user: user}
	if tab.noCRC {
		if err := s.addChecksums(); err != nil {
			s.m.unmap()
			return nil, fmt.Errorf("store: add checksums to %s: %w", dir, err)
		}
	}
	if err := s.publish(true); err != nil {
		s.m.unmap()
		return nil, fmt.Errorf("store: publish table of %s: %w", dir, err)
	}
	// Only now that the table names this generation: a reader that finds
	// a data file missing while the table naming it is unchanged reports
	// it missing.
	removeStaleDataFiles(dir, st.gen)
	// A read-only process may still read a table older than the committed
	// one (the writer died before publishing it), and one that could not
	// register may read any: then free space may hold slots such a process
	// can see, so none of it is reused until it moves on.
	if min, ok, err := scanReaders(dir); err == nil && ok && min < st.seq || dataLockedByReaders(f.OS()) {
		for _, e := range alloc.Extents() {
			if err := alloc.AllocAt(e.Off, e.Len); err == nil {
				s.pending = append(s.pending, pendingFree{ext: e, seq: st.seq})
			}
		}
	}
	return s, nil
}

// checkDataFile validates the header of an opened data file against the
// metadata and returns the file's size.
func checkDataFile(f dataFile, path string, c conf, st stateRec) (uint64, error) {
	hb := make([]byte, dataHeaderBytes)
	if n, err := f.ReadAt(hb, 0); n < len(hb) {
		return 0, fmt.Errorf("%w: data file %s: header unreadable: %v", ErrCorrupt, path, err)
	}
	h, err := decodeDataHeader(hb)
	if err != nil {
		return 0, fmt.Errorf("data file %s: %w", path, err)
	}
	if h.id != c.id || h.gen != st.gen || h.codeSize != c.codeSize {
		return 0, fmt.Errorf("%w: data file %s belongs to another store or generation (gen %d code size %d, metadata wants gen %d code size %d)",
			ErrCorrupt, path, h.gen, h.codeSize, st.gen, c.codeSize)
	}
	size, err := f.Size()
	if err != nil {
		return 0, err
	}
	if uint64(size) < st.fsize {
		return 0, fmt.Errorf("%w: data file %s truncated: %d bytes, committed lists need %d", ErrCorrupt, path, size, st.fsize)
	}
	return uint64(size), nil
}

// removeStaleDataFiles deletes data files of other generations: leftovers
// of a compaction that crashed before its commit, or that finished but
// could not delete the old file.
func removeStaleDataFiles(dir string, gen uint64) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		n := e.Name()
		if !strings.HasPrefix(n, "lists.") || !strings.HasSuffix(n, ".data") {
			continue
		}
		g, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(n, "lists."), ".data"), 10, 64)
		if err != nil || g == gen {
			continue
		}
		os.Remove(filepath.Join(dir, n))
	}
}

// OpenReadOnly opens a store for reading. It works while another process
// holds the store for writing: it reads the list table that writer last
// published (table.snap and table.log, publish.go), which holds every
// commit that returned, and registers itself in readers/ so the writer
// does not reuse space it can still see. Where it cannot register (no
// write access to the directory, a full disk), it reads unregistered
// (see Unregistered). Refresh moves it to the newest published table.
func OpenReadOnly(dir string, opts *Options) (*Store, error) {
	o := opts.withDefaults()
	if _, err := os.Stat(filepath.Join(dir, snapName)); err != nil {
		if _, err2 := os.Stat(filepath.Join(dir, metaDirName)); err2 != nil {
			return nil, fmt.Errorf("%w: %s", ErrNotExist, dir)
		}
		return nil, fmt.Errorf("%w: %s has no published list table (%v); open it for writing once", ErrCorrupt, dir, err)
	}
	s := &Store{dir: dir, opts: o, readOnly: true, views: map[uint64]int{}}
	reg, err := o.register(dir)
	if err != nil {
		s.rd.unreg = err
	}
	s.reg = reg
	st, f, m, pos, err := s.loadPublished(nil)
	if err != nil {
		s.closeReader()
		return nil, err
	}
	s.rd.data, s.rd.pos = f, pos
	s.m = m
	s.cur = st
	if reg != nil {
		// Until this succeeds the file says 0, which keeps every freed
		// slot: safe, and retried as views come and go.
		if setReaderSeq(reg, st.seq) == nil {
			s.regSeq = st.seq
		}
	}
	return s, nil
}

// dropMappingLocked releases the store's reference to m (rmu held).
func (s *Store) dropMappingLocked(m *mapping) {
	m.refs--
	if m.refs == 0 {
		m.unmap()
	}
}

// updateRegLocked records in the reader file the oldest commit this
// process can still read: its oldest live view, or the current table.
func (s *Store) updateRegLocked() {
	if s.reg == nil {
		return
	}
	min := s.cur.seq
	for seq := range s.views {
		if seq < min {
			min = seq
		}
	}
	if min != s.regSeq {
		if setReaderSeq(s.reg, min) == nil {
			s.regSeq = min
		}
	}
}

// Close releases the store. Views still held stay readable until released.
func (s *Store) Close() error {
	if !s.readOnly {
		s.wmu.Lock()
		defer s.wmu.Unlock()
	}
	s.rmu.Lock()
	if s.closed {
		s.rmu.Unlock()
		return nil
	}
	s.closed = true
	s.rmu.Unlock()
	var errs []error
	if !s.readOnly {
		if s.failure() == nil {
			if err := s.publish(true); err != nil {
				errs = append(errs, err)
			}
		}
		if err := s.meta.close(); err != nil {
			errs = append(errs, fmt.Errorf("store: close metadata: %w", err))
		}
		if err := s.file.Close(); err != nil {
			errs = append(errs, err)
		}
		s.pub.close()
		s.lock.Close()
	} else {
		s.closeReader()
	}
	s.rmu.Lock()
	s.dropMappingLocked(s.m)
	s.rmu.Unlock()
	return errors.Join(errs...)
}

// failure returns why the store writes nothing more until it is
// reopened: a commit that failed, or the metadata database's failure
// (metafatal.go), which may come from any of Pebble's goroutines. It
// wraps ErrFailed and the cause.
func (s *Store) failure() error {
	err := s.failed
	if err == nil && s.meta != nil {
		err = s.meta.failure()
	}
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrFailed) {
		return err
	}
	return fmt.Errorf("%w: %s: %w", ErrFailed, s.dir, err)
}

func (s *Store) current() *state {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	return s.cur
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

// CodeSize returns the number of bytes of one code.
func (s *Store) CodeSize() int { return int(s.conf.codeSize) }

// NumLists returns the current number of lists.
func (s *Store) NumLists() int { return s.current().nlist }

// ReadOnly reports whether the store was opened read-only.
func (s *Store) ReadOnly() bool { return s.readOnly }

// Seq returns the sequence number of the last commit the store sees.
func (s *Store) Seq() uint64 { return s.current().seq }

// Meta returns the index layer's record stored under key.
func (s *Store) Meta(key string) ([]byte, bool) {
	v, ok := s.current().user[key]
	if !ok {
		return nil, false
	}
	return append([]byte(nil), v...), true
}

// MetaKeys returns the keys of the index layer's records.
func (s *Store) MetaKeys() []string {
	u := s.current().user
	keys := make([]string, 0, len(u))
	for k := range u {
		keys = append(keys, k)
	}
	return keys
}

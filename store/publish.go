package store

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/cockroachdb/pebble/v2"
	"golang.org/x/sys/unix"

	"github.com/shelfdb/shelf/internal/atomicfile"
)

// Publishing the list table to read-only processes. Pebble locks its
// directory, so a process that only reads cannot open the metadata while
// the writer holds it; the writer publishes what it commits in two files
// instead:
//
//   - table.snap: the whole table of one commit S (rows, file size,
//     generation, user records), checksummed, replaced atomically.
//   - table.log: a header naming S and a random id of this log, then one
//     record per commit after S: the rows and user records it changed,
//     its file size, generation and sequence number, each record
//     CRC-32C'd (meta.go).
//
// Every commit appends its record after Pebble's commit and before Commit
// returns: a plain write into the page cache, which a killed process
// leaves behind, so a reader that opens or refreshes after Commit returned
// sees that commit. The record costs O(lists changed); it is not synced:
// a machine crash may lose the log's tail, which only makes readers that
// start before the writer's next open see an older commit, and the writer
// republishes at open. When freed space waits for a durable publication
// (releasePending), the log is fdatasync'd once for all the records
// before it. A commit that renumbers lists, a compaction, a log grown past
// the size of the table (at least minLogLimit) or a failed append starts
// over: a new table.snap, then a new, empty table.log naming it.
//
// A reader reads table.snap, then the records of table.log that extend it,
// stopping at the first record that is torn, damaged or out of sequence.
// A log naming an older snapshot (the writer was between the two files)
// is ignored: the snapshot is the newer. A log naming a newer snapshot
// means the snapshot was replaced after it was read: read it again.
// Refresh reads only what the log gained since, as long as it is the same
// log (its id), and everything again otherwise.
//
// Since the published table is written after Pebble's commit, it is never
// newer than Pebble's unless Pebble lost commits it had acknowledged: a
// damaged, truncated or deleted WAL, which Pebble takes for a torn write.
// The writer checks this at open (witness) and restores Pebble's records
// from the published table, never reopening behind it.

const (
	logName = "table.log"
	// minLogLimit is the least size a log may reach before it is folded
	// into a new table.snap, so that a small table is not rewritten (and
	// synced) every few commits.
	minLogLimit = 1 << 20
)

// publisher is the writer's side of table.snap and table.log (wmu held).
type publisher struct {
	log        *os.File  // table.log, open for appending; nil: publish table.snap next
	nameSynced bool      // the directory entry of log is durable
	off        int64     // end of the last record in log
	limit      int64     // a log longer than this is folded into a new table.snap
	rec        logRecord // the record being appended, its slices reused
	buf        []byte    // its encoding
	recovered  string    // what the open restored from the published table, if anything
}

func (p *publisher) close() {
	if p.log != nil {
		p.log.Close()
		p.log = nil
	}
}

// Recovered says what opening the store for writing restored: "" normally;
// a sentence when Pebble had lost commits it had acknowledged (a damaged
// or missing WAL) and the store restored them from the table it had
// published to readers.
func (s *Store) Recovered() string { return s.pub.recovered }

// publish makes the published table reach the current state (writer
// only, wmu held): by a new table.snap where the log does not reach it
// (at open, after a compaction or a failed append) and on Close, which
// leaves readers one file to read; with durable, synced.
func (s *Store) publish(durable bool) error {
	st := s.current()
	s.rmu.Lock()
	closing := s.closed
	s.rmu.Unlock()
	if s.pub.log == nil || s.published != st.seq || (closing && s.pub.off > logHeaderLen) {
		return s.publishSnap(st, durable)
	}
	if durable && s.durable != st.seq {
		if !s.opts.NoSync {
			if err := fdatasync(s.pub.log); err != nil {
				s.pub.close()
				return err
			}
			if !s.pub.nameSynced {
				if err := atomicfile.SyncDir(s.dir); err != nil {
					return err
				}
				s.pub.nameSynced = true
			}
		}
		s.durable = s.published
	}
	return nil
}

// publishSnap publishes st whole: table.snap, then an empty table.log
// extending it. A reader that finds the new snapshot with the previous
// log ignores the log (it names an older snapshot), so every moment shows
// readers st or a state before it. With durable (and syncs on), the
// snapshot and its name are synced before the log replaces the previous
// one: a machine crash can never leave the older snapshot with the new
// log, which would hide commits the previous log held durably. The new
// log is not synced (a crash that loses it leaves readers the new
// snapshot); the first sync of its records syncs its name too.
func (s *Store) publishSnap(st *state, durable bool) error {
	s.pub.close()
	sync := durable && !s.opts.NoSync
	data := encodeSnapshot(s.conf, st.rec(), st.tab, st.user)
	if err := writeSnapshotFile(s.dir, data, sync); err != nil {
		return err
	}
	s.published = st.seq
	if durable {
		s.durable = st.seq
	}
	var id [8]byte
	_, _ = rand.Read(id[:])
	f, err := createLog(s.dir, logHeader{conf: s.conf, snapSeq: st.seq, logID: binary.LittleEndian.Uint64(id[:]) | 1})
	if err != nil {
		return err // readers read the snapshot alone; the next commit tries again
	}
	s.pub.log = f
	s.pub.nameSynced = false
	s.pub.off = logHeaderLen
	s.pub.limit = max(int64(len(data)), s.opts.logLimit)
	return nil
}

// createLog writes a new table.log holding only header h, atomically but
// not durably.
func createLog(dir string, h logHeader) (*os.File, error) {
	path := filepath.Join(dir, logName)
	f, err := atomicfile.Create(path, 0o644)
	if err != nil {
		return nil, err
	}
	f.NoSync = true
	if _, err := f.Write(h.encode()); err != nil {
		f.Abort()
		return nil, fmt.Errorf("write %s: %w", f.Name(), err)
	}
	if err := f.Commit(); err != nil {
		return nil, err
	}
	// Only the writer, which holds writer.lock, writes this name.
	return os.OpenFile(path, os.O_WRONLY, 0)
}

// publishCommit publishes commit st, which followed commit prev and
// changed the rows of lists (all of them with rewrite: the numbering
// changed) and the user records in user (nil: deleted), by appending one
// record to table.log (wmu held). Publishing cannot fail a commit that is
// already durable: where the record cannot be appended, a new table.snap
// is tried, and failing that readers keep reading an older commit (never
// a wrong one) until a later publication succeeds.
func (s *Store) publishCommit(prev uint64, st *state, lists map[int]struct{}, user map[string][]byte, rewrite bool) {
	if rewrite || s.pub.log == nil || s.published != prev || int64(len(lists))*(4+entryLen) > s.pub.limit {
		// A record as large as the table might as well be the table.
		_ = s.publishSnap(st, true)
		return
	}
	rec := &s.pub.rec
	rec.stateRec = st.rec()
	rec.rows, rec.user = rec.rows[:0], rec.user[:0]
	for l := range lists {
		rec.rows = append(rec.rows, logRow{l: l, e: st.tab.get(l)})
	}
	for k, v := range user {
		rec.user = append(rec.user, userChange{key: k, val: v})
	}
	buf := rec.appendTo(s.pub.buf[:0])
	if cap(buf) <= 1<<20 {
		s.pub.buf = buf
	}
	if cap(rec.rows) > 1<<15 {
		rec.rows = nil
	}
	clear(rec.user)
	if _, err := s.pub.log.WriteAt(buf, s.pub.off); err != nil {
		// The record may be half written: readers stop there, so nothing
		// may follow it in this log.
		_ = s.publishSnap(st, true)
		return
	}
	s.pub.off += int64(len(buf))
	s.published = st.seq
	if s.pub.off > s.pub.limit {
		_ = s.publishSnap(st, true)
	}
}

func fdatasync(f *os.File) error {
	for {
		err := unix.Fdatasync(int(f.Fd()))
		if err != unix.EINTR {
			if err != nil {
				return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: err}
			}
			return nil
		}
	}
}

// pubPos is how far a reader has read the published table: the snapshot
// (its commit), and the log (its id, 0 for none) up to off.
type pubPos struct {
	snapSeq uint64
	logID   uint64
	off     int64
}

// readerSide is a read-only store's side of the published table (wmu
// held, as in Refresh, or during OpenReadOnly).
type readerSide struct {
	pos  pubPos
	data dataFile // the data file of the current table
	// unreg is why the store is not registered in readers/; nil when it
	// is. An unregistered store holds a shared lock on data instead.
	unreg error
}

// Unregistered returns why a read-only store reads without a file in
// readers/ (the process may not write there, or the disk is full), or
// nil when it is registered (and for a read-write store). Unregistered,
// it holds a shared lock on the data file instead: a writer sees that
// lock and reuses no freed space while it is held, so reads stay correct,
// but the writer's file grows meanwhile instead of reusing freed slots. A
// command may print it as a note, e.g. "note: cannot register as a reader
// of DIR (...): reading without registration".
func (s *Store) Unregistered() error { return s.rd.unreg }

// closeReader ends a read-only store's registration and closes its data
// file (which drops its lock, if unregistered). It waits for a Refresh
// in progress.
func (s *Store) closeReader() {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.rmu.Lock()
	reg := s.reg
	s.reg = nil // updateRegLocked writes it under rmu
	s.rmu.Unlock()
	if reg != nil {
		unregisterReader(reg)
	}
	if s.rd.data != nil {
		s.rd.data.Close()
		s.rd.data = nil
	}
}

// readPublished reads table.snap and the records of table.log that extend
// it: the newest table the writer published. The state has no mapping.
func readPublished(dir string) (conf, *state, pubPos, error) {
	snapPath := filepath.Join(dir, snapName)
	for attempt := 0; ; attempt++ {
		raw, err := os.ReadFile(snapPath)
		if err != nil {
			return conf{}, nil, pubPos{}, fmt.Errorf("store: read %s: %w", snapPath, err)
		}
		snap, err := decodeSnapshot(raw)
		if err != nil {
			return conf{}, nil, pubPos{}, fmt.Errorf("store: %s: %w", snapPath, err)
		}
		tab := newTable(int(snap.nlist))
		tab.noCRC = snap.noCRC
		for l, e := range snap.rows {
			tab.set(l, e)
		}
		if _, err := validateTable(tab, int(snap.codeSize), snap.fsize); err != nil {
			return conf{}, nil, pubPos{}, fmt.Errorf("store: %s: %w", snapPath, err)
		}
		st := &state{seq: snap.seq, nlist: int(snap.nlist), tab: tab, fsize: snap.fsize, gen: snap.gen, user: snap.user}
		pos := pubPos{snapSeq: snap.seq}
		logPath := filepath.Join(dir, logName)
		lraw, err := os.ReadFile(logPath)
		if errors.Is(err, fs.ErrNotExist) {
			return snap.conf, st, pos, nil
		}
		if err != nil {
			return conf{}, nil, pubPos{}, fmt.Errorf("store: read %s: %w", logPath, err)
		}
		h, err := decodeLogHeader(lraw)
		if err != nil || h.conf != snap.conf || h.snapSeq < snap.seq {
			// Not a log of this snapshot: the writer is between the
			// two files, or stopped there.
			return snap.conf, st, pos, nil
		}
		if h.snapSeq > snap.seq {
			if attempt < 3 {
				continue // the snapshot was replaced after it was read
			}
			return snap.conf, st, pos, nil
		}
		st, pos, err = applyLog(st, pos, h, lraw[logHeaderLen:], logHeaderLen, h.snapSeq, int(snap.codeSize))
		if err != nil {
			return conf{}, nil, pubPos{}, fmt.Errorf("store: %s: %w", logPath, err)
		}
		return snap.conf, st, pos, nil
	}
}

// readLogTail reads the records the log st was read from (pos) gained
// since. ok is false when that log is not the one the published table
// continues in any more: the caller reads everything again.
func readLogTail(dir string, c conf, st *state, pos pubPos) (_ *state, _ pubPos, ok bool, _ error) {
	path := filepath.Join(dir, logName)
	f, err := os.Open(path)
	if err != nil {
		return nil, pubPos{}, false, nil
	}
	defer f.Close()
	hb := make([]byte, logHeaderLen)
	if n, _ := f.ReadAt(hb, 0); n < len(hb) {
		return nil, pubPos{}, false, nil
	}
	h, err := decodeLogHeader(hb)
	if err != nil || h.conf != c || h.snapSeq != pos.snapSeq {
		return nil, pubPos{}, false, nil
	}
	// The same log: read on from where the last read stopped. Another log
	// of the same snapshot (the writer reopened): from its start, skipping
	// the commits already read (a sequence number names one commit).
	from, prev := int64(logHeaderLen), h.snapSeq
	if h.logID == pos.logID {
		from, prev = pos.off, st.seq
	}
	fi, err := f.Stat()
	if err != nil || fi.Size() < from {
		return nil, pubPos{}, false, nil
	}
	b := make([]byte, fi.Size()-from)
	if _, err := f.ReadAt(b, from); err != nil && err != io.EOF {
		return nil, pubPos{}, false, fmt.Errorf("store: read %s: %w", path, err)
	}
	nst, npos, err := applyLog(st, pos, h, b, from, prev, int(c.codeSize))
	if err != nil {
		return nil, pubPos{}, false, fmt.Errorf("store: %s: %w", path, err)
	}
	return nst, npos, true, nil
}

// applyLog applies to st (read up to pos) the records in b, the bytes of
// the log with header h from offset off on, whose first record should
// follow commit prev. It stops at the end, at a torn or damaged record,
// or at a gap in the sequence, and skips commits st already holds. Only
// the rows that changed are checked, unless the file size went down or
// the generation changed.
func applyLog(st *state, pos pubPos, h logHeader, b []byte, off int64, prev uint64, codeSize int) (*state, pubPos, error) {
	next := *st
	var d *draft
	changed, ownUser := false, false
	p := 0
	for p < len(b) {
		r, n, ok := decodeLogRecord(b[p:])
		if !ok || r.seq != prev+1 || r.nlist != uint64(st.nlist) {
			break
		}
		prev = r.seq
		p += n
		if r.seq <= st.seq {
			continue
		}
		changed = true
		if len(r.rows) > 0 && d == nil {
			d = newDraft(st.tab)
		}
		for _, w := range r.rows {
			d.set(w.l, w.e)
		}
		if len(r.user) > 0 && !ownUser {
			u := make(map[string][]byte, len(next.user)+len(r.user))
			for k, v := range next.user {
				u[k] = v
			}
			next.user, ownUser = u, true
		}
		for _, u := range r.user {
			if u.val == nil {
				delete(next.user, u.key)
			} else {
				next.user[u.key] = u.val
			}
		}
		next.seq, next.gen, next.fsize = r.seq, r.gen, r.fsize
	}
	npos := pubPos{snapSeq: h.snapSeq, logID: h.logID, off: off + int64(p)}
	if !changed {
		return st, npos, nil
	}
	if d != nil {
		next.tab = d.t
	}
	if next.gen != st.gen || next.fsize < st.fsize {
		if _, err := validateTable(next.tab, codeSize, next.fsize); err != nil {
			return nil, pubPos{}, err
		}
	} else if d != nil {
		for l := range d.dirty {
			if err := checkRow(l, d.get(l), codeSize, next.fsize); err != nil {
				return nil, pubPos{}, err
			}
		}
	}
	return &next, npos, nil
}

// readTable reads the newest published table: what the log gained since
// old was read, when it is still the same log, or everything again.
func (s *Store) readTable(old *state) (conf, *state, pubPos, error) {
	if old != nil {
		st, pos, ok, err := readLogTail(s.dir, s.conf, old, s.rd.pos)
		if err != nil {
			return conf{}, nil, pubPos{}, err
		}
		if ok {
			return s.conf, st, pos, nil
		}
	}
	return readPublished(s.dir)
}

// loadPublished reads the newest published table (from where old was
// read, if not nil) and returns it with its mapping and, when it had to
// be opened (another generation than old's, or no old), its data file.
// The mapping is old's when it still covers the file. A data file that is
// missing while the table naming it stays the same is reported missing;
// missing because a compaction replaced it meanwhile, it is read again.
//
// An unregistered store takes a shared lock on a data file it opens and
// reads the table again under the lock: from then on the writer reuses no
// space (readers.go, dataLockedByReaders), and what it reused before
// cannot be named by a table published after it did so.
func (s *Store) loadPublished(old *state) (*state, dataFile, *mapping, pubPos, error) {
	var lastErr error
	missing := uint64(0)
	for attempt := 0; attempt < 5; attempt++ {
		c, st, pos, err := s.readTable(old)
		if err != nil {
			return nil, nil, nil, pubPos{}, err
		}
		if s.cur != nil && c != s.conf {
			return nil, nil, nil, pubPos{}, fmt.Errorf("%w: %s was replaced by another store", ErrMismatch, s.dir)
		}
		if old != nil && st.gen == old.gen && s.rd.data != nil {
			m, err := s.growMapping(old, st)
			if err != nil {
				return nil, nil, nil, pubPos{}, err
			}
			st.m = m
			return st, nil, m, pos, nil
		}
		path := filepath.Join(s.dir, dataName(st.gen))
		f, err := s.opts.openData(path, os.O_RDONLY)
		if err != nil {
			lastErr = err
			if os.IsNotExist(err) {
				if missing == st.gen {
					return nil, nil, nil, pubPos{}, fmt.Errorf("%w: data file %s missing (the published table of commit %d names it): %v", ErrCorrupt, path, st.seq, err)
				}
				missing = st.gen
				continue // compacted meanwhile: read the new table
			}
			return nil, nil, nil, pubPos{}, fmt.Errorf("store: open %s: %w", path, err)
		}
		if _, err := checkDataFile(f, path, c, st.rec()); err != nil {
			f.Close()
			return nil, nil, nil, pubPos{}, err
		}
		if s.rd.unreg != nil {
			if err := lockDataShared(f.OS()); err != nil {
				f.Close()
				return nil, nil, nil, pubPos{}, fmt.Errorf("store: %s: cannot register as a reader (%v) nor lock %s: %w", s.dir, s.rd.unreg, path, err)
			}
			c2, st2, pos2, err := readPublished(s.dir)
			if err != nil {
				f.Close()
				return nil, nil, nil, pubPos{}, err
			}
			if c2 != c || st2.gen != st.gen {
				f.Close()
				continue
			}
			st, pos = st2, pos2
			if _, err := checkDataFile(f, path, c, st.rec()); err != nil {
				f.Close()
				return nil, nil, nil, pubPos{}, err
			}
		}
		m, err := mapFile(f.OS(), s.opts.MapReserve, int64(st.fsize))
		if err != nil {
			f.Close()
			return nil, nil, nil, pubPos{}, fmt.Errorf("store: %w", err)
		}
		s.conf = c
		st.m = m
		return st, f, m, pos, nil
	}
	return nil, nil, nil, pubPos{}, fmt.Errorf("store: %s keeps changing under the reader: %w", s.dir, lastErr)
}

// growMapping returns the mapping for st, a later table of old's data
// file: old's while it covers st's file size, else a new one, once the
// file is checked to be that large.
func (s *Store) growMapping(old, st *state) (*mapping, error) {
	if st.fsize <= old.fsize || uint64(old.m.reserve) >= st.fsize {
		if st.fsize > old.fsize {
			if err := s.checkDataSize(st); err != nil {
				return nil, err
			}
		}
		return old.m, nil
	}
	if err := s.checkDataSize(st); err != nil {
		return nil, err
	}
	m, err := mapFile(s.rd.data.OS(), s.opts.MapReserve, int64(st.fsize))
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return m, nil
}

func (s *Store) checkDataSize(st *state) error {
	size, err := s.rd.data.Size()
	if err != nil {
		return err
	}
	if uint64(size) < st.fsize {
		return fmt.Errorf("%w: data file %s truncated: %d bytes, committed lists need %d", ErrCorrupt, s.rd.data.OS().Name(), size, st.fsize)
	}
	return nil
}

// Refresh moves a read-only store to the newest table its writer
// published, reading only the commits published since the last read
// where it can, and reports whether anything changed. Views taken before
// keep reading the table they saw. On a read-write store it does nothing.
func (s *Store) Refresh() (bool, error) {
	if !s.readOnly {
		return false, nil
	}
	s.wmu.Lock() // one refresh at a time
	defer s.wmu.Unlock()
	s.rmu.Lock()
	if s.closed {
		s.rmu.Unlock()
		return false, ErrClosed
	}
	old := s.cur
	s.rmu.Unlock()
	st, f, m, pos, err := s.loadPublished(old)
	if err != nil {
		return false, err
	}
	s.rmu.Lock()
	defer s.rmu.Unlock()
	if s.closed {
		if m != old.m {
			s.dropMappingLocked(m)
		}
		if f != nil {
			f.Close()
		}
		return false, ErrClosed
	}
	s.rd.pos = pos
	if f != nil {
		// Views of the old generation keep their mapping; its file is
		// never written again.
		s.rd.data.Close()
		s.rd.data = f
	}
	if st.seq == s.cur.seq && st.gen == s.cur.gen {
		if m != s.cur.m {
			s.dropMappingLocked(m)
		}
		return false, nil
	}
	if m != s.m {
		s.dropMappingLocked(s.m)
		s.m = m
	}
	s.cur = st
	s.updateRegLocked()
	return true, nil
}

// witness compares Pebble's last commit with the published table's
// (table.snap + table.log), the other witness of it, before a writer
// opens (DESIGN.md, "What the store trusts"). The published table is
// written after Pebble's commit, so it is never the newer unless Pebble
// lost commits it had acknowledged: a damaged, truncated or deleted WAL,
// which Pebble takes for a torn write. Opening behind would reuse space
// the lost commits hold and publish an older table over the newer one, so
// Pebble's records are restored from the published table (complete,
// checksummed, its data file checked) in one synced batch, and the
// returned note says so. Where that is impossible the open is refused
// with ErrCorrupt, saying what was lost and how to accept the loss.
func witness(dir string, db *pebble.DB, o Options) (string, error) {
	pc, pst, _, perr := readPublished(dir)
	if perr != nil {
		return "", nil // nothing published, or nothing usable: no evidence
	}
	c, st, _, _, err := loadMeta(db)
	switch {
	case err != nil && !metaEmpty(db):
		return "", nil // open reports the metadata's own error
	case err != nil:
		st = stateRec{} // everything lost: the WAL was deleted before any flush
	case c != pc:
		return "", nil // another store's table: no evidence about this one
	case pst.seq <= st.seq:
		return "", nil
	}
	metaDir := filepath.Join(dir, metaDirName)
	refuse := func(why string) (string, error) {
		return "", fmt.Errorf("%w: %s: the metadata in %s ends at commit %d, but the table published to readers (%s, %s) holds commit %d: "+
			"the metadata lost commits it had acknowledged (a damaged, truncated or missing Pebble log), and they cannot be restored from the published table: %s. "+
			"Refusing to open for writing, which would drop commits %d..%d; to accept that loss, remove %s and %s and open again",
			ErrCorrupt, dir, metaDir, st.seq, snapName, logName, pst.seq, why, st.seq+1, pst.seq, snapName, logName)
	}
	if pst.gen < st.gen {
		return refuse(fmt.Sprintf("the published table names data file generation %d, older than the metadata's %d", pst.gen, st.gen))
	}
	path := filepath.Join(dir, dataName(pst.gen))
	f, err := o.openData(path, os.O_RDONLY)
	if err != nil {
		return refuse(fmt.Sprintf("its data file %s: %v", path, err))
	}
	_, err = checkDataFile(f, path, pc, pst.rec())
	f.Close()
	if err != nil {
		return refuse(err.Error())
	}
	b := db.NewBatch()
	fv := make([]byte, 4)
	binary.LittleEndian.PutUint32(fv, formatVersion)
	_ = b.Set(keyFormat, fv, nil)
	_ = b.Set(keyConf, pc.encode(), nil)
	putTable(b, newDraft(pst.tab), pst.nlist)
	_ = b.DeleteRange(userPrefix, prefixEnd(userPrefix), nil)
	for k, v := range pst.user {
		_ = b.Set(userKey(k), v, nil)
	}
	_ = b.Set(keyState, pst.rec().encode(), nil)
	if err := b.Commit(pebble.Sync); err != nil { // inside metaDB.read: a fatal error comes back as one
		return "", fmt.Errorf("store: restore metadata of %s from its published table: %w", dir, err)
	}
	return fmt.Sprintf("%s: the metadata in %s ended at commit %d, but the table published to readers held commit %d: "+
		"Pebble had lost acknowledged commits (a damaged, truncated or missing log); commits %d..%d were restored from %s and %s",
		dir, metaDir, st.seq, pst.seq, st.seq+1, pst.seq, snapName, logName), nil
}

// metaEmpty reports whether Pebble holds no record at all.
func metaEmpty(db *pebble.DB) bool {
	it, err := db.NewIter(nil)
	if err != nil {
		return false
	}
	defer it.Close()
	return !it.First()
}

// rec is st's state record.
func (st *state) rec() stateRec {
	return stateRec{nlist: uint64(st.nlist), gen: st.gen, fsize: st.fsize, seq: st.seq}
}

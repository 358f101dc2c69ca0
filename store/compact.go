package store

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/shelfdb/shelf/internal/atomicfile"
	"github.com/shelfdb/shelf/slots"
)

// compactReadAhead is how far ahead of its copying a compaction asks for
// the old file's pages.
const compactReadAhead = 64 << 20

// CompactStats reports what Compact did.
type CompactStats struct {
	BytesBefore, BytesAfter int64 // data file sizes
	Entries                 int64
}

// Compact rewrites every list contiguously, in list order and with
// capacity == size, into a new data file with no free space, then switches
// to it in one commit. A crash at any point leaves either the old store or
// the new one. Views taken before keep reading the old file; lists keep
// accepting adds afterwards (a list that grows moves to a new slot).
func (s *Store) Compact() (CompactStats, error) { return s.CompactWith(CompactOptions{}) }

// CompactOptions tune CompactWith.
type CompactOptions struct {
	// Headroom leaves room in each list's slot for that share of its
	// size, as MergeOptions.Headroom: the file is that much larger, and
	// adds append in place until a list outgrows it.
	Headroom float64
}

// CompactWith is Compact with options.
func (s *Store) CompactWith(opts CompactOptions) (CompactStats, error) {
	if err := checkHeadroom(opts.Headroom); err != nil {
		return CompactStats{}, err
	}
	if s.readOnly {
		return CompactStats{}, fmt.Errorf("%w: %s", ErrReadOnly, s.dir)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.writable(); err != nil {
		return CompactStats{}, err
	}
	cur := s.current()
	cs := uint64(s.conf.codeSize)
	stats := CompactStats{BytesBefore: int64(s.alloc.End())}

	// Layout: lists in order, each slot exactly its size (plus headroom).
	nd := newDraft(newTable(cur.nlist))
	off := uint64(headerSize)
	for l := 0; l < cur.nlist; l++ {
		e := cur.tab.get(l)
		if e.size == 0 {
			continue
		}
		c := slotCap(e.size, opts.Headroom)
		nd.set(l, entry{off: off, cap: c, size: e.size, hwm: e.size, crc: e.crc}) // copied unchanged
		off += slotBytes(c, int(cs))
		stats.Entries += int64(e.size)
	}
	total := off
	gen := cur.gen + 1
	path := filepath.Join(s.dir, dataName(gen))
	f, err := s.opts.openData(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		return stats, fmt.Errorf("store: compact: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(path)
		}
	}()
	if err := f.Truncate(int64(total)); err != nil {
		return stats, fmt.Errorf("store: compact: %w", err)
	}
	if err := writeFull(f, dataHeader{codeSize: s.conf.codeSize, gen: gen, id: s.conf.id}.encode(), 0); err != nil {
		return stats, fmt.Errorf("store: compact: %w", err)
	}
	if err := s.copyLists(f, cur, nd, total, stats.Entries); err != nil {
		return stats, fmt.Errorf("store: compact: %w", err)
	}
	if !s.opts.NoSync {
		if err := f.Sync(); err != nil {
			return stats, fmt.Errorf("store: compact: %w", err)
		}
		if err := atomicfile.SyncDir(s.dir); err != nil {
			return stats, err
		}
	}
	newMap, err := mapFile(f.OS(), s.opts.MapReserve, int64(total))
	if err != nil {
		return stats, fmt.Errorf("store: compact: %w", err)
	}
	alloc := slots.New(headerSize, total)
	if total > headerSize {
		if err := alloc.AllocAt(headerSize, total-headerSize); err != nil {
			newMap.unmap()
			return stats, err
		}
	}
	// The switch: one synced Pebble batch names the new file and table.
	seq := cur.seq + 1
	pb := s.db.NewBatch()
	putTable(pb, nd, cur.nlist)
	if err := s.commitTable(pb, stateRec{nlist: uint64(cur.nlist), gen: gen, fsize: total, seq: seq}); err != nil {
		newMap.unmap()
		return stats, fmt.Errorf("store: compact: %w", err)
	}
	ok = true
	oldFile := s.file
	s.file = f
	s.alloc = alloc
	s.pending = nil // all in the old file
	s.rmu.Lock()
	old := s.m
	s.m = newMap
	s.cur = &state{seq: seq, nlist: cur.nlist, tab: nd.t, fsize: total, gen: gen, m: newMap, user: cur.user}
	s.dropMappingLocked(old) // views of the old file keep it mapped
	s.rmu.Unlock()
	oldPath := oldFile.OS().Name()
	oldFile.Close()
	// Publish first: a read-only process that still finds the old table
	// must be able to open the old file, or find the new table when it
	// cannot (a missing file named by an unchanged table is reported
	// missing). Processes that mapped the old file keep it; a file left
	// behind is deleted by the next Open.
	perr := s.publish(true)
	if perr == nil {
		_ = os.Remove(oldPath)
	}
	if perr != nil {
		return stats, fmt.Errorf("store: publish table of %s: %w", s.dir, perr)
	}
	stats.BytesAfter = int64(total)
	return stats, nil
}

// copyLists writes every list of state cur into f, the new data file of a
// compaction, at its row in nd. The old file is read with pread, not
// through the map (no page faults), and read-ahead asks for the entries
// of the next compactReadAhead bytes of lists before they are copied, so
// the disk reads in parallel with the copying when the old file is not in
// the page cache (a store larger than memory). A compaction that drops
// the pages it writes drops the old file's pages once read too.
func (s *Store) copyLists(f dataFile, cur *state, nd *draft, total uint64, entries int64) error {
	cs := uint64(s.conf.codeSize)
	w := newSlotWriter(f, s.m, int(cs))
	defer w.release()
	w.src = s.file
	w.behind = newWriteBehind(f, total, s.opts.writeBehindWindow)
	if s.opts.Progress != nil {
		var done int64
		w.progress = func(n int64) {
			done += n
			s.opts.Progress(Progress{Op: "compact", Done: done, Total: entries})
		}
	}
	next, requested, copied := 0, uint64(0), uint64(0)
	for l := 0; l < cur.nlist; l++ {
		e := cur.tab.get(l)
		if e.size == 0 {
			continue
		}
		for ; next < cur.nlist && (next <= l || requested-copied < compactReadAhead); next++ {
			en := cur.tab.get(next)
			if en.size > 0 {
				adviseFile(s.file, en.off, en.size*cs, adviseWillNeed)
				adviseFile(s.file, en.off+align8(en.cap*cs), en.size*8, adviseWillNeed)
				requested += en.size * (cs + 8)
			}
		}
		copied += e.size * (cs + 8)
		ne := nd.get(l)
		if err := w.writeSlot(&slotJob{l: l, old: e, keep: e.size, cap: ne.cap, size: e.size, off: ne.off}); err != nil {
			return err
		}
	}
	return w.flush()
}

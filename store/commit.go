package store

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Crash safety: the order of every write. It is argued here once; the
// batch, merge, flush and compaction all follow it.
//
//  1. Codes and ids are written with pwrite/pwritev (the slotWriter, never
//     through the read-only map) only into space no committed list
//     references: a fresh slot (taken from free space or from growth of
//     the file, see alloc.go), or past the committed size of a list's own
//     slot (an append below its high-water mark relocates the list
//     instead). A compaction writes a new file no committed state names.
//  2. The data file is made durable: fdatasync (file.go's Sync), which
//     also covers a grown file size (fallocate/ftruncate).
//  3. One synced Pebble batch publishes the new list table, file size and
//     generation (commitTable). It is the commit point.
//
// A crash before (3) leaves the previous commit, whose lists point only at
// bytes (1) did not touch; after (3) everything it names is on disk. A
// slot a commit stops using is freed only after that commit (Batch.freed)
// and reused only once no reader of an older commit remains
// (releasePending). A failure of (3) leaves the metadata uncertain: the
// store fails every later write until it is reopened and reads what is
// really there.

// Abort discards the batch; nothing it wrote becomes visible.
func (b *Batch) Abort() {
	if b.done {
		return
	}
	b.done = true
	b.rollback()
	b.s.wmu.Unlock()
}

func (b *Batch) rollback() {
	for off, n := range b.allocated {
		_ = b.s.alloc.Free(off, n)
	}
	b.allocated = nil
	b.freed = nil
	b.bufs = listBufs{}
	releaseSpread(b.spread)
	b.spread = nil
}

// Commit makes the batch durable and visible: flush the data written, then
// one synced Pebble batch publishes the new list table.
func (b *Batch) Commit() error {
	if b.done {
		return ErrBatchDone
	}
	b.done = true
	s := b.s
	defer s.wmu.Unlock()
	if b.err == nil {
		if err := b.flushAll(); err != nil {
			b.err = err
		}
	}
	if b.err != nil {
		b.rollback()
		return b.err
	}
	if len(b.d.dirty) == 0 && len(b.user) == 0 && !b.rewriteAll {
		b.rollback()
		return nil
	}
	if b.wrote && !s.opts.NoSync {
		if err := s.file.Sync(); err != nil {
			b.rollback()
			return fmt.Errorf("store: commit to %s: %w", s.dir, err)
		}
	}
	cur := s.current()
	seq := cur.seq + 1
	fsize := s.alloc.End()
	pb := s.db.NewBatch()
	if b.rewriteAll {
		putTable(pb, b.d, b.nlist)
	} else {
		var buf [entryLen]byte
		for l := range b.d.dirty {
			e := b.d.get(l)
			if e == (entry{}) {
				_ = pb.Delete(listKey(l), nil)
				continue
			}
			e.encode(buf[:])
			_ = pb.Set(listKey(l), buf[:], nil)
		}
	}
	user := cur.user
	if len(b.user) > 0 {
		user = make(map[string][]byte, len(cur.user)+len(b.user))
		for k, v := range cur.user {
			user[k] = v
		}
		for k, v := range b.user {
			if v == nil {
				delete(user, k)
				_ = pb.Delete(userKey(k), nil)
			} else {
				user[k] = v
				_ = pb.Set(userKey(k), v, nil)
			}
		}
	}
	if err := s.commitTable(pb, stateRec{nlist: uint64(b.nlist), gen: b.gen, fsize: fsize, seq: seq}); err != nil {
		b.rollback()
		return err
	}
	st := &state{seq: seq, nlist: b.nlist, tab: b.d.t, fsize: fsize, gen: b.gen, m: s.m, user: user}
	s.rmu.Lock()
	s.cur = st
	s.rmu.Unlock()
	for _, e := range b.freed {
		s.pending = append(s.pending, pendingFree{ext: e, seq: seq})
	}
	b.allocated = nil
	s.afterCommit(cur.seq, st, b)
	return nil
}

// putTable adds to pb the replacement of every row of the list table by
// the nlist rows of d.
func putTable(pb *pebble.Batch, d *draft, nlist int) {
	_ = pb.DeleteRange(listPrefix, prefixEnd(listPrefix), nil)
	var buf [entryLen]byte
	for l := 0; l < nlist; l++ {
		if e := d.get(l); e != (entry{}) {
			e.encode(buf[:])
			_ = pb.Set(listKey(l), buf[:], nil)
		}
	}
}

// commitTable adds the state record st to pb and commits it, synced
// unless the store skips syncs: step (3) above. When it fails, Pebble may
// or may not have made the batch durable, so the store stops writing
// until it is reopened and reads what is really there.
func (s *Store) commitTable(pb *pebble.Batch, st stateRec) error {
	_ = pb.Set(keyState, st.encode(), nil)
	wo := pebble.Sync
	if s.opts.NoSync {
		wo = pebble.NoSync
	}
	if err := s.meta.commit(pb, wo); err != nil {
		s.failed = fmt.Errorf("%w: commit metadata of %s: %w", ErrFailed, s.dir, err)
		return s.failed
	}
	return nil
}

// afterCommit publishes commit st (which followed prev) to read-only
// processes before Commit returns, and reuses freed space nobody can see
// any more (wmu held).
func (s *Store) afterCommit(prev uint64, st *state, b *Batch) {
	s.publishCommit(prev, st, b.d.dirty, b.user, b.rewriteAll)
	s.releasePending()
}

// releasePending returns to the allocator the freed slots no reader can
// see: freed by a commit no newer than the oldest live view (here or in a
// read-only process) and than the durably published table, and none
// while a reader that could not register holds the data file (wmu held).
func (s *Store) releasePending() {
	if len(s.pending) == 0 || dataLockedByReaders(s.file.OS()) {
		return
	}
	cur := s.current()
	min := cur.seq
	s.rmu.Lock()
	for seq := range s.views {
		if seq < min {
			min = seq
		}
	}
	s.rmu.Unlock()
	if rmin, ok, err := scanReaders(s.dir); err != nil {
		return
	} else if ok && rmin < min {
		min = rmin
	}
	var blocked uint64
	for _, p := range s.pending {
		if p.seq <= min && p.seq > s.durable {
			blocked += p.ext.Len
		}
	}
	// Every commit is published, but not durably: sync the log (one
	// fdatasync for all the commits since the last) once enough space
	// waits for it.
	const threshold = 1 << 20
	if blocked >= threshold {
		_ = s.publish(true)
	}
	keep := s.pending[:0]
	for _, p := range s.pending {
		if p.seq <= min && p.seq <= s.durable {
			if err := s.alloc.Free(p.ext.Off, p.ext.Len); err != nil {
				s.failed = fmt.Errorf("internal: free %v: %w", p.ext, err)
			}
			continue
		}
		keep = append(keep, p)
	}
	s.pending = keep
}

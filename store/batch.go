package store

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/shelfdb/shelf/slots"
)

// Batch groups writes so they share one fdatasync and one synced Pebble
// commit (group commit): readers see all of a batch or none of it, and a
// crash keeps all of it or none of it. A Batch holds the store's writer
// lock from Begin until Commit or Abort, so it must be ended promptly.
// A Batch is not safe for concurrent use.
//
// Any error from an operation poisons the batch: Commit then returns it
// and commits nothing, and the store keeps its last committed state.
type Batch struct {
	s          *Store
	d          *draft
	nlist      int
	allocated  map[uint64]uint64 // slots allocated by this batch: off -> bytes
	freed      []slots.Extent    // committed slots this batch stops using
	user       map[string][]byte // records to set (nil value: delete)
	wrote      bool
	rewriteAll bool // list numbering changed: rewrite every row
	gen        uint64
	bufs       listBufs       // entries appended but not yet written
	spread     []*spreadBlock // AddSpread entries not yet sorted into lists
	bufBytes   uint64
	err        error
	done       bool
}

// Begin starts a batch, waiting for any other writer to finish.
func (s *Store) Begin() (*Batch, error) {
	if s.readOnly {
		return nil, fmt.Errorf("%w: %s", ErrReadOnly, s.dir)
	}
	s.wmu.Lock()
	if err := s.writable(); err != nil {
		s.wmu.Unlock()
		return nil, err
	}
	s.releasePending()
	cur := s.current()
	return &Batch{
		s: s, d: newDraft(cur.tab), nlist: cur.nlist, gen: cur.gen,
		allocated: map[uint64]uint64{}, user: map[string][]byte{}, bufs: newListBufs(cur.nlist),
	}, nil
}

// writable reports whether writes may start (wmu held).
func (s *Store) writable() error {
	s.rmu.Lock()
	closed := s.closed
	s.rmu.Unlock()
	if closed {
		return ErrClosed
	}
	if s.failed != nil {
		return fmt.Errorf("%w: %s: %v", ErrFailed, s.dir, s.failed)
	}
	return nil
}

func (b *Batch) check(l int) error {
	if b.done {
		return ErrBatchDone
	}
	if b.err != nil {
		return b.err
	}
	if l < 0 || l >= b.nlist {
		return fmt.Errorf("%w: list %d of %d in %s", ErrList, l, b.nlist, b.s.dir)
	}
	return nil
}

func (b *Batch) fail(err error) error {
	if b.err == nil {
		b.err = err
	}
	return err
}

func (b *Batch) fresh(e entry) bool {
	if e.cap == 0 {
		return false
	}
	_, ok := b.allocated[e.off]
	return ok
}

// ListLen returns the size of list l as this batch would commit it.
func (b *Batch) ListLen(l int) (int, error) {
	if err := b.check(l); err != nil {
		return 0, err
	}
	n := b.d.get(l).size
	if lb := b.bufs.peek(l); lb != nil {
		n += uint64(len(lb.ids))
	}
	n += uint64(b.bufs.count(int64(l)))
	return int(n), nil
}

// Add appends entries to list l and returns the position of the first
// (FAISS add_entries). len(codes) must be len(ids)*CodeSize. The entries
// are buffered and written at Commit (or when the batch buffers more than
// 64 MiB), so many small appends to a list cost one write.
func (b *Batch) Add(l int, ids []int64, codes []byte) (int, error) {
	if err := b.check(l); err != nil {
		return 0, err
	}
	cs := uint64(b.s.conf.codeSize)
	if uint64(len(codes)) != uint64(len(ids))*cs {
		return 0, fmt.Errorf("%w: %d bytes of codes for %d ids of %d bytes (list %d)", ErrCodeSize, len(codes), len(ids), cs, l)
	}
	if len(b.spread) > 0 {
		b.absorbSpread()
	}
	lb := b.bufs.get(l)
	pos := int(b.d.get(l).size) + len(lb.ids)
	lb.ids = append(lb.ids, ids...)
	lb.codes = append(lb.codes, codes...)
	b.bufBytes += uint64(len(codes) + 8*len(ids))
	if b.bufBytes > flushBufLimit {
		if err := b.flushAll(); err != nil {
			return 0, b.fail(err)
		}
	}
	return pos, nil
}

// AddSpread appends entry i to list lists[i], for every i: the shape of an
// IVF add, where each vector goes to its own list.
func (b *Batch) AddSpread(lists []int64, ids []int64, codes []byte) error {
	cs := int(b.s.conf.codeSize)
	if len(lists) != len(ids) || len(codes) != len(ids)*cs {
		return fmt.Errorf("%w: %d list numbers, %d ids, %d bytes of codes of %d bytes", ErrCodeSize, len(lists), len(ids), len(codes), cs)
	}
	for i, l := range lists {
		if l < 0 || l >= int64(b.nlist) {
			return fmt.Errorf("%w: entry %d goes to list %d of %d in %s", ErrList, i, l, b.nlist, b.s.dir)
		}
	}
	if b.done {
		return ErrBatchDone
	}
	if b.err != nil {
		return b.err
	}
	// Keep the entries in call order (one copy into pooled blocks); they
	// are sorted into their lists once per flush, so a batch spread over
	// many lists costs no per-entry lookups or buffer growth here.
	for len(ids) > 0 {
		var k *spreadBlock
		if n := len(b.spread); n > 0 && b.spread[n-1].room(cs) > 0 {
			k = b.spread[n-1]
		} else {
			k = newSpreadBlock(cs)
			b.spread = append(b.spread, k)
		}
		m := min(k.room(cs), len(ids))
		b.appendSpread(k, lists[:m], ids[:m], codes[:m*cs])
		lists, ids, codes = lists[m:], ids[m:], codes[m*cs:]
		b.bufBytes += uint64(m * (cs + 8))
		if b.bufBytes > flushBufLimit {
			if err := b.flushAll(); err != nil {
				return b.fail(err)
			}
		}
	}
	return nil
}

// appendNow writes entries at the end of list l immediately.
func (b *Batch) appendNow(l int, ids []int64, codes []byte) error {
	e := b.d.get(l)
	pos := e.size
	if len(ids) == 0 {
		return nil
	}
	need := e.size + uint64(len(ids))
	if need > e.cap || !(b.fresh(e) || e.size == e.hwm) {
		nc := e.cap
		if need > nc {
			nc = slots.NextPow2(need)
		}
		var err error
		if e, err = b.relocate(l, e, nc); err != nil {
			return err
		}
	}
	if err := b.writeEntries(e, pos, ids, codes); err != nil {
		return err
	}
	e.size = need
	if e.hwm < need {
		e.hwm = need
	}
	b.d.set(l, e)
	return nil
}

// Update overwrites entries [pos, pos+len(ids)) of list l (FAISS
// update_entries). The list is copied to a new slot first unless this
// batch already did, so readers of the old commit keep seeing old data.
func (b *Batch) Update(l, pos int, ids []int64, codes []byte) error {
	if err := b.check(l); err != nil {
		return err
	}
	cs := uint64(b.s.conf.codeSize)
	if uint64(len(codes)) != uint64(len(ids))*cs {
		return fmt.Errorf("%w: %d bytes of codes for %d ids of %d bytes (list %d)", ErrCodeSize, len(codes), len(ids), cs, l)
	}
	if err := b.flushList(l); err != nil {
		return b.fail(err)
	}
	e := b.d.get(l)
	if pos < 0 || uint64(pos)+uint64(len(ids)) > e.size {
		return fmt.Errorf("%w: update [%d, %d) of list %d (size %d)", ErrEntry, pos, pos+len(ids), l, e.size)
	}
	if len(ids) == 0 {
		return nil
	}
	if !b.fresh(e) {
		var err error
		if e, err = b.relocate(l, e, e.cap); err != nil {
			return b.fail(err)
		}
		b.d.set(l, e)
	}
	return b.fail0(b.writeEntries(e, uint64(pos), ids, codes))
}

func (b *Batch) fail0(err error) error {
	if err != nil {
		return b.fail(err)
	}
	return nil
}

// Resize sets the size of list l (FAISS resize). Shrinking keeps the slot;
// growing past the capacity moves the list to a slot of the next power of
// two. New entries have zero codes and id -1.
func (b *Batch) Resize(l, size int) error {
	if err := b.check(l); err != nil {
		return err
	}
	if size < 0 {
		return fmt.Errorf("%w: resize list %d to %d", ErrEntry, l, size)
	}
	if err := b.flushList(l); err != nil {
		return b.fail(err)
	}
	e := b.d.get(l)
	n := uint64(size)
	if n <= e.size {
		e.size = n
		b.d.set(l, e)
		return nil
	}
	if n > e.cap || !(b.fresh(e) || e.size == e.hwm) {
		nc := e.cap
		if n > nc {
			nc = slots.NextPow2(n)
		}
		var err error
		if e, err = b.relocate(l, e, nc); err != nil {
			return b.fail(err)
		}
	}
	add := n - e.size
	ids := make([]int64, add)
	for i := range ids {
		ids[i] = -1
	}
	if err := b.writeEntries(e, e.size, ids, make([]byte, add*uint64(b.s.conf.codeSize))); err != nil {
		return b.fail(err)
	}
	e.size = n
	if e.hwm < n {
		e.hwm = n
	}
	b.d.set(l, e)
	return nil
}

// Clear empties list l and gives its slot back.
func (b *Batch) Clear(l int) error {
	if err := b.check(l); err != nil {
		return err
	}
	if len(b.spread) > 0 {
		b.absorbSpread()
	}
	if lb := b.bufs.peek(l); lb != nil {
		b.bufs.drop(l)
		b.bufBytes -= uint64(len(lb.codes) + 8*len(lb.ids))
	}
	e := b.d.get(l)
	if e.cap == 0 {
		return nil
	}
	if err := b.freeSlot(e); err != nil {
		return b.fail(err)
	}
	b.d.set(l, entry{})
	return nil
}

// SetMeta stores a record of the index layer; it commits with the batch.
func (b *Batch) SetMeta(key string, value []byte) error {
	if b.done {
		return ErrBatchDone
	}
	if value == nil {
		value = []byte{}
	}
	b.user[key] = append([]byte(nil), value...)
	return nil
}

// DeleteMeta removes a record of the index layer.
func (b *Batch) DeleteMeta(key string) error {
	if b.done {
		return ErrBatchDone
	}
	b.user[key] = nil
	return nil
}

// writeEntries pwrites ids and codes at entry position pos of slot e.
func (b *Batch) writeEntries(e entry, pos uint64, ids []int64, codes []byte) error {
	cs := uint64(b.s.conf.codeSize)
	if err := writeFull(b.s.file, codes, e.off+pos*cs); err != nil {
		return err
	}
	if err := writeFull(b.s.file, int64Bytes(ids), e.off+align8(e.cap*cs)+pos*8); err != nil {
		return err
	}
	b.wrote = true
	return nil
}

// relocate moves list l (row e) to a new slot of capacity nc, copying its
// entries, and returns the new row (not yet stored in the draft).
func (b *Batch) relocate(l int, e entry, nc uint64) (entry, error) {
	cs := uint64(b.s.conf.codeSize)
	off, err := b.alloc(slotBytes(nc, int(cs)))
	if err != nil {
		return e, fmt.Errorf("list %d: %w", l, err)
	}
	ne := entry{off: off, cap: nc, size: e.size, hwm: e.size}
	if e.size > 0 {
		m := b.s.m
		if err := writeFull(b.s.file, m.bytes(e.off, e.size*cs), off); err != nil {
			return e, err
		}
		if err := writeFull(b.s.file, m.bytes(e.off+align8(e.cap*cs), e.size*8), off+align8(nc*cs)); err != nil {
			return e, err
		}
		b.wrote = true
	}
	if e.cap > 0 {
		if err := b.freeSlot(e); err != nil {
			return e, err
		}
	}
	return ne, nil
}

// freeSlot gives back the slot of row e: at once if this batch allocated
// it (nobody else can see it), after the commit otherwise.
func (b *Batch) freeSlot(e entry) error {
	n := slotBytes(e.cap, int(b.s.conf.codeSize))
	if b.fresh(e) {
		delete(b.allocated, e.off)
		return b.s.alloc.Free(e.off, n)
	}
	b.freed = append(b.freed, slots.Extent{Off: e.off, Len: n})
	return nil
}

// alloc takes n bytes of free space, growing the data file if needed.
func (b *Batch) alloc(n uint64) (uint64, error) {
	s := b.s
	off, ok := s.alloc.Alloc(n)
	if !ok {
		if err := s.grow(n); err != nil {
			return 0, err
		}
		b.wrote = true
		if off, ok = s.alloc.Alloc(n); !ok {
			return 0, fmt.Errorf("store: no %d free bytes after growing %s", n, s.dir)
		}
	}
	b.allocated[off] = n
	return off, nil
}

// grow extends the data file so a free extent of n bytes exists at its end
// (wmu held). It grows by at least 1/8 of the file (1 MiB to 1 GiB) so
// growth is rare, and remaps when the reservation is exceeded.
func (s *Store) grow(n uint64) error {
	end := s.alloc.End()
	need := n - s.alloc.TailFree()
	step := end / 8
	if step < 1<<20 {
		step = 1 << 20
	}
	if step > 1<<30 {
		step = 1 << 30
	}
	if need < step {
		need = step
	}
	newEnd := (end + need + 4095) &^ 4095
	if err := s.file.Truncate(int64(newEnd)); err != nil {
		// Give back what a partial fallocate may have reserved; the
		// committed size is still covered.
		_ = s.file.Truncate(int64(end))
		return fmt.Errorf("grow data file %s to %d bytes: %w", s.file.OS().Name(), newEnd, err)
	}
	if err := s.alloc.Grow(newEnd); err != nil {
		return err
	}
	if int64(newEnd) > s.m.reserve {
		m, err := mapFile(s.file.OS(), 0, int64(newEnd))
		if err != nil {
			return err
		}
		s.rmu.Lock()
		old := s.m
		s.m = m
		cp := *s.cur
		cp.m = m // s.cur.m == s.m always; views hold their own references
		s.cur = &cp
		s.dropMappingLocked(old)
		s.rmu.Unlock()
	}
	return nil
}

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
	var buf [entryLen]byte
	if b.rewriteAll {
		_ = pb.DeleteRange(listPrefix, prefixEnd(listPrefix), nil)
		for l := 0; l < b.nlist; l++ {
			if e := b.d.get(l); e != (entry{}) {
				e.encode(buf[:])
				_ = pb.Set(listKey(l), buf[:], nil)
			}
		}
	} else {
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
	_ = pb.Set(keyState, stateRec{nlist: uint64(b.nlist), gen: b.gen, fsize: fsize, seq: seq}.encode(), nil)
	wo := pebble.Sync
	if s.opts.NoSync {
		wo = pebble.NoSync
	}
	if err := commitMeta(pb, wo); err != nil {
		// Pebble may or may not have made the batch durable: stop writing
		// until the store is reopened and reads what is really there.
		s.failed = err
		b.rollback()
		return fmt.Errorf("%w: commit metadata of %s: %v", ErrFailed, s.dir, err)
	}
	s.rmu.Lock()
	s.cur = &state{seq: seq, nlist: b.nlist, tab: b.d.t, fsize: fsize, gen: b.gen, m: s.m, user: user}
	s.rmu.Unlock()
	for _, e := range b.freed {
		s.pending = append(s.pending, pendingFree{ext: e, seq: seq})
	}
	b.allocated = nil
	s.afterCommit()
	return nil
}

// afterCommit publishes the table to read-only processes when there are
// any, and reuses freed space nobody can see any more (wmu held).
func (s *Store) afterCommit() {
	if _, ok, err := scanReaders(s.dir); err == nil && ok {
		_ = s.publish(false)
	}
	s.releasePending()
}

// releasePending returns to the allocator the freed slots no reader can
// see: freed by a commit no newer than the oldest live view (here or in a
// read-only process) and than the durably published table (wmu held).
func (s *Store) releasePending() {
	if len(s.pending) == 0 {
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
	// Publishing costs O(nlist); do it once enough space waits for it.
	threshold := uint64(16*entryLen) * uint64(cur.nlist)
	if threshold < 1<<20 {
		threshold = 1 << 20
	}
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

// AddEntries appends entries to list l in a batch of its own and returns
// the position of the first.
func (s *Store) AddEntries(l int, ids []int64, codes []byte) (int, error) {
	b, err := s.Begin()
	if err != nil {
		return 0, err
	}
	pos, err := b.Add(l, ids, codes)
	if err != nil {
		b.Abort()
		return 0, err
	}
	return pos, b.Commit()
}

// UpdateEntries overwrites entries of list l in a batch of its own.
func (s *Store) UpdateEntries(l, pos int, ids []int64, codes []byte) error {
	b, err := s.Begin()
	if err != nil {
		return err
	}
	if err := b.Update(l, pos, ids, codes); err != nil {
		b.Abort()
		return err
	}
	return b.Commit()
}

// Resize sets the size of list l in a batch of its own.
func (s *Store) Resize(l, size int) error {
	b, err := s.Begin()
	if err != nil {
		return err
	}
	if err := b.Resize(l, size); err != nil {
		b.Abort()
		return err
	}
	return b.Commit()
}

// Reset empties every list and frees all their space (FAISS reset).
func (s *Store) Reset() error {
	b, err := s.Begin()
	if err != nil {
		return err
	}
	for l := 0; l < b.nlist; l++ {
		if err := b.Clear(l); err != nil {
			b.Abort()
			return err
		}
	}
	return b.Commit()
}

// SetMeta stores one record of the index layer in a batch of its own.
func (s *Store) SetMeta(key string, value []byte) error {
	b, err := s.Begin()
	if err != nil {
		return err
	}
	_ = b.SetMeta(key, value)
	return b.Commit()
}
